//! Base-image mode (`kiln build --base IMAGE`, recipe `[base] image`):
//! preload into the OS vendor's released image instead of building the OS
//! partitions, rootless, without mounting anything.
//!
//! 1. The base image is read in place when it is raw; any other kind
//!    (xz/gz/zst, a zip holding one image, qcow2, vmdk, vhd: sniffed by
//!    kiln-base) is expanded, sparse, into the raw output file when
//!    delivery writes one (then only the edits and the new partition are
//!    written over it, the old partition set aside first), else into a
//!    scratch file beside the output. kiln's edits lie over the base in a
//!    copy-on-write working disk ([`crate::work`]), so no raw copy of the
//!    disk is made for the outputs.
//! 2. Its layout is detected (MBR with extended/logical partitions, or
//!    GPT) and the partitions identified by filesystem label; the device
//!    type on the boot partition must match the board (`--force`
//!    overrides).
//! 3. Everything before the data partition stays as it is: the boot code
//!    in the MBR and the gap before p1, rootA, rootB, state (compared
//!    byte for byte by the tests).
//! 4. The data partition is rebuilt: its old contents are read as a tree
//!    from the base (or the copy set aside; kiln-ext4's reader) and fed, after the swapfile,
//!    into a new ext4 together with the new app's layers merged into the
//!    existing engine store (kiln-oci: existing layers and image configs
//!    are kept, `repositories.json` merged) and `apps.json`. The new
//!    filesystem keeps the old label and UUID. The data partition must be
//!    the last one; the image grows when the result (plus headroom) needs
//!    more room than the old partition had, with the (extended and) data
//!    partition resized and, on GPT, the backup header written at the new
//!    end.
//! 5. The boot partition is rebuilt with `config.json` merged (the
//!    recipe's keys over the base's), the recipe's NetworkManager profiles
//!    and boot files; every other file keeps its bytes.
//! 6. The disk is written as a normal build's is
//!    ([`crate::deliver::disk::deliver_disk`]): the working disk before the data
//!    partition, then the new data partition, into the raw image, a qcow2
//!    or VHD written in place, or streamed into a VMDK or compressed image
//!    with no image file at all (a dry run of the data partition's writer
//!    first, [`crate::stream`]); then checksums, bmap and a manifest
//!    naming the base image and its digest. A raw base read in place must
//!    not change during the build (its size and modification time are
//!    checked once the disk is written).
//!
//! A base that already carries an app in `apps.json` with another uuid is
//! refused (two apps fighting over one device); the same app is replaced
//! by the new release.
//!
//! Flasher (installer) images (boot label `flash-boot`): steps 3 to 5 run
//! on the OS image the flasher carries at `/opt/<name>.img` in
//! `flash-rootA` (copied out to a scratch file, and the preloaded result
//! written to another: it is file content), then `flash-rootA` is rebuilt
//! with the grown inner image in place of the old one and every other
//! file kept, and grown; `flash-boot`'s config.json is merged too, since
//! the installer copies it onto the device.
//!
//! Swap: the root filesystem stays as the vendor built it, so kiln cannot
//! add a systemd unit there; `swap.activation` must be `"app-service"`
//! (the privileged `kiln-swap` service added to the app runs `swapon`, as
//! balenaOS needs) or `"none"` (the OS activates the swapfile itself).
//!
//! Scratch space beside the output: the expanded base (unless it is raw
//! or expanded into the raw output; then the old partition set aside),
//! the edits (the partition tables and the rebuilt boot partition, in a
//! sparse file), a flasher's inner image before and after; memory stays
//! at a few MiB of buffers plus the writers' per-inode tables (and, for a
//! streamed output, the data partition's metadata from the dry run).

mod ctx;
mod merge;
mod preload;
mod rebuilt;
mod source;

use self::ctx::{base_err, base_io, out_err, Ctx, Scratch};
use self::preload::{preload_disk, preload_flasher};
use self::rebuilt::Rebuilt;
use self::source::BaseSource;
use crate::app::prepare_app;
use crate::deliver::disk::{deliver_disk, raw_image_file, Deliver as DeliverTo};
use crate::report::BuildReport;
use crate::request::{boot_config, delivery_for, recipe_invalid, BuildRequest};
use crate::sizing::{self};
use crate::work::{At, Cow};
use crate::Error;
use kiln_base::Role as BaseRole;
use kiln_recipe::{BoardProfile, SwapActivation};
use kiln_tree::Timestamp;
use std::path::Path;

/// The architectures balena's `device-type.json` names for a board arch.
fn arch_matches(profile: &BoardProfile, arch: &str) -> bool {
    let names: &[&str] = match profile.arch {
        kiln_recipe::Arch::Amd64 => &["amd64", "x86_64", "x86-64"],
        kiln_recipe::Arch::Armhf => &["armv7hf", "armhf", "rpi", "armv7"],
        kiln_recipe::Arch::Arm64 => &["aarch64", "arm64"],
    };
    names.contains(&arch)
}

/// Checks the base against the board: device type and architecture.
fn check_device(
    req: &BuildRequest<'_>,
    base: &Path,
    info: &kiln_base::DeviceInfo,
    force: bool,
) -> Result<(), Error> {
    let mut problems = Vec::new();
    if let Some(slug) = &info.slug {
        if slug != &req.profile.device_type {
            problems.push(format!(
                "device type {slug:?} (from {}) is not board {}'s {:?}",
                info.source, req.profile.name, req.profile.device_type
            ));
        }
    }
    if let Some(arch) = &info.arch {
        if !arch_matches(&req.profile, arch) {
            problems.push(format!(
                "architecture {arch:?} (from {}) is not the board's {}",
                info.source,
                req.profile.arch.as_str()
            ));
        }
    }
    if problems.is_empty() || force {
        for p in &problems {
            tracing::warn!("{}: {p} (--force)", base.display());
        }
        return Ok(());
    }
    Err(Error::Image {
        path: base.to_path_buf(),
        reason: format!("{}; use --force to preload anyway", problems.join("; ")),
    })
}

/// Runs a base-image build (see the module doc).
pub(crate) fn build_base(
    req: &BuildRequest<'_>,
    base: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<BuildReport, Error> {
    let profile = &req.profile;
    let recipe = &req.recipe;
    let time = Timestamp::new(req.timestamp, 0);
    if !base.is_file() {
        return Err(Error::Image {
            path: base.to_path_buf(),
            reason: "base image not found (or not a file)".into(),
        });
    }
    let config = boot_config(req, progress)?;
    if recipe.swap.size.bytes() > 0 && recipe.swap.activation == SwapActivation::SystemdUnit {
        return Err(recipe_invalid(
            recipe,
            "swap.activation",
            "a base image keeps its root filesystem as it is, so kiln cannot add a systemd unit there: use \"app-service\" (a privileged swap service in the app) or \"none\" in base-image mode",
        )
        .into());
    }
    // Checked before the slow part, as a normal build checks its plan.
    let delivery = delivery_for(req)?;
    let out = &req.output;
    let scratch = |what: &str| Scratch::create(crate::outpath::scratch_path(out, what));

    // 1. The base, read in place or expanded, under the edits.
    progress(&format!("reading the base image {}", base.display()));
    // The raw output file, when delivery writes one: a compressed base
    // is expanded straight into it, and only kiln's edits and the new
    // partition are written over it.
    let mut image = raw_image_file(req, &delivery)?;
    let source = BaseSource::open(base, &scratch, image.as_mut().map(|t| (t, out.as_path())))?;
    let edits = scratch("edits")?;
    let work = Cow::new(
        source.file.try_clone().map_err(base_io(base))?,
        edits
            .file
            .try_clone()
            .map_err(out_err(&edits.path, "cannot reopen a scratch file"))?,
    )
    .map_err(out_err(&edits.path, "cannot start the working disk"))?;

    // 2. Layout and device type.
    let layout = kiln_base::detect(&At(&work)).map_err(base_err(base))?;
    let info = kiln_base::device_info(&At(&work), &layout).map_err(base_err(base))?;
    check_device(req, base, &info, req.force)?;
    // The app, once the data partition's label is known (the swap
    // service finds the partition by it; a flasher's inner image is
    // assumed to use balenaOS's resin-data).
    let data_label = layout
        .role(BaseRole::Data)
        .and_then(|p| p.label.clone())
        .unwrap_or_else(|| "resin-data".into());
    let app = match &recipe.app {
        Some(a) => {
            progress("resolving the application images");
            Some(prepare_app(req, a, time, &data_label)?)
        }
        None => None,
    };
    // What the base holds, for the SBOMs: its root filesystem's package
    // databases (a flasher's root is the installer's, not the OS's).
    let sbom = crate::sbom::Collector::default();
    if recipe.output.sbom && !layout.flasher {
        read_base_rootfs(&work, &layout, &sbom)?;
    }
    let unchanged = || source.unchanged(base);
    let ctx = Ctx {
        req,
        base,
        config: &config,
        app: app.as_ref(),
        time,
        sbom: &sbom,
        unchanged: &unchanged,
        in_output: source.in_output,
    };
    let medium = sizing::medium(profile, req.medium.as_deref())?;
    let mut deliver = |disk: &Rebuilt<'_>, progress: &mut dyn FnMut(&str)| {
        let disk_bytes = disk.disk_bytes;
        if let Some(m) = &medium {
            sizing::check_medium(m, disk_bytes, || {
                "the base image and the preload do not fit it".into()
            })?;
        }
        let report = |partitions| BuildReport {
            image: out.clone(),
            disk_bytes,
            medium: medium.clone().map(|m| (m.name, m.size.bytes())),
            fits: sizing::fits(profile, disk_bytes),
            partitions,
            config: redacted(&disk.config, &config),
            swap_bytes: recipe.swap.size.bytes(),
            app: app.as_ref().map(|a| a.summary.to_string()),
            swap_uuid: (recipe.swap.size.bytes() > 0).then(|| req.seed.uuid("swap").to_string()),
            image_sha256: String::new(),
            artifacts: Vec::new(),
        };
        let facts = source.facts(base)?;
        let to = DeliverTo {
            req,
            delivery: &delivery,
            disk_id: disk.disk_id.clone(),
            app: app.as_ref(),
            base: Some(&facts),
            sbom: Some(&sbom),
        };
        deliver_disk(&to, disk, image.take(), report, progress)
    };
    if layout.flasher {
        preload_flasher(&ctx, &work, &layout, &scratch, progress, &mut deliver)
    } else {
        preload_disk(&ctx, &work, &layout, &scratch, progress, &mut deliver)
    }
}

/// Keeps the SBOM's files from the base's root filesystem (`rootA`),
/// when it has one that is ext4.
fn read_base_rootfs(
    work: &Cow,
    layout: &kiln_base::Layout,
    sbom: &crate::sbom::Collector,
) -> Result<(), Error> {
    let Some(root) = layout.role(BaseRole::RootA) else {
        return Ok(());
    };
    if root.fs != kiln_base::FsType::Ext4 {
        return Ok(());
    }
    let label = root.label.as_deref().unwrap_or("rootA");
    let fs = kiln_ext4::Ext4Reader::open(kiln_units::SubRegion::new(
        work.base(),
        root.start_bytes,
        root.size_bytes,
    ))
    .map_err(ctx::old_err(label))?;
    sbom.read_rootfs(&fs).map_err(ctx::old_err(label))
}

/// The merged `config.json` with secrets redacted: the well-known secret
/// keys and every key the recipe marks secret.
fn redacted(merged: &serde_json::Value, config: &kiln_recipe::ResolvedConfig) -> serde_json::Value {
    let mut v = merged.clone();
    kiln_recipe::redact_known(&mut v);
    if let (Some(o), Some(r)) = (v.as_object_mut(), config.redacted().as_object()) {
        for (k, val) in r {
            if val.as_str() == Some(kiln_recipe::REDACTED) {
                o.insert(k.clone(), val.clone());
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_artifact::digest::Sha256Digest;
    use std::io::Write;

    /// A raw base read in place is checked for changes before the outputs
    /// are committed: a longer file (or a newer mtime) fails the build.
    #[test]
    fn a_raw_base_that_changes_during_the_build_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.img");
        std::fs::write(&base, vec![0x55u8; 4096]).unwrap();
        let scratch = |what: &str| Scratch::create(dir.path().join(format!(".s-{what}")));
        let source = BaseSource::open(&base, &scratch, None).unwrap();
        assert!(source._expanded.is_none(), "a raw base is read in place");
        source.unchanged(&base).unwrap();
        let facts = source.facts(&base).unwrap();
        assert_eq!(
            facts.sha256.to_hex(),
            Sha256Digest::of(&[0x55u8; 4096]).to_hex(),
            "the digest thread hashed the base"
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(&base)
            .unwrap()
            .write_all(&[0; 512])
            .unwrap();
        let err = source.unchanged(&base).unwrap_err().to_string();
        assert!(err.contains("changed during the build"), "{err}");
    }
}
