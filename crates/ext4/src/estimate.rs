//! Sizing a filesystem before writing it: [`Ext4Estimator`] watches the
//! same entries the writer will get (without reading file contents) and
//! answers the smallest filesystem size that holds them.
//!
//! The estimate is conservative: every file counts all its blocks (holes
//! are not known without reading), extent-tree, directory-index and xattr
//! blocks are counted generously, and replaced paths count twice. It is
//! exact about the fixed metadata (computed by the same layout code the
//! writer uses).

use crate::dir::{linear_blocks, rec_len, LEAF_SPACE};
use crate::extent::tree_blocks;
use crate::layout::{Layout, FIRST_INO, MIN_BLOCKS};
use crate::options::{Ext4Options, InodeSpec, BLOCK_SIZE};
use crate::xattr;
use crate::Error;
use kiln_tree::{Content, Entry, EntryKind, TreeSink};
use std::collections::{HashMap, HashSet};

/// Counts what a tree needs; see the module docs.
///
/// ```
/// use kiln_ext4::{Ext4Estimator, Ext4Options};
/// use kiln_tree::{Content, Entry, EntryKind, Metadata, Timestamp, TreePath, TreeSink};
/// let mut est = Ext4Estimator::new();
/// let meta = Metadata::new(0o644, Timestamp::new(0, 0));
/// let e = Entry::new(TreePath::parse(b"big").unwrap(), EntryKind::File, meta);
/// est.add(&e, Content::Preallocated { size: 64 << 20, head: b"" }).unwrap();
/// let size = est.min_size_bytes(&Ext4Options::new(0), 0).unwrap();
/// assert!(size > 64 << 20 && size < 100 << 20);
/// ```
#[derive(Debug, Default, Clone)]
pub struct Ext4Estimator {
    inodes: u64,
    blocks: u64,
    /// Per directory path: (entries, bytes of directory records).
    dirs: HashMap<Vec<u8>, (u64, u64, Vec<u16>)>,
    known_dirs: HashSet<Vec<u8>>,
}

impl Ext4Estimator {
    /// An empty estimate (root and lost+found are always accounted).
    pub fn new() -> Self {
        Self::default()
    }

    /// Inodes the tree needs, including the 11 reserved ones.
    pub fn inodes_needed(&self) -> u64 {
        self.inodes + u64::from(FIRST_INO)
    }

    /// Blocks the tree needs for file data, extent trees, xattr blocks and
    /// directories (not counting root, lost+found and fixed metadata).
    pub fn blocks_needed(&self) -> u64 {
        let mut dir_blocks = 0u64;
        for (n, bytes, lens) in self.dirs.values() {
            let lin = if *n <= 64 {
                linear_blocks(lens.iter().map(|&l| usize::from(l))) as u64
            } else {
                2
            };
            if lin <= 1 {
                // Root's own block is already part of the fixed overhead;
                // counting it again is harmless.
                dir_blocks += 1;
            } else {
                // Indexed: leaves lose at most one maximal record each.
                let per_leaf = (LEAF_SPACE - rec_len(255)) as u64;
                let leaves = bytes.div_ceil(per_leaf) + 1;
                let nodes = if leaves > 507 {
                    leaves.div_ceil(510)
                } else {
                    0
                };
                let total = 1 + nodes + leaves;
                dir_blocks += total + tree_blocks((total / 1024 + 2) as usize);
            }
        }
        self.blocks + dir_blocks
    }

    fn note_dir(&mut self, path: &[Vec<u8>]) {
        // Make sure every ancestor directory is known, counting implicit
        // ones as inodes and names in their parents. A directory is only
        // ever noted after its ancestors, so the walk up stops at the
        // deepest known one: an entry costs one path per new directory
        // plus one, not one per ancestor (which made deep trees cubic).
        let mut known = path.len();
        while known > 0 && !self.known_dirs.contains(&path[..known].join(&b'/')) {
            known -= 1;
        }
        for depth in known + 1..=path.len() {
            let p = path[..depth].join(&b'/');
            self.known_dirs.insert(p.clone());
            self.dirs.entry(p).or_insert((0, 0, Vec::new()));
            self.inodes += 1;
            self.note_name(&path[..depth - 1], &path[depth - 1]);
        }
    }

    fn note_name(&mut self, parent: &[Vec<u8>], name: &[u8]) {
        let key = parent.join(&b'/');
        let d = self.dirs.entry(key).or_insert((0, 0, Vec::new()));
        d.0 += 1;
        d.1 += rec_len(name.len()) as u64;
        if d.2.len() <= 64 {
            d.2.push(name.len().min(255) as u16);
        }
    }

    /// Counts one entry (the content is not read; only its size is used).
    pub fn add_entry(&mut self, entry: &Entry, content_size: u64) {
        let comps: Vec<Vec<u8>> = entry.path.components().map(<[u8]>::to_vec).collect();
        let Some((name, parent)) = comps.split_last() else {
            return; // root
        };
        self.note_dir(parent);
        let data_blocks = content_size.div_ceil(u64::from(BLOCK_SIZE));
        match &entry.kind {
            EntryKind::Dir => {
                self.note_dir(&comps);
                return self.xattrs(entry);
            }
            EntryKind::Hardlink { .. } => {
                self.note_name(parent, name);
                return;
            }
            EntryKind::File => {
                // Streams may be cut by holes or metadata areas: allow for
                // a few extents per group crossed.
                let extents = 2 * data_blocks.div_ceil(32768) + 1;
                self.blocks += data_blocks + tree_blocks(extents as usize);
            }
            EntryKind::Symlink { target } if target.len() >= 60 => self.blocks += 1,
            _ => {}
        }
        self.inodes += 1;
        self.note_name(parent, name);
        self.xattrs(entry);
    }

    fn xattrs(&mut self, entry: &Entry) {
        if entry.meta.xattrs.is_empty() {
            return;
        }
        let disk: Vec<_> = entry
            .meta
            .xattrs
            .iter()
            .filter_map(|x| xattr::to_disk(&x.name, &x.value).ok())
            .collect();
        match xattr::place(disk) {
            Ok(p) if p.block.is_empty() => {}
            _ => self.blocks += 1,
        }
    }

    /// The smallest filesystem size in bytes (a multiple of 4096) that
    /// holds everything counted so far with `headroom_bytes` of free space
    /// left, using `opts` for everything but the size.
    ///
    /// # Errors
    /// [`Error::TooManyInodes`] when `opts` fixes an inode count below what
    /// the tree needs; [`Error::InvalidOptions`] for unusable options.
    pub fn min_size_bytes(&self, opts: &Ext4Options, headroom_bytes: u64) -> Result<u64, Error> {
        let need_blocks = self.blocks_needed() + headroom_bytes.div_ceil(u64::from(BLOCK_SIZE));
        let need_inodes = self.inodes_needed();
        if let InodeSpec::Count(n) = opts.inodes {
            // Per-group rounding only ever adds inodes, but the cap of
            // 32768 per group may not be reachable for tiny sizes; the
            // search below handles that.
            if n < need_inodes {
                return Err(Error::TooManyInodes {
                    needed: need_inodes,
                    available: n,
                });
            }
        }
        let fits = |blocks: u64| -> bool {
            let o = opts.clone().size(blocks * u64::from(BLOCK_SIZE));
            match Layout::new(&o) {
                Ok(l) => {
                    let avail = l
                        .free_after_metadata()
                        .saturating_sub(l.fixed_overhead() + SLACK_BLOCKS);
                    avail >= need_blocks && l.inodes_count() >= need_inodes
                }
                Err(_) => false,
            }
        };
        let mut lo = MIN_BLOCKS;
        let mut hi = MIN_BLOCKS.max(1024);
        // The largest filesystem the layout accepts (2^32 - 1 blocks).
        let max_blocks = u64::from(u32::MAX);
        while !fits(hi) {
            lo = hi;
            hi = hi.saturating_mul(2);
            if hi > max_blocks {
                if fits(max_blocks) {
                    hi = max_blocks;
                    break;
                }
                // Say which of the two does not fit.
                return Err(if need_inodes > u64::from(u32::MAX) {
                    Error::TooManyInodes {
                        needed: need_inodes,
                        available: u64::from(u32::MAX),
                    }
                } else {
                    Error::InvalidOptions {
                        reason: "the tree and headroom need more than 16 TiB, \
                                 the largest ext4 filesystem this writer makes",
                    }
                });
            }
        }
        // Smallest fitting block count in (lo, hi].
        while lo + 1 < hi {
            let mid = lo + (hi - lo) / 2;
            if fits(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Ok(hi * u64::from(BLOCK_SIZE))
    }
}

/// Extra blocks kept in reserve for extent-tree nodes of the journal and
/// of directories that straddle metadata areas.
const SLACK_BLOCKS: u64 = 16;

impl TreeSink for Ext4Estimator {
    type Error = Error;
    fn add(&mut self, entry: &Entry, content: Content<'_>) -> Result<(), Error> {
        self.add_entry(entry, content.size());
        Ok(())
    }
}
