//! Reading the target back: behind the writer on a second thread (flush,
//! drop the cache, re-read, hash on one more thread), or after writing,
//! and telling a bad image from a bad medium when a range differs.
//!
//! # Why `fdatasync` + `POSIX_FADV_DONTNEED`, not `O_DIRECT`
//! A read-back must come from the medium, not from the page cache the
//! writer just filled. kiln writes through the page cache (1 MiB buffered
//! writes measured fastest here, and they need no alignment), so the
//! read-back first flushes what was written (`fdatasync`: the pages are
//! then clean) and drops those clean pages (`posix_fadvise(DONTNEED)`,
//! which the kernel honours for clean, unmapped pages), then re-reads:
//! the re-read misses the cache and goes to the device (for a loop
//! device: to its backing file, which is how the end-to-end test flips a
//! byte "on the medium" and sees verify catch it). `O_DIRECT` would need
//! buffers and offsets aligned to the logical block size (4096 on 4Kn
//! disks) and a second descriptor, is refused by some filesystems a file
//! target may sit on (tmpfs before 6.6), and mixing direct reads with
//! buffered writes on the same range is exactly the cache-coherence case
//! the kernel leaves to the application; the flush-and-drop path works
//! on every target kiln writes, files and block devices alike.

use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};

use kiln_artifact::bmap::Bmap;
use kiln_artifact::digest::Sha256Hasher;
use kiln_units::ReadAt;

use crate::error::{io_err, Error, Result};
use crate::options::{Phase, Progress};
use crate::segment::{bmap_segments, verify_failed, Note, Segment};
use crate::target::{FlashTarget, ReadBack};

/// Bytes written between two read-back batches (flush, drop, re-read).
const BEHIND_BATCH: u64 = 16 << 20;

/// What the read-back thread hands its hashing thread.
enum ToHash {
    Data(Vec<u8>),
    End(Segment),
}

/// The read-back thread: verifies what the writer reports, a batch at a
/// time, behind it: flush, drop the cache, re-read; the hashing and the
/// digest checks run on one more thread, so reading the device overlaps
/// with hashing. Reports progress (bytes verified) on `progress`.
pub(crate) fn verify_behind(
    rb: &dyn ReadBack,
    notes: Receiver<Note>,
    progress: &Sender<u64>,
    chunk: usize,
) -> Result<u64> {
    std::thread::scope(|scope| {
        let (htx, hrx) = sync_channel::<ToHash>(8);
        let (spare_tx, spare) = channel::<Vec<u8>>();
        let hasher = scope.spawn(move || -> Result<()> {
            let mut h = Sha256Hasher::new();
            for m in hrx {
                match m {
                    ToHash::Data(b) => {
                        h.update(&b);
                        // The reader may be gone already; the buffer is
                        // then simply dropped.
                        let _ = spare_tx.send(b);
                    }
                    ToHash::End(seg) => {
                        let actual = std::mem::take(&mut h).finish();
                        if let Some(expected) = seg.expected.or(seg.actual) {
                            if actual != expected {
                                return Err(verify_failed(&seg, expected, actual));
                            }
                        }
                    }
                }
            }
            Ok(())
        });
        let read = read_behind(rb, notes, progress, chunk, &htx, &spare);
        drop(htx);
        let hashed = hasher.join().unwrap_or(Err(Error::ThreadPanicked {
            thread: "read-back hashing",
        }));
        // A mismatch stops the hashing thread, which stops the reader.
        hashed?;
        read
    })
}

/// The channels of the read-back thread.
struct Behind<'a> {
    rb: &'a dyn ReadBack,
    chunk: usize,
    to_hash: &'a SyncSender<ToHash>,
    spare: &'a Receiver<Vec<u8>>,
    verified: u64,
}

impl Behind<'_> {
    /// Flushes, drops and re-reads one batch of notes, handing the data
    /// to the hashing thread.
    fn batch(&mut self, pending: &mut Vec<Note>) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let rb = self.rb;
        rb.sync_written().map_err(io_err("syncing the target", 0))?;
        // Drop the whole batch from the cache, then ask for it back at
        // once, so the device reads run ahead of the hashing.
        for note in pending.iter() {
            if let Note::Chunk { start, end } = *note {
                rb.evict(start, end - start)
                    .map_err(io_err("dropping the target's cache", start))?;
            }
        }
        for note in pending.iter() {
            if let Note::Chunk { start, end } = *note {
                // Only a hint: a failure changes nothing but speed.
                let _ = rb.prefetch(start, end - start);
            }
        }
        for note in pending.drain(..) {
            match note {
                Note::Chunk { start, end } => self.reread(start, end)?,
                Note::End(seg) => self
                    .to_hash
                    .send(ToHash::End(seg))
                    .map_err(|_| Error::ReadBackStopped)?,
            }
        }
        Ok(())
    }

    /// Reads `[start, end)` back in chunks for the hashing thread.
    fn reread(&mut self, start: u64, end: u64) -> Result<()> {
        let mut off = start;
        while off < end {
            let n = (end - off).min(self.chunk as u64) as usize;
            let mut b = self.spare.try_recv().unwrap_or_default();
            b.resize(n, 0);
            self.rb
                .read_exact_at(&mut b, off)
                .map_err(io_err("reading back the target", off))?;
            self.to_hash
                .send(ToHash::Data(b))
                .map_err(|_| Error::ReadBackStopped)?;
            off += n as u64;
        }
        self.verified += end - start;
        Ok(())
    }
}

/// The reading half of [`verify_behind`].
fn read_behind(
    rb: &dyn ReadBack,
    notes: Receiver<Note>,
    progress: &Sender<u64>,
    chunk: usize,
    to_hash: &SyncSender<ToHash>,
    spare: &Receiver<Vec<u8>>,
) -> Result<u64> {
    let mut behind = Behind {
        rb,
        chunk,
        to_hash,
        spare,
        verified: 0,
    };
    let mut pending: Vec<Note> = Vec::new();
    let mut pending_bytes = 0u64;
    for note in notes {
        if let Note::Chunk { start, end } = note {
            pending_bytes += end - start;
        }
        pending.push(note);
        if pending_bytes >= BEHIND_BATCH {
            behind.batch(&mut pending)?;
            // Progress is only a report: a writer that stopped listening
            // changes nothing.
            let _ = progress.send(behind.verified);
            pending_bytes = 0;
        }
    }
    behind.batch(&mut pending)?;
    let _ = progress.send(behind.verified);
    Ok(behind.verified)
}

/// A range that failed verification after it was written unhashed: if
/// the image itself does not match the bmap there, the image is to blame.
pub(crate) fn blame(random: Option<&dyn ReadAt>, e: Error) -> Error {
    let (
        Some(src),
        Error::VerifyFailed {
            first_block,
            last_block,
            start_byte,
            end_byte,
            expected,
            ..
        },
    ) = (random, &e)
    else {
        return e;
    };
    let mut h = Sha256Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = *start_byte;
    while off < *end_byte {
        let n = (*end_byte - off).min(buf.len() as u64) as usize;
        let data = buf.get_mut(..n).unwrap_or_default();
        if src.read_exact_at(data, off).is_err() {
            return e;
        }
        h.update(data);
        off += n as u64;
    }
    let actual = h.finish();
    if actual == *expected {
        e
    } else {
        Error::SourceMismatch {
            first_block: *first_block,
            last_block: *last_block,
            expected: *expected,
            actual,
        }
    }
}

/// Re-hashes every segment from the target and compares it with the
/// expected digest (bmap checksum, or the digest computed while writing).
pub(crate) fn verify_segments<T: FlashTarget + ?Sized>(
    target: &T,
    segments: &[Segment],
    buf: &mut [u8],
    total: u64,
    progress: &mut dyn FnMut(Progress),
) -> Result<u64> {
    let chunk = (buf.len() as u64).max(1);
    let mut verified = 0u64;
    for seg in segments {
        target
            .drop_cache(seg.start, seg.end - seg.start)
            .map_err(io_err("dropping the target's cache", seg.start))?;
        let mut h = Sha256Hasher::new();
        let mut off = seg.start;
        while off < seg.end {
            let e = ((off / chunk).saturating_add(1).saturating_mul(chunk)).min(seg.end);
            let data = buf.get_mut(..(e - off) as usize).unwrap_or_default();
            target
                .read_exact_at(data, off)
                .map_err(io_err("reading back the target", off))?;
            h.update(data);
            verified += e - off;
            progress(Progress {
                phase: Phase::Verify,
                done_bytes: verified,
                total_bytes: Some(total),
            });
            off = e;
        }
        let actual = h.finish();
        let expected = seg.expected.or(seg.actual).unwrap_or(actual);
        if actual != expected {
            return Err(verify_failed(seg, expected, actual));
        }
    }
    Ok(verified)
}

/// Verifies a target against a bmap without writing: every mapped range
/// is read back (page cache dropped first) and hashed. Returns the bytes
/// verified. Use after a flash, or to check a medium flashed earlier.
/// After a GPT relocation the range holding LBA 1 differs on purpose.
///
/// # Errors
/// [`Error::VerifyFailed`] naming the first range that differs,
/// [`Error::Io`].
pub fn verify_target<T: FlashTarget + ?Sized>(
    target: &T,
    bmap: &Bmap,
    progress: &mut dyn FnMut(Progress),
) -> Result<u64> {
    let segments = bmap_segments(bmap);
    let mut buf = vec![0u8; 1 << 20];
    verify_segments(target, &segments, &mut buf, bmap.mapped_bytes(), progress)
}
