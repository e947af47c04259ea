//! GUID Partition Table with protective MBR, primary and backup copies.
//!
//! Spec: UEFI 2.10 §5.3 "GUID Partition Table (GPT) Disk Layout"
//! (header table 5-5, entry table 5-6, attributes table 5-7) and §5.2.3
//! "Protective MBR" (table 5-4). 512-byte logical blocks.
//!
//! Disk layout written here (`L` = last LBA = disk sectors - 1; 128
//! entries of 128 bytes = 32 sectors):
//!
//! | LBA | content |
//! |---|---|
//! | 0 | protective MBR: one record, type 0xEE, start 1, size min(L, 0xFFFFFFFF) |
//! | 1 | primary header (`MyLBA` 1, `AlternateLBA` L, entries at 2) |
//! | 2..=33 | primary partition entry array |
//! | 34..=L-33 | usable area (`FirstUsableLBA` 34, `LastUsableLBA` L-33) |
//! | L-32..=L-1 | backup partition entry array |
//! | L | backup header (`MyLBA` L, `AlternateLBA` 1, entries at L-32) |
//!
//! GPT header (little endian; the rest of the block is zero):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0  | 8  | signature `EFI PART` |
//! | 8  | 4  | revision 0x00010000 |
//! | 12 | 4  | header size (92) |
//! | 16 | 4  | header CRC32 (over `HeaderSize` bytes, this field zero) |
//! | 20 | 4  | reserved, zero |
//! | 24 | 8  | MyLBA |
//! | 32 | 8  | AlternateLBA |
//! | 40 | 8  | FirstUsableLBA |
//! | 48 | 8  | LastUsableLBA (inclusive) |
//! | 56 | 16 | DiskGUID (mixed endian) |
//! | 72 | 8  | PartitionEntryLBA |
//! | 80 | 4  | NumberOfPartitionEntries |
//! | 84 | 4  | SizeOfPartitionEntry (128) |
//! | 88 | 4  | PartitionEntryArrayCRC32 (over count × size bytes) |
//!
//! Partition entry (128 bytes):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0  | 16 | PartitionTypeGUID (all zero = unused) |
//! | 16 | 16 | UniquePartitionGUID |
//! | 32 | 8  | StartingLBA |
//! | 40 | 8  | EndingLBA (inclusive) |
//! | 48 | 8  | Attributes (bit 0 required, bit 1 no block IO, bit 2 legacy BIOS bootable, 48-63 type specific) |
//! | 56 | 72 | PartitionName, UTF-16LE, 36 code units, NUL padded |
//!
//! GUIDs are stored mixed-endian through [`kiln_units::Guid`]; CRC32s are
//! computed in one place (the crate-private `crc` module). The protective
//! MBR is "hybrid-free": exactly one 0xEE record, nothing else.

use kiln_units::{Guid, WriteAt};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use crate::align::{check_extent, check_overlaps, Span};
use crate::crc::GptCrc32;
use crate::error::{io_at, Error, Result};
use crate::mbr::{chs, BootCode, MbrType, RawMbr, RawMbrEntry, MBR_BOOT_CODE_BYTES, MBR_SIGNATURE};
use crate::SECTOR_BYTES;

/// `EFI PART`, the header signature.
pub(crate) const GPT_SIGNATURE: [u8; 8] = *b"EFI PART";
/// Revision 1.0.
pub(crate) const GPT_REVISION: u32 = 0x0001_0000;
/// Size of the defined header fields, in bytes.
pub(crate) const GPT_HEADER_SIZE: u32 = 92;
/// Number of entries kiln writes (the minimum array of 16 KiB the spec
/// asks for, and what every partitioner writes).
pub const GPT_ENTRY_COUNT: u32 = 128;
/// Size of one partition entry, in bytes.
pub(crate) const GPT_ENTRY_SIZE: u32 = 128;
/// Partition names are at most this many UTF-16 code units.
pub const GPT_NAME_UNITS: usize = 36;
/// Sectors of the entry array kiln writes: 128 × 128 / 512.
pub(crate) const GPT_ARRAY_SECTORS: u64 =
    (GPT_ENTRY_COUNT as u64 * GPT_ENTRY_SIZE as u64) / SECTOR_BYTES;

/// Well-known partition type GUIDs (UEFI 2.10 table 5-7 and the
/// Discoverable Partitions Specification).
pub mod types {
    use kiln_units::Guid;

    const fn g(b: [u8; 16]) -> Guid {
        Guid::from_rfc_bytes(b)
    }
    /// EFI System Partition, C12A7328-F81F-11D2-BA4B-00A0C93EC93B.
    pub const EFI_SYSTEM: Guid = g([
        0xC1, 0x2A, 0x73, 0x28, 0xF8, 0x1F, 0x11, 0xD2, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9,
        0x3B,
    ]);
    /// Linux filesystem data, 0FC63DAF-8483-4772-8E79-3D69D8477DE4.
    pub const LINUX_FILESYSTEM: Guid = g([
        0x0F, 0xC6, 0x3D, 0xAF, 0x84, 0x83, 0x47, 0x72, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D,
        0xE4,
    ]);
    /// Linux swap, 0657FD6D-A4AB-43C4-84E5-0933C84B4F4F.
    pub const LINUX_SWAP: Guid = g([
        0x06, 0x57, 0xFD, 0x6D, 0xA4, 0xAB, 0x43, 0xC4, 0x84, 0xE5, 0x09, 0x33, 0xC8, 0x4B, 0x4F,
        0x4F,
    ]);
    /// BIOS boot partition (GRUB core.img), 21686148-6449-6E6F-744E-656564454649.
    pub const BIOS_BOOT: Guid = g([
        0x21, 0x68, 0x61, 0x48, 0x64, 0x49, 0x6E, 0x6F, 0x74, 0x4E, 0x65, 0x65, 0x64, 0x45, 0x46,
        0x49,
    ]);
    /// Microsoft basic data, EBD0A0A2-B9E5-4433-87C0-68B6B72699C7.
    pub const MICROSOFT_BASIC_DATA: Guid = g([
        0xEB, 0xD0, 0xA0, 0xA2, 0xB9, 0xE5, 0x44, 0x33, 0x87, 0xC0, 0x68, 0xB6, 0xB7, 0x26, 0x99,
        0xC7,
    ]);
}

/// The usual name of a partition type GUID (as `sfdisk` shows it), if
/// it is one of [`types`].
pub fn type_name(type_guid: Guid) -> Option<&'static str> {
    Some(match type_guid {
        t if t == types::EFI_SYSTEM => "EFI System",
        t if t == types::LINUX_FILESYSTEM => "Linux filesystem",
        t if t == types::LINUX_SWAP => "Linux swap",
        t if t == types::BIOS_BOOT => "BIOS boot",
        t if t == types::MICROSOFT_BASIC_DATA => "Microsoft basic data",
        _ => return None,
    })
}

/// The GPT header (UEFI 2.10 table 5-5), the first 92 bytes of its block.
#[repr(C)]
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct RawGptHeader {
    /// Offset 0: `EFI PART`.
    pub(crate) signature: [u8; 8],
    /// Offset 8: 0x00010000.
    pub(crate) revision: U32,
    /// Offset 12: 92.
    pub(crate) header_size: U32,
    /// Offset 16: CRC32 of the header with this field zero.
    pub(crate) header_crc32: U32,
    /// Offset 20: zero.
    pub(crate) reserved: U32,
    /// Offset 24: LBA of this header.
    pub(crate) my_lba: U64,
    /// Offset 32: LBA of the other header.
    pub(crate) alternate_lba: U64,
    /// Offset 40: first usable LBA.
    pub(crate) first_usable_lba: U64,
    /// Offset 48: last usable LBA (inclusive).
    pub(crate) last_usable_lba: U64,
    /// Offset 56: disk GUID.
    pub(crate) disk_guid: [u8; 16],
    /// Offset 72: first LBA of the entry array.
    pub(crate) partition_entry_lba: U64,
    /// Offset 80: number of entries.
    pub(crate) number_of_partition_entries: U32,
    /// Offset 84: bytes per entry.
    pub(crate) size_of_partition_entry: U32,
    /// Offset 88: CRC32 of the entry array.
    pub(crate) partition_entry_array_crc32: U32,
}
const _: () = assert!(size_of::<RawGptHeader>() == 92);

/// One GPT partition entry (UEFI 2.10 table 5-6).
#[repr(C)]
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct RawGptEntry {
    /// Offset 0: partition type GUID (zero = unused entry).
    pub(crate) partition_type_guid: [u8; 16],
    /// Offset 16: unique partition GUID.
    pub(crate) unique_partition_guid: [u8; 16],
    /// Offset 32: first LBA.
    pub(crate) starting_lba: U64,
    /// Offset 40: last LBA, inclusive.
    pub(crate) ending_lba: U64,
    /// Offset 48: attribute bits.
    pub(crate) attributes: U64,
    /// Offset 56: UTF-16LE name.
    pub(crate) partition_name: [U16Le; GPT_NAME_UNITS],
}
const _: () = assert!(size_of::<RawGptEntry>() == 128);

pub(crate) type U16Le = zerocopy::little_endian::U16;

impl RawGptHeader {
    /// The header with its CRC computed.
    pub(crate) fn sealed(mut self) -> Self {
        self.header_crc32 = U32::new(0);
        self.header_crc32 = U32::new(GptCrc32::header(self.as_bytes()));
        self
    }
    /// The copy of this header that lives at `my_lba`, with the entry
    /// array at `entries_lba`, pointing at `alternate_lba`.
    pub(crate) fn moved(&self, my_lba: u64, alternate_lba: u64, entries_lba: u64) -> Self {
        let mut h = self.clone();
        h.my_lba = U64::new(my_lba);
        h.alternate_lba = U64::new(alternate_lba);
        h.partition_entry_lba = U64::new(entries_lba);
        h.sealed()
    }
}

/// Writes `header` into a zero-padded block at `lba`.
pub(crate) fn write_header_block<W: WriteAt + ?Sized>(
    target: &mut W,
    header: &RawGptHeader,
) -> Result<()> {
    let mut block = [0u8; SECTOR_BYTES as usize];
    block[..92].copy_from_slice(header.as_bytes());
    let at = header.my_lba.get().saturating_mul(SECTOR_BYTES);
    target.write_all_at(&block, at).map_err(io_at(at))
}

/// The protective MBR record for a disk whose last LBA is `last_lba`
/// (UEFI 2.10 table 5-4: start 1, CHS 0x000200, size capped at 2^32-1).
pub(crate) fn protective_record(last_lba: u64) -> RawMbrEntry {
    let size = u32::try_from(last_lba).unwrap_or(u32::MAX);
    let mut rec = RawMbrEntry::new(MbrType::GPT_PROTECTIVE.0, false, 1, size, 1);
    rec.starting_chs = [0x00, 0x02, 0x00];
    rec.ending_chs = if last_lba > u64::from(u32::MAX) {
        [0xFF; 3]
    } else {
        chs(last_lba)
    };
    rec
}

/// A GPT partition to write. Offsets and sizes in bytes (multiples of 512).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPartition {
    /// Partition name (kiln: the filesystem label), at most 36 UTF-16
    /// code units.
    pub name: String,
    /// Partition type GUID (see [`types`]).
    pub type_guid: Guid,
    /// Unique partition GUID (kiln derives it from the build seed).
    pub unique_guid: Guid,
    /// First byte.
    pub start_bytes: u64,
    /// Length in bytes.
    pub size_bytes: u64,
    /// Attribute bits (UEFI 2.10 table 5-8), usually 0.
    pub attributes: u64,
}

impl GptPartition {
    /// A partition with no attribute bits set.
    pub fn new(
        name: impl Into<String>,
        type_guid: Guid,
        unique_guid: Guid,
        start_bytes: u64,
        size_bytes: u64,
    ) -> Self {
        Self {
            name: name.into(),
            type_guid,
            unique_guid,
            start_bytes,
            size_bytes,
            attributes: 0,
        }
    }
    /// Sets the attribute bits.
    pub fn attributes(mut self, attributes: u64) -> Self {
        self.attributes = attributes;
        self
    }
}

/// A GPT to write: 128 entries, entry `i` is partition number `i + 1`.
///
/// ```
/// use kiln_part::{gpt_types, Gpt, GptPartition};
/// use kiln_units::Guid;
/// const MIB: u64 = 1 << 20;
/// let disk = 32 * MIB;
/// let mut gpt = Gpt::new(Guid::v4_from_seed([1; 16])).align(4 * MIB);
/// gpt.push(GptPartition::new("resin-boot", gpt_types::EFI_SYSTEM, Guid::v4_from_seed([2; 16]), 4 * MIB, 8 * MIB));
/// let mut img = Vec::new();
/// gpt.write_to(&mut img, disk).unwrap();
/// assert_eq!(img.len() as u64, disk); // the backup header is the last sector
/// let t = kiln_part::read_table(&img).unwrap();
/// assert_eq!(t.partitions[0].name.as_deref(), Some("resin-boot"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    disk_guid: Guid,
    align_bytes: u64,
    boot_code: BootCode,
    partitions: Vec<GptPartition>,
}

impl Gpt {
    /// An empty GPT with this disk GUID, sector alignment and zero boot
    /// code in the protective MBR.
    pub fn new(disk_guid: Guid) -> Self {
        Self {
            disk_guid,
            align_bytes: SECTOR_BYTES,
            boot_code: BootCode::Zero,
            partitions: Vec::new(),
        }
    }
    /// Requires every partition start to be a multiple of `align_bytes`.
    pub fn align(mut self, align_bytes: u64) -> Self {
        self.align_bytes = align_bytes;
        self
    }
    /// Chooses bytes 0..440 of the protective MBR.
    pub fn boot_code(mut self, boot_code: BootCode) -> Self {
        self.boot_code = boot_code;
        self
    }
    /// Appends a partition in the next entry.
    pub fn push(&mut self, partition: GptPartition) -> &mut Self {
        self.partitions.push(partition);
        self
    }

    /// Checks the layout against a disk of `disk_bytes` bytes.
    ///
    /// # Errors
    /// [`Error::BadDiskSize`], [`Error::TooManyPartitions`],
    /// [`Error::EmptyPartition`], [`Error::Misaligned`],
    /// [`Error::OutsideArea`] (outside `FirstUsableLBA..=LastUsableLBA`),
    /// [`Error::Overlap`], [`Error::NameTooLong`],
    /// [`Error::ZeroTypeGuid`], [`Error::DuplicateGuid`].
    pub fn validate(&self, disk_bytes: u64) -> Result<()> {
        let (first, last_usable, _) = geometry(disk_bytes)?;
        if let Some(p) = self.partitions.get(GPT_ENTRY_COUNT as usize) {
            return Err(Error::TooManyPartitions {
                name: p.name.clone(),
                max: GPT_ENTRY_COUNT as usize,
            });
        }
        let mut spans = Vec::with_capacity(self.partitions.len());
        for (i, p) in self.partitions.iter().enumerate() {
            let units = p.name.encode_utf16().count();
            if units > GPT_NAME_UNITS {
                return Err(Error::NameTooLong {
                    name: p.name.clone(),
                    units,
                    max: GPT_NAME_UNITS,
                });
            }
            if p.name.contains('\0') {
                return Err(Error::NulInName {
                    name: p.name.clone(),
                });
            }
            if p.type_guid == Guid::ZERO {
                return Err(Error::ZeroTypeGuid {
                    name: p.name.clone(),
                });
            }
            if let Some(o) = self
                .partitions
                .iter()
                .take(i)
                .find(|o| o.unique_guid == p.unique_guid)
            {
                return Err(Error::DuplicateGuid {
                    name: p.name.clone(),
                    other: o.name.clone(),
                });
            }
            let end = check_extent(
                &p.name,
                p.start_bytes,
                p.size_bytes,
                self.align_bytes,
                first * SECTOR_BYTES,
                (last_usable + 1) * SECTOR_BYTES,
            )?;
            spans.push(Span {
                name: p.name.clone(),
                start: p.start_bytes,
                end,
            });
        }
        check_overlaps(&spans)
    }

    /// Validates, then writes the protective MBR, both headers and both
    /// entry arrays to `target`, a disk of `disk_bytes` bytes (the backup
    /// header is its last sector, so a growable target ends up exactly
    /// `disk_bytes` long). Same inputs give the same bytes.
    ///
    /// # Errors
    /// The errors of [`Gpt::validate`]; [`Error::Io`].
    pub fn write_to<W: WriteAt + ?Sized>(&self, target: &mut W, disk_bytes: u64) -> Result<()> {
        self.validate(disk_bytes)?;
        let (first, last_usable, last) = geometry(disk_bytes)?;
        let mut entries = vec![0u8; (GPT_ARRAY_SECTORS * SECTOR_BYTES) as usize];
        for (p, slot) in self
            .partitions
            .iter()
            .zip(entries.chunks_exact_mut(GPT_ENTRY_SIZE as usize))
        {
            let mut e = RawGptEntry::new_zeroed();
            e.partition_type_guid = p.type_guid.to_disk_bytes();
            e.unique_partition_guid = p.unique_guid.to_disk_bytes();
            e.starting_lba = U64::new(p.start_bytes / SECTOR_BYTES);
            e.ending_lba = U64::new((p.start_bytes + p.size_bytes) / SECTOR_BYTES - 1);
            e.attributes = U64::new(p.attributes);
            for (u, c) in e.partition_name.iter_mut().zip(p.name.encode_utf16()) {
                *u = U16Le::new(c);
            }
            slot.copy_from_slice(e.as_bytes());
        }
        let primary = RawGptHeader {
            signature: GPT_SIGNATURE,
            revision: U32::new(GPT_REVISION),
            header_size: U32::new(GPT_HEADER_SIZE),
            header_crc32: U32::new(0),
            reserved: U32::new(0),
            my_lba: U64::new(1),
            alternate_lba: U64::new(last),
            first_usable_lba: U64::new(first),
            last_usable_lba: U64::new(last_usable),
            disk_guid: self.disk_guid.to_disk_bytes(),
            partition_entry_lba: U64::new(2),
            number_of_partition_entries: U32::new(GPT_ENTRY_COUNT),
            size_of_partition_entry: U32::new(GPT_ENTRY_SIZE),
            partition_entry_array_crc32: U32::new(GptCrc32::checksum(&entries)),
        }
        .sealed();
        write_pmbr(target, &self.boot_code, last)?;
        write_copies(target, &primary, &entries, last)
    }
}

/// `(first usable, last usable, last)` LBAs of a disk of `disk_bytes`
/// bytes with kiln's 128-entry arrays.
pub(crate) fn geometry(disk_bytes: u64) -> Result<(u64, u64, u64)> {
    let first = 2 + GPT_ARRAY_SECTORS;
    let min_sectors = first + GPT_ARRAY_SECTORS + 2;
    if disk_bytes % SECTOR_BYTES != 0 || disk_bytes / SECTOR_BYTES < min_sectors {
        return Err(Error::BadDiskSize {
            disk_bytes,
            min_bytes: min_sectors * SECTOR_BYTES,
        });
    }
    let last = disk_bytes / SECTOR_BYTES - 1;
    Ok((first, last - GPT_ARRAY_SECTORS - 1, last))
}

/// Writes the protective MBR for a disk whose last LBA is `last`.
pub(crate) fn write_pmbr<W: WriteAt + ?Sized>(
    target: &mut W,
    boot_code: &BootCode,
    last: u64,
) -> Result<()> {
    let mut mbr = RawMbr::new_zeroed();
    if let BootCode::Code(code) = boot_code {
        mbr.boot_code = **code;
    }
    mbr.partition_record[0] = protective_record(last);
    mbr.signature = MBR_SIGNATURE;
    let bytes = mbr.as_bytes();
    let skip = if matches!(boot_code, BootCode::Keep) {
        MBR_BOOT_CODE_BYTES
    } else {
        0
    };
    let tail = bytes.get(skip..).unwrap_or_default();
    target
        .write_all_at(tail, skip as u64)
        .map_err(io_at(skip as u64))
}

/// Writes the primary header + array at LBA 1/2 and the backup array +
/// header at the end of a disk whose last LBA is `last`, both derived
/// from `primary` (whose entry array CRC must match `entries`).
pub(crate) fn write_copies<W: WriteAt + ?Sized>(
    target: &mut W,
    primary: &RawGptHeader,
    entries: &[u8],
    last: u64,
) -> Result<()> {
    let array_sectors = (entries.len() as u64).div_ceil(SECTOR_BYTES);
    let primary = primary.moved(1, last, primary.partition_entry_lba.get());
    let backup_entries = last - array_sectors;
    let backup = primary.moved(last, 1, backup_entries);
    write_header_block(target, &primary)?;
    let at = primary.partition_entry_lba.get() * SECTOR_BYTES;
    target.write_all_at(entries, at).map_err(io_at(at))?;
    let at = backup_entries * SECTOR_BYTES;
    target.write_all_at(entries, at).map_err(io_at(at))?;
    write_header_block(target, &backup)
}

#[cfg(test)]
mod tests {
    use super::*;
    const MIB: u64 = 1 << 20;

    #[test]
    fn type_guids_known_answer() {
        assert_eq!(
            types::EFI_SYSTEM.to_string(),
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
        );
        assert_eq!(
            types::LINUX_FILESYSTEM.to_string(),
            "0fc63daf-8483-4772-8e79-3d69d8477de4"
        );
        assert_eq!(
            &types::LINUX_FILESYSTEM.to_disk_bytes()[..4],
            &[0xAF, 0x3D, 0xC6, 0x0F]
        );
        assert_eq!(
            types::BIOS_BOOT.to_string(),
            "21686148-6449-6e6f-744e-656564454649"
        );
    }

    #[test]
    fn geometry_of_64_mib() {
        let (f, lu, l) = geometry(64 * MIB).unwrap();
        assert_eq!((f, lu, l), (34, 131038, 131071));
        assert!(geometry(64 * MIB + 1).is_err());
        assert!(geometry(67 * 512).is_err());
        assert!(geometry(68 * 512).is_ok());
    }

    #[test]
    fn protective_record_caps() {
        let r = protective_record(131071);
        assert_eq!(r.os_type, 0xEE);
        assert_eq!(r.starting_lba.get(), 1);
        assert_eq!(r.size_in_lba.get(), 131071);
        assert_eq!(r.starting_chs, [0, 2, 0]);
        let r = protective_record(1 << 33);
        assert_eq!(r.size_in_lba.get(), u32::MAX);
        assert_eq!(r.ending_chs, [0xFF; 3]);
    }

    fn g(n: u8) -> Guid {
        Guid::v4_from_seed([n; 16])
    }

    #[test]
    fn validation_table() {
        let disk = 64 * MIB;
        let p = |name: &str, t: Guid, u: u8, s: u64, l: u64| GptPartition::new(name, t, g(u), s, l);
        let lf = types::LINUX_FILESYSTEM;
        let cases: Vec<(Vec<GptPartition>, u64, &str)> = vec![
            (vec![p("a", lf, 1, 0, MIB)], 512, "OutsideArea"),
            (vec![p("a", lf, 1, 17 * 512, MIB)], 512, "OutsideArea"),
            (vec![p("a", lf, 1, 60 * MIB, 4 * MIB)], 512, "OutsideArea"),
            (
                vec![p("a", lf, 1, 4 * MIB, 4 * MIB), p("b", lf, 2, 6 * MIB, MIB)],
                4 * MIB,
                "Misaligned",
            ),
            (
                vec![p("a", lf, 1, 4 * MIB, 8 * MIB), p("b", lf, 2, 8 * MIB, MIB)],
                4 * MIB,
                "Overlap",
            ),
            (
                vec![p("a", lf, 1, 4 * MIB, 4 * MIB), p("b", lf, 1, 8 * MIB, MIB)],
                4 * MIB,
                "DuplicateGuid",
            ),
            (
                vec![p("a", Guid::ZERO, 1, 4 * MIB, MIB)],
                4 * MIB,
                "ZeroTypeGuid",
            ),
            (
                vec![p(&"x".repeat(37), lf, 1, 4 * MIB, MIB)],
                4 * MIB,
                "NameTooLong",
            ),
            (vec![p("a", lf, 1, 4 * MIB, 0)], 4 * MIB, "EmptyPartition"),
            (
                (0..129).map(|i| p("n", lf, i as u8, 0, 0)).collect(),
                512,
                "TooManyPartitions",
            ),
        ];
        for (parts, align, want) in cases {
            let mut gpt = Gpt::new(g(0)).align(align);
            for q in parts {
                gpt.push(q);
            }
            let err = gpt.validate(disk).unwrap_err();
            assert!(format!("{err:?}").starts_with(want), "{want}: {err:?}");
            let mut img = Vec::new();
            assert!(gpt.write_to(&mut img, disk).is_err());
            assert!(img.is_empty());
        }
        // 36 units is fine, including a non-BMP char counted as 2 units.
        let mut gpt = Gpt::new(g(0));
        gpt.push(p(
            &format!("{}\u{1F600}", "x".repeat(34)),
            lf,
            1,
            4 * MIB,
            MIB,
        ));
        gpt.validate(disk).unwrap();
    }
}
