//! Partition tables for kiln images: MBR (primary, extended and logical
//! partitions chained through EBRs, as balenaOS lays them out) and GPT
//! (protective MBR, primary and backup headers and entry arrays, CRC32s).
//!
//! - Writers: [`Mbr`] and [`Gpt`] validate a layout computed by the
//!   pipeline (overlap, outside the disk, misalignment, too many
//!   partitions: each error names the partition) and write it to any
//!   [`kiln_units::WriteAt`]. Disk signature and GUIDs are parameters, so
//!   the same inputs always give the same bytes.
//! - Reader: [`read_table`] detects GPT (via the 0xEE protective record,
//!   CRC-checked, falling back to the backup header) or MBR (following the
//!   EBR chain with a loop and length bound) and returns a
//!   [`PartitionTable`] with Linux partition numbers.
//! - Editing for growing base images: [`relocate_gpt_backup`] and
//!   [`resize_partition`].
//! - Editing a flashed medium larger than its image: [`move_backup_gpt`]
//!   moves the backup GPT to the end, for 512- or 4096-byte sectors,
//!   changing as few bytes as it can (the flash engine's GPT step).
//! - Alignment checks: [`is_aligned`], [`check_aligned`],
//!   [`PartitionTable::misaligned`]. Computing a layout is the pipeline's
//!   job, not this crate's.
//!
//! Specs: UEFI 2.10 §5.2 (legacy and protective MBR; the EBR chain is
//! the de-facto standard implemented by Linux and fdisk) and §5.3 (GPT).
//! The on-disk offset tables are in the [`mbr`] and [`gpt`] modules.
//! Sectors are 512 bytes ([`SECTOR_BYTES`]) except in [`move_backup_gpt`],
//! which takes the sector size; all offsets and sizes in the API are in
//! bytes.
//!
//! # Why native and not the `gpt` / `mbrman` crates
//! Both were found valid (CRATES.md), but neither fits cleanly:
//! - both drive a `Read + Write + Seek` device with a cursor, whereas
//!   kiln writes partitions and tables into one sparse output through the
//!   positional [`kiln_units::WriteAt`], in any order, without seeking a
//!   shared handle;
//! - `gpt` does not write the protective MBR, and its reader does not
//!   report which header it used or why the other was rejected, which
//!   `kiln inspect` shows;
//! - `mbrman` places logical partitions itself (`push` searches free
//!   space and derives the EBR gap from its alignment setting), while
//!   kiln's pipeline has already computed every offset and needs them
//!   written verbatim, including the EBR exactly 4 MiB in front of each
//!   logical partition as balenaOS has it;
//! - base images need in-place edits (move the GPT backup, grow the
//!   extended + last logical partition) and readers that bound hostile EBR
//!   chains and GPT arrays with typed, partition-naming errors.
//!
//! The formats are small (MBR+EBR writer ~250 lines, GPT writer ~300,
//! reader ~450, without tests), the wire structs are zerocopy types with
//! size asserts, and every layout is checked against `sfdisk`, `sgdisk`,
//! `fdisk`, `blkid` and `partx` in `tests/`. Same inputs (disk signature,
//! GUIDs, layout) always give the same bytes: nothing reads the clock or
//! randomness.
//!
//! # Example
//! ```
//! use kiln_part::{gpt_types, read_table, Gpt, GptPartition, Scheme};
//! use kiln_units::Guid;
//! const MIB: u64 = 1 << 20;
//! let disk = 64 * MIB;
//! let mut gpt = Gpt::new(Guid::v4_from_seed([7; 16])).align(4 * MIB);
//! gpt.push(GptPartition::new("resin-boot", gpt_types::EFI_SYSTEM, Guid::v4_from_seed([1; 16]), 4 * MIB, 40 * MIB))
//!     .push(GptPartition::new("resin-data", gpt_types::LINUX_FILESYSTEM, Guid::v4_from_seed([2; 16]), 44 * MIB, 16 * MIB));
//! let mut img = Vec::new();
//! gpt.write_to(&mut img, disk)?;
//! let table = read_table(&img)?;
//! assert!(matches!(table.scheme, Scheme::Gpt { .. }));
//! assert_eq!(table.partitions[1].start_bytes, 44 * MIB);
//! # Ok::<(), kiln_part::Error>(())
//! ```
//!
//! # Errors
//! One [`Error`] type: [`Error::Io`] for the target, invalid requests that
//! name the partition ([`Error::Overlap`], [`Error::OutsideArea`],
//! [`Error::Misaligned`], [`Error::TooManyPartitions`], ...), corrupt or
//! hostile tables on disk ([`Error::NoTable`], [`Error::CorruptMbr`] with
//! an [`MbrProblem`], [`Error::CorruptGpt`] with a [`GptProblem`] for
//! each header), and refused edits ([`Error::CannotResize`]).

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![deny(missing_docs)]

mod align;
mod crc;
mod error;
pub mod gpt;
mod grow;
pub mod mbr;
mod read;
mod relocate;

pub use align::{check_aligned, is_aligned};
pub use error::{Error, GptProblem, MbrProblem, Result};
pub use gpt::{types as gpt_types, Gpt, GptPartition, GPT_ENTRY_COUNT, GPT_NAME_UNITS};
pub use grow::{relocate_gpt_backup, resize_partition, restore_primary_gpt};
pub use mbr::{BootCode, Extended, Mbr, MbrPartition, MbrType, MBR_BOOT_CODE_BYTES};
pub use read::{
    read_table, GptSource, Partition, PartitionTable, PartitionType, Scheme, MAX_GPT_ARRAY_BYTES,
};
pub use relocate::{move_backup_gpt, GptRelocation};

/// Bytes per logical sector. Every board kiln targets uses 512-byte
/// sectors; 4Kn media are not supported.
pub const SECTOR_BYTES: u64 = 512;
/// [`SECTOR_BYTES`] as a buffer length.
pub(crate) const SECTOR_LEN: usize = 512;

/// The most logical partitions the writer accepts and the reader follows
/// in an EBR chain (bounds hostile chains; Linux numbers up to 256
/// partitions per disk in total, fdisk allows 60 logical ones).
pub const MAX_LOGICAL: usize = 128;
