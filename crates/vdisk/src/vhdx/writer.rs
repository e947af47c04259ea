//! Streaming dynamic VHDX writer.

use kiln_units::WriteAt;

use crate::error::{Error, Format, Result};
use crate::extent::{Assembler, DiskWriter, ExtentGuard, WriteSummary};

use super::header::{
    file_identifier, header_bytes, region_table_bytes, Region, VHDX_HEADER_OFFSETS,
    VHDX_REGION_TABLE_OFFSETS,
};
use super::metadata::metadata_bytes;
use super::{
    bat_entries, bat_index, VhdxOptions, VHDX_BAT_OFFSET, VHDX_BLOCK_SIZE, VHDX_CHUNK_RATIO,
    VHDX_LOGICAL_SECTOR, VHDX_MAX_SIZE, VHDX_METADATA_LENGTH, VHDX_METADATA_OFFSET, VHDX_MIB,
};

/// BAT entry state PAYLOAD_BLOCK_FULLY_PRESENT (§2.5.1.1).
pub(crate) const VHDX_PAYLOAD_FULLY_PRESENT: u64 = 6;
/// The creator string of the file type identifier.
const CREATOR: &str = "kiln";

/// Writes a dynamic VHDX from an ordered extent stream: 1 MiB payload
/// blocks appended in virtual order after the BAT, all-zero blocks left
/// unallocated; the headers, region tables, metadata and BAT are written
/// by [`DiskWriter::finish`].
///
/// The virtual size is rounded up to the 512-byte logical sector. Memory
/// kept: the BAT (8 bytes per MiB of virtual size) and one 1 MiB block
/// being assembled.
#[derive(Debug)]
pub struct VhdxWriter<W> {
    out: W,
    guard: ExtentGuard,
    options: VhdxOptions,
    virtual_size: u64,
    asm: Assembler,
    blocks: Blocks,
}

#[derive(Debug)]
struct Blocks {
    /// The whole BAT, bitmap entries included (zero: not present).
    bat: Vec<u64>,
    next_block: u64,
    allocated: u64,
}

impl<W: WriteAt> VhdxWriter<W> {
    /// A writer for a disk of `virtual_size` bytes.
    ///
    /// # Errors
    /// [`Error::SizeNotSupported`] above 64 TiB.
    pub fn new(out: W, virtual_size: u64, options: &VhdxOptions) -> Result<Self> {
        if virtual_size > VHDX_MAX_SIZE {
            return Err(Error::SizeNotSupported {
                format: Format::Vhdx,
                size_bytes: virtual_size,
                max_bytes: VHDX_MAX_SIZE,
            });
        }
        let sector = u64::from(VHDX_LOGICAL_SECTOR);
        let size = virtual_size.div_ceil(sector) * sector;
        let entries = bat_entries(size.div_ceil(VHDX_BLOCK_SIZE), VHDX_CHUNK_RATIO);
        Ok(Self {
            out,
            guard: ExtentGuard::new(Format::Vhdx, size),
            options: options.clone(),
            virtual_size: size,
            // OK: 1 MiB fits a usize.
            asm: Assembler::new(VHDX_BLOCK_SIZE as usize),
            blocks: Blocks {
                bat: vec![0; usize::try_from(entries).unwrap_or(0)],
                next_block: VHDX_BAT_OFFSET + bat_region_len(entries),
                allocated: 0,
            },
        })
    }

    /// Gives back the target.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// The BAT region's length for `entries` entries: rounded up to 1 MiB,
/// at least 1 MiB.
fn bat_region_len(entries: u64) -> u64 {
    (entries * 8).div_ceil(VHDX_MIB).max(1) * VHDX_MIB
}

impl Blocks {
    fn write_block<W: WriteAt>(&mut self, out: &mut W, idx: u64, data: &[u8]) -> Result<()> {
        let at = self.next_block;
        out.write_all_at(data, at).map_err(Error::io(at))?;
        let slot = usize::try_from(bat_index(idx, VHDX_CHUNK_RATIO))
            .ok()
            .and_then(|i| self.bat.get_mut(i));
        if let Some(slot) = slot {
            *slot = at | VHDX_PAYLOAD_FULLY_PRESENT;
        }
        self.next_block = at + VHDX_BLOCK_SIZE;
        self.allocated += 1;
        Ok(())
    }
}

impl<W: WriteAt> DiskWriter for VhdxWriter<W> {
    fn format(&self) -> Format {
        Format::Vhdx
    }
    fn virtual_size(&self) -> u64 {
        self.virtual_size
    }
    fn write_extent(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.guard.check(offset, data.len())?;
        let (out, blocks) = (&mut self.out, &mut self.blocks);
        self.asm
            .feed(offset, data, &mut |idx, b| blocks.write_block(out, idx, b))
    }

    fn finish(&mut self) -> Result<WriteSummary> {
        self.guard.finish()?;
        let (out, blocks) = (&mut self.out, &mut self.blocks);
        self.asm
            .flush(&mut |idx, b| blocks.write_block(out, idx, b))?;
        let end = blocks.next_block;
        let bat = Region {
            offset: VHDX_BAT_OFFSET,
            length: bat_region_len(blocks.bat.len() as u64),
        };
        let metadata = Region {
            offset: VHDX_METADATA_OFFSET,
            length: VHDX_METADATA_LENGTH,
        };
        let table = region_table_bytes(bat, metadata);
        let bat_bytes: Vec<u8> = blocks.bat.iter().flat_map(|e| e.to_le_bytes()).collect();
        let write_guid = self.options.write_guid;
        let parts: [(u64, Vec<u8>); 7] = [
            (0, file_identifier(CREATOR)),
            (VHDX_HEADER_OFFSETS[0], header_bytes(0, write_guid)),
            (VHDX_HEADER_OFFSETS[1], header_bytes(1, write_guid)),
            (VHDX_REGION_TABLE_OFFSETS[0], table.clone()),
            (VHDX_REGION_TABLE_OFFSETS[1], table),
            (
                VHDX_METADATA_OFFSET,
                metadata_bytes(self.virtual_size, self.options.disk_id),
            ),
            (VHDX_BAT_OFFSET, bat_bytes),
        ];
        for (at, bytes) in parts {
            self.out.write_all_at(&bytes, at).map_err(Error::io(at))?;
        }
        self.out.set_len(end).map_err(Error::io(end))?;
        Ok(WriteSummary {
            virtual_size: self.virtual_size,
            file_size: end,
            allocated_bytes: self.blocks.allocated * VHDX_BLOCK_SIZE,
        })
    }
}
