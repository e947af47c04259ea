//! `apps.json`, the target state the device applies once on first boot
//! (DESIGN.md "Device-side facts"), and the other files the OS expects at
//! the root of the data partition.
//!
//! ```text
//! {"apps": {"<app uuid>": {"class": "fleet", "id": N, "name": "...",
//!    "releases": {"<commit>": {"id": N, "networks": {...},
//!      "services": {"<name>": {"composition": {...}, "environment": {...},
//!        "id": N, "image": "<name>@sha256:<manifest>", "image_id": N,
//!        "labels": {...}}}, "volumes": {...}}}}},
//!  "config": {...}, "pinDevice": bool}
//! ```
//! Keys are sorted at every level and the output ends with a newline, so
//! the same inputs give the same bytes. Each service's `image` is the
//! digest reference stored in `repositories.json`, so the device finds it
//! locally and never pulls.

use crate::compose::{sorted, Compose};
use crate::{Digest, Error, ImageRef, Store};
use kiln_tree::{Content, Entry, EntryKind, Metadata, Timestamp, TreePath, TreeSink};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Identifiers of the app and its release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppIds {
    /// App uuid (32 lowercase hex).
    pub app_uuid: String,
    /// App id.
    pub app_id: u64,
    /// App name.
    pub app_name: String,
    /// Release commit (32 lowercase hex).
    pub release_commit: String,
    /// Release id.
    pub release_id: u64,
}

fn hash_u32(parts: &[&[u8]]) -> u64 {
    let mut buf = Vec::new();
    for p in parts {
        buf.extend_from_slice(p);
        buf.push(0);
    }
    let d = Digest::of(&buf);
    let b = d.bytes();
    let v = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x3fff_ffff;
    u64::from(v.max(1))
}

fn hash_hex32(parts: &[&[u8]]) -> String {
    let mut buf = Vec::new();
    for p in parts {
        buf.extend_from_slice(p);
        buf.push(0);
    }
    let mut h = Digest::of(&buf).hex();
    h.truncate(32);
    h
}

impl AppIds {
    /// Ids derived from a seed (e.g. the recipe's reproducibility seed)
    /// and the app name: same seed, same ids.
    pub fn derive(seed: &[u8], app_name: &str) -> Self {
        let n = app_name.as_bytes();
        Self {
            app_uuid: hash_hex32(&[b"kiln-app-uuid", seed, n]),
            app_id: hash_u32(&[b"kiln-app-id", seed, n]),
            app_name: app_name.to_string(),
            release_commit: hash_hex32(&[b"kiln-release-commit", seed, n]),
            release_id: hash_u32(&[b"kiln-release-id", seed, n]),
        }
    }

    fn validate(&self) -> Result<(), Error> {
        let hex32 = |s: &str| {
            s.len() == 32
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !hex32(&self.app_uuid) {
            return Err(Error::InvalidRequest(
                "app uuid must be 32 lowercase hex digits",
            ));
        }
        if !hex32(&self.release_commit) {
            return Err(Error::InvalidRequest(
                "release commit must be 32 lowercase hex digits",
            ));
        }
        if self.app_name.is_empty() {
            return Err(Error::InvalidRequest("app name is empty"));
        }
        Ok(())
    }
}

/// The `apps.json` document.
#[derive(Debug, Clone, PartialEq)]
pub struct AppsJson {
    value: Value,
}

impl AppsJson {
    /// Builds the target state for `compose`, whose images must all be in
    /// `store`. `config` are the device config variables, `pin_device`
    /// the optional `pinDevice`.
    pub fn build(
        compose: &Compose,
        store: &Store,
        ids: &AppIds,
        config: &BTreeMap<String, String>,
        pin_device: Option<bool>,
    ) -> Result<Self, Error> {
        ids.validate()?;
        let mut services = Map::new();
        for (name, svc) in &compose.services {
            let missing = || Error::ImageNotProvided {
                path: compose.path.clone(),
                service: name.clone(),
                image: svc.image.clone(),
                available: store.references().join(", "),
            };
            let v = service_json(store, ids, name, &svc.image, svc.composition.clone(), svc)
                .ok_or_else(missing)?;
            services.insert(name.clone(), v);
        }
        let release = json!({
            "id": ids.release_id,
            "networks": compose.networks,
            "services": Value::Object(services),
            "volumes": compose.volumes,
        });
        let mut releases = Map::new();
        releases.insert(ids.release_commit.clone(), release);
        let app = json!({
            "class": "fleet",
            "id": ids.app_id,
            "name": ids.app_name,
            "releases": Value::Object(releases),
        });
        let mut apps = Map::new();
        apps.insert(ids.app_uuid.clone(), app);
        let mut top = Map::new();
        top.insert("apps".into(), Value::Object(apps));
        top.insert("config".into(), json!(config));
        if let Some(p) = pin_device {
            top.insert("pinDevice".into(), Value::Bool(p));
        }
        Ok(Self {
            value: sorted(&Value::Object(top)),
        })
    }

    /// Adds a service that is not in the compose file (kiln's swap
    /// service) to the app's release: it runs `image` (a reference the
    /// store holds) with compose-style `composition` (`privileged`,
    /// `command`, `restart`, `healthcheck`, ...) and `labels`.
    ///
    /// # Errors
    /// [`Error::ImageNotProvided`] if the store lacks `image`,
    /// [`Error::InvalidRequest`] if the release already has a service
    /// called `name`.
    pub fn add_service(
        &mut self,
        store: &Store,
        ids: &AppIds,
        name: &str,
        image: &str,
        composition: Value,
        labels: BTreeMap<String, String>,
    ) -> Result<(), Error> {
        let svc = crate::compose::Service {
            image: image.to_string(),
            environment: BTreeMap::new(),
            labels,
            composition: composition.clone(),
        };
        let v = service_json(store, ids, name, image, composition, &svc).ok_or_else(|| {
            Error::ImageNotProvided {
                path: std::path::PathBuf::from("recipe [swap] service-image"),
                service: name.to_string(),
                image: image.to_string(),
                available: store.references().join(", "),
            }
        })?;
        let services = self.value["apps"][ids.app_uuid.as_str()]["releases"]
            [ids.release_commit.as_str()]["services"]
            .as_object_mut()
            .ok_or(Error::InvalidRequest(
                "apps.json has no release to add a service to",
            ))?;
        if services.contains_key(name) {
            return Err(Error::InvalidRequest(
                "a service of that name is already in the compose file",
            ));
        }
        services.insert(name.to_string(), v);
        self.value = sorted(&self.value);
        Ok(())
    }

    /// The document.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// Pretty-printed bytes with a final newline (deterministic).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(&self.value).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// One service of a release: the image pinned by manifest digest, ids
/// derived from the release commit, name and image id; `None` if the
/// store lacks the image.
fn service_json(
    store: &Store,
    ids: &AppIds,
    name: &str,
    image: &str,
    composition: Value,
    svc: &crate::compose::Service,
) -> Option<Value> {
    let r = ImageRef::parse(image).ok()?;
    let img = store.find(image)?;
    let sid = hash_u32(&[
        b"kiln-service-id",
        ids.release_commit.as_bytes(),
        name.as_bytes(),
    ]);
    let iid = hash_u32(&[
        b"kiln-image-id",
        ids.release_commit.as_bytes(),
        name.as_bytes(),
        img.id.to_string().as_bytes(),
    ]);
    Some(json!({
        "composition": composition,
        "environment": svc.environment,
        "id": sid,
        "image": format!("{}@{}", r.name, img.manifest_digest),
        "image_id": iid,
        "labels": svc.labels,
    }))
}

/// Feeds the data partition's root files: `apps.json`, an empty
/// `remove_me_to_reset` and the `resin-data/` directory, all root-owned,
/// with mtime `time`.
pub fn feed_data_extras<S: TreeSink>(
    sink: &mut S,
    apps_json: &[u8],
    time: Timestamp,
) -> Result<(), S::Error> {
    let mk = |name: &[u8], kind, mode| {
        // OK: constant single-component names always parse.
        TreePath::parse(name).map(|p| Entry::new(p, kind, Metadata::new(mode, time)))
    };
    if let Ok(e) = mk(b"resin-data", EntryKind::Dir, 0o755) {
        sink.add(&e, Content::None)?;
    }
    if let Ok(e) = mk(b"remove_me_to_reset", EntryKind::File, 0o644) {
        sink.add(&e, Content::bytes(b""))?;
    }
    if let Ok(e) = mk(b"apps.json", EntryKind::File, 0o644) {
        sink.add(&e, Content::bytes(apps_json))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_valid() {
        let a = AppIds::derive(b"seed", "bob");
        assert_eq!(a, AppIds::derive(b"seed", "bob"));
        assert_ne!(a.app_uuid, AppIds::derive(b"other", "bob").app_uuid);
        a.validate().unwrap();
        assert!(a.app_id > 0 && a.release_id > 0);
    }
}
