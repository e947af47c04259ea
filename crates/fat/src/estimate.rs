//! Sizing a volume before writing it: [`SizeEstimator`] collects what a
//! tree needs (file sizes, directory entry counts including long-name
//! entries) and finds the smallest volume size whose layout holds it.

use crate::layout::FatLayout;
use crate::name::{lfn_entry_count, plan_short, validate_long_name};
use crate::raw::DIR_ENTRY_SIZE;
use crate::writer::MAX_DIR_ENTRIES;
use crate::{Error, FatOptions, FatType};
use kiln_tree::{Content, Entry, EntryKind, TreePath, TreeSink};
use std::collections::{HashMap, HashSet};

/// Collects a tree's needs; feed it like a [`crate::FatWriter`] (as a
/// [`TreeSink`], which reads and discards stream content) or with
/// [`SizeEstimator::add_file`]/[`SizeEstimator::add_dir`].
///
/// ```
/// use kiln_fat::{FatOptions, SizeEstimator};
/// use kiln_tree::{Timestamp, TreePath};
/// let mut est = SizeEstimator::new();
/// est.add_file(&TreePath::parse(b"overlays/big.dtbo").unwrap(), 30 << 20).unwrap();
/// let min = est.min_size_bytes(&FatOptions::new(1, Timestamp::new(0, 0))).unwrap();
/// assert!(min > 30 << 20 && min < 32 << 20);
/// ```
#[derive(Debug)]
pub struct SizeEstimator {
    /// Directory path -> 32-byte entries its children need.
    dirs: HashMap<TreePath, u64>,
    seen: HashSet<TreePath>,
    files: Vec<u32>,
}

impl Default for SizeEstimator {
    fn default() -> Self {
        Self::new()
    }
}

impl SizeEstimator {
    /// An empty tree (just the root).
    pub fn new() -> Self {
        let mut dirs = HashMap::new();
        dirs.insert(TreePath::root(), 0);
        Self {
            dirs,
            seen: HashSet::new(),
            files: Vec::new(),
        }
    }

    fn register(&mut self, path: &TreePath) -> Result<bool, Error> {
        if path.is_root() || self.seen.contains(path) {
            return Ok(false);
        }
        let Some(parent) = path.parent() else {
            return Ok(false);
        };
        self.add_dir(&parent)?;
        let name = path.file_name().unwrap_or_default();
        let name = validate_long_name(name).map_err(|reason| Error::InvalidName {
            path: path.to_string(),
            reason,
        })?;
        let slots = 1 + if plan_short(name).needs_lfn() {
            lfn_entry_count(name) as u64
        } else {
            0
        };
        *self.dirs.entry(parent).or_insert(0) += slots;
        self.seen.insert(path.clone());
        Ok(true)
    }

    /// Counts a directory (and its missing parents).
    pub fn add_dir(&mut self, path: &TreePath) -> Result<(), Error> {
        if self.register(path)? {
            self.dirs.entry(path.clone()).or_insert(0);
        }
        Ok(())
    }

    /// Counts a regular file of `size_bytes`.
    pub fn add_file(&mut self, path: &TreePath, size_bytes: u64) -> Result<(), Error> {
        let size = u32::try_from(size_bytes).map_err(|_| Error::FileTooLarge {
            path: path.to_string(),
            size_bytes,
        })?;
        if self.register(path)? {
            self.files.push(size);
        }
        Ok(())
    }

    /// Bytes of clusters the tree needs with `layout`'s cluster size.
    fn bytes_needed(&self, layout: &FatLayout) -> u64 {
        let cb = u64::from(layout.cluster_bytes());
        let files: u64 = self.files.iter().map(|&s| u64::from(s).div_ceil(cb)).sum();
        let dirs: u64 = self
            .dirs
            .iter()
            .filter(|(p, _)| !(p.is_root() && layout.fat_type == FatType::Fat16))
            .map(|(p, &c)| {
                ((c + if p.is_root() { 1 } else { 2 }) * u64::from(DIR_ENTRY_SIZE))
                    .div_ceil(cb)
                    .max(1)
            })
            .sum();
        (files + dirs) * cb
    }

    /// Whether the tree fits a volume with `layout` (label entry assumed).
    fn fits(&self, layout: &FatLayout) -> bool {
        let cb = layout.cluster_bytes();
        let mut clusters: u64 = self.files.iter().map(|&s| u64::from(s.div_ceil(cb))).sum();
        for (path, &children) in &self.dirs {
            let entries = children + if path.is_root() { 1 } else { 2 };
            if path.is_root() && layout.fat_type == FatType::Fat16 {
                if entries > u64::from(layout.root_entries) {
                    return false;
                }
                continue;
            }
            if entries > MAX_DIR_ENTRIES {
                return false;
            }
            clusters += (entries * u64::from(DIR_ENTRY_SIZE))
                .div_ceil(u64::from(cb))
                .max(1);
        }
        clusters <= u64::from(layout.cluster_count)
    }

    /// The smallest volume size in bytes (a multiple of 64 KiB) whose
    /// layout under `opts` holds the tree, found by bisection over the
    /// sizes FAT can format. Layouts are close to monotonic in size; the
    /// result is verified to fit.
    pub fn min_size_bytes(&self, opts: &FatOptions) -> Result<u64, Error> {
        const STEP: u64 = 64 << 10;
        let fits = |units: u64| -> bool {
            FatLayout::compute(units * STEP, opts).is_ok_and(|l| self.fits(&l))
        };
        // The largest size the options allow (FAT16 stops near 4 GiB,
        // FAT32 at 2 TiB).
        let top = [u64::from(u32::MAX) * 512, 4 << 30, 2 << 30, 1 << 30]
            .into_iter()
            .map(|b| b / STEP)
            .find(|&u| FatLayout::compute(u * STEP, opts).is_ok());
        let Some(mut hi) = top else {
            // No size works at all: report the options' own error.
            return FatLayout::compute(u64::from(u32::MAX) * 512, opts).map(|_| 0);
        };
        if !fits(hi) {
            let layout = FatLayout::compute(hi * STEP, opts)?;
            return Err(Error::NoSpace {
                what: "/".to_owned(),
                needed_bytes: self.bytes_needed(&layout),
                available_bytes: u64::from(layout.cluster_count)
                    * u64::from(layout.cluster_bytes()),
            });
        }
        let mut lo = 1u64;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if fits(mid) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        // Non-monotonic corners (cluster size steps): walk up to a fit.
        let mut n = lo;
        while !fits(n) {
            n += 1;
        }
        Ok(n * STEP)
    }
}

impl TreeSink for SizeEstimator {
    type Error = Error;

    fn add(&mut self, entry: &Entry, content: Content<'_>) -> Result<(), Error> {
        match &entry.kind {
            EntryKind::Dir => self.add_dir(&entry.path),
            EntryKind::File => {
                let size = content.size();
                if let Content::Stream { reader, .. } = content {
                    std::io::copy(reader, &mut std::io::sink()).map_err(|source| {
                        Error::ContentIo {
                            path: entry.path.to_string(),
                            source,
                        }
                    })?;
                }
                self.add_file(&entry.path, size)
            }
            _ => Err(Error::Unsupported {
                path: entry.path.to_string(),
                kind: "non-regular file",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_tree::Timestamp;

    #[test]
    fn estimates_grow_with_content() {
        let opts = FatOptions::new(1, Timestamp::new(0, 0));
        let mut e = SizeEstimator::new();
        let empty = e.min_size_bytes(&opts).unwrap();
        assert!(empty <= 4 << 20, "{empty}");
        e.add_file(&TreePath::parse(b"a/b/c.bin").unwrap(), 10 << 20)
            .unwrap();
        let ten = e.min_size_bytes(&opts).unwrap();
        assert!(ten > 10 << 20 && ten < 12 << 20, "{ten}");
        let fat32 = e
            .min_size_bytes(&opts.clone().fat_type(FatType::Fat32))
            .unwrap();
        assert!(fat32 >= 32 << 20, "{fat32}");
        assert!(e
            .add_file(&TreePath::parse(b"x").unwrap(), 5 << 30)
            .is_err());
    }
}
