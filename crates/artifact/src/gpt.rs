#![warn(clippy::arithmetic_side_effects, clippy::as_conversions)]
//! Moving the backup GPT to the end of a larger disk after flashing
//! (what `sgdisk -e` does; bmaptool does not).
//!
//! Spec: UEFI 2.10 §5.3 (GUID Partition Table disk layout), §5.3.2 (GPT
//! header), §5.2.3 (protective MBR).
//!
//! # GPT header (at LBA 1, backup at the last LBA)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0  | 8  | Signature `"EFI PART"` |
//! | 8  | 4  | Revision (0x00010000) |
//! | 12 | 4  | HeaderSize (92 ..= block size) |
//! | 16 | 4  | HeaderCRC32 (CRC32 of HeaderSize bytes, this field zeroed) |
//! | 20 | 4  | Reserved (0) |
//! | 24 | 8  | MyLBA |
//! | 32 | 8  | AlternateLBA |
//! | 40 | 8  | FirstUsableLBA |
//! | 48 | 8  | LastUsableLBA |
//! | 56 | 16 | DiskGUID |
//! | 72 | 8  | PartitionEntryLBA |
//! | 80 | 4  | NumberOfPartitionEntries |
//! | 84 | 4  | SizeOfPartitionEntry (128 × 2^n) |
//! | 88 | 4  | PartitionEntryArrayCRC32 |
//!
//! The backup partition entry array sits right before the backup header;
//! both CRCs use CRC-32 (ISO-HDLC, as zlib), computed in [`GptCrc32`].
//!
//! # Protective MBR partition record (LBA 0, offset 446 + 16·i)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 4  | 1 | OSType (0xEE for the protective partition) |
//! | 8  | 4 | StartingLBA (1) |
//! | 12 | 4 | SizeInLBA (disk size − 1, capped at 0xFFFFFFFF) |

use kiln_units::{ReadAt, SectorSize, WriteAt};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::{io_err, Error, Result};

/// `"EFI PART"` (UEFI 2.10 §5.3.2).
pub const GPT_SIGNATURE: [u8; 8] = *b"EFI PART";
/// Size in bytes of the defined part of the GPT header.
pub const GPT_HEADER_SIZE: usize = 92;
/// Largest partition entry array accepted, in bytes (bounds allocation).
pub const GPT_MAX_ENTRY_ARRAY_BYTES: u64 = 1 << 20;

/// The GPT header as on disk.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawGptHeader {
    /// 0: "EFI PART".
    signature: [u8; 8],
    /// 8: revision.
    revision: U32,
    /// 12: header size in bytes.
    header_size: U32,
    /// 16: CRC32 of the header.
    header_crc32: U32,
    /// 20: reserved.
    reserved: U32,
    /// 24: LBA of this header.
    my_lba: U64,
    /// 32: LBA of the other header.
    alternate_lba: U64,
    /// 40: first usable LBA.
    first_usable_lba: U64,
    /// 48: last usable LBA.
    last_usable_lba: U64,
    /// 56: disk GUID (mixed endian).
    disk_guid: [u8; 16],
    /// 72: first LBA of the entry array.
    partition_entry_lba: U64,
    /// 80: number of entries.
    number_of_partition_entries: U32,
    /// 84: bytes per entry.
    size_of_partition_entry: U32,
    /// 88: CRC32 of the entry array.
    partition_entry_array_crc32: U32,
}

const _: () = assert!(std::mem::size_of::<RawGptHeader>() == GPT_HEADER_SIZE);

/// The GPT CRC-32 (UEFI 2.10 §5.3.2: the CRC of ISO 3309 / zlib).
#[derive(Debug, Clone, Copy)]
pub struct GptCrc32;

impl GptCrc32 {
    /// CRC-32 of `data`.
    pub fn checksum(data: &[u8]) -> u32 {
        crc32fast::hash(data)
    }
    /// CRC of a header block: the first `header_size` bytes with the CRC
    /// field (offset 16..20) taken as zero.
    fn header(block: &[u8], header_size: usize) -> Option<u32> {
        let mut h = crc32fast::Hasher::new();
        h.update(block.get(..16)?);
        h.update(&[0u8; 4]);
        h.update(block.get(20..header_size)?);
        Some(h.finalize())
    }
}

/// What [`relocate_backup_gpt`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GptRelocation {
    /// Where the backup header was (the image's last LBA).
    pub old_backup_lba: u64,
    /// Where it is now (the target's last LBA).
    pub new_backup_lba: u64,
    /// First LBA of the new backup entry array.
    pub new_backup_entries_lba: u64,
    /// The new last usable LBA written into both headers.
    pub new_last_usable_lba: u64,
    /// Whether the protective MBR's 0xEE record was resized.
    pub protective_mbr_resized: bool,
}

fn gpt_err(lba: u64, reason: &'static str) -> Error {
    Error::Gpt { lba, reason }
}

/// Byte offset of `lba`.
fn byte_off(lba: u64, ss: u64) -> Result<u64> {
    lba.checked_mul(ss).ok_or(gpt_err(lba, "LBA overflows"))
}

/// A zeroed buffer of `lbas` sectors.
fn sectors(lbas: u64, ss: u64) -> Result<Vec<u8>> {
    let n = lbas
        .checked_mul(ss)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or(gpt_err(lbas, "size overflows"))?;
    Ok(vec![0u8; n])
}

fn read_block<T: ReadAt + ?Sized>(dev: &T, lba: u64, ss: u64) -> Result<Vec<u8>> {
    let mut b = sectors(1, ss)?;
    let off = byte_off(lba, ss)?;
    dev.read_exact_at(&mut b, off)
        .map_err(io_err("reading a GPT block", off))?;
    Ok(b)
}

/// If the disk in `dev` has a valid primary GPT whose backup is not at the
/// last LBA of `target_bytes`, writes a new backup entry array and header at
/// the end, points the primary header at it (AlternateLBA, LastUsableLBA,
/// CRC) and zeroes the old backup header and array. Also grows the
/// protective MBR's 0xEE record if it covered the old disk exactly.
/// Returns `None` when there is no GPT at LBA 1 or it already ends at the
/// target's end.
///
/// # Errors
/// [`Error::Gpt`] for a corrupt primary header or entry array (bad CRC,
/// sizes out of bounds) or a target too small for the table;
/// [`Error::Io`].
pub fn relocate_backup_gpt<T: ReadAt + WriteAt + ?Sized>(
    dev: &mut T,
    sector: SectorSize,
    target_bytes: u64,
) -> Result<Option<GptRelocation>> {
    let ss = sector.bytes();
    let total_lbas = target_bytes.checked_div(ss).unwrap_or(0);
    if total_lbas < 4 {
        return Ok(None);
    }
    let new_last = total_lbas.saturating_sub(1);
    let block = read_block(&*dev, 1, ss)?;
    let Some(head) = block.get(..GPT_HEADER_SIZE) else {
        return Err(gpt_err(1, "block smaller than the header"));
    };
    let Ok(hdr) = RawGptHeader::read_from_bytes(head) else {
        return Err(gpt_err(1, "unreadable header"));
    };
    if hdr.signature != GPT_SIGNATURE {
        return Ok(None);
    }
    let header_size = usize::try_from(hdr.header_size.get()).unwrap_or(usize::MAX);
    if header_size < GPT_HEADER_SIZE || u64::try_from(header_size).unwrap_or(u64::MAX) > ss {
        return Err(gpt_err(1, "header size out of range"));
    }
    if GptCrc32::header(&block, header_size) != Some(hdr.header_crc32.get()) {
        return Err(gpt_err(1, "primary header CRC mismatch"));
    }
    if hdr.my_lba.get() != 1 {
        return Err(gpt_err(1, "primary header MyLBA is not 1"));
    }
    let old_alt = hdr.alternate_lba.get();
    if old_alt == new_last {
        return Ok(None);
    }
    let entry_size = u64::from(hdr.size_of_partition_entry.get());
    let entries = u64::from(hdr.number_of_partition_entries.get());
    if entry_size < 128 || !entry_size.is_power_of_two() {
        return Err(gpt_err(1, "partition entry size is not 128 x 2^n"));
    }
    let array_bytes = entry_size
        .checked_mul(entries)
        .filter(|b| *b <= GPT_MAX_ENTRY_ARRAY_BYTES)
        .ok_or(gpt_err(1, "partition entry array too large"))?;
    let array_lbas = array_bytes.div_ceil(ss);
    let entry_lba = hdr.partition_entry_lba.get();
    let mut array = sectors(array_lbas, ss)?;
    let array_off = byte_off(entry_lba, ss)?;
    dev.read_exact_at(&mut array, array_off)
        .map_err(io_err("reading the GPT entry array", array_off))?;
    let crc = GptCrc32::checksum(
        array
            .get(..usize::try_from(array_bytes).unwrap_or(usize::MAX))
            .unwrap_or_default(),
    );
    if crc != hdr.partition_entry_array_crc32.get() {
        return Err(gpt_err(entry_lba, "partition entry array CRC mismatch"));
    }
    let old_last_usable = hdr.last_usable_lba.get();
    let new_entries_lba = new_last
        .checked_sub(array_lbas)
        .ok_or(gpt_err(new_last, "target too small for the GPT"))?;
    let new_last_usable = new_entries_lba
        .checked_sub(1)
        .ok_or(gpt_err(new_last, "target too small for the GPT"))?;
    if new_last_usable < old_last_usable || old_alt > new_last {
        return Err(gpt_err(
            new_last,
            "target is smaller than the disk the GPT describes",
        ));
    }

    // 1. New backup array and header at the end.
    let off = byte_off(new_entries_lba, ss)?;
    dev.write_all_at(&array, off)
        .map_err(io_err("writing the backup GPT entries", off))?;
    let mut backup = hdr.clone();
    backup.my_lba = U64::new(new_last);
    backup.alternate_lba = U64::new(1);
    backup.partition_entry_lba = U64::new(new_entries_lba);
    backup.last_usable_lba = U64::new(new_last_usable);
    let backup_block = header_block(&block, &mut backup, header_size);
    let off = byte_off(new_last, ss)?;
    dev.write_all_at(&backup_block, off)
        .map_err(io_err("writing the backup GPT header", off))?;

    // 2. Primary header points at it.
    let mut primary = hdr.clone();
    primary.alternate_lba = U64::new(new_last);
    primary.last_usable_lba = U64::new(new_last_usable);
    let primary_block = header_block(&block, &mut primary, header_size);
    dev.write_all_at(&primary_block, ss)
        .map_err(io_err("writing the primary GPT header", ss))?;

    // 3. Clear the stale backup (it lies past the old last usable LBA, so
    //    it never overlaps a partition).
    if old_alt > old_last_usable && old_alt < new_entries_lba {
        let stale_first = old_alt
            .saturating_sub(array_lbas)
            .max(old_last_usable.saturating_add(1));
        let zeros = sectors(1, ss)?;
        for lba in stale_first..=old_alt {
            let off = byte_off(lba, ss)?;
            dev.write_all_at(&zeros, off)
                .map_err(io_err("clearing the old backup GPT", off))?;
        }
    }

    // 4. Protective MBR.
    let mut mbr = [0u8; 512];
    dev.read_exact_at(&mut mbr, 0)
        .map_err(io_err("reading the protective MBR", 0))?;
    let mut resized = false;
    if mbr.get(510..512) == Some(&[0x55, 0xAA][..]) {
        let old_size = old_alt.min(u64::from(u32::MAX));
        let new_size = u32::try_from(new_last.min(u64::from(u32::MAX))).unwrap_or(u32::MAX);
        // Four 16-byte partition records at offset 446.
        for rec in mbr
            .get_mut(446..510)
            .unwrap_or_default()
            .chunks_exact_mut(16)
        {
            let start = u32::from_le_bytes([rec[8], rec[9], rec[10], rec[11]]);
            let size = u32::from_le_bytes([rec[12], rec[13], rec[14], rec[15]]);
            if rec[4] == 0xEE && start == 1 && u64::from(size) == old_size {
                rec[12..16].copy_from_slice(&new_size.to_le_bytes());
                resized = true;
            }
        }
        if resized {
            dev.write_all_at(&mbr, 0)
                .map_err(io_err("writing the protective MBR", 0))?;
        }
    }
    Ok(Some(GptRelocation {
        old_backup_lba: old_alt,
        new_backup_lba: new_last,
        new_backup_entries_lba: new_entries_lba,
        new_last_usable_lba: new_last_usable,
        protective_mbr_resized: resized,
    }))
}

/// A header block: the original block (reserved tail kept) with the
/// fields of `hdr` and a fresh CRC.
fn header_block(orig: &[u8], hdr: &mut RawGptHeader, header_size: usize) -> Vec<u8> {
    let mut out = orig.to_vec();
    hdr.header_crc32 = U32::new(0);
    if let Some(dst) = out.get_mut(..GPT_HEADER_SIZE) {
        dst.copy_from_slice(hdr.as_bytes());
    }
    let crc = GptCrc32::header(&out, header_size).unwrap_or_default();
    if let Some(dst) = out.get_mut(16..20) {
        dst.copy_from_slice(&crc.to_le_bytes());
    }
    out
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;

    #[test]
    fn crc_known_answer() {
        // The standard CRC-32 check value.
        assert_eq!(GptCrc32::checksum(b"123456789"), 0xCBF4_3926);
    }

    fn tiny_gpt(total_lbas: u64) -> Vec<u8> {
        let ss = 512u64;
        let mut disk = vec![0u8; (total_lbas * ss) as usize];
        let array_lbas = 32;
        let mut entries = vec![0u8; 128 * 128];
        entries[0] = 0xAF; // some partition type GUID byte
        entries[32..40].copy_from_slice(&34u64.to_le_bytes());
        entries[40..48].copy_from_slice(&40u64.to_le_bytes());
        let last = total_lbas - 1;
        let mut h = RawGptHeader {
            signature: GPT_SIGNATURE,
            revision: U32::new(0x0001_0000),
            header_size: U32::new(92),
            header_crc32: U32::new(0),
            reserved: U32::new(0),
            my_lba: U64::new(1),
            alternate_lba: U64::new(last),
            first_usable_lba: U64::new(34),
            last_usable_lba: U64::new(last - array_lbas - 1),
            disk_guid: [7; 16],
            partition_entry_lba: U64::new(2),
            number_of_partition_entries: U32::new(128),
            size_of_partition_entry: U32::new(128),
            partition_entry_array_crc32: U32::new(GptCrc32::checksum(&entries)),
        };
        let blk = header_block(&[0u8; 512], &mut h, 92);
        disk[512..1024].copy_from_slice(&blk);
        disk[1024..1024 + entries.len()].copy_from_slice(&entries);
        disk[446 + 4] = 0xEE;
        disk[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        disk[446 + 12..446 + 16].copy_from_slice(&(last as u32).to_le_bytes());
        disk[510] = 0x55;
        disk[511] = 0xAA;
        disk
    }

    #[test]
    fn relocates_and_rechecks() {
        let mut disk = tiny_gpt(100);
        disk.resize(200 * 512, 0);
        let r = relocate_backup_gpt(&mut disk, SectorSize::S512, 200 * 512)
            .unwrap()
            .unwrap();
        assert_eq!(r.old_backup_lba, 99);
        assert_eq!(r.new_backup_lba, 199);
        assert_eq!(r.new_backup_entries_lba, 167);
        assert!(r.protective_mbr_resized);
        let backup = RawGptHeader::read_from_bytes(&disk[199 * 512..199 * 512 + 92]).unwrap();
        assert_eq!(backup.my_lba.get(), 199);
        assert_eq!(
            GptCrc32::header(&disk[199 * 512..200 * 512], 92),
            Some(backup.header_crc32.get())
        );
        // Second call: nothing left to do.
        assert_eq!(
            relocate_backup_gpt(&mut disk, SectorSize::S512, 200 * 512).unwrap(),
            None
        );
    }

    #[test]
    fn corrupt_headers_are_errors() {
        let mut disk = tiny_gpt(100);
        disk[512 + 40] ^= 1;
        disk.resize(200 * 512, 0);
        assert!(matches!(
            relocate_backup_gpt(&mut disk, SectorSize::S512, 200 * 512),
            Err(Error::Gpt { lba: 1, .. })
        ));
        let mut plain = vec![0u8; 200 * 512];
        assert_eq!(
            relocate_backup_gpt(&mut plain, SectorSize::S512, 200 * 512).unwrap(),
            None
        );
        let mut small = tiny_gpt(100);
        assert!(relocate_backup_gpt(&mut small, SectorSize::S512, 50 * 512).is_err());
    }
}
