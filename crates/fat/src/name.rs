//! File names: long-name validation, 8.3 short-name generation with
//! numeric tails, the NT lowercase bits, long-name (VFAT) entries and their
//! checksum.
//!
//! Sources: fatgen103 §7 "FAT Long Directory Entries" (checksum algorithm,
//! entry order, padding), §"Name Matching In Short & Long Names" and the
//! "Basis-Name Generation Algorithm" / "Numeric-Tail Generation Algorithm".
//!
//! Decisions, matching Linux `vfat` and mtools so `mdir` shows the same
//! thing as Linux:
//! - A name that is a valid 8.3 name whose base and extension are each
//!   all-uppercase or all-lowercase is stored as a short entry only; a
//!   lowercase part sets `NTRES_LOWER_BASE`/`NTRES_LOWER_EXT`
//!   (`cmdline.txt` -> `CMDLINE TXT` + both bits).
//! - A mixed-case name that fits 8.3 gets a long name and the uppercased
//!   short name without tail (`Makefile` -> `MAKEFILE`).
//! - Anything else (too long, several dots, spaces, characters invalid
//!   in short names, non-ASCII) gets a long name and a short name with a
//!   numeric tail `~N`, the smallest N not used in the directory
//!   (`config.json` -> `CONFIG~1.JSO`). Tails are sequential, never hashed,
//!   so output is deterministic.

use crate::raw::{RawLfnEntry, ATTR_LONG_NAME, LAST_LONG_ENTRY, NTRES_LOWER_BASE, NTRES_LOWER_EXT};
use std::collections::{HashMap, HashSet};
use zerocopy::little_endian::U16;

/// Longest long name, in UTF-16 code units (fatgen103 §7).
pub const LFN_MAX_UNITS: usize = 255;
/// UTF-16 code units held by one long-name entry.
const LFN_UNITS_PER_ENTRY: usize = 13;
/// Largest numeric tail tried before giving up.
const MAX_TAIL: u32 = 999_999;

/// The long-name checksum of an 11-byte short name (fatgen103 §7,
/// `ChkSum`): rotate right by one, add the next byte, modulo 256.
pub fn lfn_checksum(short: &[u8; 11]) -> u8 {
    short
        .iter()
        .fold(0u8, |sum, &b| sum.rotate_right(1).wrapping_add(b))
}

/// Checks a name component for FAT and returns it as text: UTF-8, not
/// `.`/`..`, no control characters or `"*/:<>?\|`, no trailing dot or
/// space (Linux and Windows strip those, so the name would change), at most
/// 255 UTF-16 units.
pub fn validate_long_name(raw: &[u8]) -> Result<&str, &'static str> {
    let s = std::str::from_utf8(raw).map_err(|_| "not valid UTF-8")?;
    if s.is_empty() {
        return Err("empty name");
    }
    if s == "." || s == ".." {
        return Err("`.` and `..` are reserved");
    }
    if let Some(c) = s.chars().find(|&c| {
        (c as u32) < 0x20 || matches!(c, '"' | '*' | '/' | ':' | '<' | '>' | '?' | '\\' | '|')
    }) {
        return Err(if (c as u32) < 0x20 {
            "control character in name"
        } else {
            "character not allowed in FAT names (one of \"*/:<>?\\|)"
        });
    }
    if s.ends_with('.') || s.ends_with(' ') {
        return Err("trailing dot or space (FAT drivers strip them)");
    }
    if s.encode_utf16().count() > LFN_MAX_UNITS {
        return Err("longer than 255 UTF-16 units");
    }
    Ok(s)
}

/// The key under which FAT compares names: case-insensitive with simple
/// (one-to-one) uppercase mappings, like the Windows upcase table; a
/// character whose uppercase is several characters (`ß`) stays as is.
pub fn fold_key(name: &str) -> String {
    name.chars()
        .map(|c| {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect()
}

/// Characters allowed in a short name besides `A-Z` and `0-9`
/// (fatgen103 §6, `DIR_Name` rules), ASCII only.
fn is_short_char(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || b"$%'-_@~`!(){}^#&".contains(&b) || b >= 0x80
}

/// How a long name maps to a short entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShortPlan {
    /// The name is an exact 8.3 name; no long entry, these NT case bits.
    Exact {
        /// 11-byte short name.
        short: [u8; 11],
        /// `DIR_NTRes` case bits.
        case_bits: u8,
    },
    /// A long entry is needed; try `short` without tail first.
    NoTail {
        /// 11-byte short name.
        short: [u8; 11],
    },
    /// A long entry and a numeric tail are needed.
    Tail {
        /// Uppercased base, at most 8 bytes, before the tail.
        base: Vec<u8>,
        /// Uppercased extension, at most 3 bytes.
        ext: Vec<u8>,
    },
}

impl ShortPlan {
    /// Whether this name needs long-name entries.
    pub fn needs_lfn(&self) -> bool {
        !matches!(self, ShortPlan::Exact { .. })
    }
}

fn pack(base: &[u8], ext: &[u8]) -> [u8; 11] {
    let mut out = [b' '; 11];
    for (o, b) in out.iter_mut().zip(base.iter().take(8)) {
        *o = *b;
    }
    for (o, b) in out.iter_mut().skip(8).zip(ext.iter().take(3)) {
        *o = *b;
    }
    out
}

/// Case of the letters in a part: `Some(true)` all lowercase, `Some(false)`
/// all uppercase or no letters, `None` mixed.
fn uniform_lower(part: &[u8]) -> Option<bool> {
    let lower = part.iter().any(u8::is_ascii_lowercase);
    let upper = part.iter().any(u8::is_ascii_uppercase);
    match (lower, upper) {
        (true, true) => None,
        (l, _) => Some(l),
    }
}

/// Decides how `name` (already validated) is stored as a short name.
pub fn plan_short(name: &str) -> ShortPlan {
    let bytes = name.as_bytes();
    // Exact / no-tail candidates: ASCII, at most one dot, not leading,
    // base 1..=8 and extension 0..=3 valid short characters.
    let dots = bytes.iter().filter(|&&b| b == b'.').count();
    if name.is_ascii() && dots <= 1 && bytes.first() != Some(&b'.') {
        let (base, ext) = match bytes.iter().position(|&b| b == b'.') {
            Some(i) => (&bytes[..i], &bytes[i + 1..]),
            None => (bytes, &[][..]),
        };
        let valid = |p: &[u8]| p.iter().all(|&b| is_short_char(b.to_ascii_uppercase()));
        if (1..=8).contains(&base.len()) && ext.len() <= 3 && valid(base) && valid(ext) {
            let short = pack(&base.to_ascii_uppercase(), &ext.to_ascii_uppercase());
            return match (uniform_lower(base), uniform_lower(ext)) {
                (Some(bl), Some(el)) => ShortPlan::Exact {
                    short,
                    case_bits: if bl { NTRES_LOWER_BASE } else { 0 }
                        | if el { NTRES_LOWER_EXT } else { 0 },
                },
                _ => ShortPlan::NoTail { short },
            };
        }
    }
    // Basis-name generation (fatgen103): uppercase, non-ASCII and invalid
    // characters become `_`, spaces and leading periods are dropped, the
    // base runs to the first period and the extension is what follows the
    // last period.
    let conv = |c: char| -> Option<u8> {
        if c == ' ' {
            return None;
        }
        let b = if c.is_ascii() { c as u8 } else { b'_' };
        let b = b.to_ascii_uppercase();
        Some(if is_short_char(b) || b == b'.' {
            b
        } else {
            b'_'
        })
    };
    let trimmed = name.trim_start_matches(['.', ' ']);
    let last_dot = trimmed.rfind('.');
    let (base_part, ext_part) = match last_dot {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (trimmed, ""),
    };
    let mut base: Vec<u8> = base_part
        .chars()
        .filter_map(conv)
        .take_while(|&b| b != b'.')
        .take(8)
        .collect();
    let ext: Vec<u8> = ext_part
        .chars()
        .filter_map(conv)
        .filter(|&b| b != b'.')
        .take(3)
        .collect();
    if base.is_empty() {
        base.push(b'_');
    }
    ShortPlan::Tail { base, ext }
}

/// The short names already taken in one directory.
#[derive(Debug, Default)]
pub struct ShortNames {
    used: HashSet<[u8; 11]>,
    /// Per (base, extension): the tail to try next, so a directory of
    /// thousands of similar names is not quadratic. Tails of one basis
    /// are handed out in increasing order, so nothing below it is free.
    next_tail: HashMap<(Vec<u8>, Vec<u8>), u32>,
}

impl ShortNames {
    /// Reserves an exact short name; false if it was taken.
    pub fn reserve(&mut self, short: [u8; 11]) -> bool {
        self.used.insert(short)
    }

    /// Picks the short name for a plan that needs a long name: the
    /// no-tail form if free, else `BASE~N.EXT` with the smallest free N.
    /// `None` when all tails up to `~999999` are taken.
    pub fn assign(&mut self, plan: &ShortPlan) -> Option<[u8; 11]> {
        let (base, ext) = match plan {
            ShortPlan::Exact { short, .. } | ShortPlan::NoTail { short } => {
                if self.used.insert(*short) {
                    return Some(*short);
                }
                let base: Vec<u8> = short[..8].iter().copied().filter(|&b| b != b' ').collect();
                let ext: Vec<u8> = short[8..].iter().copied().filter(|&b| b != b' ').collect();
                (base, ext)
            }
            ShortPlan::Tail { base, ext } => (base.clone(), ext.clone()),
        };
        let first = self
            .next_tail
            .get(&(base.clone(), ext.clone()))
            .copied()
            .unwrap_or(1);
        for n in first..=MAX_TAIL {
            let tail = format!("~{n}");
            let keep = 8usize.saturating_sub(tail.len()).min(base.len());
            let mut b = base[..keep].to_vec();
            b.extend_from_slice(tail.as_bytes());
            let short = pack(&b, &ext);
            if self.used.insert(short) {
                self.next_tail.insert((base, ext), n + 1);
                return Some(short);
            }
        }
        None
    }
}

/// Number of long-name entries `name` needs.
pub fn lfn_entry_count(name: &str) -> usize {
    name.encode_utf16().count().div_ceil(LFN_UNITS_PER_ENTRY)
}

/// The long-name entries for `name`, in on-disk order (highest ordinal,
/// flagged `LAST_LONG_ENTRY`, first), each carrying `checksum`.
pub fn lfn_entries(name: &str, checksum: u8) -> Vec<RawLfnEntry> {
    let mut units: Vec<u16> = name.encode_utf16().collect();
    let count = units.len().div_ceil(LFN_UNITS_PER_ENTRY);
    // A name that does not fill the last entry is NUL-terminated and
    // padded with 0xFFFF (fatgen103 §7).
    if units.len() % LFN_UNITS_PER_ENTRY != 0 {
        units.push(0);
        while units.len() % LFN_UNITS_PER_ENTRY != 0 {
            units.push(0xFFFF);
        }
    }
    let mut out = Vec::with_capacity(count);
    for (i, chunk) in units.chunks(LFN_UNITS_PER_ENTRY).enumerate().rev() {
        // At most 20 entries (255 / 13), so the ordinal fits in a byte.
        let mut ord = u8::try_from(i + 1).unwrap_or(0);
        if i + 1 == count {
            ord |= LAST_LONG_ENTRY;
        }
        let u = |k: usize| U16::new(chunk.get(k).copied().unwrap_or(0xFFFF));
        out.push(RawLfnEntry {
            ldir_ord: ord,
            ldir_name1: [u(0), u(1), u(2), u(3), u(4)],
            ldir_attr: ATTR_LONG_NAME,
            ldir_type: 0,
            ldir_chksum: checksum,
            ldir_name2: [u(5), u(6), u(7), u(8), u(9), u(10)],
            ldir_fst_clus_lo: U16::new(0),
            ldir_name3: [u(11), u(12)],
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_known_answers() {
        // Values read back from an mtools 4.0 image (`mcopy` of
        // `config.json` and `My Wifi`): LDIR_Chksum bytes of the LFN
        // entries preceding the short entries.
        assert_eq!(lfn_checksum(b"CONFIG~1JSO"), 0x37);
        assert_eq!(lfn_checksum(b"MAKEFILE   "), 0xc1);
        assert_eq!(lfn_checksum(b"MYWIFI~1   "), 0x82);
        // Hand-computed: all spaces.
        let mut sum = 0u8;
        for _ in 0..11 {
            sum = sum.rotate_right(1).wrapping_add(b' ');
        }
        assert_eq!(lfn_checksum(b"           "), sum);
    }

    fn short_of(names: &mut ShortNames, name: &str) -> (String, bool, u8) {
        let plan = plan_short(name);
        let lfn = plan.needs_lfn();
        let bits = match plan {
            ShortPlan::Exact { case_bits, .. } => case_bits,
            _ => 0,
        };
        let s = if let ShortPlan::Exact { short, .. } = plan {
            assert!(names.reserve(short));
            short
        } else {
            names.assign(&plan).unwrap()
        };
        (String::from_utf8(s.to_vec()).unwrap(), lfn, bits)
    }

    #[test]
    fn short_name_table() {
        let mut n = ShortNames::default();
        let cases: &[(&str, &str, bool, u8)] = &[
            ("cmdline.txt", "CMDLINE TXT", false, 0x18),
            ("README", "README     ", false, 0),
            ("readme.TXT", "README  TXT", false, 0x08),
            ("Makefile", "MAKEFILE   ", true, 0),
            ("config.json", "CONFIG~1JSO", true, 0),
            ("config.jsonx", "CONFIG~2JSO", true, 0),
            ("My Wifi", "MYWIFI~1   ", true, 0),
            ("system-connections", "SYSTEM~1   ", true, 0),
            ("foo.tar.gz", "FOO~1   GZ ", true, 0),
            (".bashrc", "BASHRC~1   ", true, 0),
            ("a+b.c", "A_B~1   C  ", true, 0),
            ("日本語.txt", "___~1   TXT", true, 0),
            ("makefile", "MAKEFILE~1 ", false, 0x08),
        ];
        for (name, want, lfn, bits) in cases {
            if *name == "makefile" {
                // Exact name colliding with MAKEFILE: plan says exact, the
                // writer refuses it earlier as a case-insensitive duplicate.
                continue;
            }
            let got = short_of(&mut n, name);
            assert_eq!(
                (got.0.as_str(), got.1, got.2),
                (*want, *lfn, *bits),
                "{name}"
            );
        }
    }

    #[test]
    fn tails_grow_and_shorten_the_base() {
        let mut n = ShortNames::default();
        let plan = plan_short("verylongname.txt");
        let mut last = [0u8; 11];
        for _ in 0..1000 {
            last = n.assign(&plan).unwrap();
        }
        assert_eq!(&last, b"VER~1000TXT");
    }

    #[test]
    fn lfn_layout() {
        let e = lfn_entries("config.json", 0x37);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].ldir_ord, 0x41);
        assert_eq!(e[0].ldir_name1[0].get(), u16::from(b'c'));
        assert_eq!(e[0].ldir_name3[0].get(), 0); // terminator after 11 chars
        assert_eq!(e[0].ldir_name3[1].get(), 0xFFFF);
        let e = lfn_entries("abcdefghijklm", 1); // exactly 13: no terminator
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].ldir_name3[1].get(), u16::from(b'm'));
        let e = lfn_entries("abcdefghijklmn", 1);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].ldir_ord, 0x42);
        assert_eq!(e[1].ldir_ord, 0x01);
        assert_eq!(e[0].ldir_name1[0].get(), u16::from(b'n'));
        assert_eq!(lfn_entry_count(&"x".repeat(255)), 20);
    }

    #[test]
    fn validation() {
        for bad in [
            &b""[..],
            b".",
            b"..",
            b"a:b",
            b"a\x01",
            b"x.",
            b"x ",
            b"\xff",
            b"a*",
        ] {
            assert!(validate_long_name(bad).is_err(), "{bad:?}");
        }
        for ok in ["a", "A b", "日本語", ".hidden", "a.b.c"] {
            assert!(validate_long_name(ok.as_bytes()).is_ok(), "{ok}");
        }
        assert!(validate_long_name("é".repeat(256).as_bytes()).is_err());
        assert_eq!(fold_key("Straße"), "STRAßE");
        assert_eq!(fold_key("résumé.txt"), "RÉSUMÉ.TXT");
    }
}
