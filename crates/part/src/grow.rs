//! Editing an existing table in place for base images that grow: move the
//! GPT backup to a new end of disk, and resize a partition (the last GPT
//! partition, a primary, or a logical one together with its extended
//! container).
//!
//! Both functions read the table first (with the same bounds as
//! [`crate::read_table`]), check the result (no overlap, inside the disk
//! or the usable range) and only then write.

use kiln_units::{ReadAt, SectorSize, WriteAt};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, IntoBytes};

use crate::align::{check_overlaps, Span};
use crate::crc::GptCrc32;
use crate::error::{io_at, Error, Result};
use crate::gpt::{geometry, protective_record, write_copies, RawGptEntry, GPT_ARRAY_SECTORS};
use crate::mbr::{MbrType, RawMbr, RawMbrEntry};
use crate::read::{
    read_gpt_copy, read_mbr_chain, read_sector, read_table, GptSource, PartitionTable, Scheme,
};
use crate::SECTOR_BYTES;

/// Rewrites the GPT of `disk` for a disk of `new_disk_bytes` bytes: the
/// backup entry array and header go to the new last sectors,
/// `LastUsableLBA` and `AlternateLBA` in the primary are updated (CRCs
/// recomputed), the protective MBR record is resized, and the stale
/// backup header and array are zeroed when they now lie inside the disk.
/// Partitions are not touched. Use it after growing an image file (or
/// before shrinking it, when every partition still fits).
///
/// The primary header must be intact; a damaged primary is refused rather
/// than silently rebuilt from the backup.
///
/// # Errors
/// [`Error::BadDiskSize`]; [`Error::NoTable`] if `disk` has no GPT;
/// [`Error::CorruptGpt`] if the primary header is unusable;
/// [`Error::OutsideArea`] naming the first partition that would end past
/// the new last usable LBA; [`Error::Io`].
pub fn relocate_gpt_backup<D: ReadAt + WriteAt + ?Sized>(
    disk: &mut D,
    new_disk_bytes: u64,
) -> Result<()> {
    let (_, new_last_usable, new_last) = geometry(new_disk_bytes)?;
    let old_size = disk.size().map_err(io_at(0))?;
    let mbr = read_sector(disk, 0)?;
    if !mbr
        .partition_record
        .iter()
        .any(|r| r.os_type == MbrType::GPT_PROTECTIVE.0)
    {
        return Err(Error::NoTable);
    }
    let copy =
        read_gpt_copy(disk, 1, old_size / SECTOR_BYTES, SectorSize::S512).map_err(|primary| {
            Error::CorruptGpt {
                primary,
                backup: crate::GptProblem::Unreadable,
            }
        })?;
    let mut header = copy.header.clone();
    let array_sectors = (copy.entries.len() as u64).div_ceil(SECTOR_BYTES);
    let last_usable = new_last
        .checked_sub(array_sectors + 1)
        .filter(|&l| l >= header.first_usable_lba.get())
        .ok_or(Error::BadDiskSize {
            disk_bytes: new_disk_bytes,
            min_bytes: (header.first_usable_lba.get() + array_sectors + 2) * SECTOR_BYTES,
        })?;
    debug_assert!(array_sectors != GPT_ARRAY_SECTORS || last_usable == new_last_usable);
    let entry_size = header.size_of_partition_entry.get() as usize;
    let mut spans = Vec::new();
    for (i, raw) in copy.entries.chunks_exact(entry_size).enumerate() {
        let Ok((e, _)) = RawGptEntry::read_from_prefix(raw) else {
            continue;
        };
        if e.partition_type_guid == [0; 16] {
            continue;
        }
        spans.push((e.starting_lba.get(), e.ending_lba.get()));
        if e.ending_lba.get() > last_usable {
            return Err(Error::OutsideArea {
                name: format!("partition {}", i + 1),
                start_bytes: e.starting_lba.get() * SECTOR_BYTES,
                end_bytes: (e.ending_lba.get() + 1) * SECTOR_BYTES,
                area_start_bytes: header.first_usable_lba.get() * SECTOR_BYTES,
                area_end_bytes: (last_usable + 1) * SECTOR_BYTES,
            });
        }
    }
    let old_alt = header.alternate_lba.get();
    header.last_usable_lba = U64::new(last_usable);
    // Protective MBR: resize record 0xEE, keep everything else.
    let mut pmbr = mbr;
    for rec in pmbr.partition_record.iter_mut() {
        if rec.os_type == MbrType::GPT_PROTECTIVE.0 {
            *rec = protective_record(new_last);
        }
    }
    disk.write_all_at(pmbr.as_bytes(), 0).map_err(io_at(0))?;
    // Zero the stale backup (header and the array in front of it) when it
    // is inside the new disk, in free space, and not the new location.
    let new_sectors = new_last + 1;
    if old_alt != new_last && old_alt > 1 && old_alt < new_sectors {
        let old_array = old_alt.saturating_sub(array_sectors);
        let free = spans.iter().all(|&(s, e)| e < old_array || s > old_alt);
        let clear_of_new = old_alt < new_last - array_sectors || old_array > new_last;
        if free && clear_of_new && old_array > 1 {
            let zeros = vec![0u8; ((array_sectors + 1) * SECTOR_BYTES) as usize];
            let at = old_array * SECTOR_BYTES;
            disk.write_all_at(&zeros, at).map_err(io_at(at))?;
        }
    }
    write_copies(disk, &header, &copy.entries, new_last)
}

/// Rebuilds a damaged primary GPT (header at LBA 1, entry array at LBA 2)
/// from an intact backup at the disk's last sector, as `gdisk`/`sgdisk`
/// do ("regenerating main header from backup"); UEFI 2.10 §5.3.2 lets
/// firmware restore either copy from the other. Returns whether it did:
/// an intact primary is left alone. Call it before an edit that needs
/// the primary ([`relocate_gpt_backup`], [`resize_partition`]).
///
/// # Errors
/// [`Error::NoTable`] without a protective MBR; [`Error::CorruptGpt`]
/// when neither copy is usable (or the backup's array would not fit
/// before its first usable LBA at LBA 2); [`Error::Io`].
pub fn restore_primary_gpt<D: ReadAt + WriteAt + ?Sized>(disk: &mut D) -> Result<bool> {
    let sectors = disk.size().map_err(io_at(0))? / SECTOR_BYTES;
    let mbr = read_sector(disk, 0)?;
    if !mbr
        .partition_record
        .iter()
        .any(|r| r.os_type == MbrType::GPT_PROTECTIVE.0)
    {
        return Err(Error::NoTable);
    }
    let primary = match read_gpt_copy(disk, 1, sectors, SectorSize::S512) {
        Ok(_) => return Ok(false),
        Err(p) => p,
    };
    let last = sectors
        .checked_sub(1)
        .filter(|&l| l > 1)
        .ok_or(Error::CorruptGpt {
            primary,
            backup: crate::GptProblem::Unreadable,
        })?;
    let backup = read_gpt_copy(disk, last, sectors, SectorSize::S512)
        .map_err(|backup| Error::CorruptGpt { primary, backup })?;
    let array_sectors = (backup.entries.len() as u64).div_ceil(SECTOR_BYTES);
    if 2 + array_sectors > backup.header.first_usable_lba.get() {
        return Err(Error::CorruptGpt {
            primary,
            backup: crate::GptProblem::BadEntryArray,
        });
    }
    let header = backup.header.moved(1, last, 2);
    write_copies(disk, &header, &backup.entries, last)?;
    Ok(true)
}

/// Changes the size of partition `number` to `new_size_bytes` (a multiple
/// of 512), keeping its start, and returns the table as re-read from disk.
///
/// - GPT: the entry's `EndingLBA` is rewritten in both arrays (CRCs
///   recomputed); the new end must stay within `LastUsableLBA` (call
///   [`relocate_gpt_backup`] first after growing the disk).
/// - MBR primary: the record's size is rewritten; an extended container
///   may not shrink below its last logical partition.
/// - MBR logical: its EBR record is rewritten, the previous EBR's link
///   size too, and the extended container grows with it when the
///   logical partition would end past it.
///
/// The result may not overlap another partition or EBR, nor leave the
/// disk.
///
/// # Errors
/// [`Error::NoSuchPartition`]; [`Error::Misaligned`] for a size that is
/// not a sector multiple; [`Error::EmptyPartition`]; [`Error::Overlap`];
/// [`Error::OutsideArea`]; [`Error::Beyond32Bit`] on MBR;
/// [`Error::CannotResize`] when the GPT was read from its backup; the
/// errors of [`read_table`]; [`Error::Io`].
pub fn resize_partition<D: ReadAt + WriteAt + ?Sized>(
    disk: &mut D,
    number: u32,
    new_size_bytes: u64,
) -> Result<PartitionTable> {
    let table = read_table(disk)?;
    let part = table
        .partition(number)
        .ok_or(Error::NoSuchPartition { number })?
        .clone();
    let name = format!("partition {number}");
    if new_size_bytes == 0 {
        return Err(Error::EmptyPartition { name });
    }
    if new_size_bytes % SECTOR_BYTES != 0 {
        return Err(Error::Misaligned {
            name,
            what: "size",
            value_bytes: new_size_bytes,
            align_bytes: SECTOR_BYTES,
        });
    }
    let new_end = part
        .start_bytes
        .checked_add(new_size_bytes)
        .ok_or(Error::OutsideArea {
            name: name.clone(),
            start_bytes: part.start_bytes,
            end_bytes: u64::MAX,
            area_start_bytes: 0,
            area_end_bytes: table.disk_bytes,
        })?;
    match table.scheme {
        Scheme::Gpt {
            source,
            last_usable_lba,
            first_usable_lba,
            ..
        } => {
            if source != GptSource::Primary {
                return Err(Error::CannotResize {
                    number,
                    problem: "the primary GPT header is damaged; rewrite the table first",
                });
            }
            let area_end = (last_usable_lba + 1) * SECTOR_BYTES;
            if new_end > area_end {
                return Err(Error::OutsideArea {
                    name,
                    start_bytes: part.start_bytes,
                    end_bytes: new_end,
                    area_start_bytes: first_usable_lba * SECTOR_BYTES,
                    area_end_bytes: area_end,
                });
            }
            check_no_overlap(&table, number, part.start_bytes, new_end, &[])?;
            let copy = read_gpt_copy(disk, 1, table.disk_bytes / SECTOR_BYTES, SectorSize::S512)
                .map_err(|primary| Error::CorruptGpt {
                    primary,
                    backup: crate::GptProblem::Unreadable,
                })?;
            let last = table.disk_bytes / SECTOR_BYTES - 1;
            if copy.header.alternate_lba.get() != last {
                return Err(Error::CannotResize {
                    number,
                    problem:
                        "the backup GPT header is not at the end of the disk; relocate it first",
                });
            }
            let mut header = copy.header.clone();
            let mut entries = copy.entries;
            let entry_size = header.size_of_partition_entry.get() as usize;
            let idx = (number as usize - 1) * entry_size;
            let slot = entries
                .get_mut(idx..idx + entry_size)
                .ok_or(Error::NoSuchPartition { number })?;
            let (e, _) = RawGptEntry::mut_from_prefix(slot)
                .map_err(|_| Error::NoSuchPartition { number })?;
            e.ending_lba = U64::new(new_end / SECTOR_BYTES - 1);
            header.partition_entry_array_crc32 = U32::new(GptCrc32::checksum(&entries));
            write_copies(disk, &header, &entries, last)?;
        }
        Scheme::Mbr { .. } => resize_mbr(disk, &table, number, &part, new_end)?,
    }
    read_table(disk)
}

/// Refuses `[start, end)` for partition `number` if it overlaps another
/// partition (extended containers are skipped: logical partitions and
/// EBRs stand for their content) or one of the `extra` spans.
fn check_no_overlap(
    table: &PartitionTable,
    number: u32,
    start: u64,
    end: u64,
    extra: &[Span],
) -> Result<()> {
    let me = Span {
        name: format!("partition {number}"),
        start,
        end,
    };
    let mut spans = vec![me.clone()];
    spans.extend(extra.iter().cloned());
    let me_part = table.partition(number);
    let is_logical = me_part.is_some_and(|p| p.logical);
    let is_extended = me_part.is_some_and(|p| p.is_extended());
    for p in &table.partitions {
        // A logical partition lives inside the extended container, and the
        // container around its logical ones: those pairs are not overlaps.
        if p.number == number || (p.is_extended() && is_logical) || (p.logical && is_extended) {
            continue;
        }
        spans.push(Span {
            name: format!("partition {}", p.number),
            start: p.start_bytes,
            end: p.end_bytes(),
        });
    }
    // Only pairs involving the resized partition matter.
    for other in spans.iter().skip(1) {
        check_overlaps(&[other.clone(), me.clone()])?;
    }
    Ok(())
}

/// Resizes the primary (or extended) partition `part` of `mbr` to end
/// at `new_end` and writes the MBR back.
fn resize_primary<D: ReadAt + WriteAt + ?Sized>(
    disk: &mut D,
    table: &PartitionTable,
    mut mbr: RawMbr,
    part: &crate::Partition,
    new_end: u64,
) -> Result<()> {
    let number = part.number;
    // number <= 4 for a primary slot.
    let slot = number as usize - 1;
    if part.is_extended() {
        let last_logical = table
            .partitions
            .iter()
            .filter(|p| p.logical)
            .map(|p| p.end_bytes())
            .max();
        if last_logical.is_some_and(|l| l > new_end) {
            return Err(Error::CannotResize {
                number,
                problem: "the extended partition would cut off a logical partition",
            });
        }
    }
    check_no_overlap(table, number, part.start_bytes, new_end, &[])?;
    let rec = mbr
        .partition_record
        .get_mut(slot)
        .ok_or(Error::NoSuchPartition { number })?;
    let size = u32::try_from((new_end - part.start_bytes) / SECTOR_BYTES).map_err(|_| {
        Error::Beyond32Bit {
            name: format!("partition {number}"),
            what: "size",
        }
    })?;
    let start_lba = part.start_bytes / SECTOR_BYTES;
    *rec = RawMbrEntry::new(
        rec.os_type,
        rec.boot_indicator == 0x80,
        rec.starting_lba.get(),
        size,
        start_lba,
    );
    disk.write_all_at(mbr.as_bytes(), 0).map_err(io_at(0))
}

fn resize_mbr<D: ReadAt + WriteAt + ?Sized>(
    disk: &mut D,
    table: &PartitionTable,
    number: u32,
    part: &crate::Partition,
    new_end: u64,
) -> Result<()> {
    let name = format!("partition {number}");
    let disk_area = |end| Error::OutsideArea {
        name: name.clone(),
        start_bytes: part.start_bytes,
        end_bytes: end,
        area_start_bytes: 0,
        area_end_bytes: table.disk_bytes,
    };
    if new_end > table.disk_bytes {
        return Err(disk_area(new_end));
    }
    let sectors = |bytes: u64| {
        u32::try_from(bytes / SECTOR_BYTES).map_err(|_| Error::Beyond32Bit {
            name: name.clone(),
            what: "size",
        })
    };
    let mut mbr = read_sector(disk, 0)?;
    let chain = read_mbr_chain(disk, &mbr, table.disk_bytes)?;
    let extended = chain
        .extended_slot
        .and_then(|s| u32::try_from(s + 1).ok())
        .and_then(|n| table.partition(n))
        .cloned();
    if !part.logical {
        return resize_primary(disk, table, mbr, part, new_end);
    }
    let ext = extended.ok_or(Error::NoSuchPartition { number })?;
    // EBR sectors of the other logical partitions must stay clear.
    let ebr_spans: Vec<Span> = chain
        .ebrs
        .iter()
        .filter(|(n, _)| *n != number)
        .map(|(n, lba)| Span {
            name: format!("EBR of partition {n}"),
            start: lba * SECTOR_BYTES,
            end: (lba + 1) * SECTOR_BYTES,
        })
        .collect();
    check_no_overlap(table, number, part.start_bytes, new_end, &ebr_spans)?;
    let pos = chain
        .ebrs
        .iter()
        .position(|(n, _)| *n == number)
        .ok_or(Error::NoSuchPartition { number })?;
    let (_, ebr_lba) = chain.ebrs[pos];
    let ext_start_lba = ext.start_bytes / SECTOR_BYTES;
    // The logical partition's own record.
    let mut ebr = read_sector(disk, ebr_lba)?;
    let size = sectors(new_end - part.start_bytes)?;
    let r = &ebr.partition_record[0];
    ebr.partition_record[0] = RawMbrEntry::new(
        r.os_type,
        r.boot_indicator == 0x80,
        r.starting_lba.get(),
        size,
        part.start_bytes / SECTOR_BYTES,
    );
    // The link in the previous EBR spans from this EBR to the partition end.
    let prev = if pos > 0 {
        chain.ebrs.get(pos - 1).copied()
    } else {
        None
    };
    let mut prev_ebr = None;
    if let Some((_, prev_lba)) = prev {
        let mut p = read_sector(disk, prev_lba)?;
        let l = &p.partition_record[1];
        let span = sectors(new_end - ebr_lba * SECTOR_BYTES)?;
        p.partition_record[1] =
            RawMbrEntry::new(l.os_type, false, l.starting_lba.get(), span, ebr_lba);
        prev_ebr = Some((prev_lba, p));
    }
    // Grow the container if needed.
    let mut new_mbr = None;
    if new_end > ext.end_bytes() {
        let slot = chain
            .extended_slot
            .ok_or(Error::NoSuchPartition { number })?;
        let ext_number = u32::try_from(slot + 1).unwrap_or(4);
        check_no_overlap(table, ext_number, ext.start_bytes, new_end, &[])?;
        let rec = &mbr.partition_record[slot];
        let size = sectors(new_end - ext.start_bytes)?;
        mbr.partition_record[slot] = RawMbrEntry::new(
            rec.os_type,
            false,
            rec.starting_lba.get(),
            size,
            ext_start_lba,
        );
        new_mbr = Some(mbr);
    }
    let at = ebr_lba * SECTOR_BYTES;
    disk.write_all_at(ebr.as_bytes(), at).map_err(io_at(at))?;
    if let Some((lba, p)) = prev_ebr {
        let at = lba * SECTOR_BYTES;
        disk.write_all_at(p.as_bytes(), at).map_err(io_at(at))?;
    }
    if let Some(m) = new_mbr {
        disk.write_all_at(m.as_bytes(), 0).map_err(io_at(0))?;
    }
    Ok(())
}
