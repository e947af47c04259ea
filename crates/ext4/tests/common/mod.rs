//! Shared helpers for the validator-driven tests: an in-memory tree
//! description, feeding it to a sink, running e2fsprogs and reading the
//! result back with debugfs and ext4-view.
#![allow(dead_code)]

use kiln_ext4::{Ext4Options, Ext4Writer};
use kiln_tree::{Content, Entry, EntryKind, Metadata, Timestamp, TreePath, TreeSink, Xattr};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Content of a file in a test tree.
#[derive(Debug, Clone)]
pub enum Body {
    None,
    Bytes(Vec<u8>),
    /// `size` bytes of zeros with `pieces` of data at their offsets.
    Sparse {
        size: u64,
        pieces: Vec<(u64, Vec<u8>)>,
    },
    Prealloc {
        size: u64,
        head: Vec<u8>,
    },
}

impl Body {
    pub fn size(&self) -> u64 {
        match self {
            Body::None => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::Sparse { size, .. } | Body::Prealloc { size, .. } => *size,
        }
    }
    /// Bytes `[from, from+len)` of the logical content.
    pub fn range(&self, from: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        match self {
            Body::None => {}
            Body::Bytes(b) => {
                let s = (from as usize).min(b.len());
                let e = (s + len).min(b.len());
                v[..e - s].copy_from_slice(&b[s..e]);
            }
            Body::Sparse { pieces, .. } => {
                for (off, p) in pieces {
                    let (ps, pe) = (*off, *off + p.len() as u64);
                    let (s, e) = (ps.max(from), pe.min(from + len as u64));
                    if s < e {
                        v[(s - from) as usize..(e - from) as usize]
                            .copy_from_slice(&p[(s - ps) as usize..(e - ps) as usize]);
                    }
                }
            }
            Body::Prealloc { head, .. } => {
                let s = (from as usize).min(head.len());
                let e = (s + len).min(head.len());
                v[..e - s].copy_from_slice(&head[s..e]);
            }
        }
        v
    }
}

/// Streams a sparse body.
struct SparseReader<'a> {
    body: &'a Body,
    pos: u64,
}

impl Read for SparseReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.body.size() - self.pos;
        let n = (buf.len() as u64).min(left).min(1 << 20) as usize;
        let d = self.body.range(self.pos, n);
        buf[..n].copy_from_slice(&d);
        self.pos += n as u64;
        Ok(n)
    }
}

#[derive(Debug, Clone)]
pub struct Item {
    pub entry: Entry,
    pub body: Body,
}

pub fn t(secs: i64, nanos: u32) -> Timestamp {
    Timestamp::new(secs, nanos)
}

pub fn meta(mode: u32) -> Metadata {
    let mut m = Metadata::new(mode, t(1_700_000_000, 123_456_789));
    m.atime = t(1_700_000_001, 1);
    m.ctime = t(1_700_000_002, 2);
    m.crtime = t(1_600_000_000, 999_999_999);
    m
}

pub fn item(path: &str, kind: EntryKind, m: Metadata, body: Body) -> Item {
    Item {
        entry: Entry::new(TreePath::parse(path.as_bytes()).unwrap(), kind, m),
        body,
    }
}

pub fn file(path: &str, data: &[u8]) -> Item {
    item(
        path,
        EntryKind::File,
        meta(0o644),
        Body::Bytes(data.to_vec()),
    )
}

pub fn dir(path: &str) -> Item {
    item(path, EntryKind::Dir, meta(0o755), Body::None)
}

pub fn xa(name: &str, value: &[u8]) -> Xattr {
    Xattr {
        name: name.as_bytes().to_vec(),
        value: value.to_vec(),
    }
}

pub fn feed<S: TreeSink>(items: &[Item], sink: &mut S) -> Result<(), S::Error> {
    for it in items {
        let content = match &it.body {
            Body::None => Content::None,
            Body::Bytes(b) => Content::Bytes { data: b },
            Body::Sparse { size, .. } => {
                let mut r = SparseReader {
                    body: &it.body,
                    pos: 0,
                };
                sink.add(
                    &it.entry,
                    Content::Stream {
                        size: *size,
                        reader: &mut r,
                    },
                )?;
                continue;
            }
            Body::Prealloc { size, head } => Content::Preallocated { size: *size, head },
        };
        sink.add(&it.entry, content)?;
    }
    Ok(())
}

/// Path of a required tool; fails naming the Debian package.
pub fn tool(name: &str, package: &str) -> PathBuf {
    kiln_testkit::require(name, package)
}

/// Writes `items` into a new sparse image file of `opts.size_bytes()`.
pub fn write_image(dir: &Path, name: &str, items: &[Item], opts: Ext4Options) -> PathBuf {
    let path = dir.join(name);
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(opts.size_bytes()).unwrap();
    let mut w = Ext4Writer::new(f, opts).unwrap();
    feed(items, &mut w).unwrap();
    w.finish().unwrap();
    path
}

/// `e2fsck -fn`: exit 0 and nothing but the pass headers and summary.
pub fn e2fsck_clean(img: &Path) {
    let out = Command::new(tool("e2fsck", "e2fsprogs"))
        .arg("-fn")
        .arg(img)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let noise: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with("Pass ") && !l.contains(" files (") && !l.trim().is_empty())
        .collect();
    assert!(
        out.status.success() && noise.is_empty(),
        "e2fsck -fn {} failed ({}):\n{stdout}\n{stderr}",
        img.display(),
        out.status
    );
}

pub fn debugfs(img: &Path, cmd: &str) -> String {
    let out = Command::new(tool("debugfs", "e2fsprogs"))
        .arg("-R")
        .arg(cmd)
        .arg(img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "debugfs {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Raw value of one xattr via `debugfs ea_get -f`.
pub fn debugfs_xattr(img: &Path, path: &str, name: &str) -> Option<Vec<u8>> {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    let cmd = format!("ea_get -f {} \"/{}\" {}", tmp.path().display(), path, name);
    let out = Command::new(tool("debugfs", "e2fsprogs"))
        .arg("-R")
        .arg(&cmd)
        .arg(img)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("not found") || err.contains("Extended attribute key not found") {
        return None;
    }
    Some(std::fs::read(tmp.path()).unwrap())
}

/// The final state of a tree: later entries replace earlier ones;
/// hardlinks resolve to their target's item.
pub fn final_state(items: &[Item]) -> BTreeMap<Vec<u8>, Item> {
    let mut m: BTreeMap<Vec<u8>, Item> = BTreeMap::new();
    for it in items {
        let key = it.entry.path.to_bytes();
        let resolved = match &it.entry.kind {
            EntryKind::Hardlink { target } => m.get(&target.to_bytes()).cloned().unwrap(),
            EntryKind::Dir => match m.get(&key) {
                Some(old) if old.entry.kind == EntryKind::Dir => it.clone(),
                _ => it.clone(),
            },
            _ => it.clone(),
        };
        m.insert(key, resolved);
    }
    m
}

fn kind_matches(k: &EntryKind, ft: ext4_view::FileType) -> bool {
    use ext4_view::FileType as F;
    matches!(
        (k, ft),
        (EntryKind::File, F::Regular)
            | (EntryKind::Dir, F::Directory)
            | (EntryKind::Symlink { .. }, F::Symlink)
            | (EntryKind::CharDev { .. }, F::CharacterDevice)
            | (EntryKind::BlockDev { .. }, F::BlockDevice)
            | (EntryKind::Fifo, F::Fifo)
            | (EntryKind::Socket, F::Socket)
    )
}

/// Checks every path's kind, mode, owner, times, content and link target
/// with ext4-view, and (if `xattrs`) every xattr with debugfs.
pub fn verify(img: &Path, items: &[Item], xattrs: bool) {
    let fs = ext4_view::Ext4::load_from_path(img).unwrap();
    for (key, it) in final_state(items) {
        let p = format!("/{}", String::from_utf8(key.clone()).unwrap());
        let m = &it.entry.meta;
        // ext4-view 1.0 refuses 32-bit seconds with the top bit set (times
        // after 2038 or before 1970); those paths are checked by debugfs
        // and the kernel instead.
        let late = |x: kiln_tree::Timestamp| !(0..=i64::from(i32::MAX)).contains(&x.secs);
        if late(m.atime) || late(m.mtime) || late(m.ctime) || late(m.crtime) {
            continue;
        }
        let md = fs
            .symlink_metadata(p.as_str())
            .unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(
            kind_matches(&it.entry.kind, md.file_type()),
            "{p}: kind {:?}",
            md.file_type()
        );
        assert_eq!(u32::from(md.mode()) & 0o7777, m.mode & 0o7777, "{p}: mode");
        assert_eq!((md.uid(), md.gid()), (m.uid, m.gid), "{p}: owner");
        let mt = md.modified();
        assert_eq!(
            (mt.seconds(), mt.nanoseconds()),
            (m.mtime.secs, m.mtime.nanos),
            "{p}: mtime"
        );
        let at = md.accessed();
        assert_eq!(
            (at.seconds(), at.nanoseconds()),
            (m.atime.secs, m.atime.nanos),
            "{p}: atime"
        );
        let ct = md.created().unwrap();
        assert_eq!(
            (ct.seconds(), ct.nanoseconds()),
            (m.crtime.secs, m.crtime.nanos),
            "{p}: crtime"
        );
        match &it.entry.kind {
            EntryKind::File => {
                assert_eq!(md.len(), it.body.size(), "{p}: size");
                if it.body.size() <= 64 << 20 {
                    let got = fs.read(p.as_str()).unwrap();
                    assert!(
                        got == it.body.range(0, it.body.size() as usize),
                        "{p}: content differs"
                    );
                }
            }
            EntryKind::Symlink { target } => {
                let got = fs.read_link(p.as_str()).unwrap();
                assert_eq!(got.as_ref(), target.as_slice(), "{p}: target");
            }
            _ => {}
        }
        if xattrs {
            for x in &m.xattrs {
                let name = String::from_utf8(x.name.clone()).unwrap();
                let got = debugfs_xattr(img, &p[1..], &name);
                let want = if name.starts_with("system.posix_acl_") {
                    debugfs_acl_form(&x.value)
                } else {
                    x.value.clone()
                };
                assert_eq!(got.as_deref(), Some(want.as_slice()), "{p}: xattr {name}");
            }
        }
    }
}

/// debugfs converts ext4 ACLs back to the xattr form with id 0 for the
/// entries that have no id on disk (owner, group, mask, other).
pub fn debugfs_acl_form(v: &[u8]) -> Vec<u8> {
    let mut out = v[..4].to_vec();
    for e in v[4..].chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        out.extend_from_slice(&e[..4]);
        if tag == 2 || tag == 8 {
            out.extend_from_slice(&e[4..]);
        } else {
            out.extend_from_slice(&[0; 4]);
        }
    }
    out
}
