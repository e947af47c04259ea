//! The hard disk footer (table in the module doc).

use crate::bytes::{arr, be16, be32, be64, put};
use crate::error::{Error, Format, Result};

use super::checksum::VhdChecksum;
use super::geometry::ChsGeometry;

pub(crate) const VHD_FOOTER_LEN: usize = 512;
pub(crate) const VHD_COOKIE: [u8; 8] = *b"conectix";
pub(crate) const VHD_DISK_TYPE_FIXED: u32 = 2;
pub(crate) const VHD_DISK_TYPE_DYNAMIC: u32 = 3;
pub(crate) const VHD_DISK_TYPE_DIFFERENCING: u32 = 4;
/// File format version 1.0 (footer offset 12), the only one defined.
pub(crate) const VHD_FORMAT_VERSION: u32 = 0x0001_0000;
pub(crate) const VHD_NO_DATA_OFFSET: u64 = u64::MAX;
const CHECKSUM_AT: usize = 64;

/// Domain view of the footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Footer {
    pub data_offset: u64,
    pub timestamp: u32,
    pub creator_app: [u8; 4],
    pub original_size: u64,
    pub current_size: u64,
    pub geometry: ChsGeometry,
    pub disk_type: u32,
    pub unique_id: [u8; 16],
}

impl Footer {
    pub(crate) fn to_bytes(&self) -> [u8; VHD_FOOTER_LEN] {
        let mut b = [0u8; VHD_FOOTER_LEN];
        put(&mut b, 0, &VHD_COOKIE);
        put(&mut b, 8, &2u32.to_be_bytes());
        put(&mut b, 12, &VHD_FORMAT_VERSION.to_be_bytes());
        put(&mut b, 16, &self.data_offset.to_be_bytes());
        put(&mut b, 24, &self.timestamp.to_be_bytes());
        put(&mut b, 28, &self.creator_app);
        put(&mut b, 32, &0x0001_0000u32.to_be_bytes());
        put(&mut b, 36, b"Wi2k");
        put(&mut b, 40, &self.original_size.to_be_bytes());
        put(&mut b, 48, &self.current_size.to_be_bytes());
        put(&mut b, 56, &self.geometry.cylinders.to_be_bytes());
        put(
            &mut b,
            58,
            &[self.geometry.heads, self.geometry.sectors_per_track],
        );
        put(&mut b, 60, &self.disk_type.to_be_bytes());
        put(&mut b, 68, &self.unique_id);
        let sum = VhdChecksum::compute(&b, CHECKSUM_AT);
        put(&mut b, CHECKSUM_AT, &sum.0.to_be_bytes());
        b
    }

    /// Whether `b` (a file's last 512 bytes) is a VHD footer, whatever its
    /// cookie says: file format version 1.0 (offset 12) and a known disk
    /// type (offset 60). A raw disk's last sector almost never is; a VHD
    /// whose cookie was damaged must be refused, not read as raw.
    pub(crate) fn looks_like(b: &[u8]) -> bool {
        b.len() >= VHD_FOOTER_LEN
            && be32(b, 12) == VHD_FORMAT_VERSION
            && matches!(
                be32(b, 60),
                VHD_DISK_TYPE_FIXED | VHD_DISK_TYPE_DYNAMIC | VHD_DISK_TYPE_DIFFERENCING
            )
    }

    /// Parses a footer read from file byte `at` (for error locations).
    pub(crate) fn parse(b: &[u8; VHD_FOOTER_LEN], at: u64) -> Result<Self> {
        if b[..8] != VHD_COOKIE {
            return Err(Error::corrupt(
                Format::Vhd,
                at,
                "footer cookie is not conectix",
            ));
        }
        let stored = be32(b, CHECKSUM_AT);
        if VhdChecksum::compute(b, CHECKSUM_AT).0 != stored {
            return Err(Error::corrupt(
                Format::Vhd,
                at + 64,
                "footer checksum mismatch",
            ));
        }
        Ok(Footer {
            data_offset: be64(b, 16),
            timestamp: be32(b, 24),
            creator_app: arr(b, 28),
            original_size: be64(b, 40),
            current_size: be64(b, 48),
            geometry: ChsGeometry {
                cylinders: be16(b, 56),
                heads: b[58],
                sectors_per_track: b[59],
            },
            disk_type: be32(b, 60),
            unique_id: arr(b, 68),
        })
    }
}
