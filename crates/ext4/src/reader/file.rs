//! A file's block mapping (extent tree or ext2/3 block map) and a
//! streaming reader over it.
//!
//! Spec: kernel `Documentation/filesystems/ext4/ifork.rst`.
//!
//! | extent header | offset | field      | leaf extent | offset | field       | index | offset | field      |
//! |---------------|--------|------------|-------------|--------|-------------|-------|--------|------------|
//! |               | 0x0    | magic F30A |             | 0x0    | ee_block    |       | 0x0    | ei_block   |
//! |               | 0x2    | entries    |             | 0x4    | ee_len      |       | 0x4    | ei_leaf_lo |
//! |               | 0x4    | max        |             | 0x6    | ee_start_hi |       | 0x8    | ei_leaf_hi |
//! |               | 0x6    | depth      |             | 0x8    | ee_start_lo |       |        |            |
//!
//! `ee_len` > 32768 marks an unwritten extent (reads as zeros). Block map:
//! `i_block[0..12]` direct, `[12]` single, `[13]` double, `[14]` triple
//! indirect; 0 is a hole.

use super::{corrupt, le16, le32, Ext4Reader, Inode};
use crate::Error;
use kiln_units::ReadAt;
use std::io::{self, Read};

const EXTENTS_FL: u32 = 0x80000;
const EXT_MAGIC: u16 = 0xF30A;
/// Deepest extent tree accepted (the kernel's limit is 5).
const MAX_DEPTH: u16 = 5;

/// A run of logical blocks mapped to consecutive physical blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub logical: u64,
    pub physical: u64,
    pub len: u64,
    pub unwritten: bool,
}

/// Streams a file's bytes: mapped blocks are read, unwritten extents and
/// holes yield zeros, and the stream ends at `i_size`. Only the block map
/// (12 bytes per extent) is held in memory.
pub struct FileReader<'a, R> {
    fs: &'a Ext4Reader<R>,
    ino: u32,
    runs: Vec<Run>,
    size: u64,
    pos: u64,
    idx: usize,
}

impl<R> std::fmt::Debug for FileReader<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader")
            .field("ino", &self.ino)
            .field("size", &self.size)
            .field("pos", &self.pos)
            .finish()
    }
}

impl<'a, R: ReadAt> FileReader<'a, R> {
    pub(crate) fn new(fs: &'a Ext4Reader<R>, node: &Inode) -> Result<Self, Error> {
        let bs = fs.block_size();
        let blocks = node.size.div_ceil(bs);
        // ext4's largest file: 2^32 blocks.
        if blocks > 1 << 32 {
            return Err(corrupt(node.ino, "file size beyond ext4's limit"));
        }
        let mut runs = Vec::new();
        if node.flags & EXTENTS_FL != 0 {
            walk_extents(
                fs,
                node.ino,
                node.csum_seed,
                &node.i_block,
                MAX_DEPTH + 1,
                &mut runs,
            )?;
        } else {
            walk_blockmap(fs, node, blocks, &mut runs)?;
        }
        runs.sort_by_key(|r| r.logical);
        if runs
            .windows(2)
            .any(|w| w[0].logical.saturating_add(w[0].len) > w[1].logical)
        {
            return Err(corrupt(node.ino, "overlapping extents"));
        }
        let total = fs.info().blocks_count;
        if runs
            .iter()
            .any(|r| r.physical == 0 || r.physical.saturating_add(r.len) > total)
        {
            return Err(corrupt(node.ino, "extent outside the filesystem"));
        }
        Ok(Self {
            fs,
            ino: node.ino,
            runs,
            size: node.size,
            pos: 0,
            idx: 0,
        })
    }

    /// The file size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes of the file that are mapped to written blocks (not holes,
    /// not unwritten extents).
    pub fn written_bytes(&self) -> u64 {
        let bs = self.fs.block_size();
        self.runs
            .iter()
            .filter(|r| !r.unwritten)
            .map(|r| r.len.saturating_mul(bs))
            .fold(0u64, u64::saturating_add)
            .min(self.size)
    }
}

impl<R: ReadAt> Read for FileReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let bs = self.fs.block_size();
        let want = (buf.len() as u64).min(self.size - self.pos);
        let lblock = self.pos / bs;
        // Advance to the first run that ends after the current block.
        while self
            .runs
            .get(self.idx)
            .is_some_and(|r| r.logical.saturating_add(r.len) <= lblock)
        {
            self.idx += 1;
        }
        let n = match self.runs.get(self.idx) {
            Some(r) if r.logical <= lblock => {
                let run_end = r.logical.saturating_add(r.len).saturating_mul(bs);
                let n = want.min(run_end - self.pos);
                let dst = &mut buf[..n as usize];
                if r.unwritten {
                    dst.fill(0);
                } else {
                    let off = (r.physical + (lblock - r.logical)) * bs + self.pos % bs;
                    self.fs.read_at(dst, off).map_err(io::Error::other)?;
                }
                n
            }
            next => {
                // A hole up to the next run (or the end of the file).
                let hole_end = next.map_or(self.size, |r| r.logical.saturating_mul(bs));
                let n = want.min(hole_end.saturating_sub(self.pos)).max(1).min(want);
                buf[..n as usize].fill(0);
                n
            }
        };
        self.pos += n;
        Ok(n as usize)
    }
}

fn walk_extents<R: ReadAt>(
    fs: &Ext4Reader<R>,
    ino: u32,
    csum_seed: Option<u32>,
    node: &[u8],
    depth_left: u16,
    runs: &mut Vec<Run>,
) -> Result<(), Error> {
    if le16(node, 0) != EXT_MAGIC {
        return Err(corrupt(ino, "bad extent header magic"));
    }
    let entries = usize::from(le16(node, 2));
    let depth = le16(node, 6);
    if depth >= depth_left || depth > MAX_DEPTH {
        return Err(corrupt(ino, "extent tree too deep"));
    }
    if 12 + entries * 12 > node.len() {
        return Err(corrupt(ino, "extent node entries overflow the node"));
    }
    let bs = usize::try_from(fs.block_size()).unwrap_or(4096);
    for i in 0..entries {
        let e = &node[12 + i * 12..24 + i * 12];
        if depth == 0 {
            let raw_len = u64::from(le16(e, 4));
            let (len, unwritten) = if raw_len > 32768 {
                (raw_len - 32768, true)
            } else {
                (raw_len, false)
            };
            let physical = (u64::from(le16(e, 6)) << 32) | u64::from(le32(e, 8));
            if len > 0 {
                runs.push(Run {
                    logical: u64::from(le32(e, 0)),
                    physical,
                    len,
                    unwritten,
                });
            }
        } else {
            let leaf = u64::from(le32(e, 4)) | (u64::from(le16(e, 8)) << 32);
            let mut blk = vec![0u8; bs];
            fs.read_block(leaf, ino, &mut blk)?;
            if let Some(seed) = csum_seed {
                // Tail after eh_max entries: crc32c (inode seed) of the
                // header and all eh_max entry slots.
                let end = 12 + usize::from(le16(&blk, 4)) * 12;
                let stored = blk
                    .get(end..end + 4)
                    .ok_or_else(|| corrupt(ino, "extent block eh_max overflows the block"))?;
                let stored = le32(stored, 0);
                if crate::checksum::Crc32c::new(seed)
                    .update(&blk[..end])
                    .value()
                    != stored
                {
                    return Err(corrupt(ino, "extent block checksum mismatch"));
                }
            }
            if le16(&blk, 6) != depth - 1 {
                return Err(corrupt(ino, "extent index depth mismatch"));
            }
            walk_extents(fs, ino, csum_seed, &blk, depth, runs)?;
        }
    }
    Ok(())
}

fn push_block(runs: &mut Vec<Run>, logical: u64, physical: u64) {
    if let Some(last) = runs.last_mut() {
        if last.logical + last.len == logical && last.physical + last.len == physical {
            last.len += 1;
            return;
        }
    }
    runs.push(Run {
        logical,
        physical,
        len: 1,
        unwritten: false,
    });
}

fn walk_blockmap<R: ReadAt>(
    fs: &Ext4Reader<R>,
    node: &Inode,
    blocks: u64,
    runs: &mut Vec<Run>,
) -> Result<(), Error> {
    let ptrs_per = fs.block_size() / 4;
    for i in 0..12u64.min(blocks) {
        let b = u64::from(le32(&node.i_block, i as usize * 4));
        if b != 0 {
            push_block(runs, i, b);
        }
    }
    let mut next = 12u64;
    for (level, slot) in [(1u32, 12usize), (2, 13), (3, 14)] {
        if next >= blocks {
            break;
        }
        let span = ptrs_per.saturating_pow(level);
        let b = u64::from(le32(&node.i_block, slot * 4));
        if b != 0 {
            indirect(fs, node.ino, b, level, next, blocks, runs)?;
        }
        next = next.saturating_add(span);
    }
    Ok(())
}

fn indirect<R: ReadAt>(
    fs: &Ext4Reader<R>,
    ino: u32,
    block: u64,
    level: u32,
    first: u64,
    blocks: u64,
    runs: &mut Vec<Run>,
) -> Result<(), Error> {
    let bs = usize::try_from(fs.block_size()).unwrap_or(4096);
    let mut buf = vec![0u8; bs];
    fs.read_block(block, ino, &mut buf)?;
    let ptrs_per = fs.block_size() / 4;
    let span = ptrs_per.saturating_pow(level - 1);
    for i in 0..ptrs_per {
        let logical = first.saturating_add(i.saturating_mul(span));
        if logical >= blocks {
            break;
        }
        let b = u64::from(le32(&buf, i as usize * 4));
        if b == 0 {
            continue;
        }
        if level == 1 {
            push_block(runs, logical, b);
        } else {
            indirect(fs, ino, b, level - 1, logical, blocks, runs)?;
        }
    }
    Ok(())
}
