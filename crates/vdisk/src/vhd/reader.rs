//! VHD reader, fixed and dynamic (differencing disks are refused).

use std::io;

use kiln_units::ReadAt;

use crate::bytes::be32;
use crate::error::{Error, Format, Result};
use crate::extent::Extent;
use crate::source::{check_range, DataRegions, VirtualDisk};

use super::dynamic::{DynamicHeader, VHD_BAT_UNUSED, VHD_DYN_HEADER_LEN};
use super::footer::{
    Footer, VHD_COOKIE, VHD_DISK_TYPE_DIFFERENCING, VHD_DISK_TYPE_DYNAMIC, VHD_DISK_TYPE_FIXED,
    VHD_FOOTER_LEN,
};
use super::VhdKind;

/// Largest BAT accepted, in entries (64 MiB of table).
const MAX_BAT_ENTRIES: u64 = 16 << 20;

/// A VHD opened for reading.
///
/// Memory kept: the BAT of a dynamic disk (4 bytes per block, bounded by
/// the virtual size and 64 MiB).
#[derive(Debug)]
pub struct VhdReader<R> {
    src: R,
    file_size: u64,
    size: u64,
    kind: VhdKind,
    block_size: u64,
    bitmap_len: u64,
    bat: Vec<u32>,
    bat_offset: u64,
}

fn corrupt(at: u64, what: &'static str) -> Error {
    Error::corrupt(Format::Vhd, at, what)
}

impl<R: ReadAt> VhdReader<R> {
    /// Parses footer, dynamic header and BAT of `src`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for bad cookies, checksums or out-of-bounds
    /// tables, [`Error::Unsupported`] for differencing disks.
    pub fn open(src: R) -> Result<Self> {
        let file_size = src.size().map_err(Error::io(0))?;
        let flen = VHD_FOOTER_LEN as u64;
        if file_size < flen {
            return Err(corrupt(0, "file shorter than a VHD footer"));
        }
        let mut fb = [0u8; VHD_FOOTER_LEN];
        let at = file_size - flen;
        src.read_exact_at(&mut fb, at).map_err(Error::io(at))?;
        let (footer, footer_at) = if fb[..8] == VHD_COOKIE {
            (Footer::parse(&fb, at)?, at)
        } else {
            // A dynamic disk whose trailing footer is damaged: use the
            // copy. Without a good copy, the trailing footer's own error
            // (cookie, checksum) is the one to report, at its offset.
            let mut copy = [0u8; VHD_FOOTER_LEN];
            src.read_exact_at(&mut copy, 0).map_err(Error::io(0))?;
            if copy[..8] == VHD_COOKIE {
                (Footer::parse(&copy, 0)?, 0)
            } else {
                (Footer::parse(&fb, at)?, at)
            }
        };
        let chs = footer.geometry.sectors() * 512;
        let use_chs = matches!(&footer.creator_app, b"vpc " | b"qemu")
            && (
                footer.geometry.cylinders,
                footer.geometry.heads,
                footer.geometry.sectors_per_track,
            ) != (65535, 16, 255);
        let size = if use_chs { chs } else { footer.current_size };
        let mut r = Self {
            src,
            file_size,
            size,
            kind: VhdKind::Fixed,
            block_size: 0,
            bitmap_len: 0,
            bat: Vec::new(),
            bat_offset: 0,
        };
        match footer.disk_type {
            VHD_DISK_TYPE_FIXED => {
                if footer_at == 0 || size > at {
                    return Err(corrupt(at + 48, "fixed disk larger than the file"));
                }
            }
            VHD_DISK_TYPE_DYNAMIC => r.open_dynamic(&footer)?,
            VHD_DISK_TYPE_DIFFERENCING => {
                return Err(Error::unsupported(Format::Vhd, "differencing disk"))
            }
            _ => return Err(corrupt(footer_at + 60, "unknown disk type")),
        }
        Ok(r)
    }

    fn open_dynamic(&mut self, footer: &Footer) -> Result<()> {
        let hat = footer.data_offset;
        if hat
            .checked_add(VHD_DYN_HEADER_LEN as u64)
            .is_none_or(|e| e > self.file_size)
        {
            return Err(corrupt(16, "dynamic header outside the file"));
        }
        let mut hb = [0u8; VHD_DYN_HEADER_LEN];
        self.src
            .read_exact_at(&mut hb, hat)
            .map_err(Error::io(hat))?;
        let h = DynamicHeader::parse(&hb, hat)?;
        let bs = u64::from(h.block_size);
        let needed = self.size.div_ceil(bs);
        let entries = u64::from(h.max_table_entries);
        if entries < needed || entries > MAX_BAT_ENTRIES {
            return Err(corrupt(
                hat + 28,
                "max table entries does not match the disk size",
            ));
        }
        let bat_len = entries * 4;
        if h.table_offset
            .checked_add(bat_len)
            .is_none_or(|e| e > self.file_size)
        {
            return Err(corrupt(hat + 16, "BAT outside the file"));
        }
        let mut raw =
            vec![0u8; usize::try_from(bat_len).map_err(|_| corrupt(hat + 28, "BAT size"))?];
        self.src
            .read_exact_at(&mut raw, h.table_offset)
            .map_err(Error::io(h.table_offset))?;
        self.bat = raw.chunks_exact(4).map(|c| be32(c, 0)).collect();
        self.bat_offset = h.table_offset;
        self.kind = VhdKind::Dynamic;
        self.block_size = bs;
        self.bitmap_len = (bs / 512 / 8).div_ceil(512) * 512;
        Ok(())
    }

    /// Fixed or dynamic.
    pub fn kind(&self) -> VhdKind {
        self.kind
    }

    fn block_data(&self, idx: u64) -> Result<Option<u64>> {
        let e = usize::try_from(idx)
            .ok()
            .and_then(|i| self.bat.get(i))
            .copied()
            .unwrap_or(VHD_BAT_UNUSED);
        if e == VHD_BAT_UNUSED {
            return Ok(None);
        }
        let data = u64::from(e) * 512 + self.bitmap_len;
        if data
            .checked_add(self.block_size)
            .is_none_or(|end| end > self.file_size)
        {
            return Err(corrupt(self.bat_offset + idx * 4, "block outside the file"));
        }
        Ok(Some(data))
    }
}

impl<R: DataRegions> ReadAt for VhdReader<R> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_virtual(buf, offset).map_err(io::Error::from)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.size)
    }
}

/// The allocation map of a fixed disk comes from the file's own holes
/// (SEEK_DATA for files; wrap other readers in [`crate::NoHoles`]).
impl<R: DataRegions> VirtualDisk for VhdReader<R> {
    fn format(&self) -> Format {
        Format::Vhd
    }
    fn virtual_size(&self) -> u64 {
        self.size
    }
    fn next_allocated(&self, from: u64) -> Result<Option<Extent>> {
        if from >= self.size {
            return Ok(None);
        }
        if self.kind == VhdKind::Fixed {
            let next = self.src.next_data(from).map_err(Error::io(from))?;
            return Ok(next.and_then(|e| {
                let end = e.end().min(self.size);
                (e.offset < end).then(|| Extent {
                    offset: e.offset,
                    len: end - e.offset,
                })
            }));
        }
        let mut b = from / self.block_size;
        let blocks = self.size.div_ceil(self.block_size);
        while b < blocks {
            if self.block_data(b)?.is_some() {
                let start = (b * self.block_size).max(from);
                let end = ((b + 1) * self.block_size).min(self.size);
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
        check_range(offset, buf.len(), self.size)?;
        if self.kind == VhdKind::Fixed {
            return self
                .src
                .read_exact_at(buf, offset)
                .map_err(Error::io(offset));
        }
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let within = pos % self.block_size;
            let room = usize::try_from(self.block_size - within).unwrap_or(usize::MAX);
            let n = room.min(buf.len() - done);
            let part = buf
                .get_mut(done..done + n)
                .ok_or_else(|| corrupt(0, "read"))?;
            match self.block_data(pos / self.block_size)? {
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
