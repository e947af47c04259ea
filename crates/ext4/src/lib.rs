//! kiln's native ext4 writer: turns a [`kiln_tree`] file tree into an
//! ext4 filesystem with the features a current `mke2fs -t ext4` enables
//! (`has_journal ext_attr resize_inode dir_index filetype extent 64bit
//! flex_bg sparse_super large_file huge_file dir_nlink extra_isize
//! metadata_csum`), 256-byte inodes with nanosecond times, htree
//! directories, xattrs in the inode and in a block, sparse files, and
//! preallocated (unwritten) files for swap.
//!
//! Spec: the kernel's `Documentation/filesystems/ext4/` (each module
//! cites its section and gives the on-disk offset table).
//!
//! Main entry points: [`Ext4Writer`] (a [`kiln_tree::TreeSink`]; call
//! [`Ext4Writer::finish`] at the end), [`Ext4Estimator`] (a sink that
//! sizes the filesystem beforehand) and [`Ext4Reader`], which reads an
//! existing ext4/ext3/ext2 filesystem (a base image's data partition) and
//! feeds it to any sink as a tree source ([`Ext4Reader::feed`], with a
//! [`Visit`] filter), plus lookups for small files, directory listings,
//! symlinks and the filesystem's label, UUID and free space ([`FsInfo`]).
//!
//! ```
//! use kiln_ext4::{Ext4Estimator, Ext4Options, Ext4Writer};
//! use kiln_tree::{Content, Entry, EntryKind, Metadata, Timestamp, TreePath, TreeSink};
//! let meta = Metadata::new(0o755, Timestamp::new(1_700_000_000, 0));
//! let e = Entry::new(TreePath::parse(b"bin/sh").unwrap(), EntryKind::File, meta);
//! // Size first...
//! let mut est = Ext4Estimator::new();
//! est.add(&e, Content::bytes(b"#!")).unwrap();
//! let opts = Ext4Options::new(0).label("root").uuid([3; 16]);
//! let size = est.min_size_bytes(&opts, 1 << 20).unwrap();
//! // ...then write.
//! let mut img = Vec::new();
//! let mut w = Ext4Writer::new(&mut img, opts.size(size)).unwrap();
//! w.add(&e, Content::bytes(b"#!")).unwrap();
//! w.finish().unwrap();
//! ```
//!
//! # Errors
//! One [`Error`] type: I/O on the output ([`Error::Io`]) or on a file's
//! content ([`Error::Read`], [`Error::ShortContent`]); invalid input
//! ([`Error::InvalidName`], [`Error::ParentNotDir`],
//! [`Error::BadHardlink`], [`Error::Xattr`], [`Error::TooLarge`], ...);
//! invalid requests ([`Error::InvalidOptions`], [`Error::TooSmall`]); and
//! capacity ([`Error::DoesNotFit`] with the shortfall and the minimum size,
//! [`Error::TooManyInodes`]). The reader adds [`Error::ReadIo`],
//! [`Error::Corrupt`] (with the inode), [`Error::Unsupported`] (feature),
//! [`Error::NotFound`] and [`Error::Sink`] (the sink's own error boxed).

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![deny(missing_docs)]

mod alloc;
mod checksum;
mod dir;
mod error;
mod estimate;
mod extent;
mod group;
mod htree;
mod inode;
mod journal;
mod layout;
mod options;
mod reader;
mod superblock;
mod writer;
mod xattr;

pub use error::Error;
pub use estimate::Ext4Estimator;
pub use options::{Ext4Options, InodeSpec, JournalSpec, BLOCK_SIZE};
pub use reader::{
    DirEntry, Ext4Reader, FeedReport as ReadReport, FileReader, FsInfo, NodeKind, Visit,
};
pub use writer::{Ext4Report, Ext4Writer};
