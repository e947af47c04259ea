//! SparseExtentHeader (table in the module doc).

use crate::bytes::{le16, le32, le64, put};
use crate::error::{Error, Format, Result};

use super::VMDK4_MAGIC;

pub(crate) const VMDK4_FLAG_NL_DETECT: u32 = 1 << 0;
/// A redundant grain directory and tables are kept (monolithicSparse).
pub(crate) const VMDK4_FLAG_RGD: u32 = 1 << 1;
pub(crate) const VMDK4_FLAG_COMPRESS: u32 = 1 << 16;
pub(crate) const VMDK4_FLAG_MARKER: u32 = 1 << 17;
/// `gdOffset` meaning "read the footer at the end of the file".
pub(crate) const VMDK4_GD_AT_END: u64 = u64::MAX;
pub(crate) const VMDK4_COMPRESSION_DEFLATE: u16 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SparseHeader {
    pub version: u32,
    pub flags: u32,
    pub capacity: u64,
    pub grain_size: u64,
    pub descriptor_offset: u64,
    pub descriptor_size: u64,
    pub num_gtes_per_gt: u32,
    pub rgd_offset: u64,
    pub gd_offset: u64,
    pub overhead: u64,
    pub compress_algorithm: u16,
}

impl SparseHeader {
    pub(crate) fn to_bytes(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        put(&mut b, 0, &VMDK4_MAGIC.to_le_bytes());
        put(&mut b, 4, &self.version.to_le_bytes());
        put(&mut b, 8, &self.flags.to_le_bytes());
        put(&mut b, 12, &self.capacity.to_le_bytes());
        put(&mut b, 20, &self.grain_size.to_le_bytes());
        put(&mut b, 28, &self.descriptor_offset.to_le_bytes());
        put(&mut b, 36, &self.descriptor_size.to_le_bytes());
        put(&mut b, 44, &self.num_gtes_per_gt.to_le_bytes());
        put(&mut b, 48, &self.rgd_offset.to_le_bytes());
        put(&mut b, 56, &self.gd_offset.to_le_bytes());
        put(&mut b, 64, &self.overhead.to_le_bytes());
        put(&mut b, 73, b"\n \r\n");
        put(&mut b, 77, &self.compress_algorithm.to_le_bytes());
        b
    }

    pub(crate) fn parse(b: &[u8; 512], at: u64) -> Result<Self> {
        let c = |off: u64, what| Error::corrupt(Format::Vmdk, at + off, what);
        if le32(b, 0) != VMDK4_MAGIC {
            return Err(c(0, "bad magic"));
        }
        let h = SparseHeader {
            version: le32(b, 4),
            flags: le32(b, 8),
            capacity: le64(b, 12),
            grain_size: le64(b, 20),
            descriptor_offset: le64(b, 28),
            descriptor_size: le64(b, 36),
            num_gtes_per_gt: le32(b, 44),
            rgd_offset: le64(b, 48),
            gd_offset: le64(b, 56),
            overhead: le64(b, 64),
            compress_algorithm: le16(b, 77),
        };
        if !(1..=3).contains(&h.version) {
            return Err(Error::unsupported(
                Format::Vmdk,
                "sparse extent version other than 1..3",
            ));
        }
        // VMware requires a power of two of at least 8 sectors; QEMU caps
        // grains at 2 MiB (4096 sectors), which bounds our buffers.
        if !h.grain_size.is_power_of_two() || !(8..=4096).contains(&h.grain_size) {
            return Err(c(20, "grainSize"));
        }
        if h.num_gtes_per_gt == 0 || h.num_gtes_per_gt > 4096 {
            return Err(c(44, "numGTEsPerGT"));
        }
        if h.capacity > (1u64 << 40) {
            // 512 TiB: far above what any hosted sparse extent holds.
            return Err(c(12, "capacity"));
        }
        if h.flags & VMDK4_FLAG_COMPRESS != 0 && h.compress_algorithm != VMDK4_COMPRESSION_DEFLATE {
            return Err(Error::unsupported(
                Format::Vmdk,
                "compression other than deflate",
            ));
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_known_bytes() {
        let h = SparseHeader {
            version: 3,
            flags: VMDK4_FLAG_NL_DETECT | VMDK4_FLAG_COMPRESS | VMDK4_FLAG_MARKER,
            capacity: 2048,
            grain_size: 128,
            descriptor_offset: 1,
            descriptor_size: 20,
            num_gtes_per_gt: 512,
            rgd_offset: 0,
            gd_offset: VMDK4_GD_AT_END,
            overhead: 128,
            compress_algorithm: VMDK4_COMPRESSION_DEFLATE,
        };
        let b = h.to_bytes();
        assert_eq!(&b[..12], b"KDMV\x03\0\0\0\x01\0\x03\0");
        assert_eq!(&b[73..79], b"\n \r\n\x01\0");
        assert_eq!(SparseHeader::parse(&b, 0).unwrap(), h);
        let mut bad = b;
        bad[20] = 100; // grain size not a power of two
        assert!(SparseHeader::parse(&bad, 0).is_err());
    }
}
