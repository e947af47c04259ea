//! `config.json` contents: literal values, values read from files or the
//! environment at build time, and `--set` overrides.
//!
//! In the recipe's `[config]` table every TOML value is copied as is,
//! except a table of the form `{ from-file = "path" }` or
//! `{ from-env = "VAR" }` (optionally with `secret = true` and, for
//! files, `trim = false`), which is replaced by the file's contents or
//! the variable's value. Secrets, and the keys the device treats as
//! credentials (`apiKey`, `deviceApiKey`, `provisioningKey`...), never
//! appear in logs or manifests: [`ResolvedConfig::redacted`] replaces
//! them with [`REDACTED`].

use crate::span::locate;
use crate::{Error, Location};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// What replaces a secret in anything shown or recorded.
pub const REDACTED: &str = "<redacted>";

/// Keys whose values are credentials wherever they appear.
const SECRET_KEYS: &[&str] = &[
    "apiKey",
    "deviceApiKey",
    "provisioningKey",
    "registryPassword",
];

/// Looks up an environment variable; the library never reads the
/// process environment itself.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// One `[config]` value before resolution.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigValue {
    /// A literal JSON value (tables may nest further references).
    Literal(Value),
    /// A nested table with references inside.
    Table(Vec<(String, ConfigValue)>),
    /// The contents of a file.
    File {
        /// The file (resolved against the recipe's directory).
        path: PathBuf,
        /// Strip trailing whitespace.
        trim: bool,
        /// Redact in logs and manifests.
        secret: bool,
    },
    /// The value of an environment variable.
    Env {
        /// The variable.
        var: String,
        /// Redact in logs and manifests.
        secret: bool,
    },
}

/// The final `config.json`: keys sorted, with the list of secret key
/// paths to redact.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedConfig {
    value: Value,
    secrets: Vec<Vec<String>>,
}

impl ResolvedConfig {
    /// The JSON object with keys sorted at every level.
    pub fn value(&self) -> &Value {
        &self.value
    }
    /// The JSON as written to the boot partition: pretty, sorted, with a
    /// trailing newline.
    pub fn to_pretty_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(&self.value).unwrap_or_default();
        v.push(b'\n');
        v
    }
    /// A copy safe to print or record: secrets replaced by [`REDACTED`].
    pub fn redacted(&self) -> Value {
        let mut v = self.value.clone();
        for path in &self.secrets {
            if let Some(slot) = lookup_mut(&mut v, path) {
                *slot = Value::String(REDACTED.into());
            }
        }
        redact_known(&mut v);
        v
    }
    /// Sets `key` (dotted path, e.g. `os.network.hostname`) to `value`;
    /// the value is taken as JSON when it parses as JSON (numbers,
    /// booleans, arrays, objects, quoted strings) and as a plain string
    /// otherwise.
    pub fn set(&mut self, arg: &str) -> Result<(), Error> {
        let err = |reason: &str| Error::Override {
            arg: arg.to_string(),
            reason: reason.to_string(),
        };
        let (key, raw) = arg
            .split_once('=')
            .ok_or_else(|| err("expected key=value"))?;
        let path: Vec<String> = key.split('.').map(str::to_string).collect();
        if path.iter().any(String::is_empty) {
            return Err(err("empty key component"));
        }
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
        let mut cur = &mut self.value;
        let (last, head) = path.split_last().ok_or_else(|| err("empty key"))?;
        for comp in head {
            let obj = cur
                .as_object_mut()
                .ok_or_else(|| err("a parent key is not a table"))?;
            cur = obj
                .entry(comp.clone())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        let obj = cur
            .as_object_mut()
            .ok_or_else(|| err("a parent key is not a table"))?;
        obj.insert(last.clone(), value);
        self.value = sort(std::mem::take(&mut self.value));
        validate(&self.value).map_err(|(_, r)| err(&r))
    }
    /// Inserts `key` = `value` at the top level unless already present.
    pub fn set_default(&mut self, key: &str, value: Value) {
        if let Some(o) = self.value.as_object_mut() {
            o.entry(key.to_string()).or_insert(value);
        }
        self.value = sort(std::mem::take(&mut self.value));
    }
    /// Sets a top-level key, replacing what was there.
    pub fn insert(&mut self, key: &str, value: Value) {
        if let Some(o) = self.value.as_object_mut() {
            o.insert(key.to_string(), value);
        }
        self.value = sort(std::mem::take(&mut self.value));
    }
}

fn lookup_mut<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = v;
    for p in path {
        cur = cur.as_object_mut()?.get_mut(p)?;
    }
    Some(cur)
}

/// Top-level `config.json` key recording which other keys hold secrets,
/// as a sorted list of key paths (`[["wifi", "psk"], ["customToken"]]`).
///
/// The device needs the secret values in its `config.json`, so an image
/// carries them; whoever reads the image back (`kiln inspect`, a stamp
/// or `--base` build's manifest) can only redact what it knows to be
/// secret. Key names are not secret, so kiln records, next to the values,
/// the paths marked `secret = true` in the recipe and the stamp's secret
/// columns, leaving out the credential keys redacted everywhere anyway
/// (so an image without custom secrets has no record). The device
/// ignores keys it does not know.
pub const SECRET_RECORD_KEY: &str = "kilnSecretKeys";

/// Adds `paths` to `v`'s [`SECRET_RECORD_KEY`] record (kept sorted and
/// without duplicates; the well-known credential keys are left out).
pub fn record_secrets(v: &mut Value, paths: &[Vec<String>]) {
    let mut all = recorded_secrets(v);
    for p in paths {
        let known = p.last().is_some_and(|k| SECRET_KEYS.contains(&k.as_str()));
        if !known && !p.is_empty() && !all.contains(p) {
            all.push(p.clone());
        }
    }
    if all.is_empty() {
        return;
    }
    all.sort();
    let list = all
        .into_iter()
        .map(|p| Value::Array(p.into_iter().map(Value::String).collect()))
        .collect();
    if let Some(o) = v.as_object_mut() {
        o.insert(SECRET_RECORD_KEY.to_string(), Value::Array(list));
    }
}

/// The key paths `v`'s [`SECRET_RECORD_KEY`] record lists (malformed
/// entries, as in a hand-edited file, are skipped).
pub fn recorded_secrets(v: &Value) -> Vec<Vec<String>> {
    let Some(list) = v.get(SECRET_RECORD_KEY).and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|p| {
            p.as_array()?
                .iter()
                .map(|c| c.as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>()
        })
        .filter(|p| !p.is_empty())
        .collect()
}

/// Replaces with [`REDACTED`] the values of credential keys (`apiKey`,
/// `deviceApiKey`, `provisioningKey`, ...) at any depth and of the keys
/// `v` itself records as secret ([`SECRET_RECORD_KEY`]).
pub fn redact_known(v: &mut Value) {
    for path in recorded_secrets(v) {
        if let Some(slot) = lookup_mut(v, &path) {
            *slot = Value::String(REDACTED.into());
        }
    }
    redact_credential_keys(v);
}

fn redact_credential_keys(v: &mut Value) {
    if let Some(o) = v.as_object_mut() {
        for (k, val) in o.iter_mut() {
            if SECRET_KEYS.contains(&k.as_str()) && !val.is_null() {
                *val = Value::String(REDACTED.into());
            } else {
                redact_credential_keys(val);
            }
        }
    }
}

/// Sorts object keys at every level.
pub(crate) fn sort(v: Value) -> Value {
    match v {
        Value::Object(o) => {
            let mut items: Vec<(String, Value)> = o.into_iter().collect();
            items.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(items.into_iter().map(|(k, v)| (k, sort(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sort).collect()),
        other => other,
    }
}

/// Checks the keys the device interprets (DESIGN.md "Device-side facts").
/// On failure, returns the top-level key at fault and why. The reason
/// never quotes the value: it may be a secret (`{ from-env = "HOST",
/// secret = true }`), and errors are printed and logged.
pub(crate) fn validate(v: &Value) -> Result<(), (&'static str, String)> {
    if let Some(u) = v.get("uuid") {
        let s = u
            .as_str()
            .ok_or(("uuid", "`uuid` must be a string".to_string()))?;
        if !(32..=62).contains(&s.len()) || !s.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err((
                "uuid",
                format!(
                    "`uuid` must be 32 to 62 hex digits, got {} characters",
                    s.len()
                ),
            ));
        }
    }
    if let Some(p) = v.get("listenPort") {
        if p.as_u64().is_none_or(|p| p == 0 || p > 65535) {
            return Err(("listenPort", "`listenPort` must be a port number".into()));
        }
    }
    for key in ["hostname", "apiEndpoint", "deviceType", "country"] {
        if let Some(x) = v.get(key) {
            if !x.is_string() {
                return Err((key, format!("`{key}` must be a string")));
            }
        }
    }
    if let Some(h) = v.get("hostname").and_then(Value::as_str) {
        if let Some(why) = hostname_fault(h) {
            return Err((
                "hostname",
                format!("`hostname` is not a valid host name: {why}"),
            ));
        }
    }
    Ok(())
}

/// Why `h` is not a host name (RFC 1123 label), without quoting it.
fn hostname_fault(h: &str) -> Option<String> {
    if h.is_empty() {
        return Some("it is empty".into());
    }
    if h.len() > 63 {
        return Some(format!("{} bytes, at most 63", h.len()));
    }
    if h.starts_with('-') {
        return Some("it starts with `-`".into());
    }
    h.chars()
        .position(|c| !(c.is_ascii_alphanumeric() || c == '-'))
        .map(|i| {
            format!(
                "character {} is not a letter, digit or `-`",
                i.saturating_add(1)
            )
        })
}

/// Turns a TOML value from `[config]` into a [`ConfigValue`].
pub(crate) fn from_toml(
    v: &toml::Value,
    base: &Path,
    key: &str,
    at: &Location,
) -> Result<ConfigValue, Error> {
    let invalid = |reason: String| Error::Invalid {
        at: at.clone(),
        key: key.to_string(),
        reason,
    };
    match v {
        toml::Value::Table(t) if t.contains_key("from-file") || t.contains_key("from-env") => {
            let allowed = ["from-file", "from-env", "secret", "trim"];
            if let Some(bad) = t.keys().find(|k| !allowed.contains(&k.as_str())) {
                return Err(invalid(format!("unknown key `{bad}` in a value reference (allowed: from-file, from-env, secret, trim)")));
            }
            let secret = match t.get("secret") {
                None => false,
                Some(toml::Value::Boolean(b)) => *b,
                Some(_) => return Err(invalid("`secret` must be true or false".into())),
            };
            let trim = match t.get("trim") {
                None => true,
                Some(toml::Value::Boolean(b)) => *b,
                Some(_) => return Err(invalid("`trim` must be true or false".into())),
            };
            match (t.get("from-file"), t.get("from-env")) {
                (Some(toml::Value::String(p)), None) => Ok(ConfigValue::File {
                    path: base.join(p),
                    trim,
                    secret,
                }),
                (None, Some(toml::Value::String(var))) => Ok(ConfigValue::Env {
                    var: var.clone(),
                    secret,
                }),
                _ => Err(invalid(
                    "give exactly one of from-file or from-env, as a string".into(),
                )),
            }
        }
        toml::Value::Table(t) => {
            let mut items = Vec::new();
            for (k, v) in t {
                items.push((k.clone(), from_toml(v, base, &format!("{key}.{k}"), at)?));
            }
            Ok(ConfigValue::Table(items))
        }
        toml::Value::Datetime(_) => Err(invalid("dates are not JSON values; quote it".into())),
        other => {
            let json = serde_json::to_value(other).map_err(|e| invalid(e.to_string()))?;
            Ok(ConfigValue::Literal(json))
        }
    }
}

/// Resolves `[config]` entries (each with its location) into JSON.
pub(crate) fn resolve(
    entries: &[(String, ConfigValue, Location)],
    env: EnvLookup<'_>,
) -> Result<ResolvedConfig, Error> {
    let mut secrets = Vec::new();
    let mut map = Map::new();
    for (k, v, at) in entries {
        let path = vec![k.clone()];
        map.insert(k.clone(), resolve_one(v, &path, at, env, &mut secrets)?);
    }
    let value = sort(Value::Object(map));
    validate(&value).map_err(|(key, reason)| Error::Invalid {
        // The line of the key at fault, not of the first key.
        at: entries
            .iter()
            .find(|e| e.0 == key)
            .or(entries.first())
            .map(|e| e.2.clone())
            .unwrap_or_else(|| Location {
                file: PathBuf::new(),
                line: 0,
                column: 0,
            }),
        key: format!("config.{key}"),
        reason,
    })?;
    let mut value = value;
    record_secrets(&mut value, &secrets);
    let value = sort(value);
    Ok(ResolvedConfig { value, secrets })
}

fn resolve_one(
    v: &ConfigValue,
    path: &[String],
    at: &Location,
    env: EnvLookup<'_>,
    secrets: &mut Vec<Vec<String>>,
) -> Result<Value, Error> {
    let key = path.join(".");
    Ok(match v {
        ConfigValue::Literal(j) => j.clone(),
        ConfigValue::Table(items) => {
            let mut m = Map::new();
            for (k, v) in items {
                let mut p = path.to_vec();
                p.push(k.clone());
                m.insert(k.clone(), resolve_one(v, &p, at, env, secrets)?);
            }
            Value::Object(m)
        }
        ConfigValue::File {
            path: file,
            trim,
            secret,
        } => {
            let mut s = std::fs::read_to_string(file).map_err(|source| Error::InputFile {
                at: at.clone(),
                key: format!("config.{key}"),
                path: file.clone(),
                source,
            })?;
            if *trim {
                s.truncate(s.trim_end().len());
            }
            if *secret {
                secrets.push(path.to_vec());
            }
            Value::String(s)
        }
        ConfigValue::Env { var, secret } => {
            let s = env(var).ok_or_else(|| Error::MissingEnv {
                at: at.clone(),
                key: format!("config.{key}"),
                var: var.clone(),
            })?;
            if *secret {
                secrets.push(path.to_vec());
            }
            Value::String(s)
        }
    })
}

/// Where top-level `[config]` key `key` is written: the first line of the
/// `[config]` section that assigns it (`key = ...`) or opens a sub-table
/// (`[config.key...]`). Used because `toml::Value` keeps no spans.
pub(crate) fn key_location(file: &Path, src: &str, key: &str) -> Location {
    let mut in_config = false;
    let mut offset = 0;
    let mut found = None;
    for line in src.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with('[') {
            let name = t
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim();
            in_config = name == "config";
            if name == format!("config.{key}") || name.starts_with(&format!("config.{key}.")) {
                found = Some(offset + line.len() - t.len());
                break;
            }
        } else if in_config {
            let k = t.split('=').next().unwrap_or("").trim().trim_matches('"');
            if k == key && t.contains('=') {
                found = Some(offset + line.len() - t.len());
                break;
            }
        }
        offset += line.len();
    }
    locate(file, src, found.map(|f| f..f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc() -> Location {
        Location {
            file: "r.toml".into(),
            line: 3,
            column: 1,
        }
    }

    #[test]
    fn set_and_redact() {
        let entries = vec![
            (
                "hostname".to_string(),
                ConfigValue::Literal("bob".into()),
                loc(),
            ),
            (
                "deviceApiKey".to_string(),
                ConfigValue::Env {
                    var: "KEY".into(),
                    secret: false,
                },
                loc(),
            ),
            (
                "token".to_string(),
                ConfigValue::Env {
                    var: "TOK".into(),
                    secret: true,
                },
                loc(),
            ),
        ];
        let env = |v: &str| match v {
            "KEY" => Some("abc".to_string()),
            "TOK" => Some("s3cret".to_string()),
            _ => None,
        };
        let mut c = resolve(&entries, &env).unwrap();
        c.set("os.network.wifi=false").unwrap();
        c.set("listenPort=48484").unwrap();
        assert_eq!(c.value()["os"]["network"]["wifi"], Value::Bool(false));
        let r = c.redacted();
        assert_eq!(r["deviceApiKey"], REDACTED);
        assert_eq!(r["token"], REDACTED);
        assert_eq!(r["hostname"], "bob");
        let text = String::from_utf8(c.to_pretty_bytes()).unwrap();
        let keys: Vec<_> = c.value().as_object().unwrap().keys().cloned().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(text.ends_with("}\n"));
        assert!(c.set("hostname=bad_name!").is_err());
        assert!(c.set("uuid=xyz").is_err());
        assert!(c.set("noequals").is_err());
    }

    /// Issue 16 finding 7: the image records which keys are secret, so a
    /// reader of the written `config.json` alone redacts them.
    #[test]
    fn written_config_records_custom_secrets_for_readers() {
        let secret = |var: &str| ConfigValue::Env {
            var: var.into(),
            secret: true,
        };
        let entries = vec![
            ("wifiPsk".to_string(), secret("PSK"), loc()),
            ("deviceApiKey".to_string(), secret("KEY"), loc()),
            (
                "os".to_string(),
                ConfigValue::Table(vec![("vpnCode".to_string(), secret("VPN"))]),
                loc(),
            ),
        ];
        let env = |v: &str| Some(format!("value-of-{v}"));
        let c = resolve(&entries, &env).unwrap();
        let mut from_image: Value = serde_json::from_slice(&c.to_pretty_bytes()).unwrap();
        assert_eq!(
            from_image[SECRET_RECORD_KEY],
            serde_json::json!([["os", "vpnCode"], ["wifiPsk"]])
        );
        redact_known(&mut from_image);
        let text = from_image.to_string();
        assert!(!text.contains("value-of-"), "{text}");
        assert_eq!(from_image, c.redacted());
        // Only the credential keys: no record, the bytes are as before.
        let plain = resolve(&entries[1..2], &env).unwrap();
        assert!(plain.value().get(SECRET_RECORD_KEY).is_none());
    }

    #[test]
    fn missing_env_names_key() {
        let entries = vec![(
            "apiKey".to_string(),
            ConfigValue::Env {
                var: "NOPE".into(),
                secret: true,
            },
            loc(),
        )];
        let e = resolve(&entries, &|_| None).unwrap_err().to_string();
        assert_eq!(
            e,
            "r.toml:3:1: `config.apiKey`: environment variable NOPE is not set"
        );
    }
}
