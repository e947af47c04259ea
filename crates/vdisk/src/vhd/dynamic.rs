//! The dynamic disk header (table in the module doc).

use crate::bytes::{be32, be64, put};
use crate::error::{Error, Format, Result};

use super::checksum::VhdChecksum;

pub(crate) const VHD_DYN_HEADER_LEN: usize = 1024;
pub(crate) const VHD_DYN_COOKIE: [u8; 8] = *b"cxsparse";
/// A BAT entry for a block that is not allocated.
pub(crate) const VHD_BAT_UNUSED: u32 = u32::MAX;
const CHECKSUM_AT: usize = 36;

/// Domain view of the dynamic header (parent fields are not used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DynamicHeader {
    pub table_offset: u64,
    pub max_table_entries: u32,
    pub block_size: u32,
}

impl DynamicHeader {
    pub(crate) fn to_bytes(&self) -> [u8; VHD_DYN_HEADER_LEN] {
        let mut b = [0u8; VHD_DYN_HEADER_LEN];
        put(&mut b, 0, &VHD_DYN_COOKIE);
        put(&mut b, 8, &u64::MAX.to_be_bytes());
        put(&mut b, 16, &self.table_offset.to_be_bytes());
        put(&mut b, 24, &0x0001_0000u32.to_be_bytes());
        put(&mut b, 28, &self.max_table_entries.to_be_bytes());
        put(&mut b, 32, &self.block_size.to_be_bytes());
        let sum = VhdChecksum::compute(&b, CHECKSUM_AT);
        put(&mut b, CHECKSUM_AT, &sum.0.to_be_bytes());
        b
    }

    pub(crate) fn parse(b: &[u8; VHD_DYN_HEADER_LEN], at: u64) -> Result<Self> {
        if b[..8] != VHD_DYN_COOKIE {
            return Err(Error::corrupt(
                Format::Vhd,
                at,
                "dynamic header cookie is not cxsparse",
            ));
        }
        if VhdChecksum::compute(b, CHECKSUM_AT).0 != be32(b, CHECKSUM_AT) {
            return Err(Error::corrupt(
                Format::Vhd,
                at + 36,
                "dynamic header checksum mismatch",
            ));
        }
        let h = DynamicHeader {
            table_offset: be64(b, 16),
            max_table_entries: be32(b, 28),
            block_size: be32(b, 32),
        };
        if !h.block_size.is_power_of_two() || !(512..=(256 << 20)).contains(&h.block_size) {
            return Err(Error::corrupt(Format::Vhd, at + 32, "block size"));
        }
        Ok(h)
    }
}
