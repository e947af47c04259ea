//! Where every fixed piece of metadata goes, computed from the size alone
//! before any file data is written.
//!
//! Spec: kernel `Documentation/filesystems/ext4/overview.rst` (blocks,
//! flexible block groups, "Meta Block Groups" not used) and
//! `globals.rst` (superblock backups with `sparse_super`).
//!
//! With 4 KiB blocks a group spans 32768 blocks (128 MiB). Group 0 and
//! groups 1, 3^n, 5^n, 7^n carry a superblock copy, the group descriptor
//! table (64-byte descriptors, 64 per block) and the reserved GDT blocks
//! that let `resize2fs` grow the filesystem. With `flex_bg` (16 groups per
//! flex group) the bitmaps and inode tables of each flex group are packed
//! at the start of its first group:
//!
//! | blocks (first group of a flex group) | content                         |
//! |--------------------------------------|---------------------------------|
//! | 0                                    | superblock (if a backup group)  |
//! | 1 .. 1+gdt                           | group descriptor table          |
//! | .. +rsv                              | reserved GDT blocks             |
//! | next n                               | block bitmaps of the n groups   |
//! | next n                               | inode bitmaps of the n groups   |
//! | next n × itb                         | inode tables of the n groups    |

use crate::options::{Ext4Options, InodeSpec, JournalSpec, BLOCK_SIZE};
use crate::Error;

/// Blocks per group with 4 KiB blocks (one bitmap block of bits).
pub(crate) const BLOCKS_PER_GROUP: u64 = 32768;
/// Groups per flex group (`s_log_groups_per_flex` = 4).
pub(crate) const FLEX_GROUPS: u64 = 16;
/// Group descriptors per block (64-byte descriptors).
pub(crate) const DESCS_PER_BLOCK: u64 = 64;
/// Inode size in bytes.
pub(crate) const INODE_SIZE: u64 = 256;
/// Inodes per inode-table block.
pub(crate) const INODES_PER_BLOCK: u64 = BLOCK_SIZE as u64 / INODE_SIZE;
/// First non-reserved inode (`s_first_ino`).
pub(crate) const FIRST_INO: u32 = 11;

/// Fixed placement of one group's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupLayout {
    pub(crate) block_bitmap: u64,
    pub(crate) inode_bitmap: u64,
    pub(crate) inode_table: u64,
}

/// The computed geometry.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) blocks_count: u64,
    pub(crate) groups: u64,
    pub(crate) inodes_per_group: u64,
    pub(crate) gdt_blocks: u64,
    pub(crate) rsv_gdt_blocks: u64,
    pub(crate) journal_blocks: u64,
    pub(crate) reserved_blocks: u64,
    pub(crate) group: Vec<GroupLayout>,
    /// Sorted, non-overlapping `(start, len)` of all fixed metadata.
    pub(crate) metadata: Vec<(u64, u64)>,
}

/// Whether group `g` holds a superblock backup (`sparse_super`).
pub(crate) fn has_super(g: u64) -> bool {
    if g <= 1 {
        return true;
    }
    for base in [3u64, 5, 7] {
        let mut p = base;
        while p < g {
            p = p.saturating_mul(base);
        }
        if p == g {
            return true;
        }
    }
    false
}

/// mke2fs's default journal size in blocks for a filesystem of `blocks`
/// 4 KiB blocks (`ext2fs_default_journal_size`), 0 when too small.
pub(crate) fn default_journal_blocks(blocks: u64) -> u64 {
    match blocks {
        b if b < 2048 => 0,
        b if b < 32768 => 1024,
        b if b < 256 * 1024 => 4096,
        b if b < 512 * 1024 => 8192,
        b if b < 4096 * 1024 => 16384,
        b if b < 8192 * 1024 => 32768,
        b if b < 16384 * 1024 => 65536,
        b if b < 32768 * 1024 => 131072,
        _ => 262144,
    }
}

/// Reserved GDT blocks like mke2fs's `calc_reserved_gdt_blocks`: enough
/// descriptors for 1024x growth (capped at 2^32 blocks), at most 1024.
fn reserved_gdt_blocks(blocks: u64, gdt_blocks: u64) -> u64 {
    let max_blocks = blocks.saturating_mul(1024).min(u64::from(u32::MAX));
    let rsv_groups = max_blocks.div_ceil(BLOCKS_PER_GROUP);
    let rsv = rsv_groups
        .div_ceil(DESCS_PER_BLOCK)
        .saturating_sub(gdt_blocks);
    rsv.min(1024)
}

impl Layout {
    /// Computes the layout for `opts`, or explains why it cannot exist.
    pub(crate) fn new(opts: &Ext4Options) -> Result<Layout, Error> {
        Self::with_blocks(opts, opts.size_bytes / u64::from(BLOCK_SIZE))
    }

    /// Computes the layout for exactly `blocks` blocks (or one group less
    /// if the last group would be too small to be useful, like mke2fs).
    pub(crate) fn with_blocks(opts: &Ext4Options, blocks: u64) -> Result<Layout, Error> {
        if opts.reserved_percent > 50 {
            return Err(Error::InvalidOptions {
                reason: "reserved percentage above 50",
            });
        }
        let too_small = Error::TooSmall {
            size_bytes: opts.size_bytes,
            min_bytes: MIN_BLOCKS * u64::from(BLOCK_SIZE),
        };
        if blocks < MIN_BLOCKS {
            return Err(too_small);
        }
        if blocks > u64::from(u32::MAX) {
            return Err(Error::InvalidOptions {
                reason: "filesystem larger than this writer supports",
            });
        }
        let mut blocks = blocks;
        loop {
            match Self::try_blocks(opts, blocks) {
                Ok(l) => return Ok(l),
                Err(LastGroup) if blocks > BLOCKS_PER_GROUP => {
                    // Drop the runt last group, as mke2fs does.
                    blocks = (blocks - 1) / BLOCKS_PER_GROUP * BLOCKS_PER_GROUP;
                }
                Err(LastGroup) => return Err(too_small),
            }
        }
    }

    fn try_blocks(opts: &Ext4Options, blocks: u64) -> Result<Layout, LastGroup> {
        let groups = blocks.div_ceil(BLOCKS_PER_GROUP);
        let gdt_blocks = groups.div_ceil(DESCS_PER_BLOCK);
        let rsv_gdt_blocks = reserved_gdt_blocks(blocks, gdt_blocks);
        let sb_len = 1 + gdt_blocks + rsv_gdt_blocks;
        // Inodes.
        let wanted = match opts.inodes {
            InodeSpec::Ratio(r) => blocks.saturating_mul(u64::from(BLOCK_SIZE)) / r.max(1024),
            InodeSpec::Count(n) => n,
        };
        let mut ipg = wanted.div_ceil(groups).max(INODES_PER_BLOCK);
        ipg = ipg.div_ceil(INODES_PER_BLOCK) * INODES_PER_BLOCK;
        ipg = ipg.min(BLOCKS_PER_GROUP);
        // Total inode count must fit in 32 bits.
        while ipg * groups > u64::from(u32::MAX) {
            ipg -= INODES_PER_BLOCK;
        }
        let itable_blocks = ipg / INODES_PER_BLOCK;
        // The last group must hold its own superblock copy (if any) plus
        // some data, else drop it.
        let last = groups - 1;
        let last_len = blocks - last * BLOCKS_PER_GROUP;
        let mut last_need = 50 + if has_super(last) { sb_len } else { 0 };
        if last % FLEX_GROUPS == 0 {
            let n = groups - last;
            last_need += n * (2 + itable_blocks);
        }
        if groups > 1 && last_len < last_need {
            return Err(LastGroup);
        }
        // Fixed superblock/GDT areas.
        let mut metadata: Vec<(u64, u64)> = Vec::new();
        let sb_areas: Vec<(u64, u64)> = (0..groups)
            .filter(|&g| has_super(g))
            .map(|g| {
                (
                    g * BLOCKS_PER_GROUP,
                    sb_len.min(blocks - g * BLOCKS_PER_GROUP),
                )
            })
            .collect();
        // Per flex group: bitmaps then inode tables.
        let mut group = vec![
            GroupLayout {
                block_bitmap: 0,
                inode_bitmap: 0,
                inode_table: 0
            };
            usize::try_from(groups).map_err(|_| LastGroup)?
        ];
        let mut flex = 0;
        while flex < groups {
            let n = (groups - flex).min(FLEX_GROUPS);
            let mut cursor = flex * BLOCKS_PER_GROUP;
            let mut place = |len: u64| -> Result<u64, LastGroup> {
                let start = fit(&sb_areas, cursor, len, blocks).ok_or(LastGroup)?;
                cursor = start + len;
                Ok(start)
            };
            for i in 0..n {
                let s = place(1)?;
                group[(flex + i) as usize].block_bitmap = s;
            }
            for i in 0..n {
                let s = place(1)?;
                group[(flex + i) as usize].inode_bitmap = s;
            }
            for i in 0..n {
                let s = place(itable_blocks)?;
                group[(flex + i) as usize].inode_table = s;
            }
            flex += n;
        }
        metadata.extend(sb_areas.iter().copied());
        for g in &group {
            metadata.push((g.block_bitmap, 1));
            metadata.push((g.inode_bitmap, 1));
            metadata.push((g.inode_table, itable_blocks));
        }
        metadata.sort_unstable();
        let metadata = merge_ranges(metadata);
        let journal_blocks = match opts.journal {
            JournalSpec::None => 0,
            JournalSpec::Default => default_journal_blocks(blocks),
            JournalSpec::Blocks(b) => u64::from(b),
        };
        let reserved_blocks = blocks * u64::from(opts.reserved_percent) / 100;
        Ok(Layout {
            blocks_count: blocks,
            groups,
            inodes_per_group: ipg,
            gdt_blocks,
            rsv_gdt_blocks,
            journal_blocks,
            reserved_blocks,
            group,
            metadata,
        })
    }

    /// Total inodes.
    pub(crate) fn inodes_count(&self) -> u64 {
        self.inodes_per_group * self.groups
    }

    /// Blocks not taken by fixed metadata.
    pub(crate) fn free_after_metadata(&self) -> u64 {
        let used: u64 = self.metadata.iter().map(|r| r.1).sum();
        self.blocks_count - used
    }

    /// Blocks the writer always uses besides file data: journal, the
    /// resize inode's indirect block, root and lost+found directories.
    pub(crate) fn fixed_overhead(&self) -> u64 {
        self.journal_blocks + 1 + 1 + LOST_FOUND_BLOCKS
    }
}

/// Blocks of `lost+found` (16 KiB, like mke2fs).
pub(crate) const LOST_FOUND_BLOCKS: u64 = 4;

/// The smallest filesystem this writer creates, in blocks (1 MiB).
pub(crate) const MIN_BLOCKS: u64 = 256;

#[derive(Debug)]
struct LastGroup;

/// First start `>= from` of a run of `len` blocks that avoids `areas`
/// (sorted) and ends by `limit`.
fn fit(areas: &[(u64, u64)], from: u64, len: u64, limit: u64) -> Option<u64> {
    let mut s = from;
    loop {
        let mut moved = false;
        for &(a, l) in areas {
            if a < s + len && s < a + l {
                s = a + l;
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    (s + len <= limit).then_some(s)
}

/// Merges touching or overlapping sorted ranges.
pub(crate) fn merge_ranges(v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (s, l) in v {
        if l == 0 {
            continue;
        }
        if let Some(last) = out.last_mut() {
            if s <= last.0 + last.1 {
                let end = (s + l).max(last.0 + last.1);
                last.1 = end - last.0;
                continue;
            }
        }
        out.push((s, l));
    }
    out
}

// Here rather than in options.rs: the options do not depend on the layout
// (no import loop between the two files).
impl Ext4Options {
    /// Checks that these options describe a filesystem this writer can
    /// lay out (size within 4 MiB..16 TiB, ...), without writing
    /// anything: callers check before they create a file of that size.
    ///
    /// # Errors
    /// [`crate::Error::TooSmall`] or [`crate::Error::InvalidOptions`], as
    /// [`crate::Ext4Writer::new`] would return them.
    pub fn check(&self) -> Result<(), crate::Error> {
        Layout::new(self).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_groups() {
        let v: Vec<u64> = (0..100).filter(|&g| has_super(g)).collect();
        assert_eq!(v, vec![0, 1, 3, 5, 7, 9, 25, 27, 49, 81]);
    }

    #[test]
    fn like_mke2fs_256m() {
        // mke2fs -t ext4 -b 4096 on 256 MiB: 2 groups, 1 GDT block,
        // 31 reserved GDT blocks, 8192 inodes/group... (ratio 16384 ->
        // 16384 inodes total), 4096-block journal.
        let l = Layout::new(&Ext4Options::new(256 << 20)).unwrap();
        assert_eq!(l.groups, 2);
        assert_eq!(l.gdt_blocks, 1);
        assert_eq!(l.rsv_gdt_blocks, 31);
        assert_eq!(l.inodes_count(), 16384);
        assert_eq!(l.journal_blocks, 4096);
        assert_eq!(l.group[0].block_bitmap, 33);
        assert_eq!(l.group[1].block_bitmap, 34);
    }

    #[test]
    fn metadata_inside_and_disjoint() {
        for mib in [1u64, 5, 127, 129, 300, 2049, 5000] {
            let l = Layout::new(&Ext4Options::new(mib << 20).inode_ratio(4096)).unwrap();
            let mut end = 0;
            for &(s, len) in &l.metadata {
                assert!(s >= end, "{mib}: overlap");
                end = s + len;
            }
            assert!(end <= l.blocks_count, "{mib}");
        }
    }
}
