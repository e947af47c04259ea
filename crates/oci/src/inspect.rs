//! Reading back what a built image holds, for `kiln inspect`: the
//! engine's `repositories.json` and the data partition's `apps.json`
//! (formats in [`crate::store`] and [`crate::AppsJson`]).

use crate::{Digest, Error};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// References stored in `repositories.json`: `name:tag` or
/// `name@sha256:...` -> image ID.
pub fn parse_repositories_json(bytes: &[u8]) -> Result<BTreeMap<String, Digest>, Error> {
    let bad = |reason: &str| Error::invalid(Path::new("repositories.json"), reason);
    let v: Value = serde_json::from_slice(bytes).map_err(|source| Error::BadJson {
        input: "repositories.json".into(),
        what: "repositories.json".into(),
        source,
    })?;
    let repos = v
        .get("Repositories")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("no Repositories object"))?;
    let mut out = BTreeMap::new();
    for refs in repos.values() {
        let refs = refs
            .as_object()
            .ok_or_else(|| bad("repository is not an object"))?;
        for (r, id) in refs {
            let id = id
                .as_str()
                .and_then(Digest::parse)
                .ok_or_else(|| bad("image ID is not a sha256 digest"))?;
            out.insert(r.clone(), id);
        }
    }
    Ok(out)
}

/// One app of an `apps.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSummary {
    /// App uuid.
    pub uuid: String,
    /// App name.
    pub name: String,
    /// Release commits.
    pub releases: Vec<String>,
    /// `(service, image reference)` of every release, sorted.
    pub services: Vec<(String, String)>,
}

/// The apps of an `apps.json` (target state).
pub fn parse_apps_json(bytes: &[u8]) -> Result<Vec<AppSummary>, Error> {
    let bad = |reason: &str| Error::invalid(Path::new("apps.json"), reason);
    let v: Value = serde_json::from_slice(bytes).map_err(|source| Error::BadJson {
        input: "apps.json".into(),
        what: "apps.json".into(),
        source,
    })?;
    let apps = v
        .get("apps")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("no apps object"))?;
    let mut out = Vec::new();
    for (uuid, app) in apps {
        let name = app
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut releases = Vec::new();
        let mut services = Vec::new();
        if let Some(rels) = app.get("releases").and_then(Value::as_object) {
            for (commit, rel) in rels {
                releases.push(commit.clone());
                if let Some(svcs) = rel.get("services").and_then(Value::as_object) {
                    for (s, def) in svcs {
                        let image = def.get("image").and_then(Value::as_str).unwrap_or_default();
                        services.push((s.clone(), image.to_string()));
                    }
                }
            }
        }
        services.sort();
        out.push(AppSummary {
            uuid: uuid.clone(),
            name,
            releases,
            services,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_files() {
        let id = Digest::of(b"cfg");
        let repos = format!(
            r#"{{"Repositories":{{"demo/api":{{"demo/api:1.0":"{id}","demo/api@{id}":"{id}"}}}}}}"#
        );
        let m = parse_repositories_json(repos.as_bytes()).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m["demo/api:1.0"], id);
        assert!(parse_repositories_json(b"{}").is_err());
        let apps = br#"{"apps":{"u1":{"name":"bob","releases":{"c1":{"services":{"db":{"image":"x@sha256:1"},"api":{"image":"y"}}}}}},"config":{}}"#;
        let a = parse_apps_json(apps).unwrap();
        assert_eq!(a[0].name, "bob");
        assert_eq!(a[0].releases, vec!["c1"]);
        assert_eq!(a[0].services[0], ("api".to_string(), "y".to_string()));
        assert!(parse_apps_json(b"[]").is_err());
    }
}
