//! The crate's one error type.

use std::io;

/// Which on-disk format an error or a detected image belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// A plain (possibly sparse) raw image.
    Raw,
    /// QEMU qcow2 (version 2 or 3).
    Qcow2,
    /// VMware hosted sparse extent (monolithicSparse or streamOptimized).
    Vmdk,
    /// Microsoft VHD (fixed or dynamic).
    Vhd,
    /// Microsoft VHDX (dynamic).
    Vhdx,
    /// OVA package (OVF + streamOptimized VMDK + manifest).
    Ova,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "vmdk",
            Format::Vhd => "vhd",
            Format::Vhdx => "vhdx",
            Format::Ova => "ova",
        })
    }
}

/// Everything that can go wrong in `kiln-vdisk`.
///
/// The top level separates I/O, corrupt input, unsupported features and
/// invalid requests by the caller; variants carry the byte offset (in the
/// image file, or in the virtual disk for requests) that locates the problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the image file failed.
    #[error("I/O error on the image file at byte {offset}")]
    Io {
        /// Byte offset in the image file of the failed access.
        offset: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An overlay's backing file cannot be opened.
    #[error("cannot open the backing file {}", path.display())]
    Backing {
        /// The path it resolved to.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An overlay's backing file outside the overlay's directory, which
    /// the caller did not allow.
    #[error("refusing backing file {}: outside the overlay's directory {}", path.display(), dir.display())]
    BackingOutside {
        /// The path the overlay's name resolves to.
        path: std::path::PathBuf,
        /// The overlay's directory.
        dir: std::path::PathBuf,
    },
    /// An overlay's backing file that is not a regular file.
    #[error("refusing backing file {}: it is a {kind}, not a regular file", path.display())]
    BackingNotRegular {
        /// The path the overlay's name resolves to.
        path: std::path::PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// A structure read from the image is inconsistent or out of bounds.
    #[error("corrupt {format} image: {what} (at file byte {offset})")]
    Corrupt {
        /// The format being parsed.
        format: Format,
        /// Byte offset in the image file of the bad field or structure.
        offset: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// A valid image that uses a feature this crate does not implement.
    #[error("unsupported {format} feature: {what}")]
    Unsupported {
        /// The format being parsed.
        format: Format,
        /// The feature.
        what: &'static str,
    },
    /// An extent handed to a writer was out of order, overlapping or past
    /// the end of the virtual disk.
    #[error("extent at virtual byte {offset} ({len} bytes) is out of order or outside the disk (next allowed offset {next_allowed}, virtual size {virtual_size})")]
    ExtentOutOfOrder {
        /// Virtual byte offset of the extent.
        offset: u64,
        /// Its length in bytes.
        len: u64,
        /// The smallest offset accepted at this point.
        next_allowed: u64,
        /// The virtual disk size in bytes.
        virtual_size: u64,
    },
    /// A virtual size the format cannot represent.
    #[error("{format} cannot hold a virtual size of {size_bytes} bytes (maximum {max_bytes})")]
    SizeNotSupported {
        /// The output format.
        format: Format,
        /// The requested size in bytes.
        size_bytes: u64,
        /// The largest size the format (as written here) supports.
        max_bytes: u64,
    },
    /// `write_extent` or `finish` called after `finish`.
    #[error("the {format} writer was already finished")]
    AlreadyFinished {
        /// The output format.
        format: Format,
    },
    /// A read outside the virtual disk.
    #[error(
        "read of {len} bytes at virtual byte {offset} is outside the {virtual_size}-byte disk"
    )]
    ReadOutOfRange {
        /// Virtual byte offset.
        offset: u64,
        /// Length in bytes.
        len: u64,
        /// Virtual size in bytes.
        virtual_size: u64,
    },
}

/// Shorthand for `Result<T, kiln_vdisk::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(offset: u64) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io { offset, source }
    }
    pub(crate) fn corrupt(format: Format, offset: u64, what: &'static str) -> Error {
        Error::Corrupt {
            format,
            offset,
            what,
        }
    }
    pub(crate) fn unsupported(format: Format, what: &'static str) -> Error {
        Error::Unsupported { format, what }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io { source, .. } => source,
            Error::ReadOutOfRange { .. } => io::Error::new(io::ErrorKind::UnexpectedEof, e),
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}
