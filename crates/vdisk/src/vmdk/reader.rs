//! Reader of hosted sparse VMDK extents: monolithicSparse (uncompressed
//! grains, GD at a fixed offset) and streamOptimized (compressed grains
//! with markers, GD found through the footer).

use std::io;
use std::sync::Mutex;

use flate2::{Decompress, FlushDecompress, Status};
use kiln_units::ReadAt;

use crate::bytes::{le32, le64};
use crate::error::{Error, Format, Result};
use crate::extent::Extent;
use crate::source::{check_range, VirtualDisk};

use super::header::{SparseHeader, VMDK4_FLAG_COMPRESS, VMDK4_GD_AT_END};
use super::marker::VMDK_GRAIN_MARKER_LEN;

const SECTOR: u64 = 512;
/// Largest grain directory accepted (64 MiB).
const MAX_GD_BYTES: u64 = 64 << 20;

/// A VMDK sparse extent opened for reading.
///
/// Memory kept: the grain directory (bounded by the capacity and 64 MiB),
/// one cached grain table (at most 16 KiB) and one inflated grain (at most
/// 2 MiB).
#[derive(Debug)]
pub struct VmdkReader<R> {
    src: R,
    file_size: u64,
    size: u64,
    grain_bytes: u64,
    gtes: u64,
    compressed: bool,
    stream_optimized: bool,
    gd: Vec<u32>,
    gd_at: u64,
    cache: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    gt_sector: u32,
    gt: Vec<u32>,
    grain_sector: u32,
    grain: Vec<u8>,
}

fn corrupt(at: u64, what: &'static str) -> Error {
    Error::corrupt(Format::Vmdk, at, what)
}

impl<R: ReadAt> VmdkReader<R> {
    /// Parses header (and footer, for streams) and the grain directory.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for bad magic or out-of-bounds tables,
    /// [`Error::Unsupported`] for text descriptors (split or flat disks)
    /// and non-deflate compression.
    pub fn open(src: R) -> Result<Self> {
        let file_size = src.size().map_err(Error::io(0))?;
        if file_size < SECTOR {
            return Err(corrupt(0, "file shorter than a sparse extent header"));
        }
        let mut hb = [0u8; 512];
        src.read_exact_at(&mut hb, 0).map_err(Error::io(0))?;
        if hb.starts_with(b"# Disk DescriptorFile") {
            return Err(Error::unsupported(
                Format::Vmdk,
                "descriptor file with separate extents",
            ));
        }
        let mut h = SparseHeader::parse(&hb, 0)?;
        let stream_optimized = h.gd_offset == VMDK4_GD_AT_END;
        if stream_optimized {
            // Footer marker, footer, end-of-stream marker: the last 3 sectors.
            if file_size < 4 * SECTOR {
                return Err(corrupt(0, "stream too short for a footer"));
            }
            let at = file_size - 2 * SECTOR;
            src.read_exact_at(&mut hb, at).map_err(Error::io(at))?;
            let footer = SparseHeader::parse(&hb, at)?;
            if footer.capacity != h.capacity || footer.grain_size != h.grain_size {
                return Err(corrupt(at, "footer does not match the header"));
            }
            h.gd_offset = footer.gd_offset;
        }
        let grain_bytes = h.grain_size * SECTOR;
        let gtes = u64::from(h.num_gtes_per_gt);
        let size = h.capacity * SECTOR;
        let gd_entries = h.capacity.div_ceil(h.grain_size).div_ceil(gtes);
        let gd_bytes = gd_entries * 4;
        let gd_at = h
            .gd_offset
            .checked_mul(SECTOR)
            .ok_or_else(|| corrupt(56, "gdOffset"))?;
        if gd_bytes > MAX_GD_BYTES || gd_at.checked_add(gd_bytes).is_none_or(|e| e > file_size) {
            return Err(corrupt(56, "grain directory outside the file"));
        }
        let mut raw =
            vec![0u8; usize::try_from(gd_bytes).map_err(|_| corrupt(56, "grain directory"))?];
        src.read_exact_at(&mut raw, gd_at)
            .map_err(Error::io(gd_at))?;
        let gd = raw.chunks_exact(4).map(|c| le32(c, 0)).collect();
        Ok(Self {
            src,
            file_size,
            size,
            grain_bytes,
            gtes,
            compressed: h.flags & VMDK4_FLAG_COMPRESS != 0,
            stream_optimized,
            gd,
            gd_at,
            cache: Mutex::new(Cache::default()),
        })
    }

    /// Whether this is a streamOptimized extent (footer, markers).
    pub fn is_stream_optimized(&self) -> bool {
        self.stream_optimized
    }

    /// The grain-table entry of grain `g`: 0 unallocated, 1 zero grain,
    /// else the grain's sector.
    fn gte(&self, cache: &mut Cache, g: u64) -> Result<u32> {
        let gt_idx = g / self.gtes;
        let gt_sector = usize::try_from(gt_idx)
            .ok()
            .and_then(|i| self.gd.get(i))
            .copied()
            .unwrap_or(0);
        if gt_sector == 0 {
            return Ok(0);
        }
        if cache.gt_sector != gt_sector || cache.gt.is_empty() {
            let at = u64::from(gt_sector) * SECTOR;
            let len = self.gtes * 4;
            if at.checked_add(len).is_none_or(|e| e > self.file_size) {
                return Err(corrupt(
                    self.gd_at + gt_idx * 4,
                    "grain table outside the file",
                ));
            }
            let mut b = vec![0u8; usize::try_from(len).unwrap_or(0)];
            self.src.read_exact_at(&mut b, at).map_err(Error::io(at))?;
            cache.gt = b.chunks_exact(4).map(|c| le32(c, 0)).collect();
            cache.gt_sector = gt_sector;
        }
        Ok(usize::try_from(g % self.gtes)
            .ok()
            .and_then(|i| cache.gt.get(i))
            .copied()
            .unwrap_or(0))
    }

    fn read_in_grain(&self, cache: &mut Cache, buf: &mut [u8], offset: u64) -> Result<()> {
        let g = offset / self.grain_bytes;
        let within = offset % self.grain_bytes;
        let gte = self.gte(cache, g)?;
        if gte <= 1 {
            buf.fill(0);
            return Ok(());
        }
        let at = u64::from(gte) * SECTOR;
        if !self.compressed {
            if at
                .checked_add(self.grain_bytes)
                .is_none_or(|e| e > self.file_size)
            {
                return Err(corrupt(at, "grain outside the file"));
            }
            return self
                .src
                .read_exact_at(buf, at + within)
                .map_err(Error::io(at + within));
        }
        if cache.grain_sector != gte || cache.grain.is_empty() {
            cache.grain_sector = 0;
            self.inflate(cache, at)?;
            cache.grain_sector = gte;
        }
        let start = usize::try_from(within).unwrap_or(usize::MAX);
        let src = start
            .checked_add(buf.len())
            .and_then(|end| cache.grain.get(start..end))
            .ok_or_else(|| corrupt(at, "grain"))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn inflate(&self, cache: &mut Cache, at: u64) -> Result<()> {
        let mut m = [0u8; VMDK_GRAIN_MARKER_LEN];
        if at
            .checked_add(VMDK_GRAIN_MARKER_LEN as u64)
            .is_none_or(|e| e > self.file_size)
        {
            return Err(corrupt(at, "grain marker outside the file"));
        }
        self.src.read_exact_at(&mut m, at).map_err(Error::io(at))?;
        let _lba = le64(&m, 0);
        let size = u64::from(le32(&m, 8));
        let data_at = at + VMDK_GRAIN_MARKER_LEN as u64;
        // Deflate never grows a grain by more than a few bytes per 16 KiB.
        if size > self.grain_bytes + 4096
            || data_at.checked_add(size).is_none_or(|e| e > self.file_size)
        {
            return Err(corrupt(at + 8, "compressed grain size"));
        }
        let mut input = vec![0u8; usize::try_from(size).unwrap_or(0)];
        self.src
            .read_exact_at(&mut input, data_at)
            .map_err(Error::io(data_at))?;
        cache.grain.clear();
        cache
            .grain
            .resize(usize::try_from(self.grain_bytes).unwrap_or(0), 0);
        // A zlib stream (RFC 1950): the decoder checks its Adler-32 at the
        // end, which only counts if the stream does reach its end inside
        // the grain's bytes and the grain's size.
        let mut d = Decompress::new(true);
        let r = d.decompress(&input, &mut cache.grain, FlushDecompress::Finish);
        let what = match r {
            Ok(Status::StreamEnd) => None,
            // The output is full and the stream goes on.
            Ok(_) if d.total_out() >= self.grain_bytes => {
                Some("grain inflates past the grain size")
            }
            Ok(_) => Some("grain's compressed stream is cut short"),
            Err(_) => Some("grain does not inflate or fails its Adler-32 check"),
        };
        if let Some(what) = what {
            cache.grain.clear();
            return Err(corrupt(data_at, what));
        }
        // A short grain (the last one of an odd-sized disk) reads as zeros
        // past its end: the buffer was zero-filled.
        Ok(())
    }
}

impl<R: ReadAt> ReadAt for VmdkReader<R> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_virtual(buf, offset).map_err(io::Error::from)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.size)
    }
}

impl<R: ReadAt> VirtualDisk for VmdkReader<R> {
    fn format(&self) -> Format {
        Format::Vmdk
    }
    fn virtual_size(&self) -> u64 {
        self.size
    }
    fn next_allocated(&self, from: u64) -> Result<Option<Extent>> {
        if from >= self.size {
            return Ok(None);
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let grains = self.size.div_ceil(self.grain_bytes);
        let mut g = from / self.grain_bytes;
        while g < grains {
            let gt_idx = g / self.gtes;
            let has_gt = usize::try_from(gt_idx)
                .ok()
                .and_then(|i| self.gd.get(i))
                .is_some_and(|&s| s != 0);
            if !has_gt {
                g = (gt_idx + 1) * self.gtes;
                continue;
            }
            if self.gte(&mut cache, g)? > 1 {
                let start = (g * self.grain_bytes).max(from);
                let end = ((g + 1) * self.grain_bytes).min(self.size);
                return Ok(Some(Extent {
                    offset: start,
                    len: end - start,
                }));
            }
            g += 1;
        }
        Ok(None)
    }
    fn read_virtual(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(offset, buf.len(), self.size)?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let room =
                usize::try_from(self.grain_bytes - pos % self.grain_bytes).unwrap_or(usize::MAX);
            let n = room.min(buf.len() - done);
            let part = buf
                .get_mut(done..done + n)
                .ok_or_else(|| corrupt(0, "read"))?;
            self.read_in_grain(&mut cache, part, pos)?;
            done += n;
        }
        Ok(())
    }
}
