//! The VHDX checksum (§2.2.2 "Checksum"): CRC-32C (Castagnoli) of the
//! whole structure with its 4-byte checksum field zeroed, stored
//! little-endian.

/// CRC-32C of a VHDX header, region table or log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VhdxCrc32c(pub u32);

impl VhdxCrc32c {
    /// Computes the checksum of `bytes`, treating the 4 bytes at
    /// `field_offset` (the checksum field) as zero.
    pub fn compute(bytes: &[u8], field_offset: usize) -> Self {
        let end = field_offset.saturating_add(4).min(bytes.len());
        let start = field_offset.min(end);
        let (head, rest) = bytes.split_at(start);
        let (field, tail) = rest.split_at(end - start);
        let zeros = [0u8; 4];
        let mut crc = crc32c::crc32c(head);
        crc = crc32c::crc32c_append(crc, zeros.get(..field.len()).unwrap_or(&[]));
        VhdxCrc32c(crc32c::crc32c_append(crc, tail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // The CRC-32C check value (RFC 3720 appendix B.4 parameters).
        assert_eq!(
            VhdxCrc32c::compute(b"123456789", 100),
            VhdxCrc32c(0xe306_9283)
        );
        // The checksum field reads as zero.
        assert_eq!(
            VhdxCrc32c::compute(&[1, 0xff, 0xff, 0xff, 0xff, 2], 1),
            VhdxCrc32c::compute(&[1, 0, 0, 0, 0, 2], 100)
        );
        // 32 zero bytes (RFC 3720 B.4).
        assert_eq!(VhdxCrc32c::compute(&[0; 32], 100), VhdxCrc32c(0x8a91_36aa));
    }
}
