//! The internal JBD2 journal: an inode (8) with contiguous extents whose
//! first block holds a clean, empty journal superblock (big-endian).
//!
//! Spec: kernel `Documentation/filesystems/ext4/journal.rst`.
//!
//! | offset | field         | value                                  |
//! |--------|---------------|----------------------------------------|
//! | 0x00   | h_magic       | 0xC03B3998                             |
//! | 0x04   | h_blocktype   | 4 (superblock v2)                      |
//! | 0x08   | h_sequence    | 0                                      |
//! | 0x0C   | s_blocksize   | 4096                                   |
//! | 0x10   | s_maxlen      | journal length in blocks               |
//! | 0x14   | s_first       | 1                                      |
//! | 0x18   | s_sequence    | 1                                      |
//! | 0x1C   | s_start       | 0 (clean: nothing to replay)           |
//! | 0x24.. | features      | none (the kernel adds what it uses)    |
//! | 0x30   | s_uuid        | filesystem UUID                        |
//! | 0x40   | s_nr_users    | 1                                      |
//!
//! Like mke2fs, only the superblock block is written; a clean journal
//! (`s_start == 0`) is never replayed, and the kernel writes each block
//! before it reads it back.

use zerocopy::big_endian::U32;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// JBD2 magic.
pub(crate) const JBD2_MAGIC: u32 = 0xC03B_3998;
/// Superblock v2 block type.
pub(crate) const JBD2_SUPERBLOCK_V2: u32 = 4;

#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(crate) struct RawJournalSuperblock {
    h_magic: U32,
    h_blocktype: U32,
    h_sequence: U32,
    s_blocksize: U32,
    s_maxlen: U32,
    s_first: U32,
    s_sequence: U32,
    s_start: U32,
    s_errno: U32,
    s_feature_compat: U32,
    s_feature_incompat: U32,
    s_feature_ro_compat: U32,
    s_uuid: [u8; 16],
    s_nr_users: U32,
    s_rest: [u8; 1024 - 0x44],
}

const _: () = assert!(core::mem::size_of::<RawJournalSuperblock>() == 1024);

/// The first journal block.
pub(crate) fn superblock_block(maxlen: u32, uuid: [u8; 16]) -> Vec<u8> {
    let mut sb = RawJournalSuperblock::new_zeroed();
    sb.h_magic = U32::new(JBD2_MAGIC);
    sb.h_blocktype = U32::new(JBD2_SUPERBLOCK_V2);
    sb.s_blocksize = U32::new(crate::options::BLOCK_SIZE);
    sb.s_maxlen = U32::new(maxlen);
    sb.s_first = U32::new(1);
    sb.s_sequence = U32::new(1);
    sb.s_uuid = uuid;
    sb.s_nr_users = U32::new(1);
    let mut b = vec![0u8; crate::options::BLOCK_SIZE as usize];
    b[..1024].copy_from_slice(sb.as_bytes());
    b
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_mke2fs_bytes() {
        // First 0x44 bytes of a 4096-block journal made by mke2fs 1.47.0.
        let b = super::superblock_block(4096, [0xAB; 16]);
        assert_eq!(
            &b[..0x30],
            &[
                0xc0, 0x3b, 0x39, 0x98, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0x10, 0, 0, 0,
                0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
            ]
        );
        assert_eq!(&b[0x40..0x44], &[0, 0, 0, 1]);
    }
}
