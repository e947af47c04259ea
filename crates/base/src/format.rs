//! Input formats of a base image, told apart by magic bytes (never by the
//! file name).
//!
//! | format | where | magic | spec |
//! |---|---|---|---|
//! | xz | 0 | `FD 37 7A 58 5A 00` | The .xz File Format 1.2.1 §2.1.1.1 |
//! | gzip | 0 | `1F 8B` | RFC 1952 §2.3.1 |
//! | zstd | 0 | `28 B5 2F FD` | RFC 8878 §3.1.1 |
//! | zip | 0 | `50 4B 03 04` (local header) or `50 4B 05 06` (empty archive) | PKWARE APPNOTE 6.3 §4.3.7, §4.3.16 |
//! | qcow2 | 0 | `51 46 49 FB` (`QFI\xfb`) | QEMU docs/interop/qcow2.txt |
//! | VMDK | 0 | `4B 44 4D 56` (`KDMV`) | VMware Virtual Disk Format 1.1 |
//! | VHD | size−512 (or 0) | `conectix` | Microsoft VHD Image Format Specification |
//! | raw | — | anything else | — |

use std::fs::File;
use std::path::Path;

use kiln_units::ReadAt;

use crate::Error;

/// The format of a base-image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BaseFormat {
    /// A raw disk image (`.img`, `.raw`).
    Raw,
    /// qcow2 (v2 or v3).
    Qcow2,
    /// VMDK hosted sparse or streamOptimized extent.
    Vmdk,
    /// VHD fixed or dynamic.
    Vhd,
    /// VHDX dynamic.
    Vhdx,
    /// xz-compressed raw image.
    Xz,
    /// gzip-compressed raw image.
    Gz,
    /// Zstandard-compressed raw image.
    Zst,
    /// zip archive holding one raw image.
    Zip,
}

impl BaseFormat {
    /// Compressed or zipped: readable only in order, so random access
    /// needs it expanded first.
    #[must_use]
    pub fn is_packed(self) -> bool {
        matches!(self, Self::Xz | Self::Gz | Self::Zst | Self::Zip)
    }
}

impl std::fmt::Display for BaseFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BaseFormat::Raw => "raw",
            BaseFormat::Qcow2 => "qcow2",
            BaseFormat::Vmdk => "vmdk",
            BaseFormat::Vhd => "vhd",
            BaseFormat::Vhdx => "vhdx",
            BaseFormat::Xz => "xz",
            BaseFormat::Gz => "gzip",
            BaseFormat::Zst => "zstd",
            BaseFormat::Zip => "zip",
        })
    }
}

/// xz stream header magic.
pub(crate) const XZ_MAGIC: &[u8] = &[0xFD, b'7', b'z', b'X', b'Z', 0x00];
/// gzip member magic.
pub(crate) const GZ_MAGIC: &[u8] = &[0x1F, 0x8B];
/// Zstandard frame magic (little-endian 0xFD2FB528).
pub(crate) const ZST_MAGIC: &[u8] = &[0x28, 0xB5, 0x2F, 0xFD];
/// zip local file header signature.
pub(crate) const ZIP_LOCAL: &[u8] = b"PK\x03\x04";
/// zip end of central directory signature (an empty archive starts so).
pub(crate) const ZIP_EOCD: &[u8] = b"PK\x05\x06";
/// qcow2 header magic.
pub(crate) const QCOW2_MAGIC: &[u8] = b"QFI\xfb";
/// VMDK sparse extent header magic.
pub(crate) const VMDK_MAGIC: &[u8] = b"KDMV";
/// VHD footer cookie.
pub(crate) const VHD_COOKIE: &[u8] = b"conectix";
/// VHDX file type identifier signature.
pub(crate) const VHDX_SIGNATURE: &[u8] = b"vhdxfile";

/// The format of a file from its first bytes and its last 512 bytes.
pub fn sniff_bytes(head: &[u8], tail512: Option<&[u8]>) -> BaseFormat {
    let starts = |m: &[u8]| head.starts_with(m);
    if starts(XZ_MAGIC) {
        BaseFormat::Xz
    } else if starts(GZ_MAGIC) {
        BaseFormat::Gz
    } else if starts(ZST_MAGIC) {
        BaseFormat::Zst
    } else if starts(ZIP_LOCAL) || starts(ZIP_EOCD) {
        BaseFormat::Zip
    } else if starts(QCOW2_MAGIC) {
        BaseFormat::Qcow2
    } else if starts(VMDK_MAGIC) {
        BaseFormat::Vmdk
    } else if starts(VHDX_SIGNATURE) {
        BaseFormat::Vhdx
    } else if starts(VHD_COOKIE)
        || tail512
            .is_some_and(|t| t.starts_with(VHD_COOKIE) || kiln_vdisk::vhd::looks_like_footer(t))
    {
        BaseFormat::Vhd
    } else {
        BaseFormat::Raw
    }
}

/// What a virtual-disk container magic at the start of decoded data is,
/// if any (a compressed qcow2 cannot be read without random access).
pub(crate) fn container_magic(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(QCOW2_MAGIC) {
        Some("qcow2")
    } else if head.starts_with(VMDK_MAGIC) {
        Some("VMDK")
    } else if head.starts_with(VHD_COOKIE) {
        Some("VHD")
    } else if head.starts_with(VHDX_SIGNATURE) {
        Some("VHDX")
    } else {
        None
    }
}

/// The format of the file at `path`, from its magic bytes.
///
/// # Errors
/// [`Error::Io`] if it cannot be opened or read.
pub fn sniff(path: &Path) -> Result<BaseFormat, Error> {
    let io = |op| Error::io(path, op);
    let file = File::open(path).map_err(io("open the base image"))?;
    sniff_file(&file).map_err(io("read the base image"))
}

pub(crate) fn sniff_file(file: &File) -> std::io::Result<BaseFormat> {
    let size = file.size()?;
    let mut head = [0u8; 8];
    let n = usize::try_from(size.min(8)).unwrap_or(8);
    let head = head.get_mut(..n).unwrap_or_default();
    file.read_exact_at(head, 0)?;
    let mut tail = [0u8; 512];
    let tail = match size.checked_sub(512) {
        Some(at) => {
            file.read_exact_at(&mut tail, at)?;
            Some(&tail[..])
        }
        None => None,
    };
    Ok(sniff_bytes(head, tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magics() {
        let table: &[(&[u8], BaseFormat)] = &[
            (b"\xfd7zXZ\x00\x00\x04", BaseFormat::Xz),
            (b"\x1f\x8b\x08\x00", BaseFormat::Gz),
            (b"\x28\xb5\x2f\xfd\x04", BaseFormat::Zst),
            (b"PK\x03\x04\x14\x00", BaseFormat::Zip),
            (b"PK\x05\x06\x00\x00", BaseFormat::Zip),
            (b"QFI\xfb\x00\x00\x00\x03", BaseFormat::Qcow2),
            (b"KDMV\x01\x00\x00\x00", BaseFormat::Vmdk),
            (b"conectix", BaseFormat::Vhd),
            (b"\xeb\x63\x90\x10", BaseFormat::Raw),
            (b"", BaseFormat::Raw),
        ];
        for (head, want) in table {
            assert_eq!(sniff_bytes(head, None), *want, "{head:?}");
        }
        assert_eq!(sniff_bytes(&[0; 8], Some(b"conectix\0\0")), BaseFormat::Vhd);
        assert_eq!(sniff_bytes(&[0; 8], Some(&[0; 8])), BaseFormat::Raw);
    }

    /// A VHD whose footer cookie is damaged is still a VHD (the reader
    /// then refuses it, naming the footer), not a raw disk.
    #[test]
    fn damaged_vhd_cookie_is_vhd() {
        let mut t = [0u8; 512];
        t[..8].copy_from_slice(b"conectiy");
        t[12..16].copy_from_slice(&[0, 1, 0, 0]);
        t[60..64].copy_from_slice(&[0, 0, 0, 2]);
        assert_eq!(sniff_bytes(&[0; 8], Some(&t)), BaseFormat::Vhd);
        t[60..64].copy_from_slice(&[0, 0, 0, 9]);
        assert_eq!(sniff_bytes(&[0; 8], Some(&t)), BaseFormat::Raw);
    }
}
