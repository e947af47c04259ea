//! The few ext4 superblock fields read directly, and the adapter that lets
//! `ext4-view` read a partition of a disk.
//!
//! Superblock (kernel Documentation/filesystems/ext4/super.rst), at byte
//! 1024 of the partition, little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0x04 | 4 | `s_blocks_count_lo` |
//! | 0x08 | 4 | `s_r_blocks_count_lo` |
//! | 0x0C | 4 | `s_free_blocks_count_lo` |
//! | 0x18 | 4 | `s_log_block_size` (block size = 1024 << n) |
//! | 0x38 | 2 | `s_magic` (0xEF53) |
//! | 0x60 | 4 | `s_feature_incompat` (0x80 = 64bit) |
//! | 0x78 | 16 | `s_volume_name` |
//! | 0x150 | 4 | `s_blocks_count_hi` (64bit only) |
//! | 0x154 | 4 | `s_r_blocks_count_hi` (64bit only) |
//! | 0x158 | 4 | `s_free_blocks_count_hi` (64bit only) |

use std::rc::Rc;

use kiln_units::ReadAt;

use crate::{BasePartition, Error};

/// Byte offset of the superblock in the partition.
const EXT4_SB_OFFSET: u64 = 1024;
/// `s_magic`.
const EXT4_MAGIC: u16 = 0xEF53;
/// `INCOMPAT_64BIT`.
const EXT4_FEATURE_INCOMPAT_64BIT: u32 = 0x80;
/// Largest block size accepted (64 KiB, `s_log_block_size` <= 6).
const EXT4_MAX_LOG_BLOCK: u32 = 6;

/// Superblock facts of an ext4 filesystem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ext4Super {
    /// Volume label.
    pub label: String,
    /// Block size in bytes.
    pub block_size: u64,
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks (as recorded in the superblock).
    pub free_blocks: u64,
    /// Blocks reserved for root.
    pub reserved_blocks: u64,
}

impl Ext4Super {
    /// Filesystem size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.blocks.saturating_mul(self.block_size)
    }
    /// Free space in bytes (free blocks × block size).
    pub fn free_bytes(&self) -> u64 {
        self.free_blocks.saturating_mul(self.block_size)
    }

    /// Reads the superblock at byte 1024 of `region`; `Ok(None)` when the
    /// magic is not there.
    ///
    /// # Errors
    /// The read error.
    pub fn read<R: ReadAt + ?Sized>(region: &R) -> std::io::Result<Option<Self>> {
        let mut sb = [0u8; 1024];
        region.read_exact_at(&mut sb, EXT4_SB_OFFSET)?;
        let u32_at = |o: usize| {
            sb.get(o..o + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_le_bytes)
        };
        let magic = sb
            .get(0x38..0x3A)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u16::from_le_bytes);
        let log = u32_at(0x18);
        if magic != EXT4_MAGIC || log > EXT4_MAX_LOG_BLOCK {
            return Ok(None);
        }
        let wide = u32_at(0x60) & EXT4_FEATURE_INCOMPAT_64BIT != 0;
        let join = |lo: usize, hi: usize| {
            u64::from(u32_at(lo)) | if wide { u64::from(u32_at(hi)) << 32 } else { 0 }
        };
        let name = sb.get(0x78..0x88).unwrap_or_default();
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        Ok(Some(Self {
            label: String::from_utf8_lossy(name.get(..end).unwrap_or_default()).into_owned(),
            block_size: 1024u64 << log,
            blocks: join(0x04, 0x150),
            free_blocks: join(0x0C, 0x158),
            reserved_blocks: join(0x08, 0x154),
        }))
    }
}

/// A partition of a shared disk as an `ext4-view` source.
struct Region<R: ?Sized> {
    disk: Rc<R>,
    start: u64,
    len: u64,
}

impl<R: ReadAt + ?Sized> ext4_view::Ext4Read for Region<R> {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        start_byte
            .checked_add(dst.len() as u64)
            .filter(|&e| e <= self.len)
            .ok_or("read past the end of the partition")?;
        let at = self
            .start
            .checked_add(start_byte)
            .ok_or("offset overflow")?;
        self.disk
            .read_exact_at(dst, at)
            .map_err(|e| Box::new(e) as _)
    }
}

/// An ext4 partition opened with `ext4-view`, with what error messages
/// need to name it.
pub(crate) struct Ext4Part {
    pub(crate) fs: ext4_view::Ext4,
    pub(crate) number: u32,
    pub(crate) label: String,
}

impl Ext4Part {
    pub(crate) fn open<R: ReadAt + ?Sized + 'static>(
        disk: &Rc<R>,
        part: &BasePartition,
    ) -> Result<Self, Error> {
        let label = part.display_label();
        let fs = ext4_view::Ext4::load(Box::new(Region {
            disk: Rc::clone(disk),
            start: part.start_bytes,
            len: part.size_bytes,
        }))
        .map_err(|source| Error::Ext4 {
            partition: part.number,
            label: label.clone(),
            file: "/".into(),
            source,
        })?;
        Ok(Self {
            fs,
            number: part.number,
            label,
        })
    }

    pub(crate) fn err(&self, file: &str) -> impl FnOnce(ext4_view::Ext4Error) -> Error + '_ {
        let file = file.to_string();
        move |source| Error::Ext4 {
            partition: self.number,
            label: self.label.clone(),
            file,
            source,
        }
    }

    /// Whether `path` exists (following symlinks).
    pub(crate) fn exists(&self, path: &str) -> Result<bool, Error> {
        self.fs.exists(path).map_err(self.err(path))
    }

    /// Reads a small file (following symlinks), refusing more than
    /// `limit` bytes.
    pub(crate) fn read_small(&self, path: &str, limit: u64) -> Result<Vec<u8>, Error> {
        let md = self.fs.metadata(path).map_err(self.err(path))?;
        if md.len() > limit {
            return Err(Error::TooLarge {
                partition: self.number,
                label: self.label.clone(),
                file: path.into(),
                size_bytes: md.len(),
                limit_bytes: limit,
            });
        }
        self.fs.read(path).map_err(self.err(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_fields() {
        let mut d = vec![0u8; 4096];
        let sb = 1024;
        d[sb + 0x04..sb + 0x08].copy_from_slice(&1000u32.to_le_bytes());
        d[sb + 0x0C..sb + 0x10].copy_from_slice(&600u32.to_le_bytes());
        d[sb + 0x18..sb + 0x1C].copy_from_slice(&2u32.to_le_bytes());
        d[sb + 0x38..sb + 0x3A].copy_from_slice(&0xEF53u16.to_le_bytes());
        d[sb + 0x78..sb + 0x82].copy_from_slice(b"resin-data");
        // hi words are ignored without the 64bit feature...
        d[sb + 0x158..sb + 0x15C].copy_from_slice(&1u32.to_le_bytes());
        let s = Ext4Super::read(&d).unwrap().unwrap();
        assert_eq!(s.label, "resin-data");
        assert_eq!(s.block_size, 4096);
        assert_eq!((s.blocks, s.free_blocks), (1000, 600));
        assert_eq!(s.free_bytes(), 600 * 4096);
        // ...and used with it.
        d[sb + 0x60..sb + 0x64].copy_from_slice(&0x80u32.to_le_bytes());
        let s = Ext4Super::read(&d).unwrap().unwrap();
        assert_eq!(s.free_blocks, (1 << 32) + 600);
        d[sb + 0x38] = 0;
        assert_eq!(Ext4Super::read(&d).unwrap(), None);
    }
}
