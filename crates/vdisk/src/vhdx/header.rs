//! The header section (§2.2): file type identifier, the two headers and
//! the region table (tables in the module doc).

use kiln_units::Guid;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use crate::error::{Error, Format, Result};

use super::checksum::VhdxCrc32c;
use super::{VHDX_FILE_SIGNATURE, VHDX_LOG_LENGTH, VHDX_LOG_OFFSET};

/// File offsets of the two headers (§2.2).
pub(crate) const VHDX_HEADER_OFFSETS: [u64; 2] = [64 << 10, 128 << 10];
/// File offsets of the two region tables (§2.2).
pub(crate) const VHDX_REGION_TABLE_OFFSETS: [u64; 2] = [192 << 10, 256 << 10];
/// Size of a header, bytes.
pub(crate) const VHDX_HEADER_LEN: usize = 4096;
/// Size of a region table, bytes.
pub(crate) const VHDX_REGION_TABLE_LEN: usize = 64 << 10;
/// `head`.
const VHDX_HEADER_SIGNATURE: u32 = u32::from_le_bytes(*b"head");
/// `regi`.
const VHDX_REGION_SIGNATURE: u32 = u32::from_le_bytes(*b"regi");
/// Entries a 64 KiB region table can hold (§2.2.3.1).
const VHDX_MAX_REGION_ENTRIES: u32 = 2047;
/// The only header version defined.
const VHDX_VERSION: u16 = 1;
/// Byte offset of every checksum field handled here.
const CHECKSUM_AT: usize = 4;

/// The BAT region (§2.2.3.2).
pub(crate) const VHDX_REGION_BAT: Guid = Guid::from_rfc_bytes([
    0x2d, 0xc2, 0x77, 0x66, 0xf6, 0x23, 0x42, 0x00, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08,
]);
/// The metadata region (§2.2.3.2).
pub(crate) const VHDX_REGION_METADATA: Guid = Guid::from_rfc_bytes([
    0x8b, 0x7c, 0xa2, 0x06, 0x47, 0x90, 0x4b, 0x9a, 0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e,
]);

/// Header (§2.2.2), spec field names.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(crate) struct RawHeader {
    /// 0: `head`.
    signature: U32,
    /// 4: CRC-32C over the 4 KiB.
    checksum: U32,
    /// 8: the header with the larger number is current.
    sequence_number: U64,
    /// 16.
    file_write_guid: [u8; 16],
    /// 32.
    data_write_guid: [u8; 16],
    /// 48: zero when the log holds nothing to replay.
    log_guid: [u8; 16],
    /// 64.
    log_version: U16,
    /// 66: 1.
    version: U16,
    /// 68: bytes, a multiple of 1 MiB.
    log_length: U32,
    /// 72: bytes, a multiple of 1 MiB.
    log_offset: U64,
    /// 80.
    reserved: [u8; 4016],
}
const _: () = assert!(std::mem::size_of::<RawHeader>() == VHDX_HEADER_LEN);

/// Region table header (§2.2.3.1).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawRegionTableHeader {
    /// 0: `regi`.
    signature: U32,
    /// 4: CRC-32C over the 64 KiB table.
    checksum: U32,
    /// 8: at most 2047.
    entry_count: U32,
    /// 12.
    reserved: U32,
}
const _: () = assert!(std::mem::size_of::<RawRegionTableHeader>() == 16);

/// Region table entry (§2.2.3.2).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawRegionEntry {
    /// 0.
    guid: [u8; 16],
    /// 16: bytes, 1 MiB aligned.
    file_offset: U64,
    /// 24: bytes, a multiple of 1 MiB.
    length: U32,
    /// 28: bit 0, Required.
    required: U32,
}
const _: () = assert!(std::mem::size_of::<RawRegionEntry>() == 32);

/// The first 64 KiB: signature and the creator as UTF-16LE (§2.2.1).
pub(crate) fn file_identifier(creator: &str) -> Vec<u8> {
    let mut b = vec![0u8; 64 << 10];
    b[..8].copy_from_slice(&VHDX_FILE_SIGNATURE);
    let units = creator.encode_utf16().take(255).flat_map(u16::to_le_bytes);
    for (dst, src) in b[8..8 + 512].iter_mut().zip(units) {
        *dst = src;
    }
    b
}

/// One header as written: `sequence` and the write GUID.
pub(crate) fn header_bytes(sequence: u64, write_guid: Guid) -> Vec<u8> {
    let mut h = RawHeader::new_zeroed();
    h.signature = VHDX_HEADER_SIGNATURE.into();
    h.sequence_number = sequence.into();
    h.file_write_guid = write_guid.to_disk_bytes();
    h.data_write_guid = write_guid.to_disk_bytes();
    h.version = VHDX_VERSION.into();
    // OK: both constants are 1 MiB.
    h.log_length = (VHDX_LOG_LENGTH as u32).into();
    h.log_offset = VHDX_LOG_OFFSET.into();
    let mut b = h.as_bytes().to_vec();
    let sum = VhdxCrc32c::compute(&b, CHECKSUM_AT);
    b[CHECKSUM_AT..CHECKSUM_AT + 4].copy_from_slice(&sum.0.to_le_bytes());
    b
}

/// What a reader needs of the current header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub sequence: u64,
    pub log_guid: Guid,
}

/// Parses the header read at file byte `at`; `None` when it is not a
/// valid header (bad signature, checksum or version), which the caller
/// reports only when neither header is.
pub(crate) fn parse_header(b: &[u8]) -> Option<Header> {
    let h = RawHeader::read_from_prefix(b).ok()?.0;
    let ok = h.signature.get() == VHDX_HEADER_SIGNATURE
        && VhdxCrc32c::compute(b.get(..VHDX_HEADER_LEN)?, CHECKSUM_AT).0 == h.checksum.get()
        && h.version.get() == VHDX_VERSION;
    ok.then(|| Header {
        sequence: h.sequence_number.get(),
        log_guid: Guid::from_disk_bytes(h.log_guid),
    })
}

/// A region: where and how long, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Region {
    pub offset: u64,
    pub length: u64,
}

/// The region table written: the BAT and metadata regions, required.
pub(crate) fn region_table_bytes(bat: Region, metadata: Region) -> Vec<u8> {
    let mut b = vec![0u8; VHDX_REGION_TABLE_LEN];
    let mut head = RawRegionTableHeader::new_zeroed();
    head.signature = VHDX_REGION_SIGNATURE.into();
    head.entry_count = 2.into();
    b[..16].copy_from_slice(head.as_bytes());
    for (i, (guid, r)) in [(VHDX_REGION_BAT, bat), (VHDX_REGION_METADATA, metadata)]
        .into_iter()
        .enumerate()
    {
        let e = RawRegionEntry {
            guid: guid.to_disk_bytes(),
            file_offset: r.offset.into(),
            length: u32::try_from(r.length).unwrap_or(u32::MAX).into(),
            required: 1.into(),
        };
        let at = 16 + 32 * i;
        b[at..at + 32].copy_from_slice(e.as_bytes());
    }
    let sum = VhdxCrc32c::compute(&b, CHECKSUM_AT);
    b[CHECKSUM_AT..CHECKSUM_AT + 4].copy_from_slice(&sum.0.to_le_bytes());
    b
}

/// The regions a reader needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Regions {
    pub bat: Region,
    pub metadata: Region,
}

fn corrupt(at: u64, what: &'static str) -> Error {
    Error::corrupt(Format::Vhdx, at, what)
}

/// Parses the region table `b` read at file byte `at`. `Ok(None)` when
/// its signature or checksum is bad (the caller tries the other copy).
///
/// # Errors
/// [`Error::Corrupt`] for a valid table without the BAT or metadata
/// region or with a misaligned region; [`Error::Unsupported`] for an
/// unknown required region.
pub(crate) fn parse_region_table(b: &[u8], at: u64) -> Result<Option<Regions>> {
    let Ok((head, _)) = RawRegionTableHeader::read_from_prefix(b) else {
        return Ok(None);
    };
    if head.signature.get() != VHDX_REGION_SIGNATURE
        || b.len() != VHDX_REGION_TABLE_LEN
        || VhdxCrc32c::compute(b, CHECKSUM_AT).0 != head.checksum.get()
    {
        return Ok(None);
    }
    let count = head.entry_count.get();
    if count > VHDX_MAX_REGION_ENTRIES {
        return Err(corrupt(at + 8, "region table entry count above 2047"));
    }
    let (mut bat, mut metadata) = (None, None);
    for i in 0..count as usize {
        let eat = 16 + 32 * i;
        let Some(Ok((e, _))) = b.get(eat..).map(RawRegionEntry::read_from_prefix) else {
            return Err(corrupt(at + eat as u64, "region table entry"));
        };
        let r = Region {
            offset: e.file_offset.get(),
            length: u64::from(e.length.get()),
        };
        if r.offset % super::VHDX_MIB != 0 || r.length % super::VHDX_MIB != 0 {
            return Err(corrupt(at + eat as u64 + 16, "region not 1 MiB aligned"));
        }
        match Guid::from_disk_bytes(e.guid) {
            g if g == VHDX_REGION_BAT => bat = Some(r),
            g if g == VHDX_REGION_METADATA => metadata = Some(r),
            _ if e.required.get() & 1 != 0 => {
                return Err(Error::unsupported(Format::Vhdx, "unknown required region"))
            }
            _ => {}
        }
    }
    match (bat, metadata) {
        (Some(bat), Some(metadata)) => Ok(Some(Regions { bat, metadata })),
        (None, _) => Err(corrupt(at, "region table without a BAT region")),
        (_, None) => Err(corrupt(at, "region table without a metadata region")),
    }
}
