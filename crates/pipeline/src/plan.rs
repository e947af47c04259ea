//! The layout plan: where every partition starts and how long it is,
//! decided before anything is written.
//!
//! Rules (DESIGN.md, balenaOS layouts): 512-byte sectors; the first
//! partition at `first_offset` (4 MiB); every partition start and size a
//! multiple of the alignment (4 MiB). MBR: partitions marked logical live
//! in one extended partition (type 0x0f, the 4th primary slot) that starts
//! at the aligned end of the last primary partition and runs to the end
//! of the disk; each logical partition starts `ebr_gap` (4 MiB) after its
//! EBR, and the next EBR sits at the aligned end of the previous logical
//! partition. GPT: the backup header and entries (33 sectors) need room
//! after the last partition, so the disk ends one alignment unit later.

use crate::Error;
use kiln_recipe::{BoardProfile, PartSize, PartitionSpec, TableKind};
use kiln_units::{align_up, ByteSize};

/// One partition placed on the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The profile's description of it.
    pub spec: PartitionSpec,
    /// Linux partition number (MBR logicals start at 5).
    pub number: u32,
    /// Start in bytes from the start of the disk.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
    /// MBR logical partitions: byte offset of its EBR.
    pub ebr: Option<u64>,
}

/// The whole disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Partitions in table order.
    pub partitions: Vec<Placed>,
    /// MBR: the extended partition's (start, size) in bytes.
    pub extended: Option<(u64, u64)>,
    /// Disk (image) size in bytes.
    pub disk_bytes: u64,
}

impl Plan {
    /// Places the profile's partitions; `auto_size` is the size in bytes
    /// of the automatically sized (last) partition, already aligned.
    pub fn compute(profile: &BoardProfile, auto_size: u64) -> Result<Self, Error> {
        let align = profile.alignment;
        let up = |v: u64, who: &str| {
            align_up(v, align).ok_or_else(|| Error::Layout {
                partition: who.to_string(),
                reason: "offset overflows".into(),
            })
        };
        let mut offset = profile.first_offset;
        let mut partitions = Vec::new();
        let mut extended_start = None;
        let mut next_primary = 1u32;
        let mut next_logical = 5u32;
        for spec in &profile.partitions {
            let size = match spec.size {
                PartSize::Fixed(b) => b.bytes(),
                PartSize::Auto => auto_size,
            };
            let size = up(size, &spec.label)?;
            let (number, start, ebr) = if spec.logical {
                if extended_start.is_none() {
                    extended_start = Some(up(offset, &spec.label)?);
                    // The extended partition takes the 4th primary slot.
                    next_primary = 5;
                }
                let ebr = up(offset, &spec.label)?;
                let start = ebr + profile.ebr_gap;
                let n = next_logical;
                next_logical += 1;
                (n, up(start, &spec.label)?, Some(ebr))
            } else {
                let n = next_primary;
                next_primary += 1;
                (n, up(offset, &spec.label)?, None)
            };
            offset = start.checked_add(size).ok_or_else(|| Error::Layout {
                partition: spec.label.clone(),
                reason: "size overflows".into(),
            })?;
            partitions.push(Placed {
                spec: spec.clone(),
                number,
                start,
                size,
                ebr,
            });
        }
        let disk_bytes = match profile.table {
            TableKind::Mbr => up(offset, "disk")?,
            // 33 sectors of backup GPT after the last partition.
            TableKind::Gpt => up(offset + 33 * 512, "disk")?,
        };
        let extended = extended_start.map(|s| (s, disk_bytes - s));
        Ok(Self {
            partitions,
            extended,
            disk_bytes,
        })
    }

    /// The bytes available to the last (auto-sized) partition if the disk
    /// is `medium_bytes` long.
    pub fn fill_size(profile: &BoardProfile, medium_bytes: u64) -> Result<u64, Error> {
        let probe = Self::compute(profile, profile.alignment)?;
        let last = probe.partitions.last().ok_or_else(|| Error::Layout {
            partition: "disk".into(),
            reason: "no partitions".into(),
        })?;
        // GPT: keep one alignment unit for the backup header so the
        // aligned disk end never passes the medium's end.
        let tail = match profile.table {
            TableKind::Mbr => 0,
            TableKind::Gpt => profile.alignment,
        };
        let avail = medium_bytes
            .checked_sub(last.start + tail)
            .ok_or_else(|| Error::Layout {
                partition: last.spec.label.clone(),
                reason: format!(
                    "the fixed partitions alone need {} but the medium holds {}",
                    ByteSize::new(last.start),
                    ByteSize::new(medium_bytes)
                ),
            })?;
        Ok(avail - avail % profile.alignment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_units::MIB;
    use std::path::Path;

    fn profile(name: &str) -> BoardProfile {
        let p =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../board-profiles/{name}.toml"));
        BoardProfile::load(&p).unwrap()
    }

    #[test]
    fn nuc_layout() {
        let plan = Plan::compute(&profile("nuc"), 100 * MIB).unwrap();
        let got: Vec<_> = plan
            .partitions
            .iter()
            .map(|p| {
                (
                    p.number,
                    p.start / MIB,
                    p.size / MIB,
                    p.ebr.map(|e| e / MIB),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (1, 4, 40, None),
                (2, 44, 1000, None),
                (3, 1044, 1000, None),
                (5, 2048, 20, Some(2044)),
                (6, 2072, 100, Some(2068)),
            ]
        );
        assert_eq!(plan.extended, Some((2044 * MIB, (2172 - 2044) * MIB)));
        assert_eq!(plan.disk_bytes, 2172 * MIB);
    }

    #[test]
    fn gpt_layout_and_fill() {
        let p = profile("nuc-gpt");
        let plan = Plan::compute(&p, 100 * MIB).unwrap();
        let starts: Vec<_> = plan
            .partitions
            .iter()
            .map(|p| (p.number, p.start / MIB))
            .collect();
        assert_eq!(starts, [(1, 4), (2, 44), (3, 1044), (4, 2044), (5, 2064)]);
        assert_eq!(plan.disk_bytes, 2168 * MIB);
        let fill = Plan::fill_size(&p, 8_000_000_000).unwrap();
        let full = Plan::compute(&p, fill).unwrap();
        assert!(full.disk_bytes <= 8_000_000_000, "{}", full.disk_bytes);
        assert!(8_000_000_000 - full.disk_bytes < 2 * 4 * MIB);
    }
}
