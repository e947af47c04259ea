//! The application's compose file (compose-spec: top-level `services`,
//! `volumes`, `networks`), read as YAML. Each service is kept whole (its
//! `composition`, keys sorted) for `apps.json`; `image`, `environment`
//! and `labels` are also pulled out and normalised (list forms `K=V`
//! become maps, scalar values become strings).

use crate::Error;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest compose file read, bytes.
const MAX_COMPOSE_BYTES: u64 = 4 << 20;

/// A parsed compose file.
#[derive(Debug, Clone, PartialEq)]
pub struct Compose {
    /// Where it came from (for messages).
    pub path: PathBuf,
    /// Services by name (sorted).
    pub services: BTreeMap<String, Service>,
    /// Top-level `volumes`, keys sorted.
    pub volumes: Value,
    /// Top-level `networks`, keys sorted.
    pub networks: Value,
}

/// One service.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// The `image` reference as written.
    pub image: String,
    /// Environment variables.
    pub environment: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The whole service definition (ports, volumes, restart,
    /// privileged, command, ...), keys sorted recursively.
    pub composition: Value,
}

/// Recursively sorts object keys.
pub(crate) fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                if let Some(x) = m.get(k) {
                    out.insert(k.clone(), sorted(x));
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

impl Compose {
    /// Reads and parses the compose file at `path`.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let md = std::fs::metadata(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            op: "cannot read compose file",
            source,
        })?;
        if md.len() > MAX_COMPOSE_BYTES {
            return Err(Error::invalid(path, "compose file larger than 4 MiB"));
        }
        let text = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            op: "cannot read compose file",
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses compose YAML; `path` labels errors.
    pub fn parse(path: &Path, yaml: &[u8]) -> Result<Self, Error> {
        let v: Value = serde_yaml_ng::from_slice(yaml).map_err(|source| Error::Compose {
            path: path.to_path_buf(),
            source,
        })?;
        let svc_err = |service: &str, reason: &str| Error::ComposeService {
            path: path.to_path_buf(),
            service: service.to_string(),
            reason: reason.to_string(),
        };
        let services = v
            .get("services")
            .and_then(Value::as_object)
            .ok_or_else(|| svc_err("", "no `services` mapping"))?;
        if services.is_empty() {
            return Err(svc_err("", "`services` is empty"));
        }
        let mut out = BTreeMap::new();
        for (name, def) in services {
            let ok_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok_name {
                return Err(svc_err(name, "invalid service name"));
            }
            if !def.is_object() {
                return Err(svc_err(name, "definition is not a mapping"));
            }
            let image = match def.get("image") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                _ if def.get("build").is_some() => {
                    return Err(svc_err(
                        name,
                        "uses `build`; preloading needs a prebuilt `image`",
                    ))
                }
                _ => return Err(svc_err(name, "has no `image`")),
            };
            let environment =
                kv(def.get("environment")).ok_or_else(|| svc_err(name, "bad `environment`"))?;
            let labels = kv(def.get("labels")).ok_or_else(|| svc_err(name, "bad `labels`"))?;
            out.insert(
                name.clone(),
                Service {
                    image,
                    environment,
                    labels,
                    composition: sorted(def),
                },
            );
        }
        let top = |k: &str| {
            sorted(
                v.get(k)
                    .filter(|x| !x.is_null())
                    .unwrap_or(&Value::Object(Map::new())),
            )
        };
        Ok(Self {
            path: path.to_path_buf(),
            services: out,
            volumes: top("volumes"),
            networks: top("networks"),
        })
    }
}

/// A compose key/value section: a mapping, or a list of `K=V`.
fn kv(v: Option<&Value>) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, x) in m {
                out.insert(k.clone(), scalar(x)?);
            }
        }
        Some(Value::Array(a)) => {
            for x in a {
                let s = x.as_str()?;
                let (k, val) = s.split_once('=').unwrap_or((s, ""));
                out.insert(k.to_string(), val.to_string());
            }
        }
        Some(_) => return None,
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
version: "2.1"
services:
  api:
    image: demo/api:1.0
    environment:
      PORT: 8080
      DEBUG: true
    labels: ["io.balena.features.supervisor-api=1"]
    ports: ["80:8080"]
    restart: always
    privileged: false
    command: ["/bin/busybox", "httpd", "-f"]
    volumes: ["data:/data"]
    networks: [backend]
  db:
    image: demo/db
volumes:
  data: {}
networks:
  backend: {}
"#;

    #[test]
    fn parses_services() {
        let c = Compose::parse(Path::new("c.yml"), YAML.as_bytes()).unwrap();
        let api = &c.services["api"];
        assert_eq!(api.image, "demo/api:1.0");
        assert_eq!(api.environment["PORT"], "8080");
        assert_eq!(api.environment["DEBUG"], "true");
        assert_eq!(api.labels["io.balena.features.supervisor-api"], "1");
        let comp = serde_json::to_string(&api.composition).unwrap();
        assert!(comp.starts_with("{\"command\":"), "{comp}");
        assert_eq!(api.composition["restart"], "always");
        assert_eq!(c.volumes, serde_json::json!({"data": {}}));
        assert!(c.services["db"].environment.is_empty());
    }

    #[test]
    fn refuses_bad_files() {
        for (y, what) in [
            ("services: {}", "empty"),
            ("services:\n  a:\n    build: .", "build"),
            ("services:\n  a:\n    environment: {}", "image"),
            ("services: [", "yaml"),
            ("services:\n  'a b':\n    image: x", "name"),
        ] {
            assert!(
                Compose::parse(Path::new("c.yml"), y.as_bytes()).is_err(),
                "{what}"
            );
        }
    }
}
