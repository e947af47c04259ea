//! Where each output goes, beside the raw output path, and the checks
//! that only regular files are replaced.

use super::format::{format_path, Delivery, DiskFormat};
use crate::Error;
use kiln_artifact::compress::CompressOptions;
use std::path::{Path, PathBuf};

/// The block map's path for the raw output path `out` (`disk.img.bmap`).
pub(crate) fn bmap_path(out: &Path) -> PathBuf {
    PathBuf::from(format!("{}.bmap", out.display()))
}

/// The manifest's path for the raw output path `out`: its stem (without
/// `.img`) and `.manifest.json`.
pub(crate) fn manifest_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".img").unwrap_or(&name);
    out.with_file_name(format!("{stem}.manifest.json"))
}

/// Every file a build delivering `d` to `out` may create or replace:
/// checked before any work ([`crate::outpath::check_all`]).
pub(crate) fn output_paths(out: &Path, d: &Delivery) -> Vec<PathBuf> {
    let mut paths = vec![out.to_path_buf()];
    paths.extend(d.formats.iter().map(|f| format_path(out, *f)));
    paths.extend(d.compress.as_ref().map(|c| compressed_path(out, c)));
    paths.push(bmap_path(out));
    paths.push(manifest_path(out));
    paths.extend(crate::sbom::paths(out));
    paths.push(kiln_units::parent_dir(out).join("SHA256SUMS"));
    paths.push(kiln_units::parent_dir(out).join(crate::SIGNATURE_FILE));
    paths
}

/// Checks a build's outputs before any work: the name is UTF-8 (sibling
/// files and `SHA256SUMS` name it), every file `d` writes is a regular
/// file or nothing yet ([`crate::outpath`]), and the stale temporary
/// files of an interrupted earlier run are removed.
pub(crate) fn check_outputs(out: &Path, d: &Delivery) -> Result<(), Error> {
    if out.file_name().and_then(|n| n.to_str()).is_none() {
        return Err(Error::Image {
            path: out.to_path_buf(),
            reason: "the output file name must be valid UTF-8 (the bmap, manifest and SHA256SUMS name it)".into(),
        });
    }
    crate::outpath::check_all(output_paths(out, d).iter().map(PathBuf::as_path))?;
    for tmp in temporary_paths(out) {
        crate::outpath::remove_stale(&tmp)?;
    }
    Ok(())
}

/// Every file a build to `out` writes in any delivery.
pub(super) fn every_output_path(out: &Path) -> Vec<PathBuf> {
    use kiln_artifact::compress::Compression as C;
    let every = Delivery {
        formats: vec![
            DiskFormat::Raw,
            DiskFormat::Qcow2,
            DiskFormat::Vmdk,
            DiskFormat::Vhd,
            DiskFormat::VhdDynamic,
            DiskFormat::Vhdx,
            DiskFormat::VmdkSparse,
            DiskFormat::Ova,
        ],
        compress: None,
        seed: [0; 16],
        timestamp: 0,
        ova: kiln_vdisk::OvaOptions::new("disk"),
    };
    let mut paths = output_paths(out, &every);
    paths.extend(
        [C::Xz, C::Gzip, C::Zstd]
            .into_iter()
            .map(|c| compressed_path(out, &CompressOptions::new(c))),
    );
    paths
}

/// Every temporary file a build, `kiln convert` or `kiln mkfs` writing
/// `out` may create, in any delivery: the hidden `.kiln-partial` file of
/// each output and base-image mode's scratch files. A build removes the
/// stale ones before it starts (an interrupted build with other formats
/// leaves nothing for long); the CLI removes them on SIGINT/SIGTERM.
pub fn temporary_paths(out: &Path) -> Vec<PathBuf> {
    let mut tmps: Vec<PathBuf> = every_output_path(out)
        .iter()
        .map(|p| crate::outpath::partial_path(p))
        .collect();
    tmps.extend(
        crate::outpath::SCRATCH
            .iter()
            .map(|what| crate::outpath::scratch_path(out, what)),
    );
    tmps
}

/// `out` with the compression's extension (`disk.img.xz`).
pub(super) fn compressed_path(out: &Path, c: &CompressOptions) -> PathBuf {
    let ext = c.compression().extension().unwrap_or("");
    PathBuf::from(format!("{}.{ext}", out.display()))
}
