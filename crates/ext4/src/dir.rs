//! Linear directory blocks (`ext4_dir_entry_2`, `filetype` feature) with
//! the `metadata_csum` tail.
//!
//! Spec: kernel `Documentation/filesystems/ext4/directory.rst`.
//!
//! | offset | field     | notes                                       |
//! |--------|-----------|---------------------------------------------|
//! | 0x0    | inode     | 0 = unused                                  |
//! | 0x4    | rec_len   | bytes to the next entry, multiple of 4      |
//! | 0x6    | name_len  |                                             |
//! | 0x7    | file_type | 1 reg 2 dir 3 chr 4 blk 5 fifo 6 sock 7 lnk |
//! | 0x8    | name      | not NUL-terminated                          |
//!
//! Each block ends with a 12-byte fake entry (inode 0, rec_len 12,
//! name_len 0, file_type 0xDE) whose last 4 bytes are the crc32c of the
//! block before it (inode seed).

use crate::checksum::Crc32c;
use crate::options::BLOCK_SIZE;

const BS: usize = BLOCK_SIZE as usize;
/// Usable bytes of a leaf block (before the checksum tail).
pub(crate) const LEAF_SPACE: usize = BS - 12;

/// `file_type` values.
pub(crate) mod ftype {
    pub(crate) const REG: u8 = 1;
    pub(crate) const DIR: u8 = 2;
    pub(crate) const CHR: u8 = 3;
    pub(crate) const BLK: u8 = 4;
    pub(crate) const FIFO: u8 = 5;
    pub(crate) const SOCK: u8 = 6;
    pub(crate) const LNK: u8 = 7;
}

/// Bytes one entry with a `name_len`-byte name occupies (minimum rec_len).
pub(crate) fn rec_len(name_len: usize) -> usize {
    (8 + name_len + 3) & !3
}

/// One name in a directory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DirEntryRef<'a> {
    pub ino: u32,
    pub name: &'a [u8],
    pub ftype: u8,
}

/// Fills one leaf block.
#[derive(Debug)]
pub(crate) struct LeafBuilder {
    buf: Vec<u8>,
    pos: usize,
    last: Option<usize>,
}

impl LeafBuilder {
    pub(crate) fn new() -> Self {
        Self {
            buf: vec![0u8; BS],
            pos: 0,
            last: None,
        }
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.last.is_none()
    }
    pub(crate) fn fits(&self, name_len: usize) -> bool {
        self.pos + rec_len(name_len) <= LEAF_SPACE
    }
    /// Appends; the caller checked [`fits`](Self::fits).
    pub(crate) fn push(&mut self, e: &DirEntryRef<'_>) {
        let r = rec_len(e.name.len());
        let b = &mut self.buf[self.pos..];
        b[0..4].copy_from_slice(&e.ino.to_le_bytes());
        b[4..6].copy_from_slice(&(r as u16).to_le_bytes());
        b[6] = e.name.len() as u8;
        b[7] = e.ftype;
        b[8..8 + e.name.len()].copy_from_slice(e.name);
        self.last = Some(self.pos);
        self.pos += r;
    }
    /// Stretches the last entry to the tail (or writes one empty entry)
    /// and seals the checksum.
    pub(crate) fn finish(mut self, inode_seed: u32) -> Vec<u8> {
        match self.last {
            Some(at) => {
                let r = (LEAF_SPACE - at) as u16;
                self.buf[at + 4..at + 6].copy_from_slice(&r.to_le_bytes());
            }
            None => {
                self.buf[4..6].copy_from_slice(&(LEAF_SPACE as u16).to_le_bytes());
            }
        }
        seal_leaf(&mut self.buf, inode_seed);
        self.buf
    }
}

/// Writes the checksum tail of a leaf block.
pub(crate) fn seal_leaf(b: &mut [u8], inode_seed: u32) {
    let t = LEAF_SPACE;
    b[t..t + 4].fill(0);
    b[t + 4..t + 6].copy_from_slice(&12u16.to_le_bytes());
    b[t + 6] = 0;
    b[t + 7] = 0xDE;
    let c = Crc32c::new(inode_seed).update(&b[..t]).value();
    b[t + 8..t + 12].copy_from_slice(&c.to_le_bytes());
}

/// Builds a linear directory: `.` and `..` first, then `entries` in the
/// given order.
pub(crate) fn build_linear(
    self_ino: u32,
    parent_ino: u32,
    entries: &[DirEntryRef<'_>],
    inode_seed: u32,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut lb = LeafBuilder::new();
    lb.push(&DirEntryRef {
        ino: self_ino,
        name: b".",
        ftype: ftype::DIR,
    });
    lb.push(&DirEntryRef {
        ino: parent_ino,
        name: b"..",
        ftype: ftype::DIR,
    });
    for e in entries {
        if !lb.fits(e.name.len()) {
            out.push(std::mem::replace(&mut lb, LeafBuilder::new()).finish(inode_seed));
        }
        lb.push(e);
    }
    out.push(lb.finish(inode_seed));
    out
}

/// Number of blocks [`build_linear`] produces for names of these lengths.
pub(crate) fn linear_blocks(name_lens: impl Iterator<Item = usize>) -> usize {
    let mut blocks = 1;
    let mut pos = rec_len(1) + rec_len(2);
    for n in name_lens {
        let r = rec_len(n);
        if pos + r > LEAF_SPACE {
            blocks += 1;
            pos = 0;
        }
        pos += r;
    }
    blocks
}

/// An empty directory block (for `lost+found`'s extra blocks).
pub(crate) fn empty_block(inode_seed: u32) -> Vec<u8> {
    LeafBuilder::new().finish(inode_seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rec_lens() {
        assert_eq!(rec_len(1), 12);
        assert_eq!(rec_len(2), 12);
        assert_eq!(rec_len(4), 12);
        assert_eq!(rec_len(5), 16);
        assert_eq!(rec_len(255), 264);
    }

    #[test]
    fn linear_counts_match() {
        let names: Vec<Vec<u8>> = (0..1000)
            .map(|i| format!("file-{i}").into_bytes())
            .collect();
        let ents: Vec<DirEntryRef<'_>> = names
            .iter()
            .map(|n| DirEntryRef {
                ino: 12,
                name: n,
                ftype: ftype::REG,
            })
            .collect();
        let blocks = build_linear(2, 2, &ents, 0);
        assert_eq!(blocks.len(), linear_blocks(names.iter().map(|n| n.len())));
        assert!(blocks.len() > 1);
    }
}
