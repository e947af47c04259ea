//! Hashed directory indexes (htree / `dir_index`) and the half-MD4
//! directory hash.
//!
//! Spec: kernel `Documentation/filesystems/ext4/directory.rst` ("Hash Tree
//! Directories") and the hash in the kernel's `fs/ext4/hash.c`.
//!
//! Block 0 of an indexed directory (dx_root):
//!
//! | offset | field                                               |
//! |--------|-----------------------------------------------------|
//! | 0x00   | `.` entry (rec_len 12)                              |
//! | 0x0C   | `..` entry (rec_len 4084, covers the rest)          |
//! | 0x18   | dx_root_info: reserved u32, hash_version u8 (1),    |
//! |        | info_length u8 (8), indirect_levels u8, flags u8    |
//! | 0x20   | limit u16, count u16, block u32 (hash 0)            |
//! | 0x28   | dx_entry {hash u32, block u32} × (count - 1)        |
//! | 0xFF8  | dx_tail: reserved u32, crc32c u32 (over the block up  |
//! |        | to the last used entry, then the tail with csum 0)  |
//!
//! Interior nodes (dx_node) start with an empty dirent of rec_len 4096
//! followed by the same limit/count/entries at offset 8. Leaf blocks are
//! ordinary directory blocks holding the names of one hash range. Bit 0
//! of an index hash marks a range that continues a run of equal hashes
//! from the previous leaf.

use crate::checksum::Crc32c;
use crate::dir::{put_entry, DirEntryRef, LeafBuilder};
use crate::options::BLOCK_SIZE;
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

const BS: usize = BLOCK_SIZE as usize;
/// Entry slots in dx_root (including the count/limit slot).
pub(crate) const ROOT_LIMIT: usize = (BS - 0x20 - 8) / 8;
/// Entry slots in a dx_node.
pub(crate) const NODE_LIMIT: usize = (BS - 8 - 8) / 8;

/// `dx_root_info` (at 0x18 of the root block).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawDxRootInfo {
    pub reserved_zero: U32,
    pub hash_version: u8,
    pub info_length: u8,
    pub indirect_levels: u8,
    pub unused_flags: u8,
}

/// `dx_countlimit`: overlays the first `dx_entry` (whose hash is implied 0).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawDxCountLimit {
    pub limit: U16,
    pub count: U16,
}

/// `dx_entry`: the first leaf (or node) for hashes from `hash`.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawDxEntry {
    pub hash: U32,
    pub block: U32,
}

/// `dx_tail`: after the `limit` entries of an index block.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawDxTail {
    pub reserved: U32,
    pub checksum: U32,
}

const DEFAULT_SEED: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// The per-filesystem seed as four words (all-zero means the default).
pub(crate) fn seed_words(seed: &[u8; 16]) -> [u32; 4] {
    let mut w = [0u32; 4];
    for (i, c) in seed.chunks_exact(4).enumerate() {
        w[i] = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    if w == [0; 4] {
        DEFAULT_SEED
    } else {
        w
    }
}

/// Packs name bytes into hash input words, treating bytes as *signed*
/// chars (`signed_directory_hash`), like the kernel's `str2hashbuf_signed`.
fn str2hashbuf(msg: &[u8], out: &mut [u32; 8]) {
    let len = msg.len() as u32;
    let mut pad = len | (len << 8);
    pad |= pad << 16;
    let mut val = pad;
    let take = msg.len().min(32);
    let mut idx = 0;
    for (i, &b) in msg[..take].iter().enumerate() {
        val = (i32::from(b as i8) as u32).wrapping_add(val << 8);
        if i % 4 == 3 {
            out[idx] = val;
            idx += 1;
            val = pad;
        }
    }
    if idx < 8 {
        out[idx] = val;
        idx += 1;
    }
    while idx < 8 {
        out[idx] = pad;
        idx += 1;
    }
}

fn half_md4(buf: &mut [u32; 4], inp: &[u32; 8]) {
    let f = |x: u32, y: u32, z: u32| z ^ (x & (y ^ z));
    let g = |x: u32, y: u32, z: u32| (x & y).wrapping_add((x ^ y) & z);
    let h = |x: u32, y: u32, z: u32| x ^ y ^ z;
    const K2: u32 = 0o13240474631;
    const K3: u32 = 0o15666365641;
    let (mut a, mut b, mut c, mut d) = (buf[0], buf[1], buf[2], buf[3]);
    macro_rules! round {
        ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $x:expr, $s:expr) => {
            $a = $a.wrapping_add($f($b, $c, $d)).wrapping_add($x);
            $a = $a.rotate_left($s);
        };
    }
    round!(f, a, b, c, d, inp[0], 3);
    round!(f, d, a, b, c, inp[1], 7);
    round!(f, c, d, a, b, inp[2], 11);
    round!(f, b, c, d, a, inp[3], 19);
    round!(f, a, b, c, d, inp[4], 3);
    round!(f, d, a, b, c, inp[5], 7);
    round!(f, c, d, a, b, inp[6], 11);
    round!(f, b, c, d, a, inp[7], 19);

    round!(g, a, b, c, d, inp[1].wrapping_add(K2), 3);
    round!(g, d, a, b, c, inp[3].wrapping_add(K2), 5);
    round!(g, c, d, a, b, inp[5].wrapping_add(K2), 9);
    round!(g, b, c, d, a, inp[7].wrapping_add(K2), 13);
    round!(g, a, b, c, d, inp[0].wrapping_add(K2), 3);
    round!(g, d, a, b, c, inp[2].wrapping_add(K2), 5);
    round!(g, c, d, a, b, inp[4].wrapping_add(K2), 9);
    round!(g, b, c, d, a, inp[6].wrapping_add(K2), 13);

    round!(h, a, b, c, d, inp[3].wrapping_add(K3), 3);
    round!(h, d, a, b, c, inp[7].wrapping_add(K3), 9);
    round!(h, c, d, a, b, inp[2].wrapping_add(K3), 11);
    round!(h, b, c, d, a, inp[6].wrapping_add(K3), 15);
    round!(h, a, b, c, d, inp[1].wrapping_add(K3), 3);
    round!(h, d, a, b, c, inp[5].wrapping_add(K3), 9);
    round!(h, c, d, a, b, inp[0].wrapping_add(K3), 11);
    round!(h, b, c, d, a, inp[4].wrapping_add(K3), 15);

    buf[0] = buf[0].wrapping_add(a);
    buf[1] = buf[1].wrapping_add(b);
    buf[2] = buf[2].wrapping_add(c);
    buf[3] = buf[3].wrapping_add(d);
}

/// `(hash, minor_hash)` of `name` with the signed half-MD4 hash.
pub(crate) fn name_hash(name: &[u8], seed: &[u32; 4]) -> (u32, u32) {
    let mut buf = *seed;
    let mut rest = name;
    let mut inp = [0u32; 8];
    loop {
        str2hashbuf(rest, &mut inp);
        half_md4(&mut buf, &inp);
        if rest.len() <= 32 {
            break;
        }
        rest = &rest[32..];
    }
    let mut hash = buf[1] & !1;
    if hash == 0x7FFF_FFFF << 1 {
        hash = (0x7FFF_FFFF - 1) << 1;
    }
    (hash, buf[2])
}

/// Builds the blocks of an indexed directory, in logical order: dx_root,
/// dx_nodes, leaves. `entries` must be sorted by `(hash, minor, name)`.
/// Returns `None` when the directory needs more than two index levels.
pub(crate) fn build_indexed(
    self_ino: u32,
    parent_ino: u32,
    entries: &[(u32, u32, DirEntryRef<'_>)],
    inode_seed: u32,
) -> Option<Vec<Vec<u8>>> {
    // Leaves with the hash of their first entry.
    let mut leaves: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut lb = LeafBuilder::new();
    let mut first_hash = 0u32;
    let mut prev_hash: Option<u32> = None;
    for (hash, _minor, e) in entries {
        if lb.is_empty() {
            first_hash = *hash;
        } else if !lb.fits(e.name.len()) {
            let b = std::mem::replace(&mut lb, LeafBuilder::new()).finish(inode_seed);
            leaves.push((first_hash, b));
            first_hash = *hash;
            if prev_hash == Some(*hash) {
                first_hash |= 1;
            }
        }
        lb.push(e);
        prev_hash = Some(*hash);
    }
    leaves.push((first_hash, lb.finish(inode_seed)));

    let nl = leaves.len();
    let (levels, nodes) = if nl <= ROOT_LIMIT {
        (0u8, 0usize)
    } else {
        let n = nl.div_ceil(NODE_LIMIT);
        if n > ROOT_LIMIT {
            return None;
        }
        (1, n)
    };
    let first_leaf = 1 + nodes as u32;
    let mut out = Vec::with_capacity(1 + nodes + nl);
    // Root.
    let mut root = vec![0u8; BS];
    put_entry(&mut root[0..], self_ino, 12, b".", crate::dir::ftype::DIR);
    put_entry(
        &mut root[12..],
        parent_ino,
        (BS - 12) as u16,
        b"..",
        crate::dir::ftype::DIR,
    );
    let info = RawDxRootInfo {
        reserved_zero: U32::new(0),
        hash_version: crate::superblock::DX_HASH_HALF_MD4,
        info_length: 8,
        indirect_levels: levels,
        unused_flags: 0,
    };
    root[0x18..0x20].copy_from_slice(info.as_bytes());
    let root_entries: Vec<(u32, u32)> = if levels == 0 {
        leaves
            .iter()
            .enumerate()
            .map(|(i, (h, _))| (*h, first_leaf + i as u32))
            .collect()
    } else {
        (0..nodes)
            .map(|n| (leaves[n * NODE_LIMIT].0, 1 + n as u32))
            .collect()
    };
    write_dx(&mut root, 0x20, ROOT_LIMIT, &root_entries, inode_seed);
    out.push(root);
    for n in 0..nodes {
        let mut b = vec![0u8; BS];
        b[4..6].copy_from_slice(&(BS as u16).to_le_bytes());
        let lo = n * NODE_LIMIT;
        let hi = (lo + NODE_LIMIT).min(nl);
        let ents: Vec<(u32, u32)> = (lo..hi)
            .map(|i| (leaves[i].0, first_leaf + i as u32))
            .collect();
        write_dx(&mut b, 8, NODE_LIMIT, &ents, inode_seed);
        out.push(b);
    }
    out.extend(leaves.into_iter().map(|(_, b)| b));
    Some(out)
}

/// Writes limit/count and entries at `at`, then the dx_tail checksum.
fn write_dx(b: &mut [u8], at: usize, limit: usize, ents: &[(u32, u32)], inode_seed: u32) {
    for (i, &(h, blk)) in ents.iter().enumerate() {
        let e = RawDxEntry {
            hash: U32::new(h),
            block: U32::new(blk),
        };
        b[at + i * 8..at + i * 8 + 8].copy_from_slice(e.as_bytes());
    }
    // The count/limit pair takes the first entry's (implied 0) hash.
    let cl = RawDxCountLimit {
        limit: U16::new(limit as u16),
        count: U16::new(ents.len() as u16),
    };
    b[at..at + 4].copy_from_slice(cl.as_bytes());
    let size = at + ents.len() * 8;
    let tail = at + limit * 8;
    let mut t = RawDxTail {
        reserved: U32::new(0),
        checksum: U32::new(0),
    };
    let c = Crc32c::new(inode_seed)
        .update(&b[..size])
        .update(t.as_bytes()) // dt_reserved + zeroed dt_checksum
        .value();
    t.checksum = U32::new(c);
    b[tail..tail + 8].copy_from_slice(t.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_md4_known_answers() {
        // From `debugfs -R "dx_hash -h half_md4 -s <seed> <name>"`
        // (e2fsprogs 1.47.0, signed hash).
        let seed = seed_words(&[
            0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x33, 0x33, 0x44, 0x44, 0x55, 0x55, 0x55, 0x55,
            0x55, 0x55,
        ]);
        assert_eq!(name_hash(b"hello", &seed), (0xe4a977aa, 0xb8f2ce63));
    }

    #[test]
    fn limits() {
        assert_eq!(ROOT_LIMIT, 507);
        assert_eq!(NODE_LIMIT, 510);
    }
}
