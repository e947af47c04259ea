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
