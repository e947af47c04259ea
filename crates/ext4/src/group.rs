//! Block group descriptors (64-byte form, `64bit` feature).
//!
//! Spec: kernel `Documentation/filesystems/ext4/group_descr.rst`.
//!
//! | offset | field                      | offset | field                     |
//! |--------|----------------------------|--------|---------------------------|
//! | 0x00   | bg_block_bitmap_lo         | 0x20   | bg_block_bitmap_hi        |
//! | 0x04   | bg_inode_bitmap_lo         | 0x24   | bg_inode_bitmap_hi        |
//! | 0x08   | bg_inode_table_lo          | 0x28   | bg_inode_table_hi         |
//! | 0x0C   | bg_free_blocks_count_lo    | 0x2C   | bg_free_blocks_count_hi   |
//! | 0x0E   | bg_free_inodes_count_lo    | 0x2E   | bg_free_inodes_count_hi   |
//! | 0x10   | bg_used_dirs_count_lo      | 0x30   | bg_used_dirs_count_hi     |
//! | 0x12   | bg_flags                   | 0x32   | bg_itable_unused_hi       |
//! | 0x14   | bg_exclude_bitmap_lo       | 0x34   | bg_exclude_bitmap_hi      |
//! | 0x18   | bg_block_bitmap_csum_lo    | 0x38   | bg_block_bitmap_csum_hi   |
//! | 0x1A   | bg_inode_bitmap_csum_lo    | 0x3A   | bg_inode_bitmap_csum_hi   |
//! | 0x1C   | bg_itable_unused_lo        | 0x3C   | bg_reserved               |
//! | 0x1E   | bg_checksum (crc32c & 0xFFFF of fs seed, le32 group, desc) |

use crate::checksum::Crc32c;
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `bg_flags`: inode table and bitmap not initialised (no inodes in use).
pub(crate) const BG_INODE_UNINIT: u16 = 0x1;
/// `bg_flags`: the inode table reads as zeros (the writer's target is
/// required to read as zeros where nothing is written), so the kernel
/// need not zero it in the background on first mount.
pub(crate) const BG_INODE_ZEROED: u16 = 0x4;

/// One on-disk group descriptor.
#[derive(Debug, Clone, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(crate) struct RawGroupDesc {
    pub bg_block_bitmap_lo: U32,
    pub bg_inode_bitmap_lo: U32,
    pub bg_inode_table_lo: U32,
    pub bg_free_blocks_count_lo: U16,
    pub bg_free_inodes_count_lo: U16,
    pub bg_used_dirs_count_lo: U16,
    pub bg_flags: U16,
    pub bg_exclude_bitmap_lo: U32,
    pub bg_block_bitmap_csum_lo: U16,
    pub bg_inode_bitmap_csum_lo: U16,
    pub bg_itable_unused_lo: U16,
    pub bg_checksum: U16,
    pub bg_block_bitmap_hi: U32,
    pub bg_inode_bitmap_hi: U32,
    pub bg_inode_table_hi: U32,
    pub bg_free_blocks_count_hi: U16,
    pub bg_free_inodes_count_hi: U16,
    pub bg_used_dirs_count_hi: U16,
    pub bg_itable_unused_hi: U16,
    pub bg_exclude_bitmap_hi: U32,
    pub bg_block_bitmap_csum_hi: U16,
    pub bg_inode_bitmap_csum_hi: U16,
    pub bg_reserved: U32,
}

const _: () = assert!(core::mem::size_of::<RawGroupDesc>() == 64);

/// A group's domain values.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GroupDesc {
    pub block_bitmap: u64,
    pub inode_bitmap: u64,
    pub inode_table: u64,
    pub free_blocks: u32,
    pub free_inodes: u32,
    pub used_dirs: u32,
    pub flags: u16,
    pub itable_unused: u32,
    pub block_bitmap_csum: u32,
    pub inode_bitmap_csum: u32,
}

fn lo32(v: u64) -> U32 {
    U32::new((v & 0xFFFF_FFFF) as u32)
}
fn hi32(v: u64) -> U32 {
    U32::new((v >> 32) as u32)
}
fn lo16(v: u32) -> U16 {
    U16::new((v & 0xFFFF) as u16)
}
fn hi16(v: u32) -> U16 {
    U16::new((v >> 16) as u16)
}

impl GroupDesc {
    /// Encodes with its checksum for group `group`.
    pub(crate) fn to_raw(self, fs_seed: u32, group: u32) -> RawGroupDesc {
        let mut r = RawGroupDesc {
            bg_block_bitmap_lo: lo32(self.block_bitmap),
            bg_inode_bitmap_lo: lo32(self.inode_bitmap),
            bg_inode_table_lo: lo32(self.inode_table),
            bg_free_blocks_count_lo: lo16(self.free_blocks),
            bg_free_inodes_count_lo: lo16(self.free_inodes),
            bg_used_dirs_count_lo: lo16(self.used_dirs),
            bg_flags: U16::new(self.flags),
            bg_block_bitmap_csum_lo: lo16(self.block_bitmap_csum),
            bg_inode_bitmap_csum_lo: lo16(self.inode_bitmap_csum),
            bg_itable_unused_lo: lo16(self.itable_unused),
            bg_block_bitmap_hi: hi32(self.block_bitmap),
            bg_inode_bitmap_hi: hi32(self.inode_bitmap),
            bg_inode_table_hi: hi32(self.inode_table),
            bg_free_blocks_count_hi: hi16(self.free_blocks),
            bg_free_inodes_count_hi: hi16(self.free_inodes),
            bg_used_dirs_count_hi: hi16(self.used_dirs),
            bg_itable_unused_hi: hi16(self.itable_unused),
            bg_block_bitmap_csum_hi: hi16(self.block_bitmap_csum),
            bg_inode_bitmap_csum_hi: hi16(self.inode_bitmap_csum),
            ..Default::default()
        };
        let c = Crc32c::new(fs_seed)
            .update_u32(group)
            .update(r.as_bytes())
            .value();
        r.bg_checksum = U16::new((c & 0xFFFF) as u16);
        r
    }
}
