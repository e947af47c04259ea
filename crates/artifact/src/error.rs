//! The one public error type of this crate.

use std::io;

use crate::codec::Compression;
use crate::sha256::Sha256Digest;

/// Errors of `kiln-artifact`.
///
/// The top level separates I/O ([`Error::Io`], [`Error::Codec`]), corrupt
/// or invalid input (`Bmap*`, `Sums*`, `DigestSyntax`, `ImageTruncated`,
/// `Json`) and invalid requests ([`Error::InvalidRequest`],
/// [`Error::InvalidLevel`], [`Error::SecretInManifest`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed.
    #[error("I/O error while {op} at byte {offset}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Byte offset in the object being read or written (0 when not
        /// positional).
        offset: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The compression library failed (or the compressed input is corrupt).
    #[error("{codec} codec failed")]
    Codec {
        /// Which codec.
        codec: Compression,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A compression level outside the codec's range.
    #[error("level {level} is not valid for {codec} (allowed {min}..={max})")]
    InvalidLevel {
        /// Which codec.
        codec: Compression,
        /// The requested level.
        level: u32,
        /// Lowest allowed level.
        min: u32,
        /// Highest allowed level.
        max: u32,
    },
    /// A request that can never succeed (bad parameter combination).
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// What is wrong.
        reason: &'static str,
    },
    /// The bmap XML is malformed at this byte offset of the bmap file.
    #[error("bmap syntax error at byte {offset}: {reason}")]
    BmapSyntax {
        /// Byte offset in the bmap file.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The bmap is well-formed XML but inconsistent.
    #[error("invalid bmap: element <{element}>: {reason}")]
    BmapInvalid {
        /// The element concerned.
        element: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The bmap uses a feature this crate does not implement.
    #[error("unsupported bmap: {what}")]
    BmapUnsupported {
        /// The feature.
        what: &'static str,
    },
    /// The bmap file checksum (`BmapFileChecksum`) does not match.
    #[error("bmap file checksum mismatch: file says {expected}, content hashes to {actual}")]
    BmapChecksum {
        /// The value in the file.
        expected: Sha256Digest,
        /// The computed value.
        actual: Sha256Digest,
    },
    /// The image ended before its declared size.
    #[error("image ended at byte {actual}, expected {expected} bytes")]
    ImageTruncated {
        /// Declared size in bytes.
        expected: u64,
        /// Bytes actually available.
        actual: u64,
    },
    /// A file name cannot be represented in a `SHA256SUMS` file.
    #[error("file name {name:?} cannot be listed in SHA256SUMS: {reason}")]
    SumsName {
        /// The name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A `SHA256SUMS` line is malformed.
    #[error("SHA256SUMS line {line}: {reason}")]
    SumsSyntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A digest string is not 64 hex digits.
    #[error("not a sha256 hex digest")]
    DigestSyntax,
    /// A secret value would appear in the manifest JSON.
    #[error("secret number {index} appears in the manifest; refusing to write it")]
    SecretInManifest {
        /// Index of the secret in the list passed to the check.
        index: usize,
    },
    /// JSON (de)serialisation of the manifest failed.
    #[error("manifest JSON")]
    Json(#[from] serde_json::Error),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(op: &'static str, offset: u64) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Io { op, offset, source }
}
