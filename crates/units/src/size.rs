//! Byte sizes, sector sizes and logical block addresses.

use std::fmt;
use std::str::FromStr;

/// One kibibyte, in bytes.
pub const KIB: u64 = 1024;
/// One mebibyte, in bytes.
pub const MIB: u64 = 1024 * KIB;
/// One gibibyte, in bytes.
pub const GIB: u64 = 1024 * MIB;
/// One tebibyte, in bytes.
pub const TIB: u64 = 1024 * GIB;

/// Rounds `value` up to a multiple of `align` (bytes or any unit).
///
/// Returns `None` on overflow or when `align` is zero.
pub fn align_up(value: u64, align: u64) -> Option<u64> {
    if align == 0 {
        return None;
    }
    let rem = value % align;
    if rem == 0 {
        Some(value)
    } else {
        value.checked_add(align - rem)
    }
}

/// A size in bytes. Parses `"40MiB"`, `"1GiB"`, `"8GB"`, `"512"`, `"0"`.
///
/// Binary suffixes (`KiB`, `MiB`, `GiB`, `TiB`, also `K`, `M`, `G`, `T`)
/// are powers of 1024; decimal suffixes (`kB`, `MB`, `GB`, `TB`) are powers
/// of 1000, as storage vendors use them for media sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(u64);

impl ByteSize {
    /// A size of `bytes` bytes.
    pub const fn new(bytes: u64) -> Self {
        Self(bytes)
    }
    /// A size of `mib` mebibytes.
    pub const fn mib(mib: u64) -> Self {
        Self(mib * MIB)
    }
    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
    /// Rounds up to a multiple of `align` bytes (saturating at `u64::MAX`
    /// rounded down to the alignment).
    pub fn align_up(self, align: u64) -> Self {
        Self(align_up(self.0, align).unwrap_or(u64::MAX - u64::MAX % align.max(1)))
    }
    /// Whether the size is a multiple of `align` bytes.
    pub fn is_aligned(self, align: u64) -> bool {
        align != 0 && self.0 % align == 0
    }
}

impl From<u64> for ByteSize {
    fn from(v: u64) -> Self {
        Self(v)
    }
}

/// Why a size string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseSizeError {
    /// Nothing was given.
    #[error("empty size")]
    Empty,
    /// The number part is not a non-negative integer.
    #[error("invalid number in size {0:?} (expected e.g. \"40MiB\", \"1GiB\", \"8GB\")")]
    Number(String),
    /// The suffix is not one of the known units.
    #[error("unknown unit {0:?} (use KiB, MiB, GiB, TiB, kB, MB, GB, TB or none for bytes)")]
    Unit(String),
    /// The size does not fit in 64 bits.
    #[error("size {0:?} is too large")]
    Overflow(String),
}

impl FromStr for ByteSize {
    type Err = ParseSizeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ParseSizeError::Empty);
        }
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| ParseSizeError::Number(s.to_string()))?;
        let mult = match unit.trim() {
            "" | "B" => 1,
            "K" | "KiB" | "k" => KIB,
            "M" | "MiB" => MIB,
            "G" | "GiB" => GIB,
            "T" | "TiB" => TIB,
            "kB" | "KB" => 1000,
            "MB" => 1000 * 1000,
            "GB" => 1000 * 1000 * 1000,
            "TB" => 1000 * 1000 * 1000 * 1000,
            other => return Err(ParseSizeError::Unit(other.to_string())),
        };
        n.checked_mul(mult)
            .map(Self)
            .ok_or_else(|| ParseSizeError::Overflow(s.to_string()))
    }
}

impl fmt::Display for ByteSize {
    /// Prints the exact size with the largest binary unit that divides it
    /// (`40MiB`), or plain bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        for (unit, name) in [(TIB, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
            if v != 0 && v % unit == 0 {
                return write!(f, "{}{}", v / unit, name);
            }
        }
        write!(f, "{v}B")
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"40MiB\" or a number of bytes")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("size must not be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

/// The size of one logical sector, in bytes (512 for every board kiln
/// supports; 4096 exists on some NVMe media).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SectorSize(u32);

impl SectorSize {
    /// 512-byte sectors.
    pub const S512: Self = Self(512);
    /// 4096-byte sectors.
    pub const S4096: Self = Self(4096);
    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0 as u64
    }
}

/// A logical block address: an index of a sector (see [`SectorSize`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lba(pub u64);

impl Lba {
    /// The LBA holding byte `offset` (which must be sector aligned to be
    /// exact; the remainder is dropped).
    pub const fn from_bytes(offset: u64, sector: SectorSize) -> Self {
        Self(offset / sector.bytes())
    }
    /// The byte offset of this sector, or `None` on overflow.
    pub fn to_bytes(self, sector: SectorSize) -> Option<u64> {
        self.0.checked_mul(sector.bytes())
    }
}

impl fmt::Display for Lba {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LBA {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_sizes() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("512", Some(512)),
            ("40MiB", Some(40 * MIB)),
            ("40M", Some(40 * MIB)),
            ("1GiB", Some(GIB)),
            ("8GB", Some(8_000_000_000)),
            ("64 GB", Some(64_000_000_000)),
            ("1.5GiB", None),
            ("", None),
            ("-1", None),
            ("3XB", None),
            ("99999999999TiB", None),
        ];
        for (s, want) in cases {
            assert_eq!(
                s.parse::<ByteSize>().ok().map(ByteSize::bytes),
                *want,
                "{s}"
            );
        }
    }

    #[test]
    fn display_roundtrip() {
        for v in [0, 1, 512, 40 * MIB, 3 * GIB, 1000] {
            let s = ByteSize(v).to_string();
            assert_eq!(s.parse::<ByteSize>().map(ByteSize::bytes), Ok(v), "{s}");
        }
    }

    #[test]
    fn align() {
        assert_eq!(align_up(0, 4), Some(0));
        assert_eq!(align_up(5, 4), Some(8));
        assert_eq!(align_up(8, 4), Some(8));
        assert_eq!(align_up(u64::MAX, 4), None);
        assert_eq!(align_up(3, 0), None);
    }
}
