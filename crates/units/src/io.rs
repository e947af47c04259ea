//! Positional I/O: read and write at an absolute byte offset without a
//! shared cursor, so several writers can fill regions of one image.

use std::fs::File;
use std::io;

/// Reads at an absolute byte offset.
pub trait ReadAt {
    /// Fills `buf` from byte `offset`; a short read past the end is an
    /// [`io::ErrorKind::UnexpectedEof`] error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// The total size in bytes.
    fn size(&self) -> io::Result<u64>;
}

/// Writes at an absolute byte offset.
pub trait WriteAt {
    /// Writes all of `buf` at byte `offset`, growing the target if needed.
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes sure everything up to `len` bytes is addressable (a hole
    /// where nothing was written).
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

impl WriteAt for File {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, buf, offset)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.as_slice().read_exact_at(buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| eof())?;
        let end = start.checked_add(buf.len()).ok_or_else(eof)?;
        let src = self.get(start..end).ok_or_else(eof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

impl WriteAt for Vec<u8> {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| too_big())?;
        let end = start.checked_add(buf.len()).ok_or_else(too_big)?;
        if self.len() < end {
            self.resize(end, 0);
        }
        self[start..end].copy_from_slice(buf);
        Ok(())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| too_big())?;
        self.resize(len, 0);
        Ok(())
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &mut T {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }
}

impl<T: WriteAt + ?Sized> WriteAt for &mut T {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        (**self).write_all_at(buf, offset)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        (**self).set_len(len)
    }
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end")
}

fn too_big() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "offset does not fit in memory")
}

/// A window `[start, start + len)` of a larger target: offsets are
/// relative to `start`, and access past `len` is refused, so a partition
/// writer can never touch its neighbours.
#[derive(Debug)]
pub struct SubRegion<T> {
    inner: T,
    start: u64,
    len: u64,
}

impl<T> SubRegion<T> {
    /// The window of `inner` starting at byte `start`, `len` bytes long.
    pub fn new(inner: T, start: u64, len: u64) -> Self {
        Self { inner, start, len }
    }
    /// The window length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The wrapped target.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }
    /// Gives back the wrapped target.
    pub fn into_inner(self) -> T {
        self.inner
    }
    fn map(&self, offset: u64, n: usize) -> io::Result<u64> {
        let end = offset.checked_add(n as u64);
        match end {
            Some(end) if end <= self.len => Ok(self.start + offset),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "access at {offset}+{n} outside the {}-byte region at {}",
                    self.len, self.start
                ),
            )),
        }
    }
}

impl<T: ReadAt> ReadAt for SubRegion<T> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let at = self.map(offset, buf.len())?;
        self.inner.read_exact_at(buf, at)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.len)
    }
}

impl<T: WriteAt> WriteAt for SubRegion<T> {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let at = self.map(offset, buf.len())?;
        self.inner.write_all_at(buf, at)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        if len > self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("region is {} bytes, cannot grow to {len}", self.len),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subregion_bounds() {
        let mut v = vec![0u8; 16];
        {
            let mut r = SubRegion::new(&mut v, 4, 8);
            r.write_all_at(&[1, 2], 0).unwrap();
            r.write_all_at(&[9], 7).unwrap();
            assert!(r.write_all_at(&[9, 9], 7).is_err());
            let mut b = [0u8; 2];
            r.read_exact_at(&mut b, 0).unwrap();
            assert_eq!(b, [1, 2]);
        }
        assert_eq!(v[4..6], [1, 2]);
        assert_eq!(v[11], 9);
        assert_eq!(v[12], 0);
    }
}
