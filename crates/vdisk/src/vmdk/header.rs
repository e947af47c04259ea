//! SparseExtentHeader (table in the module doc).

use crate::error::{Error, Format, Result};
use core::mem::offset_of;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::VMDK4_MAGIC;

pub(crate) const VMDK4_FLAG_NL_DETECT: u32 = 1 << 0;
/// A redundant grain directory and tables are kept (monolithicSparse).
pub(crate) const VMDK4_FLAG_RGD: u32 = 1 << 1;
pub(crate) const VMDK4_FLAG_COMPRESS: u32 = 1 << 16;
pub(crate) const VMDK4_FLAG_MARKER: u32 = 1 << 17;
/// `gdOffset` meaning "read the footer at the end of the file".
pub(crate) const VMDK4_GD_AT_END: u64 = u64::MAX;
pub(crate) const VMDK4_COMPRESSION_DEFLATE: u16 = 1;

/// `SparseExtentHeader` as on disk (little-endian; offsets in the module
/// doc), 512 bytes with its padding.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawSparseHeader {
    magic_number: U32,
    version: U32,
    flags: U32,
    capacity: U64,
    grain_size: U64,
    descriptor_offset: U64,
    descriptor_size: U64,
    num_gtes_per_gt: U32,
    rgd_offset: U64,
    gd_offset: U64,
    over_head: U64,
    unclean_shutdown: u8,
    /// `'\n'`, `' '`, `'\r'`, `'\n'`: detect line-ending conversion.
    end_line_chars: [u8; 4],
    compress_algorithm: U16,
    pad: [u8; 433],
}

const _: () = assert!(core::mem::size_of::<RawSparseHeader>() == 512);

/// Where a field starts, for error locations.
macro_rules! at {
    ($f:ident) => {
        offset_of!(RawSparseHeader, $f) as u64
    };
}

/// Domain view of the header.
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
        let raw = RawSparseHeader {
            magic_number: U32::new(VMDK4_MAGIC),
            version: U32::new(self.version),
            flags: U32::new(self.flags),
            capacity: U64::new(self.capacity),
            grain_size: U64::new(self.grain_size),
            descriptor_offset: U64::new(self.descriptor_offset),
            descriptor_size: U64::new(self.descriptor_size),
            num_gtes_per_gt: U32::new(self.num_gtes_per_gt),
            rgd_offset: U64::new(self.rgd_offset),
            gd_offset: U64::new(self.gd_offset),
            over_head: U64::new(self.overhead),
            unclean_shutdown: 0,
            end_line_chars: *b"\n \r\n",
            compress_algorithm: U16::new(self.compress_algorithm),
            pad: [0; 433],
        };
        let mut b = [0u8; 512];
        b.copy_from_slice(raw.as_bytes());
        b
    }

    pub(crate) fn parse(b: &[u8; 512], at: u64) -> Result<Self> {
        let c = |off: u64, what| Error::corrupt(Format::Vmdk, at + off, what);
        let r = RawSparseHeader::ref_from_bytes(b).map_err(|_| c(0, "header"))?;
        if r.magic_number.get() != VMDK4_MAGIC {
            return Err(c(0, "bad magic"));
        }
        let h = SparseHeader {
            version: r.version.get(),
            flags: r.flags.get(),
            capacity: r.capacity.get(),
            grain_size: r.grain_size.get(),
            descriptor_offset: r.descriptor_offset.get(),
            descriptor_size: r.descriptor_size.get(),
            num_gtes_per_gt: r.num_gtes_per_gt.get(),
            rgd_offset: r.rgd_offset.get(),
            gd_offset: r.gd_offset.get(),
            overhead: r.over_head.get(),
            compress_algorithm: r.compress_algorithm.get(),
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
            return Err(c(at!(grain_size), "grainSize"));
        }
        if h.num_gtes_per_gt == 0 || h.num_gtes_per_gt > 4096 {
            return Err(c(at!(num_gtes_per_gt), "numGTEsPerGT"));
        }
        if h.capacity > (1u64 << 40) {
            // 512 TiB: far above what any hosted sparse extent holds.
            return Err(c(at!(capacity), "capacity"));
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
