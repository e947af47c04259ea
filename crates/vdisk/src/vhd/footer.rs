//! The hard disk footer (table in the module doc).

use crate::error::{Error, Format, Result};
use core::mem::offset_of;
use zerocopy::big_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

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
const CHECKSUM_AT: usize = offset_of!(RawFooter, checksum);

/// The footer as on disk (big-endian; offsets in the module doc).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawFooter {
    cookie: [u8; 8],
    features: U32,
    file_format_version: U32,
    data_offset: U64,
    time_stamp: U32,
    creator_application: [u8; 4],
    creator_version: U32,
    creator_host_os: [u8; 4],
    original_size: U64,
    current_size: U64,
    cylinders: U16,
    heads: u8,
    sectors_per_track: u8,
    disk_type: U32,
    checksum: U32,
    unique_id: [u8; 16],
    saved_state: u8,
    reserved: [u8; 427],
}

const _: () = assert!(core::mem::size_of::<RawFooter>() == VHD_FOOTER_LEN);

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
        let mut raw = RawFooter {
            cookie: VHD_COOKIE,
            // Bit 1 is reserved and always set.
            features: U32::new(2),
            file_format_version: U32::new(VHD_FORMAT_VERSION),
            data_offset: U64::new(self.data_offset),
            time_stamp: U32::new(self.timestamp),
            creator_application: self.creator_app,
            creator_version: U32::new(0x0001_0000),
            creator_host_os: *b"Wi2k",
            original_size: U64::new(self.original_size),
            current_size: U64::new(self.current_size),
            cylinders: U16::new(self.geometry.cylinders),
            heads: self.geometry.heads,
            sectors_per_track: self.geometry.sectors_per_track,
            disk_type: U32::new(self.disk_type),
            checksum: U32::new(0),
            unique_id: self.unique_id,
            saved_state: 0,
            reserved: [0; 427],
        };
        raw.checksum = U32::new(VhdChecksum::compute(raw.as_bytes(), CHECKSUM_AT).0);
        let mut b = [0u8; VHD_FOOTER_LEN];
        b.copy_from_slice(raw.as_bytes());
        b
    }

    /// Whether `b` (a file's last 512 bytes) is a VHD footer, whatever its
    /// cookie says: file format version 1.0 (offset 12) and a known disk
    /// type (offset 60). A raw disk's last sector almost never is; a VHD
    /// whose cookie was damaged must be refused, not read as raw.
    pub(crate) fn looks_like(b: &[u8]) -> bool {
        RawFooter::ref_from_prefix(b).is_ok_and(|(r, _)| {
            r.file_format_version.get() == VHD_FORMAT_VERSION
                && matches!(
                    r.disk_type.get(),
                    VHD_DISK_TYPE_FIXED | VHD_DISK_TYPE_DYNAMIC | VHD_DISK_TYPE_DIFFERENCING
                )
        })
    }

    /// Parses a footer read from file byte `at` (for error locations).
    pub(crate) fn parse(b: &[u8; VHD_FOOTER_LEN], at: u64) -> Result<Self> {
        let r =
            RawFooter::ref_from_bytes(b).map_err(|_| Error::corrupt(Format::Vhd, at, "footer"))?;
        if r.cookie != VHD_COOKIE {
            return Err(Error::corrupt(
                Format::Vhd,
                at,
                "footer cookie is not conectix",
            ));
        }
        if VhdChecksum::compute(b, CHECKSUM_AT).0 != r.checksum.get() {
            return Err(Error::corrupt(
                Format::Vhd,
                at + CHECKSUM_AT as u64,
                "footer checksum mismatch",
            ));
        }
        Ok(Footer {
            data_offset: r.data_offset.get(),
            timestamp: r.time_stamp.get(),
            creator_app: r.creator_application,
            original_size: r.original_size.get(),
            current_size: r.current_size.get(),
            geometry: ChsGeometry {
                cylinders: r.cylinders.get(),
                heads: r.heads,
                sectors_per_track: r.sectors_per_track,
            },
            disk_type: r.disk_type.get(),
            unique_id: r.unique_id,
        })
    }
}
