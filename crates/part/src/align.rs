//! Alignment checks and the overlap test shared by both writers.
//!
//! kiln's pipeline computes the layout; this module only *checks* it.

use crate::error::{Error, Result};
use crate::SECTOR_BYTES;

/// Whether `value_bytes` is a multiple of `align_bytes` (an alignment of 0
/// counts as 1: everything is aligned).
pub fn is_aligned(value_bytes: u64, align_bytes: u64) -> bool {
    align_bytes == 0 || value_bytes % align_bytes == 0
}

/// Checks that the partition `name` starts on an `align_bytes` boundary
/// (for kiln's boards 4 MiB) and on a 512-byte sector.
///
/// # Errors
/// [`Error::Misaligned`] naming the partition.
pub fn check_aligned(name: &str, start_bytes: u64, align_bytes: u64) -> Result<()> {
    for align in [SECTOR_BYTES, align_bytes] {
        if !is_aligned(start_bytes, align) {
            return Err(Error::Misaligned {
                name: name.to_string(),
                what: "start",
                value_bytes: start_bytes,
                align_bytes: align,
            });
        }
    }
    Ok(())
}

/// A named byte range `[start, end)` taking part in the overlap test.
#[derive(Debug, Clone)]
pub(crate) struct Span {
    pub(crate) name: String,
    pub(crate) start: u64,
    pub(crate) end: u64,
}

/// Refuses any two overlapping spans (quadratic: tables are small and
/// bounded before this is called).
pub(crate) fn check_overlaps(spans: &[Span]) -> Result<()> {
    for (i, a) in spans.iter().enumerate() {
        for b in spans.iter().skip(i + 1) {
            if a.start < b.end && b.start < a.end {
                return Err(Error::Overlap {
                    name: b.name.clone(),
                    other: a.name.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Common checks of one partition: non-empty, sector-multiple size,
/// aligned start, inside `[area_start, area_end)`. Returns the end byte.
pub(crate) fn check_extent(
    name: &str,
    start_bytes: u64,
    size_bytes: u64,
    align_bytes: u64,
    area_start: u64,
    area_end: u64,
) -> Result<u64> {
    if size_bytes == 0 {
        return Err(Error::EmptyPartition {
            name: name.to_string(),
        });
    }
    check_aligned(name, start_bytes, align_bytes)?;
    if !is_aligned(size_bytes, SECTOR_BYTES) {
        return Err(Error::Misaligned {
            name: name.to_string(),
            what: "size",
            value_bytes: size_bytes,
            align_bytes: SECTOR_BYTES,
        });
    }
    let end = start_bytes.checked_add(size_bytes);
    match end {
        Some(end) if start_bytes >= area_start && end <= area_end => Ok(end),
        _ => Err(Error::OutsideArea {
            name: name.to_string(),
            start_bytes,
            end_bytes: end.unwrap_or(u64::MAX),
            area_start_bytes: area_start,
            area_end_bytes: area_end,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_table() {
        let mib = 1 << 20;
        for (v, a, ok) in [
            (0, 4 * mib, true),
            (4 * mib, 4 * mib, true),
            (5 * mib, 4 * mib, false),
            (512, 0, true),
            (513, 1, true),
        ] {
            assert_eq!(is_aligned(v, a), ok, "{v} {a}");
        }
        assert!(check_aligned("x", 4 * mib, 4 * mib).is_ok());
        assert!(matches!(
            check_aligned("x", 4 * mib + 512, 4 * mib),
            Err(Error::Misaligned { align_bytes, .. }) if align_bytes == 4 * mib
        ));
        assert!(matches!(
            check_aligned("x", 100, 0),
            Err(Error::Misaligned {
                align_bytes: 512,
                ..
            })
        ));
    }

    #[test]
    fn overlap_names_both() {
        let s = |n: &str, a, b| Span {
            name: n.into(),
            start: a,
            end: b,
        };
        assert!(check_overlaps(&[s("a", 0, 10), s("b", 10, 20)]).is_ok());
        match check_overlaps(&[s("a", 0, 10), s("b", 9, 20)]) {
            Err(Error::Overlap { name, other }) => {
                assert_eq!((name.as_str(), other.as_str()), ("b", "a"))
            }
            r => panic!("{r:?}"),
        }
    }
}
