//! A test-only TreeSink that writes entries into a real directory, as
//! root: device nodes with mknod, trusted.*/security.* xattrs, lchown,
//! modes, hardlinks, symlinks and times. Directory metadata is applied at
//! the end (deepest first) so children do not disturb it.

use kiln_tree::{Content, Entry, EntryKind, Metadata, TreeSink};
use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, CWD};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub struct DirSink {
    pub root: PathBuf,
    dirs: BTreeMap<Vec<Vec<u8>>, Metadata>,
}

fn ts(t: kiln_tree::Timestamp) -> Timespec {
    Timespec {
        tv_sec: t.secs,
        tv_nsec: t.nanos.into(),
    }
}

impl DirSink {
    pub fn new(root: &Path) -> Self {
        std::fs::create_dir_all(root).unwrap();
        Self {
            root: root.to_path_buf(),
            dirs: BTreeMap::new(),
        }
    }

    fn host(&self, e: &kiln_tree::TreePath) -> PathBuf {
        let mut p = self.root.clone();
        for c in e.components() {
            p.push(std::ffi::OsStr::from_bytes(c));
        }
        p
    }

    fn meta(path: &Path, m: &Metadata, is_link: bool) -> std::io::Result<()> {
        std::os::unix::fs::lchown(path, Some(m.uid), Some(m.gid))?;
        if !is_link {
            rustix::fs::chmod(path, Mode::from_raw_mode(m.mode))?;
        }
        for x in &m.xattrs {
            xattr::set(path, std::ffi::OsStr::from_bytes(&x.name), &x.value)?;
        }
        let t = Timestamps {
            last_access: ts(m.atime),
            last_modification: ts(m.mtime),
        };
        rustix::fs::utimensat(CWD, path, &t, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }

    /// Applies directory metadata, deepest first.
    pub fn finish(mut self) -> std::io::Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for (comps, m) in dirs.iter().rev() {
            let mut p = self.root.clone();
            for c in comps {
                p.push(std::ffi::OsStr::from_bytes(c));
            }
            Self::meta(&p, m, false)?;
        }
        Ok(())
    }
}

impl TreeSink for DirSink {
    type Error = std::io::Error;
    fn add(&mut self, e: &Entry, content: Content<'_>) -> Result<(), Self::Error> {
        let p = self.host(&e.path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match &e.kind {
            EntryKind::Dir => {
                std::fs::create_dir_all(&p)?;
                self.dirs.insert(
                    e.path.components().map(<[u8]>::to_vec).collect(),
                    e.meta.clone(),
                );
                return Ok(());
            }
            EntryKind::File => {
                let _ = std::fs::remove_file(&p);
                let mut f = std::fs::File::create(&p)?;
                match content {
                    Content::Stream { reader, size } => {
                        let n = std::io::copy(reader, &mut f)?;
                        assert_eq!(n, size, "short stream for {}", e.path);
                    }
                    Content::Bytes { data } => f.write_all(data)?,
                    Content::None => {}
                    Content::Preallocated { size, head } => {
                        f.write_all(head)?;
                        f.set_len(size)?;
                    }
                }
            }
            EntryKind::Symlink { target } => {
                let _ = std::fs::remove_file(&p);
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &p)?;
                return Self::meta(&p, &e.meta, true);
            }
            EntryKind::Hardlink { target } => {
                let _ = std::fs::remove_file(&p);
                return std::fs::hard_link(self.host(target), &p);
            }
            EntryKind::CharDev { major, minor } => {
                rustix::fs::mknodat(
                    CWD,
                    &p,
                    FileType::CharacterDevice,
                    Mode::from_raw_mode(e.meta.mode),
                    rustix::fs::makedev(*major, *minor),
                )?;
            }
            EntryKind::BlockDev { major, minor } => {
                rustix::fs::mknodat(
                    CWD,
                    &p,
                    FileType::BlockDevice,
                    Mode::from_raw_mode(e.meta.mode),
                    rustix::fs::makedev(*major, *minor),
                )?;
            }
            EntryKind::Fifo => {
                rustix::fs::mknodat(CWD, &p, FileType::Fifo, Mode::from_raw_mode(e.meta.mode), 0)?;
            }
            EntryKind::Socket => return Ok(()),
        }
        Self::meta(&p, &e.meta, false)
    }
}
