//! Errors of the tree sources.

use std::path::PathBuf;

/// Why a source could not produce its tree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the source failed.
    #[error("{path}: {op}")]
    Io {
        /// The file or archive being read.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A path that would escape the tree or is otherwise unsafe.
    #[error("refusing path {path:?}: {reason}")]
    HostilePath {
        /// The offending path as given.
        path: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A name component longer than 255 bytes.
    #[error("name too long in {path:?}: {len} bytes (at most 255)")]
    NameTooLong {
        /// The offending path.
        path: String,
        /// The component length.
        len: usize,
    },
    /// A hardlink whose target was not added before it.
    #[error("hardlink {path:?} points to {target:?}, which is not earlier in the archive")]
    DanglingHardlink {
        /// The link.
        path: String,
        /// Its target.
        target: String,
    },
    /// An archive member of a type kiln cannot represent.
    #[error("{path:?}: unsupported archive entry type {kind}")]
    UnsupportedEntry {
        /// The entry.
        path: String,
        /// Its type as the archive names it.
        kind: String,
    },
    /// The compressed stream around an archive is corrupt: a gzip CRC-32
    /// or length, an xz check or a zstd frame checksum does not match, or
    /// bytes follow the last stream that are not another stream.
    #[error("{archive}: corrupt compressed data")]
    CorruptCompression {
        /// The archive.
        archive: PathBuf,
        /// The decoder's complaint.
        #[source]
        source: std::io::Error,
    },
    /// An owner id in an archive header or PAX record that does not fit
    /// the 32 bits Linux (and ext4) give it.
    #[error("{path:?}: {field} {value} is above 4294967295")]
    IdOutOfRange {
        /// The entry.
        path: String,
        /// `uid` or `gid`.
        field: &'static str,
        /// The value the archive gives.
        value: u64,
    },
    /// A numeric PAX record that is not a number.
    #[error("{path:?}: PAX record {field} is not a decimal number: {value:?}")]
    InvalidPaxNumber {
        /// The entry.
        path: String,
        /// The record's key.
        field: &'static str,
        /// The record's value, lossily decoded.
        value: String,
    },
    /// A GNU sparse file whose map is inconsistent.
    #[error("{path:?}: bad GNU sparse map: {reason}")]
    BadSparseMap {
        /// The entry as the archive names it.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A file larger than the caller's bound (the partition it goes to):
    /// refused from its header, before reading its data.
    #[error("{path:?}: {size} bytes, larger than the {limit} bytes it may take")]
    FileTooLarge {
        /// The entry.
        path: String,
        /// The size its header claims, in bytes.
        size: u64,
        /// The bound, in bytes.
        limit: u64,
    },
    /// An input that is not a regular file (a device, FIFO or socket
    /// would hang or never end).
    #[error("{path}: is a {kind}, not a regular file")]
    NotRegularFile {
        /// The input.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// The archive is not well-formed.
    #[error("{archive}: malformed tar archive")]
    MalformedArchive {
        /// The archive.
        archive: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The file this error names in its message, if any (the archive, or
    /// the file being read), so that a caller adding the input's name
    /// does not repeat it.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            Error::Io { path, .. } | Error::NotRegularFile { path, .. } => Some(path),
            Error::CorruptCompression { archive, .. } | Error::MalformedArchive { archive, .. } => {
                Some(archive)
            }
            _ => None,
        }
    }
}

/// A failure while feeding a sink: either the source or the sink failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError<E> {
    /// The source could not be read.
    #[error(transparent)]
    Source(#[from] Error),
    /// The sink refused an entry.
    #[error(transparent)]
    Sink(E),
}
