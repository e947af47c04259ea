//! Streaming monolithicSparse VMDK writer: a hosted sparse extent with
//! uncompressed grains that a VM uses directly as its disk (spec sections
//! "Hosted Sparse Extent Header" and "Grain Directories and Grain
//! Tables").
//!
//! Layout written (sectors; `g` = grain tables, 4 sectors each, `d` =
//! sectors of one grain directory), as `qemu-img create -f vmdk` lays it
//! out:
//!
//! | sector | content |
//! |---:|---|
//! | 0 | header: version 1, flags newline test + redundant GD, `gdOffset` and `rgdOffset` set |
//! | 1 | descriptor (20 sectors, `createType="monolithicSparse"`) |
//! | 21 | redundant grain directory (`d` sectors), then its `g` grain tables |
//! | 21 + d + 4g | grain directory, then its grain tables |
//! | overHead (grain aligned) | 64 KiB grains, in virtual order, only those holding data |
//!
//! Every grain table is allocated (both copies identical), so a
//! hypervisor writing to the disk never has to extend the metadata.

use kiln_units::WriteAt;

use crate::error::{Error, Format, Result};
use crate::extent::{Assembler, DiskWriter, ExtentGuard, WriteSummary};

use super::header::{SparseHeader, VMDK4_FLAG_NL_DETECT, VMDK4_FLAG_RGD};
use super::{descriptor, VmdkOptions, VMDK_GRAIN_SECTORS, VMDK_GTES_PER_GT};

const SECTOR: u64 = 512;
const GRAIN: u64 = VMDK_GRAIN_SECTORS * SECTOR;
/// Sectors of one grain table (512 entries of 4 bytes).
const GT_SECTORS: u64 = VMDK_GTES_PER_GT as u64 * 4 / SECTOR;
/// Descriptor space (sectors), as VMware and QEMU reserve it.
const DESCRIPTOR_SECTORS: u64 = 20;
/// Largest capacity written: grain sector numbers are 4-byte entries.
const MAX_VIRTUAL: u64 = (u32::MAX as u64) * SECTOR / 2;

/// Writes a monolithicSparse VMDK from an ordered extent stream.
///
/// Memory kept: every grain table (4 bytes per 64 KiB of virtual size:
/// 4 MiB for 64 GiB) and one grain being assembled. Grains go out in
/// order; header, descriptor and tables are written by
/// [`DiskWriter::finish`].
#[derive(Debug)]
pub struct VmdkSparseWriter<W> {
    out: W,
    guard: ExtentGuard,
    header: SparseHeader,
    descriptor: String,
    asm: Assembler,
    grains: Grains,
}

#[derive(Debug)]
struct Grains {
    /// Grain sector numbers, one per grain of the disk (0: not allocated).
    gt: Vec<u32>,
    next_sector: u64,
    allocated: u64,
}

impl<W: WriteAt> VmdkSparseWriter<W> {
    /// A writer for a disk of `virtual_size` bytes (rounded up to a
    /// 512-byte sector).
    ///
    /// # Errors
    /// [`Error::SizeNotSupported`] above 1 TiB (grain sector numbers must
    /// fit 4 bytes).
    pub fn new(out: W, virtual_size: u64, options: &VmdkOptions) -> Result<Self> {
        if virtual_size > MAX_VIRTUAL {
            return Err(Error::SizeNotSupported {
                format: Format::Vmdk,
                size_bytes: virtual_size,
                max_bytes: MAX_VIRTUAL,
            });
        }
        let capacity = virtual_size.div_ceil(SECTOR);
        let grains = capacity.div_ceil(VMDK_GRAIN_SECTORS);
        let tables = grains.div_ceil(u64::from(VMDK_GTES_PER_GT));
        let gd_sectors = (tables * 4).div_ceil(SECTOR);
        let rgd_offset = 1 + DESCRIPTOR_SECTORS;
        let gd_offset = rgd_offset + gd_sectors + tables * GT_SECTORS;
        let overhead = (gd_offset + gd_sectors + tables * GT_SECTORS).div_ceil(VMDK_GRAIN_SECTORS)
            * VMDK_GRAIN_SECTORS;
        let header = SparseHeader {
            version: 1,
            flags: VMDK4_FLAG_NL_DETECT | VMDK4_FLAG_RGD,
            capacity,
            grain_size: VMDK_GRAIN_SECTORS,
            descriptor_offset: 1,
            descriptor_size: DESCRIPTOR_SECTORS,
            num_gtes_per_gt: VMDK_GTES_PER_GT,
            rgd_offset,
            gd_offset,
            overhead,
            compress_algorithm: 0,
        };
        Ok(Self {
            out,
            guard: ExtentGuard::new(Format::Vmdk, capacity * SECTOR),
            header,
            descriptor: descriptor::render(options, capacity, "monolithicSparse"),
            // OK: 64 KiB fits a usize.
            asm: Assembler::new(GRAIN as usize),
            grains: Grains {
                gt: vec![0; usize::try_from(tables * u64::from(VMDK_GTES_PER_GT)).unwrap_or(0)],
                next_sector: overhead,
                allocated: 0,
            },
        })
    }

    /// Gives back the target.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl Grains {
    fn write_grain<W: WriteAt>(&mut self, out: &mut W, idx: u64, data: &[u8]) -> Result<()> {
        let at = self.next_sector * SECTOR;
        out.write_all_at(data, at).map_err(Error::io(at))?;
        if let Some(slot) = usize::try_from(idx).ok().and_then(|i| self.gt.get_mut(i)) {
            // Lossless: the capacity bound keeps sector numbers below 2^32.
            *slot = u32::try_from(self.next_sector).unwrap_or(0);
        }
        self.next_sector += VMDK_GRAIN_SECTORS;
        self.allocated += 1;
        Ok(())
    }
}

impl<W: WriteAt> DiskWriter for VmdkSparseWriter<W> {
    fn format(&self) -> Format {
        Format::Vmdk
    }
    fn virtual_size(&self) -> u64 {
        self.header.capacity * SECTOR
    }
    fn write_extent(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.guard.check(offset, data.len())?;
        let (out, grains) = (&mut self.out, &mut self.grains);
        self.asm
            .feed(offset, data, &mut |idx, b| grains.write_grain(out, idx, b))
    }

    fn finish(&mut self) -> Result<WriteSummary> {
        self.guard.finish()?;
        let (out, grains) = (&mut self.out, &mut self.grains);
        self.asm
            .flush(&mut |idx, b| grains.write_grain(out, idx, b))?;
        let mut head = vec![0u8; usize::try_from((1 + DESCRIPTOR_SECTORS) * SECTOR).unwrap_or(0)];
        head[..512].copy_from_slice(&self.header.to_bytes());
        if let Some(d) = head.get_mut(512..512 + self.descriptor.len()) {
            d.copy_from_slice(self.descriptor.as_bytes());
        }
        self.out.write_all_at(&head, 0).map_err(Error::io(0))?;
        let tables: Vec<u8> = self
            .grains
            .gt
            .iter()
            .flat_map(|e| e.to_le_bytes())
            .collect();
        let count = self.grains.gt.len() as u64 / u64::from(VMDK_GTES_PER_GT);
        let gd_sectors = (count * 4).div_ceil(SECTOR);
        for dir in [self.header.rgd_offset, self.header.gd_offset] {
            let first_gt = dir + gd_sectors;
            let mut gd: Vec<u8> = (0..count)
                .flat_map(|i| {
                    u32::try_from(first_gt + i * GT_SECTORS)
                        .unwrap_or(0)
                        .to_le_bytes()
                })
                .collect();
            gd.resize(usize::try_from(gd_sectors * SECTOR).unwrap_or(0), 0);
            let at = dir * SECTOR;
            self.out.write_all_at(&gd, at).map_err(Error::io(at))?;
            let at = first_gt * SECTOR;
            self.out.write_all_at(&tables, at).map_err(Error::io(at))?;
        }
        let end = self.grains.next_sector * SECTOR;
        self.out.set_len(end).map_err(Error::io(end))?;
        Ok(WriteSummary {
            virtual_size: self.header.capacity * SECTOR,
            file_size: end,
            allocated_bytes: self.grains.allocated * GRAIN,
        })
    }
}
