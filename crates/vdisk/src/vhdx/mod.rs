//! VHDX (dynamic), as specified by Microsoft's "[MS-VHDX]: Virtual Hard
//! Disk v2 (VHDX) File Format" (v20240423): §2.1 layout, §2.2 header
//! section (file type identifier, headers, region table), §2.4 BAT,
//! §2.6 metadata region. Every integer is little-endian; GUIDs are stored
//! in the mixed-endian form of [`kiln_units::Guid`]; every checksum is the
//! CRC-32C of the structure with its checksum field zeroed ([`VhdxCrc32c`]).
//!
//! File layout written (all 1 MiB aligned, as the spec requires of
//! regions and payload blocks):
//!
//! | file offset | size | content |
//! |---:|---:|---|
//! | 0 | 64 KiB | file type identifier: `vhdxfile`, creator (UTF-16LE) |
//! | 64 KiB | 4 KiB | header 1 (sequence number 0) |
//! | 128 KiB | 4 KiB | header 2 (sequence number 1: the current one) |
//! | 192 KiB | 64 KiB | region table 1 |
//! | 256 KiB | 64 KiB | region table 2 (identical copy) |
//! | 1 MiB | 1 MiB | log region (empty: log GUID zero, nothing to replay) |
//! | 2 MiB | 1 MiB | metadata region |
//! | 3 MiB | BAT entries × 8, rounded up to 1 MiB | BAT region |
//! | after the BAT | 1 MiB each | payload blocks, in virtual order |
//!
//! Header (§2.2.2, 4 KiB):
//!
//! | offset | size | field | written as |
//! |---:|---:|---|---|
//! | 0 | 4 | Signature | `head` |
//! | 4 | 4 | Checksum | CRC-32C over the 4 KiB |
//! | 8 | 8 | SequenceNumber | 0, then 1 |
//! | 16 | 16 | FileWriteGuid | from [`VhdxOptions::write_guid`] |
//! | 32 | 16 | DataWriteGuid | same |
//! | 48 | 16 | LogGuid | zero (no log to replay) |
//! | 64 | 2 | LogVersion | 0 |
//! | 66 | 2 | Version | 1 |
//! | 68 | 4 | LogLength | 1 MiB |
//! | 72 | 8 | LogOffset | 1 MiB |
//! | 80 | 4016 | Reserved | 0 |
//!
//! Region table (§2.2.3, 64 KiB): header `regi` signature (0), checksum
//! (4, CRC-32C over the 64 KiB), EntryCount (8), reserved (12); then
//! 32-byte entries: Guid (0), FileOffset u64 (16), Length u32 (24),
//! Required bit 0 of a u32 (28). Two entries: BAT and metadata.
//!
//! Metadata table (§2.6.1, at the start of the metadata region): header
//! `metadata` signature (0), reserved u16 (8), EntryCount u16 (10),
//! reserved (12, 20 bytes); then 32-byte entries: ItemId (0), Offset u32
//! from the region start (16), Length u32 (20), flags u32 (24: bit 0
//! IsUser, bit 1 IsVirtualDisk, bit 2 IsRequired), reserved (28). Items
//! written at 64 KiB into the region: File Parameters (block size 1 MiB,
//! flags 0), Virtual Disk Size, Virtual Disk ID (page 83 data), Logical
//! Sector Size 512, Physical Sector Size 4096.
//!
//! BAT (§2.5): one u64 per payload block, state in bits 0-2 (0 not
//! present, 6 fully present), FileOffsetMB in bits 20-63; after every
//! chunk of [`VHDX_CHUNK_RATIO`] payload entries comes one sector-bitmap
//! entry (unused here: not a differencing disk, written 0).

mod checksum;
mod header;
mod metadata;
mod reader;
mod writer;

pub use checksum::VhdxCrc32c;
pub use reader::VhdxReader;
pub use writer::VhdxWriter;

use kiln_units::Guid;

/// Options of the VHDX writer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VhdxOptions {
    disk_id: Guid,
    write_guid: Guid,
}

impl VhdxOptions {
    /// Defaults: both identities all zero (set them from the build seed).
    pub fn new() -> Self {
        Self::default()
    }
    /// The Virtual Disk ID metadata item (SCSI page 83 identity of the
    /// disk inside the VM).
    pub fn disk_id(mut self, id: Guid) -> Self {
        self.disk_id = id;
        self
    }
    /// FileWriteGuid and DataWriteGuid of the headers.
    pub fn write_guid(mut self, id: Guid) -> Self {
        self.write_guid = id;
        self
    }
}

/// `vhdxfile`, the file type identifier's signature (§2.2.1).
pub(crate) const VHDX_FILE_SIGNATURE: [u8; 8] = *b"vhdxfile";
/// 1 MiB: the alignment of regions, payload blocks and the log (§2.1).
pub(crate) const VHDX_MIB: u64 = 1 << 20;
/// Payload block size written, bytes (the smallest the spec allows, so
/// sparse disks stay small; Hyper-V's own default is 32 MiB).
pub(crate) const VHDX_BLOCK_SIZE: u64 = VHDX_MIB;
/// Logical sector size written, bytes (BIOS and UEFI guests expect 512).
pub(crate) const VHDX_LOGICAL_SECTOR: u32 = 512;
/// Physical sector size written, bytes.
pub(crate) const VHDX_PHYSICAL_SECTOR: u32 = 4096;
/// Payload entries per sector-bitmap entry: 2^23 × logical sector size /
/// block size (§2.5).
pub const VHDX_CHUNK_RATIO: u64 = (1u64 << 23) * VHDX_LOGICAL_SECTOR as u64 / VHDX_BLOCK_SIZE;
/// Largest virtual size the spec allows: 64 TiB (§2.6.2.2).
pub(crate) const VHDX_MAX_SIZE: u64 = 64 << 40;
/// File offset of the log region written.
pub(crate) const VHDX_LOG_OFFSET: u64 = VHDX_MIB;
/// Length of the log region written.
pub(crate) const VHDX_LOG_LENGTH: u64 = VHDX_MIB;
/// File offset of the metadata region written.
pub(crate) const VHDX_METADATA_OFFSET: u64 = 2 * VHDX_MIB;
/// Length of the metadata region written.
pub(crate) const VHDX_METADATA_LENGTH: u64 = VHDX_MIB;
/// File offset of the BAT region written.
pub(crate) const VHDX_BAT_OFFSET: u64 = 3 * VHDX_MIB;

/// BAT entries of a disk with `payload_blocks` blocks and `chunk_ratio`
/// payload entries per bitmap entry: one per block and one bitmap entry
/// between consecutive chunks (§2.5, non-differencing disks).
pub(crate) fn bat_entries(payload_blocks: u64, chunk_ratio: u64) -> u64 {
    match payload_blocks.checked_sub(1) {
        None => 0,
        Some(last) => payload_blocks.saturating_add(last / chunk_ratio.max(1)),
    }
}

/// Index in the BAT of payload block `block`.
pub(crate) fn bat_index(block: u64, chunk_ratio: u64) -> u64 {
    block.saturating_add(block / chunk_ratio.max(1))
}
