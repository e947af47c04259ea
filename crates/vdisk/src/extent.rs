//! The extent stream every writer consumes, and the helpers writers share
//! to turn it into fixed-size clusters.

use crate::bytes::is_zero;
use crate::error::{Error, Format, Result};

/// A byte range of the virtual disk: `[offset, offset + len)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Extent {
    /// Virtual byte offset of the first byte.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Extent {
    /// The virtual byte offset one past the last byte (saturating).
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }
}

/// What a finished writer produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSummary {
    /// The virtual disk size in bytes as recorded in the output (after the
    /// rounding the format requires).
    pub virtual_size: u64,
    /// The length of the output file in bytes.
    pub file_size: u64,
    /// Bytes of the virtual disk stored as allocated data (clusters,
    /// grains, blocks; for raw and VHD fixed, the bytes written).
    pub allocated_bytes: u64,
}

/// A virtual-disk writer fed an ordered stream of data extents.
///
/// The contract: the virtual size is fixed when the writer is created;
/// [`write_extent`](DiskWriter::write_extent) is called with offsets
/// strictly increasing and extents non-overlapping (each starts at or after
/// the end of the previous one) and inside the virtual size; regions never
/// sent read back as zeros; [`finish`](DiskWriter::finish) writes the
/// metadata the format keeps at the end and must be called exactly once.
/// Extents need no alignment: writers assemble partial clusters themselves
/// and skip clusters that end up entirely zero.
pub trait DiskWriter {
    /// The output format.
    fn format(&self) -> Format;
    /// The virtual size in bytes (as the output will record it).
    fn virtual_size(&self) -> u64;
    /// Stores `data` at virtual byte `offset`.
    ///
    /// # Errors
    /// [`Error::ExtentOutOfOrder`] for an extent before the end of the
    /// previous one or past the virtual size; [`Error::Io`] on write failure;
    /// [`Error::AlreadyFinished`] after `finish`.
    fn write_extent(&mut self, offset: u64, data: &[u8]) -> Result<()>;
    /// Writes the trailing metadata and reports what was produced.
    ///
    /// # Errors
    /// [`Error::Io`] on write failure; [`Error::AlreadyFinished`] on a second call.
    fn finish(&mut self) -> Result<WriteSummary>;
}

impl<T: DiskWriter + ?Sized> DiskWriter for Box<T> {
    fn format(&self) -> Format {
        (**self).format()
    }
    fn virtual_size(&self) -> u64 {
        (**self).virtual_size()
    }
    fn write_extent(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        (**self).write_extent(offset, data)
    }
    fn finish(&mut self) -> Result<WriteSummary> {
        (**self).finish()
    }
}

/// Enforces the extent-stream contract (order, bounds, not finished).
#[derive(Debug)]
pub(crate) struct ExtentGuard {
    format: Format,
    virtual_size: u64,
    next_allowed: u64,
    finished: bool,
}

impl ExtentGuard {
    pub(crate) fn new(format: Format, virtual_size: u64) -> Self {
        Self {
            format,
            virtual_size,
            next_allowed: 0,
            finished: false,
        }
    }
    pub(crate) fn check(&mut self, offset: u64, len: usize) -> Result<()> {
        if self.finished {
            return Err(Error::AlreadyFinished {
                format: self.format,
            });
        }
        let len = len as u64;
        let end = offset.checked_add(len);
        match end {
            Some(end) if offset >= self.next_allowed && end <= self.virtual_size => {
                self.next_allowed = end;
                Ok(())
            }
            _ => Err(Error::ExtentOutOfOrder {
                offset,
                len,
                next_allowed: self.next_allowed,
                virtual_size: self.virtual_size,
            }),
        }
    }
    pub(crate) fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Err(Error::AlreadyFinished {
                format: self.format,
            });
        }
        self.finished = true;
        Ok(())
    }
}

/// Cuts the extent stream into fixed-size, aligned units (qcow2 clusters,
/// VMDK grains, VHD blocks) and hands each unit that is not entirely zero
/// to a sink, in increasing order.
///
/// Memory: one unit-sized buffer for a unit that arrives in pieces; whole
/// aligned units are passed straight from the caller's slice.
#[derive(Debug)]
pub(crate) struct Assembler {
    unit: usize,
    /// Hand all-zero units to the sink too (a qcow2 overlay must record
    /// them, or they would read through to its backing file).
    keep_zero: bool,
    buf: Vec<u8>,
    current: Option<u64>,
}

impl Assembler {
    pub(crate) fn new(unit: usize) -> Self {
        Self {
            unit,
            keep_zero: false,
            buf: vec![0; unit],
            current: None,
        }
    }

    /// Feeds one extent; `sink(unit_index, unit_bytes)` is called for each
    /// completed non-zero unit.
    /// Like [`Assembler::new`], but all-zero units reach the sink too.
    pub(crate) fn keeping_zeros(unit: usize) -> Self {
        Self {
            keep_zero: true,
            ..Self::new(unit)
        }
    }

    pub(crate) fn feed(
        &mut self,
        offset: u64,
        mut data: &[u8],
        sink: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let unit = self.unit as u64;
        let mut off = offset;
        while !data.is_empty() {
            let idx = off / unit;
            // Lossless: the remainder is below `unit`, a usize.
            let within = usize::try_from(off % unit).unwrap_or(0);
            if self.current.is_some_and(|c| c != idx) {
                self.flush(sink)?;
            }
            if self.current.is_none() && within == 0 && data.len() >= self.unit {
                let (whole, rest) = data.split_at(self.unit);
                if self.keep_zero || !is_zero(whole) {
                    sink(idx, whole)?;
                }
                data = rest;
                off = off.saturating_add(unit);
                continue;
            }
            if self.current.is_none() {
                self.buf.fill(0);
                self.current = Some(idx);
            }
            let n = (self.unit - within).min(data.len());
            let (part, rest) = data.split_at(n);
            if let Some(dst) = self.buf.get_mut(within..within + n) {
                dst.copy_from_slice(part);
            }
            data = rest;
            off = off.saturating_add(n as u64);
        }
        Ok(())
    }

    /// Hands over the unit still being assembled, if any.
    pub(crate) fn flush(&mut self, sink: &mut dyn FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        if let Some(idx) = self.current.take() {
            if self.keep_zero || !is_zero(&self.buf) {
                sink(idx, &self.buf)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(unit: usize, extents: &[(u64, Vec<u8>)]) -> Vec<(u64, Vec<u8>)> {
        let mut a = Assembler::new(unit);
        let mut out = Vec::new();
        let mut sink = |i: u64, b: &[u8]| {
            out.push((i, b.to_vec()));
            Ok(())
        };
        for (o, d) in extents {
            a.feed(*o, d, &mut sink).unwrap();
        }
        a.flush(&mut sink).unwrap();
        out
    }

    #[test]
    fn assembles_partial_and_whole_units() {
        let out = run(
            8,
            &[
                (3, vec![1, 2]),
                (6, vec![3; 12]),
                (24, vec![0; 8]),
                (40, vec![9]),
            ],
        );
        assert_eq!(
            out,
            vec![
                (0, vec![0, 0, 0, 1, 2, 0, 3, 3]),
                (1, vec![3; 8]),
                (2, vec![3, 3, 0, 0, 0, 0, 0, 0]),
                (5, vec![9, 0, 0, 0, 0, 0, 0, 0]),
            ]
        );
    }

    #[test]
    fn guard_refuses_overlap_and_overrun() {
        let mut g = ExtentGuard::new(Format::Raw, 100);
        g.check(0, 10).unwrap();
        assert!(g.check(5, 1).is_err());
        g.check(10, 90).unwrap();
        assert!(g.check(100, 1).is_err());
        g.finish().unwrap();
        assert!(g.finish().is_err());
    }
}
