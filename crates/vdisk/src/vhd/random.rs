//! Dynamic VHD written in place, at any offset, in any order (the VHD
//! counterpart of [`crate::qcow2::Qcow2RandomWriter`]).
//!
//! Layout (spec sections "Dynamic Disk Header Format" and "Block
//! Allocation Table and Data Blocks"): footer copy (0), dynamic header
//! (512), BAT (1536), then 2 MiB data blocks, each behind its 512-byte
//! sector bitmap (all sectors marked present, as the streaming
//! [`super::VhdWriter`] writes them), in the order blocks are first
//! written; the footer follows the last block. Headers, BAT and footers
//! are written at [`VhdDynamicRandomWriter::finish`]. The file depends
//! only on the sequence of writes.
//!
//! Never-written blocks stay unallocated (BAT entry all ones, read as
//! zeros), and so do blocks only ever written with zeros. A partly
//! written block's other bytes are zeros (the file is sparse there).
//!
//! Memory: the BAT (4 bytes per 2 MiB of virtual size).

use kiln_units::{ReadAt, WriteAt};
use std::io;

use crate::bytes::pieces;
use crate::error::{Error, Format, Result};
use crate::extent::WriteSummary;

use super::dynamic::VHD_BAT_UNUSED;
use super::footer::Footer;
use super::writer::{first_block, footer_for, write_dynamic_tables};
use super::{VhdKind, VhdOptions, VHD_BLOCK_SIZE, VHD_MAX_SIZE, VHD_SIZE_ALIGN};

/// Sector bitmap in front of each block (4096 sectors: 512 bytes).
const BITMAP_LEN: u64 = VHD_BLOCK_SIZE / 512 / 8;

/// A dynamic VHD written positionally through [`WriteAt`] (and read back
/// through [`ReadAt`]) over the virtual disk; [`Self::finish`] writes the
/// header, BAT and footers.
#[derive(Debug)]
pub struct VhdDynamicRandomWriter<W> {
    out: W,
    footer: Footer,
    virtual_size: u64,
    /// Per block, its file offset in sectors (VHD_BAT_UNUSED: none).
    bat: Vec<u32>,
    /// File offset of the next block's bitmap.
    next_block: u64,
}

impl<W: WriteAt + ReadAt> VhdDynamicRandomWriter<W> {
    /// A writer for a disk of `virtual_size` bytes (rounded up to 1 MiB)
    /// over an empty `out`; `options`' kind is taken as dynamic.
    ///
    /// # Errors
    /// [`Error::SizeNotSupported`] above 2040 GiB.
    pub fn new(out: W, virtual_size: u64, options: &VhdOptions) -> Result<Self> {
        if virtual_size > VHD_MAX_SIZE {
            return Err(Error::SizeNotSupported {
                format: Format::Vhd,
                size_bytes: virtual_size,
                max_bytes: VHD_MAX_SIZE,
            });
        }
        let size = virtual_size.div_ceil(VHD_SIZE_ALIGN) * VHD_SIZE_ALIGN;
        let blocks = size.div_ceil(VHD_BLOCK_SIZE);
        let footer = footer_for(size, &options.clone().kind(VhdKind::Dynamic));
        Ok(Self {
            out,
            footer,
            virtual_size: size,
            bat: vec![VHD_BAT_UNUSED; usize::try_from(blocks).unwrap_or(0)],
            next_block: first_block(blocks),
        })
    }

    /// File offset of block `idx`'s data (0: not allocated).
    fn data_at(&self, idx: u64) -> u64 {
        match usize::try_from(idx).ok().and_then(|i| self.bat.get(i)) {
            Some(&e) if e != VHD_BAT_UNUSED => u64::from(e) * 512 + BITMAP_LEN,
            _ => 0,
        }
    }

    /// Allocates block `idx` at the end: its bitmap, and the file
    /// extended over its data so unwritten sectors read as zeros.
    fn allocate(&mut self, idx: u64) -> io::Result<u64> {
        let at = self.next_block;
        let sector = u32::try_from(at / 512)
            .map_err(|_| io::Error::other("VHD file offset beyond 32-bit sectors"))?;
        self.out.write_all_at(&[0xffu8; BITMAP_LEN as usize], at)?;
        self.out.set_len(at + BITMAP_LEN + VHD_BLOCK_SIZE)?;
        if let Some(slot) = usize::try_from(idx).ok().and_then(|i| self.bat.get_mut(i)) {
            *slot = sector;
        }
        self.next_block = at + BITMAP_LEN + VHD_BLOCK_SIZE;
        Ok(at + BITMAP_LEN)
    }

    /// Writes the footers, header and BAT; returns the target and what
    /// was written.
    ///
    /// # Errors
    /// [`Error::Io`] from the target.
    pub fn finish(mut self) -> Result<(W, WriteSummary)> {
        let allocated = self.bat.iter().filter(|&&e| e != VHD_BAT_UNUSED).count() as u64;
        let file_size =
            write_dynamic_tables(&mut self.out, &self.footer, &self.bat, self.next_block)?;
        let summary = WriteSummary {
            virtual_size: self.virtual_size,
            file_size,
            allocated_bytes: allocated * VHD_BLOCK_SIZE,
        };
        Ok((self.out, summary))
    }
}

impl<W: WriteAt + ReadAt> WriteAt for VhdDynamicRandomWriter<W> {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        crate::bytes::check_in_disk(offset, buf.len(), self.virtual_size)?;
        for p in pieces(offset, buf.len(), VHD_BLOCK_SIZE) {
            let (idx, within, at, n) = (p.idx, p.within, p.at, p.len);
            let data = buf.get(at..at + n).unwrap_or_default();
            let mut base = self.data_at(idx);
            if base == 0 {
                if crate::bytes::is_zero(data) {
                    continue; // unallocated already reads as these zeros
                }
                base = self.allocate(idx)?;
            }
            self.out.write_all_at(data, base + within)?;
        }
        Ok(())
    }

    /// The virtual size is fixed at creation: only that length is accepted.
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        crate::bytes::keep_size(len, self.virtual_size)
    }
}

impl<W: WriteAt + ReadAt> ReadAt for VhdDynamicRandomWriter<W> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        crate::bytes::check_in_disk(offset, buf.len(), self.virtual_size)?;
        for p in pieces(offset, buf.len(), VHD_BLOCK_SIZE) {
            let (idx, within, at, n) = (p.idx, p.within, p.at, p.len);
            let base = self.data_at(idx);
            if let Some(b) = buf.get_mut(at..at + n) {
                if base == 0 {
                    b.fill(0);
                } else {
                    self.out.read_exact_at(b, base + within)?;
                }
            }
        }
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.virtual_size)
    }
}
