//! The build's SBOMs (`NAME.spdx.json`, `NAME.cdx.json`, kiln-sbom):
//! the facts are gathered while the image is written, never by reading
//! an input again.
//!
//! [`Tap`] wraps a partition writer's sink and passes every entry on
//! unchanged, keeping on the way: from the root filesystem, the package
//! databases, `os-release` and the packages' `copyright` files
//! ([`WANTED`]); from the engine store, the same files of every layer's
//! `diff/` plus its whiteouts and opaque directories, so each image's
//! merged filesystem is resolved as overlayfs would (top layer first, a
//! whiteout or opaque directory hides what lies below); from the boot
//! partition, each file's sha256. [`deliver`] turns them into the two
//! documents beside the image, before the manifest and `SHA256SUMS`
//! that list them.

use crate::Error;
use kiln_artifact::digest::{Sha256Digest, Sha256Hasher};
use kiln_artifact::manifest::ArtifactFormat;
use kiln_sbom::{ContainerImage, Facts, FileFact, FileRole, PackageSet};
use kiln_tree::{Content, Entry, EntryKind, TreeSink};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Files (relative to a filesystem root) an SBOM reads, besides
/// `usr/share/doc/<package>/copyright`.
pub(crate) const WANTED: &[&str] = &[
    "var/lib/dpkg/status",
    "lib/apk/db/installed",
    "var/lib/opkg/status",
    "usr/lib/opkg/status",
    "etc/os-release",
    "usr/lib/os-release",
];

/// A kept file larger than this is not kept (no package database is).
const MAX_KEPT: usize = 64 << 20;

fn wanted(rel: &[&[u8]]) -> bool {
    let copyright = rel.len() == 5
        && rel[0] == b"usr"
        && rel[1] == b"share"
        && rel[2] == b"doc"
        && rel[4] == b"copyright";
    copyright || WANTED.iter().any(|w| w.as_bytes() == join(rel).as_bytes())
}

fn join(rel: &[&[u8]]) -> String {
    rel.iter()
        .map(|c| String::from_utf8_lossy(c))
        .collect::<Vec<_>>()
        .join("/")
}

/// What one filesystem (the root filesystem, or one layer's `diff/`)
/// showed of the wanted paths.
#[derive(Default)]
struct Seen {
    files: BTreeMap<String, Vec<u8>>,
    whiteouts: BTreeSet<String>,
    opaque: BTreeSet<String>,
}

/// The facts gathered while writing, shared by the partition writers.
#[derive(Default)]
pub(crate) struct Collector {
    rootfs: Mutex<Seen>,
    /// By layer cache id.
    layers: Mutex<BTreeMap<String, Seen>>,
    /// `label/path` to role and sha256.
    files: Mutex<BTreeMap<String, (FileRole, Sha256Digest)>>,
}

/// Where a [`Tap`] sits.
pub(crate) enum At {
    /// The root filesystem.
    Rootfs,
    /// The data partition, the engine store `depth` components down.
    Store(usize),
    /// A FAT partition (its label) with files of this role.
    Boot(String, FileRole),
}

/// What a tapped file's bytes are kept for.
enum Target {
    Rootfs(String),
    Layer(String, String),
    File(String, FileRole),
}

/// A sink that passes every entry on to `inner` and keeps what the SBOM
/// needs in a [`Collector`].
pub(crate) struct Tap<'c, S> {
    inner: S,
    to: &'c Collector,
    at: At,
}

impl<'c, S: TreeSink> Tap<'c, S> {
    pub(crate) fn new(inner: S, to: &'c Collector, at: At) -> Self {
        Self { inner, to, at }
    }

    /// Gives back the wrapped sink.
    pub(crate) fn into_inner(self) -> S {
        self.inner
    }

    /// Records whiteouts and opaque directories; says what a regular
    /// file's bytes are kept for.
    fn target(&self, entry: &Entry) -> Option<Target> {
        let comps: Vec<&[u8]> = entry.path.components().collect();
        let is_file = entry.kind == EntryKind::File;
        match &self.at {
            At::Rootfs => (is_file && wanted(&comps)).then(|| Target::Rootfs(join(&comps))),
            At::Boot(label, role) => {
                is_file.then(|| Target::File(format!("{label}/{}", join(&comps)), *role))
            }
            At::Store(depth) => {
                let c = comps.get(*depth..)?;
                if c.len() < 4 || c[0] != b"overlay2" || c[2] != b"diff" {
                    return None;
                }
                let (cache, rel) = (String::from_utf8_lossy(c[1]).into_owned(), &c[3..]);
                let mark = |f: fn(&mut Seen) -> &mut BTreeSet<String>| {
                    let mut layers = self
                        .to
                        .layers
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    f(layers.entry(cache.clone()).or_default()).insert(join(rel));
                };
                match &entry.kind {
                    EntryKind::CharDev { major: 0, minor: 0 } => mark(|s| &mut s.whiteouts),
                    EntryKind::Dir
                        if entry
                            .meta
                            .xattrs
                            .iter()
                            .any(|x| x.name == b"trusted.overlay.opaque" && x.value == b"y") =>
                    {
                        mark(|s| &mut s.opaque)
                    }
                    EntryKind::File if wanted(rel) => return Some(Target::Layer(cache, join(rel))),
                    _ => {}
                }
                None
            }
        }
    }
}

/// Copies what passes through into a buffer (up to [`MAX_KEPT`]) and a
/// digest.
struct TeeReader<'a> {
    inner: &'a mut dyn Read,
    kept: Vec<u8>,
    keep: bool,
    hash: Sha256Hasher,
}

impl Read for TeeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let got = buf.get(..n).unwrap_or_default();
        self.hash.update(got);
        if self.keep && self.kept.len() + n <= MAX_KEPT {
            self.kept.extend_from_slice(got);
        } else {
            self.keep = false;
        }
        Ok(n)
    }
}

impl<S: TreeSink> TreeSink for Tap<'_, S> {
    type Error = S::Error;
    fn add(&mut self, entry: &Entry, content: Content<'_>) -> Result<(), Self::Error> {
        let Some(target) = self.target(entry) else {
            return self.inner.add(entry, content);
        };
        let (kept, digest) = match content {
            Content::Stream { size, reader } => {
                let mut tee = TeeReader {
                    inner: reader,
                    kept: Vec::new(),
                    keep: !matches!(target, Target::File(..)),
                    hash: Sha256Hasher::new(),
                };
                self.inner.add(
                    entry,
                    Content::Stream {
                        size,
                        reader: &mut tee,
                    },
                )?;
                (tee.keep.then_some(tee.kept), tee.hash.finish())
            }
            Content::Bytes { data } => {
                self.inner.add(entry, Content::Bytes { data })?;
                (Some(data.to_vec()), Sha256Digest::of(data))
            }
            other => {
                self.inner.add(entry, other)?;
                (Some(Vec::new()), Sha256Digest::of(&[]))
            }
        };
        let to = self.to;
        match target {
            Target::File(path, role) => {
                let mut files = to.files.lock().unwrap_or_else(PoisonError::into_inner);
                files.insert(path, (role, digest));
            }
            Target::Rootfs(path) => {
                let mut seen = to.rootfs.lock().unwrap_or_else(PoisonError::into_inner);
                seen.files.extend(kept.map(|k| (path, k)));
            }
            Target::Layer(cache, path) => {
                let mut layers = to.layers.lock().unwrap_or_else(PoisonError::into_inner);
                let seen = layers.entry(cache).or_default();
                seen.files.extend(kept.map(|k| (path, k)));
            }
        }
        Ok(())
    }
}

/// The packages a filesystem holds, from `get` (the bytes at a path);
/// `None` when it has neither a package database nor `os-release`.
fn package_set(
    get: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Result<Option<PackageSet>, (String, kiln_sbom::Error)> {
    type Parse = fn(&[u8]) -> Result<Vec<kiln_sbom::Package>, kiln_sbom::Error>;
    let parsers: [(&str, Parse); 4] = [
        ("var/lib/dpkg/status", kiln_sbom::parse_dpkg_status),
        ("lib/apk/db/installed", kiln_sbom::parse_apk_installed),
        ("var/lib/opkg/status", kiln_sbom::parse_opkg_status),
        ("usr/lib/opkg/status", kiln_sbom::parse_opkg_status),
    ];
    let mut set = PackageSet::default();
    let mut any = false;
    for (path, parse) in parsers {
        if let Some(bytes) = get(path) {
            any = true;
            set.packages
                .extend(parse(&bytes).map_err(|e| (path.to_string(), e))?);
        }
    }
    for p in set.packages.iter_mut().filter(|p| p.license.is_none()) {
        if let Some(c) = get(&format!("usr/share/doc/{}/copyright", p.name)) {
            p.license = kiln_sbom::parse_debian_copyright(&c);
        }
    }
    set.packages.sort();
    match get("etc/os-release").or_else(|| get("usr/lib/os-release")) {
        Some(os) => set = set.with_os_release(&os),
        None if !any => return Ok(None),
        None => {}
    }
    Ok(Some(set))
}

impl Collector {
    /// Base-image mode: keeps what [`WANTED`] names, and every
    /// `usr/share/doc/<package>/copyright`, from the base's root
    /// filesystem, which kiln reads but does not write (so no [`Tap`]
    /// sees it). Symlinks are not followed (`etc/os-release` usually is
    /// one: `usr/lib/os-release` is read instead).
    pub(crate) fn read_rootfs<R: kiln_units::ReadAt>(
        &self,
        fs: &kiln_ext4::Ext4Reader<R>,
    ) -> Result<(), kiln_ext4::Error> {
        let read = |p: &str| match fs.read_file(&crate::content::tp(p), MAX_KEPT as u64) {
            Err(kiln_ext4::Error::NotFound { .. }) => Ok(None),
            other => other,
        };
        let docs = match fs.list_dir(&crate::content::tp("usr/share/doc")) {
            Ok(d) => d.unwrap_or_default(),
            Err(kiln_ext4::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        let copyrights = docs
            .iter()
            .filter(|d| d.kind == kiln_ext4::NodeKind::Dir)
            .map(|d| {
                format!(
                    "usr/share/doc/{}/copyright",
                    String::from_utf8_lossy(&d.name)
                )
            });
        let mut seen = self.rootfs.lock().unwrap_or_else(PoisonError::into_inner);
        for path in WANTED.iter().map(|w| w.to_string()).chain(copyrights) {
            if let Some(bytes) = read(&path)? {
                seen.files.insert(path, bytes);
            }
        }
        Ok(())
    }

    /// The root filesystem's packages.
    fn rootfs(&self) -> Result<Option<PackageSet>, (String, kiln_sbom::Error)> {
        let seen = self.rootfs.lock().unwrap_or_else(PoisonError::into_inner);
        package_set(&|p| seen.files.get(p).cloned())
    }

    /// The packages of the merged filesystem of the layers `chain` (cache
    /// ids, base first).
    fn image(&self, chain: &[String]) -> Result<PackageSet, (String, kiln_sbom::Error)> {
        let layers = self.layers.lock().unwrap_or_else(PoisonError::into_inner);
        let get = |path: &str| -> Option<Vec<u8>> {
            for seen in chain.iter().rev().filter_map(|c| layers.get(c)) {
                if let Some(b) = seen.files.get(path) {
                    return Some(b.clone());
                }
                let mut up = path;
                let mut hidden = seen.whiteouts.contains(path);
                while let Some((parent, _)) = up.rsplit_once('/') {
                    hidden |= seen.whiteouts.contains(parent) || seen.opaque.contains(parent);
                    up = parent;
                }
                if hidden {
                    return None;
                }
            }
            None
        };
        Ok(package_set(&get)?.unwrap_or_default())
    }
}

/// The two SBOM paths of the image `out`: `NAME.spdx.json` and
/// `NAME.cdx.json` (`NAME`: the file name without `.img`, as the
/// manifest's).
pub(crate) fn paths(out: &Path) -> [PathBuf; 2] {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".img").unwrap_or(&name);
    [
        out.with_file_name(format!("{stem}.spdx.json")),
        out.with_file_name(format!("{stem}.cdx.json")),
    ]
}

/// What [`documents`] needs besides the collector.
pub(crate) struct Delivering<'a> {
    pub(crate) recipe: &'a kiln_recipe::Recipe,
    pub(crate) profile: &'a kiln_recipe::BoardProfile,
    /// The image file (`nuc.img`): the SBOMs go beside it.
    pub(crate) output: &'a Path,
    /// SOURCE_DATE_EPOCH.
    pub(crate) timestamp: i64,
    /// Base-image mode: the base image.
    pub(crate) base: Option<&'a Path>,
    /// The preloaded images.
    pub(crate) store: Option<&'a kiln_oci::Store>,
    /// The raw image's digest.
    pub(crate) image: &'a Sha256Digest,
    /// config.json as reported (secrets redacted).
    pub(crate) config: &'a serde_json::Value,
}

/// One SBOM file: where, its bytes, its manifest format and its short
/// name.
pub(crate) type Document = (PathBuf, Vec<u8>, ArtifactFormat, &'static str);

/// Both SBOMs, to be delivered beside the image (none when the recipe
/// says `[output] sbom = false`). A `None` collector lists no OS and no
/// packages.
pub(crate) fn documents(
    d: &Delivering<'_>,
    collector: Option<&Collector>,
) -> Result<Vec<Document>, Error> {
    if !d.recipe.output.sbom {
        return Ok(Vec::new());
    }
    let empty = Collector::default();
    let c = collector.unwrap_or(&empty);
    let facts = facts(d, c)?;
    let [spdx, cdx] = paths(d.output);
    Ok(vec![
        (
            spdx,
            kiln_sbom::spdx_json(&facts),
            ArtifactFormat::SpdxJson,
            "spdx",
        ),
        (
            cdx,
            kiln_sbom::cyclonedx_json(&facts),
            ArtifactFormat::CyclonedxJson,
            "cyclonedx",
        ),
    ])
}

fn facts(d: &Delivering<'_>, c: &Collector) -> Result<Facts, Error> {
    let bad = |partition: &str, what: String| {
        let partition = partition.to_string();
        move |(path, e): (String, kiln_sbom::Error)| Error::Layout {
            partition,
            reason: format!("{what}{path}: {e}"),
        }
    };
    let root_label = d
        .profile
        .partitions
        .iter()
        .find(|p| p.role == kiln_recipe::Role::RootA)
        .map_or("rootA", |p| p.label.as_str());
    let os = c.rootfs().map_err(bad(root_label, String::new()))?;
    let mut images = Vec::new();
    for img in d.store.map(kiln_oci::Store::images).unwrap_or_default() {
        let chain: Vec<String> = img.chain_ids().iter().map(kiln_oci::cache_id).collect();
        let name = img.names.iter().next().cloned().unwrap_or_default();
        let packages = c
            .image(&chain)
            .map_err(bad("data", format!("image {name}: ")))?;
        images.push(ContainerImage {
            names: img.names.iter().cloned().collect(),
            tags: img.tags.iter().map(ToString::to_string).collect(),
            manifest_digest: img.manifest_digest.to_string(),
            image_id: img.id.to_string(),
            platform: img.platform.clone(),
            layers: img.diff_ids().iter().map(ToString::to_string).collect(),
            packages,
        });
    }
    images.sort_by(|a, b| a.manifest_digest.cmp(&b.manifest_digest));
    // config.json's digest is listed only when it holds no secret (the
    // redacted form is then the file itself).
    let mut public_config = serde_json::to_vec_pretty(d.config).unwrap_or_default();
    public_config.push(b'\n');
    let public_config = Sha256Digest::of(&public_config);
    let files = c.files.lock().unwrap_or_else(PoisonError::into_inner);
    let files = files
        .iter()
        .map(|(path, (role, digest))| FileFact {
            path: path.clone(),
            role: *role,
            sha256: (!(path.ends_with("/config.json") && *role == FileRole::Config)
                || *digest == public_config)
                .then(|| digest.to_hex()),
        })
        .collect();
    Ok(Facts {
        name: d
            .output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        image_sha256: d.image.to_hex(),
        timestamp: d.timestamp,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        os,
        base: d
            .base
            .and_then(|b| b.file_name().map(|n| n.to_string_lossy().into_owned())),
        app: d.recipe.app.as_ref().map(|a| a.name.clone()),
        images,
        files,
    })
}

/// `kiln inspect --sbom`: the summary of the CycloneDX SBOM beside
/// `image` (any of a build's outputs: `nuc.img`, `nuc.img.xz`,
/// `nuc.qcow2`, ...) and its path.
pub fn sbom_summary(image: &Path) -> Result<(PathBuf, kiln_sbom::Summary), Error> {
    let name = image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut stem = name.as_str();
    for suffix in [".xz", ".gz", ".zst", ".zip"] {
        stem = stem.strip_suffix(suffix).unwrap_or(stem);
    }
    for suffix in [".img", ".qcow2", ".vmdk", ".vhd", ".vhdx", ".raw"] {
        stem = stem.strip_suffix(suffix).unwrap_or(stem);
    }
    let path = image.with_file_name(format!("{stem}.cdx.json"));
    let bad = |reason: String| Error::Image {
        path: path.clone(),
        reason,
    };
    let bytes = match std::fs::metadata(&path) {
        Ok(m) if m.len() > MAX_KEPT as u64 => return Err(bad("larger than an SBOM can be".into())),
        Ok(_) => std::fs::read(&path).map_err(|e| bad(format!("cannot read it: {e}")))?,
        Err(e) => {
            return Err(bad(format!(
                "no SBOM beside the image ({e}): built with `[output] sbom = false`, or not by kiln"
            )))
        }
    };
    let summary = kiln_sbom::summarize(&bytes).map_err(|e| bad(e.to_string()))?;
    Ok((path, summary))
}
