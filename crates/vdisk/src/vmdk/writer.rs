//! Streaming VMDK streamOptimized writer (layout in the module doc).

use flate2::{Compress, Compression, FlushCompress, Status};
use kiln_units::WriteAt;

use crate::error::{Error, Format, Result};
use crate::extent::{Assembler, DiskWriter, ExtentGuard, WriteSummary};
use crate::parallel::Batch;

use super::header::{
    SparseHeader, VMDK4_COMPRESSION_DEFLATE, VMDK4_FLAG_COMPRESS, VMDK4_FLAG_MARKER,
    VMDK4_FLAG_NL_DETECT, VMDK4_GD_AT_END,
};
use super::marker::{
    grain_marker, metadata_marker, VMDK_GRAIN_MARKER_LEN, VMDK_MARKER_EOS, VMDK_MARKER_FOOTER,
    VMDK_MARKER_GD, VMDK_MARKER_GT,
};
use super::{descriptor, VmdkOptions, VMDK_GRAIN_SECTORS, VMDK_GTES_PER_GT};

const SECTOR: u64 = 512;
const GRAIN: u64 = VMDK_GRAIN_SECTORS * SECTOR;
/// Descriptor space reserved (sectors), as VMware and QEMU do.
const DESCRIPTOR_SECTORS_MIN: u64 = 20;
/// Largest capacity written: 2^32 grain-table sectors are addressable
/// with 4-byte entries, so keep the file under 2 TiB worth of sectors.
const MAX_VIRTUAL: u64 = (u32::MAX as u64) * SECTOR;

/// Writes a streamOptimized VMDK from an ordered extent stream.
///
/// Output is written strictly front to back (the header says "grain
/// directory at end"), so the target never needs to seek backwards.
/// Memory kept: the grain directory (4 bytes per 32 MiB of virtual size),
/// one grain table (2 KiB), one grain being assembled (64 KiB) and, with
/// [`VmdkOptions::threads`] above 1, a batch of 16 grains per thread
/// (inputs and outputs, about 2 MiB per thread).
#[derive(Debug)]
pub struct VmdkWriter<W> {
    out: W,
    guard: ExtentGuard,
    virtual_size: u64,
    header: SparseHeader,
    asm: Assembler,
    st: State,
}

#[derive(Debug)]
struct State {
    level: u32,
    /// Next byte to write (always sector aligned).
    pos: u64,
    gd: Vec<u32>,
    gt: Option<(u64, Vec<u32>)>,
    /// Whether to write all-zero tables for spans without data, and the
    /// first span whose table is not yet written.
    empty_tables: bool,
    next_table: u64,
    compressor: Option<Compress>,
    batch: Batch,
    allocated: u64,
}

impl<W: WriteAt> VmdkWriter<W> {
    /// A writer for a disk of `virtual_size` bytes (rounded up to a
    /// 512-byte sector). Writes the header and descriptor immediately.
    ///
    /// # Errors
    /// [`Error::SizeNotSupported`] above 2 TiB, [`Error::Io`].
    pub fn new(mut out: W, virtual_size: u64, options: &VmdkOptions) -> Result<Self> {
        if virtual_size > MAX_VIRTUAL {
            return Err(Error::SizeNotSupported {
                format: Format::Vmdk,
                size_bytes: virtual_size,
                max_bytes: MAX_VIRTUAL,
            });
        }
        let capacity = virtual_size.div_ceil(SECTOR);
        let desc = descriptor::render(options, capacity, "streamOptimized");
        let desc_sectors = (desc.len() as u64)
            .div_ceil(SECTOR)
            .max(DESCRIPTOR_SECTORS_MIN);
        let overhead = (1 + desc_sectors).div_ceil(VMDK_GRAIN_SECTORS) * VMDK_GRAIN_SECTORS;
        let header = SparseHeader {
            version: 3,
            flags: VMDK4_FLAG_NL_DETECT | VMDK4_FLAG_COMPRESS | VMDK4_FLAG_MARKER,
            capacity,
            grain_size: VMDK_GRAIN_SECTORS,
            descriptor_offset: 1,
            descriptor_size: desc_sectors,
            num_gtes_per_gt: VMDK_GTES_PER_GT,
            rgd_offset: 0,
            gd_offset: VMDK4_GD_AT_END,
            overhead,
            compress_algorithm: VMDK4_COMPRESSION_DEFLATE,
        };
        let mut head = vec![0u8; usize::try_from(overhead * SECTOR).unwrap_or(0)];
        head[..512].copy_from_slice(&header.to_bytes());
        if let Some(d) = head.get_mut(512..512 + desc.len()) {
            d.copy_from_slice(desc.as_bytes());
        }
        out.write_all_at(&head, 0).map_err(Error::io(0))?;
        let grains = capacity.div_ceil(VMDK_GRAIN_SECTORS);
        let gd_len = grains.div_ceil(u64::from(VMDK_GTES_PER_GT));
        Ok(Self {
            out,
            guard: ExtentGuard::new(Format::Vmdk, capacity * SECTOR),
            virtual_size: capacity * SECTOR,
            header,
            asm: Assembler::new(GRAIN as usize),
            st: State {
                level: options.compression_level,
                pos: overhead * SECTOR,
                gd: vec![0; usize::try_from(gd_len).unwrap_or(0)],
                gt: None,
                empty_tables: options.empty_grain_tables,
                next_table: 0,
                compressor: None,
                batch: Batch::new(options.threads),
                allocated: 0,
            },
        })
    }

    /// Gives back the target.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl State {
    fn write_sectors<W: WriteAt>(&mut self, out: &mut W, data: &[u8]) -> Result<u64> {
        let at = self.pos;
        out.write_all_at(data, at).map_err(Error::io(at))?;
        self.pos = at + (data.len() as u64).div_ceil(SECTOR) * SECTOR;
        Ok(at / SECTOR)
    }

    fn write_table<W: WriteAt>(&mut self, out: &mut W, idx: u64, gt: &[u32]) -> Result<()> {
        let table: Vec<u8> = gt.iter().flat_map(|e| e.to_le_bytes()).collect();
        let sectors = (table.len() as u64).div_ceil(SECTOR);
        self.write_sectors(out, &metadata_marker(sectors, VMDK_MARKER_GT))?;
        let at = self.write_sectors(out, &table)?;
        if let Some(slot) = usize::try_from(idx).ok().and_then(|i| self.gd.get_mut(i)) {
            *slot = u32::try_from(at).unwrap_or(0);
        }
        self.next_table = idx + 1;
        Ok(())
    }

    /// Writes all-zero tables for the spans before `upto` not yet written.
    fn write_empty_tables<W: WriteAt>(&mut self, out: &mut W, upto: u64) -> Result<()> {
        if !self.empty_tables {
            return Ok(());
        }
        let empty = vec![0u32; VMDK_GTES_PER_GT as usize];
        while self.next_table < upto {
            self.write_table(out, self.next_table, &empty)?;
        }
        Ok(())
    }

    fn flush_gt<W: WriteAt>(&mut self, out: &mut W) -> Result<()> {
        if let Some((idx, gt)) = self.gt.take() {
            self.write_empty_tables(out, idx)?;
            self.write_table(out, idx, &gt)?;
        }
        Ok(())
    }

    /// Deflates one grain into its on-disk form: marker, zlib stream,
    /// padding to a sector.
    fn deflate_grain(c: &mut Compress, idx: u64, data: &[u8]) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(GRAIN as usize / 2);
        buf.extend_from_slice(&[0u8; VMDK_GRAIN_MARKER_LEN]);
        c.reset();
        loop {
            buf.reserve(GRAIN as usize);
            let consumed = usize::try_from(c.total_in()).unwrap_or(0);
            let rest = data.get(consumed..).unwrap_or(&[]);
            match c.compress_vec(rest, &mut buf, FlushCompress::Finish) {
                Ok(Status::StreamEnd) => break,
                Ok(_) => continue,
                Err(_) => return Err(Error::unsupported(Format::Vmdk, "deflate failed")),
            }
        }
        let size = u32::try_from(c.total_out()).unwrap_or(u32::MAX);
        let marker = grain_marker(idx * VMDK_GRAIN_SECTORS, size);
        if let Some(m) = buf.get_mut(..VMDK_GRAIN_MARKER_LEN) {
            m.copy_from_slice(&marker);
        }
        let padded = buf.len().div_ceil(SECTOR as usize) * SECTOR as usize;
        buf.resize(padded, 0);
        Ok(buf)
    }

    /// Appends a deflated grain and records it in its grain table.
    fn emit_grain<W: WriteAt>(&mut self, out: &mut W, idx: u64, bytes: &[u8]) -> Result<()> {
        let per_gt = u64::from(VMDK_GTES_PER_GT);
        let gt_idx = idx / per_gt;
        if self.gt.as_ref().is_some_and(|(i, _)| *i != gt_idx) {
            self.flush_gt(out)?;
        }
        if self.gt.is_none() {
            self.gt = Some((gt_idx, vec![0; VMDK_GTES_PER_GT as usize]));
        }
        let sector = self.write_sectors(out, bytes)?;
        if let Some((_, gt)) = self.gt.as_mut() {
            if let Some(slot) = usize::try_from(idx % per_gt)
                .ok()
                .and_then(|i| gt.get_mut(i))
            {
                *slot = u32::try_from(sector).unwrap_or(0);
            }
        }
        self.allocated += GRAIN;
        Ok(())
    }

    fn write_grain<W: WriteAt>(&mut self, out: &mut W, idx: u64, data: &[u8]) -> Result<()> {
        if self.batch.threads() <= 1 {
            let level = self.level;
            let c = self
                .compressor
                .get_or_insert_with(|| Compress::new(Compression::new(level), true));
            let bytes = Self::deflate_grain(c, idx, data)?;
            return self.emit_grain(out, idx, &bytes);
        }
        if self.batch.push(idx, data) {
            self.drain(out)?;
        }
        Ok(())
    }

    /// Compresses the queued grains in parallel and appends them in order.
    fn drain<W: WriteAt>(&mut self, out: &mut W) -> Result<()> {
        let level = self.level;
        let mut batch = std::mem::replace(&mut self.batch, Batch::new(1));
        let r = batch.drain(
            || Compress::new(Compression::new(level), true),
            Self::deflate_grain,
            |idx, _, bytes| self.emit_grain(out, idx, &bytes),
        );
        self.batch = batch;
        r
    }
}

impl<W: WriteAt> DiskWriter for VmdkWriter<W> {
    fn format(&self) -> Format {
        Format::Vmdk
    }
    fn virtual_size(&self) -> u64 {
        self.virtual_size
    }
    fn write_extent(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.guard.check(offset, data.len())?;
        let Self { out, asm, st, .. } = self;
        asm.feed(offset, data, &mut |idx, g| st.write_grain(out, idx, g))
    }

    fn finish(&mut self) -> Result<WriteSummary> {
        self.guard.finish()?;
        let Self {
            out,
            asm,
            st,
            header,
            ..
        } = self;
        asm.flush(&mut |idx, g| st.write_grain(out, idx, g))?;
        st.drain(out)?;
        st.flush_gt(out)?;
        let tables = st.gd.len() as u64;
        st.write_empty_tables(out, tables)?;
        let gd: Vec<u8> = st.gd.iter().flat_map(|e| e.to_le_bytes()).collect();
        let gd_sectors = (gd.len() as u64).div_ceil(SECTOR).max(1);
        st.write_sectors(out, &metadata_marker(gd_sectors, VMDK_MARKER_GD))?;
        let mut gd_padded = gd;
        gd_padded.resize(usize::try_from(gd_sectors * SECTOR).unwrap_or(0), 0);
        let gd_at = st.write_sectors(out, &gd_padded)?;
        st.write_sectors(out, &metadata_marker(1, VMDK_MARKER_FOOTER))?;
        let mut footer = header.clone();
        footer.gd_offset = gd_at;
        st.write_sectors(out, &footer.to_bytes())?;
        st.write_sectors(out, &metadata_marker(0, VMDK_MARKER_EOS))?;
        let file_size = st.pos;
        out.set_len(file_size).map_err(Error::io(file_size))?;
        Ok(WriteSummary {
            virtual_size: self.virtual_size,
            file_size,
            allocated_bytes: st.allocated,
        })
    }
}
