//! The one public error type of this crate.

use std::io;
use std::path::PathBuf;

use crate::compress::Compression;
use crate::digest::Sha256Digest;

/// Why a flash target was refused; every case is decided before anything is
/// written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The target (or one of its partitions) is mounted at `mount_point`.
    Mounted {
        /// Where it is mounted.
        mount_point: PathBuf,
    },
    /// The target holds the running system's root filesystem.
    HoldsRoot,
    /// The target is smaller than the image.
    TooSmall {
        /// Target capacity in bytes.
        target_bytes: u64,
        /// Image size in bytes.
        image_bytes: u64,
    },
    /// The target is a regular file and `force` was not given.
    RegularFileWithoutForce,
    /// The target is neither a block device nor a regular file.
    NotABlockDevice,
    /// The image's partition table is laid out for another logical sector
    /// size than the target's (a 512-byte-sector table on a 4Kn disk is
    /// read at the wrong offsets); `force` writes it anyway.
    SectorSizeMismatch {
        /// Sector size the image's partition table was written for.
        image_sector: u32,
        /// The target's logical sector size.
        target_sector: u32,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Mounted { mount_point } => {
                write!(f, "target is mounted at {}", mount_point.display())
            }
            Self::HoldsRoot => f.write_str("target holds the root filesystem of this system"),
            Self::TooSmall {
                target_bytes,
                image_bytes,
            } => write!(
                f,
                "target has {target_bytes} bytes, smaller than the image ({image_bytes} bytes)"
            ),
            Self::RegularFileWithoutForce => {
                f.write_str("target is a regular file; pass force to write into a file")
            }
            Self::NotABlockDevice => f.write_str("target is neither a block device nor a file"),
            Self::SectorSizeMismatch {
                image_sector,
                target_sector,
            } => write!(
                f,
                "the image's partition table is for {image_sector}-byte sectors but the target \
                 has {target_sector}-byte logical sectors (its partitions would not be found); \
                 pass force to write it anyway"
            ),
        }
    }
}

/// Errors of `kiln-artifact`.
///
/// The top level separates I/O ([`Error::Io`], [`Error::Codec`]), corrupt
/// or invalid input (`Bmap*`, `Gpt`, `Mountinfo`, `Sums*`, `SourceMismatch`,
/// `ImageTruncated`), verification failures ([`Error::VerifyFailed`]),
/// refusals ([`Error::Refused`]) and invalid requests
/// ([`Error::InvalidRequest`], [`Error::InvalidLevel`]).
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
    /// Image data read while flashing does not match the bmap checksum of a
    /// range: the bmap does not belong to this image, or the image is corrupt.
    #[error("image blocks {first_block}-{last_block} hash to {actual}, bmap says {expected}")]
    SourceMismatch {
        /// First block of the range.
        first_block: u64,
        /// Last block of the range (inclusive).
        last_block: u64,
        /// The bmap checksum.
        expected: Sha256Digest,
        /// What the image data hashes to.
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
    /// Read-back verification of the target failed for a mapped range.
    #[error(
        "verify failed: target blocks {first_block}-{last_block} (bytes {start_byte}..{end_byte}) hash to {actual}, expected {expected}"
    )]
    VerifyFailed {
        /// First block of the range (block size of the bmap, or 4096).
        first_block: u64,
        /// Last block of the range (inclusive).
        last_block: u64,
        /// First byte of the range on the target.
        start_byte: u64,
        /// End byte (exclusive) of the range on the target.
        end_byte: u64,
        /// Expected sha256.
        expected: Sha256Digest,
        /// What the target holds.
        actual: Sha256Digest,
    },
    /// The flash target was refused by a safety check.
    #[error("refusing to flash: {0}")]
    Refused(Refusal),
    /// A GPT structure is invalid.
    #[error("GPT at LBA {lba}: {reason}")]
    Gpt {
        /// The LBA of the structure.
        lba: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A line of `/proc/self/mountinfo` text is malformed.
    #[error("mountinfo line {line}: {reason}")]
    Mountinfo {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
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
