//! Adapts a forward-only [`std::io::Write`] (a pipe, a compressor, a
//! hasher) to [`WriteAt`] for writers whose output is produced front to
//! back: raw, VHD fixed and VMDK streamOptimized. Gaps are filled with
//! zeros; a write behind the current position is refused, so a writer
//! that needs to seek back (qcow2, VHD dynamic) fails with a clear error
//! instead of producing a wrong file.

use std::io::{self, Write};

use kiln_units::WriteAt;

/// Zero-filling, forward-only [`WriteAt`] over any [`Write`].
///
/// Memory: one 64 KiB zero buffer.
#[derive(Debug)]
pub struct SequentialWriter<W> {
    inner: W,
    pos: u64,
}

static ZEROS: [u8; 65536] = [0; 65536];

impl<W: Write> SequentialWriter<W> {
    /// Wraps `inner`, positioned at byte 0.
    pub fn new(inner: W) -> Self {
        Self { inner, pos: 0 }
    }
    /// Bytes written so far (including zero fill).
    pub fn position(&self) -> u64 {
        self.pos
    }
    /// Flushes and gives back the wrapped writer.
    ///
    /// # Errors
    /// The flush error.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.inner.flush()?;
        Ok(self.inner)
    }
    fn fill_to(&mut self, offset: u64) -> io::Result<()> {
        while self.pos < offset {
            let n = usize::try_from(offset - self.pos)
                .unwrap_or(ZEROS.len())
                .min(ZEROS.len());
            self.inner.write_all(ZEROS.get(..n).unwrap_or(&ZEROS))?;
            self.pos += n as u64;
        }
        Ok(())
    }
}

fn backwards(offset: u64, pos: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("sequential output is at byte {pos}; cannot write back at byte {offset}"),
    )
}

impl<W: Write> WriteAt for SequentialWriter<W> {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if offset < self.pos {
            return Err(backwards(offset, self.pos));
        }
        self.fill_to(offset)?;
        self.inner.write_all(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        if len < self.pos {
            return Err(backwards(len, self.pos));
        }
        self.fill_to(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_gaps_and_refuses_going_back() {
        let mut w = SequentialWriter::new(Vec::new());
        w.write_all_at(b"ab", 1).unwrap();
        w.write_all_at(b"c", 5).unwrap();
        assert!(w.write_all_at(b"x", 2).is_err());
        w.set_len(8).unwrap();
        assert!(w.set_len(7).is_err());
        assert_eq!(w.into_inner().unwrap(), b"\0ab\0\0c\0\0");
    }
}
