//! [`Ext4Writer`]: streams a file tree into an ext4 filesystem.
//!
//! File data goes to its final blocks as it arrives (all-zero 4 KiB blocks
//! become holes); only compact per-inode metadata and directory name maps
//! stay in memory. [`Ext4Writer::finish`] then writes directories, extent
//! trees, inode tables, bitmaps, group descriptors, superblocks, the
//! resize inode and the journal superblock. The on-disk layout of each
//! structure is described in its own module.

use crate::alloc::Allocator;
use crate::checksum::{fs_seed, inode_seed, Crc32c};
use crate::dir::{self, ftype, DirEntryRef};
use crate::estimate::Ext4Estimator;
use crate::extent::{self, push_run, Extent};
use crate::group::{GroupDesc, BG_INODE_UNINIT, BG_INODE_ZEROED};
use crate::htree;
use crate::inode::{self, InodeFields, EXT4_EXTENTS_FL, EXT4_INDEX_FL, INLINE_XATTR_SPACE};
use crate::journal;
use crate::layout::{
    self, has_super, Layout, BLOCKS_PER_GROUP, FIRST_INO, INODES_PER_BLOCK, INODE_SIZE,
};
use crate::options::{Ext4Options, BLOCK_SIZE};
use crate::superblock::*;
use crate::xattr::{self, DiskXattr};
use crate::Error;
use kiln_tree::{Content, Entry, EntryKind, Metadata, Timestamp, TreePath, TreeSink};
use kiln_units::WriteAt;
use std::collections::HashMap;
use std::io::Read;
use zerocopy::little_endian::U32;
use zerocopy::{FromZeros, IntoBytes};

const BS: u64 = BLOCK_SIZE as u64;
const ROOT_INO: u32 = 2;
const RESIZE_INO: u32 = 7;
const JOURNAL_INO: u32 = 8;
const LOST_FOUND_INO: u32 = 11;
/// Maximum hard links per inode (`EXT4_LINK_MAX`).
const LINK_MAX: u32 = 65000;
/// Bytes read from a stream at a time.
const CHUNK: usize = 1 << 20;

/// What [`Ext4Writer::finish`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ext4Report {
    /// Filesystem size in bytes (whole groups; may be below the requested
    /// size when the last group would have been too small).
    pub size_bytes: u64,
    /// Blocks in the filesystem.
    pub blocks_count: u64,
    /// Blocks free after writing.
    pub free_blocks: u64,
    /// Inodes in the filesystem.
    pub inodes_count: u64,
    /// Inodes free after writing.
    pub free_inodes: u64,
    /// Inodes in use by the tree (not counting the reserved ones).
    pub files: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overflow {
    Space,
    Inodes,
}

#[derive(Debug)]
enum Data {
    /// Unused inode number.
    Free,
    /// Extent-mapped (regular files, slow symlinks): the built `i_block`.
    Extents {
        i_block: [u8; 60],
        /// For trees deeper than the inode (rare): everything owned, for
        /// freeing on replacement (data runs and tree blocks). Shallow
        /// trees are read back from `i_block` instead, saving memory.
        /// extent-tree blocks.
        owned: Vec<(u64, u64)>,
    },
    /// `i_block` holds the payload (fast symlink, device number).
    Inline([u8; 60]),
    /// A directory; index into `dirs`.
    Dir(u32),
    /// No blocks (empty file, fifo, socket).
    Empty,
}

#[derive(Debug)]
struct Node {
    mode: u16,
    uid: u32,
    gid: u32,
    links: u32,
    size: u64,
    /// atime, ctime, mtime, crtime.
    times: [Timestamp; 4],
    /// 4 KiB blocks owned (data, extent tree, xattr block).
    blocks: u64,
    flags: u32,
    data: Data,
    xattr_inline: Option<Box<[u8; INLINE_XATTR_SPACE]>>,
    xattr_block: u64,
}

#[derive(Debug, Default)]
struct DirNode {
    ino: u32,
    parent: u32,
    children: HashMap<Box<[u8]>, u32>,
    subdirs: u32,
}

/// Writes one ext4 filesystem into `W` (a file, a `Vec<u8>`, or a
/// [`kiln_units::SubRegion`] of a disk image).
///
/// The target must read as zeros where nothing is written (a new or
/// sparse file, a fresh region): unused inode-table blocks and the body of
/// the journal are left unwritten, like mke2fs with lazy initialisation.
///
/// ```
/// use kiln_ext4::{Ext4Options, Ext4Writer};
/// use kiln_tree::{Content, Entry, EntryKind, Metadata, Timestamp, TreePath, TreeSink};
/// let mut img: Vec<u8> = Vec::new();
/// let opts = Ext4Options::new(16 << 20).uuid([1; 16]);
/// let mut w = Ext4Writer::new(&mut img, opts).unwrap();
/// let meta = Metadata::new(0o644, Timestamp::new(1_700_000_000, 0));
/// let e = Entry::new(TreePath::parse(b"etc/hostname").unwrap(), EntryKind::File, meta);
/// w.add(&e, Content::bytes(b"kiln\n")).unwrap();
/// let report = w.finish().unwrap();
/// assert_eq!(report.files, 2); // etc (created implicitly) and etc/hostname
/// assert_eq!(img.len(), 16 << 20);
/// ```
pub struct Ext4Writer<W: WriteAt> {
    out: W,
    opts: Ext4Options,
    layout: Layout,
    fs_seed: u32,
    hash_seed: [u32; 4],
    alloc: Allocator,
    nodes: Vec<Node>,
    dirs: Vec<DirNode>,
    free_inos: Vec<u32>,
    freed: Vec<(u64, u64)>,
    estimator: Ext4Estimator,
    overflow: Option<Overflow>,
    journal_ext: Vec<Extent>,
    journal_tree: Option<extent::BuiltTree>,
    resize_dind: u64,
    buf: Vec<u8>,
}

impl<W: WriteAt> std::fmt::Debug for Ext4Writer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ext4Writer")
            .field("blocks", &self.layout.blocks_count)
            .field("inodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

fn path_str(p: &TreePath) -> String {
    String::from_utf8_lossy(&p.to_bytes()).into_owned()
}

fn meta_times(m: &Metadata) -> [Timestamp; 4] {
    [m.atime, m.ctime, m.mtime, m.crtime]
}

impl<W: WriteAt> Ext4Writer<W> {
    /// Lays out the filesystem for `opts` and reserves the journal and the
    /// resize inode's block. Nothing but the last block of the requested
    /// size is written yet (so the target covers the whole filesystem).
    ///
    /// # Errors
    /// [`Error::TooSmall`], [`Error::InvalidOptions`], [`Error::Io`].
    pub fn new(mut out: W, opts: Ext4Options) -> Result<Self, Error> {
        let layout = Layout::new(&opts)?;
        let mut alloc = Allocator::new(layout.blocks_count, &layout.metadata);
        let min_bytes = (layout::MIN_BLOCKS + layout.journal_blocks) * BS;
        let too_small = Error::TooSmall {
            size_bytes: opts.size_bytes,
            min_bytes,
        };
        if alloc.remaining() < layout.fixed_overhead() + 8 {
            return Err(too_small);
        }
        let fs_seed = fs_seed(&opts.uuid);
        // Journal first: contiguous right after the first flex group's
        // metadata.
        let mut journal_ext = Vec::new();
        let mut left = layout.journal_blocks;
        let mut logical = 0u32;
        while left > 0 {
            let (s, n) = alloc.run(left).ok_or(Error::TooSmall {
                size_bytes: opts.size_bytes,
                min_bytes,
            })?;
            push_run(&mut journal_ext, logical, s, n, false);
            logical += n as u32;
            left -= n;
        }
        let journal_tree = if layout.journal_blocks > 0 {
            let seed = inode_seed(fs_seed, JOURNAL_INO, 0);
            let t = extent::build_tree(&journal_ext, seed, || {
                alloc.one().ok_or(Error::TooSmall {
                    size_bytes: opts.size_bytes,
                    min_bytes,
                })
            })?;
            Some(t)
        } else {
            None
        };
        let resize_dind = alloc.one().ok_or(too_small)?;
        // Make the target cover the requested size.
        let last = (opts.size_bytes / BS - 1) * BS;
        out.write_all_at(&[0u8; BS as usize], last)
            .map_err(Error::io(last))?;
        let hash_seed = htree::seed_words(&opts.hash_seed);
        let mut w = Ext4Writer {
            out,
            layout,
            fs_seed,
            hash_seed,
            alloc,
            nodes: Vec::new(),
            dirs: Vec::new(),
            free_inos: Vec::new(),
            freed: Vec::new(),
            estimator: Ext4Estimator::new(),
            overflow: None,
            journal_ext,
            journal_tree,
            resize_dind,
            buf: vec![0u8; CHUNK],
            opts,
        };
        // Reserved inodes 1..=10 and lost+found (11).
        for _ in 1..FIRST_INO {
            w.nodes.push(Node::empty(Timestamp::default()));
        }
        let root_meta = w.opts.root.clone();
        w.nodes[ROOT_INO as usize - 1] = Node::new_dir(&root_meta, 0);
        w.dirs.push(DirNode {
            ino: ROOT_INO,
            parent: ROOT_INO,
            ..Default::default()
        });
        let lf_meta = w.opts.lost_found.clone();
        w.nodes.push(Node::new_dir(&lf_meta, 1));
        w.dirs.push(DirNode {
            ino: LOST_FOUND_INO,
            parent: ROOT_INO,
            ..Default::default()
        });
        w.dirs[0]
            .children
            .insert(b"lost+found".to_vec().into_boxed_slice(), LOST_FOUND_INO);
        w.dirs[0].subdirs = 1;
        Ok(w)
    }

    fn node(&self, ino: u32) -> &Node {
        &self.nodes[ino as usize - 1]
    }
    fn node_mut(&mut self, ino: u32) -> &mut Node {
        &mut self.nodes[ino as usize - 1]
    }
    fn dir_of(&self, ino: u32) -> Option<u32> {
        match self.node(ino).data {
            Data::Dir(d) => Some(d),
            _ => None,
        }
    }

    /// Resolves (creating missing directories) the parent of `path`.
    fn parent_dir(&mut self, path: &TreePath) -> Result<u32, Error> {
        let comps: Vec<&[u8]> = path.components().collect();
        let mut dir = 0u32; // root's dir index
        for (i, c) in comps[..comps.len().saturating_sub(1)].iter().enumerate() {
            let found = self.dirs[dir as usize].children.get(*c).copied();
            dir = match found {
                Some(ino) => match self.dir_of(ino) {
                    Some(d) => d,
                    None => {
                        return Err(Error::ParentNotDir {
                            path: path_str(path),
                            parent: String::from_utf8_lossy(&comps[..=i].join(&b'/')).into_owned(),
                        })
                    }
                },
                None => {
                    let meta = Metadata::new(0o755, self.opts.timestamp);
                    let Some(ino) = self.take_ino() else {
                        return Err(self.inode_overflow());
                    };
                    self.make_dir(ino, dir, c, &meta)
                }
            };
        }
        Ok(dir)
    }

    fn inode_overflow(&mut self) -> Error {
        self.overflow = Some(Overflow::Inodes);
        Error::TooManyInodes {
            needed: 0,
            available: self.layout.inodes_count(),
        }
    }

    fn take_ino(&mut self) -> Option<u32> {
        if let Some(i) = self.free_inos.pop() {
            return Some(i);
        }
        let next = self.nodes.len() as u64 + 1;
        if next > self.layout.inodes_count() {
            return None;
        }
        self.nodes.push(Node::empty(Timestamp::default()));
        Some(next as u32)
    }

    fn make_dir(&mut self, ino: u32, parent_dir: u32, name: &[u8], meta: &Metadata) -> u32 {
        let d = self.dirs.len() as u32;
        let parent_ino = self.dirs[parent_dir as usize].ino;
        self.dirs.push(DirNode {
            ino,
            parent: parent_ino,
            ..Default::default()
        });
        *self.node_mut(ino) = Node::new_dir(meta, d);
        let p = &mut self.dirs[parent_dir as usize];
        p.children.insert(name.to_vec().into_boxed_slice(), ino);
        p.subdirs += 1;
        d
    }

    /// Drops one name of `ino`; frees the inode and its blocks when it was
    /// the last. Returns the freed inode number.
    fn unlink(&mut self, ino: u32) -> Option<u32> {
        let n = self.node_mut(ino);
        n.links = n.links.saturating_sub(1);
        if n.links > 0 {
            return None;
        }
        let old = std::mem::replace(n, Node::empty(Timestamp::default()));
        if let Data::Extents { owned, i_block } = old.data {
            if owned.is_empty() {
                self.freed.extend(extent::shallow_runs(&i_block));
            } else {
                self.freed.extend(owned);
            }
        }
        if old.xattr_block != 0 {
            self.freed.push((old.xattr_block, 1));
        }
        Some(ino)
    }

    fn add_entry(&mut self, entry: &Entry, content: Content<'_>) -> Result<(), Error> {
        let path = &entry.path;
        check_names(path)?;
        let Some(name) = path.file_name() else {
            return self.set_root(entry);
        };
        let pdir = self.parent_dir(path)?;
        let existing = self.dirs[pdir as usize].children.get(name).copied();
        if let EntryKind::Hardlink { target } = &entry.kind {
            return self.add_hardlink(path, name, target, (pdir, existing));
        }
        if let Some(old) = existing {
            if entry.kind == EntryKind::Dir && self.dir_of(old).is_some() {
                // Update an implicit (or earlier) directory in place.
                let xa = self.xattrs(entry, old)?;
                let n = self.node_mut(old);
                n.set_meta(&entry.meta, EntryKind::Dir.type_bits());
                if let Some(b) = n.set_xattrs(xa) {
                    self.freed.push((b, 1));
                }
                return Ok(());
            }
            self.remove_name(pdir, name, old, path)?;
            if let Some(freed) = self.unlink(old) {
                self.free_inos.push(freed);
            }
        }
        let Some(ino) = self.take_ino() else {
            return Err(self.inode_overflow());
        };
        let xa = match self.xattrs(entry, ino) {
            Ok(x) => x,
            Err(e) => {
                self.free_inos.push(ino);
                return Err(e);
            }
        };
        if entry.kind == EntryKind::Dir {
            self.make_dir(ino, pdir, name, &entry.meta);
            let _fresh = self.node_mut(ino).set_xattrs(xa);
            return Ok(());
        }
        let mut node = Node::empty(Timestamp::default());
        node.set_meta(&entry.meta, entry.kind.type_bits());
        node.links = 1;
        match self.fill_node(&mut node, ino, entry, content) {
            Ok(true) => {}
            // Out of space: the overflow is recorded and reported later.
            Ok(false) => {
                self.free_inos.push(ino);
                return Ok(());
            }
            Err(e) => {
                self.free_inos.push(ino);
                return Err(e);
            }
        }
        *self.node_mut(ino) = node;
        let _fresh = self.node_mut(ino).set_xattrs(xa);
        self.dirs[pdir as usize]
            .children
            .insert(name.to_vec().into_boxed_slice(), ino);
        Ok(())
    }

    /// The root directory's own metadata and xattrs.
    fn set_root(&mut self, entry: &Entry) -> Result<(), Error> {
        if entry.kind != EntryKind::Dir {
            return Err(Error::InvalidName {
                path: String::new(),
                reason: "the root must be a directory",
            });
        }
        let xa = self.xattrs(entry, ROOT_INO)?;
        let n = self.node_mut(ROOT_INO);
        n.set_meta(&entry.meta, EntryKind::Dir.type_bits());
        if let Some(b) = n.set_xattrs(xa) {
            self.freed.push((b, 1));
        }
        Ok(())
    }

    /// Another name (`path`, entry `name` in directory `pdir`, replacing
    /// `existing`) for the inode already added at `target`.
    fn add_hardlink(
        &mut self,
        path: &TreePath,
        name: &[u8],
        target: &TreePath,
        (pdir, existing): (u32, Option<u32>),
    ) -> Result<(), Error> {
        let bad = |reason| Error::BadHardlink {
            path: path_str(path),
            target: path_str(target),
            reason,
        };
        let t = self
            .lookup(target)
            .ok_or_else(|| bad("target not added before"))?;
        if self.dir_of(t).is_some() {
            return Err(bad("target is a directory"));
        }
        if existing == Some(t) {
            return Ok(());
        }
        if self.node(t).links >= LINK_MAX {
            return Err(Error::TooManyLinks {
                path: path_str(path),
                links: u64::from(self.node(t).links) + 1,
            });
        }
        if let Some(old) = existing {
            self.remove_name(pdir, name, old, path)?;
            if let Some(freed) = self.unlink(old) {
                self.free_inos.push(freed);
            }
        }
        self.node_mut(t).links += 1;
        self.dirs[pdir as usize]
            .children
            .insert(name.to_vec().into_boxed_slice(), t);
        Ok(())
    }

    /// Writes the data of a non-directory `entry` (inode `ino`) and
    /// records it in `node`. `Ok(false)`: the filesystem ran out of space
    /// (recorded in `self.overflow`, reported when the image is finished).
    fn fill_node(
        &mut self,
        node: &mut Node,
        ino: u32,
        entry: &Entry,
        content: Content<'_>,
    ) -> Result<bool, Error> {
        let path = &entry.path;
        let seed = inode_seed(self.fs_seed, ino, 0);
        match &entry.kind {
            EntryKind::File => {
                let (size, ext) = match content {
                    Content::None => (0, Vec::new()),
                    Content::Bytes { data } => {
                        let mut r: &[u8] = data;
                        let n = data.len() as u64;
                        (n, self.stream(path, &mut r, n)?)
                    }
                    Content::Stream { size, reader } => (size, self.stream(path, reader, size)?),
                    Content::Preallocated { size, head } => {
                        (size, self.preallocate(path, size, head)?)
                    }
                };
                node.size = size;
                let Some(ext) = ext_or_overflow(self.overflow, ext) else {
                    return Ok(false);
                };
                self.attach_extents(node, &ext, seed)?;
            }
            EntryKind::Symlink { target } => {
                node.size = target.len() as u64;
                if target.is_empty() || target.len() >= BS as usize {
                    return Err(Error::InvalidName {
                        path: path_str(path),
                        reason: "symlink target empty or longer than 4095 bytes",
                    });
                }
                if target.len() < 60 {
                    let mut b = [0u8; 60];
                    b[..target.len()].copy_from_slice(target);
                    node.data = Data::Inline(b);
                } else {
                    let mut r: &[u8] = target;
                    let ext = self.stream(path, &mut r, target.len() as u64)?;
                    let Some(ext) = ext_or_overflow(self.overflow, ext) else {
                        return Ok(false);
                    };
                    self.attach_extents(node, &ext, seed)?;
                }
            }
            EntryKind::CharDev { major, minor } | EntryKind::BlockDev { major, minor } => {
                node.data = Data::Inline(device_block(path, *major, *minor)?);
            }
            EntryKind::Fifo | EntryKind::Socket => {}
            EntryKind::Dir | EntryKind::Hardlink { .. } => {}
        }
        Ok(true)
    }

    /// Removes `name` (currently `old`) from directory `pdir` before it is
    /// replaced; refuses non-empty directories.
    fn remove_name(
        &mut self,
        pdir: u32,
        name: &[u8],
        old: u32,
        path: &TreePath,
    ) -> Result<(), Error> {
        if let Some(d) = self.dir_of(old) {
            if !self.dirs[d as usize].children.is_empty() {
                return Err(Error::ReplaceNonEmptyDir {
                    path: path_str(path),
                });
            }
            self.dirs[pdir as usize].subdirs -= 1;
            self.dirs[d as usize].ino = 0; // orphaned, skipped at finish
            self.node_mut(old).links = 1; // unlink drops it to 0
        }
        self.dirs[pdir as usize].children.remove(name);
        Ok(())
    }

    fn lookup(&self, path: &TreePath) -> Option<u32> {
        let mut ino = ROOT_INO;
        for c in path.components() {
            let d = self.dir_of(ino)?;
            ino = *self.dirs[d as usize].children.get(c)?;
        }
        Some(ino)
    }

    /// Converts and places an entry's xattrs; writes the block if needed.
    fn xattrs(&mut self, entry: &Entry, _ino: u32) -> Result<Option<XattrPlacement>, Error> {
        if entry.meta.xattrs.is_empty() {
            return Ok(None);
        }
        let mut v: Vec<DiskXattr> = Vec::with_capacity(entry.meta.xattrs.len());
        for x in &entry.meta.xattrs {
            let d = xattr::to_disk(&x.name, &x.value).map_err(|e| Error::Xattr {
                path: path_str(&entry.path),
                name: String::from_utf8_lossy(&x.name).into_owned(),
                reason: e.reason(),
            })?;
            // A later value for the same name wins.
            v.retain(|o| !(o.index == d.index && o.name == d.name));
            v.push(d);
        }
        let placed = xattr::place(v).map_err(|e| Error::Xattr {
            path: path_str(&entry.path),
            name: String::new(),
            reason: e.reason(),
        })?;
        let block = if placed.block.is_empty() {
            0
        } else {
            let Some(b) = self.alloc.one() else {
                self.overflow = Some(Overflow::Space);
                return Ok(None);
            };
            let bytes = xattr::encode_block(&placed.block, b, self.fs_seed);
            self.write(b * BS, &bytes)?;
            b
        };
        Ok(Some(XattrPlacement {
            inline: placed.inline.map(Box::new),
            block,
        }))
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Error> {
        self.out
            .write_all_at(data, offset)
            .map_err(Error::io(offset))
    }

    /// Streams `size` bytes into newly allocated blocks, skipping all-zero
    /// blocks (holes). Returns the extents, or an empty list with
    /// `self.overflow` set when space ran out.
    fn stream(
        &mut self,
        path: &TreePath,
        reader: &mut dyn Read,
        size: u64,
    ) -> Result<Vec<Extent>, Error> {
        if size.div_ceil(BS) > u64::from(u32::MAX) {
            return Err(Error::TooLarge {
                path: path_str(path),
                what: "file size",
            });
        }
        let mut ext = Vec::new();
        let mut buf = std::mem::take(&mut self.buf);
        let mut done = 0u64;
        let mut logical = 0u64;
        let res = (|| -> Result<(), Error> {
            while done < size {
                let want = (size - done).min(CHUNK as u64) as usize;
                let mut got = 0;
                while got < want {
                    let n = reader
                        .read(&mut buf[got..want])
                        .map_err(|source| Error::Read {
                            path: path_str(path),
                            source,
                        })?;
                    if n == 0 {
                        return Err(Error::ShortContent {
                            path: path_str(path),
                            got: done + got as u64,
                            expected: size,
                        });
                    }
                    got += n;
                }
                let blocks = got.div_ceil(BS as usize);
                buf[got..blocks * BS as usize].fill(0);
                let mut i = 0;
                while i < blocks {
                    if is_zero(&buf[i * BS as usize..(i + 1) * BS as usize]) {
                        i += 1;
                        continue;
                    }
                    let mut j = i + 1;
                    while j < blocks && !is_zero(&buf[j * BS as usize..(j + 1) * BS as usize]) {
                        j += 1;
                    }
                    // Blocks i..j are data.
                    let mut k = i;
                    while k < j {
                        let Some((phys, n)) = self.alloc.run((j - k) as u64) else {
                            self.overflow = Some(Overflow::Space);
                            return Ok(());
                        };
                        let n = n as usize;
                        self.out
                            .write_all_at(&buf[k * BS as usize..(k + n) * BS as usize], phys * BS)
                            .map_err(Error::io(phys * BS))?;
                        push_run(&mut ext, (logical + k as u64) as u32, phys, n as u64, false);
                        k += n;
                    }
                    i = j;
                }
                logical += blocks as u64;
                done += got as u64;
            }
            Ok(())
        })();
        self.buf = buf;
        res?;
        if self.overflow.is_some() {
            // Give back nothing: the filesystem will not be finished.
            return Ok(Vec::new());
        }
        Ok(ext)
    }

    /// Allocates `size` bytes contiguously where possible: the head is
    /// written, the rest mapped as unwritten extents.
    fn preallocate(
        &mut self,
        path: &TreePath,
        size: u64,
        head: &[u8],
    ) -> Result<Vec<Extent>, Error> {
        let blocks = size.div_ceil(BS);
        if blocks > u64::from(u32::MAX) {
            return Err(Error::TooLarge {
                path: path_str(path),
                what: "file size",
            });
        }
        if blocks > self.alloc.remaining() {
            self.overflow = Some(Overflow::Space);
            return Ok(Vec::new());
        }
        let head = &head[..head.len().min(size as usize)];
        let head_blocks = (head.len() as u64).div_ceil(BS);
        let mut ext = Vec::new();
        let mut logical = 0u64;
        while logical < blocks {
            let Some((phys, n)) = self.alloc.run(blocks - logical) else {
                self.overflow = Some(Overflow::Space);
                return Ok(Vec::new());
            };
            // Written part of this run.
            let w = head_blocks.saturating_sub(logical).min(n);
            if w > 0 {
                let from = (logical * BS) as usize;
                let to = (((logical + w) * BS) as usize).min(head.len());
                let mut chunk = head[from..to].to_vec();
                chunk.resize((w * BS) as usize, 0);
                self.write(phys * BS, &chunk)?;
                push_run(&mut ext, logical as u32, phys, w, false);
            }
            if n > w {
                push_run(&mut ext, (logical + w) as u32, phys + w, n - w, true);
            }
            logical += n;
        }
        Ok(ext)
    }

    /// Builds the extent tree for `ext` (writing tree blocks) and stores
    /// it in `node`.
    fn attach_extents(&mut self, node: &mut Node, ext: &[Extent], seed: u32) -> Result<(), Error> {
        let mut owned: Vec<(u64, u64)> =
            ext.iter().map(|e| (e.physical, u64::from(e.len))).collect();
        let alloc = &mut self.alloc;
        let mut overflow = false;
        let tree = extent::build_tree(ext, seed, || {
            alloc.one().ok_or_else(|| {
                overflow = true;
            })
        });
        let tree = match tree {
            Ok(t) => t,
            Err(()) => {
                self.overflow = Some(Overflow::Space);
                return Ok(());
            }
        };
        for (b, bytes) in &tree.nodes {
            self.write(b * BS, bytes)?;
            owned.push((*b, 1));
        }
        node.blocks += owned.iter().map(|r| r.1).sum::<u64>();
        if tree.nodes.is_empty() {
            owned = Vec::new();
        }
        node.data = Data::Extents {
            i_block: tree.i_block,
            owned,
        };
        node.flags_extents();
        Ok(())
    }

    /// The target being written (for a caller that observes or routes the
    /// writes, e.g. to tell file data, written while entries are added,
    /// from the metadata [`Ext4Writer::finish`] writes).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Writes all metadata and returns a summary.
    ///
    /// # Errors
    /// [`Error::DoesNotFit`] (with the shortfall and the minimum size for
    /// the whole tree) or [`Error::TooManyInodes`] if the tree did not fit;
    /// [`Error::Io`] on write failures.
    pub fn finish(mut self) -> Result<Ext4Report, Error> {
        self.check_overflow()?;
        self.write_dirs()?;
        self.check_overflow()?;
        self.write_tables()
    }

    fn check_overflow(&self) -> Result<(), Error> {
        match self.overflow {
            None => Ok(()),
            Some(Overflow::Inodes) => Err(Error::TooManyInodes {
                needed: self.estimator.inodes_needed(),
                available: self.layout.inodes_count(),
            }),
            Some(Overflow::Space) => {
                let min = self.estimator.min_size_bytes(&self.opts, 0)?;
                let size = self.layout.blocks_count * BS;
                let min = min.max(size + BS);
                Err(Error::DoesNotFit {
                    size_bytes: self.opts.size_bytes,
                    short_bytes: min - size,
                    min_size_bytes: min,
                })
            }
        }
    }

    fn write_dirs(&mut self) -> Result<(), Error> {
        for d in 0..self.dirs.len() {
            let ino = self.dirs[d].ino;
            if ino == 0 {
                continue;
            }
            let parent = self.dirs[d].parent;
            let seed = inode_seed(self.fs_seed, ino, 0);
            let mut names: Vec<(&[u8], u32)> = self.dirs[d]
                .children
                .iter()
                .map(|(k, v)| (&**k, *v))
                .collect();
            names.sort_unstable();
            let ents: Vec<DirEntryRef<'_>> = names
                .iter()
                .map(|&(name, child)| DirEntryRef {
                    ino: child,
                    name,
                    ftype: file_type(self.nodes[child as usize - 1].mode),
                })
                .collect();
            let lens = ents.iter().map(|e| e.name.len());
            let (mut blocks, indexed) = if dir::linear_blocks(lens) <= 1 {
                (dir::build_linear(ino, parent, &ents, seed), false)
            } else {
                let mut hashed: Vec<(u32, u32, DirEntryRef<'_>)> = ents
                    .iter()
                    .map(|e| {
                        let (h, m) = htree::name_hash(e.name, &self.hash_seed);
                        (h, m, *e)
                    })
                    .collect();
                hashed.sort_unstable_by(|a, b| (a.0, a.1, a.2.name).cmp(&(b.0, b.1, b.2.name)));
                let b = htree::build_indexed(ino, parent, &hashed, seed).ok_or_else(|| {
                    Error::TooLarge {
                        path: format!("<directory inode {ino}>"),
                        what: "directory (more than two htree levels)",
                    }
                })?;
                (b, true)
            };
            if ino == LOST_FOUND_INO && !indexed {
                while (blocks.len() as u64) < layout::LOST_FOUND_BLOCKS {
                    blocks.push(dir::empty_block(seed));
                }
            }
            let subdirs = self.dirs[d].subdirs;
            drop(ents);
            drop(names);
            // Allocate and write.
            let n = blocks.len() as u64;
            if n > self.alloc.remaining() {
                self.overflow = Some(Overflow::Space);
                return Ok(());
            }
            let mut ext = Vec::new();
            let mut logical = 0u64;
            while logical < n {
                let Some((phys, run)) = self.alloc.run(n - logical) else {
                    self.overflow = Some(Overflow::Space);
                    return Ok(());
                };
                let mut bytes = Vec::with_capacity((run * BS) as usize);
                for b in &blocks[logical as usize..(logical + run) as usize] {
                    bytes.extend_from_slice(b);
                }
                self.write(phys * BS, &bytes)?;
                push_run(&mut ext, logical as u32, phys, run, false);
                logical += run;
            }
            let mut node = std::mem::replace(self.node_mut(ino), Node::empty(Timestamp::default()));
            node.size = n * BS;
            node.links = if subdirs + 2 > LINK_MAX {
                1
            } else {
                subdirs + 2
            };
            self.attach_extents(&mut node, &ext, seed)?;
            node.data = match node.data {
                Data::Extents { i_block, .. } => Data::Extents {
                    i_block,
                    owned: Vec::new(),
                },
                other => other,
            };
            if indexed {
                node.flags |= EXT4_INDEX_FL;
            }
            *self.node_mut(ino) = node;
        }
        Ok(())
    }
}

/// Xattrs ready to attach to an inode.
#[derive(Debug)]
struct XattrPlacement {
    inline: Option<Box<[u8; INLINE_XATTR_SPACE]>>,
    block: u64,
}

impl Node {
    fn empty(t: Timestamp) -> Node {
        Node {
            mode: 0,
            uid: 0,
            gid: 0,
            links: 0,
            size: 0,
            times: [t; 4],
            blocks: 0,
            flags: 0,
            data: Data::Free,
            xattr_inline: None,
            xattr_block: 0,
        }
    }
    fn new_dir(meta: &Metadata, d: u32) -> Node {
        let mut n = Node::empty(meta.mtime);
        n.set_meta(meta, EntryKind::Dir.type_bits());
        n.links = 2;
        n.data = Data::Dir(d);
        n
    }
    fn set_meta(&mut self, m: &Metadata, type_bits: u32) {
        self.mode = ((type_bits & 0o170000) | (m.mode & 0o7777)) as u16;
        self.uid = m.uid;
        self.gid = m.gid;
        self.times = meta_times(m);
        if matches!(self.data, Data::Free) {
            self.data = Data::Empty;
        }
    }
    /// Replaces the attributes; returns the old xattr block (now unowned)
    /// so the caller can free it.
    #[must_use]
    fn set_xattrs(&mut self, x: Option<XattrPlacement>) -> Option<u64> {
        let old = self.xattr_block;
        if old != 0 {
            self.blocks = self.blocks.saturating_sub(1);
        }
        self.xattr_inline = None;
        self.xattr_block = 0;
        if let Some(x) = x {
            self.xattr_inline = x.inline;
            self.xattr_block = x.block;
            if x.block != 0 {
                self.blocks += 1;
            }
        }
        (old != 0).then_some(old)
    }
    fn flags_extents(&mut self) {
        self.flags |= EXT4_EXTENTS_FL;
    }
    fn in_use(&self) -> bool {
        !matches!(self.data, Data::Free)
    }
    fn fields(&self) -> InodeFields {
        let i_block = match &self.data {
            Data::Extents { i_block, .. } | Data::Inline(i_block) => *i_block,
            _ => [0u8; 60],
        };
        InodeFields {
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            size: self.size,
            atime: self.times[0],
            ctime: self.times[1],
            mtime: self.times[2],
            crtime: self.times[3],
            links: self.links.min(u32::from(u16::MAX)) as u16,
            blocks_512: self.blocks * (BS / 512),
            flags: self.flags,
            i_block,
            file_acl: self.xattr_block,
            xattr_inline: self
                .xattr_inline
                .as_deref()
                .copied()
                .unwrap_or([0; INLINE_XATTR_SPACE]),
        }
    }
}

/// Refuses a path component ext4 cannot hold as a directory entry.
fn check_names(path: &TreePath) -> Result<(), Error> {
    for c in path.components() {
        let reason = if c.is_empty() {
            Some("empty name")
        } else if c.len() > 255 {
            Some("name longer than 255 bytes")
        } else if c.contains(&0) || c.contains(&b'/') {
            Some("name contains NUL or '/'")
        } else if c == b"." || c == b".." {
            Some("'.' or '..'")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(Error::InvalidName {
                path: path_str(path),
                reason,
            });
        }
    }
    Ok(())
}

/// A device inode's `i_block`: Linux's old (8-bit major/minor, bytes
/// 0..4) or new (12-bit major, 20-bit minor, bytes 4..8) `dev_t` encoding.
fn device_block(path: &TreePath, major: u32, minor: u32) -> Result<[u8; 60], Error> {
    if major >= 1 << 12 || minor >= 1 << 20 {
        return Err(Error::TooLarge {
            path: path_str(path),
            what: "device number",
        });
    }
    let mut b = [0u8; 60];
    if major < 256 && minor < 256 {
        b[0..4].copy_from_slice(&((major << 8) | minor).to_le_bytes());
    } else {
        let v = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
        b[4..8].copy_from_slice(&v.to_le_bytes());
    }
    Ok(b)
}

fn ext_or_overflow(o: Option<Overflow>, ext: Vec<Extent>) -> Option<Vec<Extent>> {
    if o.is_some() {
        None
    } else {
        Some(ext)
    }
}

fn is_zero(b: &[u8]) -> bool {
    // OR-fold 64-byte chunks: vectorises, exits early on data.
    b.chunks(64).all(|c| c.iter().fold(0u8, |a, &x| a | x) == 0)
}

fn file_type(mode: u16) -> u8 {
    match u32::from(mode) & 0o170000 {
        0o100000 => ftype::REG,
        0o040000 => ftype::DIR,
        0o020000 => ftype::CHR,
        0o060000 => ftype::BLK,
        0o010000 => ftype::FIFO,
        0o140000 => ftype::SOCK,
        0o120000 => ftype::LNK,
        _ => 0,
    }
}

/// Sets bits `[from, to)` of `bm`.
fn set_bits(bm: &mut [u8], from: usize, to: usize, on: bool) {
    let mut i = from;
    while i < to && i % 8 != 0 {
        bit(bm, i, on);
        i += 1;
    }
    while i + 8 <= to {
        bm[i / 8] = if on { 0xFF } else { 0 };
        i += 8;
    }
    while i < to {
        bit(bm, i, on);
        i += 1;
    }
}

fn bit(bm: &mut [u8], i: usize, on: bool) {
    if on {
        bm[i / 8] |= 1 << (i % 8);
    } else {
        bm[i / 8] &= !(1 << (i % 8));
    }
}

fn count_bits(bm: &[u8], n: usize) -> u64 {
    let full = n / 8;
    let mut c: u64 = bm[..full].iter().map(|b| u64::from(b.count_ones())).sum();
    for i in full * 8..n {
        if bm[i / 8] & (1 << (i % 8)) != 0 {
            c += 1;
        }
    }
    c
}

/// Applies sorted ranges to the bitmap of the group covering
/// `[start, end)`, advancing `idx` past ranges that end before `end`.
fn apply_ranges(
    bm: &mut [u8],
    ranges: &[(u64, u64)],
    idx: &mut usize,
    start: u64,
    end: u64,
    on: bool,
) {
    while let Some(&(s, l)) = ranges.get(*idx) {
        if s >= end {
            break;
        }
        let a = s.max(start);
        let b = (s + l).min(end);
        if a < b {
            set_bits(bm, (a - start) as usize, (b - start) as usize, on);
        }
        if s + l <= end {
            *idx += 1;
        } else {
            break;
        }
    }
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

impl<W: WriteAt> Ext4Writer<W> {
    fn write_tables(mut self) -> Result<Ext4Report, Error> {
        let l = self.layout.clone();
        let ts = self.opts.timestamp;
        self.write_resize_inode(&l, ts)?;
        let jnl_blocks = self.write_journal_inode(&l, ts)?;
        let (mut descs, files, free_inodes_total) = self.write_inode_tables(&l)?;
        let free_blocks_total = self.write_block_bitmaps(&l, &mut descs)?;
        // Group descriptor table, primary and backups.
        let mut gdt = vec![0u8; (l.gdt_blocks * BS) as usize];
        for (g, d) in descs.iter().enumerate() {
            let raw = d.to_raw(self.fs_seed, g as u32);
            gdt[g * 64..g * 64 + 64].copy_from_slice(raw.as_bytes());
        }
        // Superblock.
        let mut sb = self.superblock(&l, ts, free_blocks_total, free_inodes_total, &jnl_blocks);
        for g in 0..l.groups {
            if !has_super(g) {
                continue;
            }
            let base = g * BLOCKS_PER_GROUP;
            self.write((base + 1) * BS, &gdt)?;
            sb.s_block_group_nr = zerocopy::little_endian::U16::new(g as u16);
            sb.seal();
            let at = if g == 0 { 1024 } else { base * BS };
            self.write(at, sb.as_bytes())?;
        }
        Ok(Ext4Report {
            size_bytes: l.blocks_count * BS,
            blocks_count: l.blocks_count,
            free_blocks: free_blocks_total,
            inodes_count: l.inodes_count(),
            free_inodes: free_inodes_total,
            files,
        })
    }

    /// Resize inode (7): a double-indirect block listing the reserved GDT
    /// blocks, each listing its backups.
    fn write_resize_inode(&mut self, l: &Layout, ts: Timestamp) -> Result<(), Error> {
        let backups: Vec<u64> = (1..l.groups).filter(|&g| has_super(g)).collect();
        let mut dind = vec![0u8; BS as usize];
        for i in 0..l.rsv_gdt_blocks {
            let pblk = 1 + l.gdt_blocks + i;
            let off = ((l.gdt_blocks + i) % 1024) as usize;
            put_u32(&mut dind, off * 4, pblk as u32);
            let mut b = vec![0u8; BS as usize];
            for (j, g) in backups.iter().enumerate() {
                put_u32(&mut b, j * 4, (pblk + g * BLOCKS_PER_GROUP) as u32);
            }
            self.write(pblk * BS, &b)?;
        }
        self.write(self.resize_dind * BS, &dind)?;
        let mut n = Node::empty(ts);
        n.mode = 0o100600;
        n.links = 1;
        n.size = (1024 * 1024 + 1024 + 12) * BS;
        n.blocks = 1 + l.rsv_gdt_blocks * (1 + backups.len() as u64);
        let mut ib = [0u8; 60];
        put_u32(&mut ib[..], 13 * 4, self.resize_dind as u32);
        n.data = Data::Inline(ib);
        *self.node_mut(RESIZE_INO) = n;
        Ok(())
    }

    /// Journal inode (8); returns the `s_jnl_blocks` backup of its
    /// `i_block` and size for the superblock.
    fn write_journal_inode(&mut self, l: &Layout, ts: Timestamp) -> Result<[u32; 17], Error> {
        let mut jnl_blocks = [0u32; 17];
        if let Some(tree) = self.journal_tree.take() {
            for (b, bytes) in &tree.nodes {
                self.write(b * BS, bytes)?;
            }
            let first = self.journal_ext[0].physical;
            let jsb = journal::superblock_block(l.journal_blocks as u32, self.opts.uuid);
            self.write(first * BS, &jsb)?;
            let mut n = Node::empty(ts);
            n.mode = 0o100600;
            n.links = 1;
            n.size = l.journal_blocks * BS;
            n.blocks = l.journal_blocks + tree.nodes.len() as u64;
            n.flags = EXT4_EXTENTS_FL;
            for (i, c) in tree.i_block.chunks_exact(4).enumerate() {
                jnl_blocks[i] = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
            jnl_blocks[15] = (n.size >> 32) as u32;
            jnl_blocks[16] = n.size as u32;
            n.data = Data::Extents {
                i_block: tree.i_block,
                owned: Vec::new(),
            };
            *self.node_mut(JOURNAL_INO) = n;
        }
        Ok(jnl_blocks)
    }

    /// Inode tables and inode bitmaps; returns the group descriptors
    /// (block fields filled later), the number of files and free inodes.
    fn write_inode_tables(&mut self, l: &Layout) -> Result<(Vec<GroupDesc>, u64, u64), Error> {
        let ipg = l.inodes_per_group;
        let mut descs: Vec<GroupDesc> = Vec::with_capacity(l.groups as usize);
        let total = self.nodes.len() as u64;
        let mut files = 0u64;
        let mut free_inodes_total = 0u64;
        for g in 0..l.groups {
            let gl = l.group[g as usize];
            let first = g * ipg + 1;
            let last = ((g + 1) * ipg).min(total);
            let mut ibm = vec![0u8; BS as usize];
            let mut used = 0u64;
            let mut dirs = 0u32;
            let mut upto = 0u64; // inodes of this group covered by the table written
            if first <= last {
                for ino in first..=last {
                    let n = &self.nodes[ino as usize - 1];
                    if ino < u64::from(FIRST_INO) || n.in_use() {
                        bit(&mut ibm, (ino - first) as usize, true);
                        used += 1;
                        upto = ino - first + 1;
                        if n.in_use() && u32::from(n.mode) & 0o170000 == 0o040000 {
                            dirs += 1;
                        }
                        if ino > u64::from(FIRST_INO) && n.in_use() {
                            files += 1;
                        }
                    }
                }
            }
            // Table blocks up to the last used inode.
            let tblocks = upto.div_ceil(INODES_PER_BLOCK);
            let mut off = 0u64;
            while off < tblocks {
                let chunk = (tblocks - off).min(256);
                let mut buf = vec![0u8; (chunk * BS) as usize];
                for k in 0..chunk * INODES_PER_BLOCK {
                    let idx = (off * INODES_PER_BLOCK) + k;
                    let ino = first + idx;
                    if idx >= upto {
                        break;
                    }
                    let n = &self.nodes[ino as usize - 1];
                    let raw = if n.in_use() {
                        n.fields().to_raw(self.fs_seed, ino as u32)
                    } else if ino < u64::from(FIRST_INO) {
                        inode::empty_raw(self.fs_seed, ino as u32)
                    } else {
                        inode::RawInode::new_zeroed()
                    };
                    let at = (k * INODE_SIZE) as usize;
                    buf[at..at + INODE_SIZE as usize].copy_from_slice(raw.as_bytes());
                }
                self.write((gl.inode_table + off) * BS, &buf)?;
                off += chunk;
            }
            // Padding bits beyond the group's inodes.
            set_bits(&mut ibm, ipg as usize, BS as usize * 8, true);
            let ibm_csum = Crc32c::new(self.fs_seed)
                .update(&ibm[..(ipg / 8) as usize])
                .value();
            self.write(gl.inode_bitmap * BS, &ibm)?;
            let free = ipg - used;
            free_inodes_total += free;
            descs.push(GroupDesc {
                block_bitmap: gl.block_bitmap,
                inode_bitmap: gl.inode_bitmap,
                inode_table: gl.inode_table,
                free_inodes: free as u32,
                used_dirs: dirs,
                flags: BG_INODE_ZEROED | if used == 0 { BG_INODE_UNINIT } else { 0 },
                itable_unused: (ipg - upto) as u32,
                inode_bitmap_csum: ibm_csum,
                ..Default::default()
            });
        }
        Ok((descs, files, free_inodes_total))
    }

    /// Block bitmaps swept from the sorted used and freed ranges; fills
    /// each descriptor's free count and checksum; returns the free blocks.
    fn write_block_bitmaps(&mut self, l: &Layout, descs: &mut [GroupDesc]) -> Result<u64, Error> {
        let mut used: Vec<(u64, u64)> = l.metadata.clone();
        used.extend(self.alloc.allocated.iter().copied());
        used.sort_unstable();
        let used = layout::merge_ranges(used);
        let mut freed = std::mem::take(&mut self.freed);
        freed.sort_unstable();
        let freed = layout::merge_ranges(freed);
        let (mut ui, mut fi) = (0usize, 0usize);
        let mut free_blocks_total = 0u64;
        for g in 0..l.groups {
            let start = g * BLOCKS_PER_GROUP;
            let end = (start + BLOCKS_PER_GROUP).min(l.blocks_count);
            let mut bm = vec![0u8; BS as usize];
            apply_ranges(&mut bm, &used, &mut ui, start, end, true);
            apply_ranges(&mut bm, &freed, &mut fi, start, end, false);
            let n = (end - start) as usize;
            let inuse = count_bits(&bm, n);
            set_bits(&mut bm, n, BLOCKS_PER_GROUP as usize, true);
            let csum = Crc32c::new(self.fs_seed).update(&bm).value();
            let gl = l.group[g as usize];
            self.write(gl.block_bitmap * BS, &bm)?;
            let free = n as u64 - inuse;
            free_blocks_total += free;
            let d = &mut descs[g as usize];
            d.free_blocks = free as u32;
            d.block_bitmap_csum = csum;
        }
        Ok(free_blocks_total)
    }

    fn superblock(
        &self,
        l: &Layout,
        ts: Timestamp,
        free_blocks: u64,
        free_inodes: u64,
        jnl_blocks: &[u32; 17],
    ) -> RawSuperblock {
        use zerocopy::little_endian::{U16, U64};
        let lo = |v: u64| U32::new(v as u32);
        let hi = |v: u64| U32::new((v >> 32) as u32);
        let t = ts.secs.clamp(0, (1i64 << 40) - 1) as u64;
        let mut sb = RawSuperblock::new_zeroed();
        sb.s_inodes_count = lo(l.inodes_count());
        sb.s_blocks_count_lo = lo(l.blocks_count);
        sb.s_blocks_count_hi = hi(l.blocks_count);
        sb.s_r_blocks_count_lo = lo(l.reserved_blocks);
        sb.s_r_blocks_count_hi = hi(l.reserved_blocks);
        sb.s_free_blocks_count_lo = lo(free_blocks);
        sb.s_free_blocks_count_hi = hi(free_blocks);
        sb.s_free_inodes_count = lo(free_inodes);
        sb.s_first_data_block = U32::new(0);
        sb.s_log_block_size = U32::new(2);
        sb.s_log_cluster_size = U32::new(2);
        sb.s_blocks_per_group = lo(BLOCKS_PER_GROUP);
        sb.s_clusters_per_group = lo(BLOCKS_PER_GROUP);
        sb.s_inodes_per_group = lo(l.inodes_per_group);
        sb.s_wtime = lo(t);
        sb.s_wtime_hi = (t >> 32) as u8;
        sb.s_max_mnt_count = U16::new(0xFFFF);
        sb.s_magic = U16::new(EXT4_SUPER_MAGIC);
        sb.s_state = U16::new(1);
        sb.s_errors = U16::new(1);
        sb.s_lastcheck = lo(t);
        sb.s_lastcheck_hi = (t >> 32) as u8;
        sb.s_rev_level = U32::new(1);
        sb.s_first_ino = U32::new(FIRST_INO);
        sb.s_inode_size = U16::new(INODE_SIZE as u16);
        let journal = l.journal_blocks > 0;
        let mut compat = COMPAT_EXT_ATTR | COMPAT_RESIZE_INODE | COMPAT_DIR_INDEX;
        if journal {
            compat |= COMPAT_HAS_JOURNAL;
        }
        sb.s_feature_compat = U32::new(compat);
        sb.s_feature_incompat =
            U32::new(INCOMPAT_FILETYPE | INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG);
        sb.s_feature_ro_compat = U32::new(
            RO_COMPAT_SPARSE_SUPER
                | RO_COMPAT_LARGE_FILE
                | RO_COMPAT_HUGE_FILE
                | RO_COMPAT_DIR_NLINK
                | RO_COMPAT_EXTRA_ISIZE
                | RO_COMPAT_METADATA_CSUM,
        );
        sb.s_uuid = self.opts.uuid;
        sb.s_volume_name = self.opts.label;
        sb.s_reserved_gdt_blocks = U16::new(l.rsv_gdt_blocks as u16);
        if journal {
            sb.s_journal_inum = U32::new(JOURNAL_INO);
            sb.s_jnl_backup_type = 1; // EXT3_JNL_BACKUP_BLOCKS
            for (d, s) in sb.s_jnl_blocks.iter_mut().zip(jnl_blocks) {
                *d = U32::new(*s);
            }
        }
        sb.s_hash_seed = self.opts.hash_seed;
        sb.s_def_hash_version = DX_HASH_HALF_MD4;
        sb.s_desc_size = U16::new(64);
        sb.s_default_mount_opts = U32::new(DEFM_XATTR_USER_ACL);
        sb.s_mkfs_time = lo(t);
        sb.s_mkfs_time_hi = (t >> 32) as u8;
        sb.s_min_extra_isize = U16::new(inode::EXTRA_ISIZE);
        sb.s_want_extra_isize = U16::new(inode::EXTRA_ISIZE);
        sb.s_flags = U32::new(EXT2_FLAGS_SIGNED_HASH);
        sb.s_log_groups_per_flex = 4;
        sb.s_checksum_type = 1;
        sb.s_kbytes_written = U64::new(0);
        sb
    }
}

impl<W: WriteAt> TreeSink for Ext4Writer<W> {
    type Error = Error;
    fn add(&mut self, entry: &Entry, content: Content<'_>) -> Result<(), Error> {
        self.estimator.add_entry(entry, content.size());
        if self.overflow.is_some() {
            // Already out of space: only keep counting for the report.
            return Ok(());
        }
        match self.add_entry(entry, content) {
            Err(Error::TooManyInodes { .. }) if self.overflow == Some(Overflow::Inodes) => Ok(()),
            other => other,
        }
    }
}
