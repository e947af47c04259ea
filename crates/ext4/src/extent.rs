//! Extent trees: how a file's logical blocks map to physical blocks.
//!
//! Spec: kernel `Documentation/filesystems/ext4/ifork.rst` ("Extent Tree").
//!
//! Every node starts with a 12-byte header; leaves hold extents, interior
//! nodes hold indexes; both entries are 12 bytes. The root lives in the
//! inode's 60-byte `i_block` (4 entries); other nodes fill a 4 KiB block
//! (340 entries) followed by a 4-byte crc32c tail (inode seed).
//!
//! | header | offset | field         | extent | offset | field       |
//! |--------|--------|---------------|--------|--------|-------------|
//! |        | 0x0    | eh_magic F30A |        | 0x0    | ee_block    |
//! |        | 0x2    | eh_entries    |        | 0x4    | ee_len      |
//! |        | 0x4    | eh_max        |        | 0x6    | ee_start_hi |
//! |        | 0x6    | eh_depth      |        | 0x8    | ee_start_lo |
//! |        | 0x8    | eh_generation | index  | 0x0    | ei_block    |
//! |        |        |               |        | 0x4    | ei_leaf_lo  |
//! |        |        |               |        | 0x8    | ei_leaf_hi  |
//!
//! `ee_len` above 32768 marks an *unwritten* (preallocated) extent of
//! `ee_len - 32768` blocks, which reads as zeros.

use crate::checksum::Crc32c;
use crate::options::BLOCK_SIZE;
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `eh_magic`.
pub(crate) const EXT4_EXT_MAGIC: u16 = 0xF30A;
/// Longest initialised extent in blocks.
pub(crate) const MAX_INIT_LEN: u32 = 32768;
/// Longest unwritten extent in blocks.
pub(crate) const MAX_UNWRITTEN_LEN: u32 = 32767;
/// Entries in a block node (header + entries + 4-byte tail in 4 KiB).
pub(crate) const BLOCK_ENTRIES: usize = (BLOCK_SIZE as usize - 12 - 4) / 12;
/// Entries in the inode root.
pub(crate) const ROOT_ENTRIES: usize = 4;

#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawExtentHeader {
    eh_magic: U16,
    eh_entries: U16,
    eh_max: U16,
    eh_depth: U16,
    eh_generation: U32,
}

#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawExtent {
    ee_block: U32,
    ee_len: U16,
    ee_start_hi: U16,
    ee_start_lo: U32,
}

#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawExtentIdx {
    ei_block: U32,
    ei_leaf_lo: U32,
    ei_leaf_hi: U16,
    ei_unused: U16,
}

const _: () = assert!(core::mem::size_of::<RawExtentHeader>() == 12);
const _: () = assert!(core::mem::size_of::<RawExtent>() == 12);
const _: () = assert!(core::mem::size_of::<RawExtentIdx>() == 12);
const _: () = assert!(12 + BLOCK_ENTRIES * 12 + 4 <= BLOCK_SIZE as usize);

/// One mapping of `len` logical blocks from `logical` to `physical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    pub logical: u32,
    pub physical: u64,
    pub len: u32,
    pub unwritten: bool,
}

/// Appends a run to a sorted extent list, merging with the last extent
/// when contiguous and splitting at the maximum extent length.
pub(crate) fn push_run(
    list: &mut Vec<Extent>,
    mut logical: u32,
    mut physical: u64,
    mut len: u64,
    unwritten: bool,
) {
    let max = if unwritten {
        MAX_UNWRITTEN_LEN
    } else {
        MAX_INIT_LEN
    };
    while len > 0 {
        if let Some(last) = list.last_mut() {
            if last.unwritten == unwritten
                && u64::from(last.logical) + u64::from(last.len) == u64::from(logical)
                && last.physical + u64::from(last.len) == physical
                && last.len < max
            {
                let take = (u64::from(max - last.len)).min(len) as u32;
                last.len += take;
                logical += take;
                physical += u64::from(take);
                len -= u64::from(take);
                continue;
            }
        }
        let take = (u64::from(max)).min(len) as u32;
        list.push(Extent {
            logical,
            physical,
            len: take,
            unwritten,
        });
        logical += take;
        physical += u64::from(take);
        len -= u64::from(take);
    }
}

fn header(entries: usize, max: usize, depth: u16) -> RawExtentHeader {
    RawExtentHeader {
        eh_magic: U16::new(EXT4_EXT_MAGIC),
        eh_entries: U16::new(entries as u16),
        eh_max: U16::new(max as u16),
        eh_depth: U16::new(depth),
        eh_generation: U32::new(0),
    }
}

fn raw_extent(e: &Extent) -> RawExtent {
    let len = if e.unwritten {
        e.len + MAX_INIT_LEN
    } else {
        e.len
    };
    RawExtent {
        ee_block: U32::new(e.logical),
        ee_len: U16::new(len as u16),
        ee_start_hi: U16::new((e.physical >> 32) as u16),
        ee_start_lo: U32::new(e.physical as u32),
    }
}

fn raw_idx(logical: u32, block: u64) -> RawExtentIdx {
    RawExtentIdx {
        ei_block: U32::new(logical),
        ei_leaf_lo: U32::new(block as u32),
        ei_leaf_hi: U16::new((block >> 32) as u16),
        ei_unused: U16::new(0),
    }
}

/// Number of tree blocks (leaves + interior) a file with `n` extents
/// needs beyond its inode.
pub(crate) fn tree_blocks(n: usize) -> u64 {
    if n <= ROOT_ENTRIES {
        return 0;
    }
    let mut total = 0u64;
    let mut level = n;
    while level > ROOT_ENTRIES {
        level = level.div_ceil(BLOCK_ENTRIES);
        total += level as u64;
    }
    total
}

/// The physical runs of a depth-0 tree stored in `i_block` (empty for
/// deeper trees).
pub(crate) fn shallow_runs(i_block: &[u8; 60]) -> Vec<(u64, u64)> {
    let Ok((h, _)) = RawExtentHeader::read_from_prefix(i_block) else {
        return Vec::new();
    };
    if h.eh_magic.get() != EXT4_EXT_MAGIC || h.eh_depth.get() != 0 {
        return Vec::new();
    }
    let n = usize::from(h.eh_entries.get()).min(ROOT_ENTRIES);
    (0..n)
        .filter_map(|i| {
            let o = 12 + i * 12;
            let (e, _) = RawExtent::read_from_prefix(&i_block[o..]).ok()?;
            let len = u64::from(e.ee_len.get());
            let len = if len > u64::from(MAX_INIT_LEN) {
                len - u64::from(MAX_INIT_LEN)
            } else {
                len
            };
            let start = (u64::from(e.ee_start_hi.get()) << 32) | u64::from(e.ee_start_lo.get());
            Some((start, len))
        })
        .collect()
}

/// A built tree: the inode's `i_block` and the blocks to write.
#[derive(Debug)]
pub(crate) struct BuiltTree {
    pub i_block: [u8; 60],
    /// `(physical block, contents)` of every tree node outside the inode.
    pub nodes: Vec<(u64, Vec<u8>)>,
}

/// Builds the extent tree for `extents` (sorted by logical block).
/// `alloc` hands out one physical block per call for tree nodes.
pub(crate) fn build_tree<E>(
    extents: &[Extent],
    inode_seed: u32,
    mut alloc: impl FnMut() -> Result<u64, E>,
) -> Result<BuiltTree, E> {
    let mut i_block = [0u8; 60];
    if extents.len() <= ROOT_ENTRIES {
        let h = header(extents.len(), ROOT_ENTRIES, 0);
        i_block[..12].copy_from_slice(h.as_bytes());
        for (i, e) in extents.iter().enumerate() {
            let o = 12 + i * 12;
            i_block[o..o + 12].copy_from_slice(raw_extent(e).as_bytes());
        }
        return Ok(BuiltTree {
            i_block,
            nodes: Vec::new(),
        });
    }
    let mut nodes = Vec::new();
    // Leaves.
    let mut level: Vec<(u32, u64)> = Vec::new(); // (first logical, block)
    for chunk in extents.chunks(BLOCK_ENTRIES) {
        let blk = alloc()?;
        let mut b = vec![0u8; BLOCK_SIZE as usize];
        b[..12].copy_from_slice(header(chunk.len(), BLOCK_ENTRIES, 0).as_bytes());
        for (i, e) in chunk.iter().enumerate() {
            let o = 12 + i * 12;
            b[o..o + 12].copy_from_slice(raw_extent(e).as_bytes());
        }
        seal_block(&mut b, inode_seed);
        level.push((chunk[0].logical, blk));
        nodes.push((blk, b));
    }
    let mut depth: u16 = 1;
    while level.len() > ROOT_ENTRIES {
        let mut next = Vec::new();
        for chunk in level.chunks(BLOCK_ENTRIES) {
            let blk = alloc()?;
            let mut b = vec![0u8; BLOCK_SIZE as usize];
            b[..12].copy_from_slice(header(chunk.len(), BLOCK_ENTRIES, depth).as_bytes());
            for (i, &(l, p)) in chunk.iter().enumerate() {
                let o = 12 + i * 12;
                b[o..o + 12].copy_from_slice(raw_idx(l, p).as_bytes());
            }
            seal_block(&mut b, inode_seed);
            next.push((chunk[0].0, blk));
            nodes.push((blk, b));
        }
        level = next;
        depth += 1;
    }
    i_block[..12].copy_from_slice(header(level.len(), ROOT_ENTRIES, depth).as_bytes());
    for (i, &(l, p)) in level.iter().enumerate() {
        let o = 12 + i * 12;
        i_block[o..o + 12].copy_from_slice(raw_idx(l, p).as_bytes());
    }
    Ok(BuiltTree { i_block, nodes })
}

fn seal_block(b: &mut [u8], inode_seed: u32) {
    let end = 12 + BLOCK_ENTRIES * 12;
    let c = Crc32c::new(inode_seed).update(&b[..end]).value();
    b[end..end + 4].copy_from_slice(&c.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_run_merges_and_splits() {
        let mut v = Vec::new();
        push_run(&mut v, 0, 100, 10, false);
        push_run(&mut v, 10, 110, 5, false);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].len, 15);
        push_run(&mut v, 20, 115, 1, false); // logical gap: new extent
        assert_eq!(v.len(), 2);
        let mut u = Vec::new();
        push_run(&mut u, 0, 0, 70000, true);
        assert_eq!(
            u.iter().map(|e| e.len).collect::<Vec<_>>(),
            vec![32767, 32767, 4466]
        );
    }

    #[test]
    fn tree_shapes() {
        assert_eq!(tree_blocks(4), 0);
        assert_eq!(tree_blocks(5), 1);
        assert_eq!(tree_blocks(340 * 4), 4);
        assert_eq!(tree_blocks(340 * 4 + 1), 5 + 1);
        let ext: Vec<Extent> = (0..2000)
            .map(|i| Extent {
                logical: i * 2,
                physical: 1000 + u64::from(i) * 2,
                len: 1,
                unwritten: false,
            })
            .collect();
        let mut next = 10u64;
        let t = build_tree::<()>(&ext, 0, || {
            next += 1;
            Ok(next)
        })
        .unwrap();
        assert_eq!(t.nodes.len() as u64, tree_blocks(2000));
        // Root: depth 2, one index entry.
        assert_eq!(&t.i_block[..8], &[0x0A, 0xF3, 1, 0, 4, 0, 2, 0]);
        assert!(shallow_runs(&t.i_block).is_empty());
        let t = build_tree::<()>(&ext[..3], 0, || unreachable!()).unwrap();
        assert_eq!(
            shallow_runs(&t.i_block),
            vec![(1000, 1), (1002, 1), (1004, 1)]
        );
    }
}
