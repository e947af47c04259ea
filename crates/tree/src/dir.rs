//! A directory on the build machine as a tree source.
//!
//! Entries are produced parents first, siblings sorted by raw name bytes,
//! so the same directory always yields the same sequence (and therefore
//! the same image). A second name of a multiply-linked inode becomes an
//! [`EntryKind::Hardlink`] to the first name seen.

use crate::{
    Content, Entry, EntryKind, Error, Metadata, SourceError, SourceOptions, Timestamp, TreePath,
    TreeSink, Xattr,
};
use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Walks a directory and feeds every entry below it (and the root itself,
/// as the empty path) to a sink.
#[derive(Debug, Clone)]
pub struct DirSource {
    root: PathBuf,
    opts: SourceOptions,
}

fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Splits a Linux `dev_t` into (major, minor) as glibc's `gnu_dev_major`.
pub fn split_dev(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (
        u32::try_from(major).unwrap_or(u32::MAX),
        u32::try_from(minor).unwrap_or(u32::MAX),
    )
}

impl DirSource {
    /// A source for the directory `root`.
    pub fn new(root: impl Into<PathBuf>, opts: SourceOptions) -> Self {
        Self {
            root: root.into(),
            opts,
        }
    }

    /// Feeds every entry to `sink`.
    pub fn feed<S: TreeSink>(&self, sink: &mut S) -> Result<(), SourceError<S::Error>> {
        let md =
            fs::symlink_metadata(&self.root).map_err(io(&self.root, "cannot read directory"))?;
        if !md.is_dir() {
            return Err(Error::Io {
                path: self.root.clone(),
                op: "not a directory",
                source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
            }
            .into());
        }
        let mut links: HashMap<(u64, u64), TreePath> = HashMap::new();
        // Explicit stack instead of recursion: depth is bounded by memory,
        // not by the thread's stack.
        let mut stack: Vec<(PathBuf, TreePath)> = vec![(self.root.clone(), TreePath::root())];
        while let Some((host, path)) = stack.pop() {
            let md = fs::symlink_metadata(&host).map_err(io(&host, "cannot stat"))?;
            let is_dir = md.is_dir();
            self.emit(&host, &path, &md, &mut links, sink)?;
            if is_dir {
                let mut names: Vec<_> = fs::read_dir(&host)
                    .map_err(io(&host, "cannot list directory"))?
                    .map(|e| e.map(|e| e.file_name()))
                    .collect::<Result<_, _>>()
                    .map_err(io(&host, "cannot list directory"))?;
                names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
                // Reverse so the stack pops them in sorted order.
                for name in names.into_iter().rev() {
                    let child = path.join(name.as_bytes())?;
                    stack.push((host.join(&name), child));
                }
            }
        }
        Ok(())
    }

    fn emit<S: TreeSink>(
        &self,
        host: &Path,
        path: &TreePath,
        md: &fs::Metadata,
        links: &mut HashMap<(u64, u64), TreePath>,
        sink: &mut S,
    ) -> Result<(), SourceError<S::Error>> {
        let mut meta = metadata_of(host, md)?;
        self.opts.apply(&mut meta);
        let ft = md.file_type();
        if !ft.is_dir() && md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = links.get(&key) {
                let e = Entry::new(
                    path.clone(),
                    EntryKind::Hardlink {
                        target: first.clone(),
                    },
                    meta,
                );
                return sink.add(&e, Content::None).map_err(SourceError::Sink);
            }
            links.insert(key, path.clone());
        }
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File
        } else if ft.is_symlink() {
            let t = fs::read_link(host).map_err(io(host, "cannot read symlink"))?;
            EntryKind::Symlink {
                target: t.as_os_str().as_bytes().to_vec(),
            }
        } else if ft.is_char_device() || ft.is_block_device() {
            let (major, minor) = split_dev(md.rdev());
            if ft.is_char_device() {
                EntryKind::CharDev { major, minor }
            } else {
                EntryKind::BlockDev { major, minor }
            }
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else {
            EntryKind::Socket
        };
        let entry = Entry::new(path.clone(), kind, meta);
        if entry.kind == EntryKind::File {
            let mut f = File::open(host).map_err(io(host, "cannot open"))?;
            let size = md.len();
            sink.add(
                &entry,
                Content::Stream {
                    size,
                    reader: &mut f,
                },
            )
            .map_err(SourceError::Sink)
        } else {
            sink.add(&entry, Content::None).map_err(SourceError::Sink)
        }
    }
}

fn metadata_of(host: &Path, md: &fs::Metadata) -> Result<Metadata, Error> {
    let ts = |s: i64, n: i64| Timestamp::new(s, u32::try_from(n).unwrap_or(0));
    let mut xattrs = Vec::new();
    // Symlinks carry no user-settable xattrs on Linux; listing them is
    // still allowed (xattr uses the l* calls and never follows links).
    let names = xattr::list(host).map_err(io(host, "cannot list xattrs"))?;
    for name in names {
        if let Some(value) = xattr::get(host, &name).map_err(io(host, "cannot read xattr"))? {
            xattrs.push(Xattr {
                name: name.as_bytes().to_vec(),
                value,
            });
        }
    }
    xattrs.sort();
    let mtime = ts(md.mtime(), md.mtime_nsec());
    Ok(Metadata {
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        atime: ts(md.atime(), md.atime_nsec()),
        mtime,
        ctime: ts(md.ctime(), md.ctime_nsec()),
        crtime: mtime,
        xattrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Rec(Vec<(String, EntryKind, Vec<u8>)>);
    impl TreeSink for Rec {
        type Error = std::io::Error;
        fn add(&mut self, e: &Entry, c: Content<'_>) -> Result<(), Self::Error> {
            let mut data = Vec::new();
            if let Content::Stream { reader, .. } = c {
                reader.read_to_end(&mut data)?;
            }
            self.0.push((e.path.to_string(), e.kind.clone(), data));
            Ok(())
        }
    }

    #[test]
    fn walks_sorted_with_hardlinks() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("b")).unwrap();
        fs::write(d.path().join("b/z"), b"zz").unwrap();
        fs::write(d.path().join("a"), b"aa").unwrap();
        fs::hard_link(d.path().join("a"), d.path().join("c")).unwrap();
        std::os::unix::fs::symlink("a", d.path().join("d")).unwrap();
        let mut rec = Rec::default();
        DirSource::new(d.path(), SourceOptions::default())
            .feed(&mut rec)
            .unwrap();
        let paths: Vec<_> = rec.0.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(paths, ["/", "/a", "/b", "/b/z", "/c", "/d"]);
        assert_eq!(rec.0[1].2, b"aa");
        assert_eq!(
            rec.0[4].1,
            EntryKind::Hardlink {
                target: TreePath::parse(b"a").unwrap()
            }
        );
        assert_eq!(
            rec.0[5].1,
            EntryKind::Symlink {
                target: b"a".to_vec()
            }
        );
    }

    #[test]
    fn dev_split() {
        // makedev(8, 1) and makedev(259, 65536)
        assert_eq!(split_dev(0x801), (8, 1));
        let rdev: u64 = (259 << 8) | ((65536u64 & !0xff) << 12);
        assert_eq!(split_dev(rdev), (259, 65536));
    }
}
