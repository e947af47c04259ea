//! ext4 `metadata_csum` checksums: CRC32C (Castagnoli) with ext4's seed
//! rules.
//!
//! Spec: kernel `Documentation/filesystems/ext4/checksums.rst`.
//!
//! ext4 uses the *raw* CRC32C register (no final inversion, caller-chosen
//! initial value), which is what the kernel's `crc32c(seed, buf, len)`
//! computes. The standard CRC32C (`crc32c::crc32c_append`) inverts on the
//! way in and out, so `raw(seed, d) == !crc32c_append(!seed, d)`.
//!
//! | structure        | seed                                   | covered bytes                         |
//! |------------------|----------------------------------------|---------------------------------------|
//! | superblock       | `!0`                                   | bytes `0..0x3FC`                      |
//! | fs seed          | `!0`                                   | `s_uuid`                              |
//! | group descriptor | fs seed, then `le32(group)`            | 64-byte descriptor, csum field zeroed |
//! | bitmaps          | fs seed                                | block: 4096 bytes; inode: ipg/8 bytes |
//! | inode            | fs seed, `le32(ino)`, `le32(gen)`      | 256 bytes, both csum fields zeroed    |
//! | extent block     | inode seed                             | header + `eh_max` entries             |
//! | dir leaf block   | inode seed                             | block minus the 12-byte tail          |
//! | dx root/node     | inode seed                             | up to `count` entries, then tail[0..4]|
//! | xattr block      | fs seed, `le64(block)`                 | whole block, `h_checksum` zeroed      |

/// The raw ext4 CRC32C register update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Crc32c(pub u32);

impl Crc32c {
    /// Starts from `seed`.
    pub(crate) const fn new(seed: u32) -> Self {
        Self(seed)
    }
    /// Feeds `data` into the register.
    pub(crate) fn update(self, data: &[u8]) -> Self {
        Self(!crc32c::crc32c_append(!self.0, data))
    }
    /// Feeds a little-endian u32.
    pub(crate) fn update_u32(self, v: u32) -> Self {
        self.update(&v.to_le_bytes())
    }
    /// Feeds a little-endian u64.
    pub(crate) fn update_u64(self, v: u64) -> Self {
        self.update(&v.to_le_bytes())
    }
    /// Current register value.
    pub(crate) const fn value(self) -> u32 {
        self.0
    }
}

/// The filesystem checksum seed: raw CRC32C of the UUID from `!0`.
pub(crate) fn fs_seed(uuid: &[u8; 16]) -> u32 {
    Crc32c::new(!0).update(uuid).value()
}

/// The per-inode seed (used by the inode itself, its extent blocks and
/// directory blocks).
pub(crate) fn inode_seed(fs_seed: u32, ino: u32, generation: u32) -> u32 {
    Crc32c::new(fs_seed)
        .update_u32(ino)
        .update_u32(generation)
        .value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_crc32c_known_answer() {
        // RFC 3720 B.4: CRC32C of "123456789" is 0xE3069283.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        // The raw register from !0 is the inverted standard value.
        assert_eq!(Crc32c::new(!0).update(b"123456789").value(), !0xE306_9283);
    }

    #[test]
    fn raw_register_is_composable() {
        let a = Crc32c::new(0x1234_5678).update(b"hello ").update(b"world");
        let b = Crc32c::new(0x1234_5678).update(b"hello world");
        assert_eq!(a, b);
    }

    #[test]
    fn fs_seed_known_answer() {
        // 32 zero bytes from 0xFFFFFFFF -> standard CRC32C of 32 zero
        // bytes is 0x8A9136AA (RFC 3720 B.4), so the raw value is its
        // inverse. The seed of a zero UUID is the first 16 of those.
        assert_eq!(Crc32c::new(!0).update(&[0u8; 32]).value(), !0x8A91_36AA);
        assert_eq!(fs_seed(&[0; 16]), Crc32c::new(!0).update(&[0; 16]).value());
    }
}
