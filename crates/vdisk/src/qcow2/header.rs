//! The qcow2 header (see the table in the module doc).

use crate::error::{Error, Format, Result};
use zerocopy::big_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::QCOW2_MAGIC;

/// Bytes of the version 3 header without extensions.
pub(crate) const QCOW2_V3_HEADER_LEN: u32 = 104;
/// Bytes of the version 2 header.
pub(crate) const QCOW2_V2_HEADER_LEN: u32 = 72;
/// Incompatible feature bit 0: dirty (refcounts may be stale; reading is fine).
pub(crate) const QCOW2_INCOMPAT_DIRTY: u64 = 1 << 0;
/// Incompatible feature bit 1: corrupt.
pub(crate) const QCOW2_INCOMPAT_CORRUPT: u64 = 1 << 1;
/// Incompatible feature bit 2: external data file.
pub(crate) const QCOW2_INCOMPAT_DATA_FILE: u64 = 1 << 2;
/// Incompatible feature bit 3: compression type field (non-zlib).
pub(crate) const QCOW2_INCOMPAT_COMPRESSION: u64 = 1 << 3;
/// Incompatible features the reader understands.
pub(crate) const QCOW2_INCOMPAT_SUPPORTED: u64 = QCOW2_INCOMPAT_DIRTY;

/// The header as on disk (big-endian), offsets as in the module doc's
/// table: 104 bytes of version 3, then the byte of `compression_type`
/// (read only when `header_length > 104`) and padding to 112, which is
/// also where the header extensions start.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawQcow2Header {
    magic: [u8; 4],
    version: U32,
    backing_file_offset: U64,
    backing_file_size: U32,
    cluster_bits: U32,
    size: U64,
    crypt_method: U32,
    l1_size: U32,
    l1_table_offset: U64,
    refcount_table_offset: U64,
    refcount_table_clusters: U32,
    nb_snapshots: U32,
    snapshots_offset: U64,
    incompatible_features: U64,
    compatible_features: U64,
    autoclear_features: U64,
    refcount_order: U32,
    header_length: U32,
    compression_type: u8,
    padding: [u8; 7],
}

const _: () = assert!(core::mem::size_of::<RawQcow2Header>() == 112);

/// Domain view of the header fields this crate uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub version: u32,
    pub backing_file_offset: u64,
    pub backing_file_size: u32,
    pub cluster_bits: u32,
    pub size: u64,
    pub crypt_method: u32,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    pub nb_snapshots: u32,
    pub incompatible_features: u64,
    pub refcount_order: u32,
    pub header_length: u32,
    /// Byte 104 when `header_length > 104`; 0 is zlib.
    pub compression_type: u8,
}

impl Header {
    /// Encodes a version 3 header followed by the end-of-extensions marker
    /// (112 bytes: 104 + 8 zero bytes).
    pub(crate) fn to_bytes(&self) -> [u8; 112] {
        let raw = RawQcow2Header {
            magic: QCOW2_MAGIC,
            version: U32::new(self.version),
            backing_file_offset: U64::new(self.backing_file_offset),
            backing_file_size: U32::new(self.backing_file_size),
            cluster_bits: U32::new(self.cluster_bits),
            size: U64::new(self.size),
            crypt_method: U32::new(self.crypt_method),
            l1_size: U32::new(self.l1_size),
            l1_table_offset: U64::new(self.l1_table_offset),
            refcount_table_offset: U64::new(self.refcount_table_offset),
            refcount_table_clusters: U32::new(self.refcount_table_clusters),
            nb_snapshots: U32::new(self.nb_snapshots),
            snapshots_offset: U64::new(0),
            incompatible_features: U64::new(self.incompatible_features),
            compatible_features: U64::new(0),
            autoclear_features: U64::new(0),
            refcount_order: U32::new(self.refcount_order),
            header_length: U32::new(self.header_length),
            // Bytes 104..112: header extension type 0 (end), length 0.
            compression_type: 0,
            padding: [0; 7],
        };
        let mut b = [0u8; 112];
        b.copy_from_slice(raw.as_bytes());
        b
    }

    /// Parses and validates the first 112 bytes of a file.
    pub(crate) fn parse(b: &[u8; 112]) -> Result<Self> {
        let c = |off, what| Error::corrupt(Format::Qcow2, off, what);
        let r = RawQcow2Header::ref_from_bytes(b).map_err(|_| c(0, "header"))?;
        if r.magic != QCOW2_MAGIC {
            return Err(c(0, "bad magic"));
        }
        let version = r.version.get();
        // Version 2 ends at 72: the later fields take their defaults.
        let (incompat, refcount_order, header_length) = match version {
            2 => (0, 4, QCOW2_V2_HEADER_LEN),
            3 => (
                r.incompatible_features.get(),
                r.refcount_order.get(),
                r.header_length.get(),
            ),
            _ => {
                return Err(Error::unsupported(
                    Format::Qcow2,
                    "version other than 2 or 3",
                ))
            }
        };
        let h = Header {
            version,
            backing_file_offset: r.backing_file_offset.get(),
            backing_file_size: r.backing_file_size.get(),
            cluster_bits: r.cluster_bits.get(),
            size: r.size.get(),
            crypt_method: r.crypt_method.get(),
            l1_size: r.l1_size.get(),
            l1_table_offset: r.l1_table_offset.get(),
            refcount_table_offset: r.refcount_table_offset.get(),
            refcount_table_clusters: r.refcount_table_clusters.get(),
            nb_snapshots: r.nb_snapshots.get(),
            incompatible_features: incompat,
            refcount_order,
            header_length,
            compression_type: if header_length > 104 {
                r.compression_type
            } else {
                0
            },
        };
        if !(9..=21).contains(&h.cluster_bits) {
            return Err(c(20, "cluster_bits outside 9..=21"));
        }
        if version == 3 && (h.header_length < QCOW2_V3_HEADER_LEN || h.header_length % 8 != 0) {
            return Err(c(100, "header_length"));
        }
        if h.refcount_order > 6 {
            return Err(c(96, "refcount_order above 6"));
        }
        if h.incompatible_features & QCOW2_INCOMPAT_CORRUPT != 0 {
            return Err(c(72, "image is marked corrupt"));
        }
        if h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE != 0 {
            return Err(Error::unsupported(Format::Qcow2, "external data file"));
        }
        if h.incompatible_features & QCOW2_INCOMPAT_COMPRESSION != 0 && h.compression_type != 0 {
            return Err(Error::unsupported(
                Format::Qcow2,
                "compression type other than zlib",
            ));
        }
        if h.incompatible_features & !(QCOW2_INCOMPAT_SUPPORTED | QCOW2_INCOMPAT_COMPRESSION) != 0 {
            return Err(Error::unsupported(
                Format::Qcow2,
                "unknown incompatible feature bits",
            ));
        }
        if h.crypt_method != 0 {
            return Err(Error::unsupported(Format::Qcow2, "encryption"));
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            version: 3,
            backing_file_offset: 0,
            backing_file_size: 0,
            cluster_bits: 16,
            size: 1 << 30,
            crypt_method: 0,
            l1_size: 2,
            l1_table_offset: 0x10000,
            refcount_table_offset: 0x50000,
            refcount_table_clusters: 1,
            nb_snapshots: 0,
            incompatible_features: 0,
            refcount_order: 4,
            header_length: QCOW2_V3_HEADER_LEN,
            compression_type: 0,
        }
    }

    #[test]
    fn round_trip_and_known_bytes() {
        let b = sample().to_bytes();
        assert_eq!(&b[..8], b"QFI\xfb\0\0\0\x03");
        assert_eq!(&b[20..24], &[0, 0, 0, 16]);
        assert_eq!(&b[100..104], &[0, 0, 0, 104]);
        assert_eq!(&b[104..112], &[0; 8]);
        assert_eq!(Header::parse(&b).unwrap(), sample());
    }

    #[test]
    fn refuses_bad_fields() {
        let mut b = sample().to_bytes();
        b[23] = 30;
        assert!(Header::parse(&b).is_err());
        let mut b = sample().to_bytes();
        b[79] = 0x10; // extended L2 (bit 4)
        assert!(matches!(Header::parse(&b), Err(Error::Unsupported { .. })));
        // A backing file is the reader's business (it needs the backing
        // disk to read an overlay), not the header's.
        let mut b = sample().to_bytes();
        b[15] = 1;
        assert_eq!(Header::parse(&b).unwrap().backing_file_offset, 1);
    }
}
