//! Dynamic VHDX reader (differencing disks and disks with a log to
//! replay are refused).

use std::io;

use kiln_units::{Guid, ReadAt};

use crate::error::{Error, Format, Result};
use crate::extent::Extent;
use crate::source::{check_range, DataRegions, VirtualDisk};

use super::header::{
    parse_header, parse_region_table, Regions, VHDX_HEADER_LEN, VHDX_HEADER_OFFSETS,
    VHDX_REGION_TABLE_LEN, VHDX_REGION_TABLE_OFFSETS,
};
use super::metadata::{parse_metadata, DiskParams};
use super::writer::VHDX_PAYLOAD_FULLY_PRESENT;
use super::{bat_entries, bat_index, VHDX_FILE_SIGNATURE, VHDX_MIB};

/// Largest BAT accepted, in entries (128 MiB of table: 16 TiB of 1 MiB
/// blocks).
const MAX_BAT_ENTRIES: u64 = 16 << 20;
/// Largest metadata region read, bytes.
const MAX_METADATA_LEN: u64 = 16 << 20;
/// BAT entry bits 0-2: the block state (§2.5.1).
const BAT_STATE_MASK: u64 = 7;
/// BAT entry bits 20-63: FileOffsetMB (§2.5.1).
const BAT_OFFSET_MASK: u64 = !(VHDX_MIB - 1);

fn corrupt(at: u64, what: &'static str) -> Error {
    Error::corrupt(Format::Vhdx, at, what)
}

/// A dynamic VHDX opened for reading.
///
/// Memory kept: the payload entries of the BAT (8 bytes per block,
/// bounded by `MAX_BAT_ENTRIES`).
#[derive(Debug)]
pub struct VhdxReader<R> {
    src: R,
    file_size: u64,
    params: DiskParams,
    /// One entry per payload block (bitmap entries dropped).
    payload: Vec<u64>,
    bat_offset: u64,
    chunk_ratio: u64,
}

impl<R: ReadAt> VhdxReader<R> {
    /// Parses the header section, the metadata and the BAT of `src`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for bad signatures, checksums or out-of-bounds
    /// tables; [`Error::Unsupported`] for differencing disks, a log to
    /// replay or unknown required regions or items.
    pub fn open(src: R) -> Result<Self> {
        let file_size = src.size().map_err(Error::io(0))?;
        if file_size < VHDX_MIB {
            return Err(corrupt(0, "file shorter than the 1 MiB header section"));
        }
        let mut sig = [0u8; 8];
        src.read_exact_at(&mut sig, 0).map_err(Error::io(0))?;
        if sig != VHDX_FILE_SIGNATURE {
            return Err(corrupt(0, "file type identifier is not vhdxfile"));
        }
        let mut current = None;
        for at in VHDX_HEADER_OFFSETS {
            let mut b = vec![0u8; VHDX_HEADER_LEN];
            src.read_exact_at(&mut b, at).map_err(Error::io(at))?;
            if let Some(h) = parse_header(&b) {
                if current
                    .is_none_or(|(c, _): (super::header::Header, u64)| h.sequence > c.sequence)
                {
                    current = Some((h, at));
                }
            }
        }
        let (header, _) = current.ok_or_else(|| {
            corrupt(
                VHDX_HEADER_OFFSETS[0],
                "no valid header (signature, checksum or version)",
            )
        })?;
        if header.log_guid != Guid::ZERO {
            return Err(Error::unsupported(
                Format::Vhdx,
                "a log to replay (attach the disk once in Hyper-V, or run qemu-img check -r all)",
            ));
        }
        let regions = read_regions(&src)?;
        let params = read_metadata(&src, regions, file_size)?;
        let mut r = Self {
            src,
            file_size,
            params,
            payload: Vec::new(),
            bat_offset: regions.bat.offset,
            chunk_ratio: (1u64 << 23) * u64::from(params.logical_sector) / params.block_size,
        };
        r.read_bat(regions)?;
        Ok(r)
    }

    fn read_bat(&mut self, regions: Regions) -> Result<()> {
        let blocks = self.params.virtual_size.div_ceil(self.params.block_size);
        let entries = bat_entries(blocks, self.chunk_ratio);
        if entries > MAX_BAT_ENTRIES {
            return Err(Error::unsupported(Format::Vhdx, "BAT larger than 128 MiB"));
        }
        let len = entries * 8;
        let at = regions.bat.offset;
        if len > regions.bat.length || at.checked_add(len).is_none_or(|e| e > self.file_size) {
            return Err(corrupt(
                at,
                "BAT region too short for the disk size or outside the file",
            ));
        }
        let mut raw = vec![0u8; usize::try_from(len).map_err(|_| corrupt(at, "BAT size"))?];
        self.src
            .read_exact_at(&mut raw, at)
            .map_err(Error::io(at))?;
        let all: Vec<u64> = raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        self.payload = (0..blocks)
            .map(|b| {
                let i = usize::try_from(bat_index(b, self.chunk_ratio)).unwrap_or(usize::MAX);
                all.get(i).copied().unwrap_or(0)
            })
            .collect();
        Ok(())
    }

    /// The block size in bytes.
    pub fn block_size(&self) -> u64 {
        self.params.block_size
    }

    /// The file offset of block `idx`'s data, `None` when it reads as zeros.
    fn block_data(&self, idx: u64) -> Result<Option<u64>> {
        let e = usize::try_from(idx)
            .ok()
            .and_then(|i| self.payload.get(i))
            .copied()
            .unwrap_or(0);
        let entry_at = self.bat_offset + bat_index(idx, self.chunk_ratio) * 8;
        match e & BAT_STATE_MASK {
            // NOT_PRESENT, UNDEFINED, ZERO, UNMAPPED: zeros without a parent.
            0..=3 => Ok(None),
            VHDX_PAYLOAD_FULLY_PRESENT => {
                let data = e & BAT_OFFSET_MASK;
                let len = self
                    .params
                    .block_size
                    .min(self.params.virtual_size - idx * self.params.block_size);
                if data < 3 * VHDX_MIB
                    || data.checked_add(len).is_none_or(|end| end > self.file_size)
                {
                    return Err(corrupt(entry_at, "payload block outside the file"));
                }
                Ok(Some(data))
            }
            7 => Err(Error::unsupported(
                Format::Vhdx,
                "partially present block (differencing disk)",
            )),
            _ => Err(corrupt(entry_at, "invalid BAT entry state")),
        }
    }
}

/// The regions of the first region table with a good checksum.
fn read_regions<R: ReadAt>(src: &R) -> Result<Regions> {
    for at in VHDX_REGION_TABLE_OFFSETS {
        let mut b = vec![0u8; VHDX_REGION_TABLE_LEN];
        src.read_exact_at(&mut b, at).map_err(Error::io(at))?;
        if let Some(r) = parse_region_table(&b, at)? {
            return Ok(r);
        }
    }
    Err(corrupt(
        VHDX_REGION_TABLE_OFFSETS[0],
        "no valid region table (signature or checksum)",
    ))
}

fn read_metadata<R: ReadAt>(src: &R, regions: Regions, file_size: u64) -> Result<DiskParams> {
    let m = regions.metadata;
    if m.length > MAX_METADATA_LEN || m.offset.checked_add(m.length).is_none_or(|e| e > file_size) {
        return Err(corrupt(
            m.offset,
            "metadata region outside the file or above 16 MiB",
        ));
    }
    let mut b =
        vec![0u8; usize::try_from(m.length).map_err(|_| corrupt(m.offset, "metadata size"))?];
    src.read_exact_at(&mut b, m.offset)
        .map_err(Error::io(m.offset))?;
    parse_metadata(&b, m.offset)
}

impl<R: DataRegions> ReadAt for VhdxReader<R> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_virtual(buf, offset).map_err(io::Error::from)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.params.virtual_size)
    }
}

impl<R: DataRegions> VirtualDisk for VhdxReader<R> {
    fn format(&self) -> Format {
        Format::Vhdx
    }
    fn virtual_size(&self) -> u64 {
        self.params.virtual_size
    }
    fn next_allocated(&self, from: u64) -> Result<Option<Extent>> {
        let (bs, size) = (self.params.block_size, self.params.virtual_size);
        let mut b = from / bs;
        while b < self.payload.len() as u64 {
            if self.block_data(b)?.is_some() {
                let start = (b * bs).max(from);
                let end = ((b + 1) * bs).min(size);
                return Ok(Some(Extent {
                    offset: start,
                    len: end - start,
                }));
            }
            b += 1;
        }
        Ok(None)
    }
    fn read_virtual(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(offset, buf.len(), self.params.virtual_size)?;
        let bs = self.params.block_size;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let within = pos % bs;
            let room = usize::try_from(bs - within).unwrap_or(usize::MAX);
            let n = room.min(buf.len() - done);
            let part = buf
                .get_mut(done..done + n)
                .ok_or_else(|| corrupt(0, "read"))?;
            match self.block_data(pos / bs)? {
                None => part.fill(0),
                Some(data) => {
                    let at = data + within;
                    self.src.read_exact_at(part, at).map_err(Error::io(at))?;
                }
            }
            done += n;
        }
        Ok(())
    }
}
