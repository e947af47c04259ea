//! The one public error type of this crate.

use std::io;
use std::path::PathBuf;

use kiln_artifact::digest::Sha256Digest;

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

/// Errors of `kiln-flash`.
///
/// The top level separates I/O ([`Error::Io`], [`Error::ThreadPanicked`],
/// [`Error::ReadBackStopped`]), corrupt or inconsistent input
/// ([`Error::BmapImageSize`], [`Error::SourceMismatch`],
/// [`Error::ImageTruncated`], [`Error::Mountinfo`], [`Error::Gpt`]), a
/// medium that does not hold what was written ([`Error::VerifyFailed`]),
/// refused targets ([`Error::Refused`]) and invalid requests
/// ([`Error::InvalidRequest`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on the image or the target failed.
    #[error("I/O error while {op} at byte {offset}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Byte offset in the image or on the target (0 when not
        /// positional).
        offset: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A worker thread of the engine panicked.
    #[error("the {thread} thread panicked")]
    ThreadPanicked {
        /// Which thread (`read-back`, `read-back hashing`).
        thread: &'static str,
    },
    /// The writer stopped because the read-back thread did (that thread's
    /// own error is reported instead whenever it has one).
    #[error("the read-back thread stopped")]
    ReadBackStopped,
    /// The bmap describes an image of another size than the one given.
    #[error("invalid bmap: element <ImageSize>: {bmap_bytes} bytes, but the image has {image_bytes} bytes")]
    BmapImageSize {
        /// `ImageSize` of the bmap.
        bmap_bytes: u64,
        /// Size of the image.
        image_bytes: u64,
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
    /// A line of `/proc/self/mountinfo` text is malformed.
    #[error("mountinfo line {line}: {reason}")]
    Mountinfo {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The image's GPT could not be moved to the end of the target.
    #[error("moving the backup GPT to the end of the target")]
    Gpt(#[source] kiln_part::Error),
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
    /// A request that can never succeed (bad parameter combination).
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// What is wrong.
        reason: &'static str,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(op: &'static str, offset: u64) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Io { op, offset, source }
}
