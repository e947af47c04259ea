//! The metadata region (§2.6): table of items and the five system items
//! (table in the module doc).

use kiln_units::Guid;
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use crate::error::{Error, Format, Result};

use super::{VHDX_BLOCK_SIZE, VHDX_LOGICAL_SECTOR, VHDX_PHYSICAL_SECTOR};

/// `metadata`.
const VHDX_METADATA_SIGNATURE: [u8; 8] = *b"metadata";
/// Entries the 64 KiB table can hold (§2.6.1.1).
const VHDX_MAX_METADATA_ENTRIES: u16 = 2047;
/// Size of the table at the start of the region, bytes; items follow.
pub(crate) const VHDX_METADATA_TABLE_LEN: usize = 64 << 10;
/// Entry flag IsVirtualDisk (§2.6.1.2).
const FLAG_VIRTUAL_DISK: u32 = 1 << 1;
/// Entry flag IsRequired (§2.6.1.2).
const FLAG_REQUIRED: u32 = 1 << 2;
/// File Parameters flag HasParent (§2.6.2.1): a differencing disk.
const FILE_PARAM_HAS_PARENT: u32 = 1 << 1;

const fn guid(b: [u8; 16]) -> Guid {
    Guid::from_rfc_bytes(b)
}
/// File Parameters: block size u32, flags u32 (§2.6.2.1).
const ITEM_FILE_PARAMETERS: Guid = guid([
    0xca, 0xa1, 0x67, 0x37, 0xfa, 0x36, 0x4d, 0x43, 0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b,
]);
/// Virtual Disk Size: u64 bytes (§2.6.2.2).
const ITEM_VIRTUAL_DISK_SIZE: Guid = guid([
    0x2f, 0xa5, 0x42, 0x24, 0xcd, 0x1b, 0x48, 0x76, 0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8,
]);
/// Virtual Disk ID (page 83 data): GUID (§2.6.2.3).
const ITEM_VIRTUAL_DISK_ID: Guid = guid([
    0xbe, 0xca, 0x12, 0xab, 0xb2, 0xe6, 0x45, 0x23, 0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46,
]);
/// Logical Sector Size: u32, 512 or 4096 (§2.6.2.4).
const ITEM_LOGICAL_SECTOR: Guid = guid([
    0x81, 0x41, 0xbf, 0x1d, 0xa9, 0x6f, 0x47, 0x09, 0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f,
]);
/// Physical Sector Size: u32, 512 or 4096 (§2.6.2.5).
const ITEM_PHYSICAL_SECTOR: Guid = guid([
    0xcd, 0xa3, 0x48, 0xc7, 0x44, 0x5d, 0x44, 0x71, 0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56,
]);

/// Metadata table header (§2.6.1.1).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawMetadataTableHeader {
    /// 0: `metadata`.
    signature: [u8; 8],
    /// 8.
    reserved: U16,
    /// 10: at most 2047.
    entry_count: U16,
    /// 12.
    reserved2: [u8; 20],
}
const _: () = assert!(std::mem::size_of::<RawMetadataTableHeader>() == 32);

/// Metadata table entry (§2.6.1.2).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawMetadataEntry {
    /// 0.
    item_id: [u8; 16],
    /// 16: bytes from the start of the region, at least 64 KiB.
    offset: U32,
    /// 20: bytes.
    length: U32,
    /// 24: IsUser, IsVirtualDisk, IsRequired.
    flags: U32,
    /// 28.
    reserved: U32,
}
const _: () = assert!(std::mem::size_of::<RawMetadataEntry>() == 32);

/// The disk parameters the metadata items hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DiskParams {
    pub block_size: u64,
    pub virtual_size: u64,
    pub logical_sector: u32,
}

/// The metadata region's first bytes as written: the table, then the
/// five items from 64 KiB on (the rest of the region stays zero).
pub(crate) fn metadata_bytes(virtual_size: u64, disk_id: Guid) -> Vec<u8> {
    // OK: 1 MiB fits a u32.
    let block = VHDX_BLOCK_SIZE as u32;
    let items: [(Guid, Vec<u8>, u32); 5] = [
        (
            ITEM_FILE_PARAMETERS,
            [block.to_le_bytes(), 0u32.to_le_bytes()].concat(),
            FLAG_REQUIRED,
        ),
        (
            ITEM_VIRTUAL_DISK_SIZE,
            virtual_size.to_le_bytes().to_vec(),
            FLAG_VIRTUAL_DISK | FLAG_REQUIRED,
        ),
        (
            ITEM_VIRTUAL_DISK_ID,
            disk_id.to_disk_bytes().to_vec(),
            FLAG_VIRTUAL_DISK | FLAG_REQUIRED,
        ),
        (
            ITEM_LOGICAL_SECTOR,
            VHDX_LOGICAL_SECTOR.to_le_bytes().to_vec(),
            FLAG_VIRTUAL_DISK | FLAG_REQUIRED,
        ),
        (
            ITEM_PHYSICAL_SECTOR,
            VHDX_PHYSICAL_SECTOR.to_le_bytes().to_vec(),
            FLAG_VIRTUAL_DISK | FLAG_REQUIRED,
        ),
    ];
    let mut b = vec![0u8; VHDX_METADATA_TABLE_LEN];
    let mut head = RawMetadataTableHeader::new_zeroed();
    head.signature = VHDX_METADATA_SIGNATURE;
    head.entry_count = 5.into();
    b[..32].copy_from_slice(head.as_bytes());
    for (i, (id, value, flags)) in items.into_iter().enumerate() {
        let e = RawMetadataEntry {
            item_id: id.to_disk_bytes(),
            offset: u32::try_from(b.len()).unwrap_or(u32::MAX).into(),
            length: u32::try_from(value.len()).unwrap_or(0).into(),
            flags: flags.into(),
            reserved: 0.into(),
        };
        let at = 32 + 32 * i;
        b[at..at + 32].copy_from_slice(e.as_bytes());
        b.extend_from_slice(&value);
    }
    b
}

fn corrupt(at: u64, what: &'static str) -> Error {
    Error::corrupt(Format::Vhdx, at, what)
}

/// Parses the metadata region `region` (its first bytes, at least the
/// table; items outside it are refused) read at file byte `at`.
///
/// # Errors
/// [`Error::Corrupt`] for a bad signature, entries outside the region, a
/// missing system item or out-of-range values; [`Error::Unsupported`] for
/// a differencing disk or an unknown required item.
pub(crate) fn parse_metadata(region: &[u8], at: u64) -> Result<DiskParams> {
    let head = RawMetadataTableHeader::read_from_prefix(region)
        .map_err(|_| corrupt(at, "metadata region shorter than its table"))?
        .0;
    if head.signature != VHDX_METADATA_SIGNATURE {
        return Err(corrupt(at, "metadata table signature is not `metadata`"));
    }
    let count = head.entry_count.get();
    if count > VHDX_MAX_METADATA_ENTRIES {
        return Err(corrupt(at + 10, "metadata entry count above 2047"));
    }
    let (mut params, mut size, mut sector) = (None, None, None);
    for i in 0..usize::from(count) {
        let eat = 32 + 32 * i;
        let Some(Ok((e, _))) = region.get(eat..).map(RawMetadataEntry::read_from_prefix) else {
            return Err(corrupt(at + eat as u64, "metadata entry"));
        };
        let start = e.offset.get() as usize;
        let value = start
            .checked_add(e.length.get() as usize)
            .and_then(|end| region.get(start..end))
            .filter(|_| start >= VHDX_METADATA_TABLE_LEN)
            .ok_or_else(|| corrupt(at + eat as u64 + 16, "metadata item outside its region"))?;
        let u32_at = |o: usize| {
            value
                .get(o..o + 4)
                .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        };
        match Guid::from_disk_bytes(e.item_id) {
            g if g == ITEM_FILE_PARAMETERS => params = u32_at(0).zip(u32_at(4)),
            g if g == ITEM_VIRTUAL_DISK_SIZE => {
                size = value
                    .get(..8)
                    .and_then(|s| s.try_into().ok())
                    .map(u64::from_le_bytes)
            }
            g if g == ITEM_LOGICAL_SECTOR => sector = u32_at(0),
            g if g == ITEM_VIRTUAL_DISK_ID || g == ITEM_PHYSICAL_SECTOR => {}
            _ if e.flags.get() & FLAG_REQUIRED != 0 => {
                return Err(Error::unsupported(
                    Format::Vhdx,
                    "unknown required metadata item",
                ))
            }
            _ => {}
        }
    }
    let (block_size, flags) = params.ok_or_else(|| corrupt(at, "no file parameters item"))?;
    let virtual_size = size.ok_or_else(|| corrupt(at, "no virtual disk size item"))?;
    let logical_sector = sector.ok_or_else(|| corrupt(at, "no logical sector size item"))?;
    if flags & FILE_PARAM_HAS_PARENT != 0 {
        return Err(Error::unsupported(Format::Vhdx, "differencing disk"));
    }
    if !block_size.is_power_of_two() || !(1 << 20..=256 << 20).contains(&block_size) {
        return Err(corrupt(
            at,
            "block size not a power of two from 1 to 256 MiB",
        ));
    }
    if !matches!(logical_sector, 512 | 4096) {
        return Err(corrupt(at, "logical sector size neither 512 nor 4096"));
    }
    if virtual_size > super::VHDX_MAX_SIZE || virtual_size % u64::from(logical_sector) != 0 {
        return Err(corrupt(
            at,
            "virtual disk size above 64 TiB or not a sector multiple",
        ));
    }
    Ok(DiskParams {
        block_size: u64::from(block_size),
        virtual_size,
        logical_sector,
    })
}
