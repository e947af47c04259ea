//! The crate's one error type.

use crate::FatType;

/// What went wrong while formatting, writing or reading a FAT volume.
///
/// Groups: I/O on the target or source ([`Error::Io`],
/// [`Error::ContentIo`], [`Error::ShortContent`]); the request does not fit
/// FAT ([`Error::NoSpace`], [`Error::VolumeTooSmall`],
/// [`Error::VolumeTooLarge`], [`Error::TooManyRootEntries`],
/// [`Error::TooManyDirEntries`], [`Error::FileTooLarge`]); invalid input
/// ([`Error::InvalidName`], [`Error::NameCollision`],
/// [`Error::NotADirectory`], [`Error::AlreadyExists`],
/// [`Error::InvalidLabel`], [`Error::InvalidOption`]); unsupported entry
/// kinds ([`Error::Unsupported`]); and reader failures ([`Error::Read`],
/// [`Error::NotFound`], [`Error::ReadLimit`], [`Error::TooManyEntries`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Writing or reading the target failed.
    #[error("I/O error while {op} at byte {offset} of the FAT volume")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Byte offset inside the volume.
        offset: u64,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading a file's content from its source failed.
    #[error("{path}: cannot read file content")]
    ContentIo {
        /// The file in the tree.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A content stream ended before its announced size.
    #[error("{path}: content stream ended after {got} of {expected} bytes")]
    ShortContent {
        /// The file in the tree.
        path: String,
        /// Announced size in bytes.
        expected: u64,
        /// Bytes actually read.
        got: u64,
    },
    /// The tree does not fit the volume.
    #[error("{what}: needs {needed_bytes} bytes but only {available_bytes} are free ({} bytes short)", needed_bytes.saturating_sub(*available_bytes))]
    NoSpace {
        /// The file or directory that did not fit.
        what: String,
        /// Bytes of clusters it needs.
        needed_bytes: u64,
        /// Bytes of clusters still free.
        available_bytes: u64,
    },
    /// The volume is too small for the requested FAT type.
    #[error("a {size_bytes}-byte volume is too small for {fat_type:?} (needs at least {min_bytes} bytes)")]
    VolumeTooSmall {
        /// Requested volume size in bytes.
        size_bytes: u64,
        /// The FAT type asked for (or chosen).
        fat_type: FatType,
        /// Smallest size that works, in bytes (approximate lower bound).
        min_bytes: u64,
    },
    /// The volume is too large for the requested FAT type.
    #[error(
        "a {size_bytes}-byte volume is too large for {fat_type:?} (at most {max_bytes} bytes)"
    )]
    VolumeTooLarge {
        /// Requested volume size in bytes.
        size_bytes: u64,
        /// The FAT type asked for (or chosen).
        fat_type: FatType,
        /// Largest size that works, in bytes.
        max_bytes: u64,
    },
    /// The fixed FAT16 root directory has too few slots.
    #[error("the FAT16 root directory needs {count} entries but holds {max}")]
    TooManyRootEntries {
        /// Entries needed (long-name entries count too).
        count: u64,
        /// Slots available.
        max: u64,
    },
    /// A directory would be larger than FAT allows (65536 entries).
    #[error("{path}: directory needs {count} entries, FAT allows {max}")]
    TooManyDirEntries {
        /// The directory.
        path: String,
        /// Entries needed (long-name entries count too).
        count: u64,
        /// The limit.
        max: u64,
    },
    /// A file of 4 GiB or more.
    #[error("{path}: {size_bytes} bytes is too large for FAT (at most 4294967295)")]
    FileTooLarge {
        /// The file.
        path: String,
        /// Its size in bytes.
        size_bytes: u64,
    },
    /// A name FAT cannot store.
    #[error("{path}: invalid FAT name: {reason}")]
    InvalidName {
        /// The path containing the name.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// Two names in one directory differ only in case, or no short name
    /// is left.
    #[error("{path}: name collides with {existing} (FAT names are case-insensitive)")]
    NameCollision {
        /// The new path.
        path: String,
        /// The path already there.
        existing: String,
    },
    /// A path goes through something that is not a directory.
    #[error("{path}: a parent is not a directory")]
    NotADirectory {
        /// The path.
        path: String,
    },
    /// A file or directory added twice (or a file where a directory is).
    #[error("{path}: already exists")]
    AlreadyExists {
        /// The path.
        path: String,
    },
    /// An entry kind FAT cannot represent.
    #[error("{path}: FAT cannot store a {kind}")]
    Unsupported {
        /// The path.
        path: String,
        /// What it is (`symlink`, `hardlink`, `device`, `fifo`, `socket`).
        kind: &'static str,
    },
    /// A volume label FAT cannot store.
    #[error("volume label {label:?}: {reason}")]
    InvalidLabel {
        /// The label as given.
        label: String,
        /// Why.
        reason: &'static str,
    },
    /// An option value out of range.
    #[error("invalid FAT option {option}: {reason}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// The reader (fatfs) failed.
    #[error("cannot {op} {path:?} on the FAT volume")]
    Read {
        /// What was being done.
        op: &'static str,
        /// The path involved (`/` for the volume).
        path: String,
        /// The fatfs error.
        #[source]
        source: std::io::Error,
    },
    /// The reader did not find a path.
    #[error("{path}: not found on the FAT volume")]
    NotFound {
        /// The path.
        path: String,
    },
    /// A file larger than the reader's limit.
    #[error("{path}: {size_bytes} bytes exceeds the read limit of {limit_bytes}")]
    ReadLimit {
        /// The file.
        path: String,
        /// Its size.
        size_bytes: u64,
        /// The limit.
        limit_bytes: u64,
    },
    /// A listing exceeded its entry or depth bound (corrupt or hostile
    /// image, e.g. a directory cluster loop).
    #[error("listing stopped after {limit} {what}")]
    TooManyEntries {
        /// The bound reached.
        limit: u64,
        /// `entries` or `levels`.
        what: &'static str,
    },
    /// A volume [`crate::rebuild`] cannot reproduce with kiln's writer.
    #[error("cannot rebuild this FAT volume: {reason} (found {value})")]
    UnsupportedVolume {
        /// What is not supported.
        reason: &'static str,
        /// The value found in the boot sector.
        value: u64,
    },
}

impl Error {
    /// Exit-code class (the `kiln` README's): 3 when reading or writing
    /// the volume failed ([`Error::Io`]); 2 for everything else, which is
    /// about the input: names, sizes and labels that FAT cannot hold, or
    /// an existing volume that is corrupt, hostile or unsupported.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Io { .. } => 3,
            _ => 2,
        }
    }

    pub(crate) fn io(op: &'static str, offset: u64) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Io { op, offset, source }
    }
}
