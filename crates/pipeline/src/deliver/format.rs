//! What to deliver: the image formats, the compression, the identities
//! of format headers; which format a build writes in place.

use kiln_artifact::compress::CompressOptions;
use std::path::{Path, PathBuf};

/// An image format to deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DiskFormat {
    /// Sparse raw image (the output path as given).
    Raw,
    /// qcow2 v3 (`.qcow2`).
    Qcow2,
    /// VMDK streamOptimized (`.vmdk`).
    Vmdk,
    /// VHD fixed (`.vhd`).
    Vhd,
    /// VHD dynamic (`.dyn.vhd`).
    VhdDynamic,
    /// VHDX dynamic (`.vhdx`).
    Vhdx,
    /// VMDK monolithicSparse (`.sparse.vmdk`).
    VmdkSparse,
    /// OVA: OVF descriptor, streamOptimized VMDK, manifest (`.ova`).
    Ova,
}

impl DiskFormat {
    /// Parses `raw`, `qcow2`, `vmdk`, `vhd`, `vhd-dynamic`, `vhdx`,
    /// `vmdk-sparse`, `ova`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "raw" => Self::Raw,
            "qcow2" => Self::Qcow2,
            "vmdk" => Self::Vmdk,
            "vhd" => Self::Vhd,
            "vhd-dynamic" => Self::VhdDynamic,
            "vhdx" => Self::Vhdx,
            "vmdk-sparse" => Self::VmdkSparse,
            "ova" => Self::Ova,
            _ => return None,
        })
    }
    pub(super) fn suffix(self) -> &'static str {
        match self {
            Self::Raw => "",
            Self::Qcow2 => ".qcow2",
            Self::Vmdk => ".vmdk",
            Self::Vhd => ".vhd",
            Self::VhdDynamic => ".dyn.vhd",
            Self::Vhdx => ".vhdx",
            Self::VmdkSparse => ".sparse.vmdk",
            Self::Ova => ".ova",
        }
    }
    pub(super) fn manifest_format(self) -> kiln_artifact::manifest::ArtifactFormat {
        use kiln_artifact::manifest::ArtifactFormat as A;
        match self {
            Self::Raw => A::Raw,
            Self::Qcow2 => A::Qcow2,
            Self::Vmdk => A::Vmdk,
            Self::Vhd => A::VhdFixed,
            Self::VhdDynamic => A::VhdDynamic,
            Self::Vhdx => A::Vhdx,
            Self::VmdkSparse => A::VmdkSparse,
            Self::Ova => A::Ova,
        }
    }
}

/// The output format the build writes in place instead of a raw image,
/// when raw is not delivered: qcow2 (positionally, [`crate::sink`]), else
/// a fixed VHD (the raw disk, then its footer), else a dynamic VHD
/// (positionally); `None` otherwise (VMDK and compressed forms only).
pub(crate) fn in_place_format(d: &Delivery) -> Option<DiskFormat> {
    if d.formats.contains(&DiskFormat::Raw) {
        None
    } else if d.formats.contains(&DiskFormat::Qcow2) {
        Some(DiskFormat::Qcow2)
    } else if d.formats.contains(&DiskFormat::Vhd) {
        Some(DiskFormat::Vhd)
    } else if d.formats.contains(&DiskFormat::VhdDynamic) {
        Some(DiskFormat::VhdDynamic)
    } else {
        None
    }
}

/// The path of format `f`'s file for the raw output path `out`: `out`
/// itself for raw, else its stem (without `.img`/`.raw`) and the format's
/// suffix.
pub(crate) fn format_path(out: &Path, f: DiskFormat) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if f == DiskFormat::Raw {
        return out.to_path_buf();
    }
    let stem = name
        .strip_suffix(".img")
        .or_else(|| name.strip_suffix(".raw"))
        .unwrap_or(&name);
    out.with_file_name(format!("{stem}{}", f.suffix()))
}

/// What to deliver.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Image formats.
    pub formats: Vec<DiskFormat>,
    /// Compress the raw image (`.img.xz` etc. instead of the sparse file).
    pub compress: Option<CompressOptions>,
    /// Seed for format-level identities (VHD UUID, VMDK CID).
    pub seed: [u8; 16],
    /// Timestamp for format headers (VHD).
    pub timestamp: i64,
    /// The virtual machine an OVA declares (from the recipe's `[vm]` and the board).
    pub ova: kiln_vdisk::OvaOptions,
}

/// VHD options of `kind` from the delivery's identities.
pub(crate) fn vhd_options(d: &Delivery, kind: kiln_vdisk::VhdKind) -> kiln_vdisk::VhdOptions {
    kiln_vdisk::VhdOptions::new()
        .kind(kind)
        .unique_id(kiln_units::Guid::v4_from_seed(d.seed))
        .timestamp_unix(u64::try_from(d.timestamp).unwrap_or(0))
}

/// How a written disk reaches the outputs, decided once from the
/// [`Delivery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Only sequential outputs (VMDK, the compressed raw image): the disk
    /// is streamed into them, and no image file is written.
    Streamed,
    /// The disk is written positionally into one file every output is
    /// made from: the sparse raw image (`None`), or the
    /// [`in_place_format`]'s file.
    Positional(Option<DiskFormat>),
}

impl Route {
    /// The route of delivery `d`.
    pub(crate) fn of(d: &Delivery) -> Self {
        match in_place_format(d) {
            None if !keeps_raw(d) => Self::Streamed,
            in_place => Self::Positional(in_place),
        }
    }

    /// Whether the disk goes into a raw file: the raw image kept, or a
    /// fixed VHD written in place (the raw disk, then a footer).
    pub(crate) fn raw_file(self) -> bool {
        matches!(self, Self::Positional(None | Some(DiskFormat::Vhd)))
    }
}

/// Whether delivery keeps the raw image file itself (raw asked for, not
/// compressed).
fn keeps_raw(d: &Delivery) -> bool {
    d.formats.contains(&DiskFormat::Raw) && d.compress.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_artifact::compress::Compression;
    use DiskFormat::{Qcow2, Raw, Vhd, VhdDynamic, Vmdk};

    fn delivery(formats: &[DiskFormat], compress: bool) -> Delivery {
        Delivery {
            formats: formats.to_vec(),
            compress: compress.then(|| CompressOptions::new(Compression::Zstd)),
            seed: [0; 16],
            timestamp: 0,
            ova: kiln_vdisk::OvaOptions::new("disk"),
        }
    }

    /// The delivery planner: which file the disk is written into, if any.
    #[test]
    fn routes() {
        let cases: &[(&[DiskFormat], bool, Route, bool)] = &[
            (&[Raw], false, Route::Positional(None), true),
            (&[Raw, Qcow2, Vmdk], false, Route::Positional(None), true),
            (&[Raw], true, Route::Streamed, false),
            (&[Vmdk], false, Route::Streamed, false),
            (&[Raw, Vmdk], true, Route::Streamed, false),
            (&[Qcow2], false, Route::Positional(Some(Qcow2)), false),
            (
                &[Qcow2, Vhd, Vmdk],
                true,
                Route::Positional(Some(Qcow2)),
                false,
            ),
            (
                &[Vhd, VhdDynamic],
                false,
                Route::Positional(Some(Vhd)),
                true,
            ),
            (
                &[VhdDynamic, Vmdk],
                false,
                Route::Positional(Some(VhdDynamic)),
                false,
            ),
            (&[Raw, Qcow2], true, Route::Streamed, false),
        ];
        for (formats, compress, route, raw_file) in cases {
            let r = Route::of(&delivery(formats, *compress));
            assert_eq!(r, *route, "{formats:?} compressed {compress}");
            assert_eq!(r.raw_file(), *raw_file, "{formats:?} compressed {compress}");
        }
    }

    #[test]
    fn format_paths() {
        let out = Path::new("/o/nuc.img");
        let got: Vec<PathBuf> = [Raw, Qcow2, Vmdk, Vhd, VhdDynamic]
            .iter()
            .map(|&f| format_path(out, f))
            .collect();
        let want = [
            "/o/nuc.img",
            "/o/nuc.qcow2",
            "/o/nuc.vmdk",
            "/o/nuc.vhd",
            "/o/nuc.dyn.vhd",
        ];
        assert_eq!(got, want.map(PathBuf::from));
        assert_eq!(format_path(Path::new("x"), Qcow2), PathBuf::from("x.qcow2"));
    }
}
