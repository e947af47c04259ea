//! GUIDs in the mixed-endian on-disk form of UEFI 2.10 appendix A.

use std::fmt;
use std::str::FromStr;

/// A 128-bit GUID. Stored as the 16 on-disk bytes (UEFI mixed-endian:
/// the first three groups little-endian, the rest big-endian); displayed
/// and parsed in the canonical `8-4-4-4-12` text form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Guid([u8; 16]);

/// A GUID string that is not `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid GUID {0:?} (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")]
pub struct ParseGuidError(pub String);

impl Guid {
    /// The all-zero GUID (an unused GPT entry).
    pub const ZERO: Self = Self([0; 16]);

    /// From the 16 bytes as they are stored on disk.
    pub const fn from_disk_bytes(b: [u8; 16]) -> Self {
        Self(b)
    }
    /// The 16 bytes as they are stored on disk.
    pub const fn to_disk_bytes(self) -> [u8; 16] {
        self.0
    }
    /// From the 16 bytes in text (big-endian, RFC 4122) order.
    pub const fn from_rfc_bytes(b: [u8; 16]) -> Self {
        Self(swap_groups(b))
    }
    /// The 16 bytes in text (big-endian, RFC 4122) order, as ext4 and FAT
    /// volume ids and swap headers store a UUID.
    pub const fn to_rfc_bytes(self) -> [u8; 16] {
        swap_groups(self.0)
    }
    /// A random-looking, RFC 4122 version-4 shaped GUID made from 16 seed
    /// bytes (callers derive them from the build seed by hashing).
    pub const fn v4_from_seed(mut b: [u8; 16]) -> Self {
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Self::from_rfc_bytes(b)
    }
}

/// Converts between RFC (big-endian) and UEFI (mixed-endian) byte order;
/// the operation is its own inverse.
const fn swap_groups(b: [u8; 16]) -> [u8; 16] {
    [
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
        b[14], b[15],
    ]
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.to_rfc_bytes();
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for Guid {
    type Err = ParseGuidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseGuidError(s.to_string());
        let groups: Vec<&str> = s.split('-').collect();
        let lens = [8, 4, 4, 4, 12];
        if groups.len() != 5 || groups.iter().zip(lens).any(|(g, l)| g.len() != l) {
            return Err(err());
        }
        let hex: String = groups.concat();
        let mut b = [0u8; 16];
        for (i, out) in b.iter_mut().enumerate() {
            let pair = hex.get(i * 2..i * 2 + 2).ok_or_else(err)?;
            *out = u8::from_str_radix(pair, 16).map_err(|_| err())?;
        }
        Ok(Self::from_rfc_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esp_guid_known_answer() {
        // UEFI 2.10 table 5.7: EFI System Partition
        // C12A7328-F81F-11D2-BA4B-00A0C93EC93B, on disk 28 73 2A C1 1F F8 D2 11 BA 4B ...
        let g: Guid = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B".parse().unwrap();
        assert_eq!(
            g.to_disk_bytes(),
            [
                0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
                0xc9, 0x3b
            ]
        );
        assert_eq!(g.to_string(), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
    }

    #[test]
    fn bad_guids() {
        for s in [
            "",
            "c12a7328",
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93",
            "g12a7328-f81f-11d2-ba4b-00a0c93ec93b",
        ] {
            assert!(s.parse::<Guid>().is_err(), "{s}");
        }
    }

    #[test]
    fn v4_shape() {
        let g = Guid::v4_from_seed([0xff; 16]);
        let s = g.to_string();
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"));
    }
}
