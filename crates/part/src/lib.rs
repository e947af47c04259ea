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
//! - Alignment checks: [`is_aligned`], [`check_aligned`],
//!   [`PartitionTable::misaligned`]. Computing a layout is the pipeline's
//!   job, not this crate's.
//!
//! Specs: UEFI 2.10 §5.2 (legacy and protective MBR; the EBR chain is
//! the de-facto standard implemented by Linux and fdisk) and §5.3 (GPT).
//! The on-disk offset tables are in the [`mbr`] and [`gpt`] modules.
//! Sectors are 512 bytes ([`SECTOR_BYTES`]); all offsets and sizes in the
//! API are in bytes.
//!
//! # Why native and not the `gpt` / `mbrman` crates
//! Both were found valid (CRATES.md), but neither fits cleanly: they work
//! on `Read + Write + Seek` devices rather than kiln's positional
//! [`kiln_units::WriteAt`] (which lets the pipeline write partitions and
//! tables into one sparse file in any order); `gpt` leaves the protective
//! MBR to the caller and has no notion of "which header did I read";
//! `mbrman` places a logical partition one alignment unit after its EBR
//! by its own rule, whereas balenaOS fixes the EBR 4 MiB in front of each
//! logical partition and kiln must reproduce exactly that; and kiln's
//! readers must bound hostile EBR chains and GPT arrays with typed errors
//! and resize partitions in place. The formats are small (this crate is
//! about 1,000 lines with its docs), the wire structs are zerocopy types
//! with size asserts, and the result is checked against `sfdisk`,
//! `sgdisk`, `fdisk`, `blkid` and `partx` in `tests/`.
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

pub use align::{check_aligned, is_aligned};
pub use error::{Error, GptProblem, MbrProblem, Result};
pub use gpt::{types as gpt_types, Gpt, GptPartition, GPT_ENTRY_COUNT, GPT_NAME_UNITS};
pub use grow::{relocate_gpt_backup, resize_partition};
pub use mbr::{BootCode, Extended, Mbr, MbrPartition, MbrType, MBR_BOOT_CODE_BYTES};
pub use read::{
    read_table, GptSource, Partition, PartitionTable, PartitionType, Scheme, MAX_GPT_ARRAY_BYTES,
};

/// Bytes per logical sector. Every board kiln targets uses 512-byte
/// sectors; 4Kn media are not supported.
pub const SECTOR_BYTES: u64 = 512;
/// [`SECTOR_BYTES`] as a buffer length.
pub(crate) const SECTOR_LEN: usize = 512;

/// The most logical partitions the writer accepts and the reader follows
/// in an EBR chain (bounds hostile chains; Linux numbers up to 256
/// partitions per disk in total, fdisk allows 60 logical ones).
pub const MAX_LOGICAL: usize = 128;
