//! The engine's overlay2 store (moby `image/`, `layer/`,
//! `daemon/graphdriver/overlay2`; balenaEngine uses the same layout),
//! relative to the data root (`/var/lib/docker`, `docker/` on the data
//! partition):
//!
//! | path | mode | content |
//! |---|---|---|
//! | `image/overlay2/repositories.json` | 0600 | `{"Repositories":{name:{"name:tag"\|"name@sha256:<manifest>": "sha256:<image id>"}}}` |
//! | `image/overlay2/imagedb/content/sha256/<image id>` | 0600 | config bytes, unchanged |
//! | `image/overlay2/imagedb/metadata/sha256/` | 0700 | empty (`docker load` writes nothing here) |
//! | `image/overlay2/layerdb/sha256/<chain id>/diff` | 0644 | `sha256:<diff id>` |
//! | `.../size` | 0644 | decimal bytes of non-directory inodes in `diff/` (hardlinks once, symlinks by target length) |
//! | `.../cache-id` | 0644 | 64 hex: the overlay2 directory |
//! | `.../parent` | 0644 | `sha256:<parent chain id>` (not for base layers) |
//! | `.../tar-split.json.gz` | 0644 | see [`crate::tarsplit`] |
//! | `overlay2/<cache id>/` | 0710 | `diff/` (layer content), `link` (26-char short id), and for layers with a parent: `lower` (`l/<parent>:l/<grandparent>...`, nearest first), `work/` (0700) |
//! | `overlay2/<parent cache id>/committed` | 0600 | empty, marks a layer that has children |
//! | `overlay2/l/<short id>` | symlink | `../<cache id>/diff` |
//!
//! Other directories (`image/overlay2/distribution`, `layerdb/tmp`) are
//! created empty as the engine leaves them. Ids the engine picks at random
//! are derived from the chain id instead: cache id =
//! `hex(sha256("kiln-overlay2-cache-id\0" + chain id))`, short id = first 26
//! characters of base32(sha256("kiln-overlay2-link\0" + chain id)[..16]).
//! Layers shared by several images are written once.

use crate::container::Container;
use crate::input::{resolve, Image, ImageInput, LayerSpec};
use crate::layer::{stream_layer, LayerResult, Verify};
use crate::layout::STORE_DIRS;
use crate::merge::{ExistingLayer, ExistingStore};
use crate::{Digest, Error, FeedError, ImageRef, Platform};
use kiln_tree::{Content, Entry, EntryKind, Metadata, Timestamp, TreePath, TreeSink};
use std::collections::{BTreeMap, HashMap, HashSet};

/// How the store is built.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The board's platform (which manifest of a multi-platform image).
    pub platform: Platform,
    /// Modification time of every generated file and directory (layer
    /// contents keep their own times).
    pub time: Timestamp,
}

/// Images resolved for one platform, ready to be written as a store.
#[derive(Debug)]
pub struct Store {
    containers: Vec<Container>,
    images: Vec<Image>,
    opts: StoreOptions,
}

/// One layer written, as reported by [`Store::feed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerReport {
    /// Chain ID.
    pub chain_id: Digest,
    /// Diff ID (verified).
    pub diff_id: Digest,
    /// The overlay2 cache id.
    pub cache_id: String,
    /// The engine's `size`: bytes of non-directory inodes.
    pub size: u64,
    /// Uncompressed tar size, bytes.
    pub tar_size: u64,
    /// Tree entries emitted under `diff/`.
    pub entries: u64,
}

/// What [`Store::feed`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedReport {
    /// Unique layers, in the order written.
    pub layers: Vec<LayerReport>,
    /// Entries emitted in total.
    pub entries: u64,
    /// Bytes of file content emitted (layer files and metadata files).
    pub content_bytes: u64,
}

/// A summary for the CLI (`kiln build`, `kiln inspect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// One line per image.
    pub images: Vec<ImageSummary>,
    /// Layers written (shared layers once).
    pub unique_layers: usize,
    /// Sum of the layer blob sizes as stored in the inputs, bytes.
    pub blob_bytes: u64,
}

/// One image of a [`Summary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// `sha256:<config digest>`.
    pub id: String,
    /// `name:tag` references.
    pub tags: Vec<String>,
    /// `name@sha256:<manifest>` references.
    pub digests: Vec<String>,
    /// Platform chosen.
    pub platform: String,
    /// Number of layers.
    pub layers: usize,
    /// Sum of the layer blob sizes, bytes.
    pub blob_bytes: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for i in &self.images {
            writeln!(
                f,
                "{} {} [{}] {} layers, {} bytes compressed",
                i.id.get(7..19).unwrap_or(&i.id),
                i.tags.join(","),
                i.platform,
                i.layers,
                i.blob_bytes
            )?;
        }
        write!(
            f,
            "{} images, {} unique layers, {} bytes of layer blobs",
            self.images.len(),
            self.unique_layers,
            self.blob_bytes
        )
    }
}

/// The overlay2 cache id kiln gives the layer with `chain_id`.
pub fn cache_id(chain_id: &Digest) -> String {
    Digest::of(format!("kiln-overlay2-cache-id\0{chain_id}").as_bytes()).hex()
}

/// The overlay2 short link id kiln gives the layer with `chain_id`.
pub fn short_id(chain_id: &Digest) -> String {
    let d = Digest::of(format!("kiln-overlay2-link\0{chain_id}").as_bytes());
    let mut s = base32(d.bytes().get(..16).unwrap_or_default());
    s.truncate(26);
    s
}

/// RFC 4648 base32, upper case, no padding.
fn base32(data: &[u8]) -> String {
    const ALPHA: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            let i = ((acc >> bits) & 31) as usize;
            out.push(char::from(ALPHA.get(i).copied().unwrap_or(b'A')));
        }
    }
    if bits > 0 {
        let i = ((acc << (5 - bits)) & 31) as usize;
        out.push(char::from(ALPHA.get(i).copied().unwrap_or(b'A')));
    }
    out
}

fn p(s: &str) -> Result<TreePath, Error> {
    TreePath::parse(s.as_bytes()).map_err(|_| Error::InvalidRequest("internal path"))
}

/// Re-reads a layer blob and checks its digest and size.
fn verify_blob(c: &Container, layer: &LayerSpec) -> Result<(), Error> {
    let crate::input::BlobLoc::Oci { digest, size } = &layer.blob else {
        return Ok(());
    };
    let (r, _) = c.open_file(
        &format!("blobs/sha256/{}", digest.hex()),
        &digest.to_string(),
    )?;
    crate::digest::HashingReader::new(r).verify(c.path(), digest, Some(*size))
}

impl Store {
    /// Reads every input's index/manifests/configs, picks the platform,
    /// and checks that all blobs are present. Layers are not read yet.
    pub fn open(inputs: &[ImageInput], opts: StoreOptions) -> Result<Self, Error> {
        let mut containers = Vec::new();
        let mut images: Vec<Image> = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let (c, imgs) = resolve(i, input, &opts.platform)?;
            containers.push(c);
            for img in imgs {
                match images.iter_mut().find(|x| x.id == img.id) {
                    Some(prev) => {
                        prev.tags.extend(img.tags);
                        prev.names.extend(img.names);
                    }
                    None => images.push(img),
                }
            }
        }
        let mut by_tag: HashMap<String, Digest> = HashMap::new();
        for img in &images {
            for t in img.tags.iter().filter_map(ImageRef::tagged) {
                if let Some(prev) = by_tag.insert(t.clone(), img.id) {
                    if prev != img.id {
                        return Err(Error::ConflictingReference {
                            reference: t,
                            first: prev.to_string(),
                            second: img.id.to_string(),
                        });
                    }
                }
            }
        }
        Ok(Self {
            containers,
            images,
            opts,
        })
    }

    /// The images, in input order.
    pub fn images(&self) -> &[Image] {
        &self.images
    }

    /// The image a reference (`name[:tag]` or `name@sha256:...`) names.
    pub fn find(&self, reference: &str) -> Option<&Image> {
        let r = ImageRef::parse(reference).ok()?;
        self.images.iter().find(|img| {
            if let Some(d) = r.digest {
                return img.names.contains(&r.name) && (img.manifest_digest == d || img.id == d);
            }
            img.tags.iter().any(|t| t.name == r.name && t.tag == r.tag)
        })
    }

    /// All `name:tag` and `name@digest` references, sorted.
    pub fn references(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .images
            .iter()
            .flat_map(|i| {
                i.tags
                    .iter()
                    .filter_map(ImageRef::tagged)
                    .chain(i.digest_refs())
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort();
        v
    }

    fn unique_layers(&self) -> Vec<(usize, &LayerSpec, Option<Digest>)> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for img in &self.images {
            let mut parent = None;
            for l in &img.layers {
                if seen.insert(l.chain_id) {
                    out.push((img.input, l, parent));
                }
                parent = Some(l.chain_id);
            }
        }
        out
    }

    /// A summary of what the store holds.
    pub fn summary(&self) -> Summary {
        let images = self
            .images
            .iter()
            .map(|i| ImageSummary {
                id: i.id.to_string(),
                tags: i.tags.iter().filter_map(ImageRef::tagged).collect(),
                digests: i.digest_refs(),
                platform: i.platform.clone(),
                layers: i.layers.len(),
                blob_bytes: i.layers.iter().map(|l| l.blob_size).sum(),
            })
            .collect();
        let uniq = self.unique_layers();
        Summary {
            images,
            unique_layers: uniq.len(),
            blob_bytes: uniq.iter().map(|(_, l, _)| l.blob_size).sum(),
        }
    }

    /// `repositories.json` bytes.
    pub fn repositories_json(&self) -> Vec<u8> {
        let v = serde_json::json!({ "Repositories": self.repositories() });
        v.to_string().into_bytes()
    }

    /// The `repositories.json` map: name -> reference -> image id.
    fn repositories(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut repos: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for img in &self.images {
            for t in &img.tags {
                if let Some(tagged) = t.tagged() {
                    repos
                        .entry(t.name.clone())
                        .or_default()
                        .insert(tagged, img.id.to_string());
                }
            }
            for n in &img.names {
                repos
                    .entry(n.clone())
                    .or_default()
                    .insert(format!("{n}@{}", img.manifest_digest), img.id.to_string());
            }
        }
        repos
    }

    /// Reads and verifies every layer without writing anything, and
    /// reports what [`Store::feed`] would write (entry count, content
    /// bytes, per-layer sizes): a size estimate for the partition.
    pub fn measure(&self) -> Result<FeedReport, Error> {
        struct Drain;
        impl TreeSink for Drain {
            type Error = std::io::Error;
            fn add(&mut self, _e: &Entry, c: Content<'_>) -> Result<(), Self::Error> {
                if let Content::Stream { reader, .. } = c {
                    std::io::copy(reader, &mut std::io::sink())?;
                }
                Ok(())
            }
        }
        self.feed(&mut Drain).map_err(|e| match e {
            FeedError::Input(e) => e,
            FeedError::Sink(source) => Error::Io {
                path: std::path::PathBuf::new(),
                op: "cannot read layer data",
                source,
            },
        })
    }

    /// Writes the store into `sink`, paths relative to the engine's data
    /// root. Every blob is read, verified and streamed; feeding twice
    /// gives the same entries. Every path is emitted exactly once;
    /// a layer's directories come after its files (sinks accept parents
    /// after children), so the opaque-directory xattr is part of the
    /// directory's own entry.
    pub fn feed<S: TreeSink>(&self, sink: &mut S) -> Result<FeedReport, FeedError<S::Error>> {
        self.feed_inner(None, sink, Verify::Yes, None)
    }

    /// For a sizing pass before [`Store::feed`] (or, with `existing`,
    /// [`Store::feed_onto`]): the same entries with the same sizes, but
    /// blob digests and diff IDs are not checked, which saves hashing
    /// every layer twice. The pass that writes checks them; never keep
    /// what this fed.
    pub fn feed_for_sizing<S: TreeSink>(
        &self,
        existing: Option<&ExistingStore>,
        sink: &mut S,
    ) -> Result<FeedReport, FeedError<S::Error>> {
        self.feed_inner(existing, sink, Verify::No, None)
    }

    /// Like [`Store::feed`], but onto an existing store: layers, image
    /// configs and standard directories the old store has are not
    /// emitted; new layers on top of old ones point at the old layers'
    /// links; `repositories.json` is the merge of old and new (see
    /// [`crate::merge`]). The caller must feed the old tree without
    /// [`ExistingStore::SKIP_PATHS`] to the same sink (before or after;
    /// kiln's ext4 writer accepts both).
    pub fn feed_onto<S: TreeSink>(
        &self,
        existing: &ExistingStore,
        sink: &mut S,
    ) -> Result<FeedReport, FeedError<S::Error>> {
        self.feed_inner(Some(existing), sink, Verify::Yes, None)
    }

    /// [`Store::feed_for_sizing`] (without an existing store) with up to
    /// `workers` layers streamed at once, each into its own sink from
    /// `make_sink`; the rest of the store goes to one more. For sinks
    /// that ignore the order of entries and share their state, e.g.
    /// [`kiln_tree::LockedSink`] around one size estimator: sizing is
    /// bound by decompression, which this spreads over the cores.
    pub fn feed_for_sizing_parallel<T, F>(
        &self,
        make_sink: F,
        workers: usize,
    ) -> Result<FeedReport, FeedError<T::Error>>
    where
        T: TreeSink,
        F: Fn() -> T + Sync,
    {
        let layers = self.unique_layers();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results = std::thread::scope(|scope| {
            let work = || -> Result<Vec<(Digest, LayerResult)>, FeedError<T::Error>> {
                let mut sink = make_sink();
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((input, layer, _)) = layers.get(i) else {
                        return Ok(done);
                    };
                    let r = self.stream_one(*input, layer, Verify::No, &mut sink)?;
                    done.push((layer.chain_id, r));
                }
            };
            let handles: Vec<_> = (0..workers.max(1)).map(|_| scope.spawn(work)).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(FeedError::Input(Error::InvalidRequest(
                            "a layer sizing thread panicked",
                        )))
                    })
                })
                .collect::<Vec<_>>()
        });
        let mut pre = HashMap::new();
        for r in results {
            pre.extend(r?);
        }
        self.feed_inner(None, &mut make_sink(), Verify::No, Some(pre))
    }

    /// Streams one layer into `sink` below its cache id's `diff/`; a blob
    /// that fails to decompress or parse is checked against its digest,
    /// so a corrupt download is named as such.
    fn stream_one<S: TreeSink>(
        &self,
        input: usize,
        layer: &LayerSpec,
        verify: Verify,
        sink: &mut S,
    ) -> Result<LayerResult, FeedError<S::Error>> {
        let t = self.opts.time;
        let diff_root = p(&format!("overlay2/{}/diff", cache_id(&layer.chain_id)))?;
        let container = self
            .containers
            .get(input)
            .ok_or(Error::InvalidRequest("input index"))?;
        match stream_layer(
            container,
            layer,
            &diff_root,
            &Metadata::new(0o755, t),
            sink,
            verify,
        ) {
            Ok(r) => Ok(r),
            Err(FeedError::Input(
                e @ (Error::LayerIo { .. } | Error::BadLayer { .. } | Error::Layer { .. }),
            )) => Err(FeedError::Input(
                verify_blob(container, layer).err().unwrap_or(e),
            )),
            Err(e) => Err(e),
        }
    }

    /// [`Store::feed`], skipping what `existing` already holds (see
    /// [`crate::merge`]): the standard directories, each new layer, the
    /// image configs, then `repositories.json`.
    pub(crate) fn feed_inner<S: TreeSink>(
        &self,
        existing: Option<&ExistingStore>,
        sink: &mut S,
        verify: Verify,
        pre: Option<HashMap<Digest, LayerResult>>,
    ) -> Result<FeedReport, FeedError<S::Error>> {
        let mut st = FeedState {
            sink,
            time: self.opts.time,
            rep: FeedReport::default(),
            verify,
            pre,
            committed: HashSet::new(),
            lowers: HashMap::new(),
            old: HashMap::new(),
        };
        for (d, m) in STORE_DIRS {
            if existing.is_some_and(|x| x.has_dir(d)) {
                continue;
            }
            st.emit(d, EntryKind::Dir, *m, Content::None)?;
        }
        for (input, layer, parent) in self.unique_layers() {
            // Layers the old store has: their real cache ids and links.
            if let Some(x) = existing.and_then(|x| x.layer(&layer.chain_id)) {
                st.lowers.insert(layer.chain_id, x.lower.clone());
                st.old.insert(layer.chain_id, x);
                continue;
            }
            self.feed_layer(&mut st, input, layer, parent)?;
        }
        for img in &self.images {
            if existing.is_some_and(|x| x.has_image(&img.id)) {
                continue;
            }
            st.emit(
                &format!("image/overlay2/imagedb/content/sha256/{}", img.id.hex()),
                EntryKind::File,
                0o600,
                Content::bytes(&img.config),
            )?;
        }
        let repos = match existing {
            Some(x) => {
                let v = serde_json::json!({ "Repositories": x.merged_repositories(self.repositories()) });
                v.to_string().into_bytes()
            }
            None => self.repositories_json(),
        };
        st.emit(
            "image/overlay2/repositories.json",
            EntryKind::File,
            0o600,
            Content::bytes(&repos),
        )?;
        Ok(st.rep)
    }

    /// Emits one layer the old store does not have: its overlay2
    /// directory with the content, `link`, `lower` and `work/` (and the
    /// parent's `committed` mark), its short link, and its layerdb entry.
    fn feed_layer<S: TreeSink>(
        &self,
        st: &mut FeedState<'_, '_, S>,
        input: usize,
        layer: &LayerSpec,
        parent: Option<Digest>,
    ) -> Result<(), FeedError<S::Error>> {
        let cid = cache_id(&layer.chain_id);
        let short = short_id(&layer.chain_id);
        let dir = format!("overlay2/{cid}");
        st.emit(&dir, EntryKind::Dir, 0o710, Content::None)?;
        let res = match st.pre.as_mut().and_then(|m| m.remove(&layer.chain_id)) {
            Some(r) => r,
            None => self.stream_one(input, layer, st.verify, &mut *st.sink)?,
        };
        st.rep.entries += res.entries;
        st.rep.content_bytes = st.rep.content_bytes.saturating_add(res.size);
        st.emit(
            &format!("{dir}/link"),
            EntryKind::File,
            0o644,
            Content::bytes(short.as_bytes()),
        )?;
        let mut lower = String::new();
        if let Some(par) = parent {
            lower = st.feed_lower(&dir, par)?;
        }
        st.lowers.insert(layer.chain_id, lower);
        let target = format!("../{cid}/diff").into_bytes();
        st.emit(
            &format!("overlay2/l/{short}"),
            EntryKind::Symlink { target },
            0o777,
            Content::None,
        )?;
        let ldb = format!("image/overlay2/layerdb/sha256/{}", layer.chain_id.hex());
        st.emit(&ldb, EntryKind::Dir, 0o700, Content::None)?;
        let mut files = vec![
            ("cache-id", cid.clone().into_bytes()),
            ("diff", layer.diff_id.to_string().into_bytes()),
        ];
        if let Some(par) = parent {
            files.push(("parent", par.to_string().into_bytes()));
        }
        files.push(("size", res.size.to_string().into_bytes()));
        for (name, data) in &files {
            st.emit(
                &format!("{ldb}/{name}"),
                EntryKind::File,
                0o644,
                Content::bytes(data),
            )?;
        }
        st.emit(
            &format!("{ldb}/tar-split.json.gz"),
            EntryKind::File,
            0o644,
            Content::bytes(&res.tar_split),
        )?;
        st.rep.layers.push(LayerReport {
            chain_id: layer.chain_id,
            diff_id: layer.diff_id,
            cache_id: cid,
            size: res.size,
            tar_size: res.tar_size,
            entries: res.entries,
        });
        Ok(())
    }
}

/// What [`Store::feed_inner`] carries from layer to layer.
struct FeedState<'x, 's, S: TreeSink> {
    sink: &'s mut S,
    /// Modification time of every generated entry.
    time: Timestamp,
    rep: FeedReport,
    verify: Verify,
    /// Layers already streamed (by a parallel sizing pass).
    pre: Option<HashMap<Digest, LayerResult>>,
    /// Parents whose `committed` mark is written.
    committed: HashSet<Digest>,
    /// The `lower` file of each layer so far.
    lowers: HashMap<Digest, String>,
    /// Layers the old store has: their real cache ids and links.
    old: HashMap<Digest, &'x ExistingLayer>,
}

impl<S: TreeSink> FeedState<'_, '_, S> {
    /// Feeds one generated entry to the sink, counting it.
    fn emit(
        &mut self,
        path: &str,
        kind: EntryKind,
        mode: u32,
        content: Content<'_>,
    ) -> Result<(), FeedError<S::Error>> {
        let path = p(path)?;
        self.rep.entries += 1;
        self.rep.content_bytes = self.rep.content_bytes.saturating_add(content.size());
        let e = Entry::new(path, kind, Metadata::new(mode, self.time));
        self.sink.add(&e, content).map_err(FeedError::Sink)
    }

    /// The `lower` file and `work/` of a layer in `dir` whose parent is
    /// `par` (an old layer keeps its link and cache id), and the parent's
    /// `committed` mark the first time; returns the `lower` text.
    fn feed_lower(&mut self, dir: &str, par: Digest) -> Result<String, FeedError<S::Error>> {
        let pl = self.lowers.get(&par).cloned().unwrap_or_default();
        let (par_link, par_cid, par_committed) = match self.old.get(&par) {
            Some(x) => (x.link.clone(), x.cache_id.clone(), x.committed),
            None => (short_id(&par), cache_id(&par), false),
        };
        let mut lower = format!("l/{par_link}");
        if !pl.is_empty() {
            lower.push(':');
            lower.push_str(&pl);
        }
        self.emit(
            &format!("{dir}/lower"),
            EntryKind::File,
            0o644,
            Content::bytes(lower.as_bytes()),
        )?;
        self.emit(&format!("{dir}/work"), EntryKind::Dir, 0o700, Content::None)?;
        if self.committed.insert(par) && !par_committed {
            self.emit(
                &format!("overlay2/{par_cid}/committed"),
                EntryKind::File,
                0o600,
                Content::bytes(b""),
            )?;
        }
        Ok(lower)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_known_answers() {
        // RFC 4648 section 10 test vectors (without padding).
        for (i, o) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(i.as_bytes()), o);
        }
        let d = Digest::of(b"x");
        assert_eq!(short_id(&d).len(), 26);
        assert_eq!(cache_id(&d).len(), 64);
        assert_ne!(cache_id(&d), d.hex());
    }
}
