//! The crate's one public error type.

use std::io;

/// Everything that can go wrong while writing, reading or resizing a
/// partition table.
///
/// The variants fall in four groups: I/O on the target ([`Error::Io`]),
/// an invalid request by the caller (a layout that overlaps, leaves the
/// disk, is misaligned, ...: these name the partition), a corrupt or
/// hostile table on disk ([`Error::NoTable`], [`Error::CorruptMbr`],
/// [`Error::CorruptGpt`]), and requests this crate does not support
/// ([`Error::CannotResize`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the target failed.
    #[error("I/O error at byte offset {offset}")]
    Io {
        /// Byte offset of the failed access.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The disk size is zero, not a multiple of 512 bytes, or too small to
    /// hold the table itself.
    #[error("disk size {disk_bytes} bytes is invalid: need a multiple of 512 bytes and at least {min_bytes} bytes")]
    BadDiskSize {
        /// The disk size given, in bytes.
        disk_bytes: u64,
        /// The smallest size the table needs, in bytes.
        min_bytes: u64,
    },

    /// A partition has zero length.
    #[error("partition {name:?} is empty")]
    EmptyPartition {
        /// Partition name (label) as given by the caller.
        name: String,
    },

    /// A start or size is not a multiple of the sector size, or a start is
    /// not a multiple of the requested alignment.
    #[error(
        "partition {name:?}: {what} {value_bytes} bytes is not a multiple of {align_bytes} bytes"
    )]
    Misaligned {
        /// Partition name.
        name: String,
        /// Which value: `"start"`, `"size"` or `"EBR offset"`.
        what: &'static str,
        /// The offending value, in bytes.
        value_bytes: u64,
        /// The required alignment, in bytes.
        align_bytes: u64,
    },

    /// A partition does not fit in the usable area (the disk, the GPT
    /// usable LBA range, or the extended partition for a logical one).
    #[error("partition {name:?} ({start_bytes}..{end_bytes}) lies outside the usable area {area_start_bytes}..{area_end_bytes}")]
    OutsideArea {
        /// Partition name.
        name: String,
        /// First byte of the partition.
        start_bytes: u64,
        /// One past its last byte.
        end_bytes: u64,
        /// First usable byte.
        area_start_bytes: u64,
        /// One past the last usable byte.
        area_end_bytes: u64,
    },

    /// Two partitions (or a partition and an EBR) overlap.
    #[error("partition {name:?} overlaps {other:?}")]
    Overlap {
        /// Partition name.
        name: String,
        /// What it overlaps (a partition name, or `"EBR of <name>"`).
        other: String,
    },

    /// More partitions than the table can hold (4 MBR slots including the
    /// extended one, [`crate::MAX_LOGICAL`] logical partitions, 128 GPT
    /// entries).
    #[error("partition {name:?} does not fit: the table holds at most {max} such partitions")]
    TooManyPartitions {
        /// The first partition that did not fit.
        name: String,
        /// The limit.
        max: usize,
    },

    /// An MBR value does not fit in its 32-bit sector field (MBR disks
    /// end at 2 TiB).
    #[error("partition {name:?}: {what} does not fit in a 32-bit sector count")]
    Beyond32Bit {
        /// Partition name.
        name: String,
        /// Which field.
        what: &'static str,
    },

    /// The EBR in front of a logical partition cannot be placed: it would
    /// precede the extended partition, or the first EBR is not at the
    /// start of the extended partition as the standard requires.
    #[error("logical partition {name:?}: its EBR at byte {ebr_bytes} is not valid ({problem})")]
    BadEbrPlacement {
        /// Logical partition name.
        name: String,
        /// Where the EBR would go, in bytes.
        ebr_bytes: u64,
        /// Why it cannot go there.
        problem: &'static str,
    },

    /// A GPT partition name does not fit the 36 UTF-16 code units of an
    /// entry.
    #[error("partition name {name:?} is {units} UTF-16 code units long; GPT allows {max}")]
    NameTooLong {
        /// The name.
        name: String,
        /// Its length in UTF-16 code units.
        units: usize,
        /// The limit (36).
        max: usize,
    },

    /// A GPT partition uses the all-zero type GUID, which marks an unused
    /// entry.
    #[error("partition {name:?} has the all-zero type GUID (which means unused)")]
    ZeroTypeGuid {
        /// Partition name.
        name: String,
    },

    /// A GPT partition name contains a NUL character (which would end the
    /// name early on disk).
    #[error("partition name {name:?} contains a NUL character")]
    NulInName {
        /// The name.
        name: String,
    },

    /// An MBR type byte that cannot be used here: 0 (marks an unused
    /// record), an extended type for a primary or logical partition, or
    /// a non-extended type for the extended partition.
    #[error("partition {name:?}: type 0x{os_type:02x} is not allowed here")]
    BadMbrType {
        /// Partition name.
        name: String,
        /// The type byte.
        os_type: u8,
    },

    /// Two GPT partitions share a unique GUID.
    #[error("partition {name:?} reuses the unique GUID of {other:?}")]
    DuplicateGuid {
        /// Partition name.
        name: String,
        /// The partition with the same GUID.
        other: String,
    },

    /// Neither an MBR nor a GPT was found (no 0x55AA signature).
    #[error("no partition table found (no 0x55AA boot signature at byte 510)")]
    NoTable,

    /// The MBR or an EBR in the extended chain is corrupt or hostile.
    #[error("corrupt MBR/EBR at LBA {lba}: {problem}")]
    CorruptMbr {
        /// The sector holding the bad record.
        lba: u64,
        /// What is wrong.
        problem: MbrProblem,
    },

    /// Both GPT headers (or their entry arrays) are unusable.
    #[error("corrupt GPT: primary: {primary}; backup: {backup}")]
    CorruptGpt {
        /// Why the primary header was rejected.
        primary: GptProblem,
        /// Why the backup header was rejected.
        backup: GptProblem,
    },

    /// A partition number that the table does not have.
    #[error("no partition number {number} in the table")]
    NoSuchPartition {
        /// The partition number asked for.
        number: u32,
    },

    /// A resize that this crate refuses.
    #[error("cannot resize partition {number}: {problem}")]
    CannotResize {
        /// Partition number.
        number: u32,
        /// Why.
        problem: &'static str,
    },
}

impl Error {
    /// Exit-code class (the `kiln` README's): 3 when reading or writing
    /// the disk failed ([`Error::Io`]); 2 for everything else, which is
    /// about the input: a layout the profile asks for that cannot be
    /// written (overlaps, too many partitions, ...), or a table on disk
    /// that is corrupt, hostile or unsupported.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Io { .. } => 3,
            _ => 2,
        }
    }
}

/// What is wrong with an MBR or EBR on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MbrProblem {
    /// An EBR lacks the 0x55AA signature.
    #[error("missing 0x55AA signature")]
    BadSignature,
    /// The EBR chain links back to an EBR already visited.
    #[error("EBR chain loops back to an earlier EBR")]
    EbrLoop,
    /// The EBR chain is longer than [`crate::MAX_LOGICAL`].
    #[error("EBR chain longer than the limit")]
    ChainTooLong,
    /// A link or a logical partition points outside the extended partition.
    #[error("entry points outside the extended partition")]
    OutsideExtended,
    /// A sector address overflows 64 bits.
    #[error("sector arithmetic overflow")]
    Overflow,
    /// More than one extended partition in the MBR.
    #[error("more than one extended partition")]
    SeveralExtended,
}

/// Why a GPT header or its entry array was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GptProblem {
    /// The sector does not start with `EFI PART`.
    #[error("no \"EFI PART\" signature")]
    BadSignature,
    /// Header size outside 92..=512 or revision not 1.x.
    #[error("unsupported header size or revision")]
    BadHeaderFormat,
    /// The header CRC32 does not match.
    #[error("header CRC32 mismatch")]
    HeaderCrc,
    /// The entry array CRC32 does not match.
    #[error("partition entry array CRC32 mismatch")]
    EntriesCrc,
    /// `MyLBA` is not where the header was read.
    #[error("header's own LBA field is wrong")]
    WrongMyLba,
    /// Entry size or count out of bounds, or the array lies outside the disk.
    #[error("partition entry array geometry out of bounds")]
    BadEntryArray,
    /// Usable LBA range out of the disk or reversed.
    #[error("usable LBA range out of bounds")]
    BadUsableRange,
    /// An entry lies outside the usable range or has end < start.
    #[error("a partition entry lies outside the usable range")]
    BadEntry,
    /// The backup is valid on its own but does not match the primary
    /// (other entries or disk GUID, or the headers do not point at each
    /// other).
    #[error("backup does not match the primary")]
    CopiesDiffer,
    /// Reading the header or array failed (for example past the end of
    /// the image).
    #[error("unreadable")]
    Unreadable,
}

/// A shorthand for `Result<T, kiln_part::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_at(offset: u64) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Io { offset, source }
}
