//! L1 and L2 table entries (qcow2.txt, "Cluster mapping").

/// Bit 63: the cluster's refcount is exactly one.
pub(crate) const QCOW_OFLAG_COPIED: u64 = 1 << 63;
/// Bit 62 of an L2 entry: compressed cluster.
pub(crate) const QCOW_OFLAG_COMPRESSED: u64 = 1 << 62;
/// Bit 0 of a standard L2 entry: the cluster reads as zeros.
pub(crate) const QCOW_OFLAG_ZERO: u64 = 1;
/// Bits 9..55: host offset of a standard cluster or an L2 table.
pub(crate) const QCOW_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;

/// A decoded L2 entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum L2Entry {
    /// Not allocated: reads as zeros.
    Unallocated,
    /// Reads as zeros (may or may not have a host cluster).
    Zero,
    /// Data at this host byte offset.
    Standard(u64),
    /// Deflate data at `offset`, occupying the sector holding `offset` and
    /// `extra_sectors` more 512-byte sectors.
    Compressed { offset: u64, extra_sectors: u64 },
}

impl L2Entry {
    pub(crate) fn decode(raw: u64, cluster_bits: u32) -> Self {
        if raw & QCOW_OFLAG_COMPRESSED != 0 {
            let x = 62 - (cluster_bits - 8);
            let offset = raw & ((1u64 << x) - 1);
            let extra_sectors = (raw & !QCOW_OFLAG_COPIED & !QCOW_OFLAG_COMPRESSED) >> x;
            return L2Entry::Compressed {
                offset,
                extra_sectors,
            };
        }
        if raw & QCOW_OFLAG_ZERO != 0 {
            return L2Entry::Zero;
        }
        match raw & QCOW_OFFSET_MASK {
            0 => L2Entry::Unallocated,
            off => L2Entry::Standard(off),
        }
    }

    pub(crate) fn encode(self, cluster_bits: u32) -> u64 {
        match self {
            L2Entry::Unallocated => 0,
            L2Entry::Zero => QCOW_OFLAG_ZERO,
            L2Entry::Standard(off) => (off & QCOW_OFFSET_MASK) | QCOW_OFLAG_COPIED,
            L2Entry::Compressed {
                offset,
                extra_sectors,
            } => {
                let x = 62 - (cluster_bits - 8);
                QCOW_OFLAG_COMPRESSED | (extra_sectors << x) | (offset & ((1u64 << x) - 1))
            }
        }
    }
}

/// An L1 entry pointing at an L2 table that is referenced once.
pub(crate) fn l1_entry(l2_offset: u64) -> u64 {
    (l2_offset & QCOW_OFFSET_MASK) | QCOW_OFLAG_COPIED
}

/// The L2 table offset an L1 entry points to (0: none).
pub(crate) fn l1_target(raw: u64) -> u64 {
    raw & QCOW_OFFSET_MASK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encodings() {
        // 64 KiB clusters: x = 54; 3 extra sectors at byte 0x12345.
        let c = L2Entry::Compressed {
            offset: 0x12345,
            extra_sectors: 3,
        };
        assert_eq!(c.encode(16), 0x40c0_0000_0001_2345);
        assert_eq!(L2Entry::decode(0x40c0_0000_0001_2345, 16), c);
        assert_eq!(L2Entry::Standard(0x30000).encode(16), 0x8000_0000_0003_0000);
        assert_eq!(
            L2Entry::decode(0x8000_0000_0003_0000, 16),
            L2Entry::Standard(0x30000)
        );
        assert_eq!(L2Entry::decode(1, 16), L2Entry::Zero);
        assert_eq!(L2Entry::decode(0, 16), L2Entry::Unallocated);
        assert_eq!(l1_entry(0x20000), 0x8000_0000_0002_0000);
    }
}
