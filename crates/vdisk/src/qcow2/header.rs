//! The qcow2 header (see the table in the module doc).

use crate::bytes::{be32, be64, put};
use crate::error::{Error, Format, Result};

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

/// Domain view of the header fields this crate uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub version: u32,
    pub backing_file_offset: u64,
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
        let mut b = [0u8; 112];
        put(&mut b, 0, &QCOW2_MAGIC);
        put(&mut b, 4, &self.version.to_be_bytes());
        put(&mut b, 8, &self.backing_file_offset.to_be_bytes());
        put(&mut b, 20, &self.cluster_bits.to_be_bytes());
        put(&mut b, 24, &self.size.to_be_bytes());
        put(&mut b, 32, &self.crypt_method.to_be_bytes());
        put(&mut b, 36, &self.l1_size.to_be_bytes());
        put(&mut b, 40, &self.l1_table_offset.to_be_bytes());
        put(&mut b, 48, &self.refcount_table_offset.to_be_bytes());
        put(&mut b, 56, &self.refcount_table_clusters.to_be_bytes());
        put(&mut b, 60, &self.nb_snapshots.to_be_bytes());
        put(&mut b, 72, &self.incompatible_features.to_be_bytes());
        put(&mut b, 96, &self.refcount_order.to_be_bytes());
        put(&mut b, 100, &self.header_length.to_be_bytes());
        // Bytes 104..112: header extension type 0 (end), length 0.
        b
    }

    /// Parses and validates the first 112 bytes of a file.
    pub(crate) fn parse(b: &[u8; 112]) -> Result<Self> {
        let c = |off, what| Error::corrupt(Format::Qcow2, off, what);
        if b[..4] != QCOW2_MAGIC {
            return Err(c(0, "bad magic"));
        }
        let version = be32(b, 4);
        let (incompat, refcount_order, header_length) = match version {
            2 => (0, 4, QCOW2_V2_HEADER_LEN),
            3 => (be64(b, 72), be32(b, 96), be32(b, 100)),
            _ => {
                return Err(Error::unsupported(
                    Format::Qcow2,
                    "version other than 2 or 3",
                ))
            }
        };
        let h = Header {
            version,
            backing_file_offset: be64(b, 8),
            cluster_bits: be32(b, 20),
            size: be64(b, 24),
            crypt_method: be32(b, 32),
            l1_size: be32(b, 36),
            l1_table_offset: be64(b, 40),
            refcount_table_offset: be64(b, 48),
            refcount_table_clusters: be32(b, 56),
            nb_snapshots: be32(b, 60),
            incompatible_features: incompat,
            refcount_order,
            header_length,
            compression_type: if header_length > 104 { b[104] } else { 0 },
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
