//! Master Boot Record with primary, extended and logical partitions.
//!
//! Spec: UEFI 2.10 §5.2.1 "Legacy Master Boot Record (MBR)" (tables 5-1
//! and 5-2) for the sector and its four entries; the extended/logical
//! chain (EBRs) is the de-facto standard every OS implements (not in
//! UEFI), as written by fdisk/sfdisk and read by Linux `msdos.c`.
//!
//! MBR sector (LBA 0, 512 bytes):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0   | 440 | boot code (GRUB's `boot.img` lives here) |
//! | 440 | 4   | unique MBR disk signature (LE u32; `label-id` in sfdisk) |
//! | 444 | 2   | unknown / copy-protect, zero |
//! | 446 | 64  | four 16-byte partition records |
//! | 510 | 2   | signature `0x55 0xAA` |
//!
//! Partition record (16 bytes):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0  | 1 | boot indicator (0x80 = active/bootable) |
//! | 1  | 3 | starting CHS (head, sector \| cyl hi bits, cyl lo) |
//! | 4  | 1 | OS type (0x0c FAT32 LBA, 0x0e FAT16 LBA, 0x83 Linux, 0x0f/0x05 extended) |
//! | 5  | 3 | ending CHS |
//! | 8  | 4 | starting LBA (LE u32) |
//! | 12 | 4 | size in sectors (LE u32) |
//!
//! EBR (one sector in front of each logical partition): bytes 0..446
//! zero, then record 1 = the logical partition with its start **relative
//! to this EBR**, record 2 = link to the next EBR with type 0x05, start
//! **relative to the start of the extended partition**, size from the next
//! EBR to the end of the next logical partition (zero in the last EBR),
//! records 3-4 zero, 0x55AA. The first EBR sits at the first sector of the
//! extended partition. Linux numbers logical partitions from 5 in chain
//! order.
//!
//! CHS fields are filled from the LBA with the usual 255-head, 63-sector
//! translation and saturate at cylinder 1023 (`FE FF FF`), as fdisk does;
//! nothing modern reads them.

use kiln_units::WriteAt;
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use crate::align::{check_extent, check_overlaps, Span};
use crate::error::{io_at, Error, Result};
use crate::{MAX_LOGICAL, SECTOR_BYTES};

/// Bytes 0..440 of the MBR: boot code, length in bytes.
pub const MBR_BOOT_CODE_BYTES: usize = 440;
/// The boot signature at bytes 510..512.
pub(crate) const MBR_SIGNATURE: [u8; 2] = [0x55, 0xAA];
/// Boot indicator value of an active (bootable) partition.
pub(crate) const MBR_ACTIVE: u8 = 0x80;

/// One 16-byte MBR/EBR partition record (UEFI 2.10 table 5-2).
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct RawMbrEntry {
    /// Offset 0: 0x80 active, 0x00 inactive.
    pub(crate) boot_indicator: u8,
    /// Offset 1: starting CHS.
    pub(crate) starting_chs: [u8; 3],
    /// Offset 4: partition type.
    pub(crate) os_type: u8,
    /// Offset 5: ending CHS.
    pub(crate) ending_chs: [u8; 3],
    /// Offset 8: first sector (absolute in the MBR, relative in an EBR).
    pub(crate) starting_lba: U32,
    /// Offset 12: length in sectors.
    pub(crate) size_in_lba: U32,
}
const _: () = assert!(size_of::<RawMbrEntry>() == 16);

/// The 512-byte MBR or EBR sector (UEFI 2.10 table 5-1).
#[repr(C)]
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct RawMbr {
    /// Offset 0: boot code.
    pub(crate) boot_code: [u8; MBR_BOOT_CODE_BYTES],
    /// Offset 440: unique MBR disk signature.
    pub(crate) unique_mbr_signature: U32,
    /// Offset 444: unknown, zero.
    pub(crate) unknown: [u8; 2],
    /// Offset 446: four partition records.
    pub(crate) partition_record: [RawMbrEntry; 4],
    /// Offset 510: 0x55, 0xAA.
    pub(crate) signature: [u8; 2],
}
const _: () = assert!(size_of::<RawMbr>() == 512);

impl RawMbrEntry {
    /// A record for `[lba, lba + sectors)`, CHS derived from the absolute
    /// position `abs_lba`.
    pub(crate) fn new(
        os_type: u8,
        bootable: bool,
        rel_lba: u32,
        sectors: u32,
        abs_lba: u64,
    ) -> Self {
        let last = abs_lba.saturating_add(u64::from(sectors)).saturating_sub(1);
        Self {
            boot_indicator: if bootable { MBR_ACTIVE } else { 0 },
            starting_chs: chs(abs_lba),
            os_type,
            ending_chs: chs(last),
            starting_lba: U32::new(rel_lba),
            size_in_lba: U32::new(sectors),
        }
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.os_type == 0 || self.size_in_lba.get() == 0
    }
}

/// Cylinder/head/sector address of `lba` with the 255/63 translation,
/// saturating at (1023, 254, 63).
pub(crate) fn chs(lba: u64) -> [u8; 3] {
    const HEADS: u64 = 255;
    const SECTORS: u64 = 63;
    let c = lba / (HEADS * SECTORS);
    if c > 1023 {
        return [0xFE, 0xFF, 0xFF];
    }
    let h = (lba / SECTORS) % HEADS;
    let s = lba % SECTORS + 1;
    // All three values are bounded above (c <= 1023, h < 255, s <= 63), so
    // the narrowing conversions cannot lose bits.
    let [c_lo, c_hi, ..] = (c as u16).to_le_bytes();
    [h as u8, (s as u8) | (c_hi << 6), c_lo]
}

/// An MBR partition type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MbrType(pub u8);

impl MbrType {
    /// 0x0c: FAT32 with LBA addressing (boot partition on the Fin boards).
    pub const FAT32_LBA: Self = Self(0x0c);
    /// 0x0e: FAT16 with LBA addressing (boot partition on the NUC).
    pub const FAT16_LBA: Self = Self(0x0e);
    /// 0x83: Linux filesystem.
    pub const LINUX: Self = Self(0x83);
    /// 0x82: Linux swap.
    pub const LINUX_SWAP: Self = Self(0x82);
    /// 0x05: extended partition (CHS era); used for EBR links.
    pub const EXTENDED: Self = Self(0x05);
    /// 0x0f: extended partition, LBA (what balenaOS uses for p4).
    pub const EXTENDED_LBA: Self = Self(0x0f);
    /// 0x85: Linux extended partition.
    pub const LINUX_EXTENDED: Self = Self(0x85);
    /// 0xee: GPT protective partition (UEFI 2.10 §5.2.3).
    pub const GPT_PROTECTIVE: Self = Self(0xee);
    /// 0xef: EFI system partition on an MBR disk.
    pub const EFI_SYSTEM: Self = Self(0xef);

    /// Whether this type marks an extended partition (a container of
    /// logical partitions).
    pub fn is_extended(self) -> bool {
        matches!(self.0, 0x05 | 0x0f | 0x85)
    }
}

impl std::fmt::Display for MbrType {
    /// `0x83 (Linux)`, or just `0x42` for types without a known name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:02x}", self.0)?;
        match self.name() {
            Some(n) => write!(f, " ({n})"),
            None => Ok(()),
        }
    }
}

impl MbrType {
    /// The usual name of this type (as fdisk shows it), if known.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x05 => "Extended",
            0x0b => "W95 FAT32",
            0x0c => "W95 FAT32 (LBA)",
            0x0e => "W95 FAT16 (LBA)",
            0x0f => "W95 Ext'd (LBA)",
            0x06 => "FAT16",
            0x82 => "Linux swap",
            0x83 => "Linux",
            0x85 => "Linux extended",
            0xee => "GPT",
            0xef => "EFI (FAT-12/16/32)",
            _ => return None,
        })
    }
}

/// A primary or logical partition of an MBR disk. Offsets and sizes are in
/// bytes (multiples of 512).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MbrPartition {
    /// A name for error messages (kiln uses the filesystem label; MBR
    /// itself stores no names).
    pub name: String,
    /// The type byte.
    pub os_type: MbrType,
    /// First byte of the partition.
    pub start_bytes: u64,
    /// Length in bytes.
    pub size_bytes: u64,
    /// The active flag (boot indicator 0x80).
    pub bootable: bool,
}

impl MbrPartition {
    /// A partition `size_bytes` long starting at byte `start_bytes`, not
    /// bootable.
    pub fn new(
        name: impl Into<String>,
        os_type: MbrType,
        start_bytes: u64,
        size_bytes: u64,
    ) -> Self {
        Self {
            name: name.into(),
            os_type,
            start_bytes,
            size_bytes,
            bootable: false,
        }
    }
    /// Sets the active flag.
    pub fn bootable(mut self, bootable: bool) -> Self {
        self.bootable = bootable;
        self
    }
}

/// The extended partition (a primary slot) and the logical partitions
/// chained inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extended {
    /// Type of the extended entry in the MBR (default 0x0f).
    pub os_type: MbrType,
    /// First byte of the extended partition; the first EBR goes here.
    pub start_bytes: u64,
    /// Length in bytes.
    pub size_bytes: u64,
    /// Distance in bytes from each EBR to its logical partition (balenaOS:
    /// 4 MiB), so the EBR of a logical partition starting at `s` is the
    /// sector at `s - ebr_gap_bytes`.
    pub ebr_gap_bytes: u64,
    /// Logical partitions in chain order (Linux numbers them 5, 6, ...).
    pub logicals: Vec<MbrPartition>,
}

impl Extended {
    /// An extended partition of type 0x0f covering
    /// `[start_bytes, start_bytes + size_bytes)`, whose EBRs sit
    /// `ebr_gap_bytes` before their logical partitions.
    pub fn new(start_bytes: u64, size_bytes: u64, ebr_gap_bytes: u64) -> Self {
        Self {
            os_type: MbrType::EXTENDED_LBA,
            start_bytes,
            size_bytes,
            ebr_gap_bytes,
            logicals: Vec::new(),
        }
    }
    /// Appends a logical partition to the chain.
    pub fn logical(mut self, partition: MbrPartition) -> Self {
        self.logicals.push(partition);
        self
    }
    /// Sets the type byte of the extended entry (0x05, 0x0f or 0x85).
    pub fn os_type(mut self, os_type: MbrType) -> Self {
        self.os_type = os_type;
        self
    }
    fn ebr_of(&self, p: &MbrPartition) -> Result<u64> {
        p.start_bytes
            .checked_sub(self.ebr_gap_bytes)
            .filter(|&e| e >= self.start_bytes)
            .ok_or_else(|| Error::BadEbrPlacement {
                name: p.name.clone(),
                ebr_bytes: p.start_bytes.saturating_sub(self.ebr_gap_bytes),
                problem: "before the start of the extended partition",
            })
    }
}

/// What to do with bytes 0..440 of the MBR.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BootCode {
    /// Write zeros (no boot code).
    #[default]
    Zero,
    /// Write this boot code (for example GRUB's `boot.img`).
    Code(Box<[u8; MBR_BOOT_CODE_BYTES]>),
    /// Leave bytes 0..440 on the target untouched (boot code written
    /// earlier or later by someone else); only bytes 440..512 are written.
    Keep,
}

/// One of the four MBR slots.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Primary(MbrPartition),
    Extended(Extended),
}

/// An MBR partition table to write: up to four slots (primary partitions
/// and at most one extended partition) in the order pushed, so slot `i`
/// is partition number `i + 1`.
///
/// ```
/// use kiln_part::{Extended, Mbr, MbrPartition, MbrType};
/// const MIB: u64 = 1 << 20;
/// let disk = 64 * MIB;
/// let mut mbr = Mbr::new(0x1234_5678).align(4 * MIB);
/// mbr.push_primary(MbrPartition::new("boot", MbrType::FAT16_LBA, 4 * MIB, 8 * MIB).bootable(true));
/// mbr.push_extended(
///     Extended::new(12 * MIB, disk - 12 * MIB, 4 * MIB)
///         .logical(MbrPartition::new("state", MbrType::LINUX, 16 * MIB, 4 * MIB))
///         .logical(MbrPartition::new("data", MbrType::LINUX, 24 * MIB, disk - 24 * MIB)),
/// );
/// let mut img = vec![0u8; disk as usize];
/// mbr.write_to(&mut img, disk).unwrap();
/// let t = kiln_part::read_table(&img).unwrap();
/// assert_eq!(t.partitions.iter().map(|p| p.number).collect::<Vec<_>>(), [1, 2, 5, 6]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mbr {
    disk_signature: u32,
    boot_code: BootCode,
    align_bytes: u64,
    slots: Vec<Slot>,
}

impl Mbr {
    /// An empty table with this disk signature (kiln derives it from the
    /// build seed), zero boot code and sector alignment.
    pub fn new(disk_signature: u32) -> Self {
        Self {
            disk_signature,
            boot_code: BootCode::Zero,
            align_bytes: SECTOR_BYTES,
            slots: Vec::new(),
        }
    }
    /// Chooses what goes into bytes 0..440.
    pub fn boot_code(mut self, boot_code: BootCode) -> Self {
        self.boot_code = boot_code;
        self
    }
    /// Requires every partition start (and the extended start) to be a
    /// multiple of `align_bytes` (kiln: 4 MiB).
    pub fn align(mut self, align_bytes: u64) -> Self {
        self.align_bytes = align_bytes;
        self
    }
    /// Appends a primary partition in the next slot.
    pub fn push_primary(&mut self, partition: MbrPartition) -> &mut Self {
        self.slots.push(Slot::Primary(partition));
        self
    }
    /// Appends the extended partition in the next slot.
    pub fn push_extended(&mut self, extended: Extended) -> &mut Self {
        self.slots.push(Slot::Extended(extended));
        self
    }
    /// The disk signature.
    pub fn disk_signature(&self) -> u32 {
        self.disk_signature
    }

    /// Checks the layout against a disk of `disk_bytes` bytes without
    /// writing anything.
    ///
    /// # Errors
    /// [`Error::BadDiskSize`], [`Error::TooManyPartitions`],
    /// [`Error::EmptyPartition`], [`Error::Misaligned`],
    /// [`Error::OutsideArea`], [`Error::Overlap`], [`Error::Beyond32Bit`],
    /// [`Error::BadEbrPlacement`]; each names the partition.
    pub fn validate(&self, disk_bytes: u64) -> Result<()> {
        if disk_bytes < 2 * SECTOR_BYTES || disk_bytes % SECTOR_BYTES != 0 {
            return Err(Error::BadDiskSize {
                disk_bytes,
                min_bytes: 2 * SECTOR_BYTES,
            });
        }
        let mut top = vec![Span {
            name: "MBR".into(),
            start: 0,
            end: SECTOR_BYTES,
        }];
        if let Some(slot) = self.slots.get(4) {
            return Err(Error::TooManyPartitions {
                name: slot_name(slot),
                max: 4,
            });
        }
        let mut seen_extended = false;
        for slot in &self.slots {
            let name = slot_name(slot);
            match slot {
                Slot::Primary(p) => {
                    check_type(p)?;
                    let end = check_extent(
                        &p.name,
                        p.start_bytes,
                        p.size_bytes,
                        self.align_bytes,
                        0,
                        disk_bytes,
                    )?;
                    check_u32(&p.name, p.start_bytes, p.size_bytes)?;
                    top.push(Span {
                        name: p.name.clone(),
                        start: p.start_bytes,
                        end,
                    });
                }
                Slot::Extended(e) => {
                    if seen_extended {
                        return Err(Error::TooManyPartitions { name, max: 1 });
                    }
                    seen_extended = true;
                    if !e.os_type.is_extended() {
                        return Err(Error::BadMbrType {
                            name,
                            os_type: e.os_type.0,
                        });
                    }
                    let end = check_extent(
                        &name,
                        e.start_bytes,
                        e.size_bytes,
                        self.align_bytes,
                        0,
                        disk_bytes,
                    )?;
                    check_u32(&name, e.start_bytes, e.size_bytes)?;
                    top.push(Span {
                        name: name.clone(),
                        start: e.start_bytes,
                        end,
                    });
                    validate_logicals(e, end, self.align_bytes)?;
                }
            }
        }
        check_overlaps(&top)
    }

    /// Validates, then writes the MBR and every EBR to `target`, a disk of
    /// `disk_bytes` bytes. Only the table sectors are written (the MBR,
    /// and one EBR in front of each logical partition, or an empty EBR
    /// when the extended partition has no logical ones); the target's
    /// length is the caller's business. Same inputs give the same bytes.
    ///
    /// # Errors
    /// The validation errors of [`Mbr::validate`]; [`Error::Io`].
    pub fn write_to<W: WriteAt + ?Sized>(&self, target: &mut W, disk_bytes: u64) -> Result<()> {
        self.validate(disk_bytes)?;
        let mut mbr = RawMbr::new_zeroed();
        if let BootCode::Code(code) = &self.boot_code {
            mbr.boot_code = **code;
        }
        mbr.unique_mbr_signature = U32::new(self.disk_signature);
        mbr.signature = MBR_SIGNATURE;
        for (slot, rec) in self.slots.iter().zip(mbr.partition_record.iter_mut()) {
            *rec = match slot {
                Slot::Primary(p) => record(
                    p.os_type,
                    p.bootable,
                    p.start_bytes,
                    p.size_bytes,
                    0,
                    "primary",
                )?,
                Slot::Extended(e) => {
                    record(e.os_type, false, e.start_bytes, e.size_bytes, 0, "extended")?
                }
            };
        }
        let bytes = mbr.as_bytes();
        match self.boot_code {
            BootCode::Keep => {
                let tail = bytes.get(MBR_BOOT_CODE_BYTES..).unwrap_or_default();
                target
                    .write_all_at(tail, MBR_BOOT_CODE_BYTES as u64)
                    .map_err(io_at(MBR_BOOT_CODE_BYTES as u64))?
            }
            _ => target.write_all_at(bytes, 0).map_err(io_at(0))?,
        }
        for slot in &self.slots {
            if let Slot::Extended(e) = slot {
                write_ebrs(e, target)?;
            }
        }
        Ok(())
    }
}

/// A primary or logical partition needs a non-zero, non-extended type.
fn check_type(p: &MbrPartition) -> Result<()> {
    if p.os_type.0 == 0 || p.os_type.is_extended() || p.os_type == MbrType::GPT_PROTECTIVE {
        return Err(Error::BadMbrType {
            name: p.name.clone(),
            os_type: p.os_type.0,
        });
    }
    Ok(())
}

fn slot_name(slot: &Slot) -> String {
    match slot {
        Slot::Primary(p) => p.name.clone(),
        Slot::Extended(_) => "extended".to_string(),
    }
}

fn check_u32(name: &str, start_bytes: u64, size_bytes: u64) -> Result<()> {
    let max = u64::from(u32::MAX);
    if start_bytes / SECTOR_BYTES > max {
        return Err(Error::Beyond32Bit {
            name: name.to_string(),
            what: "start",
        });
    }
    if size_bytes / SECTOR_BYTES > max {
        return Err(Error::Beyond32Bit {
            name: name.to_string(),
            what: "size",
        });
    }
    Ok(())
}

fn validate_logicals(e: &Extended, ext_end: u64, align: u64) -> Result<()> {
    if let Some(p) = e.logicals.get(MAX_LOGICAL) {
        return Err(Error::TooManyPartitions {
            name: p.name.clone(),
            max: MAX_LOGICAL,
        });
    }
    let mut spans = Vec::with_capacity(e.logicals.len() * 2);
    for (i, p) in e.logicals.iter().enumerate() {
        if e.ebr_gap_bytes < SECTOR_BYTES || e.ebr_gap_bytes % SECTOR_BYTES != 0 {
            return Err(Error::Misaligned {
                name: p.name.clone(),
                what: "EBR offset",
                value_bytes: e.ebr_gap_bytes,
                align_bytes: SECTOR_BYTES,
            });
        }
        check_type(p)?;
        let ebr = e.ebr_of(p)?;
        if i == 0 && ebr != e.start_bytes {
            return Err(Error::BadEbrPlacement {
                name: p.name.clone(),
                ebr_bytes: ebr,
                problem: "the first EBR must be the first sector of the extended partition",
            });
        }
        let end = check_extent(
            &p.name,
            p.start_bytes,
            p.size_bytes,
            align,
            e.start_bytes,
            ext_end,
        )?;
        spans.push(Span {
            name: p.name.clone(),
            start: p.start_bytes,
            end,
        });
        spans.push(Span {
            name: format!("EBR of {}", p.name),
            start: ebr,
            end: ebr + SECTOR_BYTES,
        });
    }
    check_overlaps(&spans)
}

/// A record for `[start, start + size)` bytes, its LBA stored relative to
/// `base` bytes.
fn record(
    os_type: MbrType,
    bootable: bool,
    start: u64,
    size: u64,
    base: u64,
    what: &'static str,
) -> Result<RawMbrEntry> {
    let too_big = || Error::Beyond32Bit {
        name: what.to_string(),
        what: "start",
    };
    let rel = start.checked_sub(base).ok_or_else(too_big)? / SECTOR_BYTES;
    let rel = u32::try_from(rel).map_err(|_| too_big())?;
    let sectors = u32::try_from(size / SECTOR_BYTES).map_err(|_| Error::Beyond32Bit {
        name: what.to_string(),
        what: "size",
    })?;
    Ok(RawMbrEntry::new(
        os_type.0,
        bootable,
        rel,
        sectors,
        start / SECTOR_BYTES,
    ))
}

fn write_ebrs<W: WriteAt + ?Sized>(e: &Extended, target: &mut W) -> Result<()> {
    if e.logicals.is_empty() {
        let mut ebr = RawMbr::new_zeroed();
        ebr.signature = MBR_SIGNATURE;
        return target
            .write_all_at(ebr.as_bytes(), e.start_bytes)
            .map_err(io_at(e.start_bytes));
    }
    for (i, p) in e.logicals.iter().enumerate() {
        let at = e.ebr_of(p)?;
        let mut ebr = RawMbr::new_zeroed();
        ebr.signature = MBR_SIGNATURE;
        ebr.partition_record[0] = record(
            p.os_type,
            p.bootable,
            p.start_bytes,
            p.size_bytes,
            at,
            "logical",
        )?;
        if let Some(next) = e.logicals.get(i + 1) {
            let next_ebr = e.ebr_of(next)?;
            let span = next.start_bytes + next.size_bytes - next_ebr;
            ebr.partition_record[1] = record(
                MbrType::EXTENDED,
                false,
                next_ebr,
                span,
                e.start_bytes,
                "EBR link",
            )?;
        }
        target.write_all_at(ebr.as_bytes(), at).map_err(io_at(at))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    const MIB: u64 = 1 << 20;

    #[test]
    fn chs_known_answers() {
        // LBA 0 -> C0 H0 S1; LBA 2048 -> C0 H32 S33 (fdisk's classic 1 MiB start).
        assert_eq!(chs(0), [0, 1, 0]);
        assert_eq!(chs(2048), [32, 33, 0]);
        // LBA 8192: c = 0, h = 130, s = 3.
        assert_eq!(chs(8192), [130, 3, 0]);
        // cylinder 1023 boundary and beyond
        assert_eq!(chs(1023 * 255 * 63), [0, 1 | 0xC0, 0xFF]);
        assert_eq!(chs(1024 * 255 * 63), [0xFE, 0xFF, 0xFF]);
    }

    fn base() -> Mbr {
        let mut m = Mbr::new(1).align(4 * MIB);
        m.push_primary(MbrPartition::new(
            "boot",
            MbrType::FAT16_LBA,
            4 * MIB,
            4 * MIB,
        ));
        m
    }

    #[test]
    fn validation_table() {
        let disk = 64 * MIB;
        let cases: Vec<(Mbr, &str)> = vec![
            {
                let mut m = base();
                m.push_primary(MbrPartition::new("a", MbrType::LINUX, 6 * MIB, MIB));
                (m, "Misaligned a start")
            },
            {
                let mut m = base();
                m.push_primary(MbrPartition::new("a", MbrType::LINUX, 4 * MIB, 4 * MIB));
                (m, "Overlap a")
            },
            {
                let mut m = base();
                m.push_primary(MbrPartition::new("a", MbrType::LINUX, 60 * MIB, 8 * MIB));
                (m, "OutsideArea a")
            },
            {
                let mut m = base();
                m.push_primary(MbrPartition::new("a", MbrType::LINUX, 8 * MIB, 0));
                (m, "EmptyPartition a")
            },
            {
                let mut m = base();
                m.push_primary(MbrPartition::new("a", MbrType::LINUX, 8 * MIB, 1000));
                (m, "Misaligned a size")
            },
            {
                let mut m = base();
                for n in ["b", "c", "d", "e"] {
                    m.push_primary(MbrPartition::new(n, MbrType::LINUX, 0, 0));
                }
                (m, "TooManyPartitions e")
            },
            {
                let mut m = base();
                m.push_extended(
                    Extended::new(8 * MIB, 56 * MIB, 4 * MIB).logical(MbrPartition::new(
                        "l",
                        MbrType::LINUX,
                        16 * MIB,
                        4 * MIB,
                    )),
                );
                (m, "BadEbrPlacement l")
            },
            {
                let mut m = base();
                m.push_extended(
                    Extended::new(8 * MIB, 24 * MIB, 4 * MIB).logical(MbrPartition::new(
                        "l",
                        MbrType::LINUX,
                        12 * MIB,
                        24 * MIB,
                    )),
                );
                (m, "OutsideArea l")
            },
            {
                let mut m = base();
                m.push_extended(
                    Extended::new(8 * MIB, 56 * MIB, 4 * MIB)
                        .logical(MbrPartition::new("l", MbrType::LINUX, 12 * MIB, 8 * MIB))
                        .logical(MbrPartition::new("m", MbrType::LINUX, 20 * MIB, 8 * MIB)),
                );
                (m, "Overlap EBR of m")
            },
            {
                let mut m = base();
                m.push_extended(Extended::new(8 * MIB, 8 * MIB, 4 * MIB));
                m.push_extended(Extended::new(16 * MIB, 8 * MIB, 4 * MIB));
                (m, "TooManyPartitions extended")
            },
            {
                let mut m = base();
                m.push_primary(MbrPartition::new("z", MbrType(0), 8 * MIB, MIB));
                (m, "BadMbrType z")
            },
            {
                let mut m = base();
                m.push_primary(MbrPartition::new("x", MbrType::EXTENDED_LBA, 8 * MIB, MIB));
                (m, "BadMbrType x")
            },
            {
                let mut m = base();
                m.push_extended(Extended::new(8 * MIB, 8 * MIB, 4 * MIB).os_type(MbrType::LINUX));
                (m, "BadMbrType extended")
            },
            {
                let mut m = base();
                m.push_extended(Extended::new(8 * MIB, 24 * MIB, 4 * MIB).logical(
                    MbrPartition::new("lx", MbrType::EXTENDED, 12 * MIB, 4 * MIB),
                ));
                (m, "BadMbrType lx")
            },
        ];
        for (m, want) in cases {
            let err = m.validate(disk).unwrap_err();
            let got = format!("{err:?}");
            let mut words = want.split(' ');
            let variant = words.next().unwrap();
            assert!(got.starts_with(variant), "{want}: {got}");
            for w in words {
                assert!(got.contains(w), "{want}: {got}");
            }
            // write_to refuses the same layout without writing a byte
            let mut img = Vec::new();
            assert!(m.write_to(&mut img, disk).is_err());
            assert!(img.is_empty());
        }
        assert!(matches!(
            base().validate(1000),
            Err(Error::BadDiskSize { .. })
        ));
    }

    #[test]
    fn keep_boot_code_leaves_first_440_bytes() {
        let mut img = vec![0xAB; 8 * MIB as usize];
        base()
            .boot_code(BootCode::Keep)
            .write_to(&mut img, 8 * MIB)
            .unwrap();
        assert!(img[..440].iter().all(|&b| b == 0xAB));
        assert_eq!(&img[510..512], &[0x55, 0xAA]);
        let code = Box::new([0x90; 440]);
        base()
            .boot_code(BootCode::Code(code))
            .write_to(&mut img, 8 * MIB)
            .unwrap();
        assert!(img[..440].iter().all(|&b| b == 0x90));
        base().write_to(&mut img, 8 * MIB).unwrap();
        assert!(img[..440].iter().all(|&b| b == 0));
    }
}
