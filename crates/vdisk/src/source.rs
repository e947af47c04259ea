//! Reading side shared by every format: the [`VirtualDisk`] trait, sources
//! that know their holes ([`DataRegions`], SEEK_DATA/SEEK_HOLE on files), and
//! the pumps that feed a [`DiskWriter`] from a sparse file or any reader.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use kiln_units::ReadAt;

use crate::bytes::is_zero;
use crate::error::{Error, Format, Result};
use crate::extent::{DiskWriter, Extent};

/// A source that can say where its data is: `next_data(from)` returns the
/// first region at or after `from` that may hold non-zero bytes. Holes are
/// an optimisation; returning everything is always correct.
pub trait DataRegions: ReadAt {
    /// The first data region starting at or after byte `from` (a region that
    /// contains `from` is clipped to start there), or `None` past the last.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn next_data(&self, from: u64) -> io::Result<Option<Extent>>;
}

/// Files report their holes with `lseek(SEEK_DATA/SEEK_HOLE)`; a file
/// system without hole support reports the whole file as data.
impl DataRegions for File {
    fn next_data(&self, from: u64) -> io::Result<Option<Extent>> {
        seek_data(self, from)
    }
}

fn seek_data(f: &File, from: u64) -> io::Result<Option<Extent>> {
    use rustix::fs::{seek, SeekFrom};
    let size = f.metadata()?.len();
    if from >= size {
        return Ok(None);
    }
    let fd = f.as_fd();
    let start = match seek(fd, SeekFrom::Data(from)) {
        Ok(s) => s,
        Err(rustix::io::Errno::NXIO) => return Ok(None),
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::OPNOTSUPP) => from,
        Err(e) => return Err(e.into()),
    };
    let end = match seek(fd, SeekFrom::Hole(start)) {
        Ok(e) => e,
        Err(rustix::io::Errno::NXIO) => size,
        Err(e) => return Err(e.into()),
    };
    let end = end.min(size);
    if end <= start {
        return Ok(None);
    }
    Ok(Some(Extent {
        offset: start,
        len: end - start,
    }))
}

/// In-memory images: one region covering everything.
impl DataRegions for Vec<u8> {
    fn next_data(&self, from: u64) -> io::Result<Option<Extent>> {
        whole(self.len() as u64, from)
    }
}

/// In-memory images: one region covering everything.
impl DataRegions for [u8] {
    fn next_data(&self, from: u64) -> io::Result<Option<Extent>> {
        whole(self.len() as u64, from)
    }
}

impl<T: DataRegions + ?Sized> DataRegions for &T {
    fn next_data(&self, from: u64) -> io::Result<Option<Extent>> {
        (**self).next_data(from)
    }
}

/// Wraps any [`ReadAt`] that cannot report holes: everything is data (the
/// pumps still skip all-zero blocks, so the output stays sparse).
#[derive(Debug)]
pub struct NoHoles<R>(pub R);

impl<R: ReadAt> ReadAt for NoHoles<R> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        self.0.size()
    }
}

impl<R: ReadAt> DataRegions for NoHoles<R> {
    fn next_data(&self, from: u64) -> io::Result<Option<Extent>> {
        whole(self.0.size()?, from)
    }
}

fn whole(size: u64, from: u64) -> io::Result<Option<Extent>> {
    Ok((from < size).then(|| Extent {
        offset: from,
        len: size - from,
    }))
}

/// An opened virtual disk: positional reads of the *virtual* contents
/// (zeros where nothing is allocated) plus the allocation map.
pub trait VirtualDisk: ReadAt {
    /// The detected on-disk format.
    fn format(&self) -> Format;
    /// The virtual size in bytes.
    fn virtual_size(&self) -> u64;
    /// The first allocated region at or after virtual byte `from` (clipped
    /// to start at `from`), or `None` past the last one. Allocated regions
    /// may contain zeros; everything outside them reads as zero.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Corrupt`] from the metadata walk.
    fn next_allocated(&self, from: u64) -> Result<Option<Extent>>;
    /// Reads virtual bytes `[offset, offset + buf.len())`.
    ///
    /// # Errors
    /// [`Error::ReadOutOfRange`] past the virtual size, [`Error::Io`],
    /// [`Error::Corrupt`] for bad metadata met on the way.
    fn read_virtual(&self, buf: &mut [u8], offset: u64) -> Result<()>;
}

/// Iterator over the allocated extents of a [`VirtualDisk`], in order,
/// merged where adjacent; created by [`allocated_extents`].
#[derive(Debug)]
pub struct AllocatedExtents<'a, D: ?Sized> {
    disk: &'a D,
    pos: u64,
    done: bool,
}

/// The allocated extents of `disk`, lazily (metadata is read as the
/// iterator advances; nothing proportional to the disk is kept).
pub fn allocated_extents<D: VirtualDisk + ?Sized>(disk: &D) -> AllocatedExtents<'_, D> {
    AllocatedExtents {
        disk,
        pos: 0,
        done: false,
    }
}

impl<D: VirtualDisk + ?Sized> Iterator for AllocatedExtents<'_, D> {
    type Item = Result<Extent>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let first = match self.disk.next_allocated(self.pos) {
            Ok(Some(e)) => e,
            Ok(None) => {
                self.done = true;
                return None;
            }
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        if first.len == 0 {
            self.done = true;
            return None;
        }
        let mut ext = first;
        // Merge regions that touch (formats report per cluster/table).
        loop {
            match self.disk.next_allocated(ext.end()) {
                Ok(Some(n)) if n.offset == ext.end() && n.len > 0 => {
                    ext.len = ext.len.saturating_add(n.len)
                }
                Ok(_) => break,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        if ext.end() <= self.pos {
            self.done = true;
            return None;
        }
        self.pos = ext.end();
        Some(Ok(ext))
    }
}

/// Block size in bytes at which the pumps detect and skip zeros.
pub const ZERO_SKIP_BLOCK: usize = 4096;
/// Read buffer size in bytes used by the pumps.
pub const PUMP_BUFFER: usize = 1 << 20;

/// Feeds `writer` with every non-zero 4 KiB block of `disk`, in order,
/// reading only allocated regions; does not call `finish`.
///
/// Memory: one 1 MiB buffer.
///
/// # Errors
/// Errors of the reader or the writer.
pub fn copy_allocated<D: VirtualDisk + ?Sized, W: DiskWriter + ?Sized>(
    disk: &D,
    writer: &mut W,
) -> Result<()> {
    let mut buf = vec![0u8; PUMP_BUFFER];
    let vsize = disk.virtual_size();
    let mut pos = 0u64;
    while let Some(ext) = disk.next_allocated(pos)? {
        let end = ext.end().min(vsize);
        let mut off = ext.offset;
        while off < end {
            // Keep reads aligned to the buffer so data lands in whole blocks.
            let chunk_end = (off / PUMP_BUFFER as u64 + 1)
                .saturating_mul(PUMP_BUFFER as u64)
                .min(end);
            let n = usize::try_from(chunk_end - off).unwrap_or(PUMP_BUFFER);
            let b = buf.get_mut(..n).ok_or(Error::ReadOutOfRange {
                offset: off,
                len: n as u64,
                virtual_size: vsize,
            })?;
            disk.read_virtual(b, off)?;
            write_nonzero_runs(writer, off, b)?;
            off = chunk_end;
        }
        if end <= pos {
            break;
        }
        pos = end;
    }
    Ok(())
}

/// Sends the runs of `data` (at virtual `offset`) made of non-zero
/// [`ZERO_SKIP_BLOCK`]-aligned blocks to `writer`.
fn write_nonzero_runs<W: DiskWriter + ?Sized>(
    writer: &mut W,
    offset: u64,
    data: &[u8],
) -> Result<()> {
    let blk = ZERO_SKIP_BLOCK as u64;
    let mut run_start: Option<usize> = None;
    let mut i = 0usize;
    while i < data.len() {
        // Block boundaries follow virtual offsets, not the buffer start.
        let virt = offset + i as u64;
        let to_boundary = usize::try_from(blk - virt % blk).unwrap_or(ZERO_SKIP_BLOCK);
        let j = (i + to_boundary).min(data.len());
        let zero = data.get(i..j).is_none_or(is_zero);
        match (zero, run_start) {
            (false, None) => run_start = Some(i),
            (true, Some(s)) => {
                if let Some(run) = data.get(s..i) {
                    writer.write_extent(offset + s as u64, run)?;
                }
                run_start = None;
            }
            _ => {}
        }
        i = j;
    }
    if let Some(s) = run_start {
        if let Some(run) = data.get(s..) {
            writer.write_extent(offset + s as u64, run)?;
        }
    }
    Ok(())
}

/// Feeds `writer` from a sparse raw file: only SEEK_DATA regions are read,
/// and all-zero 4 KiB blocks inside them are skipped too. Does not call
/// `finish`.
///
/// # Errors
/// Errors of the file or the writer.
pub fn feed_sparse_file<W: DiskWriter + ?Sized>(file: &File, writer: &mut W) -> Result<()> {
    let raw = crate::raw::RawReader::new(file).map_err(Error::io(0))?;
    copy_allocated(&raw, writer)
}

/// Feeds `writer` from any positional reader holding a raw image (every
/// byte is read; zero blocks are skipped). Does not call `finish`.
///
/// # Errors
/// Errors of the reader or the writer.
pub fn feed_read_at<R: ReadAt, W: DiskWriter + ?Sized>(reader: R, writer: &mut W) -> Result<()> {
    let raw = crate::raw::RawReader::new(NoHoles(reader)).map_err(Error::io(0))?;
    copy_allocated(&raw, writer)
}

/// Refuses a read outside `[0, virtual_size)`.
pub(crate) fn check_range(offset: u64, len: usize, virtual_size: u64) -> Result<()> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= virtual_size => Ok(()),
        _ => Err(Error::ReadOutOfRange {
            offset,
            len: len as u64,
            virtual_size,
        }),
    }
}
