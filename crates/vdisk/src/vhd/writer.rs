//! Streaming VHD writer, fixed and dynamic.

use kiln_units::WriteAt;

use crate::error::{Error, Format, Result};
use crate::extent::{Assembler, DiskWriter, ExtentGuard, WriteSummary};

use super::dynamic::{DynamicHeader, VHD_BAT_UNUSED, VHD_DYN_HEADER_LEN};
use super::footer::{
    Footer, VHD_DISK_TYPE_DYNAMIC, VHD_DISK_TYPE_FIXED, VHD_FOOTER_LEN, VHD_NO_DATA_OFFSET,
};
use super::geometry::ChsGeometry;
use super::{VhdKind, VhdOptions, VHD_BLOCK_SIZE, VHD_EPOCH_UNIX, VHD_MAX_SIZE, VHD_SIZE_ALIGN};

const FOOTER_LEN: u64 = VHD_FOOTER_LEN as u64;
/// BAT position in a dynamic VHD: after the footer copy and the header.
const BAT_OFFSET: u64 = FOOTER_LEN + VHD_DYN_HEADER_LEN as u64;
/// Sector bitmap of a 2 MiB block: 4096 bits = 512 bytes (one sector).
const BITMAP_LEN: u64 = VHD_BLOCK_SIZE / 512 / 8;

/// Writes a VHD (fixed or dynamic) from an ordered extent stream.
///
/// The virtual size is rounded up to 1 MiB. Memory kept: fixed — nothing;
/// dynamic — the BAT (4 bytes per 2 MiB of virtual size) and one 2 MiB
/// block being assembled.
#[derive(Debug)]
pub struct VhdWriter<W> {
    out: W,
    guard: ExtentGuard,
    footer: Footer,
    virtual_size: u64,
    dynamic: Option<Dyn>,
    written: u64,
}

#[derive(Debug)]
struct Dyn {
    asm: Assembler,
    blocks: Blocks,
}

#[derive(Debug)]
struct Blocks {
    bat: Vec<u32>,
    next_block: u64,
}

impl<W: WriteAt> VhdWriter<W> {
    /// A writer for a disk of `virtual_size` bytes (rounded up to 1 MiB).
    ///
    /// # Errors
    /// [`Error::SizeNotSupported`] above 2040 GiB.
    pub fn new(out: W, virtual_size: u64, options: &VhdOptions) -> Result<Self> {
        let too_big = Error::SizeNotSupported {
            format: Format::Vhd,
            size_bytes: virtual_size,
            max_bytes: VHD_MAX_SIZE,
        };
        if virtual_size > VHD_MAX_SIZE {
            return Err(too_big);
        }
        let size = virtual_size.div_ceil(VHD_SIZE_ALIGN) * VHD_SIZE_ALIGN;
        let dynamic = options.get_kind() == VhdKind::Dynamic;
        let blocks = size.div_ceil(VHD_BLOCK_SIZE);
        let footer = footer_for(size, options);
        Ok(Self {
            out,
            guard: ExtentGuard::new(Format::Vhd, size),
            footer,
            virtual_size: size,
            dynamic: dynamic.then(|| Dyn {
                asm: Assembler::new(VHD_BLOCK_SIZE as usize),
                blocks: Blocks {
                    bat: vec![VHD_BAT_UNUSED; usize::try_from(blocks).unwrap_or(0)],
                    next_block: first_block(blocks),
                },
            }),
            written: 0,
        })
    }

    /// Gives back the target.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl Blocks {
    fn write_block<W: WriteAt>(&mut self, out: &mut W, idx: u64, data: &[u8]) -> Result<()> {
        let at = self.next_block;
        // Every sector of an allocated block is marked present (the data
        // written holds its zeros explicitly).
        let bitmap = [0xffu8; BITMAP_LEN as usize];
        out.write_all_at(&bitmap, at).map_err(Error::io(at))?;
        out.write_all_at(data, at + BITMAP_LEN)
            .map_err(Error::io(at + BITMAP_LEN))?;
        if let Some(slot) = usize::try_from(idx).ok().and_then(|i| self.bat.get_mut(i)) {
            *slot = u32::try_from(at / 512).unwrap_or(VHD_BAT_UNUSED);
        }
        self.next_block = at + BITMAP_LEN + VHD_BLOCK_SIZE;
        Ok(())
    }
}

impl<W: WriteAt> DiskWriter for VhdWriter<W> {
    fn format(&self) -> Format {
        Format::Vhd
    }
    fn virtual_size(&self) -> u64 {
        self.virtual_size
    }
    fn write_extent(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.guard.check(offset, data.len())?;
        match self.dynamic.as_mut() {
            None => {
                self.out
                    .write_all_at(data, offset)
                    .map_err(Error::io(offset))?;
                self.written += data.len() as u64;
                Ok(())
            }
            Some(Dyn { asm, blocks }) => {
                let out = &mut self.out;
                asm.feed(offset, data, &mut |idx, b| blocks.write_block(out, idx, b))
            }
        }
    }

    fn finish(&mut self) -> Result<WriteSummary> {
        self.guard.finish()?;
        let file_size = match self.dynamic.as_mut() {
            None => {
                let footer = self.footer.to_bytes();
                let at = self.virtual_size;
                self.out.set_len(at).map_err(Error::io(at))?;
                self.out.write_all_at(&footer, at).map_err(Error::io(at))?;
                at + FOOTER_LEN
            }
            Some(Dyn { asm, blocks: d }) => {
                let out = &mut self.out;
                asm.flush(&mut |idx, b| d.write_block(out, idx, b))?;
                let allocated = d.bat.iter().filter(|&&e| e != VHD_BAT_UNUSED).count() as u64;
                self.written = allocated * VHD_BLOCK_SIZE;
                write_dynamic_tables(out, &self.footer, &d.bat, d.next_block)?
            }
        };
        Ok(WriteSummary {
            virtual_size: self.virtual_size,
            file_size,
            allocated_bytes: self.written,
        })
    }
}

/// The footer of a VHD of `size` bytes (already 1 MiB-aligned).
pub(super) fn footer_for(size: u64, options: &VhdOptions) -> Footer {
    let dynamic = options.get_kind() == VhdKind::Dynamic;
    Footer {
        data_offset: if dynamic {
            FOOTER_LEN
        } else {
            VHD_NO_DATA_OFFSET
        },
        timestamp: u32::try_from(options.timestamp_unix.saturating_sub(VHD_EPOCH_UNIX))
            .unwrap_or(u32::MAX),
        creator_app: *b"kiln",
        original_size: size,
        current_size: size,
        geometry: ChsGeometry::from_sectors(size / 512),
        disk_type: if dynamic {
            VHD_DISK_TYPE_DYNAMIC
        } else {
            VHD_DISK_TYPE_FIXED
        },
        unique_id: options.unique_id.to_rfc_bytes(),
    }
}

/// Byte offset of the first data block of a dynamic VHD with `blocks`
/// BAT entries: after the footer copy, the header and the BAT.
pub(super) fn first_block(blocks: u64) -> u64 {
    BAT_OFFSET + (blocks * 4).div_ceil(512) * 512
}

/// Writes a dynamic VHD's footer copy (offset 0), header, BAT, and the
/// footer after the last block at `end`; returns the file size.
pub(super) fn write_dynamic_tables<W: WriteAt + ?Sized>(
    out: &mut W,
    footer: &Footer,
    bat: &[u32],
    end: u64,
) -> Result<u64> {
    let footer = footer.to_bytes();
    let header = DynamicHeader {
        table_offset: BAT_OFFSET,
        max_table_entries: u32::try_from(bat.len()).unwrap_or(u32::MAX),
        block_size: VHD_BLOCK_SIZE as u32,
    };
    let mut table: Vec<u8> = bat.iter().flat_map(|e| e.to_be_bytes()).collect();
    table.resize(table.len().div_ceil(512) * 512, 0xff);
    out.write_all_at(&footer, 0).map_err(Error::io(0))?;
    out.write_all_at(&header.to_bytes(), FOOTER_LEN)
        .map_err(Error::io(FOOTER_LEN))?;
    out.write_all_at(&table, BAT_OFFSET)
        .map_err(Error::io(BAT_OFFSET))?;
    out.write_all_at(&footer, end).map_err(Error::io(end))?;
    out.set_len(end + FOOTER_LEN).map_err(Error::io(end))?;
    Ok(end + FOOTER_LEN)
}
