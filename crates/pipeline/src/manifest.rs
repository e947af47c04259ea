//! `manifest.json`: what went into a build and what came out, with every
//! input's digest and secrets redacted (the types and their redaction
//! rules are kiln-artifact's; this module fills them).
//!
//! Input digests: a file's sha256; a directory's is the sha256 of its
//! sorted listing, one line per entry: `<path>\0<kind>\0<size>\0<sha256 of
//! content or link target>\n` (a stable, documented canonical form).

use crate::app::App;
use crate::deliver::Delivered;
use crate::report::BuildReport;
use crate::Error;
use kiln_artifact::digest::{Sha256Digest, Sha256Hasher};
use kiln_artifact::manifest as m;
use kiln_recipe::{BoardProfile, InputPath, Recipe, TableKind};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Output {
        path: path.to_path_buf(),
        op: "cannot read an input to digest it",
        source,
    }
}

pub(crate) fn file_digest(path: &Path) -> Result<(Sha256Digest, u64), Error> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let n = h.bytes();
    Ok((h.finish(), n))
}

/// Digest of a file, or of a directory in the canonical form above.
pub(crate) fn input_digest(path: &Path) -> Result<(Sha256Digest, u64), Error> {
    if !path.is_dir() {
        return file_digest(path);
    }
    let mut listing = Sha256Hasher::new();
    let mut total = 0u64;
    let mut stack = vec![path.to_path_buf()];
    let mut entries = Vec::new();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let p = e.map_err(io_err(&dir))?.path();
            let md = std::fs::symlink_metadata(&p).map_err(io_err(&p))?;
            if md.is_dir() {
                stack.push(p.clone());
            }
            entries.push((p, md));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (p, md) in entries {
        let rel = p
            .strip_prefix(path)
            .unwrap_or(&p)
            .to_string_lossy()
            .into_owned();
        let (kind, content) = if md.is_file() {
            let (d, n) = file_digest(&p)?;
            total += n;
            ("f", d.to_hex())
        } else if md.is_symlink() {
            let t = std::fs::read_link(&p).map_err(io_err(&p))?;
            (
                "l",
                Sha256Digest::of(t.to_string_lossy().as_bytes()).to_hex(),
            )
        } else if md.is_dir() {
            ("d", String::new())
        } else {
            ("o", String::new())
        };
        listing.update(format!("{rel}\0{kind}\0{}\0{content}\n", md.len()).as_bytes());
    }
    Ok((listing.finish(), total))
}

fn input(i: &InputPath, name: &str, kind: m::InputKind) -> Result<m::Input, Error> {
    let (sha256, size_bytes) = input_digest(&i.path)?;
    Ok(m::Input {
        name: name.to_string(),
        kind,
        source: i.path.display().to_string(),
        sha256,
        size_bytes,
    })
}

fn hex_digest(s: &str) -> Sha256Digest {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = hex
            .get(i * 2..i * 2 + 2)
            .and_then(|b| u8::from_str_radix(b, 16).ok())
            .unwrap_or(0);
    }
    Sha256Digest(out)
}

/// Everything the manifest is made from.
pub(crate) struct ManifestFacts<'a> {
    pub profile: &'a BoardProfile,
    pub recipe: &'a Recipe,
    pub source_date_epoch: i64,
    pub report: &'a BuildReport,
    pub image_sha256: Sha256Digest,
    pub disk_id: String,
    pub app: Option<(&'a App, &'a kiln_oci::FeedReport)>,
    pub artifacts: &'a [Delivered],
    /// From [`inputs`].
    pub inputs: Vec<m::Input>,
    /// The id of the key signing `SHA256SUMS`, if any.
    pub signing_key_id: Option<String>,
}

/// The base image of a `--base` build.
pub(crate) struct BaseFacts {
    /// The image as given.
    pub path: std::path::PathBuf,
    /// sha256 of the file as given and its size.
    pub sha256: Sha256Digest,
    pub size_bytes: u64,
}

/// Builds the manifest JSON (secrets redacted, lists sorted).
/// The manifest's inputs with their digests. Reads every input file
/// (hundreds of MB for a real payload), so the build runs it beside
/// delivery. `with_app`: the application was preloaded.
pub(crate) fn inputs(
    profile: &BoardProfile,
    recipe: &Recipe,
    base: Option<&BaseFacts>,
    with_app: bool,
) -> Result<Vec<m::Input>, Error> {
    let arch = profile.arch;
    let mut inputs = Vec::new();
    if let Some(b) = base {
        inputs.push(m::Input {
            name: "base-image".into(),
            kind: m::InputKind::BaseImage,
            source: b.path.display().to_string(),
            sha256: b.sha256,
            size_bytes: b.size_bytes,
        });
    } else {
        let os = recipe.os_for(arch)?;
        if let Some(r) = &os.rootfs {
            inputs.push(input(r, "rootfs", m::InputKind::RootFs)?);
        }
        if let Some(b) = &os.boot {
            inputs.push(input(b, "boot", m::InputKind::BootFiles)?);
        }
        if let Some(b) = &os.bios_boot {
            inputs.push(input(b, "bios-boot", m::InputKind::Other)?);
        }
    }
    for p in &recipe.network_profiles {
        inputs.push(input(p, "network-profile", m::InputKind::NetworkProfile)?);
    }
    for c in &recipe.ca_certificates {
        inputs.push(input(c, "ca-certificate", m::InputKind::CaCertificate)?);
    }
    for k in &recipe.ssh_key_files {
        inputs.push(input(k, "ssh-key", m::InputKind::SshKey)?);
    }
    for x in &recipe.boot_extra {
        inputs.push(input(&x.src, &x.dest, m::InputKind::Other)?);
    }
    if let (Some(a), true) = (&recipe.app, with_app) {
        inputs.push(input(&a.compose, "compose", m::InputKind::ComposeFile)?);
        for i in &a.images {
            let kind = if i.input.path.join("oci-layout").exists()
                || i.input.path.join("index.json").exists()
            {
                m::InputKind::OciLayout
            } else {
                m::InputKind::Other
            };
            inputs.push(input(&i.input, i.name.as_deref().unwrap_or("image"), kind)?);
        }
    }
    Ok(inputs)
}

pub(crate) fn manifest_json(f: &ManifestFacts<'_>) -> Result<String, Error> {
    let inputs = f.inputs.clone();
    let preload = preload(f);
    let profile_digest = file_digest(&f.profile.source)?.0;
    let recipe_digest = file_digest(&f.recipe.source)?.0;
    let partitions = partitions(f);
    let swap = (f.recipe.swap.size.bytes() > 0).then(|| m::Swap {
        path: format!("/mnt/data{}", f.recipe.swap.path),
        size_bytes: f.recipe.swap.size.bytes(),
        label: Some(f.recipe.swap.label.clone()),
        uuid: f.report.swap_uuid.clone(),
        activation: match f.recipe.swap.activation {
            kiln_recipe::SwapActivation::SystemdUnit => m::SwapActivation::SystemdUnit,
            kiln_recipe::SwapActivation::AppService => m::SwapActivation::AppService,
            kiln_recipe::SwapActivation::None => m::SwapActivation::Manual,
        },
    });
    let config = f
        .report
        .config
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    let cv = if v.as_str() == Some(kiln_recipe::REDACTED) {
                        m::ConfigValue::Redacted
                    } else {
                        m::ConfigValue::public(v.clone())
                    };
                    (k.clone(), cv)
                })
                .collect()
        })
        .unwrap_or_default();
    let artifacts = f
        .artifacts
        .iter()
        .filter_map(|a| {
            Some(m::Artifact {
                file: a.path.file_name()?.to_string_lossy().into_owned(),
                format: a.artifact_format?,
                compression: a.compression,
                size_bytes: a.size_bytes,
                sha256: a.digest?,
            })
        })
        .collect();
    let mut manifest = m::Manifest {
        schema_version: m::MANIFEST_SCHEMA_VERSION,
        kiln_version: env!("CARGO_PKG_VERSION").to_string(),
        profile: m::NamedDigest {
            name: f.profile.name.clone(),
            sha256: profile_digest,
        },
        recipe: m::NamedDigest {
            name: f.recipe.name.clone(),
            sha256: recipe_digest,
        },
        source_date_epoch: Some(f.source_date_epoch),
        inputs,
        image: m::ImageInfo {
            size_bytes: f.report.disk_bytes,
            sector_size: 512,
            table: match f.profile.table {
                TableKind::Mbr => m::PartitionTable::Mbr,
                TableKind::Gpt => m::PartitionTable::Gpt,
            },
            disk_id: f.disk_id.clone(),
            sha256: f.image_sha256,
        },
        partitions,
        preload,
        swap,
        config,
        artifacts,
        signing_key_id: f.signing_key_id.clone(),
    };
    manifest.normalize();
    manifest.to_json().map_err(|e| Error::Output {
        path: f.report.image.clone(),
        op: "cannot serialise the manifest",
        source: std::io::Error::other(e.to_string()),
    })
}

/// The manifest's preload section: every image reference in the store
/// and every service of `apps.json`.
fn preload(f: &ManifestFacts<'_>) -> m::Preload {
    let mut preload = m::Preload::default();
    if let (Some(_), Some((app, feed))) = (&f.recipe.app, f.app) {
        let tar_size: BTreeMap<String, u64> = feed
            .layers
            .iter()
            .map(|l| (l.chain_id.to_string(), l.tar_size))
            .collect();
        for img in app.store.images() {
            let size_bytes = img
                .chain_ids()
                .iter()
                .filter_map(|c| tar_size.get(&c.to_string()))
                .sum();
            let layers = u32::try_from(img.layer_count()).unwrap_or(u32::MAX);
            let mut refs: Vec<String> = img.tags.iter().map(ToString::to_string).collect();
            refs.extend(img.digest_refs());
            for reference in refs {
                preload.images.push(m::PreloadedImage {
                    reference,
                    image_id: hex_digest(&img.id.to_string()),
                    layers,
                    size_bytes,
                });
            }
        }
        let apps: serde_json::Value = serde_json::from_slice(&app.apps_json).unwrap_or_default();
        for a in apps["apps"]
            .as_object()
            .into_iter()
            .flat_map(|o| o.values())
        {
            for rel in a["releases"]
                .as_object()
                .into_iter()
                .flat_map(|o| o.values())
            {
                for (name, s) in rel["services"].as_object().into_iter().flatten() {
                    preload.services.push(m::Service {
                        app: a["name"].as_str().unwrap_or_default().to_string(),
                        name: name.clone(),
                        image: s["image"].as_str().unwrap_or_default().to_string(),
                    });
                }
            }
        }
    }
    preload
}

/// The manifest's partitions, from the build report and the profile.
fn partitions(f: &ManifestFacts<'_>) -> Vec<m::Partition> {
    f.report
        .partitions
        .iter()
        .map(|p| {
            let spec = f.profile.partitions.iter().find(|s| s.label == p.label);
            m::Partition {
                number: p.number,
                label: p.label.clone(),
                type_id: match (f.profile.table, spec) {
                    (TableKind::Mbr, Some(s)) => format!("0x{:02x}", s.mbr_type),
                    (TableKind::Gpt, Some(s)) => s.gpt_type.to_string(),
                    _ => String::new(),
                },
                start_bytes: p.start,
                size_bytes: p.size,
                partition_uuid: p.part_guid.clone(),
                filesystem: match p.fs {
                    "fat16" => m::Filesystem::Fat16,
                    "fat32" => m::Filesystem::Fat32,
                    _ => m::Filesystem::Ext4,
                },
                fs_uuid: Some(p.fs_id.clone()),
            }
        })
        .collect()
}
