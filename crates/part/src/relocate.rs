//! Moving the backup GPT to the end of a larger disk after an image was
//! flashed onto it (what `sgdisk -e` does; bmaptool does not), for 512-
//! and 4096-byte logical sectors.
//!
//! Spec: UEFI 2.10 §5.3.2 (GPT header: `AlternateLBA`, `LastUsableLBA`,
//! the backup entry array right before the backup header) and §5.2.3
//! (protective MBR). The header and entry layouts are in [`crate::gpt`];
//! the header is read and checked by the same reader as
//! [`crate::read_table`] (signature, revision, header size up to one
//! sector, header and array CRC32, `MyLBA`, entry size 128 × 2^n, array
//! size bound, entries inside the usable range).
//!
//! Unlike [`crate::relocate_gpt_backup`], which rewrites the whole table
//! of a base image kiln is rebuilding (its output is kiln's), this edits
//! a flashed medium as little as it can: the image's bytes stay as they
//! were except
//!
//! | where | change |
//! |---|---|
//! | LBA 1 (primary header) | `AlternateLBA`, `LastUsableLBA`, `HeaderCRC32`; the rest of the sector kept |
//! | new last LBA − array sectors .. new last LBA − 1 | copy of the entry array |
//! | new last LBA | backup header (`MyLBA`, `AlternateLBA` 1, `PartitionEntryLBA`, `LastUsableLBA`, CRC) |
//! | old backup array and header | zeroed (they lie past the old `LastUsableLBA`) |
//! | protective MBR record (0xEE, start 1, size = old last LBA) | `SizeInLBA` only (CHS kept) |

use kiln_units::{ReadAt, SectorSize, WriteAt};
use zerocopy::little_endian::{U32, U64};
use zerocopy::IntoBytes;

use crate::crc::GptCrc32;
use crate::error::{io_at, Error, GptProblem, Result};
use crate::gpt::{RawGptHeader, GPT_HEADER_SIZE};
use crate::mbr::{MbrType, MBR_SIGNATURE};
use crate::read::{read_gpt_copy, read_sector, GptCopy};

/// What [`move_backup_gpt`] changed. LBAs count sectors of the size the
/// GPT was found at.
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

/// The new places of the backup copy on a disk whose last LBA is
/// `new_last`.
struct Plan {
    ss: u64,
    old_alt: u64,
    old_last_usable: u64,
    array_sectors: u64,
    new_last: u64,
    new_entries_lba: u64,
    new_last_usable: u64,
}

/// If `disk` holds a valid primary GPT (for `sector`-byte sectors) whose
/// backup is not at the last LBA of a disk of `target_bytes` bytes,
/// writes the entry array and the backup header at the end, points the
/// primary header at them, zeroes the old backup and resizes the
/// protective MBR record if it covered the old disk exactly (see the
/// module doc for every byte changed).
///
/// Returns `None` (writing nothing) when the disk is under 4 sectors,
/// when LBA 1 holds no `EFI PART` signature (no GPT of this sector
/// size), or when the backup already is at the end.
///
/// # Errors
/// [`Error::CorruptGpt`] (`primary` says what is wrong) for a primary
/// header or entry array that fails a check; [`Error::BadDiskSize`] when
/// the disk is too small for the table or smaller than the disk the GPT
/// describes (`min_bytes` is the least it needs); [`Error::Io`].
pub fn move_backup_gpt<D: ReadAt + WriteAt + ?Sized>(
    disk: &mut D,
    sector: SectorSize,
    target_bytes: u64,
) -> Result<Option<GptRelocation>> {
    let ss = sector.bytes();
    let total = target_bytes / ss;
    if total < 4 {
        return Ok(None);
    }
    let copy = match read_gpt_copy(&*disk, 1, total, sector) {
        Ok(copy) => copy,
        Err(GptProblem::BadSignature) => return Ok(None),
        Err(primary) => {
            return Err(Error::CorruptGpt {
                primary,
                backup: GptProblem::Unreadable,
            })
        }
    };
    let Some(plan) = plan(&copy, ss, target_bytes)? else {
        return Ok(None);
    };
    write_backup(disk, &copy, &plan)?;
    clear_old_backup(disk, &plan)?;
    let resized = resize_protective(disk, &plan)?;
    Ok(Some(GptRelocation {
        old_backup_lba: plan.old_alt,
        new_backup_lba: plan.new_last,
        new_backup_entries_lba: plan.new_entries_lba,
        new_last_usable_lba: plan.new_last_usable,
        protective_mbr_resized: resized,
    }))
}

/// Where the backup goes; `None` if it is already at the end. Refuses a
/// disk that cannot hold the table, or would cut off the usable area or
/// the old backup.
fn plan(copy: &GptCopy, ss: u64, target_bytes: u64) -> Result<Option<Plan>> {
    let new_last = (target_bytes / ss).saturating_sub(1);
    let old_alt = copy.header.alternate_lba.get();
    if old_alt == new_last {
        return Ok(None);
    }
    let old_last_usable = copy.header.last_usable_lba.get();
    // The array is at most 1 MiB (checked by read_gpt_copy).
    let array_sectors = u64::try_from(copy.entries.len())
        .unwrap_or(u64::MAX)
        .div_ceil(ss);
    let min_sectors = old_last_usable
        .saturating_add(array_sectors)
        .saturating_add(2)
        .max(old_alt.saturating_add(1));
    let too_small = Error::BadDiskSize {
        disk_bytes: target_bytes,
        min_bytes: min_sectors.saturating_mul(ss),
    };
    let Some(new_entries_lba) = new_last.checked_sub(array_sectors) else {
        return Err(too_small);
    };
    let Some(new_last_usable) = new_entries_lba.checked_sub(1) else {
        return Err(too_small);
    };
    if new_last_usable < old_last_usable || old_alt > new_last {
        return Err(too_small);
    }
    Ok(Some(Plan {
        ss,
        old_alt,
        old_last_usable,
        array_sectors,
        new_last,
        new_entries_lba,
        new_last_usable,
    }))
}

/// Writes the array and backup header at the end, then the primary
/// header pointing at them.
fn write_backup<D: WriteAt + ?Sized>(disk: &mut D, copy: &GptCopy, plan: &Plan) -> Result<()> {
    let at = byte_offset(plan.new_entries_lba, plan.ss);
    disk.write_all_at(&copy.entries, at).map_err(io_at(at))?;
    let mut backup = copy.header.clone();
    backup.my_lba = U64::new(plan.new_last);
    backup.alternate_lba = U64::new(1);
    backup.partition_entry_lba = U64::new(plan.new_entries_lba);
    backup.last_usable_lba = U64::new(plan.new_last_usable);
    let at = byte_offset(plan.new_last, plan.ss);
    disk.write_all_at(&header_block(&copy.block, &backup), at)
        .map_err(io_at(at))?;
    let mut primary = copy.header.clone();
    primary.alternate_lba = U64::new(plan.new_last);
    primary.last_usable_lba = U64::new(plan.new_last_usable);
    disk.write_all_at(&header_block(&copy.block, &primary), plan.ss)
        .map_err(io_at(plan.ss))
}

/// Zeroes the old backup array and header, which lie past the old last
/// usable LBA (so never in a partition) and before the new array.
fn clear_old_backup<D: WriteAt + ?Sized>(disk: &mut D, plan: &Plan) -> Result<()> {
    if plan.old_alt <= plan.old_last_usable || plan.old_alt >= plan.new_entries_lba {
        return Ok(());
    }
    let first = plan
        .old_alt
        .saturating_sub(plan.array_sectors)
        .max(plan.old_last_usable.saturating_add(1));
    let zeros = vec![0u8; usize::try_from(plan.ss).unwrap_or(512)];
    for lba in first..=plan.old_alt {
        let at = byte_offset(lba, plan.ss);
        disk.write_all_at(&zeros, at).map_err(io_at(at))?;
    }
    Ok(())
}

/// Resizes the protective MBR's 0xEE record (start 1) when it covered
/// the old disk exactly; returns whether it did.
fn resize_protective<D: ReadAt + WriteAt + ?Sized>(disk: &mut D, plan: &Plan) -> Result<bool> {
    let mut mbr = read_sector(&*disk, 0)?;
    if mbr.signature != MBR_SIGNATURE {
        return Ok(false);
    }
    let cap = |lba: u64| u32::try_from(lba).unwrap_or(u32::MAX);
    let (old_size, new_size) = (cap(plan.old_alt), cap(plan.new_last));
    let mut resized = false;
    for rec in mbr.partition_record.iter_mut() {
        if rec.os_type == MbrType::GPT_PROTECTIVE.0
            && rec.starting_lba.get() == 1
            && rec.size_in_lba.get() == old_size
        {
            rec.size_in_lba = U32::new(new_size);
            resized = true;
        }
    }
    if resized {
        disk.write_all_at(mbr.as_bytes(), 0).map_err(io_at(0))?;
    }
    Ok(resized)
}

/// The header sector: `orig` (reserved tail kept) with the fields of
/// `hdr` and the CRC over `HeaderSize` bytes recomputed.
fn header_block(orig: &[u8], hdr: &RawGptHeader) -> Vec<u8> {
    let mut out = orig.to_vec();
    let mut hdr = hdr.clone();
    hdr.header_crc32 = U32::new(0);
    let fields = hdr.as_bytes();
    if let Some(dst) = out.get_mut(..fields.len()) {
        dst.copy_from_slice(fields);
    }
    // HeaderSize is within GPT_HEADER_SIZE..=sector (read_gpt_copy).
    let size = usize::try_from(hdr.header_size.get()).unwrap_or(GPT_HEADER_SIZE as usize);
    let crc = GptCrc32::header(out.get(..size).unwrap_or_default());
    if let Some(dst) = out.get_mut(16..20) {
        dst.copy_from_slice(&crc.to_le_bytes());
    }
    out
}

/// Byte offset of `lba`: every LBA written here is below
/// `target_bytes / ss`, so this never saturates.
fn byte_offset(lba: u64, ss: u64) -> u64 {
    lba.saturating_mul(ss)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromBytes;

    /// A disk of `total` sectors of `ss` bytes with a 128-entry GPT (one
    /// partition at LBA 34/6..40) and its protective MBR.
    fn tiny_gpt(total: u64, ss: u64) -> Vec<u8> {
        let mut disk = vec![0u8; (total * ss) as usize];
        let array_lbas = (128 * 128u64).div_ceil(ss);
        let first = 2 + array_lbas;
        let mut entries = vec![0u8; 128 * 128];
        entries[0] = 0xAF; // some partition type GUID byte
        entries[32..40].copy_from_slice(&first.to_le_bytes());
        entries[40..48].copy_from_slice(&(first + 6).to_le_bytes());
        let last = total - 1;
        let h = RawGptHeader {
            signature: *b"EFI PART",
            revision: U32::new(0x0001_0000),
            header_size: U32::new(92),
            header_crc32: U32::new(0),
            reserved: U32::new(0),
            my_lba: U64::new(1),
            alternate_lba: U64::new(last),
            first_usable_lba: U64::new(first),
            last_usable_lba: U64::new(last - array_lbas - 1),
            disk_guid: [7; 16],
            partition_entry_lba: U64::new(2),
            number_of_partition_entries: U32::new(128),
            size_of_partition_entry: U32::new(128),
            partition_entry_array_crc32: U32::new(GptCrc32::checksum(&entries)),
        };
        let s = ss as usize;
        let blk = header_block(&vec![0u8; s], &h);
        disk[s..2 * s].copy_from_slice(&blk);
        disk[2 * s..2 * s + entries.len()].copy_from_slice(&entries);
        let backup_entries = (last - array_lbas) as usize * s;
        disk[backup_entries..backup_entries + entries.len()].copy_from_slice(&entries);
        let mut b = h.clone();
        b.my_lba = U64::new(last);
        b.alternate_lba = U64::new(1);
        b.partition_entry_lba = U64::new(last - array_lbas);
        let blk = header_block(&vec![0u8; s], &b);
        disk[last as usize * s..].copy_from_slice(&blk);
        disk[446 + 4] = 0xEE;
        disk[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        disk[446 + 12..446 + 16].copy_from_slice(&(last as u32).to_le_bytes());
        disk[510] = 0x55;
        disk[511] = 0xAA;
        disk
    }

    #[test]
    fn relocates_and_rechecks() {
        for (ss, sector, entries_lbas) in
            [(512, SectorSize::S512, 32), (4096, SectorSize::S4096, 4)]
        {
            let mut disk = tiny_gpt(100, ss);
            disk.resize(200 * ss as usize, 0);
            let r = move_backup_gpt(&mut disk, sector, 200 * ss)
                .unwrap()
                .unwrap();
            assert_eq!(r.old_backup_lba, 99);
            assert_eq!(r.new_backup_lba, 199);
            assert_eq!(r.new_backup_entries_lba, 199 - entries_lbas);
            assert_eq!(r.new_last_usable_lba, 198 - entries_lbas);
            assert!(r.protective_mbr_resized);
            let s = ss as usize;
            let (backup, _) = RawGptHeader::read_from_prefix(&disk[199 * s..]).unwrap();
            assert_eq!(backup.my_lba.get(), 199);
            assert_eq!(
                GptCrc32::header(&disk[199 * s..199 * s + 92]),
                backup.header_crc32.get()
            );
            // Both copies read back through the table reader's checks.
            read_gpt_copy(&disk, 1, 200, sector).unwrap();
            read_gpt_copy(&disk, 199, 200, sector).unwrap();
            // The old backup is gone; the MBR record covers the new disk.
            assert!(disk[(99 - entries_lbas as usize) * s..100 * s]
                .iter()
                .all(|&b| b == 0));
            assert_eq!(&disk[446 + 12..446 + 16], &199u32.to_le_bytes());
            // Second call: nothing left to do.
            assert_eq!(move_backup_gpt(&mut disk, sector, 200 * ss).unwrap(), None);
            // The other sector size finds no GPT at its LBA 1.
            let other = if ss == 512 {
                SectorSize::S4096
            } else {
                SectorSize::S512
            };
            let mut grown = disk.clone();
            grown.resize(400 * ss as usize, 0);
            assert_eq!(move_backup_gpt(&mut grown, other, 400 * ss).unwrap(), None);
        }
    }

    #[test]
    fn corrupt_headers_and_small_targets_are_errors() {
        let mut disk = tiny_gpt(100, 512);
        disk[512 + 40] ^= 1;
        disk.resize(200 * 512, 0);
        assert!(matches!(
            move_backup_gpt(&mut disk, SectorSize::S512, 200 * 512),
            Err(Error::CorruptGpt {
                primary: GptProblem::HeaderCrc,
                ..
            })
        ));
        let mut plain = vec![0u8; 200 * 512];
        assert_eq!(
            move_backup_gpt(&mut plain, SectorSize::S512, 200 * 512).unwrap(),
            None
        );
        assert_eq!(
            move_backup_gpt(&mut plain, SectorSize::S512, 3 * 512).unwrap(),
            None
        );
        // A target smaller than the disk the GPT describes.
        let mut small = tiny_gpt(100, 512);
        assert!(matches!(
            move_backup_gpt(&mut small, SectorSize::S512, 90 * 512),
            Err(Error::BadDiskSize {
                disk_bytes: 46080,
                min_bytes: 51200,
            })
        ));
        assert_eq!(small, tiny_gpt(100, 512), "nothing written");
    }
}
