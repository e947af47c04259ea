//! The ext4 superblock (1024 bytes at byte 1024 of the filesystem, and at
//! the start of every backup group).
//!
//! Spec: kernel `Documentation/filesystems/ext4/super.rst`.
//!
//! | offset | field                     | value written                          |
//! |--------|---------------------------|----------------------------------------|
//! | 0x00   | s_inodes_count            | groups × inodes_per_group              |
//! | 0x04   | s_blocks_count_lo         | low 32 bits (hi at 0x150)              |
//! | 0x08   | s_r_blocks_count_lo       | reserved-for-root blocks (hi at 0x154) |
//! | 0x0C   | s_free_blocks_count_lo    | (hi at 0x158)                          |
//! | 0x10   | s_free_inodes_count       |                                        |
//! | 0x14   | s_first_data_block        | 0 (4 KiB blocks)                       |
//! | 0x18   | s_log_block_size          | 2 (1024 << 2)                          |
//! | 0x20   | s_blocks_per_group        | 32768                                  |
//! | 0x28   | s_inodes_per_group        |                                        |
//! | 0x38   | s_magic                   | 0xEF53                                 |
//! | 0x5C   | s_feature_compat          | has_journal ext_attr resize_inode dir_index |
//! | 0x60   | s_feature_incompat        | filetype extent 64bit flex_bg          |
//! | 0x64   | s_feature_ro_compat       | sparse_super large_file huge_file dir_nlink extra_isize metadata_csum |
//! | 0x68   | s_uuid                    | from options                           |
//! | 0xCE   | s_reserved_gdt_blocks     |                                        |
//! | 0xE0   | s_journal_inum            | 8                                      |
//! | 0xEC   | s_hash_seed               | from options                           |
//! | 0xFE   | s_desc_size               | 64                                     |
//! | 0x10C  | s_jnl_blocks              | copy of the journal inode's i_block + size |
//! | 0x174  | s_log_groups_per_flex     | 4                                      |
//! | 0x175  | s_checksum_type           | 1 (crc32c)                             |
//! | 0x3FC  | s_checksum                | crc32c of bytes 0..0x3FC               |

use crate::checksum::Crc32c;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `s_magic`.
pub(crate) const EXT4_SUPER_MAGIC: u16 = 0xEF53;
/// `s_feature_compat`: has_journal.
pub(crate) const COMPAT_HAS_JOURNAL: u32 = 0x4;
/// `s_feature_compat`: ext_attr.
pub(crate) const COMPAT_EXT_ATTR: u32 = 0x8;
/// `s_feature_compat`: resize_inode.
pub(crate) const COMPAT_RESIZE_INODE: u32 = 0x10;
/// `s_feature_compat`: dir_index.
pub(crate) const COMPAT_DIR_INDEX: u32 = 0x20;
/// `s_feature_incompat`: filetype.
pub(crate) const INCOMPAT_FILETYPE: u32 = 0x2;
/// `s_feature_incompat`: extent.
pub(crate) const INCOMPAT_EXTENTS: u32 = 0x40;
/// `s_feature_incompat`: 64bit.
pub(crate) const INCOMPAT_64BIT: u32 = 0x80;
/// `s_feature_incompat`: flex_bg.
pub(crate) const INCOMPAT_FLEX_BG: u32 = 0x200;
/// `s_feature_incompat`: meta_bg (meta block groups).
pub(crate) const INCOMPAT_META_BG: u32 = 0x10;
/// `s_feature_incompat`: mmp (multiple mount protection).
pub(crate) const INCOMPAT_MMP: u32 = 0x100;
/// `s_feature_incompat`: ea_inode (xattr values in their own inodes).
pub(crate) const INCOMPAT_EA_INODE: u32 = 0x400;
/// `s_feature_incompat`: csum_seed (checksum seed in the superblock).
pub(crate) const INCOMPAT_CSUM_SEED: u32 = 0x2000;
/// `s_feature_incompat`: largedir (three-level htrees, > 2 GiB dirs).
pub(crate) const INCOMPAT_LARGEDIR: u32 = 0x4000;
/// `s_feature_incompat`: casefold (case-insensitive directories).
pub(crate) const INCOMPAT_CASEFOLD: u32 = 0x20000;
/// `s_feature_ro_compat`: sparse_super.
pub(crate) const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
/// `s_feature_ro_compat`: large_file.
pub(crate) const RO_COMPAT_LARGE_FILE: u32 = 0x2;
/// `s_feature_ro_compat`: huge_file.
pub(crate) const RO_COMPAT_HUGE_FILE: u32 = 0x8;
/// `s_feature_ro_compat`: dir_nlink.
pub(crate) const RO_COMPAT_DIR_NLINK: u32 = 0x20;
/// `s_feature_ro_compat`: extra_isize.
pub(crate) const RO_COMPAT_EXTRA_ISIZE: u32 = 0x40;
/// `s_feature_ro_compat`: metadata_csum.
pub(crate) const RO_COMPAT_METADATA_CSUM: u32 = 0x400;
/// `s_flags`: directory hashes treat name bytes as signed chars (what
/// mke2fs records on x86).
pub(crate) const EXT2_FLAGS_SIGNED_HASH: u32 = 0x1;
/// `s_default_mount_opts`: user_xattr | acl (mke2fs.conf default).
pub(crate) const DEFM_XATTR_USER_ACL: u32 = 0x4 | 0x8;
/// `s_def_hash_version`: half_md4.
pub(crate) const DX_HASH_HALF_MD4: u8 = 1;

/// The on-disk superblock, field names as in the spec.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(crate) struct RawSuperblock {
    /// 0x00
    pub s_inodes_count: U32,
    /// 0x04
    pub s_blocks_count_lo: U32,
    /// 0x08
    pub s_r_blocks_count_lo: U32,
    /// 0x0C
    pub s_free_blocks_count_lo: U32,
    /// 0x10
    pub s_free_inodes_count: U32,
    /// 0x14
    pub s_first_data_block: U32,
    /// 0x18
    pub s_log_block_size: U32,
    /// 0x1C
    pub s_log_cluster_size: U32,
    /// 0x20
    pub s_blocks_per_group: U32,
    /// 0x24
    pub s_clusters_per_group: U32,
    /// 0x28
    pub s_inodes_per_group: U32,
    /// 0x2C
    pub s_mtime: U32,
    /// 0x30
    pub s_wtime: U32,
    /// 0x34
    pub s_mnt_count: U16,
    /// 0x36
    pub s_max_mnt_count: U16,
    /// 0x38
    pub s_magic: U16,
    /// 0x3A
    pub s_state: U16,
    /// 0x3C
    pub s_errors: U16,
    /// 0x3E
    pub s_minor_rev_level: U16,
    /// 0x40
    pub s_lastcheck: U32,
    /// 0x44
    pub s_checkinterval: U32,
    /// 0x48
    pub s_creator_os: U32,
    /// 0x4C
    pub s_rev_level: U32,
    /// 0x50
    pub s_def_resuid: U16,
    /// 0x52
    pub s_def_resgid: U16,
    /// 0x54
    pub s_first_ino: U32,
    /// 0x58
    pub s_inode_size: U16,
    /// 0x5A
    pub s_block_group_nr: U16,
    /// 0x5C
    pub s_feature_compat: U32,
    /// 0x60
    pub s_feature_incompat: U32,
    /// 0x64
    pub s_feature_ro_compat: U32,
    /// 0x68
    pub s_uuid: [u8; 16],
    /// 0x78
    pub s_volume_name: [u8; 16],
    /// 0x88
    pub s_last_mounted: [u8; 64],
    /// 0xC8
    pub s_algorithm_usage_bitmap: U32,
    /// 0xCC
    pub s_prealloc_blocks: u8,
    /// 0xCD
    pub s_prealloc_dir_blocks: u8,
    /// 0xCE
    pub s_reserved_gdt_blocks: U16,
    /// 0xD0
    pub s_journal_uuid: [u8; 16],
    /// 0xE0
    pub s_journal_inum: U32,
    /// 0xE4
    pub s_journal_dev: U32,
    /// 0xE8
    pub s_last_orphan: U32,
    /// 0xEC
    pub s_hash_seed: [u8; 16],
    /// 0xFC
    pub s_def_hash_version: u8,
    /// 0xFD
    pub s_jnl_backup_type: u8,
    /// 0xFE
    pub s_desc_size: U16,
    /// 0x100
    pub s_default_mount_opts: U32,
    /// 0x104
    pub s_first_meta_bg: U32,
    /// 0x108
    pub s_mkfs_time: U32,
    /// 0x10C
    pub s_jnl_blocks: [U32; 17],
    /// 0x150
    pub s_blocks_count_hi: U32,
    /// 0x154
    pub s_r_blocks_count_hi: U32,
    /// 0x158
    pub s_free_blocks_count_hi: U32,
    /// 0x15C
    pub s_min_extra_isize: U16,
    /// 0x15E
    pub s_want_extra_isize: U16,
    /// 0x160
    pub s_flags: U32,
    /// 0x164
    pub s_raid_stride: U16,
    /// 0x166
    pub s_mmp_interval: U16,
    /// 0x168
    pub s_mmp_block: U64,
    /// 0x170
    pub s_raid_stripe_width: U32,
    /// 0x174
    pub s_log_groups_per_flex: u8,
    /// 0x175
    pub s_checksum_type: u8,
    /// 0x176
    pub s_encryption_level: u8,
    /// 0x177
    pub s_reserved_pad: u8,
    /// 0x178
    pub s_kbytes_written: U64,
    /// 0x180 .. 0x274: snapshot, error, quota, encryption, lpf fields
    /// (all zero), then s_checksum_seed at 0x270.
    pub s_middle: [u8; 0xF0],
    /// 0x270
    pub s_checksum_seed: U32,
    /// 0x274
    pub s_wtime_hi: u8,
    /// 0x275
    pub s_mtime_hi: u8,
    /// 0x276
    pub s_mkfs_time_hi: u8,
    /// 0x277
    pub s_lastcheck_hi: u8,
    /// 0x278 .. 0x3FC: error time highs, encoding, orphan file, reserved.
    pub s_tail: [u8; 0x184],
    /// 0x3FC
    pub s_checksum: U32,
}

const _: () = assert!(core::mem::size_of::<RawSuperblock>() == 1024);

impl RawSuperblock {
    /// Sets `s_checksum` over the preceding bytes.
    pub(crate) fn seal(&mut self) {
        let c = Crc32c::new(!0).update(&self.as_bytes()[..0x3FC]).value();
        self.s_checksum = U32::new(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn offsets_match_spec() {
        assert_eq!(offset_of!(RawSuperblock, s_uuid), 0x68);
        assert_eq!(offset_of!(RawSuperblock, s_reserved_gdt_blocks), 0xCE);
        assert_eq!(offset_of!(RawSuperblock, s_hash_seed), 0xEC);
        assert_eq!(offset_of!(RawSuperblock, s_desc_size), 0xFE);
        assert_eq!(offset_of!(RawSuperblock, s_jnl_blocks), 0x10C);
        assert_eq!(offset_of!(RawSuperblock, s_blocks_count_hi), 0x150);
        assert_eq!(offset_of!(RawSuperblock, s_log_groups_per_flex), 0x174);
        assert_eq!(offset_of!(RawSuperblock, s_kbytes_written), 0x178);
        assert_eq!(offset_of!(RawSuperblock, s_checksum_seed), 0x270);
        assert_eq!(offset_of!(RawSuperblock, s_checksum), 0x3FC);
    }
}
