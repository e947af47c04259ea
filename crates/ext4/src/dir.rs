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
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

const BS: usize = BLOCK_SIZE as usize;
/// Usable bytes of a leaf block (before the checksum tail).
pub(crate) const LEAF_SPACE: usize = BS - 12;
/// `det_reserved_ft` of the checksum tail.
pub(crate) const TAIL_FT: u8 = 0xDE;

/// `ext4_dir_entry_2` without its name (the name follows, `name_len`
/// bytes, padded to 4). Without the `filetype` feature `name_len` and
/// `file_type` are one little-endian u16 name length.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawDirEntry {
    pub inode: U32,
    pub rec_len: U16,
    pub name_len: u8,
    pub file_type: u8,
}

/// `ext4_dir_entry_tail`: the fake last entry holding a leaf's crc32c.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawDirTail {
    pub reserved_zero1: U32,
    pub rec_len: U16,
    pub reserved_zero2: u8,
    pub reserved_ft: u8,
    pub checksum: U32,
}

impl RawDirTail {
    /// A tail whose checksum is `crc`.
    pub(crate) fn new(crc: u32) -> Self {
        Self {
            reserved_zero1: U32::new(0),
            rec_len: U16::new(12),
            reserved_zero2: 0,
            reserved_ft: TAIL_FT,
            checksum: U32::new(crc),
        }
    }
    /// Whether these 12 bytes are a checksum tail (any checksum).
    pub(crate) fn is_tail(&self) -> bool {
        self.reserved_zero1.get() == 0
            && self.rec_len.get() == 12
            && self.reserved_zero2 == 0
            && self.reserved_ft == TAIL_FT
    }
}

/// Writes one entry (header and name) at the start of `b`.
pub(crate) fn put_entry(b: &mut [u8], ino: u32, rec_len: u16, name: &[u8], ftype: u8) {
    let head = RawDirEntry {
        inode: U32::new(ino),
        rec_len: U16::new(rec_len),
        name_len: name.len() as u8,
        file_type: ftype,
    };
    b[..8].copy_from_slice(head.as_bytes());
    b[8..8 + name.len()].copy_from_slice(name);
}

/// Sets the `rec_len` of the entry at the start of `b`.
fn set_rec_len(b: &mut [u8], rec_len: u16) {
    if let Ok((e, _)) = RawDirEntry::mut_from_prefix(b) {
        e.rec_len = U16::new(rec_len);
    }
}

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
        put_entry(&mut self.buf[self.pos..], e.ino, r as u16, e.name, e.ftype);
        self.last = Some(self.pos);
        self.pos += r;
    }
    /// Stretches the last entry to the tail (or writes one empty entry)
    /// and seals the checksum.
    pub(crate) fn finish(mut self, inode_seed: u32) -> Vec<u8> {
        match self.last {
            Some(at) => set_rec_len(&mut self.buf[at..], (LEAF_SPACE - at) as u16),
            None => set_rec_len(&mut self.buf, LEAF_SPACE as u16),
        }
        seal_leaf(&mut self.buf, inode_seed);
        self.buf
    }
}

/// Writes the checksum tail of a leaf block.
pub(crate) fn seal_leaf(b: &mut [u8], inode_seed: u32) {
    let t = LEAF_SPACE;
    let c = Crc32c::new(inode_seed).update(&b[..t]).value();
    b[t..t + 12].copy_from_slice(RawDirTail::new(c).as_bytes());
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
