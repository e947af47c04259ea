//! 256-byte ext4 inodes with nanosecond times and creation time.
//!
//! Spec: kernel `Documentation/filesystems/ext4/inodes.rst`.
//!
//! | offset | field            | offset | field                          |
//! |--------|------------------|--------|--------------------------------|
//! | 0x00   | i_mode           | 0x64   | i_generation (0)               |
//! | 0x02   | i_uid (lo 16)    | 0x68   | i_file_acl_lo (xattr block)    |
//! | 0x04   | i_size_lo        | 0x6C   | i_size_high                    |
//! | 0x08   | i_atime          | 0x74   | l_i_blocks_high                |
//! | 0x0C   | i_ctime          | 0x76   | l_i_file_acl_high              |
//! | 0x10   | i_mtime          | 0x78   | l_i_uid_high                   |
//! | 0x14   | i_dtime          | 0x7A   | l_i_gid_high                   |
//! | 0x18   | i_gid (lo 16)    | 0x7C   | l_i_checksum_lo                |
//! | 0x1A   | i_links_count    | 0x80   | i_extra_isize (32)             |
//! | 0x1C   | i_blocks_lo      | 0x82   | i_checksum_hi                  |
//! | 0x20   | i_flags          | 0x84   | i_ctime_extra                  |
//! | 0x24   | l_i_version      | 0x88   | i_mtime_extra                  |
//! | 0x28   | i_block[15]      | 0x8C   | i_atime_extra                  |
//! |        | (extent root,    | 0x90   | i_crtime                       |
//! |        |  symlink target, | 0x94   | i_crtime_extra                 |
//! |        |  device number)  | 0xA0   | in-inode xattrs (magic + 92 B) |
//!
//! `*_extra` = nanoseconds << 2 | epoch bits (seconds beyond 32 bits).

use crate::checksum::{inode_seed, Crc32c};
use kiln_tree::Timestamp;
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// `i_flags`: directory has a hash index.
pub(crate) const EXT4_INDEX_FL: u32 = 0x1000;
/// `i_flags`: file uses extents.
pub(crate) const EXT4_EXTENTS_FL: u32 = 0x80000;
/// `i_extra_isize` written (covers up to i_projid).
pub(crate) const EXTRA_ISIZE: u16 = 32;
/// Bytes available for in-inode xattrs after the extra fields.
pub(crate) const INLINE_XATTR_SPACE: usize = 256 - 128 - EXTRA_ISIZE as usize;

/// The on-disk inode.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(crate) struct RawInode {
    pub i_mode: U16,
    pub i_uid: U16,
    pub i_size_lo: U32,
    pub i_atime: U32,
    pub i_ctime: U32,
    pub i_mtime: U32,
    pub i_dtime: U32,
    pub i_gid: U16,
    pub i_links_count: U16,
    pub i_blocks_lo: U32,
    pub i_flags: U32,
    pub l_i_version: U32,
    pub i_block: [u8; 60],
    pub i_generation: U32,
    pub i_file_acl_lo: U32,
    pub i_size_high: U32,
    pub i_obso_faddr: U32,
    pub l_i_blocks_high: U16,
    pub l_i_file_acl_high: U16,
    pub l_i_uid_high: U16,
    pub l_i_gid_high: U16,
    pub l_i_checksum_lo: U16,
    pub l_i_reserved: U16,
    pub i_extra_isize: U16,
    pub i_checksum_hi: U16,
    pub i_ctime_extra: U32,
    pub i_mtime_extra: U32,
    pub i_atime_extra: U32,
    pub i_crtime: U32,
    pub i_crtime_extra: U32,
    pub i_version_hi: U32,
    pub i_projid: U32,
    pub i_xattr: [u8; INLINE_XATTR_SPACE],
}

const _: () = assert!(core::mem::size_of::<RawInode>() == 256);

/// Encodes a timestamp as (32-bit seconds, extra word).
pub(crate) fn encode_time(t: Timestamp) -> (u32, u32) {
    // Representable range: [-2^31, 2^34 - 2^31); clamp outside it.
    let secs = t.secs.clamp(-(1i64 << 31), (1i64 << 34) - (1i64 << 31) - 1);
    let lo = secs as u32; // truncation to the low 32 bits is the encoding
    let epoch = ((secs - i64::from(lo as i32)) >> 32) as u32 & 3;
    (lo, (t.nanos.min(999_999_999) << 2) | epoch)
}

/// Everything needed to produce one inode's bytes.
#[derive(Debug, Clone)]
pub(crate) struct InodeFields {
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub atime: Timestamp,
    pub ctime: Timestamp,
    pub mtime: Timestamp,
    pub crtime: Timestamp,
    pub links: u16,
    /// In 512-byte units.
    pub blocks_512: u64,
    pub flags: u32,
    pub i_block: [u8; 60],
    pub file_acl: u64,
    pub xattr_inline: [u8; INLINE_XATTR_SPACE],
}

impl InodeFields {
    /// Encodes the inode with its checksum.
    pub(crate) fn to_raw(&self, fs_seed: u32, ino: u32) -> RawInode {
        let (atime, atime_x) = encode_time(self.atime);
        let (ctime, ctime_x) = encode_time(self.ctime);
        let (mtime, mtime_x) = encode_time(self.mtime);
        let (crtime, crtime_x) = encode_time(self.crtime);
        let mut r = RawInode {
            i_mode: U16::new(self.mode),
            i_uid: U16::new(self.uid as u16),
            i_size_lo: U32::new(self.size as u32),
            i_atime: U32::new(atime),
            i_ctime: U32::new(ctime),
            i_mtime: U32::new(mtime),
            i_dtime: U32::new(0),
            i_gid: U16::new(self.gid as u16),
            i_links_count: U16::new(self.links),
            i_blocks_lo: U32::new(self.blocks_512 as u32),
            i_flags: U32::new(self.flags),
            l_i_version: U32::new(0),
            i_block: self.i_block,
            i_generation: U32::new(0),
            i_file_acl_lo: U32::new(self.file_acl as u32),
            i_size_high: U32::new((self.size >> 32) as u32),
            i_obso_faddr: U32::new(0),
            l_i_blocks_high: U16::new((self.blocks_512 >> 32) as u16),
            l_i_file_acl_high: U16::new((self.file_acl >> 32) as u16),
            l_i_uid_high: U16::new((self.uid >> 16) as u16),
            l_i_gid_high: U16::new((self.gid >> 16) as u16),
            l_i_checksum_lo: U16::new(0),
            l_i_reserved: U16::new(0),
            i_extra_isize: U16::new(EXTRA_ISIZE),
            i_checksum_hi: U16::new(0),
            i_ctime_extra: U32::new(ctime_x),
            i_mtime_extra: U32::new(mtime_x),
            i_atime_extra: U32::new(atime_x),
            i_crtime: U32::new(crtime),
            i_crtime_extra: U32::new(crtime_x),
            i_version_hi: U32::new(0),
            i_projid: U32::new(0),
            i_xattr: self.xattr_inline,
        };
        seal(&mut r, fs_seed, ino);
        r
    }
}

/// An inode with nothing but `i_extra_isize` (what mke2fs writes for the
/// unused reserved inodes), with its checksum.
pub(crate) fn empty_raw(fs_seed: u32, ino: u32) -> RawInode {
    let mut r = RawInode::new_zeroed();
    r.i_extra_isize = U16::new(EXTRA_ISIZE);
    seal(&mut r, fs_seed, ino);
    r
}

/// Sets both checksum halves.
fn seal(r: &mut RawInode, fs_seed: u32, ino: u32) {
    r.l_i_checksum_lo = U16::new(0);
    r.i_checksum_hi = U16::new(0);
    let seed = inode_seed(fs_seed, ino, r.i_generation.get());
    let c = Crc32c::new(seed).update(r.as_bytes()).value();
    r.l_i_checksum_lo = U16::new((c & 0xFFFF) as u16);
    r.i_checksum_hi = U16::new((c >> 16) as u16);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_encoding() {
        // Table: (secs, nanos) -> (lo, extra)
        let cases = [
            ((0i64, 0u32), (0u32, 0u32)),
            ((1, 5), (1, 20)),
            ((-1, 0), (0xFFFF_FFFF, 0)),
            ((0x7FFF_FFFF, 0), (0x7FFF_FFFF, 0)),
            // 2038-01-19 + 1 s: needs epoch bit 1.
            ((0x8000_0000, 0), (0x8000_0000, 1)),
            ((0x1_0000_0000, 999_999_999), (0, (999_999_999 << 2) | 1)),
        ];
        for ((s, n), want) in cases {
            assert_eq!(encode_time(Timestamp::new(s, n)), want, "{s}");
        }
    }
}
