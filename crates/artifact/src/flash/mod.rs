//! The flash engine behind `kiln flash IMAGE TARGET`: bmap-aware copy with
//! large aligned writes, fsync, read-back verification of every mapped
//! range against its sha256, progress reporting, and moving the backup GPT
//! to the end of a larger target.
//!
//! The CLI opens the image (raw, compressed, qcow2, ...) and the target
//! and gathers the facts for [`safety::check_target`]; this module only does
//! I/O on what it is given.
//!
//! # Algorithm
//!
//! 1. Plan the ranges: the bmap's mapped ranges (with their sha256), or,
//!    without a bmap, the whole image cut into 64 MiB segments whose digests
//!    are computed while writing.
//! 2. Copy each range in chunks of `chunk_bytes` whose ends are aligned to
//!    multiples of `chunk_bytes` in the image (so writes are large and
//!    aligned; bmap ranges start on 4 KiB blocks). Holes between ranges are
//!    skipped, zeroed or discarded ([`HoleMode`]). A stream source is read
//!    in order, holes included (they are read and dropped).
//! 3. Verify: every range is read back from the target with its page
//!    cache dropped first (`posix_fadvise(DONTNEED)`, so the read hits the
//!    device) and re-hashed ([`Error::VerifyFailed`] names the first range
//!    that differs). When the target offers a second handle
//!    ([`FlashTarget::read_back`]: files and block devices), this runs on a
//!    second thread *behind* the writer: every 16 MiB written it flushes
//!    (`fdatasync`), drops and re-reads what was written, so writing,
//!    writeback and read-back overlap. Then the image's own bytes need not
//!    be hashed while writing: a range that fails verification is re-read
//!    from a random-access image to tell a bad image
//!    ([`Error::SourceMismatch`]) from a bad medium. Otherwise (a stream,
//!    no bmap, or no second handle) image data is hashed while writing and
//!    checked against the bmap, and the read-back runs after the `fsync`.
//! 4. If the target is larger than the image and holds a GPT, relocate the
//!    backup GPT to the target's end ([`crate::gpt`]) and `fsync` again.

pub mod mountinfo;
pub mod safety;

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::num::NonZeroU64;
use std::os::unix::fs::FileTypeExt;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};

use kiln_units::{ReadAt, SectorSize, WriteAt};

use crate::bmap::Bmap;
use crate::digest::{Sha256Digest, Sha256Hasher};
use crate::error::{io_err, Error, Result};
use crate::gpt::{relocate_backup_gpt, GptRelocation};

/// Segment length used without a bmap, in bytes: the unit a verify failure
/// is reported in.
pub const UNMAPPED_SEGMENT_BYTES: u64 = 64 << 20;
/// Block size used to name segments without a bmap, in bytes.
pub const DEFAULT_BLOCK_BYTES: u64 = 4096;

/// A device or file that can be flashed.
pub trait FlashTarget: ReadAt + WriteAt {
    /// Flushes written data to stable storage (`fsync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Makes `[offset, offset+len)` read as zeros without writing data
    /// (punch a hole in a file; zero-out/discard on a block device).
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()>;
    /// Drops cached pages of the range so the next read comes from the
    /// device.
    fn drop_cache(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Capacity in bytes (device size, or current file length).
    fn capacity(&self) -> io::Result<u64>;
    /// Grows a file target to at least `len` bytes; devices are left alone.
    fn grow_to(&mut self, len: u64) -> io::Result<()>;
    /// A second handle on the same target for a thread that flushes and
    /// reads back while writing goes on; `None` (the default) verifies
    /// after writing instead.
    fn read_back(&self) -> Option<Box<dyn ReadBack + Send>> {
        None
    }
}

/// The read-back side of a [`FlashTarget`] (see [`FlashTarget::read_back`]).
pub trait ReadBack: ReadAt {
    /// Waits until everything written so far is on the device (`fdatasync`).
    fn sync_written(&self) -> io::Result<()>;
    /// Drops cached pages of the range, as [`FlashTarget::drop_cache`].
    fn evict(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Hints that `[offset, offset+len)` will be read next (starts the
    /// device reads early); a no-op by default.
    fn prefetch(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
}

fn fadvise(f: &File, offset: u64, len: u64, advice: rustix::fs::Advice) -> io::Result<()> {
    rustix::fs::fadvise(f, offset, NonZeroU64::new(len), advice).map_err(io::Error::from)
}

impl ReadBack for File {
    fn sync_written(&self) -> io::Result<()> {
        self.sync_data()
    }
    fn evict(&self, offset: u64, len: u64) -> io::Result<()> {
        fadvise(self, offset, len, rustix::fs::Advice::DontNeed)
    }
    fn prefetch(&self, offset: u64, len: u64) -> io::Result<()> {
        fadvise(self, offset, len, rustix::fs::Advice::WillNeed)
    }
}

impl FlashTarget for File {
    fn sync_data(&mut self) -> io::Result<()> {
        self.sync_all()
    }
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        use rustix::fs::{fallocate, FallocateFlags};
        // On block devices Linux turns this into a zero-out/discard that
        // guarantees zeros; on files it punches a hole.
        fallocate(
            &*self,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            offset,
            len,
        )
        .map_err(io::Error::from)
    }
    fn drop_cache(&self, offset: u64, len: u64) -> io::Result<()> {
        fadvise(self, offset, len, rustix::fs::Advice::DontNeed)
    }
    fn capacity(&self) -> io::Result<u64> {
        let md = self.metadata()?;
        if md.file_type().is_block_device() {
            let mut f = self;
            f.seek(SeekFrom::End(0))
        } else {
            Ok(md.len())
        }
    }
    fn grow_to(&mut self, len: u64) -> io::Result<()> {
        let md = self.metadata()?;
        if md.is_file() && md.len() < len {
            self.set_len(len)?;
        }
        Ok(())
    }
    fn read_back(&self) -> Option<Box<dyn ReadBack + Send>> {
        self.try_clone()
            .ok()
            .map(|f| Box::new(f) as Box<dyn ReadBack + Send>)
    }
}

impl FlashTarget for Vec<u8> {
    fn sync_data(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let zeros = vec![0u8; usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?];
        self.write_all_at(&zeros, offset)
    }
    fn drop_cache(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
    fn capacity(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
    fn grow_to(&mut self, len: u64) -> io::Result<()> {
        if (self.len() as u64) < len {
            WriteAt::set_len(self, len)?;
        }
        Ok(())
    }
}

/// Where the image bytes come from.
pub enum ImageSource<'a> {
    /// Random access (raw file, a qcow2/vmdk/vhd reader, ...).
    Random(&'a dyn ReadAt),
    /// A sequential stream read once in order (a decompressor).
    Stream(&'a mut dyn Read),
}

impl std::fmt::Debug for ImageSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Random(_) => "ImageSource::Random",
            Self::Stream(_) => "ImageSource::Stream",
        })
    }
}

/// What to do with the holes (unmapped ranges) of the image on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HoleMode {
    /// Leave them as they are (fastest; filesystems never read them).
    #[default]
    Skip,
    /// Write zeros.
    Zero,
    /// Discard / punch them ([`FlashTarget::discard`]).
    Discard,
}

/// Phase a progress report belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Writing mapped data.
    Write,
    /// Reading back and verifying.
    Verify,
}

/// A progress report: the CLI derives speed and ETA from successive
/// reports and its own clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The phase.
    pub phase: Phase,
    /// Bytes of mapped data done in this phase.
    pub done_bytes: u64,
    /// Total mapped bytes of this phase (unknown for a stream without a
    /// bmap until its end).
    pub total_bytes: Option<u64>,
}

/// Parameters of [`flash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlashOptions {
    holes: HoleMode,
    verify: bool,
    relocate_gpt: bool,
    sector_size: SectorSize,
    chunk_bytes: usize,
    image_size: Option<u64>,
}

impl Default for FlashOptions {
    fn default() -> Self {
        Self {
            holes: HoleMode::Skip,
            verify: true,
            relocate_gpt: true,
            sector_size: SectorSize::S512,
            // 1 MiB, as bmaptool: on Linux 6.x page caches with large
            // folios, 2 and 4 MiB buffered writes measured several times
            // slower than 1 MiB ones (bench/e2e.sh).
            chunk_bytes: 1 << 20,
            image_size: None,
        }
    }
}

impl FlashOptions {
    /// Defaults: skip holes, verify, relocate the GPT, 512-byte sectors,
    /// 1 MiB chunks.
    pub fn new() -> Self {
        Self::default()
    }
    /// What to do with holes.
    pub fn holes(mut self, mode: HoleMode) -> Self {
        self.holes = mode;
        self
    }
    /// Whether to read back and verify (default true).
    pub fn verify(mut self, on: bool) -> Self {
        self.verify = on;
        self
    }
    /// Whether to move the backup GPT to the end of a larger target
    /// (default true).
    pub fn relocate_gpt(mut self, on: bool) -> Self {
        self.relocate_gpt = on;
        self
    }
    /// Logical sector size of the image's partition table (tried first;
    /// the other of 512/4096 is tried when no GPT is found).
    pub fn sector_size(mut self, s: SectorSize) -> Self {
        self.sector_size = s;
        self
    }
    /// Write chunk size in bytes (a multiple of 4096, at least 64 KiB;
    /// default 1 MiB). Memory use is a few times this.
    pub fn chunk_bytes(mut self, n: usize) -> Self {
        self.chunk_bytes = n;
        self
    }
    /// Image size in bytes, when neither the bmap nor the source knows it.
    pub fn image_size(mut self, n: u64) -> Self {
        self.image_size = Some(n);
        self
    }
}

/// What [`flash`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashReport {
    /// Image size in bytes.
    pub image_bytes: u64,
    /// Mapped bytes written.
    pub written_bytes: u64,
    /// Hole bytes zeroed or discarded (0 with [`HoleMode::Skip`]).
    pub hole_bytes: u64,
    /// [`HoleMode::Discard`] was asked but the target cannot discard with
    /// guaranteed zeros (`EOPNOTSUPP`), so the holes were written with
    /// zeros instead.
    pub discard_unsupported: bool,
    /// Bytes read back and verified.
    pub verified_bytes: u64,
    /// Number of ranges written (bmap ranges or 64 MiB segments).
    pub ranges: usize,
    /// The GPT relocation, if one was done.
    pub gpt: Option<GptRelocation>,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    start: u64,
    end: u64,
    first_block: u64,
    last_block: u64,
    expected: Option<Sha256Digest>,
    actual: Option<Sha256Digest>,
}

fn segments_for_size(size: u64) -> Vec<Segment> {
    let mut v = Vec::new();
    let mut s = 0;
    while s < size {
        let e = (s + UNMAPPED_SEGMENT_BYTES).min(size);
        v.push(plain_segment(s, e));
        s = e;
    }
    v
}

fn plain_segment(start: u64, end: u64) -> Segment {
    Segment {
        start,
        end,
        first_block: start / DEFAULT_BLOCK_BYTES,
        last_block: end.saturating_sub(1) / DEFAULT_BLOCK_BYTES,
        expected: None,
        actual: None,
    }
}

/// Fills `buf` from `r` until full or end of stream; returns the count.
fn fill(r: &mut dyn Read, buf: &mut [u8], pos: u64) -> Result<usize> {
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

struct Copier<'t, 'p, T: FlashTarget + ?Sized> {
    target: &'t mut T,
    buf: Vec<u8>,
    chunk: u64,
    holes: HoleMode,
    progress: &'p mut dyn FnMut(Progress),
    done: u64,
    total: Option<u64>,
    hole_bytes: u64,
    discard_unsupported: bool,
    /// What was written, for the read-back thread (when it runs).
    behind: Option<SyncSender<Note>>,
    /// Whether a random-access image's data is hashed while writing
    /// (not needed when the read-back thread checks the bmap digests).
    hash_random: bool,
}

/// A message to the read-back thread.
#[derive(Debug, Clone, Copy)]
enum Note {
    /// `[start, end)` of the current segment is written.
    Chunk { start: u64, end: u64 },
    /// The segment is complete (its expected digest, or the image's own
    /// digest computed while writing, is inside).
    End(Segment),
}

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
fn verify_behind(
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
        let hashed = hasher.join().unwrap_or(Err(Error::InvalidRequest {
            reason: "the read-back hashing thread panicked",
        }));
        // A mismatch stops the hashing thread, which stops the reader.
        hashed?;
        read
    })
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
    let stopped = || Error::InvalidRequest {
        reason: BEHIND_STOPPED,
    };
    let mut pending: Vec<Note> = Vec::new();
    let mut pending_bytes = 0u64;
    let mut verified = 0u64;
    let mut batch = |pending: &mut Vec<Note>| -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
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
                Note::Chunk { start, end } => {
                    let mut off = start;
                    while off < end {
                        let n = (end - off).min(chunk as u64) as usize;
                        let mut b = spare.try_recv().unwrap_or_default();
                        b.resize(n, 0);
                        rb.read_exact_at(&mut b, off)
                            .map_err(io_err("reading back the target", off))?;
                        to_hash.send(ToHash::Data(b)).map_err(|_| stopped())?;
                        off += n as u64;
                    }
                    verified += end - start;
                }
                Note::End(seg) => to_hash.send(ToHash::End(seg)).map_err(|_| stopped())?,
            }
        }
        let _ = progress.send(verified);
        Ok(())
    };
    for note in notes {
        if let Note::Chunk { start, end } = note {
            pending_bytes += end - start;
        }
        pending.push(note);
        if pending_bytes >= BEHIND_BATCH {
            batch(&mut pending)?;
            pending_bytes = 0;
        }
    }
    batch(&mut pending)?;
    Ok(verified)
}

fn verify_failed(seg: &Segment, expected: Sha256Digest, actual: Sha256Digest) -> Error {
    Error::VerifyFailed {
        first_block: seg.first_block,
        last_block: seg.last_block,
        start_byte: seg.start,
        end_byte: seg.end,
        expected,
        actual,
    }
}

/// The writer stopped because the read-back thread did (its error wins).
const BEHIND_STOPPED: &str = "the read-back thread stopped";

impl<T: FlashTarget + ?Sized> Copier<'_, '_, T> {
    fn note(&self, n: Note) -> Result<()> {
        match &self.behind {
            Some(tx) => tx.send(n).map_err(|_| Error::InvalidRequest {
                reason: BEHIND_STOPPED,
            }),
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
            (self.progress)(Progress {
                phase: Phase::Write,
                done_bytes: self.done,
                total_bytes: self.total,
            });
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
                h.update(data);
                self.target
                    .write_all_at(data, off)
                    .map_err(io_err("writing the target", off))?;
                self.note(Note::Chunk {
                    start: off,
                    end: off + got as u64,
                })?;
                self.done += got as u64;
                (self.progress)(Progress {
                    phase: Phase::Write,
                    done_bytes: self.done,
                    total_bytes: self.total,
                });
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
        finish_segment(seg, h)?;
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
}

fn finish_segment(seg: &mut Segment, h: Sha256Hasher) -> Result<()> {
    let actual = h.finish();
    if let Some(expected) = seg.expected {
        if expected != actual {
            return Err(Error::SourceMismatch {
                first_block: seg.first_block,
                last_block: seg.last_block,
                expected,
                actual,
            });
        }
    }
    seg.actual = Some(actual);
    Ok(())
}

/// Flashes `image` onto `target`, then verifies and relocates the GPT as
/// configured. `progress` is called after every chunk.
///
/// Safety checks are the caller's job: call [`safety::check_target`]
/// first.
///
/// # Errors
/// [`Error::InvalidRequest`] for a bad chunk size or an unknown image
/// size, [`Error::BmapInvalid`] if the bmap's image size differs from the
/// image's, [`Error::SourceMismatch`] if image data does not match the bmap,
/// [`Error::ImageTruncated`], [`Error::VerifyFailed`] naming the first range
/// whose read-back differs, [`Error::Gpt`], [`Error::Io`].
pub fn flash<T: FlashTarget + ?Sized>(
    image: ImageSource<'_>,
    bmap: Option<&Bmap>,
    target: &mut T,
    opts: &FlashOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<FlashReport> {
    if opts.chunk_bytes < (64 << 10) || opts.chunk_bytes % 4096 != 0 {
        return Err(Error::InvalidRequest {
            reason: "chunk size must be a multiple of 4096 and at least 64 KiB",
        });
    }
    let source_size = match &image {
        ImageSource::Random(r) => Some(r.size().map_err(io_err("sizing the image", 0))?),
        ImageSource::Stream(_) => None,
    };
    let image_size = opts
        .image_size
        .or(bmap.map(Bmap::image_size))
        .or(source_size);
    if let (Some(b), Some(s)) = (bmap, opts.image_size.or(source_size)) {
        if b.image_size() != s {
            return Err(Error::BmapInvalid {
                element: "ImageSize",
                reason: "does not match the size of the image",
            });
        }
    }
    let mut segments: Vec<Segment> = match (bmap, image_size) {
        (Some(b), _) => b
            .ranges()
            .iter()
            .map(|r| {
                let (start, end) = b.byte_range(r.blocks);
                Segment {
                    start,
                    end,
                    first_block: r.blocks.first,
                    last_block: r.blocks.last,
                    expected: Some(r.sha256),
                    actual: None,
                }
            })
            .collect(),
        (None, Some(size)) => segments_for_size(size),
        (None, None) => Vec::new(),
    };
    let total = image_size.map(|_| segments.iter().map(|s| s.end - s.start).sum::<u64>());
    let random = match &image {
        ImageSource::Random(r) => Some(*r),
        ImageSource::Stream(_) => None,
    };
    let behind = if opts.verify {
        target.read_back()
    } else {
        None
    };
    // With the bmap's digests checked on the read-back, a random-access
    // image (which can be re-read to assign blame) need not be hashed too.
    let hash_random = behind.is_none() || bmap.is_none();
    let chunk = opts.chunk_bytes;
    let (copied, verified_behind) = std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<Note>(256);
        let (ptx, prx) = channel::<u64>();
        let reader = behind.map(|rb| scope.spawn(move || verify_behind(&*rb, rx, &ptx, chunk)));
        let mut copier = Copier {
            target: &mut *target,
            buf: vec![0u8; chunk],
            chunk: chunk as u64,
            holes: opts.holes,
            progress: &mut *progress,
            done: 0,
            total,
            hole_bytes: 0,
            discard_unsupported: false,
            behind: reader.is_some().then_some(tx),
            hash_random,
        };
        let copied = copy_all(&mut copier, image, &mut segments, image_size).map(|size| {
            (
                size,
                copier.done,
                (copier.hole_bytes, copier.discard_unsupported),
            )
        });
        drop(copier);
        let verified = reader.map(|r| {
            if copied.is_ok() {
                for v in prx {
                    progress(Progress {
                        phase: Phase::Verify,
                        done_bytes: v,
                        total_bytes: total,
                    });
                }
            }
            r.join().unwrap_or(Err(Error::InvalidRequest {
                reason: "the read-back thread panicked",
            }))
        });
        (copied, verified)
    });
    let ((final_size, written, (hole_bytes, discard_unsupported)), verified_behind) =
        match (copied, verified_behind) {
            // The read-back thread's own error explains why the writer stopped.
            (
                Err(Error::InvalidRequest {
                    reason: BEHIND_STOPPED,
                }),
                Some(Err(e)),
            ) => return Err(blame(random, e)),
            (Err(e), _) => return Err(e),
            (Ok(_), Some(Err(e))) => return Err(blame(random, e)),
            (Ok(c), Some(Ok(v))) => (c, Some(v)),
            (Ok(c), None) => (c, None),
        };
    target
        .grow_to(final_size)
        .map_err(io_err("growing the target file", final_size))?;
    target
        .sync_data()
        .map_err(io_err("syncing the target", 0))?;

    let verified = match verified_behind {
        Some(v) => v,
        None if opts.verify => {
            let mut buf = vec![0u8; chunk];
            verify_segments(&*target, &segments, &mut buf, written, progress)?
        }
        None => 0,
    };

    let mut gpt = None;
    if opts.relocate_gpt {
        let cap = target.capacity().map_err(io_err("sizing the target", 0))?;
        if cap > final_size {
            // The configured sector size first; a GPT written for the
            // other common size (512 / 4096) is found too, since its
            // header can only be at LBA 1 of its own sector size.
            let other = if opts.sector_size == SectorSize::S512 {
                SectorSize::S4096
            } else {
                SectorSize::S512
            };
            for ss in [opts.sector_size, other] {
                gpt = relocate_backup_gpt(target, ss, cap)?;
                if gpt.is_some() {
                    break;
                }
            }
            if gpt.is_some() {
                target
                    .sync_data()
                    .map_err(io_err("syncing the target", 0))?;
            }
        }
    }
    Ok(FlashReport {
        image_bytes: final_size,
        written_bytes: written,
        hole_bytes,
        discard_unsupported,
        verified_bytes: verified,
        ranges: segments.len(),
        gpt,
    })
}

/// Writes every segment (and handles the holes) from `image`; returns the
/// image size.
fn copy_all<T: FlashTarget + ?Sized>(
    copier: &mut Copier<'_, '_, T>,
    image: ImageSource<'_>,
    segments: &mut Vec<Segment>,
    image_size: Option<u64>,
) -> Result<u64> {
    let mut pos = 0u64;
    match image {
        ImageSource::Random(src) => {
            for seg in segments.iter_mut() {
                copier.hole(pos, seg.start)?;
                copier.copy_random(src, seg)?;
                pos = seg.end;
            }
            let size = image_size.unwrap_or(pos);
            copier.hole(pos, size)?;
            Ok(size)
        }
        ImageSource::Stream(src) => match image_size {
            Some(size) => {
                for seg in segments.iter_mut() {
                    copier.skip_stream(src, pos, seg.start)?;
                    copier.copy_stream(src, seg, true)?;
                    pos = seg.end;
                }
                copier.skip_stream(src, pos, size)?;
                Ok(size)
            }
            None => {
                loop {
                    let mut seg = plain_segment(pos, pos.saturating_add(UNMAPPED_SEGMENT_BYTES));
                    let n = copier.copy_stream(src, &mut seg, false)?;
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

/// A range that failed verification after it was written unhashed: if
/// the image itself does not match the bmap there, the image is to blame.
fn blame(random: Option<&dyn ReadAt>, e: Error) -> Error {
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
fn verify_segments<T: FlashTarget + ?Sized>(
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
    let segments: Vec<Segment> = bmap
        .ranges()
        .iter()
        .map(|r| {
            let (start, end) = bmap.byte_range(r.blocks);
            Segment {
                start,
                end,
                first_block: r.blocks.first,
                last_block: r.blocks.last,
                expected: Some(r.sha256),
                actual: None,
            }
        })
        .collect();
    let mut buf = vec![0u8; 1 << 20];
    verify_segments(target, &segments, &mut buf, bmap.mapped_bytes(), progress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bmap::nonzero_ranges;

    fn image() -> Vec<u8> {
        let mut v = vec![0u8; 3 * 1024 * 1024 + 1000];
        for (i, b) in v.iter_mut().enumerate().take(10_000) {
            *b = (i % 251) as u8;
        }
        v[2 * 1024 * 1024 + 5] = 9;
        let n = v.len();
        v[n - 1] = 7;
        v
    }

    #[test]
    fn random_and_stream_with_and_without_bmap() {
        let img = image();
        let ranges = nonzero_ranges(&img, 4096).unwrap();
        let bmap = Bmap::from_image(&img, img.len() as u64, 4096, &ranges).unwrap();
        let opts = FlashOptions::new().chunk_bytes(64 << 10);
        for with_bmap in [false, true] {
            let b = with_bmap.then_some(&bmap);
            let mut t = Vec::new();
            let mut calls = 0;
            let r = flash(ImageSource::Random(&img), b, &mut t, &opts, &mut |_| {
                calls += 1
            })
            .unwrap();
            assert_eq!(t, img);
            assert!(calls > 0);
            assert_eq!(r.verified_bytes, r.written_bytes);
            let mut t2 = Vec::new();
            let mut s = img.as_slice();
            flash(ImageSource::Stream(&mut s), b, &mut t2, &opts, &mut |_| {}).unwrap();
            assert_eq!(t2, img, "stream, bmap={with_bmap}");
        }
    }

    /// A target whose discard is not supported (as `EOPNOTSUPP` from a
    /// device without write-zeroes).
    struct NoDiscard(Vec<u8>);

    impl ReadAt for NoDiscard {
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            self.0.read_exact_at(buf, offset)
        }
        fn size(&self) -> io::Result<u64> {
            ReadAt::size(&self.0)
        }
    }

    impl WriteAt for NoDiscard {
        fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
            self.0.write_all_at(buf, offset)
        }
        fn set_len(&mut self, len: u64) -> io::Result<()> {
            WriteAt::set_len(&mut self.0, len)
        }
    }

    impl FlashTarget for NoDiscard {
        fn sync_data(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn discard(&mut self, _offset: u64, _len: u64) -> io::Result<()> {
            Err(io::ErrorKind::Unsupported.into())
        }
        fn drop_cache(&self, _offset: u64, _len: u64) -> io::Result<()> {
            Ok(())
        }
        fn capacity(&self) -> io::Result<u64> {
            FlashTarget::capacity(&self.0)
        }
        fn grow_to(&mut self, len: u64) -> io::Result<()> {
            FlashTarget::grow_to(&mut self.0, len)
        }
    }

    #[test]
    fn hole_modes_and_mismatch() {
        let img = image();
        let ranges = nonzero_ranges(&img, 4096).unwrap();
        let bmap = Bmap::from_image(&img, img.len() as u64, 4096, &ranges).unwrap();
        for mode in [HoleMode::Zero, HoleMode::Discard] {
            let mut t = vec![0xAAu8; img.len()];
            let r = flash(
                ImageSource::Random(&img),
                Some(&bmap),
                &mut t,
                &FlashOptions::new().holes(mode),
                &mut |_| {},
            )
            .unwrap();
            assert_eq!(t, img);
            assert_eq!(r.hole_bytes, img.len() as u64 - bmap.mapped_bytes());
            assert!(!r.discard_unsupported);
        }
        // A device that cannot discard with zeros gets the zeros written.
        let mut t = NoDiscard(vec![0xAAu8; img.len()]);
        let r = flash(
            ImageSource::Random(&img),
            Some(&bmap),
            &mut t,
            &FlashOptions::new().holes(HoleMode::Discard),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(t.0, img);
        assert!(r.discard_unsupported);
        assert_eq!(r.hole_bytes, img.len() as u64 - bmap.mapped_bytes());
        let mut other = img.clone();
        other[3] ^= 1;
        let e = flash(
            ImageSource::Random(&other),
            Some(&bmap),
            &mut Vec::new(),
            &FlashOptions::new(),
            &mut |_| {},
        );
        assert!(
            matches!(e, Err(Error::SourceMismatch { first_block: 0, .. })),
            "{e:?}"
        );
        let short = &img[..img.len() - 10];
        let mut s = short;
        let e = flash(
            ImageSource::Stream(&mut s),
            Some(&bmap),
            &mut Vec::new(),
            &FlashOptions::new(),
            &mut |_| {},
        );
        assert!(matches!(e, Err(Error::ImageTruncated { .. })), "{e:?}");
    }

    /// An image of several MiB with data in three ranges, so the
    /// read-back thread runs several batches.
    fn big_image() -> Vec<u8> {
        let mut v = vec![0u8; 40 << 20];
        for (i, b) in v.iter_mut().enumerate() {
            if i < (18 << 20) || (i > (20 << 20) && i < (37 << 20)) || i % 1_000_003 == 0 {
                *b = (i.wrapping_mul(2_654_435_761) >> 7) as u8;
            }
        }
        v
    }

    #[test]
    fn file_target_is_verified_behind_the_writer() {
        let img = big_image();
        let ranges = nonzero_ranges(&img, 4096).unwrap();
        let bmap = Bmap::from_image(&img, img.len() as u64, 4096, &ranges).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for with_bmap in [true, false] {
            let path = dir.path().join(format!("t{with_bmap}"));
            let mut f = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .unwrap();
            assert!(f.read_back().is_some());
            let mut verify_reports = 0;
            let r = flash(
                ImageSource::Random(&img),
                with_bmap.then_some(&bmap),
                &mut f,
                &FlashOptions::new(),
                &mut |p| verify_reports += usize::from(p.phase == Phase::Verify),
            )
            .unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), img);
            assert_eq!(r.verified_bytes, r.written_bytes);
            assert!(verify_reports > 0);
            // A stream source through the same path.
            let mut s = img.as_slice();
            let r = flash(
                ImageSource::Stream(&mut s),
                with_bmap.then_some(&bmap),
                &mut f,
                &FlashOptions::new(),
                &mut |_| {},
            )
            .unwrap();
            assert_eq!(r.verified_bytes, r.written_bytes);
        }
    }
}
