//! Feeding a whole existing filesystem to a [`TreeSink`].
//!
//! Order: the root first, then depth first with siblings sorted by raw
//! name bytes, parents always before their children, so the same
//! filesystem always yields the same sequence. A second name of a
//! multiply-linked inode becomes [`EntryKind::Hardlink`] to the first
//! name emitted.

use super::{corrupt, le32, Ext4Reader, FileReader, NodeKind, ROOT_INO};
use crate::Error;
use kiln_tree::{Content, Entry, EntryKind, Metadata, TreePath, TreeSink};
use kiln_units::ReadAt;
use std::collections::{HashMap, HashSet};

/// What the filter passed to [`Ext4Reader::feed`] decides for a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// Emit the entry (and walk into it if it is a directory).
    Keep,
    /// Emit nothing for this path and, for a directory, nothing below it.
    Skip,
}

/// What [`Ext4Reader::feed`] emitted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedReport {
    /// Entries given to the sink (the root included).
    pub entries: u64,
    /// Paths the filter skipped (a skipped directory counts once).
    pub skipped: u64,
    /// Bytes of regular-file content streamed (apparent sizes).
    pub content_bytes: u64,
}

fn path_str(p: &TreePath) -> String {
    String::from_utf8_lossy(&p.to_bytes()).into_owned()
}

/// Linux `dev_t` in `i_block`: old 16-bit form in word 0 (major << 8 |
/// minor), else the new form in word 1 (minor low 8 bits, major 12 bits,
/// minor high 12 bits).
fn device(i_block: &[u8; 60]) -> (u32, u32) {
    let old = le32(i_block, 0);
    if old != 0 {
        return ((old >> 8) & 0xff, old & 0xff);
    }
    let new = le32(i_block, 4);
    ((new >> 8) & 0xfff, (new & 0xff) | ((new >> 12) & 0xfff00))
}

fn add<S: TreeSink>(sink: &mut S, e: &Entry, c: Content<'_>) -> Result<(), Error> {
    sink.add(e, c).map_err(|source| Error::Sink {
        path: path_str(&e.path),
        source: Box::new(source),
    })
}

impl<R: ReadAt> Ext4Reader<R> {
    /// Feeds every entry of the filesystem to `sink` (see the module
    /// doc for the order), with mode, owner, all four times, extended
    /// attributes, symlink targets, device numbers and hardlinks. Regular
    /// files are streamed ([`Content::Stream`]); holes and unwritten
    /// extents read as zeros, which kiln's writer turns back into holes.
    ///
    /// `filter` is asked for every path except the root (which is always
    /// emitted) before anything is read from it; [`Visit::Skip`] on a
    /// directory skips its whole subtree. If the first name of a
    /// hardlinked inode is skipped, the next kept name carries the file.
    pub fn feed<S: TreeSink>(
        &self,
        sink: &mut S,
        mut filter: impl FnMut(&TreePath, NodeKind) -> Visit,
    ) -> Result<FeedReport, Error> {
        let mut rep = FeedReport::default();
        let mut links: HashMap<u32, TreePath> = HashMap::new();
        let mut seen_dirs: HashSet<u32> = HashSet::new();
        let mut stack: Vec<(u32, TreePath)> = vec![(ROOT_INO, TreePath::root())];
        while let Some((ino, path)) = stack.pop() {
            let node = self.inode(ino)?;
            let kind = node.kind()?;
            if !path.is_root() && filter(&path, kind) == Visit::Skip {
                rep.skipped += 1;
                continue;
            }
            if path.is_root() && kind != NodeKind::Dir {
                return Err(corrupt(ino, "root inode is not a directory"));
            }
            if node.links == 0 && kind != NodeKind::Dir {
                return Err(corrupt(ino, "linked inode with a zero link count"));
            }
            let meta = Metadata {
                mode: u32::from(node.mode) & 0o7777,
                uid: node.uid,
                gid: node.gid,
                atime: node.atime,
                mtime: node.mtime,
                ctime: node.ctime,
                crtime: node.crtime,
                xattrs: self.xattrs(&node)?,
            };
            rep.entries += 1;
            if kind != NodeKind::Dir && node.links > 1 {
                if let Some(first) = links.get(&ino) {
                    let e = Entry::new(
                        path,
                        EntryKind::Hardlink {
                            target: first.clone(),
                        },
                        meta,
                    );
                    add(sink, &e, Content::None)?;
                    continue;
                }
                links.insert(ino, path.clone());
            }
            let ekind = match kind {
                NodeKind::Dir => EntryKind::Dir,
                NodeKind::File => EntryKind::File,
                NodeKind::Symlink => EntryKind::Symlink {
                    target: self.symlink_target(&node)?,
                },
                NodeKind::CharDev | NodeKind::BlockDev => {
                    let (major, minor) = device(&node.i_block);
                    if kind == NodeKind::CharDev {
                        EntryKind::CharDev { major, minor }
                    } else {
                        EntryKind::BlockDev { major, minor }
                    }
                }
                NodeKind::Fifo => EntryKind::Fifo,
                NodeKind::Socket => EntryKind::Socket,
            };
            let e = Entry::new(path, ekind, meta);
            match kind {
                NodeKind::File => {
                    let mut r = FileReader::new(self, &node)?;
                    rep.content_bytes += node.size;
                    add(
                        sink,
                        &e,
                        Content::Stream {
                            size: node.size,
                            reader: &mut r,
                        },
                    )?;
                }
                NodeKind::Dir => {
                    if !seen_dirs.insert(ino) {
                        return Err(corrupt(ino, "directory reached twice (cycle)"));
                    }
                    add(sink, &e, Content::None)?;
                    let children = self.dir_entries(&node)?;
                    for (name, child) in children.into_iter().rev() {
                        let p = e
                            .path
                            .join(&name)
                            .map_err(|_| corrupt(ino, "directory entry name not storable"))?;
                        stack.push((child, p));
                    }
                }
                _ => add(sink, &e, Content::None)?,
            }
        }
        Ok(rep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers() {
        let mut b = [0u8; 60];
        b[0..4].copy_from_slice(&((8u32 << 8) | 1).to_le_bytes());
        assert_eq!(device(&b), (8, 1));
        let mut b = [0u8; 60];
        let (major, minor) = (300u32, 70000u32);
        let v = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
        b[4..8].copy_from_slice(&v.to_le_bytes());
        assert_eq!(device(&b), (major, minor));
        assert_eq!(device(&[0; 60]), (0, 0));
    }
}
