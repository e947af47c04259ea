//! Entries of the file-tree model.

use crate::TreePath;
use std::io::Read;

/// A point in time: seconds since the Unix epoch plus nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Whole seconds since 1970-01-01T00:00:00Z (may be negative).
    pub secs: i64,
    /// Nanoseconds within the second, `0..1_000_000_000`.
    pub nanos: u32,
}

impl Timestamp {
    /// A timestamp; `nanos` is clamped to below one second.
    pub const fn new(secs: i64, nanos: u32) -> Self {
        let nanos = if nanos > 999_999_999 {
            999_999_999
        } else {
            nanos
        };
        Self { secs, nanos }
    }
    /// The earlier of `self` and `limit` (the SOURCE_DATE_EPOCH clamp).
    pub fn clamp_to(self, limit: Timestamp) -> Self {
        self.min(limit)
    }
}

/// One extended attribute: the full name including its namespace prefix
/// (`security.capability`, `trusted.overlay.opaque`, `user.foo`,
/// `system.posix_acl_access`) and the raw value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Xattr {
    /// Full attribute name, e.g. `b"security.capability"`.
    pub name: Vec<u8>,
    /// Raw value bytes.
    pub value: Vec<u8>,
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file; its bytes come with the entry as [`Content`].
    File,
    /// A directory.
    Dir,
    /// A symbolic link with its raw target (may be absolute or dangling).
    Symlink {
        /// The link target bytes.
        target: Vec<u8>,
    },
    /// Another name for a regular file (or other non-directory) that was
    /// added earlier under `target`.
    Hardlink {
        /// The path added earlier.
        target: TreePath,
    },
    /// A character device (`0:0` is an overlayfs whiteout).
    CharDev {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A block device.
    BlockDev {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
    /// A Unix domain socket.
    Socket,
}

impl EntryKind {
    /// The `S_IFMT` file type bits (`0o170000` mask) for this kind;
    /// hardlinks have none of their own and return 0.
    pub fn type_bits(&self) -> u32 {
        match self {
            EntryKind::File => 0o100000,
            EntryKind::Dir => 0o040000,
            EntryKind::Symlink { .. } => 0o120000,
            EntryKind::Hardlink { .. } => 0,
            EntryKind::CharDev { .. } => 0o020000,
            EntryKind::BlockDev { .. } => 0o060000,
            EntryKind::Fifo => 0o010000,
            EntryKind::Socket => 0o140000,
        }
    }
}

/// Ownership, permissions, times and extended attributes of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Permission bits including setuid/setgid/sticky (`0o7777` mask);
    /// the file type comes from [`EntryKind`].
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Last access time.
    pub atime: Timestamp,
    /// Last modification time.
    pub mtime: Timestamp,
    /// Last status change time.
    pub ctime: Timestamp,
    /// Creation time.
    pub crtime: Timestamp,
    /// Extended attributes, in the order the writer should store them.
    pub xattrs: Vec<Xattr>,
}

impl Metadata {
    /// Root-owned metadata with `mode` and every time set to `time`.
    pub fn new(mode: u32, time: Timestamp) -> Self {
        Self {
            mode: mode & 0o7777,
            uid: 0,
            gid: 0,
            atime: time,
            mtime: time,
            ctime: time,
            crtime: time,
            xattrs: Vec::new(),
        }
    }
    /// Sets every time field to `time`.
    pub fn with_time(mut self, time: Timestamp) -> Self {
        self.atime = time;
        self.mtime = time;
        self.ctime = time;
        self.crtime = time;
        self
    }
    /// Sets the owner.
    pub fn with_owner(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }
    /// Clamps every time to at most `limit` (SOURCE_DATE_EPOCH semantics).
    pub fn clamp_times(&mut self, limit: Timestamp) {
        self.atime = self.atime.clamp_to(limit);
        self.mtime = self.mtime.clamp_to(limit);
        self.ctime = self.ctime.clamp_to(limit);
        self.crtime = self.crtime.clamp_to(limit);
    }
}

/// One path of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Where it goes, relative to the filesystem root.
    pub path: TreePath,
    /// What it is.
    pub kind: EntryKind,
    /// Its metadata.
    pub meta: Metadata,
}

impl Entry {
    /// An entry.
    pub fn new(path: TreePath, kind: EntryKind, meta: Metadata) -> Self {
        Self { path, kind, meta }
    }
}

/// The bytes of a regular file, streamed from their source.
pub enum Content<'a> {
    /// Not a regular file (or an empty one).
    None,
    /// Exactly `size` bytes to read from `reader`, in order. Writers may
    /// leave all-zero filesystem blocks as holes.
    Stream {
        /// Length in bytes.
        size: u64,
        /// Yields exactly `size` bytes.
        reader: &'a mut dyn Read,
    },
    /// A small file held in memory (generated files such as `config.json`).
    Bytes {
        /// The whole file.
        data: &'a [u8],
    },
    /// A file of `size` bytes whose first `head.len()` bytes are `head`
    /// and the rest reads as zeros but must be *allocated* (no holes):
    /// written as unwritten extents by filesystems that have them. This is
    /// what a swapfile needs.
    Preallocated {
        /// Length in bytes.
        size: u64,
        /// The bytes at the start of the file.
        head: &'a [u8],
    },
}

impl<'a> Content<'a> {
    /// Content from an in-memory buffer.
    pub fn bytes(data: &'a [u8]) -> Content<'a> {
        Content::Bytes { data }
    }

    /// The file size in bytes (0 for [`Content::None`]).
    pub fn size(&self) -> u64 {
        match self {
            Content::None => 0,
            Content::Stream { size, .. } | Content::Preallocated { size, .. } => *size,
            Content::Bytes { data } => data.len() as u64,
        }
    }
}

impl std::fmt::Debug for Content<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Content::None => f.write_str("Content::None"),
            Content::Stream { size, .. } => write!(f, "Content::Stream({size} bytes)"),
            Content::Preallocated { size, head } => {
                write!(
                    f,
                    "Content::Preallocated({size} bytes, {} head)",
                    head.len()
                )
            }
            Content::Bytes { data } => write!(f, "Content::Bytes({} bytes)", data.len()),
        }
    }
}
