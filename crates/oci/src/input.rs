//! Reading image inputs and resolving them to images for one platform.
//!
//! | input | recognised by | names from |
//! |---|---|---|
//! | OCI image layout, directory or plain tar (image-spec `image-layout.md`) | `oci-layout` + `index.json` | `io.containerd.image.name`, `org.opencontainers.image.ref.name` (a bare tag is joined to [`ImageInput::named`]) |
//! | `docker save` archive, directory or tar (old layout with `repositories` included) | `manifest.json` | `RepoTags`, [`ImageInput::named`] |
//!
//! Every JSON blob is read whole (bounded by [`crate::spec::MAX_JSON_BYTES`])
//! and its digest and size checked before it is parsed. Layers are only
//! located here; they are streamed and verified when the store is fed.
//!
//! A `docker save` archive carries no manifest, so kiln computes the
//! digest of a *canonical* OCI manifest (compact JSON, keys in the order
//! `schemaVersion, mediaType, config{mediaType,digest,size},
//! layers[{mediaType,digest,size}]`, uncompressed layers
//! `application/vnd.oci.image.layer.v1.tar` whose digest is the diff ID).
//! The digest is stable (same archive, same digest) and determined by the
//! image's config and layers, but it is *not* the digest a registry shows
//! for the image (the archive does not carry that): give OCI layouts where
//! `name@sha256:` references must match a registry. A layer member that
//! is itself compressed is refused (its uncompressed size, part of the
//! canonical manifest, is not known without reading it).

use crate::container::{norm, Container};
use crate::spec::{self, Descriptor, LayerCompression};
use crate::{Digest, Error, ImageRef, Platform};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Deepest nesting of image indexes followed.
const MAX_INDEX_DEPTH: usize = 4;

/// One image input: an OCI layout or a `docker save` archive (directory
/// or uncompressed tar).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInput {
    /// Where it is.
    pub path: PathBuf,
    /// A repository name (optionally with tag) for images whose layout
    /// names them by tag only, e.g. `demo/api`; added to every image of
    /// the input.
    pub name: Option<String>,
}

impl ImageInput {
    /// An input at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            name: None,
        }
    }
    /// Names the images of this input (`repo` or `repo:tag`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// Where a layer's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BlobLoc {
    /// `blobs/sha256/<hex>` of an OCI layout, with its descriptor size.
    Oci { digest: Digest, size: u64 },
    /// A member of a `docker save` archive (verified through its diff ID).
    Member(String),
}

impl BlobLoc {
    pub(crate) fn label(&self) -> String {
        match self {
            BlobLoc::Oci { digest, .. } => digest.to_string(),
            BlobLoc::Member(m) => m.clone(),
        }
    }
}

/// One layer of an image, located but not read.
#[derive(Debug, Clone)]
pub(crate) struct LayerSpec {
    pub blob: BlobLoc,
    pub compression: LayerCompression,
    pub diff_id: Digest,
    pub chain_id: Digest,
    pub blob_size: u64,
}

/// One image resolved for the requested platform.
#[derive(Debug, Clone)]
pub struct Image {
    pub(crate) input: usize,
    /// Tagged references (`name:tag`), familiar form, sorted.
    pub tags: BTreeSet<ImageRef>,
    /// Repository names the image is stored under.
    pub names: BTreeSet<String>,
    /// Image ID: digest of the config bytes.
    pub id: Digest,
    /// Manifest digest (from the layout, or computed for `docker save`
    /// inputs, see the module docs).
    pub manifest_digest: Digest,
    /// Whether [`Image::manifest_digest`] was computed rather than read.
    pub manifest_digest_computed: bool,
    /// The platform of the chosen manifest/config, e.g. `linux/arm/v7`.
    pub platform: String,
    pub(crate) config: Vec<u8>,
    pub(crate) layers: Vec<LayerSpec>,
}

impl Image {
    /// `name@sha256:<manifest digest>` for each repository name, sorted.
    pub fn digest_refs(&self) -> Vec<String> {
        self.names
            .iter()
            .map(|n| format!("{n}@{}", self.manifest_digest))
            .collect()
    }
    /// The exact config bytes.
    pub fn config_bytes(&self) -> &[u8] {
        &self.config
    }
    /// Number of layers.
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }
    /// Diff IDs, base layer first.
    pub fn diff_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.diff_id).collect()
    }
    /// Chain IDs, base layer first.
    pub fn chain_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.chain_id).collect()
    }
}

fn bad_json(input: &Path, what: impl Into<String>) -> impl FnOnce(serde_json::Error) -> Error {
    let input = input.to_path_buf();
    let what = what.into();
    move |source| Error::BadJson {
        input,
        what,
        source,
    }
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// Reads and verifies a JSON blob named by its descriptor.
fn read_blob(c: &Container, desc: &Descriptor) -> Result<(Digest, Vec<u8>), Error> {
    let d = Digest::parse(&desc.digest)
        .ok_or_else(|| Error::invalid(c.path(), format!("unsupported digest {:?}", desc.digest)))?;
    let data = c.read_small(&blob_path(&d), &desc.digest)?;
    if data.len() as u64 != desc.size {
        return Err(Error::SizeMismatch {
            input: c.path().to_path_buf(),
            digest: desc.digest.clone(),
            expected: desc.size,
            actual: data.len() as u64,
        });
    }
    let actual = Digest::of(&data);
    if actual != d {
        return Err(Error::DigestMismatch {
            input: c.path().to_path_buf(),
            digest: desc.digest.clone(),
            actual: actual.to_string(),
        });
    }
    Ok((d, data))
}

fn plat_str(os: &str, arch: &str, variant: Option<&str>) -> String {
    match variant.filter(|v| !v.is_empty()) {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    }
}

fn is_index(mt: &str) -> bool {
    mt == spec::MT_OCI_INDEX || mt == spec::MT_DOCKER_LIST
}

fn is_manifest(mt: &str) -> bool {
    mt == spec::MT_OCI_MANIFEST || mt == spec::MT_DOCKER_MANIFEST
}

/// Resolves an input into images for `platform`.
pub(crate) fn resolve(
    idx: usize,
    input: &ImageInput,
    platform: &Platform,
) -> Result<(Container, Vec<Image>), Error> {
    let c = Container::open(&input.path)?;
    let extra = match &input.name {
        Some(n) => Some(ImageRef::parse(n)?),
        None => None,
    };
    let images = if c.exists("oci-layout") && c.exists("index.json") {
        resolve_oci(idx, &c, extra.as_ref(), platform)?
    } else if c.exists("manifest.json") {
        resolve_save(idx, &c, extra.as_ref(), platform)?
    } else {
        return Err(Error::invalid(
            c.path(),
            "neither an OCI image layout (oci-layout, index.json) nor a docker save archive (manifest.json)",
        ));
    };
    Ok((c, images))
}

fn resolve_oci(
    idx: usize,
    c: &Container,
    extra: Option<&ImageRef>,
    platform: &Platform,
) -> Result<Vec<Image>, Error> {
    let layout = c.read_small("oci-layout", "oci-layout")?;
    let v: serde_json::Value =
        serde_json::from_slice(&layout).map_err(bad_json(c.path(), "oci-layout"))?;
    if v.get("imageLayoutVersion").and_then(|x| x.as_str()) != Some("1.0.0") {
        return Err(Error::invalid(
            c.path(),
            "oci-layout: imageLayoutVersion is not 1.0.0",
        ));
    }
    let index: spec::Index = serde_json::from_slice(&c.read_small("index.json", "index.json")?)
        .map_err(bad_json(c.path(), "index.json"))?;
    // Group the top-level descriptors by the name they carry: several
    // platform manifests under one name form one multi-platform image.
    let mut groups: Vec<(Vec<ImageRef>, Vec<Descriptor>)> = Vec::new();
    for d in index.manifests {
        let mut refs = Vec::new();
        if let Some(n) = d.annotations.get("io.containerd.image.name") {
            refs.push(ImageRef::parse(n)?);
        }
        if let Some(n) = d.annotations.get("org.opencontainers.image.ref.name") {
            if n.contains(['/', ':', '@']) {
                refs.push(ImageRef::parse(n)?);
            } else if let Some(e) = extra {
                refs.push(ImageRef::parse(&format!("{}:{n}", e.name))?);
            }
        }
        if let Some(e) = extra {
            if refs.is_empty() {
                refs.push(e.clone());
            }
        }
        refs.sort();
        refs.dedup();
        match groups.iter_mut().find(|(r, _)| *r == refs) {
            Some((_, v)) => v.push(d),
            None => groups.push((refs, vec![d])),
        }
    }
    let mut out: Vec<Image> = Vec::new();
    for (refs, descs) in groups {
        let label = refs
            .first()
            .map_or_else(|| "(unnamed)".to_string(), ToString::to_string);
        let (mdigest, manifest) = select(c, &descs, platform, &label, 0)?;
        if refs.is_empty() {
            return Err(Error::invalid(
                c.path(),
                format!("image {mdigest} has no name: give the input a name"),
            ));
        }
        let img = image_from_manifest(idx, c, mdigest, &manifest, refs, platform, &label)?;
        merge(&mut out, img);
    }
    Ok(out)
}

fn merge(out: &mut Vec<Image>, img: Image) {
    match out
        .iter_mut()
        .find(|i| i.id == img.id && i.manifest_digest == img.manifest_digest)
    {
        Some(prev) => {
            prev.tags.extend(img.tags);
            prev.names.extend(img.names);
        }
        None => out.push(img),
    }
}

/// Picks the manifest for `platform` among `descs` (following indexes).
fn select(
    c: &Container,
    descs: &[Descriptor],
    platform: &Platform,
    label: &str,
    depth: usize,
) -> Result<(Digest, spec::Manifest), Error> {
    if depth > MAX_INDEX_DEPTH {
        return Err(Error::invalid(c.path(), "image indexes nested too deep"));
    }
    let mut present = Vec::new();
    let mut best: Option<(u32, &Descriptor)> = None;
    if let [only] = descs {
        if only.platform.is_none() {
            return follow(c, only, platform, label, depth);
        }
    }
    for d in descs {
        let Some(p) = &d.platform else { continue };
        present.push(plat_str(&p.os, &p.architecture, p.variant.as_deref()));
        if let Some(r) = platform.rank(&p.os, &p.architecture, p.variant.as_deref()) {
            if best.is_none_or(|(b, _)| r < b) {
                best = Some((r, d));
            }
        }
    }
    match best {
        Some((_, d)) => follow(c, d, platform, label, depth),
        None => Err(Error::PlatformNotFound {
            input: c.path().to_path_buf(),
            image: label.to_string(),
            wanted: platform.to_string(),
            present: if present.is_empty() {
                "none declared".to_string()
            } else {
                present.join(", ")
            },
        }),
    }
}

fn follow(
    c: &Container,
    d: &Descriptor,
    platform: &Platform,
    label: &str,
    depth: usize,
) -> Result<(Digest, spec::Manifest), Error> {
    let (digest, data) = read_blob(c, d)?;
    if is_index(&d.media_type) {
        let idx: spec::Index = serde_json::from_slice(&data)
            .map_err(bad_json(c.path(), format!("index {}", d.digest)))?;
        return select(c, &idx.manifests, platform, label, depth + 1);
    }
    if !is_manifest(&d.media_type) {
        return Err(Error::UnsupportedMediaType {
            input: c.path().to_path_buf(),
            digest: d.digest.clone(),
            media_type: d.media_type.clone(),
        });
    }
    let m: spec::Manifest = serde_json::from_slice(&data)
        .map_err(bad_json(c.path(), format!("manifest {}", d.digest)))?;
    if let Some(mt) = m.media_type.as_deref().filter(|mt| !is_manifest(mt)) {
        return Err(Error::UnsupportedMediaType {
            input: c.path().to_path_buf(),
            digest: d.digest.clone(),
            media_type: mt.to_string(),
        });
    }
    if m.schema_version != 2 {
        return Err(Error::invalid(
            c.path(),
            format!(
                "manifest {} has schemaVersion {}",
                d.digest, m.schema_version
            ),
        ));
    }
    Ok((digest, m))
}

fn check_config_platform(
    c: &Container,
    cfg: &spec::Config,
    platform: &Platform,
    label: &str,
) -> Result<String, Error> {
    let have = plat_str(&cfg.os, &cfg.architecture, cfg.variant.as_deref());
    if cfg.os.is_empty() && cfg.architecture.is_empty() {
        return Ok(platform.to_string());
    }
    if platform
        .rank(&cfg.os, &cfg.architecture, cfg.variant.as_deref())
        .is_none()
    {
        return Err(Error::PlatformNotFound {
            input: c.path().to_path_buf(),
            image: label.to_string(),
            wanted: platform.to_string(),
            present: have,
        });
    }
    Ok(have)
}

fn layers_from(
    c: &Container,
    cfg: &spec::Config,
    blobs: Vec<(BlobLoc, LayerCompression, u64)>,
) -> Result<Vec<LayerSpec>, Error> {
    if cfg.rootfs.kind != "layers" {
        return Err(Error::invalid(
            c.path(),
            format!("rootfs type {:?} is not \"layers\"", cfg.rootfs.kind),
        ));
    }
    if cfg.rootfs.diff_ids.len() != blobs.len() {
        return Err(Error::invalid(
            c.path(),
            format!(
                "config lists {} diff IDs for {} layers",
                cfg.rootfs.diff_ids.len(),
                blobs.len()
            ),
        ));
    }
    let mut parent: Option<Digest> = None;
    let mut out = Vec::new();
    for ((blob, compression, blob_size), d) in blobs.into_iter().zip(&cfg.rootfs.diff_ids) {
        let diff_id = Digest::parse(d)
            .ok_or_else(|| Error::invalid(c.path(), format!("bad diff ID {d:?}")))?;
        let chain_id = Digest::chain(parent.as_ref(), &diff_id);
        parent = Some(chain_id);
        out.push(LayerSpec {
            blob,
            compression,
            diff_id,
            chain_id,
            blob_size,
        });
    }
    Ok(out)
}

fn image_from_manifest(
    idx: usize,
    c: &Container,
    mdigest: Digest,
    m: &spec::Manifest,
    refs: Vec<ImageRef>,
    platform: &Platform,
    label: &str,
) -> Result<Image, Error> {
    if m.config.media_type != spec::MT_OCI_CONFIG && m.config.media_type != spec::MT_DOCKER_CONFIG {
        return Err(Error::UnsupportedMediaType {
            input: c.path().to_path_buf(),
            digest: m.config.digest.clone(),
            media_type: m.config.media_type.clone(),
        });
    }
    let (id, config) = read_blob(c, &m.config)?;
    let cfg: spec::Config =
        serde_json::from_slice(&config).map_err(bad_json(c.path(), format!("config {id}")))?;
    let plat = check_config_platform(c, &cfg, platform, label)?;
    let mut blobs = Vec::new();
    for l in &m.layers {
        let comp =
            spec::layer_compression(&l.media_type).ok_or_else(|| Error::UnsupportedMediaType {
                input: c.path().to_path_buf(),
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
            })?;
        let digest = Digest::parse(&l.digest).ok_or_else(|| {
            Error::invalid(c.path(), format!("unsupported digest {:?}", l.digest))
        })?;
        if !c.exists(&blob_path(&digest)) {
            return Err(Error::MissingBlob {
                input: c.path().to_path_buf(),
                digest: l.digest.clone(),
            });
        }
        blobs.push((
            BlobLoc::Oci {
                digest,
                size: l.size,
            },
            comp,
            l.size,
        ));
    }
    let layers = layers_from(c, &cfg, blobs)?;
    Ok(Image {
        input: idx,
        names: refs.iter().map(|r| r.name.clone()).collect(),
        tags: refs
            .into_iter()
            .filter(|r| r.tag.is_some())
            .map(|mut r| {
                r.digest = None;
                r
            })
            .collect(),
        id,
        manifest_digest: mdigest,
        manifest_digest_computed: false,
        platform: plat,
        config,
        layers,
    })
}

fn resolve_save(
    idx: usize,
    c: &Container,
    extra: Option<&ImageRef>,
    platform: &Platform,
) -> Result<Vec<Image>, Error> {
    let list: Vec<spec::SaveManifest> =
        serde_json::from_slice(&c.read_small("manifest.json", "manifest.json")?)
            .map_err(bad_json(c.path(), "manifest.json"))?;
    let mut out = Vec::new();
    for m in list {
        let cfg_path = norm(&m.config)
            .ok_or_else(|| Error::invalid(c.path(), format!("refusing path {:?}", m.config)))?;
        let config = c.read_small(&cfg_path, &m.config)?;
        let id = Digest::of(&config);
        // The file is named by its digest (`<hex>.json` or
        // `blobs/sha256/<hex>`): check it.
        let stem = cfg_path.rsplit('/').next().unwrap_or_default();
        let stem = stem.strip_suffix(".json").unwrap_or(stem);
        if let Some(named) = Digest::from_hex(stem) {
            if named != id {
                return Err(Error::DigestMismatch {
                    input: c.path().to_path_buf(),
                    digest: named.to_string(),
                    actual: id.to_string(),
                });
            }
        }
        let cfg: spec::Config =
            serde_json::from_slice(&config).map_err(bad_json(c.path(), m.config.clone()))?;
        let mut refs = Vec::new();
        for t in m.repo_tags.iter().flatten() {
            refs.push(ImageRef::parse(t)?);
        }
        if let Some(e) = extra {
            refs.push(e.clone());
        }
        refs.sort();
        refs.dedup();
        let label = refs
            .first()
            .map_or_else(|| id.to_string(), ToString::to_string);
        if refs.is_empty() {
            return Err(Error::invalid(
                c.path(),
                format!("image {id} has no RepoTags: give the input a name"),
            ));
        }
        let plat = check_config_platform(c, &cfg, platform, &label)?;
        let mut blobs = Vec::new();
        for l in &m.layers {
            let p =
                norm(l).ok_or_else(|| Error::invalid(c.path(), format!("refusing path {l:?}")))?;
            let (mut r, len) = c.open_file(&p, l)?;
            let mut head = [0u8; 4];
            let n = r.read(&mut head).map_err(|source| Error::Io {
                path: c.path().to_path_buf(),
                op: "cannot read layer",
                source,
            })?;
            if n >= 2
                && (head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]))
            {
                return Err(Error::BadLayer {
                    input: c.path().to_path_buf(),
                    blob: l.clone(),
                    reason: "compressed layer in a docker save archive: its canonical manifest digest cannot be computed without reading it; re-save it uncompressed or give an OCI layout".into(),
                });
            }
            blobs.push((BlobLoc::Member(p), LayerCompression::None, len));
        }
        let layers = layers_from(c, &cfg, blobs)?;
        let manifest = canonical_manifest(id, config.len() as u64, &layers);
        out.push(Image {
            input: idx,
            names: refs.iter().map(|r| r.name.clone()).collect(),
            tags: refs.into_iter().filter(|r| r.tag.is_some()).collect(),
            id,
            manifest_digest: Digest::of(manifest.as_bytes()),
            manifest_digest_computed: true,
            platform: plat,
            config,
            layers,
        });
    }
    Ok(out)
}

/// The canonical OCI manifest of a `docker save` image (module docs).
pub(crate) fn canonical_manifest(config: Digest, config_size: u64, layers: &[LayerSpec]) -> String {
    let mut s = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{}\",\"config\":{{\"mediaType\":\"{}\",\"digest\":\"{config}\",\"size\":{config_size}}},\"layers\":[",
        spec::MT_OCI_MANIFEST,
        spec::MT_OCI_CONFIG
    );
    for (i, l) in layers.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"{}\",\"size\":{}}}",
            l.diff_id, l.blob_size
        ));
    }
    s.push_str("]}");
    s
}
