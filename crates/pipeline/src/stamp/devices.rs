//! The devices file of `kiln stamp` (CSV or JSON, one device per row; the
//! format is in [`super`]'s doc), validated whole before anything is
//! written, and the redaction of secrets in what is reported.

use crate::Error;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// A static IPv4 NetworkManager profile for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticIp {
    /// Profile (file) name under `system-connections/`.
    pub name: String,
    /// Address with prefix length, e.g. `192.168.1.50/24`.
    pub address: String,
    /// Default gateway.
    pub gateway: Option<String>,
    /// DNS servers.
    pub dns: Vec<String>,
    /// Interface to bind to (`interface-name`), if any.
    pub interface: Option<String>,
}

impl StaticIp {
    /// The NetworkManager keyfile; its connection uuid is derived from
    /// `device_uuid` and the profile name (stable across runs).
    pub fn keyfile(&self, device_uuid: &str) -> Vec<u8> {
        let h = Sha256::digest(format!("kiln-stamp-nm\0{device_uuid}\0{}", self.name));
        let x = hex(&h[..16]);
        let uuid = format!(
            "{}-{}-5{}-a{}-{}",
            &x[..8],
            &x[8..12],
            &x[13..16],
            &x[17..20],
            &x[20..32]
        );
        let mut s = format!(
            "[connection]\nid={}\nuuid={uuid}\ntype=ethernet\nautoconnect=true\n",
            self.name
        );
        if let Some(i) = &self.interface {
            s.push_str(&format!("interface-name={i}\n"));
        }
        s.push_str("\n[ethernet]\n\n[ipv4]\nmethod=manual\n");
        match &self.gateway {
            Some(g) => s.push_str(&format!("address1={},{g}\n", self.address)),
            None => s.push_str(&format!("address1={}\n", self.address)),
        }
        if !self.dns.is_empty() {
            s.push_str(&format!(
                "dns={};\nignore-auto-dns=true\n",
                self.dns.join(";")
            ));
        }
        s.push_str("\n[ipv6]\naddr-gen-mode=stable-privacy\nmethod=auto\n");
        s.into_bytes()
    }
}

/// One row of the devices file.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// Output name (file stem).
    pub name: String,
    /// Line of the devices file the row starts on.
    pub line: usize,
    /// Keys merged into `config.json` (includes `uuid` and `hostname`).
    pub config: Value,
    /// Static IP profile, if any.
    pub network: Option<StaticIp>,
}

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn bad_row(file: &Path, line: usize, reason: impl Into<String>) -> Error {
    Error::Image {
        path: PathBuf::from(format!("{}:{line}", file.display())),
        reason: reason.into(),
    }
}

/// Replaces the values of secret-looking keys (names containing `key`,
/// `secret`, `token` or `password`, any case) and kiln's known credential
/// keys at any depth with `<redacted>`.
pub fn redact_secrets(v: &mut Value) {
    kiln_recipe::redact_known(v);
    redact_by_name(v);
}

/// Whether a devices-file column (or nested key) named `k` is secret.
fn secret_name(k: &str) -> bool {
    let l = k.to_ascii_lowercase();
    ["key", "secret", "token", "password"]
        .iter()
        .any(|s| l.contains(s))
}

/// A device's config with its secret keys recorded in it (see
/// [`kiln_recipe::SECRET_RECORD_KEY`]), so that `kiln inspect` of the
/// stamped image redacts them as the stamp manifest does.
pub(super) fn with_secret_record(config: &Value) -> Value {
    fn walk(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if let Value::Object(o) = v {
            for (k, val) in o {
                at.push(k.clone());
                if secret_name(k) {
                    out.push(at.clone());
                } else {
                    walk(val, at, out);
                }
                at.pop();
            }
        }
    }
    let mut paths = Vec::new();
    walk(config, &mut Vec::new(), &mut paths);
    let mut v = config.clone();
    kiln_recipe::record_secrets(&mut v, &paths);
    v
}

fn redact_by_name(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (k, val) in o.iter_mut() {
                if secret_name(k) {
                    *val = Value::String(kiln_recipe::REDACTED.into());
                } else {
                    redact_by_name(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_by_name),
        _ => {}
    }
}

/// Splits CSV text into records: (line the record starts on, fields).
fn csv_records(text: &str, file: &Path) -> Result<Vec<(usize, Vec<String>)>, Error> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    while chars.peek().is_some() {
        let start = line;
        // Skip blank and comment lines.
        if chars.peek() == Some(&'\n') || chars.peek() == Some(&'\r') {
            if chars.next() == Some('\n') {
                line += 1;
            }
            continue;
        }
        if chars.peek() == Some(&'#') {
            for c in chars.by_ref() {
                if c == '\n' {
                    line += 1;
                    break;
                }
            }
            continue;
        }
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut was_quoted = false;
        loop {
            let Some(c) = chars.next() else {
                if quoted {
                    return Err(bad_row(file, start, "unterminated quoted field"));
                }
                break;
            };
            if quoted {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => quoted = false,
                    '\n' => {
                        line += 1;
                        field.push('\n');
                    }
                    c => field.push(c),
                }
                continue;
            }
            match c {
                '"' if field.is_empty() && !was_quoted => {
                    quoted = true;
                    was_quoted = true;
                }
                '"' => return Err(bad_row(file, line, "stray quote in an unquoted field")),
                ',' => {
                    fields.push(std::mem::take(&mut field));
                    was_quoted = false;
                }
                '\r' if chars.peek() == Some(&'\n') => {}
                '\n' => {
                    line += 1;
                    break;
                }
                c => field.push(c),
            }
        }
        fields.push(field);
        out.push((start, fields));
    }
    Ok(out)
}

/// Sets `path` (dot-separated) in `obj` to `v`.
fn set_path(obj: &mut Map<String, Value>, path: &str, v: Value) -> Result<(), String> {
    let mut parts = path.split('.').peekable();
    let mut cur = obj;
    while let Some(p) = parts.next() {
        if p.is_empty() {
            return Err(format!("column `{path}`: empty key segment"));
        }
        if parts.peek().is_none() {
            if cur.insert(p.to_owned(), v).is_some() {
                return Err(format!("column `{path}` given twice"));
            }
            return Ok(());
        }
        let next = cur
            .entry(p.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        cur = next
            .as_object_mut()
            .ok_or_else(|| format!("column `{path}`: `{p}` is both a value and an object"))?;
    }
    Ok(())
}

fn parse_ipv4(s: &str, what: &str) -> Result<Ipv4Addr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{what} {s:?} is not an IPv4 address"))
}

fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn network_from(fields: &Map<String, Value>) -> Result<StaticIp, String> {
    let get = |k: &str| -> Result<Option<String>, String> {
        match fields.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(_) if k == "dns" => Ok(None),
            Some(_) => Err(format!("network.{k} must be a string")),
        }
    };
    if let Some(k) = fields
        .keys()
        .find(|k| !["address", "gateway", "dns", "interface", "name"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown network key `{k}` (known: address, gateway, dns, interface, name)"
        ));
    }
    let address = get("address")?.ok_or("network needs `address` (e.g. 192.168.1.50/24)")?;
    let (ip, prefix) = address
        .split_once('/')
        .ok_or_else(|| format!("network.address {address:?} needs a prefix length (/24)"))?;
    parse_ipv4(ip, "network.address")?;
    if prefix.parse::<u8>().map_or(true, |p| p > 32) {
        return Err(format!(
            "network.address {address:?}: prefix must be 0..=32"
        ));
    }
    let gateway = get("gateway")?;
    if let Some(g) = &gateway {
        parse_ipv4(g, "network.gateway")?;
    }
    let dns: Vec<String> = match fields.get("dns") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .ok_or("network.dns entries must be strings".to_owned())
            })
            .collect::<Result<_, _>>()?,
        _ => get("dns")?
            .map(|s| {
                s.split([';', ','])
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    };
    for d in &dns {
        parse_ipv4(d, "network.dns")?;
    }
    let interface = get("interface")?;
    if let Some(i) = &interface {
        if !is_safe_name(i) || i.len() > 15 {
            return Err(format!("network.interface {i:?} is not an interface name"));
        }
    }
    let name = get("name")?.unwrap_or_else(|| "static-ip".into());
    if !is_safe_name(&name) {
        return Err(format!(
            "network.name {name:?}: use letters, digits, '.', '_', '-'"
        ));
    }
    Ok(StaticIp {
        name,
        address,
        gateway,
        dns,
        interface,
    })
}

/// Builds a device from its fields (`name`, `network`, config keys).
fn device_from(mut obj: Map<String, Value>, line: usize) -> Result<Device, String> {
    let name = match obj.remove("name") {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err("`name` must be a string".into()),
    };
    let network = match obj.remove("network") {
        None => None,
        Some(Value::Object(n)) => Some(network_from(&n)?),
        Some(_) => return Err("`network` must be an object".into()),
    };
    let uuid = match obj.get("uuid") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("`uuid` must be a string".into()),
        None => return Err("missing `uuid`".into()),
    };
    if !(32..=62).contains(&uuid.len()) || !uuid.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "`uuid` must be 32 to 62 hex digits, got {} characters",
            uuid.len()
        ));
    }
    let hostname = match obj.get("hostname") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("`hostname` must be a string".into()),
        None => return Err("missing `hostname`".into()),
    };
    let ok = !hostname.is_empty()
        && hostname.len() <= 63
        && hostname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !hostname.starts_with('-');
    if !ok {
        return Err(format!("`hostname` {hostname:?} is not a valid host name"));
    }
    let name = name.unwrap_or_else(|| hostname.clone());
    if !is_safe_name(&name) {
        return Err(format!(
            "device name {name:?}: use letters, digits, '.', '_', '-'"
        ));
    }
    Ok(Device {
        name,
        line,
        config: Value::Object(obj),
        network,
    })
}

fn csv_devices(text: &str, file: &Path) -> Result<Vec<Device>, Error> {
    let records = csv_records(text, file)?;
    let Some((hline, header)) = records.first() else {
        return Err(bad_row(file, 1, "empty devices file"));
    };
    let mut cols: Vec<(String, bool)> = Vec::new();
    for h in header {
        let h = h.trim();
        let (key, is_json) = match h.strip_suffix(":json") {
            Some(k) => (k, true),
            None => (h, false),
        };
        if key.is_empty() {
            return Err(bad_row(file, *hline, "empty column name in the header"));
        }
        if cols.iter().any(|(k, _)| k == key) {
            return Err(bad_row(
                file,
                *hline,
                format!("column `{key}` appears twice"),
            ));
        }
        cols.push((key.to_owned(), is_json));
    }
    for need in ["uuid", "hostname"] {
        if !cols.iter().any(|(k, _)| k == need) {
            return Err(bad_row(file, *hline, format!("missing column `{need}`")));
        }
    }
    let mut out = Vec::new();
    for (line, fields) in &records[1..] {
        if fields.len() != cols.len() {
            return Err(bad_row(
                file,
                *line,
                format!("{} fields, the header has {}", fields.len(), cols.len()),
            ));
        }
        let mut obj = Map::new();
        for ((key, is_json), cell) in cols.iter().zip(fields) {
            if cell.is_empty() {
                continue;
            }
            let v = if *is_json {
                serde_json::from_str(cell).map_err(|e| {
                    bad_row(
                        file,
                        *line,
                        format!("column `{key}:json`: invalid JSON: {e}"),
                    )
                })?
            } else {
                match cell.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    s => Value::String(s.to_owned()),
                }
            };
            set_path(&mut obj, key, v).map_err(|r| bad_row(file, *line, r))?;
        }
        out.push(device_from(obj, *line).map_err(|r| bad_row(file, *line, r))?);
    }
    Ok(out)
}

/// Lines on which the top-level array's elements start.
fn element_lines(text: &str) -> Vec<usize> {
    let (mut line, mut depth, mut in_str, mut esc) = (1usize, 0i32, false, false);
    let mut out = Vec::new();
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '[' | '{' => {
                if depth == 1 {
                    out.push(line);
                }
                depth += 1;
            }
            ']' | '}' => depth -= 1,
            _ => {}
        }
    }
    out
}

fn json_devices(text: &str, file: &Path) -> Result<Vec<Device>, Error> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| bad_row(file, e.line(), format!("invalid JSON: {e}")))?;
    let Value::Array(items) = v else {
        return Err(bad_row(file, 1, "expected a JSON array of device objects"));
    };
    let lines = element_lines(text);
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let line = lines.get(i).copied().unwrap_or(1);
        let Value::Object(obj) = item else {
            return Err(bad_row(
                file,
                line,
                format!("device {} is not an object", i + 1),
            ));
        };
        out.push(device_from(obj, line).map_err(|r| bad_row(file, line, r))?);
    }
    Ok(out)
}

/// Reads and validates the devices file (see the module doc).
///
/// # Errors
/// [`Error::Image`] whose path is `file:line` for the first problem:
/// syntax, a missing `uuid`/`hostname` column or value, invalid values,
/// duplicate device names or uuids, no devices at all.
pub fn read_devices(path: &Path) -> Result<Vec<Device>, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Output {
        path: path.to_path_buf(),
        op: "reading the devices file",
        source,
    })?;
    let text = devices_text(&bytes, path)?;
    let devices = if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        json_devices(text, path)?
    } else {
        csv_devices(text, path)?
    };
    if devices.is_empty() {
        return Err(bad_row(path, 1, "no devices"));
    }
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut uuids: BTreeMap<String, usize> = BTreeMap::new();
    for d in &devices {
        if let Some(first) = names.insert(d.name.to_ascii_lowercase(), d.line) {
            return Err(bad_row(
                path,
                d.line,
                format!("duplicate device name {:?} (first on line {first})", d.name),
            ));
        }
        let u = d.config["uuid"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if let Some(first) = uuids.insert(u, d.line) {
            return Err(bad_row(
                path,
                d.line,
                format!("duplicate uuid (first on line {first})"),
            ));
        }
    }
    Ok(devices)
}

/// The devices file as text: UTF-8 (bad input otherwise, naming the line
/// of the first invalid byte), without the byte order mark spreadsheet
/// programs put first ("CSV UTF-8" in Excel and LibreOffice).
fn devices_text<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a str, Error> {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(body).map_err(|e| {
        let valid = body.get(..e.valid_up_to()).unwrap_or_default();
        let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
        bad_row(
            path,
            line,
            format!(
                "not UTF-8 text (invalid byte at offset {}); save it as UTF-8",
                e.valid_up_to() + (bytes.len() - body.len())
            ),
        )
    })
}
