//! The dynamic disk header (table in the module doc).

use crate::error::{Error, Format, Result};
use core::mem::offset_of;
use zerocopy::big_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::checksum::VhdChecksum;

pub(crate) const VHD_DYN_HEADER_LEN: usize = 1024;
pub(crate) const VHD_DYN_COOKIE: [u8; 8] = *b"cxsparse";
/// A BAT entry for a block that is not allocated.
pub(crate) const VHD_BAT_UNUSED: u32 = u32::MAX;
const CHECKSUM_AT: usize = offset_of!(RawDynamicHeader, checksum);

/// The dynamic disk header as on disk (big-endian; offsets in the
/// module doc).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawDynamicHeader {
    cookie: [u8; 8],
    data_offset: U64,
    table_offset: U64,
    header_version: U32,
    max_table_entries: U32,
    block_size: U32,
    checksum: U32,
    parent_unique_id: [u8; 16],
    parent_time_stamp: U32,
    reserved1: U32,
    parent_unicode_name: [u8; 512],
    parent_locators: [u8; 192],
    reserved2: [u8; 256],
}

const _: () = assert!(core::mem::size_of::<RawDynamicHeader>() == VHD_DYN_HEADER_LEN);

/// Domain view of the dynamic header (parent fields are not used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DynamicHeader {
    pub table_offset: u64,
    pub max_table_entries: u32,
    pub block_size: u32,
}

impl DynamicHeader {
    pub(crate) fn to_bytes(&self) -> [u8; VHD_DYN_HEADER_LEN] {
        let mut raw = RawDynamicHeader {
            cookie: VHD_DYN_COOKIE,
            data_offset: U64::new(u64::MAX),
            table_offset: U64::new(self.table_offset),
            header_version: U32::new(0x0001_0000),
            max_table_entries: U32::new(self.max_table_entries),
            block_size: U32::new(self.block_size),
            checksum: U32::new(0),
            parent_unique_id: [0; 16],
            parent_time_stamp: U32::new(0),
            reserved1: U32::new(0),
            parent_unicode_name: [0; 512],
            parent_locators: [0; 192],
            reserved2: [0; 256],
        };
        raw.checksum = U32::new(VhdChecksum::compute(raw.as_bytes(), CHECKSUM_AT).0);
        let mut b = [0u8; VHD_DYN_HEADER_LEN];
        b.copy_from_slice(raw.as_bytes());
        b
    }

    pub(crate) fn parse(b: &[u8; VHD_DYN_HEADER_LEN], at: u64) -> Result<Self> {
        let r = RawDynamicHeader::ref_from_bytes(b)
            .map_err(|_| Error::corrupt(Format::Vhd, at, "dynamic header"))?;
        if r.cookie != VHD_DYN_COOKIE {
            return Err(Error::corrupt(
                Format::Vhd,
                at,
                "dynamic header cookie is not cxsparse",
            ));
        }
        if VhdChecksum::compute(b, CHECKSUM_AT).0 != r.checksum.get() {
            return Err(Error::corrupt(
                Format::Vhd,
                at + CHECKSUM_AT as u64,
                "dynamic header checksum mismatch",
            ));
        }
        let h = DynamicHeader {
            table_offset: r.table_offset.get(),
            max_table_entries: r.max_table_entries.get(),
            block_size: r.block_size.get(),
        };
        if !h.block_size.is_power_of_two() || !(512..=(256 << 20)).contains(&h.block_size) {
            return Err(Error::corrupt(
                Format::Vhd,
                at + offset_of!(RawDynamicHeader, block_size) as u64,
                "block size",
            ));
        }
        Ok(h)
    }
}
