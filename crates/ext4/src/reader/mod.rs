//! Reading an existing ext4 filesystem (a base image's data partition)
//! as a [`kiln_tree`] source.
//!
//! Spec: kernel `Documentation/filesystems/ext4/` — `super.rst`,
//! `group_descr.rst`, `inodes.rst`, `ifork.rst` (extent trees and the
//! ext2/3 block map), `directory.rst`, `attributes.rst`.
//!
//! What the reader decodes (all offsets little-endian):
//!
//! | structure         | where                                    | fields used |
//! |-------------------|------------------------------------------|-------------|
//! | superblock        | byte 1024, 1024 bytes                    | 0x00 inodes, 0x04/0x150 blocks, 0x0C/0x158 free blocks, 0x10 free inodes, 0x14 first data block, 0x18 log block size, 0x20 blocks/group, 0x28 inodes/group, 0x38 magic, 0x4C rev, 0x58 inode size, 0x5C..0x64 features, 0x68 uuid, 0x78 label, 0xFE desc size, 0x104 first meta bg, 0x3FC crc32c |
//! | group descriptor  | block after the superblock (meta_bg: first block of each meta group) | 0x08/0x28 inode table |
//! | inode             | inode table + index × inode size         | 0x00 mode, 0x02/0x78 uid, 0x04/0x6C size, 0x08 atime, 0x0C ctime, 0x10 mtime, 0x18/0x7A gid, 0x1A links, 0x20 flags, 0x28 i_block, 0x68/0x76 xattr block, 0x80 extra isize, 0x84 ctime_extra, 0x88 mtime_extra, 0x8C atime_extra, 0x90 crtime, 0x94 crtime_extra, 0x80+extra: in-inode xattrs |
//! | extent node       | i_block or a tree block                  | header 0x0 magic F30A, 0x2 entries, 0x6 depth; entries of 12 bytes |
//! | block map         | i_block[0..12] direct, [12] [13] [14] indirect | 32-bit block numbers, 0 = hole |
//! | directory entry   | directory blocks                         | 0x0 inode, 0x4 rec_len, 0x6 name_len, 0x8 name |
//! | xattr header      | in-inode magic / block 0x00 magic, entries at 0x20 | entry: 0x0 name_len, 0x1 index, 0x2 value offset, 0x4 value inode, 0x8 value size |
//!
//! With `metadata_csum`, the superblock, inode, extent-block,
//! directory-leaf and xattr-block checksums are verified (see
//! `checksum.rs` for the seeds). Every count, offset and block number read
//! from the input is checked before it is used; a malformed filesystem
//! gives [`Error::Corrupt`],
//! never a panic. File contents are streamed extent by extent (unwritten
//! extents and holes read as zeros), so memory stays bounded whatever the
//! file sizes.

mod file;
mod walk;
mod xattr;

use crate::checksum::Crc32c;
use crate::dir::{RawDirEntry, RawDirTail};
use crate::inode::RawInode;
use crate::superblock::{
    RawSuperblock, EXT4_SUPER_MAGIC, INCOMPAT_64BIT, INCOMPAT_CASEFOLD, INCOMPAT_CSUM_SEED,
    INCOMPAT_EA_INODE, INCOMPAT_EXTENTS, INCOMPAT_FILETYPE, INCOMPAT_FLEX_BG, INCOMPAT_LARGEDIR,
    INCOMPAT_META_BG, INCOMPAT_MMP, RO_COMPAT_METADATA_CSUM, RO_COMPAT_SPARSE_SUPER,
};
use crate::Error;
use core::mem::{offset_of, size_of};
use kiln_tree::{Timestamp, TreePath};
use kiln_units::ReadAt;
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

pub use file::FileReader;
pub use walk::{FeedReport, Visit};

/// `s_feature_incompat` bits the reader understands: filetype, extent,
/// 64bit, mmp, flex_bg, csum_seed, largedir, meta_bg, dirdata-free
/// casefold and the xattr-inode flag (refused per attribute if used).
const INCOMPAT_SUPPORTED: u32 = INCOMPAT_FILETYPE
    | INCOMPAT_META_BG
    | INCOMPAT_EXTENTS
    | INCOMPAT_64BIT
    | INCOMPAT_MMP
    | INCOMPAT_FLEX_BG
    | INCOMPAT_EA_INODE
    | INCOMPAT_CSUM_SEED
    | INCOMPAT_LARGEDIR
    | INCOMPAT_CASEFOLD;
/// Named unsupported `s_feature_incompat` bits.
const INCOMPAT_NAMES: [(u32, &str); 7] = [
    (0x1, "compression"),
    (0x4, "needs_recovery (unclean journal: run e2fsck first)"),
    (0x8, "journal_dev"),
    (0x1000, "dirdata"),
    (0x8000, "inline_data"),
    (0x10000, "encrypt"),
    (0x40000, "unknown incompat feature"),
];
/// Root directory inode number.
pub(crate) const ROOT_INO: u32 = 2;
/// Largest inode size accepted (the spec allows up to the block size;
/// mke2fs never goes past 1024).
const MAX_INODE_SIZE: u32 = 1024;

/// Facts about an existing filesystem (for `kiln inspect` and for sizing
/// the filesystem that replaces it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsInfo {
    /// Volume label (`s_volume_name`, up to 16 bytes, NULs trimmed).
    pub label: String,
    /// Filesystem UUID (`s_uuid`), as stored.
    pub uuid: [u8; 16],
    /// Block size in bytes.
    pub block_size: u32,
    /// Blocks in the filesystem.
    pub blocks_count: u64,
    /// Free blocks, as the superblock counts them.
    pub free_blocks: u64,
    /// Inodes in the filesystem.
    pub inodes_count: u32,
    /// Free inodes, as the superblock counts them.
    pub free_inodes: u32,
    /// Inode size in bytes.
    pub inode_size: u32,
}

impl FsInfo {
    /// Filesystem size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.blocks_count.saturating_mul(u64::from(self.block_size))
    }
    /// Free space in bytes (free blocks × block size).
    pub fn free_bytes(&self) -> u64 {
        self.free_blocks.saturating_mul(u64::from(self.block_size))
    }
    /// Used space in bytes.
    pub fn used_bytes(&self) -> u64 {
        self.size_bytes().saturating_sub(self.free_bytes())
    }
}

/// What kind of inode a directory entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Character device.
    CharDev,
    /// Block device.
    BlockDev,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
}

impl NodeKind {
    fn from_mode(mode: u16, ino: u32) -> Result<Self, Error> {
        Ok(match mode & 0o170000 {
            0o100000 => NodeKind::File,
            0o040000 => NodeKind::Dir,
            0o120000 => NodeKind::Symlink,
            0o020000 => NodeKind::CharDev,
            0o060000 => NodeKind::BlockDev,
            0o010000 => NodeKind::Fifo,
            0o140000 => NodeKind::Socket,
            _ => {
                return Err(Error::Corrupt {
                    inode: ino,
                    reason: "unknown file type in i_mode",
                })
            }
        })
    }
}

/// One entry of a directory listing ([`Ext4Reader::list_dir`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name (raw bytes).
    pub name: Vec<u8>,
    /// Its inode number.
    pub ino: u32,
    /// Its kind (from the inode, not the entry's file-type hint).
    pub kind: NodeKind,
}

/// A decoded inode.
#[derive(Debug, Clone)]
pub(crate) struct Inode {
    pub ino: u32,
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub links: u16,
    pub flags: u32,
    pub i_block: [u8; 60],
    pub file_acl: u64,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub crtime: Timestamp,
    /// In-inode xattr area (after `i_extra_isize`), possibly empty.
    pub xattr_area: Vec<u8>,
    /// Seed of this inode's extent and directory block checksums
    /// (`metadata_csum`), `None` without the feature.
    pub csum_seed: Option<u32>,
}

impl Inode {
    pub(crate) fn kind(&self) -> Result<NodeKind, Error> {
        NodeKind::from_mode(self.mode, self.ino)
    }
}

/// An existing ext4 filesystem opened for reading from any [`ReadAt`]
/// region (a partition window of a base image, a file, a buffer).
///
/// ```
/// use kiln_ext4::{Ext4Options, Ext4Reader, Ext4Writer};
/// use kiln_tree::{Content, Entry, EntryKind, Metadata, Timestamp, TreePath, TreeSink};
/// let mut img = Vec::new();
/// let mut w = Ext4Writer::new(&mut img, Ext4Options::new(8 << 20).label("data")).unwrap();
/// let meta = Metadata::new(0o644, Timestamp::new(1_700_000_000, 0));
/// let e = Entry::new(TreePath::parse(b"etc/hostname").unwrap(), EntryKind::File, meta);
/// w.add(&e, Content::bytes(b"kiln\n")).unwrap();
/// w.finish().unwrap();
/// let fs = Ext4Reader::open(&img).unwrap();
/// assert_eq!(fs.info().label, "data");
/// let p = TreePath::parse(b"etc/hostname").unwrap();
/// assert_eq!(fs.read_file(&p, 1024).unwrap().unwrap(), b"kiln\n");
/// ```
#[derive(Debug)]
pub struct Ext4Reader<R> {
    src: R,
    info: FsInfo,
    block_size: u64,
    inodes_per_group: u32,
    inode_size: u32,
    filetype: bool,
    /// `metadata_csum` checksum seed, when the feature is on.
    csum_seed: Option<u32>,
    /// Inode table start block of each group.
    inode_tables: Vec<u64>,
}

fn le16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}
fn le32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

/// Decodes a 32-bit seconds field with its `_extra` word (epoch bits and
/// nanoseconds); `extra` is `None` when the inode is too small to hold it.
pub(crate) fn decode_time(lo: u32, extra: Option<u32>) -> Timestamp {
    let base = i64::from(lo as i32);
    match extra {
        Some(x) => {
            let epoch = i64::from(x & 3);
            Timestamp::new(base + (epoch << 32), x >> 2)
        }
        None => Timestamp::new(base, 0),
    }
}

fn corrupt(inode: u32, reason: &'static str) -> Error {
    Error::Corrupt { inode, reason }
}

impl<R: ReadAt> Ext4Reader<R> {
    /// Opens the filesystem: checks the superblock (magic, checksum when
    /// `metadata_csum` is on, geometry against the region size) and reads
    /// the group descriptors' inode-table locations. Features the reader
    /// cannot handle (inline_data, encryption, an unrecovered journal...)
    /// are refused with [`Error::Unsupported`].
    pub fn open(src: R) -> Result<Self, Error> {
        let region = src.size().map_err(Error::read_io(0))?;
        let mut raw = [0u8; 1024];
        if region < 2048 {
            return Err(corrupt(0, "region too small for an ext4 superblock"));
        }
        src.read_exact_at(&mut raw, 1024)
            .map_err(Error::read_io(1024))?;
        // OK: the buffer is exactly the struct's size.
        let sb = RawSuperblock::read_from_bytes(&raw).map_err(|_| corrupt(0, "superblock size"))?;
        check_superblock(&sb, &raw)?;
        let g = Geometry::of(&sb, region)?;
        let inode_tables = read_inode_tables(&src, &sb, &g)?;
        let label_end = sb
            .s_volume_name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(sb.s_volume_name.len());
        let label =
            String::from_utf8_lossy(sb.s_volume_name.get(..label_end).unwrap_or(&[])).into_owned();
        let info = FsInfo {
            label,
            uuid: sb.s_uuid,
            block_size: u32::try_from(g.block_size).unwrap_or(u32::MAX),
            blocks_count: g.blocks_count,
            free_blocks: g.free_blocks,
            inodes_count: sb.s_inodes_count.get(),
            free_inodes: sb.s_free_inodes_count.get(),
            inode_size: g.inode_size,
        };
        let csum_seed = (g.ro & RO_COMPAT_METADATA_CSUM != 0).then(|| {
            if g.incompat & INCOMPAT_CSUM_SEED != 0 {
                sb.s_checksum_seed.get()
            } else {
                crate::checksum::fs_seed(&sb.s_uuid)
            }
        });
        Ok(Self {
            src,
            info,
            csum_seed,
            block_size: g.block_size,
            inodes_per_group: g.ipg,
            inode_size: g.inode_size,
            filetype: g.incompat & INCOMPAT_FILETYPE != 0,
            inode_tables,
        })
    }

    /// Label, UUID, sizes and free space.
    pub fn info(&self) -> &FsInfo {
        &self.info
    }

    /// Reads `buf.len()` bytes at byte `offset` of the filesystem.
    pub(crate) fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), Error> {
        self.src
            .read_exact_at(buf, offset)
            .map_err(Error::read_io(offset))
    }

    /// Reads one whole block, checking that it lies inside the filesystem.
    pub(crate) fn read_block(&self, block: u64, ino: u32, buf: &mut [u8]) -> Result<(), Error> {
        if block >= self.info.blocks_count || block == 0 {
            return Err(corrupt(ino, "block number outside the filesystem"));
        }
        self.read_at(buf, block * self.block_size)
    }

    /// The filesystem checksum seed when `metadata_csum` is on.
    pub(crate) fn fs_csum_seed(&self) -> Option<u32> {
        self.csum_seed
    }

    pub(crate) fn block_size(&self) -> u64 {
        self.block_size
    }

    /// Reads and decodes inode `ino`.
    pub(crate) fn inode(&self, ino: u32) -> Result<Inode, Error> {
        if ino == 0 || ino > self.info.inodes_count {
            return Err(corrupt(ino, "inode number out of range"));
        }
        let idx = ino - 1;
        let group = usize::try_from(idx / self.inodes_per_group).unwrap_or(usize::MAX);
        let table = *self
            .inode_tables
            .get(group)
            .ok_or_else(|| corrupt(ino, "inode group out of range"))?;
        let off = table * self.block_size
            + u64::from(idx % self.inodes_per_group) * u64::from(self.inode_size);
        let mut b = vec![0u8; self.inode_size as usize];
        self.read_at(&mut b, off)?;
        if let Some(seed) = self.csum_seed {
            self.check_inode_csum(seed, ino, &b)?;
        }
        // Decoded through the writer's struct; a 128-byte inode leaves
        // the large-inode fields zero (and `i_extra_isize` 0 covers none).
        let mut raw = RawInode::new_zeroed();
        let n = b.len().min(size_of::<RawInode>());
        raw.as_mut_bytes()[..n].copy_from_slice(&b[..n]);
        let extra_isize = if self.inode_size > 128 {
            u32::from(raw.i_extra_isize.get())
        } else {
            0
        };
        if 128 + extra_isize > self.inode_size || extra_isize % 4 != 0 {
            return Err(corrupt(ino, "i_extra_isize beyond the inode"));
        }
        // An `_extra` field is present when i_extra_isize covers it.
        let extra = |at: usize, v: U32| -> Option<u32> {
            (at + 4 <= 128 + extra_isize as usize).then(|| v.get())
        };
        let ctime = decode_time(
            raw.i_ctime.get(),
            extra(offset_of!(RawInode, i_ctime_extra), raw.i_ctime_extra),
        );
        let mtime = decode_time(
            raw.i_mtime.get(),
            extra(offset_of!(RawInode, i_mtime_extra), raw.i_mtime_extra),
        );
        let atime = decode_time(
            raw.i_atime.get(),
            extra(offset_of!(RawInode, i_atime_extra), raw.i_atime_extra),
        );
        let crtime = match extra(offset_of!(RawInode, i_crtime), raw.i_crtime) {
            Some(lo) => decode_time(
                lo,
                extra(offset_of!(RawInode, i_crtime_extra), raw.i_crtime_extra),
            ),
            None => ctime,
        };
        let xattr_area = b.get(128 + extra_isize as usize..).unwrap_or(&[]).to_vec();
        Ok(Inode {
            ino,
            mode: raw.i_mode.get(),
            uid: u32::from(raw.i_uid.get()) | (u32::from(raw.l_i_uid_high.get()) << 16),
            gid: u32::from(raw.i_gid.get()) | (u32::from(raw.l_i_gid_high.get()) << 16),
            size: u64::from(raw.i_size_lo.get()) | (u64::from(raw.i_size_high.get()) << 32),
            links: raw.i_links_count.get(),
            flags: raw.i_flags.get(),
            i_block: raw.i_block,
            file_acl: u64::from(raw.i_file_acl_lo.get())
                | (u64::from(raw.l_i_file_acl_high.get()) << 32),
            atime,
            mtime,
            ctime,
            crtime,
            xattr_area,
            csum_seed: self
                .csum_seed
                .map(|fs| crate::checksum::inode_seed(fs, ino, raw.i_generation.get())),
        })
    }

    /// Verifies an inode's crc32c (`metadata_csum`): seeded with the fs
    /// seed, the inode number and `i_generation`, over the whole inode
    /// with `l_i_checksum_lo` (0x7C) and, when `i_extra_isize` covers it,
    /// `i_checksum_hi` (0x82) zeroed; only the low 16 bits are stored
    /// when the high half is not.
    fn check_inode_csum(&self, seed: u32, ino: u32, b: &[u8]) -> Result<(), Error> {
        const LO: usize = offset_of!(RawInode, l_i_checksum_lo);
        const HI: usize = offset_of!(RawInode, i_checksum_hi);
        const EXTRA: usize = offset_of!(RawInode, i_extra_isize);
        const GEN: usize = offset_of!(RawInode, i_generation);
        let has_hi = b.len() > 128 && u32::from(le16(b, EXTRA)) >= 4;
        let stored = u32::from(le16(b, LO))
            | if has_hi {
                u32::from(le16(b, HI)) << 16
            } else {
                0
            };
        let mut z = b.to_vec();
        if let Some(x) = z.get_mut(LO..LO + 2) {
            x.fill(0);
        }
        if has_hi {
            if let Some(x) = z.get_mut(HI..HI + 2) {
                x.fill(0);
            }
        }
        let c = Crc32c::new(seed)
            .update_u32(ino)
            .update_u32(le32(b, GEN))
            .update(&z)
            .value();
        let c = if has_hi { c } else { c & 0xFFFF };
        if c != stored {
            return Err(corrupt(ino, "inode checksum mismatch"));
        }
        Ok(())
    }

    /// Lists a directory inode: every live entry except `.` and `..`,
    /// sorted by name.
    pub(crate) fn dir_entries(&self, dir: &Inode) -> Result<Vec<(Vec<u8>, u32)>, Error> {
        let ino = dir.ino;
        let mut out = Vec::new();
        let mut r = FileReader::new(self, dir)?;
        // Directories have no holes: a size beyond the mapped blocks is
        // corrupt (and would otherwise make us scan zeros).
        if r.written_bytes() < dir.size {
            return Err(corrupt(ino, "directory size beyond its blocks"));
        }
        let bs = usize::try_from(self.block_size).unwrap_or(4096);
        let mut block = vec![0u8; bs];
        let blocks = dir.size.div_ceil(self.block_size);
        for _ in 0..blocks {
            std::io::Read::read_exact(&mut r, &mut block).map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    corrupt(ino, "directory shorter than its size")
                }
                _ => Error::ReadIo {
                    offset: 0,
                    source: e,
                },
            })?;
            check_dir_tail(dir, &block)?;
            let mut at = 0usize;
            while let Ok((e, _)) = RawDirEntry::ref_from_prefix(&block[at..]) {
                let child = e.inode.get();
                let mut rec_len = usize::from(e.rec_len.get());
                if bs == 65536 && (rec_len == 0 || rec_len == 65535) {
                    rec_len = 65536;
                }
                let name_len = if self.filetype {
                    usize::from(e.name_len)
                } else {
                    usize::from(u16::from_le_bytes([e.name_len, e.file_type]))
                };
                if rec_len < 8 || rec_len % 4 != 0 || at + rec_len > bs || 8 + name_len > rec_len {
                    return Err(corrupt(ino, "malformed directory entry"));
                }
                if child != 0 && name_len > 0 {
                    let name = &block[at + 8..at + 8 + name_len];
                    if name != b"." && name != b".." {
                        if name.contains(&b'/') || name.contains(&0) {
                            return Err(corrupt(ino, "directory entry name contains '/' or NUL"));
                        }
                        out.push((name.to_vec(), child));
                    }
                }
                at += rec_len;
            }
        }
        out.sort();
        if out.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(corrupt(ino, "duplicate name in directory"));
        }
        Ok(out)
    }

    /// Follows `path` from the root (symlinks are not followed); `None`
    /// when a component does not exist.
    pub fn lookup(&self, path: &TreePath) -> Result<Option<u32>, Error> {
        let mut ino = ROOT_INO;
        for comp in path.components() {
            let node = self.inode(ino)?;
            if node.kind()? != NodeKind::Dir {
                return Ok(None);
            }
            match self
                .dir_entries(&node)?
                .into_iter()
                .find(|(n, _)| n.as_slice() == comp)
            {
                Some((_, child)) => ino = child,
                None => return Ok(None),
            }
        }
        Ok(Some(ino))
    }

    /// The kind of what `path` names, `None` if it does not exist.
    pub fn kind_of(&self, path: &TreePath) -> Result<Option<NodeKind>, Error> {
        match self.lookup(path)? {
            Some(ino) => Ok(Some(self.inode(ino)?.kind()?)),
            None => Ok(None),
        }
    }

    /// Lists the directory at `path`, sorted by name; `None` if it does
    /// not exist, [`Error::NotFound`] if it is not a directory.
    pub fn list_dir(&self, path: &TreePath) -> Result<Option<Vec<DirEntry>>, Error> {
        let Some(ino) = self.lookup(path)? else {
            return Ok(None);
        };
        let node = self.inode(ino)?;
        if node.kind()? != NodeKind::Dir {
            return Err(Error::NotFound {
                path: String::from_utf8_lossy(&path.to_bytes()).into_owned(),
                reason: "not a directory",
            });
        }
        let mut out = Vec::new();
        for (name, child) in self.dir_entries(&node)? {
            let kind = self.inode(child)?.kind()?;
            out.push(DirEntry {
                name,
                ino: child,
                kind,
            });
        }
        Ok(Some(out))
    }

    /// Reads the regular file at `path` into memory if it is at most
    /// `max_bytes` long (for small files such as `repositories.json`);
    /// `None` if it does not exist, [`Error::NotFound`] if it is not a
    /// regular file or is larger.
    pub fn read_file(&self, path: &TreePath, max_bytes: u64) -> Result<Option<Vec<u8>>, Error> {
        let Some(ino) = self.lookup(path)? else {
            return Ok(None);
        };
        let node = self.inode(ino)?;
        let name = || String::from_utf8_lossy(&path.to_bytes()).into_owned();
        if node.kind()? != NodeKind::File {
            return Err(Error::NotFound {
                path: name(),
                reason: "not a regular file",
            });
        }
        if node.size > max_bytes {
            return Err(Error::NotFound {
                path: name(),
                reason: "file larger than the limit asked for",
            });
        }
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut FileReader::new(self, &node)?, &mut out)
            .map_err(|source| Error::ReadIo { offset: 0, source })?;
        Ok(Some(out))
    }

    /// The target of the symlink at `path`; `None` if it does not exist,
    /// [`Error::NotFound`] if it is not a symlink.
    pub fn read_link(&self, path: &TreePath) -> Result<Option<Vec<u8>>, Error> {
        let Some(ino) = self.lookup(path)? else {
            return Ok(None);
        };
        let node = self.inode(ino)?;
        if node.kind()? != NodeKind::Symlink {
            return Err(Error::NotFound {
                path: String::from_utf8_lossy(&path.to_bytes()).into_owned(),
                reason: "not a symlink",
            });
        }
        self.symlink_target(&node).map(Some)
    }

    /// A symlink inode's target: in `i_block` (fast) or in its data block.
    pub(crate) fn symlink_target(&self, node: &Inode) -> Result<Vec<u8>, Error> {
        const EXTENTS_FL: u32 = crate::inode::EXT4_EXTENTS_FL;
        if node.size > self.block_size || node.size > 4096 {
            return Err(corrupt(node.ino, "symlink target longer than a block"));
        }
        let len = node.size as usize;
        // Fast symlink: shorter than i_block and not extent-mapped
        // (slow symlinks on an extent filesystem carry EXTENTS_FL).
        if node.flags & EXTENTS_FL == 0 && len < 60 {
            return Ok(node.i_block.get(..len).unwrap_or(&[]).to_vec());
        }
        let mut out = Vec::with_capacity(len);
        std::io::Read::read_to_end(&mut FileReader::new(self, node)?, &mut out)
            .map_err(|source| Error::ReadIo { offset: 0, source })?;
        Ok(out)
    }
}

/// Verifies a directory leaf block's checksum tail (`metadata_csum`):
/// a fake entry in the last 12 bytes (inode 0, rec_len 12, name_len 0,
/// file_type 0xDE) whose last 4 bytes are the crc32c (inode seed) of the
/// bytes before it. Blocks without that tail (htree index nodes, which
/// carry a different tail, or filesystems without the feature) pass.
fn check_dir_tail(dir: &Inode, block: &[u8]) -> Result<(), Error> {
    let Some(seed) = dir.csum_seed else {
        return Ok(());
    };
    let Ok((head, tail)) = RawDirTail::ref_from_suffix(block) else {
        return Ok(());
    };
    if !tail.is_tail() {
        return Ok(());
    }
    let c = Crc32c::new(seed).update(head).value();
    if c != tail.checksum.get() {
        return Err(corrupt(dir.ino, "directory block checksum mismatch"));
    }
    Ok(())
}

/// Whether group `g` holds a superblock backup (sparse_super: groups 0,
/// 1 and powers of 3, 5, 7; otherwise every group).
fn has_super(g: u64, ro_compat: u32) -> bool {
    if ro_compat & RO_COMPAT_SPARSE_SUPER == 0 || g <= 1 {
        return true;
    }
    [3u64, 5, 7].iter().any(|&b| {
        let mut p = b;
        while p < g {
            p = p.saturating_mul(b);
        }
        p == g
    })
}

/// The superblock's magic, checksum and incompatible features.
fn check_superblock(sb: &RawSuperblock, raw: &[u8]) -> Result<(), Error> {
    if sb.s_magic.get() != EXT4_SUPER_MAGIC {
        return Err(corrupt(0, "bad superblock magic (not ext2/3/4)"));
    }
    let ro = sb.s_feature_ro_compat.get();
    if ro & RO_COMPAT_METADATA_CSUM != 0 {
        if sb.s_checksum_type != 1 {
            return Err(corrupt(0, "unknown superblock checksum type"));
        }
        let c = Crc32c::new(!0)
            .update(raw.get(..0x3FC).unwrap_or(&[]))
            .value();
        if c != sb.s_checksum.get() {
            return Err(corrupt(0, "superblock checksum mismatch"));
        }
    }
    let incompat = sb.s_feature_incompat.get();
    for (bit, name) in INCOMPAT_NAMES {
        if incompat & bit != 0 {
            return Err(Error::Unsupported { feature: name });
        }
    }
    if incompat & !INCOMPAT_SUPPORTED != 0 {
        return Err(Error::Unsupported {
            feature: "unknown incompat feature",
        });
    }
    Ok(())
}

/// The filesystem's shape from its superblock, each field bounded.
struct Geometry {
    block_size: u64,
    blocks_count: u64,
    free_blocks: u64,
    /// `blocks_count` × `block_size`, within the region.
    fs_bytes: u64,
    bpg: u64,
    ipg: u32,
    first_data: u64,
    groups: u64,
    inode_size: u32,
    desc_size: u64,
    incompat: u32,
    ro: u32,
}

impl Geometry {
    fn of(sb: &RawSuperblock, region: u64) -> Result<Self, Error> {
        let incompat = sb.s_feature_incompat.get();
        let ro = sb.s_feature_ro_compat.get();
        let log = sb.s_log_block_size.get();
        if log > 6 {
            return Err(corrupt(0, "block size above 64 KiB"));
        }
        let block_size: u64 = 1024 << log;
        let blocks_count = u64::from(sb.s_blocks_count_lo.get())
            | if incompat & INCOMPAT_64BIT != 0 {
                u64::from(sb.s_blocks_count_hi.get()) << 32
            } else {
                0
            };
        let free_blocks = u64::from(sb.s_free_blocks_count_lo.get())
            | if incompat & INCOMPAT_64BIT != 0 {
                u64::from(sb.s_free_blocks_count_hi.get()) << 32
            } else {
                0
            };
        let fs_bytes = blocks_count
            .checked_mul(block_size)
            .ok_or_else(|| corrupt(0, "block count overflows"))?;
        if fs_bytes > region {
            return Err(corrupt(
                0,
                "filesystem larger than its region (truncated image?)",
            ));
        }
        let bpg = u64::from(sb.s_blocks_per_group.get());
        let ipg = sb.s_inodes_per_group.get();
        let first_data = u64::from(sb.s_first_data_block.get());
        if bpg == 0 || bpg > block_size * 8 || ipg == 0 || u64::from(ipg) > block_size * 8 {
            return Err(corrupt(0, "blocks or inodes per group out of range"));
        }
        if blocks_count <= first_data {
            return Err(corrupt(0, "block count below the first data block"));
        }
        let groups = (blocks_count - first_data).div_ceil(bpg);
        if u64::from(sb.s_inodes_count.get()) > groups.saturating_mul(u64::from(ipg)) {
            return Err(corrupt(0, "inode count exceeds groups × inodes per group"));
        }
        let inode_size = if sb.s_rev_level.get() == 0 {
            128
        } else {
            u32::from(sb.s_inode_size.get())
        };
        if !(128..=MAX_INODE_SIZE).contains(&inode_size) || !inode_size.is_power_of_two() {
            return Err(corrupt(0, "inode size out of range"));
        }
        let desc_size: u64 = if incompat & INCOMPAT_64BIT != 0 {
            let d = u64::from(sb.s_desc_size.get());
            if !(32..=1024).contains(&d) || !d.is_power_of_two() {
                return Err(corrupt(0, "group descriptor size out of range"));
            }
            d
        } else {
            32
        };
        Ok(Self {
            block_size,
            blocks_count,
            free_blocks,
            fs_bytes,
            bpg,
            ipg,
            first_data,
            groups,
            inode_size,
            desc_size,
            incompat,
            ro,
        })
    }
}

/// Each group's inode table block, from the group descriptors.
fn read_inode_tables<R: ReadAt>(
    src: &R,
    sb: &RawSuperblock,
    g: &Geometry,
) -> Result<Vec<u64>, Error> {
    let Geometry {
        block_size,
        blocks_count,
        fs_bytes,
        bpg,
        ipg,
        first_data,
        groups,
        inode_size,
        desc_size,
        incompat,
        ro,
        ..
    } = *g;
    let descs_per_block = block_size / desc_size;
    let meta_bg = incompat & INCOMPAT_META_BG != 0;
    let first_meta_bg = u64::from(sb.s_first_meta_bg.get());
    let mut inode_tables = Vec::new();
    let mut buf = vec![0u8; usize::try_from(desc_size).unwrap_or(64)];
    for g in 0..groups {
        let per = g / descs_per_block;
        let desc_block = if meta_bg && per >= first_meta_bg {
            // meta_bg: the descriptors of meta group `per` live in the
            // first block of that meta group's first group (after its
            // superblock backup if it has one).
            let first = per * descs_per_block;
            let sb_backup = u64::from(has_super(first, ro));
            first * bpg + first_data + sb_backup
        } else {
            first_data + 1 + per
        };
        let off = desc_block
            .checked_mul(block_size)
            .and_then(|o| o.checked_add((g % descs_per_block) * desc_size))
            .filter(|o| o.saturating_add(desc_size) <= fs_bytes)
            .ok_or_else(|| corrupt(0, "group descriptor beyond the filesystem"))?;
        src.read_exact_at(&mut buf, off)
            .map_err(Error::read_io(off))?;
        let mut table = u64::from(le32(&buf, 0x08));
        if desc_size >= 64 {
            table |= u64::from(le32(&buf, 0x28)) << 32;
        }
        let table_end = u64::from(ipg)
            .saturating_mul(u64::from(inode_size))
            .div_ceil(block_size)
            .saturating_add(table);
        if table == 0 || table_end > blocks_count {
            return Err(corrupt(0, "inode table beyond the filesystem"));
        }
        inode_tables.push(table);
    }
    Ok(inode_tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_decoding_inverts_encoding() {
        for (s, n) in [
            (0i64, 0u32),
            (1_700_000_000, 123),
            (-1, 0),
            (0x8000_0000, 5),
            (0x1_0000_0000, 999_999_999),
        ] {
            let (lo, x) = crate::inode::encode_time(Timestamp::new(s, n));
            assert_eq!(decode_time(lo, Some(x)), Timestamp::new(s, n));
        }
        assert_eq!(decode_time(5, None), Timestamp::new(5, 0));
    }

    #[test]
    fn sparse_super_groups() {
        let with: Vec<u64> = (0..30).filter(|&g| has_super(g, 1)).collect();
        assert_eq!(with, vec![0, 1, 3, 5, 7, 9, 25, 27]);
        assert!(has_super(4, 0));
    }
}
