use kiln_units::WriteAt;

use crate::error::{Error, Format, Result};
use crate::extent::{DiskWriter, ExtentGuard, WriteSummary};

/// Writes a sparse raw image to any [`WriteAt`] target.
///
/// Data is written as given (zero bytes inside an extent are stored; the
/// pumps never send all-zero blocks); everything not sent stays a hole.
/// Memory: nothing beyond the caller's buffers.
#[derive(Debug)]
pub struct RawWriter<W> {
    out: W,
    guard: ExtentGuard,
    virtual_size: u64,
    written: u64,
}

impl<W: WriteAt> RawWriter<W> {
    /// A writer for a disk of `virtual_size` bytes. The target should be
    /// empty (or be truncated by the caller); `finish` sets its length.
    pub fn new(out: W, virtual_size: u64) -> Self {
        Self {
            out,
            guard: ExtentGuard::new(Format::Raw, virtual_size),
            virtual_size,
            written: 0,
        }
    }
    /// Gives back the target.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: WriteAt> DiskWriter for RawWriter<W> {
    fn format(&self) -> Format {
        Format::Raw
    }
    fn virtual_size(&self) -> u64 {
        self.virtual_size
    }
    fn write_extent(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.guard.check(offset, data.len())?;
        self.out
            .write_all_at(data, offset)
            .map_err(Error::io(offset))?;
        self.written += data.len() as u64;
        Ok(())
    }
    fn finish(&mut self) -> Result<WriteSummary> {
        self.guard.finish()?;
        self.out
            .set_len(self.virtual_size)
            .map_err(Error::io(self.virtual_size))?;
        Ok(WriteSummary {
            virtual_size: self.virtual_size,
            file_size: self.virtual_size,
            allocated_bytes: self.written,
        })
    }
}
