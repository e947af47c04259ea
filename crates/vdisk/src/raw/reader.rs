use std::io;

use kiln_units::ReadAt;

use crate::error::{Error, Format, Result};
use crate::extent::Extent;
use crate::source::{DataRegions, VirtualDisk};

/// A raw image opened for reading; holes come from the source's
/// [`DataRegions`].
#[derive(Debug)]
pub struct RawReader<R> {
    src: R,
    size: u64,
}

impl<R: DataRegions> RawReader<R> {
    /// Opens `src` as a raw image of its full size.
    ///
    /// # Errors
    /// The error of the size query.
    pub fn new(src: R) -> io::Result<Self> {
        let size = src.size()?;
        Ok(Self { src, size })
    }
    /// Gives back the source.
    pub fn into_inner(self) -> R {
        self.src
    }
}

impl<R: DataRegions> ReadAt for RawReader<R> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.src.read_exact_at(buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.size)
    }
}

impl<R: DataRegions> VirtualDisk for RawReader<R> {
    fn format(&self) -> Format {
        Format::Raw
    }
    fn virtual_size(&self) -> u64 {
        self.size
    }
    fn next_allocated(&self, from: u64) -> Result<Option<Extent>> {
        self.src.next_data(from).map_err(Error::io(from))
    }
    fn read_virtual(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        crate::source::check_range(offset, buf.len(), self.size)?;
        self.src
            .read_exact_at(buf, offset)
            .map_err(Error::io(offset))
    }
}
