//! The compression formats kiln knows ([`Compression`]) and how to tell
//! them apart by their first bytes; the codecs themselves are in
//! the `compress` module.
//!
//! | format | spec | magic (offset 0) |
//! |---|---|---|
//! | xz   | The .xz File Format 1.2.1, §2.1.1.1 | `FD 37 7A 58 5A 00` |
//! | gzip | RFC 1952 §2.3.1 | `1F 8B` |
//! | zstd | RFC 8878 §3.1.1 | `28 B5 2F FD` |

use std::fmt;

/// A compression format of an artifact or input (serialised as `none`,
/// `xz`, `gzip`, `zstd`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Not compressed.
    None,
    /// xz (LZMA2), multi-threaded.
    Xz,
    /// gzip (deflate).
    Gzip,
    /// Zstandard, multi-threaded.
    Zstd,
}

/// xz stream header magic (.xz format §2.1.1.1).
pub const XZ_MAGIC: [u8; 6] = [0xFD, b'7', b'z', b'X', b'Z', 0x00];
/// gzip member header magic (RFC 1952 §2.3.1, ID1 ID2).
pub const GZIP_MAGIC: [u8; 2] = [0x1F, 0x8B];
/// Zstandard frame magic (RFC 8878 §3.1.1, 0xFD2FB528 little-endian).
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

impl Compression {
    /// The usual file-name extension without the dot (`None` for plain).
    pub fn extension(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Xz => Some("xz"),
            Self::Gzip => Some("gz"),
            Self::Zstd => Some("zst"),
        }
    }

    /// Detects the format from the first bytes of a stream (6 are enough);
    /// anything unrecognised is [`Compression::None`].
    pub fn detect(head: &[u8]) -> Self {
        if head.starts_with(&XZ_MAGIC) {
            Self::Xz
        } else if head.starts_with(&ZSTD_MAGIC) {
            Self::Zstd
        } else if head.starts_with(&GZIP_MAGIC) {
            Self::Gzip
        } else {
            Self::None
        }
    }

    /// Default level: xz 6, gzip 6, zstd 3 (the CLIs' defaults).
    pub fn default_level(self) -> u32 {
        match self {
            Self::None => 0,
            Self::Xz | Self::Gzip => 6,
            Self::Zstd => 3,
        }
    }

    /// Allowed level range (inclusive).
    pub fn level_range(self) -> (u32, u32) {
        match self {
            Self::None => (0, 0),
            Self::Xz | Self::Gzip => (0, 9),
            Self::Zstd => (1, 22),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Xz => "xz",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        })
    }
}
