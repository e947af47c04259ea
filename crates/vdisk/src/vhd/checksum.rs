//! The VHD checksum (spec, "Hard Disk Footer Format", field "Checksum"):
//! the one's complement of the sum of all bytes of the structure, taken
//! with the checksum field itself zeroed.

/// One's-complement byte-sum checksum of VHD footers and dynamic headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VhdChecksum(pub u32);

impl VhdChecksum {
    /// Computes the checksum of `bytes`, treating the 4 bytes at
    /// `field_offset` (the checksum field) as zero.
    pub fn compute(bytes: &[u8], field_offset: usize) -> Self {
        let field = field_offset..field_offset.saturating_add(4);
        let sum = bytes
            .iter()
            .enumerate()
            .filter(|(i, _)| !field.contains(i))
            .fold(0u32, |acc, (_, &b)| acc.wrapping_add(u32::from(b)));
        VhdChecksum(!sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // Sum of "conectix" = 0x35d; !0x35d = 0xfffffca2.
        assert_eq!(
            VhdChecksum::compute(b"conectix", 100),
            VhdChecksum(0xffff_fca2)
        );
        // The checksum field is ignored.
        assert_eq!(
            VhdChecksum::compute(&[1, 2, 0xff, 0xff, 0xff, 0xff, 3], 2),
            VhdChecksum(!6)
        );
        assert_eq!(VhdChecksum::compute(&[], 0), VhdChecksum(0xffff_ffff));
    }
}
