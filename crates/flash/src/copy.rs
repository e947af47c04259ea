//! The writing half of a flash: copies each segment in chunks aligned
//! to the chunk size, handles the holes between segments, hashes what it
//! writes when needed and tells the read-back thread what is written.

use std::io::{self, Read};
use std::sync::mpsc::SyncSender;

use kiln_artifact::digest::Sha256Hasher;
use kiln_units::ReadAt;

use crate::error::{io_err, Error, Result};
use crate::options::{HoleMode, ImageSource, Phase, Progress};
use crate::segment::{
    finish_segment, plain_segment, Note, Segment, DEFAULT_BLOCK_BYTES, UNMAPPED_SEGMENT_BYTES,
};
use crate::target::FlashTarget;

/// Fills `buf` from `r` until full or end of stream; returns the count.
pub(crate) fn fill(r: &mut dyn Read, buf: &mut [u8], pos: u64) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let Some(rest) = buf.get_mut(got..) else {
            break;
        };
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err("reading the image stream", pos)(e)),
        }
    }
    Ok(got)
}

/// The writer's state.
pub(crate) struct Copier<'t, 'p, T: FlashTarget + ?Sized> {
    pub(crate) target: &'t mut T,
    pub(crate) buf: Vec<u8>,
    pub(crate) chunk: u64,
    pub(crate) holes: HoleMode,
    pub(crate) progress: &'p mut dyn FnMut(Progress),
    pub(crate) done: u64,
    pub(crate) total: Option<u64>,
    pub(crate) hole_bytes: u64,
    pub(crate) discard_unsupported: bool,
    /// What was written, for the read-back thread (when it runs).
    pub(crate) behind: Option<SyncSender<Note>>,
    /// Whether a random-access image's data is hashed while writing
    /// (not needed when the read-back thread checks the bmap digests).
    pub(crate) hash_random: bool,
    /// Whether a stream's mapped data is hashed while writing: always,
    /// unless the stream is a fan-out of a random-access image that can
    /// be re-read to assign blame ([`crate::flash_many`]) and the
    /// read-back checks the bmap digests.
    pub(crate) hash_stream: bool,
}

impl<T: FlashTarget + ?Sized> Copier<'_, '_, T> {
    fn note(&self, n: Note) -> Result<()> {
        match &self.behind {
            Some(tx) => tx.send(n).map_err(|_| Error::ReadBackStopped),
            None => Ok(()),
        }
    }

    /// End of the chunk starting at `off`: the next multiple of the chunk
    /// size, capped at `end`.
    fn chunk_end(&self, off: u64, end: u64) -> u64 {
        ((off / self.chunk).saturating_add(1))
            .saturating_mul(self.chunk)
            .min(end)
    }

    fn report(&mut self) {
        (self.progress)(Progress {
            phase: Phase::Write,
            done_bytes: self.done,
            total_bytes: self.total,
        });
    }

    fn hole(&mut self, start: u64, end: u64) -> Result<()> {
        if start >= end {
            return Ok(());
        }
        if self.holes == HoleMode::Discard {
            match self.target.discard(start, end - start) {
                Ok(()) => {
                    self.hole_bytes += end - start;
                    return Ok(());
                }
                // A device without zeroing discard (write-zeroes or
                // discard-zeroes-data): the zeros are written instead,
                // for this hole and the rest.
                Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                    self.holes = HoleMode::Zero;
                    self.discard_unsupported = true;
                }
                Err(e) => return Err(io_err("discarding a hole on the target", start)(e)),
            }
        }
        match self.holes {
            HoleMode::Skip => return Ok(()),
            HoleMode::Zero | HoleMode::Discard => {
                self.buf.fill(0);
                let mut off = start;
                while off < end {
                    let e = self.chunk_end(off, end);
                    let zeros = self.buf.get(..(e - off) as usize).unwrap_or_default();
                    self.target
                        .write_all_at(zeros, off)
                        .map_err(io_err("zeroing a hole on the target", off))?;
                    off = e;
                }
            }
        }
        self.hole_bytes += end - start;
        Ok(())
    }

    /// Copies one segment from a random-access source.
    fn copy_random(&mut self, src: &dyn ReadAt, seg: &mut Segment) -> Result<()> {
        let mut h = Sha256Hasher::new();
        let mut off = seg.start;
        while off < seg.end {
            let e = self.chunk_end(off, seg.end);
            let data = self.buf.get_mut(..(e - off) as usize).unwrap_or_default();
            src.read_exact_at(data, off).map_err(|source| {
                if source.kind() == io::ErrorKind::UnexpectedEof {
                    Error::ImageTruncated {
                        expected: seg.end,
                        actual: off,
                    }
                } else {
                    io_err("reading the image", off)(source)
                }
            })?;
            if self.hash_random {
                h.update(data);
            }
            self.target
                .write_all_at(data, off)
                .map_err(io_err("writing the target", off))?;
            self.note(Note::Chunk { start: off, end: e })?;
            self.done += e - off;
            self.report();
            off = e;
        }
        if self.hash_random {
            finish_segment(seg, h)?;
        }
        self.note(Note::End(*seg))
    }

    /// Copies one segment from a stream positioned at `seg.start`; returns
    /// the bytes actually available (less than the segment at the end of
    /// a stream of unknown size).
    fn copy_stream(&mut self, src: &mut dyn Read, seg: &mut Segment, known: bool) -> Result<u64> {
        let mut h = Sha256Hasher::new();
        let mut off = seg.start;
        while off < seg.end {
            let e = self.chunk_end(off, seg.end);
            let data = self.buf.get_mut(..(e - off) as usize).unwrap_or_default();
            let got = fill(src, data, off)?;
            let data = data.get(..got).unwrap_or_default();
            if got > 0 {
                if self.hash_stream {
                    h.update(data);
                }
                self.target
                    .write_all_at(data, off)
                    .map_err(io_err("writing the target", off))?;
                self.note(Note::Chunk {
                    start: off,
                    end: off + got as u64,
                })?;
                self.done += got as u64;
                self.report();
            }
            off += got as u64;
            if (got as u64) < e - (off - got as u64) {
                if known {
                    return Err(Error::ImageTruncated {
                        expected: seg.end,
                        actual: off,
                    });
                }
                seg.end = off;
                seg.last_block = off.saturating_sub(1) / DEFAULT_BLOCK_BYTES;
                break;
            }
        }
        // Not hashing only happens with a bmap, whose digest is checked
        // on the read-back.
        if self.hash_stream || seg.expected.is_none() {
            finish_segment(seg, h)?;
        }
        self.note(Note::End(*seg))?;
        Ok(seg.end - seg.start)
    }

    /// Reads and drops `len` bytes of a stream (a hole), zeroing or
    /// discarding it on the target as configured.
    fn skip_stream(&mut self, src: &mut dyn Read, start: u64, end: u64) -> Result<()> {
        let mut off = start;
        while off < end {
            let e = self.chunk_end(off, end);
            let data = self.buf.get_mut(..(e - off) as usize).unwrap_or_default();
            let got = fill(src, data, off)?;
            if (got as u64) < e - off {
                return Err(Error::ImageTruncated {
                    expected: end,
                    actual: off + got as u64,
                });
            }
            off = e;
        }
        self.hole(start, end)
    }

    /// Writes every segment (and handles the holes) from `image`; returns
    /// the image size. A stream of unknown size gets its segments as it
    /// is read.
    pub(crate) fn copy_all(
        &mut self,
        image: ImageSource<'_>,
        segments: &mut Vec<Segment>,
        image_size: Option<u64>,
    ) -> Result<u64> {
        let mut pos = 0u64;
        match image {
            ImageSource::Random(src) => {
                for seg in segments.iter_mut() {
                    self.hole(pos, seg.start)?;
                    self.copy_random(src, seg)?;
                    pos = seg.end;
                }
                let size = image_size.unwrap_or(pos);
                self.hole(pos, size)?;
                Ok(size)
            }
            ImageSource::Stream(src) => match image_size {
                Some(size) => {
                    for seg in segments.iter_mut() {
                        self.skip_stream(src, pos, seg.start)?;
                        self.copy_stream(src, seg, true)?;
                        pos = seg.end;
                    }
                    self.skip_stream(src, pos, size)?;
                    Ok(size)
                }
                None => {
                    loop {
                        let mut seg =
                            plain_segment(pos, pos.saturating_add(UNMAPPED_SEGMENT_BYTES));
                        let n = self.copy_stream(src, &mut seg, false)?;
                        if n == 0 {
                            break;
                        }
                        pos = seg.end;
                        segments.push(seg);
                    }
                    Ok(pos)
                }
            },
        }
    }
}
