//! What the caller chooses about the filesystem: size, identity, density,
//! journal, and the metadata of the directories mke2fs creates itself.

use kiln_tree::{Metadata, Timestamp};

/// Filesystem block size in bytes. Only 4 KiB blocks are written (what
/// mke2fs picks for anything but tiny filesystems).
pub const BLOCK_SIZE: u32 = 4096;

/// How many inodes the filesystem gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InodeSpec {
    /// One inode per this many bytes of filesystem (mke2fs `-i`); at least
    /// 4096 (one block).
    Ratio(u64),
    /// At least this many inodes in total (mke2fs `-N`), rounded up to
    /// fill whole inode-table blocks in every group.
    Count(u64),
}

/// Whether and how large the internal journal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalSpec {
    /// No journal (`has_journal` off).
    None,
    /// Sized like mke2fs does for the filesystem size (4 MiB .. 1 GiB).
    Default,
    /// Exactly this many 4 KiB blocks (at least 1024).
    Blocks(u32),
}

/// Parameters of one ext4 filesystem.
///
/// ```
/// use kiln_ext4::Ext4Options;
/// let opts = Ext4Options::new(256 << 20)
///     .label("data")
///     .uuid([7; 16])
///     .hash_seed([9; 16])
///     .inode_ratio(8192)
///     .reserved_percent(0);
/// assert_eq!(opts.size_bytes(), 256 << 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ext4Options {
    pub(crate) size_bytes: u64,
    pub(crate) label: [u8; 16],
    pub(crate) uuid: [u8; 16],
    pub(crate) hash_seed: [u8; 16],
    pub(crate) inodes: InodeSpec,
    pub(crate) reserved_percent: u8,
    pub(crate) journal: JournalSpec,
    pub(crate) timestamp: Timestamp,
    pub(crate) root: Metadata,
    pub(crate) lost_found: Metadata,
}

impl Ext4Options {
    /// Options for a filesystem of `size_bytes` bytes (rounded down to
    /// whole 4 KiB blocks), with mke2fs defaults: inode ratio 16384,
    /// 5 % reserved, default journal, all-zero UUID and hash seed, epoch 0
    /// timestamps, root 0755 and lost+found 0700 owned by root.
    pub fn new(size_bytes: u64) -> Self {
        let t = Timestamp::new(0, 0);
        Self {
            size_bytes,
            label: [0; 16],
            uuid: [0; 16],
            hash_seed: [0; 16],
            inodes: InodeSpec::Ratio(16384),
            reserved_percent: 5,
            journal: JournalSpec::Default,
            timestamp: t,
            root: Metadata::new(0o755, t),
            lost_found: Metadata::new(0o700, t),
        }
    }
    /// Sets the size in bytes.
    pub fn size(mut self, size_bytes: u64) -> Self {
        self.size_bytes = size_bytes;
        self
    }
    /// The size in bytes as given.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
    /// Sets the volume label (at most 16 bytes; longer labels are cut).
    pub fn label(mut self, label: &str) -> Self {
        let mut l = [0u8; 16];
        let b = label.as_bytes();
        let n = b.len().min(16);
        l[..n].copy_from_slice(&b[..n]);
        self.label = l;
        self
    }
    /// Sets the filesystem UUID (raw bytes as stored in `s_uuid`).
    pub fn uuid(mut self, uuid: [u8; 16]) -> Self {
        self.uuid = uuid;
        self
    }
    /// Sets the directory hash seed (raw bytes as stored in
    /// `s_hash_seed`); all zeros means the kernel's default seed.
    pub fn hash_seed(mut self, seed: [u8; 16]) -> Self {
        self.hash_seed = seed;
        self
    }
    /// One inode per `bytes` bytes (mke2fs `-i`).
    pub fn inode_ratio(mut self, bytes: u64) -> Self {
        self.inodes = InodeSpec::Ratio(bytes);
        self
    }
    /// At least `count` inodes (mke2fs `-N`).
    pub fn inode_count(mut self, count: u64) -> Self {
        self.inodes = InodeSpec::Count(count);
        self
    }
    /// Percentage of blocks reserved for root (mke2fs `-m`), 0..=50.
    pub fn reserved_percent(mut self, pct: u8) -> Self {
        self.reserved_percent = pct;
        self
    }
    /// Journal on/off/size.
    pub fn journal(mut self, journal: JournalSpec) -> Self {
        self.journal = journal;
        self
    }
    /// The time used for filesystem-level times (superblock mkfs/write
    /// time, journal and resize inodes) and for directories created
    /// implicitly.
    pub fn timestamp(mut self, t: Timestamp) -> Self {
        self.timestamp = t;
        self
    }
    /// Metadata of the root directory unless the tree has an entry for it
    /// (the mode's type bits are ignored).
    pub fn root_metadata(mut self, meta: Metadata) -> Self {
        self.root = meta;
        self
    }
    /// Metadata of `lost+found` unless the tree has an entry for it.
    pub fn lost_found_metadata(mut self, meta: Metadata) -> Self {
        self.lost_found = meta;
        self
    }
    /// The filesystem timestamp.
    pub fn fs_timestamp(&self) -> Timestamp {
        self.timestamp
    }
}
