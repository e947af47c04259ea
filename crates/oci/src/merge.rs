//! Merging a new preload into an engine store that already exists (a base
//! image's data partition, written by a real engine with random ids).
//!
//! [`ExistingStore::scan`] reads what the old store holds through a small
//! [`StoreView`] (the caller implements it over whatever holds the old
//! tree, e.g. kiln-ext4's reader; [`DirStoreView`] does it for a
//! directory). [`crate::Store::feed_onto`] then emits only what is new, so the
//! caller feeds the old tree (minus [`ExistingStore::SKIP_PATHS`]) and
//! then the new store into the same filesystem writer:
//!
//! | old store has                                   | `feed_onto` does |
//! |-------------------------------------------------|------------------|
//! | `layerdb/sha256/<chain id>/` (with `cache-id`)  | writes nothing for that layer; a new child's `lower` starts with the old layer's `overlay2/<cache id>/link` and continues with the old `lower` |
//! | that layer without `overlay2/<cache id>/committed` and a new child | writes `overlay2/<old cache id>/committed` |
//! | `imagedb/content/sha256/<image id>`             | does not write the config again |
//! | `repositories.json`                             | writes the merged file: old tags kept, a tag the new preload sets points at the new image (the old image stays in imagedb) |
//! | any of the standard directories (`image/overlay2/...`, `overlay2/l`) | does not emit it again (old metadata kept) |
//!
//! Paths are relative to the engine's data root (`docker/` on the data
//! partition). Layer format reference: moby `layer/filestore.go`,
//! `daemon/graphdriver/overlay2/overlay.go` (the layout table is in the
//! docs of [`crate::Store`]'s module, `store.rs`).

use crate::layout::STORE_DIRS;
use crate::{Digest, Error};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

/// The error a [`StoreView`] gives back.
pub type ViewError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Read access to an existing engine store, paths relative to its data
/// root with `/` separators (`image/overlay2/repositories.json`).
pub trait StoreView {
    /// The bytes of the regular file at `path`, `None` if it does not
    /// exist. Only small metadata files are read (ids, JSON).
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, ViewError>;
    /// The names in the directory at `path`, `None` if it does not exist.
    fn list(&self, path: &str) -> Result<Option<Vec<String>>, ViewError>;
}

/// A [`StoreView`] over a data root on the build machine.
#[derive(Debug, Clone)]
pub struct DirStoreView {
    root: PathBuf,
}

impl DirStoreView {
    /// The store whose data root is `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

/// Largest metadata file read from an existing store, bytes.
pub const MAX_METADATA_BYTES: u64 = 16 << 20;

impl StoreView for DirStoreView {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, ViewError> {
        let p = self.root.join(path);
        match std::fs::symlink_metadata(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Box::new(e)),
            Ok(md) if md.len() > MAX_METADATA_BYTES => {
                return Err(
                    format!("{}: larger than {MAX_METADATA_BYTES} bytes", p.display()).into(),
                )
            }
            Ok(_) => {}
        }
        Ok(Some(std::fs::read(&p)?))
    }
    fn list(&self, path: &str) -> Result<Option<Vec<String>>, ViewError> {
        let p = self.root.join(path);
        let rd = match std::fs::read_dir(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Box::new(e)),
            Ok(rd) => rd,
        };
        let mut v = Vec::new();
        for e in rd {
            v.push(e?.file_name().to_string_lossy().into_owned());
        }
        v.sort();
        Ok(Some(v))
    }
}

/// One layer the old store already has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingLayer {
    /// Its overlay2 directory name.
    pub cache_id: String,
    /// Its short link id (`overlay2/<cache id>/link`).
    pub link: String,
    /// Its `lower` file (`l/<id>:l/<id>...`), empty for a base layer.
    pub lower: String,
    /// Whether `overlay2/<cache id>/committed` exists.
    pub committed: bool,
}

/// What an existing engine store holds, as far as merging needs it.
#[derive(Debug, Clone, Default)]
pub struct ExistingStore {
    layers: HashMap<Digest, ExistingLayer>,
    images: HashSet<Digest>,
    repositories: BTreeMap<String, BTreeMap<String, String>>,
    dirs: HashSet<String>,
}

const LAYERDB: &str = "image/overlay2/layerdb/sha256";
const IMAGEDB: &str = "image/overlay2/imagedb/content/sha256";
const REPOS: &str = "image/overlay2/repositories.json";

fn bad(path: String, reason: &'static str) -> Error {
    Error::ExistingStore { path, reason }
}

fn text(bytes: Vec<u8>, path: &str) -> Result<String, Error> {
    String::from_utf8(bytes)
        .map(|s| s.trim().to_string())
        .map_err(|_| bad(path.to_string(), "not UTF-8 text"))
}

impl ExistingStore {
    /// Paths of the old tree the caller must NOT feed (feed_onto writes
    /// their merged replacement).
    pub const SKIP_PATHS: &'static [&'static str] = &[REPOS];

    /// An empty store (nothing to merge with).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Reads `repositories.json`, every `layerdb/sha256/<chain id>` with
    /// its `cache-id` and the overlay2 `link`/`lower`/`committed` it
    /// names, and the image ids in `imagedb`.
    pub fn scan(view: &dyn StoreView) -> Result<Self, Error> {
        let read = |p: &str| {
            view.read(p).map_err(|source| Error::StoreView {
                path: p.to_string(),
                source,
            })
        };
        let list = |p: &str| {
            view.list(p).map_err(|source| Error::StoreView {
                path: p.to_string(),
                source,
            })
        };
        let mut me = Self::default();
        for d in STORE_DIRS {
            if list(d.0)?.is_some() {
                me.dirs.insert(d.0.to_string());
            }
        }
        if let Some(bytes) = read(REPOS)? {
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|_| bad(REPOS.to_string(), "malformed JSON"))?;
            if let Some(repos) = v.get("Repositories").and_then(|r| r.as_object()) {
                for (name, refs) in repos {
                    let refs = refs
                        .as_object()
                        .ok_or_else(|| bad(REPOS.to_string(), "repository is not an object"))?;
                    let m = me.repositories.entry(name.clone()).or_default();
                    for (r, id) in refs {
                        let id = id
                            .as_str()
                            .ok_or_else(|| bad(REPOS.to_string(), "image id is not a string"))?;
                        m.insert(r.clone(), id.to_string());
                    }
                }
            }
        }
        for name in list(IMAGEDB)?.unwrap_or_default() {
            if let Some(d) = Digest::from_hex(&name) {
                me.images.insert(d);
            }
        }
        for name in list(LAYERDB)?.unwrap_or_default() {
            let Some(chain) = Digest::from_hex(&name) else {
                continue; // `tmp` and the like
            };
            let cid_path = format!("{LAYERDB}/{name}/cache-id");
            let cache_id = text(
                read(&cid_path)?.ok_or_else(|| bad(cid_path.clone(), "missing"))?,
                &cid_path,
            )?;
            if cache_id.is_empty()
                || !cache_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(bad(cid_path, "not a cache id"));
            }
            let link_path = format!("overlay2/{cache_id}/link");
            let link = text(
                read(&link_path)?.ok_or_else(|| bad(link_path.clone(), "missing"))?,
                &link_path,
            )?;
            if link.is_empty() || !link.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(bad(link_path, "not a short link id"));
            }
            let lower_path = format!("overlay2/{cache_id}/lower");
            let lower = match read(&lower_path)? {
                Some(b) => text(b, &lower_path)?,
                None => String::new(),
            };
            let committed = read(&format!("overlay2/{cache_id}/committed"))?.is_some();
            me.layers.insert(
                chain,
                ExistingLayer {
                    cache_id,
                    link,
                    lower,
                    committed,
                },
            );
        }
        Ok(me)
    }

    /// The layer with `chain_id`, if the old store has it.
    pub fn layer(&self, chain_id: &Digest) -> Option<&ExistingLayer> {
        self.layers.get(chain_id)
    }

    /// Number of layers in the old store.
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// Whether the old store has the image config `id`.
    pub fn has_image(&self, id: &Digest) -> bool {
        self.images.contains(id)
    }

    /// Image ids in the old store, sorted.
    pub fn image_ids(&self) -> Vec<Digest> {
        let mut v: Vec<Digest> = self.images.iter().copied().collect();
        v.sort_by_key(|d| d.hex());
        v
    }

    /// Whether the old store has the standard directory `path`.
    pub fn has_dir(&self, path: &str) -> bool {
        self.dirs.contains(path)
    }

    /// The old `repositories.json` references (`name -> ref -> id`).
    pub fn repositories(&self) -> &BTreeMap<String, BTreeMap<String, String>> {
        &self.repositories
    }

    /// Old references with the new store's laid over them.
    pub(crate) fn merged_repositories(
        &self,
        new: BTreeMap<String, BTreeMap<String, String>>,
    ) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut out = self.repositories.clone();
        for (name, refs) in new {
            out.entry(name).or_default().extend(refs);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem(BTreeMap<String, Vec<u8>>);
    impl StoreView for Mem {
        fn read(&self, path: &str) -> Result<Option<Vec<u8>>, ViewError> {
            Ok(self.0.get(path).cloned())
        }
        fn list(&self, path: &str) -> Result<Option<Vec<String>>, ViewError> {
            let pre = format!("{path}/");
            let mut v: Vec<String> = self
                .0
                .keys()
                .filter_map(|k| k.strip_prefix(&pre))
                .filter_map(|r| r.split('/').next())
                .map(str::to_string)
                .collect();
            v.dedup();
            Ok((!v.is_empty()).then_some(v))
        }
    }

    #[test]
    fn scan_reads_layers_images_and_tags() {
        let chain = Digest::of(b"layer");
        let img = Digest::of(b"config");
        let mut m = BTreeMap::new();
        let put = |m: &mut BTreeMap<String, Vec<u8>>, k: String, v: &[u8]| {
            m.insert(k, v.to_vec());
        };
        put(
            &mut m,
            format!("{LAYERDB}/{}/cache-id", chain.hex()),
            b"abc123",
        );
        put(
            &mut m,
            format!("{LAYERDB}/{}/diff", chain.hex()),
            b"sha256:x",
        );
        put(&mut m, "overlay2/abc123/link".into(), b"SHORTID\n");
        put(&mut m, "overlay2/abc123/committed".into(), b"");
        put(&mut m, format!("{IMAGEDB}/{}", img.hex()), b"{}");
        put(
            &mut m,
            REPOS.into(),
            format!(r#"{{"Repositories":{{"old":{{"old:1":"{img}"}}}}}}"#).as_bytes(),
        );
        let s = ExistingStore::scan(&Mem(m.clone())).unwrap();
        let l = s.layer(&chain).unwrap();
        assert_eq!(
            (l.cache_id.as_str(), l.link.as_str()),
            ("abc123", "SHORTID")
        );
        assert!(l.committed && l.lower.is_empty());
        assert!(s.has_image(&img));
        assert!(s.has_dir("overlay2"));
        assert!(!s.has_dir("overlay2/l"));
        let mut new = BTreeMap::new();
        new.insert(
            "old".to_string(),
            BTreeMap::from([("old:1".to_string(), "sha256:new".to_string())]),
        );
        new.insert(
            "app".to_string(),
            BTreeMap::from([("app:2".to_string(), "sha256:app".to_string())]),
        );
        let merged = s.merged_repositories(new);
        assert_eq!(merged["old"]["old:1"], "sha256:new");
        assert_eq!(merged["app"]["app:2"], "sha256:app");
        // A layer without its overlay2 link is refused, naming the path.
        m.remove("overlay2/abc123/link");
        let e = ExistingStore::scan(&Mem(m)).unwrap_err();
        assert!(e.to_string().contains("overlay2/abc123/link"), "{e}");
    }
}
