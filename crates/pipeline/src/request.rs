//! A build request and what is resolved from it once: the delivery
//! (formats, compression), config.json, the swapfile, the identities
//! derived from the seed.

use crate::content::{tp, Generated};
use crate::deliver::{Delivery, DiskFormat};
use crate::seed::Seed;
use crate::swap::swap_header;
use crate::Error;
use kiln_ext4::Ext4Options;
use kiln_recipe::{BoardProfile, EnvLookup, Recipe, ResolvedConfig, Role};
use kiln_tree::{Timestamp, TreePath};
use std::path::PathBuf;

/// Everything a build needs; the caller (the CLI) gathers the time, the
/// seed and the environment, the library never reads them itself.
pub struct BuildRequest<'a> {
    /// The board.
    pub profile: BoardProfile,
    /// The recipe.
    pub recipe: Recipe,
    /// `--media`: the medium the image must fit.
    pub medium: Option<String>,
    /// Where the image goes.
    pub output: PathBuf,
    /// `--set key=value` config overrides, in order.
    pub overrides: Vec<String>,
    /// The build time (SOURCE_DATE_EPOCH): every file and filesystem time.
    pub timestamp: i64,
    /// Seed of every UUID, GUID and signature.
    pub seed: Seed,
    /// Environment lookup for `from-env` config values.
    pub env: EnvLookup<'a>,
    /// Image formats to deliver (empty: the recipe's `[output] formats`).
    pub formats: Vec<DiskFormat>,
    /// Compression of the raw image: `xz`, `gz`, `zst` with an optional
    /// level (`None`: the recipe's `[output] compress`).
    pub compress: Option<(String, Option<u32>)>,
    /// Threads for compression.
    pub threads: u32,
    /// Base-image mode: preload into this image (`None`: the recipe's
    /// `[base] image`, if any; see the README).
    pub base: Option<PathBuf>,
    /// Base-image mode: accept a device type or architecture mismatch.
    pub force: bool,
    /// Signs `SHA256SUMS` (`SHA256SUMS.minisig`, committed with the other
    /// outputs) and records the key's id in the manifest.
    pub signer: Option<&'a kiln_sign::SecretKey>,
    /// Byte progress of the long steps (see [`crate::StepBytes`]), called
    /// from worker threads too; `None`: not reported.
    pub on_bytes: Option<crate::OnBytes<'a>>,
}

/// The delivery the request (or, failing that, the recipe) asks for.
pub(crate) fn delivery_for(req: &BuildRequest<'_>) -> Result<Delivery, Error> {
    let out = &req.recipe.output;
    let formats = if req.formats.is_empty() {
        out.formats
            .iter()
            .map(|f| {
                DiskFormat::parse(f).ok_or_else(|| Error::Layout {
                    partition: "output".into(),
                    reason: format!("unknown format {f:?}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        req.formats.clone()
    };
    let (kind, level) = match &req.compress {
        Some((k, l)) => (k.clone(), *l),
        None => (out.compress.clone(), None),
    };
    let compression = match kind.as_str() {
        "none" | "" => None,
        "xz" => Some(kiln_artifact::compress::Compression::Xz),
        "gz" | "gzip" => Some(kiln_artifact::compress::Compression::Gzip),
        "zst" | "zstd" => Some(kiln_artifact::compress::Compression::Zstd),
        other => {
            return Err(Error::Layout {
                partition: "output".into(),
                reason: format!("unknown compression {other:?} (use xz, gz, zst or none)"),
            })
        }
    };
    let compress = match compression {
        None => None,
        Some(c) => {
            let mut o =
                kiln_artifact::compress::CompressOptions::new(c).threads(req.threads.max(1));
            if let Some(l) = level {
                let (lo, hi) = c.level_range();
                if !(lo..=hi).contains(&l) {
                    return Err(Error::Layout {
                        partition: "output".into(),
                        reason: format!("compression level {l} is outside {lo}..={hi}"),
                    });
                }
                o = o.level(l);
            }
            Some(o)
        }
    };
    Ok(Delivery {
        formats,
        compress,
        seed: req.seed.bytes16("vdisk"),
        timestamp: req.timestamp,
        ova: crate::vm_options::ova_options(
            &req.recipe,
            req.profile.table,
            req.seed.bytes16("vdisk"),
            req.timestamp,
            req.threads,
        ),
    })
}

pub(crate) fn recipe_invalid(recipe: &Recipe, key: &str, reason: &str) -> kiln_recipe::Error {
    kiln_recipe::Error::Invalid {
        at: kiln_recipe::Location {
            file: recipe.source.clone(),
            line: 0,
            column: 0,
        },
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

/// Checks the boot partition's inputs exist and resolves config.json
/// (the recipe's `[config]`, then the `--set` overrides).
pub(crate) fn boot_config(
    req: &BuildRequest<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<ResolvedConfig, Error> {
    let recipe = &req.recipe;
    for i in recipe
        .network_profiles
        .iter()
        .chain(&recipe.ca_certificates)
        .chain(recipe.boot_extra.iter().map(|b| &b.src))
    {
        i.check_exists()?;
    }
    progress("resolving config.json");
    let mut config = recipe.resolve_config(&req.profile.device_type, req.env)?;
    for o in &req.overrides {
        config.set(o)?;
    }
    Ok(config)
}

/// The files kiln generates on the boot partition: `config.json`, the
/// NetworkManager profiles under `system-connections/` and the recipe's
/// `[boot] files`.
pub(crate) fn boot_generated(
    recipe: &Recipe,
    config: &ResolvedConfig,
) -> Result<Vec<Generated>, Error> {
    let mut generated = vec![Generated {
        path: tp("config.json"),
        mode: 0o644,
        data: config.to_pretty_bytes(),
    }];
    for p in &recipe.network_profiles {
        let name = p
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = TreePath::root()
            .join(b"system-connections")
            .and_then(|d| d.join(name.as_bytes()))
            .map_err(|e| p.invalid(e.to_string()))?;
        generated.push(Generated {
            path,
            mode: 0o600,
            data: p.read()?,
        });
    }
    for x in &recipe.boot_extra {
        let path = TreePath::parse(x.dest.as_bytes()).map_err(|e| x.src.invalid(e.to_string()))?;
        generated.push(Generated {
            path,
            mode: 0o644,
            data: x.src.read()?,
        });
    }
    Ok(generated)
}

/// The swapfile of the recipe, if any: its path on the data partition
/// (`label`, for errors), size and header page.
pub(crate) fn swapfile(
    req: &BuildRequest<'_>,
    label: &str,
) -> Result<Option<(TreePath, u64, [u8; 4096])>, Error> {
    let swap = &req.recipe.swap;
    if swap.size.bytes() == 0 {
        return Ok(None);
    }
    let path = TreePath::parse(swap.path.trim_start_matches('/').as_bytes()).map_err(|e| {
        Error::Layout {
            partition: label.to_string(),
            reason: format!("swap.path: {e}"),
        }
    })?;
    let header = swap_header(swap.size.bytes(), req.seed.uuid("swap"), &swap.label);
    Ok(Some((path, swap.size.bytes(), header)))
}

/// The ext4 parameters of a partition: identities from the seed, the
/// build time, and for the data partition mke2fs's `-i 8192` density (an
/// engine store is tens of thousands of small files).
pub(crate) fn ext4_options(
    req: &BuildRequest<'_>,
    label: &str,
    role: Role,
    size: u64,
    time: Timestamp,
) -> Ext4Options {
    let opts = Ext4Options::new(size)
        .label(label)
        .uuid(req.seed.uuid(&format!("fs:{label}")).to_rfc_bytes())
        .hash_seed(req.seed.bytes16(&format!("hash:{label}")))
        .timestamp(time);
    if role == Role::Data {
        opts.inode_ratio(8192)
    } else {
        opts
    }
}

/// The GPT partition GUID of the partition labelled `label`.
pub(crate) fn gpt_part_guid(req: &BuildRequest<'_>, label: &str) -> kiln_units::Guid {
    req.seed.uuid(&format!("gpt-part:{label}"))
}
