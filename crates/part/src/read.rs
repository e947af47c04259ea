//! Reading an existing partition table (for `kiln inspect` and base
//! images): MBR with its extended/logical chain, or GPT with CRC checks and
//! fallback to the backup header.
//!
//! Everything read from the disk is bounded before use: the EBR chain
//! stops with an error after [`MAX_LOGICAL`] links or on a link back to a
//! visited EBR, the GPT entry array may not exceed
//! [`MAX_GPT_ARRAY_BYTES`], and every LBA is checked against the disk.

#![deny(clippy::arithmetic_side_effects, clippy::as_conversions)]

use kiln_units::{Guid, ReadAt, SectorSize};
use zerocopy::FromBytes;

use crate::crc::GptCrc32;
use crate::error::{io_at, Error, GptProblem, MbrProblem, Result};
use crate::gpt::{RawGptEntry, RawGptHeader, GPT_HEADER_SIZE, GPT_NAME_UNITS, GPT_SIGNATURE};
use crate::mbr::{MbrType, RawMbr, RawMbrEntry, MBR_ACTIVE, MBR_SIGNATURE};
use crate::{MAX_LOGICAL, SECTOR_BYTES, SECTOR_LEN};

/// The largest GPT entry array the reader accepts, in bytes (the usual
/// array is 16 KiB; this allows 8192 entries of 128 bytes).
pub const MAX_GPT_ARRAY_BYTES: u64 = 1 << 20;

/// A partition table read from a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTable {
    /// Size of the disk (image) in bytes.
    pub disk_bytes: u64,
    /// MBR or GPT, with the table-wide fields.
    pub scheme: Scheme,
    /// Partitions in number order. For MBR the extended container (type
    /// 0x05/0x0f/0x85) is listed too, as `sfdisk -d` does.
    pub partitions: Vec<Partition>,
}

/// The partitioning scheme found and its table-wide fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// A DOS/MBR table.
    Mbr {
        /// The disk signature at byte 440.
        disk_signature: u32,
    },
    /// A GPT.
    Gpt {
        /// The disk GUID.
        disk_guid: Guid,
        /// Which header the partitions were read from.
        source: GptSource,
        /// Why the primary header was rejected, if it was.
        primary_problem: Option<GptProblem>,
        /// Why the backup header at the last sector was rejected, if it
        /// was (for example after the disk grew and the backup was not
        /// relocated yet).
        backup_problem: Option<GptProblem>,
        /// First usable LBA (512-byte sectors).
        first_usable_lba: u64,
        /// Last usable LBA, inclusive.
        last_usable_lba: u64,
    },
}

/// Which GPT header was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GptSource {
    /// The primary header at LBA 1.
    Primary,
    /// The backup header at the last LBA (the primary is corrupt).
    Backup,
}

/// A partition type: an MBR type byte or a GPT type GUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionType {
    /// MBR type byte.
    Mbr(MbrType),
    /// GPT partition type GUID.
    Gpt(Guid),
}

impl std::fmt::Display for PartitionType {
    /// `0x83 (Linux)` or `0fc63daf-8483-4772-8e79-3d69d8477de4 (Linux
    /// filesystem)`; the name only when known.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PartitionType::Mbr(t) => t.fmt(f),
            PartitionType::Gpt(g) => {
                write!(f, "{g}")?;
                match crate::gpt::type_name(*g) {
                    Some(n) => write!(f, " ({n})"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// One partition as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Linux partition number: MBR slots 1-4, logical partitions from 5
    /// in chain order; GPT entry index + 1.
    pub number: u32,
    /// First byte.
    pub start_bytes: u64,
    /// Length in bytes.
    pub size_bytes: u64,
    /// Type byte or type GUID.
    pub partition_type: PartitionType,
    /// GPT partition name (`None` on MBR).
    pub name: Option<String>,
    /// GPT unique partition GUID (`None` on MBR).
    pub guid: Option<Guid>,
    /// MBR active flag, or GPT attribute bit 2 (legacy BIOS bootable).
    pub bootable: bool,
    /// GPT attribute bits (0 on MBR).
    pub attributes: u64,
    /// Whether this is a logical partition inside the extended one.
    pub logical: bool,
}

impl Partition {
    /// One past the last byte.
    pub fn end_bytes(&self) -> u64 {
        self.start_bytes.saturating_add(self.size_bytes)
    }
    /// Whether this is an MBR extended container.
    pub fn is_extended(&self) -> bool {
        matches!(self.partition_type, PartitionType::Mbr(t) if t.is_extended())
    }
}

impl PartitionTable {
    /// The partition with this number.
    pub fn partition(&self, number: u32) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.number == number)
    }
    /// Numbers of the partitions whose start is not a multiple of
    /// `align_bytes` (empty when the layout is aligned; the extended
    /// container is included).
    pub fn misaligned(&self, align_bytes: u64) -> Vec<u32> {
        self.partitions
            .iter()
            .filter(|p| !crate::is_aligned(p.start_bytes, align_bytes))
            .map(|p| p.number)
            .collect()
    }
}

/// Reads the partition table of `disk`: GPT when the MBR holds a 0xEE
/// protective record (checking CRCs and falling back to the backup
/// header), otherwise MBR including the extended/logical chain.
///
/// # Errors
/// [`Error::NoTable`] without a 0x55AA signature; [`Error::CorruptMbr`]
/// for a bad, looping or too long EBR chain; [`Error::CorruptGpt`] when
/// both GPT headers are unusable; [`Error::Io`].
pub fn read_table<R: ReadAt + ?Sized>(disk: &R) -> Result<PartitionTable> {
    let disk_bytes = disk.size().map_err(io_at(0))?;
    let mbr = read_sector(disk, 0)?;
    if mbr.signature != MBR_SIGNATURE {
        return Err(Error::NoTable);
    }
    if mbr
        .partition_record
        .iter()
        .any(|r| r.os_type == MbrType::GPT_PROTECTIVE.0)
    {
        return read_gpt(disk, disk_bytes);
    }
    let chain = read_mbr_chain(disk, &mbr, disk_bytes)?;
    Ok(PartitionTable {
        disk_bytes,
        scheme: Scheme::Mbr {
            disk_signature: mbr.unique_mbr_signature.get(),
        },
        partitions: chain.partitions,
    })
}

pub(crate) fn read_sector<R: ReadAt + ?Sized>(disk: &R, lba: u64) -> Result<RawMbr> {
    let mut buf = [0u8; SECTOR_LEN];
    let at = lba.checked_mul(SECTOR_BYTES).ok_or(Error::CorruptMbr {
        lba,
        problem: MbrProblem::Overflow,
    })?;
    disk.read_exact_at(&mut buf, at).map_err(io_at(at))?;
    Ok(zerocopy::transmute!(buf))
}

/// The MBR partitions plus where each logical partition's EBR is.
pub(crate) struct MbrChain {
    pub(crate) partitions: Vec<Partition>,
    /// `(partition number, EBR LBA)` for each logical partition.
    pub(crate) ebrs: Vec<(u32, u64)>,
    /// Slot index (0-3) of the extended partition.
    pub(crate) extended_slot: Option<usize>,
}

fn mbr_partition(number: u32, rec: &RawMbrEntry, start_lba: u64, logical: bool) -> Partition {
    Partition {
        number,
        start_bytes: start_lba.saturating_mul(SECTOR_BYTES),
        size_bytes: u64::from(rec.size_in_lba.get()) * SECTOR_BYTES,
        partition_type: PartitionType::Mbr(MbrType(rec.os_type)),
        name: None,
        guid: None,
        bootable: rec.boot_indicator == MBR_ACTIVE,
        attributes: 0,
        logical,
    }
}

pub(crate) fn read_mbr_chain<R: ReadAt + ?Sized>(
    disk: &R,
    mbr: &RawMbr,
    disk_bytes: u64,
) -> Result<MbrChain> {
    let mut partitions = Vec::new();
    let mut extended: Option<(usize, u64, u64)> = None;
    for ((i, rec), number) in mbr.partition_record.iter().enumerate().zip(1u32..) {
        if rec.is_empty() {
            continue;
        }
        let start = u64::from(rec.starting_lba.get());
        if MbrType(rec.os_type).is_extended() {
            if extended.is_some() {
                return Err(Error::CorruptMbr {
                    lba: 0,
                    problem: MbrProblem::SeveralExtended,
                });
            }
            extended = Some((
                i,
                start,
                start.saturating_add(u64::from(rec.size_in_lba.get())),
            ));
        }
        partitions.push(mbr_partition(number, rec, start, false));
    }
    let mut ebrs = Vec::new();
    let Some((slot, ext_start, ext_end)) = extended else {
        return Ok(MbrChain {
            partitions,
            ebrs,
            extended_slot: None,
        });
    };
    let disk_sectors = disk_bytes / SECTOR_BYTES;
    let mut visited: Vec<u64> = Vec::new();
    let mut ebr_lba = ext_start;
    let mut number = 5u32;
    loop {
        let corrupt = |problem| Error::CorruptMbr {
            lba: ebr_lba,
            problem,
        };
        if visited.contains(&ebr_lba) {
            return Err(corrupt(MbrProblem::EbrLoop));
        }
        if visited.len() >= MAX_LOGICAL {
            return Err(corrupt(MbrProblem::ChainTooLong));
        }
        if ebr_lba < ext_start || ebr_lba >= ext_end || ebr_lba >= disk_sectors {
            return Err(corrupt(MbrProblem::OutsideExtended));
        }
        visited.push(ebr_lba);
        let ebr = read_sector(disk, ebr_lba)?;
        if ebr.signature != MBR_SIGNATURE {
            // An empty extended partition may have no EBR at all.
            if visited.len() == 1 && ebr.partition_record.iter().all(|r| r.is_empty()) {
                break;
            }
            return Err(corrupt(MbrProblem::BadSignature));
        }
        let [rec, link, ..] = &ebr.partition_record;
        if !rec.is_empty() {
            let start = ebr_lba
                .checked_add(u64::from(rec.starting_lba.get()))
                .ok_or(corrupt(MbrProblem::Overflow))?;
            let end = start.saturating_add(u64::from(rec.size_in_lba.get()));
            if end > ext_end {
                return Err(corrupt(MbrProblem::OutsideExtended));
            }
            partitions.push(mbr_partition(number, rec, start, true));
            ebrs.push((number, ebr_lba));
            number = number.saturating_add(1);
        }
        if link.is_empty() || !MbrType(link.os_type).is_extended() {
            break;
        }
        ebr_lba = ext_start
            .checked_add(u64::from(link.starting_lba.get()))
            .ok_or(corrupt(MbrProblem::Overflow))?;
    }
    Ok(MbrChain {
        partitions,
        ebrs,
        extended_slot: Some(slot),
    })
}

/// A verified GPT header with its entry array.
pub(crate) struct GptCopy {
    pub(crate) header: RawGptHeader,
    /// The whole sector holding the header (reserved tail included).
    pub(crate) block: Vec<u8>,
    pub(crate) entries: Vec<u8>,
}

/// Reads and verifies the GPT header at `lba` (in sectors of `sector`
/// bytes; `disk_sectors` of them on the disk) and its entry array.
pub(crate) fn read_gpt_copy<R: ReadAt + ?Sized>(
    disk: &R,
    lba: u64,
    disk_sectors: u64,
    sector: SectorSize,
) -> Result<GptCopy, GptProblem> {
    let ss = sector.bytes();
    let mut block = vec![0u8; usize::try_from(ss).map_err(|_| GptProblem::Unreadable)?];
    let at = lba.checked_mul(ss).ok_or(GptProblem::Unreadable)?;
    disk.read_exact_at(&mut block, at)
        .map_err(|_| GptProblem::Unreadable)?;
    let (header, _) = RawGptHeader::read_from_prefix(&block).map_err(|_| GptProblem::Unreadable)?;
    if header.signature != GPT_SIGNATURE {
        return Err(GptProblem::BadSignature);
    }
    let size = u64::from(header.header_size.get());
    if header.revision.get() >> 16 != 1 || !(u64::from(GPT_HEADER_SIZE)..=ss).contains(&size) {
        return Err(GptProblem::BadHeaderFormat);
    }
    // size <= the sector size was checked just above.
    let covered = block
        .get(..usize::try_from(size).map_err(|_| GptProblem::BadHeaderFormat)?)
        .ok_or(GptProblem::BadHeaderFormat)?;
    if GptCrc32::header(covered) != header.header_crc32.get() {
        return Err(GptProblem::HeaderCrc);
    }
    if header.my_lba.get() != lba {
        return Err(GptProblem::WrongMyLba);
    }
    let entry_size = u64::from(header.size_of_partition_entry.get());
    let count = u64::from(header.number_of_partition_entries.get());
    let array_bytes = entry_size
        .checked_mul(count)
        .ok_or(GptProblem::BadEntryArray)?;
    let entries_lba = header.partition_entry_lba.get();
    let array_end_lba = entries_lba
        .checked_add(array_bytes.div_ceil(ss))
        .ok_or(GptProblem::BadEntryArray)?;
    if entry_size < 128
        || !entry_size.is_power_of_two()
        || array_bytes > MAX_GPT_ARRAY_BYTES
        || entries_lba < 1
        || array_end_lba > disk_sectors
    {
        return Err(GptProblem::BadEntryArray);
    }
    let first = header.first_usable_lba.get();
    let last = header.last_usable_lba.get();
    if first > last.saturating_add(1) {
        return Err(GptProblem::BadUsableRange);
    }
    // array_bytes <= 1 MiB, checked above.
    let mut entries =
        vec![0u8; usize::try_from(array_bytes).map_err(|_| GptProblem::BadEntryArray)?];
    let at = entries_lba
        .checked_mul(ss)
        .ok_or(GptProblem::BadEntryArray)?;
    disk.read_exact_at(&mut entries, at)
        .map_err(|_| GptProblem::Unreadable)?;
    if GptCrc32::checksum(&entries) != header.partition_entry_array_crc32.get() {
        return Err(GptProblem::EntriesCrc);
    }
    let entry_len = usize::try_from(entry_size).map_err(|_| GptProblem::BadEntryArray)?;
    for e in entries.chunks_exact(entry_len) {
        let (e, _) = RawGptEntry::read_from_prefix(e).map_err(|_| GptProblem::BadEntryArray)?;
        if e.partition_type_guid != [0; 16]
            && (e.starting_lba.get() < first
                || e.ending_lba.get() > last
                || e.ending_lba.get() < e.starting_lba.get())
        {
            return Err(GptProblem::BadEntry);
        }
    }
    Ok(GptCopy {
        header,
        block,
        entries,
    })
}

/// `AlternateLBA` of the primary header if the header itself (signature,
/// size, CRC) is intact, whatever the state of its entry array.
fn intact_header_alternate<R: ReadAt + ?Sized>(disk: &R) -> Option<u64> {
    let mut block = [0u8; SECTOR_LEN];
    disk.read_exact_at(&mut block, SECTOR_BYTES).ok()?;
    let (header, _) = RawGptHeader::read_from_prefix(&block).ok()?;
    let size = usize::try_from(header.header_size.get()).ok()?;
    let covered = block.get(..size).filter(|c| c.len() >= 92)?;
    let ok =
        header.signature == GPT_SIGNATURE && GptCrc32::header(covered) == header.header_crc32.get();
    ok.then(|| header.alternate_lba.get())
}

fn read_gpt<R: ReadAt + ?Sized>(disk: &R, disk_bytes: u64) -> Result<PartitionTable> {
    let disk_sectors = disk_bytes / SECTOR_BYTES;
    let last = disk_sectors.saturating_sub(1);
    let primary = read_gpt_copy(disk, 1, disk_sectors, SectorSize::S512);
    let mut backup = if last > 1 {
        read_gpt_copy(disk, last, disk_sectors, SectorSize::S512)
    } else {
        Err(GptProblem::Unreadable)
    };
    // The disk grew without moving the backup and the primary's array is
    // damaged: the primary header (CRC intact) still says where the
    // backup is.
    if primary.is_err() && backup.is_err() {
        if let Some(alt) = intact_header_alternate(disk).filter(|&a| a != last && a > 1) {
            if let Ok(b) = read_gpt_copy(disk, alt, disk_sectors, SectorSize::S512) {
                backup = Ok(b);
            }
        }
    }
    // Both copies readable but describing different tables (a tool
    // updated only one): report it on the backup, use the primary.
    let backup = match (&primary, backup) {
        (Ok(p), Ok(b))
            if p.entries != b.entries
                || p.header.disk_guid != b.header.disk_guid
                || b.header.alternate_lba.get() != 1
                || p.header.alternate_lba.get() != last =>
        {
            Err(GptProblem::CopiesDiffer)
        }
        (_, b) => b,
    };
    let (copy, source) = match (&primary, &backup) {
        (Ok(p), _) => (p, GptSource::Primary),
        (Err(_), Ok(b)) => (b, GptSource::Backup),
        (Err(p), Err(b)) => {
            return Err(Error::CorruptGpt {
                primary: *p,
                backup: *b,
            })
        }
    };
    let h = &copy.header;
    // Bounded to 128..=1 MiB by read_gpt_copy.
    let entry_size = usize::try_from(h.size_of_partition_entry.get()).unwrap_or(128);
    let mut partitions = Vec::new();
    for (i, raw) in copy.entries.chunks_exact(entry_size).enumerate() {
        let Ok((e, _)) = RawGptEntry::read_from_prefix(raw) else {
            continue;
        };
        if e.partition_type_guid == [0; 16] {
            continue;
        }
        let units: Vec<u16> = e
            .partition_name
            .iter()
            .take(GPT_NAME_UNITS)
            .map(|u| u.get())
            .take_while(|&u| u != 0)
            .collect();
        let start = e.starting_lba.get();
        // Checked against the usable range in read_gpt_copy.
        let sectors = e.ending_lba.get().saturating_sub(start).saturating_add(1);
        let attributes = e.attributes.get();
        partitions.push(Partition {
            number: u32::try_from(i).map_or(u32::MAX, |n| n.saturating_add(1)),
            start_bytes: start.saturating_mul(SECTOR_BYTES),
            size_bytes: sectors.saturating_mul(SECTOR_BYTES),
            partition_type: PartitionType::Gpt(Guid::from_disk_bytes(e.partition_type_guid)),
            name: Some(String::from_utf16_lossy(&units)),
            guid: Some(Guid::from_disk_bytes(e.unique_partition_guid)),
            bootable: attributes & 4 != 0,
            attributes,
            logical: false,
        });
    }
    Ok(PartitionTable {
        disk_bytes,
        scheme: Scheme::Gpt {
            disk_guid: Guid::from_disk_bytes(h.disk_guid),
            source,
            primary_problem: primary.as_ref().err().copied(),
            backup_problem: backup.as_ref().err().copied(),
            first_usable_lba: h.first_usable_lba.get(),
            last_usable_lba: h.last_usable_lba.get(),
        },
        partitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_display() {
        assert_eq!(
            PartitionType::Mbr(MbrType::FAT16_LBA).to_string(),
            "0x0e (W95 FAT16 (LBA))"
        );
        assert_eq!(PartitionType::Mbr(MbrType(0x42)).to_string(), "0x42");
        assert_eq!(
            PartitionType::Gpt(crate::gpt_types::EFI_SYSTEM).to_string(),
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93b (EFI System)"
        );
    }
}
