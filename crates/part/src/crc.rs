//! The GPT checksum: CRC-32 as in ISO 3309 / ITU-T V.42 (polynomial
//! 0x04C11DB7, reflected, initial value and final XOR 0xFFFFFFFF), which is
//! what UEFI 2.10 §5.3.2 prescribes for `HeaderCRC32` and
//! `PartitionEntryArrayCRC32`. Computed in this one place.

/// GPT CRC32 helper.
pub(crate) struct GptCrc32;

impl GptCrc32 {
    /// The CRC32 of `data`.
    pub(crate) fn checksum(data: &[u8]) -> u32 {
        crc32fast::hash(data)
    }

    /// The CRC32 of a header of `header_size` bytes whose CRC field
    /// (bytes 16..20) is taken as zero, as the spec requires.
    pub(crate) fn header(header: &[u8]) -> u32 {
        let mut h = crc32fast::Hasher::new();
        h.update(header.get(..16).unwrap_or(&[]));
        h.update(&[0; 4]);
        h.update(header.get(20..).unwrap_or(&[]));
        h.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer() {
        // The standard CRC-32 check value.
        assert_eq!(GptCrc32::checksum(b"123456789"), 0xCBF4_3926);
        assert_eq!(GptCrc32::checksum(b""), 0);
    }

    #[test]
    fn header_ignores_crc_field() {
        let mut a = [7u8; 92];
        let b = a;
        a[16..20].copy_from_slice(&[1, 2, 3, 4]);
        let mut z = b;
        z[16..20].fill(0);
        assert_eq!(GptCrc32::header(&a), GptCrc32::checksum(&z));
        assert_eq!(GptCrc32::header(&b), GptCrc32::checksum(&z));
    }
}
