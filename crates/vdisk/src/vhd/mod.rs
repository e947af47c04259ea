//! VHD, as specified by Microsoft's "Virtual Hard Disk Image Format
//! Specification" (version 1.0, October 2006): sections "Hard Disk Footer
//! Format", "Dynamic Disk Header Format", "Block Allocation Table and Data
//! Blocks", and appendix "CHS Calculation".
//!
//! All fields are big-endian.
//!
//! Hard disk footer (512 bytes; at the end of every VHD, and copied at
//! offset 0 of a dynamic one):
//!
//! | offset | size | field                | written as                              |
//! |-------:|-----:|----------------------|-----------------------------------------|
//! | 0      | 8    | cookie               | `conectix`                              |
//! | 8      | 4    | features             | 2 (reserved bit, always set)            |
//! | 12     | 4    | file format version  | 0x00010000                              |
//! | 16     | 8    | data offset          | fixed: all ones; dynamic: 512           |
//! | 24     | 4    | time stamp           | seconds since 2000-01-01 00:00 UTC      |
//! | 28     | 4    | creator application  | `kiln`                                  |
//! | 32     | 4    | creator version      | 0x00010000                              |
//! | 36     | 4    | creator host OS      | `Wi2k`                                  |
//! | 40     | 8    | original size        | virtual size (bytes)                    |
//! | 48     | 8    | current size         | virtual size (bytes)                    |
//! | 56     | 4    | disk geometry        | cylinders u16, heads u8, sectors u8     |
//! | 60     | 4    | disk type            | 2 fixed, 3 dynamic                      |
//! | 64     | 4    | checksum             | one's complement of the byte sum        |
//! | 68     | 16   | unique id            | from [`VhdOptions::unique_id`]          |
//! | 84     | 1    | saved state          | 0                                       |
//! | 85     | 427  | reserved             | 0                                       |
//!
//! Dynamic disk header (1024 bytes, at the footer's data offset):
//!
//! | offset | size | field                   | written as                  |
//! |-------:|-----:|-------------------------|-----------------------------|
//! | 0      | 8    | cookie                  | `cxsparse`                  |
//! | 8      | 8    | data offset             | all ones                    |
//! | 16     | 8    | table offset (BAT)      | 1536                        |
//! | 24     | 4    | header version          | 0x00010000                  |
//! | 28     | 4    | max table entries       | ceil(size / block size)     |
//! | 32     | 4    | block size              | 2 MiB                       |
//! | 36     | 4    | checksum                | as for the footer           |
//! | 40     | 16   | parent unique id        | 0                           |
//! | 56     | 4    | parent time stamp       | 0                           |
//! | 64     | 512  | parent unicode name     | 0                           |
//! | 576    | 192  | 8 parent locators       | 0                           |
//! | 768    | 256  | reserved                | 0                           |
//!
//! The BAT holds one 4-byte sector number per block (all ones: not
//! allocated); a block is a sector bitmap (one bit per 512-byte sector,
//! padded to a sector) followed by the block's data.
//!
//! Layout written for a dynamic disk: footer copy, header, BAT (reserved
//! from the virtual size), then allocated blocks in order, then the footer.
//! Creator "kiln" makes QEMU (and Hyper-V) take the size from the
//! current-size field rather than from the CHS geometry.

mod checksum;
mod dynamic;
mod footer;
mod geometry;
mod random;
mod reader;
mod writer;

pub use checksum::VhdChecksum;
pub use geometry::ChsGeometry;
pub use random::VhdDynamicRandomWriter;
pub use reader::VhdReader;
pub use writer::VhdWriter;

use kiln_units::Guid;

/// Whether `last_sector` (a file's last 512 bytes) is a VHD footer,
/// whatever its cookie says: format version 1.0 and a known disk type.
/// Sniffers use it so that a VHD with a damaged cookie is refused by
/// [`VhdReader`] instead of being taken for a raw disk.
pub fn looks_like_footer(last_sector: &[u8]) -> bool {
    footer::Footer::looks_like(last_sector)
}

/// Which VHD flavour to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VhdKind {
    /// Raw data followed by the footer (Hyper-V, Azure).
    #[default]
    Fixed,
    /// Sparse: BAT and 2 MiB blocks allocated on demand.
    Dynamic,
}

/// Options of the VHD writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhdOptions {
    kind: VhdKind,
    unique_id: Guid,
    timestamp_unix: u64,
}

impl Default for VhdOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl VhdOptions {
    /// Defaults: fixed, unique id all zero (set one!), time stamp 2000-01-01.
    pub fn new() -> Self {
        Self {
            kind: VhdKind::Fixed,
            unique_id: Guid::ZERO,
            timestamp_unix: VHD_EPOCH_UNIX,
        }
    }
    /// Fixed or dynamic.
    pub fn kind(mut self, kind: VhdKind) -> Self {
        self.kind = kind;
        self
    }
    /// The footer's unique id (callers derive it from the build seed); its
    /// 16 bytes are stored in RFC 4122 (text) order.
    pub fn unique_id(mut self, id: Guid) -> Self {
        self.unique_id = id;
        self
    }
    /// The footer time stamp as Unix seconds (e.g. `SOURCE_DATE_EPOCH`);
    /// times before 2000-01-01 are stored as 0.
    pub fn timestamp_unix(mut self, secs: u64) -> Self {
        self.timestamp_unix = secs;
        self
    }
    /// The chosen flavour.
    pub fn get_kind(&self) -> VhdKind {
        self.kind
    }
}

/// 2000-01-01T00:00:00Z as Unix seconds, the VHD time-stamp epoch.
pub(crate) const VHD_EPOCH_UNIX: u64 = 946_684_800;
/// Dynamic block size written, bytes (the spec's default, 2 MiB).
pub(crate) const VHD_BLOCK_SIZE: u64 = 2 << 20;
/// Virtual sizes are rounded up to this (Azure requires 1 MiB alignment).
pub(crate) const VHD_SIZE_ALIGN: u64 = 1 << 20;
/// Largest virtual size written: 2040 GiB (the spec's CHS-era limit that
/// Hyper-V enforces for VHD).
pub(crate) const VHD_MAX_SIZE: u64 = 2040 << 30;
