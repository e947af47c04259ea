//! The file-tree model every kiln filesystem writer consumes, and the
//! sources that feed it.
//!
//! An [`Entry`] is one path with its kind, ownership, mode, times and
//! extended attributes. File contents are not held in the model: a
//! source hands each entry to a [`TreeSink`] together with a [`Content`]
//! that *streams* the bytes from where they live (a file on disk, the
//! current member of a tar archive, a generated buffer), so nothing is
//! staged in a temporary directory and memory stays bounded.
//!
//! Sources: [`dir::DirSource`] (a directory on the build machine) and
//! [`tar_source::TarSource`] (tar, tar.gz, tar.xz, tar.zst; compression
//! detected from the magic bytes). Both refuse hostile paths (absolute,
//! `..`, hardlinks to paths not seen before) through [`TreePath::parse`].
//!
//! ```
//! use kiln_tree::{Content, Entry, EntryKind, Metadata, Timestamp, TreePath, TreeSink};
//! struct Count(usize);
//! impl TreeSink for Count {
//!     type Error = std::convert::Infallible;
//!     fn add(&mut self, _e: &Entry, _c: Content<'_>) -> Result<(), Self::Error> {
//!         self.0 += 1;
//!         Ok(())
//!     }
//! }
//! let mut sink = Count(0);
//! let meta = Metadata::new(0o644, Timestamp::new(0, 0));
//! let e = Entry::new(TreePath::parse(b"etc/hostname").unwrap(), EntryKind::File, meta);
//! sink.add(&e, Content::bytes(b"kiln\n")).unwrap();
//! assert_eq!(sink.0, 1);
//! ```
//!
//! # Errors
//! [`Error`] separates I/O on the source, malformed or hostile input, and
//! unsupported entry types; sink failures come back unchanged inside
//! [`SourceError::Sink`].

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod dir;
mod entry;
mod error;
mod path;
mod pax_sparse;
mod sink;
pub mod tar_source;

pub use entry::{Content, Entry, EntryKind, Metadata, Timestamp, Xattr};
pub use error::{Error, SourceError};
pub use path::TreePath;
pub use sink::{LockedSink, PrefixSink, SourceOptions, TreeSink};
