//! The crate's one error type.

use std::io;

/// Everything that can go wrong while writing an ext4 filesystem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Writing the output failed.
    #[error("writing ext4 output at byte offset {offset}")]
    Io {
        /// Byte offset in the target region.
        offset: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading a file's content from its source failed.
    #[error("reading content of {path:?}")]
    Read {
        /// The entry being read.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file's stream ended before its declared size.
    #[error("{path:?}: content ended after {got} of {expected} bytes")]
    ShortContent {
        /// The entry.
        path: String,
        /// Bytes received.
        got: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// The options cannot describe a valid filesystem.
    #[error("invalid ext4 options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: &'static str,
    },
    /// The filesystem size is too small to hold even the metadata.
    #[error("{size_bytes} bytes is too small for an ext4 filesystem (at least {min_bytes} bytes)")]
    TooSmall {
        /// Requested size in bytes.
        size_bytes: u64,
        /// Smallest size that can hold the metadata, in bytes.
        min_bytes: u64,
    },
    /// The tree does not fit in the requested size.
    #[error(
        "tree does not fit in {size_bytes} bytes: {short_bytes} bytes short \
         (minimum size for this tree: {min_size_bytes} bytes)"
    )]
    DoesNotFit {
        /// Requested size in bytes.
        size_bytes: u64,
        /// How many more bytes of data blocks were needed.
        short_bytes: u64,
        /// Smallest filesystem size that holds the whole tree, in bytes.
        min_size_bytes: u64,
    },
    /// More inodes are needed than the filesystem has.
    #[error("too many inodes: the tree needs {needed}, the filesystem has {available} (lower the inode ratio or grow the size)")]
    TooManyInodes {
        /// Inodes the tree needs (including reserved ones).
        needed: u64,
        /// Inodes available.
        available: u64,
    },
    /// A name component that ext4 cannot store.
    #[error("invalid name in {path:?}: {reason}")]
    InvalidName {
        /// The entry.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// An entry whose parent exists but is not a directory.
    #[error("{path:?}: parent {parent:?} is not a directory")]
    ParentNotDir {
        /// The entry.
        path: String,
        /// Its parent path.
        parent: String,
    },
    /// A hardlink whose target was not added before it, or is a directory.
    #[error("hardlink {path:?} -> {target:?}: {reason}")]
    BadHardlink {
        /// The link.
        path: String,
        /// The target path.
        target: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A directory with children replaced by a non-directory.
    #[error("{path:?}: cannot replace a non-empty directory with a non-directory")]
    ReplaceNonEmptyDir {
        /// The entry.
        path: String,
    },
    /// Too many links to one inode (ext4 allows 65000).
    #[error("{path:?}: too many hard links ({links}, at most 65000)")]
    TooManyLinks {
        /// The entry.
        path: String,
        /// The count reached.
        links: u64,
    },
    /// An extended attribute that cannot be stored.
    #[error("{path:?}: extended attribute {name:?}: {reason}")]
    Xattr {
        /// The entry.
        path: String,
        /// Attribute name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// Reading an existing filesystem (the [`crate::Ext4Reader`] input)
    /// failed.
    #[error("reading ext4 input at byte offset {offset}")]
    ReadIo {
        /// Byte offset in the source region.
        offset: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The existing filesystem is not valid ext4 (bad magic, checksum,
    /// geometry, extent tree, directory block...).
    #[error("corrupt ext4 input (inode {inode}, 0 = filesystem-wide): {reason}")]
    Corrupt {
        /// The inode being read, 0 for the superblock and group descriptors.
        inode: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// The existing filesystem uses a feature the reader does not handle.
    #[error("unsupported ext4 input feature: {feature}")]
    Unsupported {
        /// The feature, as `mke2fs -O` names it.
        feature: &'static str,
    },
    /// A path given to the reader that does not name what was asked for.
    #[error("{path:?}: {reason}")]
    NotFound {
        /// The path asked for.
        path: String,
        /// Why it does not fit (missing, not a directory, too large...).
        reason: &'static str,
    },
    /// The sink fed by [`crate::Ext4Reader::feed`] refused an entry.
    #[error("sink refused {path:?}")]
    Sink {
        /// The entry.
        path: String,
        /// The sink's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A value beyond what ext4 can represent (file size, directory size).
    #[error("{path:?}: {what} too large")]
    TooLarge {
        /// The entry.
        path: String,
        /// What overflowed.
        what: &'static str,
    },
}

impl Error {
    /// Exit-code class (the `kiln` README's): 3 when writing the output
    /// failed ([`Error::Io`]); 1 when a sink kiln itself feeds refused an
    /// entry ([`Error::Sink`], whose own error says more); 2 for
    /// everything else, which is about the input: the tree, the options,
    /// or an existing filesystem that is corrupt or uses an unsupported
    /// feature.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Io { .. } => 3,
            Error::Sink { .. } => 1,
            _ => 2,
        }
    }

    pub(crate) fn io(offset: u64) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io { offset, source }
    }

    pub(crate) fn read_io(offset: u64) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::ReadIo { offset, source }
    }
}
