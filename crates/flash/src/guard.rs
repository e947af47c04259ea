//! Partition-table regions last: the target as [`crate::flash`] writes
//! it, with the bytes that make a disk look partitioned held back until
//! everything else is written and verified.
//!
//! A flash that stops half-way (SIGINT, SIGKILL, a pulled cable, a power
//! loss) must not leave a disk that looks partitioned and bootable with
//! half its data. Where firmware and tools look for a partition table:
//!
//! | Where                                  | What                                        |
//! |----------------------------------------|---------------------------------------------|
//! | LBA 0 (bytes 0..512)                   | MBR / protective MBR, `55 AA` at 510        |
//! | LBA 1 (512 or 4096) and on             | primary GPT header, then its entry array    |
//! | last LBA of the disk                   | backup GPT header (UEFI 2.10 §5.3.2)        |
//! | the 32 (512-byte) / 4 (4 KiB) LBAs before it | backup GPT entry array                |
//!
//! So before a byte of the image is written, three windows are zeroed on
//! the target and flushed (`fsync`): the head `[0, 1 MiB)` (MBR, primary
//! GPT header and a 128-entry array at either sector size, and the
//! superblock of a bare filesystem), the last 1 MiB of the image (its
//! backup GPT) and the last 1 MiB of the target (an old backup GPT of
//! what it held before). The image's bytes for those windows are kept in
//! memory (at most 3 MiB); everything else is written, flushed and
//! verified; the backup GPT is moved in memory if the target is larger;
//! then the windows are committed (tail first, flushed, head last,
//! flushed) and read back with their page cache dropped. An interruption
//! at any point before the commit leaves no MBR signature and no GPT
//! header at either end of the target.
//!
//! Reads through [`Guarded`] (the engine's own verify, the GPT move) and
//! through its read-back handle (the thread verifying behind the writer)
//! see the held bytes, so every mapped range verifies as usual; the held
//! bytes themselves are verified on the medium after the commit.
//!
//! A stream of unknown size (a compressed image without a bmap) has no
//! known end: the last 1 MiB written is held back instead, moving along
//! as the stream is written, and verification runs after the writing.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use kiln_artifact::digest::Sha256Hasher;
use kiln_units::{ReadAt, WriteAt};

use crate::error::{io_err, Error, Result};
use crate::segment::DEFAULT_BLOCK_BYTES;
use crate::target::{FlashTarget, ReadBack};

/// Bytes held back at the start of the target.
pub(crate) const HEAD_BYTES: u64 = 1 << 20;
/// Bytes held back at the end of the image and of the target.
pub(crate) const TAIL_BYTES: u64 = 1 << 20;

/// One held range: `data` stands for `[start, start + data.len())`.
struct Piece {
    start: u64,
    data: Vec<u8>,
}

impl Piece {
    fn end(&self) -> u64 {
        self.start + self.data.len() as u64
    }
}

/// The held bytes: fixed windows, and for a stream of unknown size the
/// last bytes written.
#[derive(Default)]
struct Held {
    windows: Vec<Piece>,
    trail: Option<VecDeque<Piece>>,
}

impl Held {
    fn pieces(&self) -> impl Iterator<Item = &Piece> {
        self.windows.iter().chain(self.trail.iter().flatten())
    }

    /// Fills `buf` (image bytes at `off`): held pieces from memory, the
    /// rest with `read`.
    fn overlay(
        &self,
        buf: &mut [u8],
        off: u64,
        read: &mut dyn FnMut(&mut [u8], u64) -> io::Result<()>,
    ) -> io::Result<()> {
        let end = off + buf.len() as u64;
        let mut p = off;
        while p < end {
            let (to, from) = match self.pieces().find(|w| w.start <= p && p < w.end()) {
                Some(w) => (w.end().min(end), Some(w)),
                None => {
                    let next = self.pieces().map(|w| w.start).filter(|&s| s > p).min();
                    (next.unwrap_or(end).min(end), None)
                }
            };
            let dst = buf
                .get_mut((p - off) as usize..(to - off) as usize)
                .unwrap_or_default();
            match from {
                Some(w) => dst.copy_from_slice(
                    w.data
                        .get((p - w.start) as usize..(to - w.start) as usize)
                        .unwrap_or_default(),
                ),
                None => read(dst, p)?,
            }
            p = to;
        }
        Ok(())
    }

    /// The fixed window holding `p`, or the start of the next one.
    fn window_at(&mut self, p: u64) -> std::result::Result<&mut Piece, Option<u64>> {
        let next = self
            .windows
            .iter()
            .map(|w| w.start)
            .filter(|&s| s > p)
            .min();
        self.windows
            .iter_mut()
            .find(|w| w.start <= p && p < w.end())
            .ok_or(next)
    }
}

/// The held bytes shared by the writer and the read-back thread.
type Shared = Arc<Mutex<Held>>;

/// Reads `buf` at `off` as the image's bytes: straight from the target
/// when the range meets no held window (`spans`, fixed once armed) and
/// there is no trail, else through [`Held::overlay`].
fn read_held(
    held: &Shared,
    spans: &[(u64, u64)],
    buf: &mut [u8],
    off: u64,
    read: &mut dyn FnMut(&mut [u8], u64) -> io::Result<()>,
) -> io::Result<()> {
    let end = off + buf.len() as u64;
    let h = lock(held);
    if h.trail.is_none() && spans.iter().all(|&(s, e)| e <= off || s >= end) {
        // The lock is not held while the device is read.
        drop(h);
        return read(buf, off);
    }
    h.overlay(buf, off, read)
}

fn lock(h: &Shared) -> MutexGuard<'_, Held> {
    // A panicking holder leaves plain bytes behind, still usable.
    h.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `[start, end)` ranges sorted, with overlapping or touching ones merged.
fn merge(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.retain(|r| r.0 < r.1);
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// A [`FlashTarget`] holding back its partition-table windows (see the
/// module documentation) until [`Guarded::commit`].
pub(crate) struct Guarded<'t, T: FlashTarget + ?Sized> {
    inner: &'t mut T,
    held: Shared,
    /// The fixed windows, `[start, end)`.
    spans: Arc<[(u64, u64)]>,
    /// What [`Guarded::arm`] cleared on the target (reads as zeros).
    zeroed: Vec<(u64, u64)>,
    /// Bytes the held-back trail of a stream of unknown size keeps.
    trail_keep: u64,
    trail_bytes: u64,
    /// Capacity of the target before the flash.
    capacity: u64,
    /// End of the furthest write.
    written_end: u64,
}

impl<'t, T: FlashTarget + ?Sized> Guarded<'t, T> {
    /// Zeroes the windows of `target` for an image of `image_size` bytes
    /// (`None`: a stream of unknown size) and flushes, before anything
    /// else is written. With `discard` (the holes are discarded) they are
    /// discarded rather than written where the target can.
    pub(crate) fn arm(target: &'t mut T, image_size: Option<u64>, discard: bool) -> Result<Self> {
        let capacity = target.capacity().map_err(io_err("sizing the target", 0))?;
        let extent = capacity.max(image_size.unwrap_or(0));
        let mut ranges = vec![
            (0, HEAD_BYTES),
            (capacity.saturating_sub(TAIL_BYTES), capacity),
        ];
        if let Some(s) = image_size {
            ranges.push((s.saturating_sub(TAIL_BYTES), s));
        }
        let mut windows = Vec::new();
        let mut zeroed = Vec::new();
        for (s, e) in merge(ranges) {
            // The head of a stream of unknown size is held whole, but
            // only what exists of it is zeroed.
            let e = if image_size.is_some() {
                e.min(extent)
            } else {
                e
            };
            let zero_end = e.min(extent);
            if s < zero_end {
                clear(&mut *target, s, zero_end, discard)?;
                zeroed.push((s, zero_end));
            }
            windows.push(Piece {
                start: s,
                data: vec![0u8; e.saturating_sub(s) as usize],
            });
        }
        target
            .sync_data()
            .map_err(io_err("syncing the target", 0))?;
        let trail = image_size.is_none().then(VecDeque::new);
        let spans = windows.iter().map(|w| (w.start, w.end())).collect();
        Ok(Self {
            inner: target,
            held: Arc::new(Mutex::new(Held { windows, trail })),
            spans,
            zeroed,
            trail_keep: TAIL_BYTES,
            trail_bytes: 0,
            capacity,
            written_end: 0,
        })
    }

    /// Writes the held windows (tail first, flushed, then the head,
    /// flushed) and, with `verify`, reads them back with their page
    /// cache dropped. Returns the bytes committed.
    pub(crate) fn commit(self, verify: bool) -> Result<u64> {
        let limit = self.capacity.max(self.written_end);
        let Held { windows, trail } = std::mem::take(&mut *lock(&self.held));
        let mut pieces: Vec<Piece> = windows
            .into_iter()
            .chain(trail.into_iter().flatten())
            .collect();
        for p in &mut pieces {
            let keep = limit.saturating_sub(p.start).min(p.data.len() as u64);
            p.data.truncate(keep as usize);
        }
        pieces.retain(|p| !p.data.is_empty());
        // The head (MBR, primary GPT) is what firmware reads: it goes
        // last, once the rest is on the medium.
        let inner = self.inner;
        let (head, rest): (Vec<&Piece>, Vec<&Piece>) = pieces.iter().partition(|p| p.start == 0);
        for stage in [rest, head] {
            for p in stage {
                write_piece(&mut *inner, p, &self.zeroed)?;
            }
            inner.sync_data().map_err(io_err("syncing the target", 0))?;
        }
        let mut committed = 0;
        for p in &pieces {
            if verify {
                verify_piece(&*inner, p)?;
            }
            committed += p.data.len() as u64;
        }
        Ok(committed)
    }

    /// Holds `data` (bytes at `off`, outside every window) in the trail
    /// of a stream of unknown size, writing out what falls more than
    /// `trail_keep` bytes behind. Returns false when there is no trail.
    fn hold_trail(&mut self, data: &[u8], off: u64) -> io::Result<bool> {
        let mut out = Vec::new();
        {
            let mut held = lock(&self.held);
            let Some(trail) = held.trail.as_mut() else {
                return Ok(false);
            };
            trail.push_back(Piece {
                start: off,
                data: data.to_vec(),
            });
            self.trail_bytes += data.len() as u64;
            while let Some(front) = trail.front() {
                let n = front.data.len() as u64;
                if self.trail_bytes - n < self.trail_keep {
                    break;
                }
                self.trail_bytes -= n;
                out.extend(trail.pop_front());
            }
        }
        for p in out {
            self.inner.write_all_at(&p.data, p.start)?;
        }
        Ok(true)
    }
}

/// Zeroes `[start, end)` of `target`: discarded when `discard` and the
/// target can, else written.
fn clear<T: FlashTarget + ?Sized>(
    target: &mut T,
    start: u64,
    end: u64,
    discard: bool,
) -> Result<()> {
    if discard {
        match target.discard(start, end - start) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {}
            Err(e) => return Err(io_err("clearing the partition-table area", start)(e)),
        }
    }
    let zeros = vec![0u8; (end - start) as usize];
    target
        .write_all_at(&zeros, start)
        .map_err(io_err("clearing the partition-table area", start))
}

/// Writes a held piece, leaving out the 4 KiB blocks that are zero
/// where the target was cleared already (no allocation for discarded
/// holes).
fn write_piece<T: FlashTarget + ?Sized>(
    target: &mut T,
    p: &Piece,
    zeroed: &[(u64, u64)],
) -> Result<()> {
    let block = DEFAULT_BLOCK_BYTES as usize;
    let cleared = |off: u64, len: u64| zeroed.iter().any(|&(s, e)| s <= off && off + len <= e);
    let mut run: Option<usize> = None;
    let mut at = 0usize;
    while at <= p.data.len() {
        let b = p
            .data
            .get(at..(at + block).min(p.data.len()))
            .unwrap_or_default();
        let skip = b.is_empty()
            || (b.iter().all(|&x| x == 0) && cleared(p.start + at as u64, b.len() as u64));
        match (skip, run) {
            (false, None) => run = Some(at),
            (true, Some(from)) => {
                let off = p.start + from as u64;
                target
                    .write_all_at(p.data.get(from..at).unwrap_or_default(), off)
                    .map_err(io_err("writing the partition-table area", off))?;
                run = None;
            }
            _ => {}
        }
        if b.is_empty() {
            break;
        }
        at += b.len();
    }
    Ok(())
}

/// Reads a committed piece back from the medium and compares.
fn verify_piece<T: FlashTarget + ?Sized>(target: &T, p: &Piece) -> Result<()> {
    let len = p.data.len() as u64;
    target
        .drop_cache(p.start, len)
        .map_err(io_err("dropping the target's cache", p.start))?;
    let mut back = vec![0u8; p.data.len()];
    target
        .read_exact_at(&mut back, p.start)
        .map_err(io_err("reading back the target", p.start))?;
    if back == p.data {
        return Ok(());
    }
    let digest = |b: &[u8]| {
        let mut h = Sha256Hasher::new();
        h.update(b);
        h.finish()
    };
    Err(Error::VerifyFailed {
        first_block: p.start / DEFAULT_BLOCK_BYTES,
        last_block: (p.end() - 1) / DEFAULT_BLOCK_BYTES,
        start_byte: p.start,
        end_byte: p.end(),
        expected: digest(&p.data),
        actual: digest(&back),
    })
}

impl<T: FlashTarget + ?Sized> ReadAt for Guarded<'_, T> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let inner = &*self.inner;
        read_held(&self.held, &self.spans, buf, offset, &mut |b, o| {
            inner.read_exact_at(b, o)
        })
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.inner.size()?.max(self.written_end))
    }
}

impl<T: FlashTarget + ?Sized> WriteAt for Guarded<'_, T> {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        self.written_end = self.written_end.max(end);
        let mut p = offset;
        while p < end {
            let src = |to: u64| {
                buf.get((p - offset) as usize..(to - offset) as usize)
                    .unwrap_or_default()
            };
            let next = match lock(&self.held).window_at(p) {
                Ok(w) => {
                    let to = w.end().min(end);
                    w.data
                        .get_mut((p - w.start) as usize..(to - w.start) as usize)
                        .unwrap_or_default()
                        .copy_from_slice(src(to));
                    p = to;
                    continue;
                }
                Err(next) => next,
            };
            let to = next.unwrap_or(end).min(end);
            if !self.hold_trail(src(to), p)? {
                self.inner.write_all_at(src(to), p)?;
            }
            p = to;
        }
        Ok(())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

impl<T: FlashTarget + ?Sized> FlashTarget for Guarded<'_, T> {
    fn sync_data(&mut self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let end = offset + len;
        let mut p = offset;
        while p < end {
            let next = match lock(&self.held).window_at(p) {
                Ok(w) => {
                    let to = w.end().min(end);
                    w.data
                        .get_mut((p - w.start) as usize..(to - w.start) as usize)
                        .unwrap_or_default()
                        .fill(0);
                    p = to;
                    continue;
                }
                Err(next) => next,
            };
            let to = next.unwrap_or(end).min(end);
            self.inner.discard(p, to - p)?;
            p = to;
        }
        Ok(())
    }
    fn drop_cache(&self, offset: u64, len: u64) -> io::Result<()> {
        self.inner.drop_cache(offset, len)
    }
    fn capacity(&self) -> io::Result<u64> {
        self.inner.capacity()
    }
    fn grow_to(&mut self, len: u64) -> io::Result<()> {
        self.written_end = self.written_end.max(len);
        self.inner.grow_to(len)
    }
    /// The target's second handle, seeing the held bytes; none for a
    /// stream of unknown size, whose held trail moves while writing (it
    /// is verified after the writing instead).
    fn read_back(&self) -> Option<Box<dyn ReadBack + Send>> {
        if lock(&self.held).trail.is_some() {
            return None;
        }
        let inner = self.inner.read_back()?;
        Some(Box::new(GuardedReadBack {
            inner,
            held: Arc::clone(&self.held),
            spans: Arc::clone(&self.spans),
        }))
    }
}

/// The read-back handle of a [`Guarded`] target.
struct GuardedReadBack {
    inner: Box<dyn ReadBack + Send>,
    held: Shared,
    spans: Arc<[(u64, u64)]>,
}

impl ReadAt for GuardedReadBack {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let inner = &*self.inner;
        read_held(&self.held, &self.spans, buf, offset, &mut |b, o| {
            inner.read_exact_at(b, o)
        })
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
}

impl ReadBack for GuardedReadBack {
    fn sync_written(&self) -> io::Result<()> {
        self.inner.sync_written()
    }
    fn evict(&self, offset: u64, len: u64) -> io::Result<()> {
        self.inner.evict(offset, len)
    }
    fn prefetch(&self, offset: u64, len: u64) -> io::Result<()> {
        self.inner.prefetch(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{FlashOptions, ImageSource};
    use kiln_artifact::bmap::{nonzero_ranges, Bmap};

    /// A GPT-looking image: MBR signature, headers at LBA 1 and in the
    /// last sector, data everywhere.
    fn image() -> Vec<u8> {
        let mut v: Vec<u8> = (0..6u32 << 20).map(|i| (i % 253) as u8 | 1).collect();
        let n = v.len();
        v[510..512].copy_from_slice(&[0x55, 0xAA]);
        v[512..520].copy_from_slice(b"EFI PART");
        v[n - 512..n - 504].copy_from_slice(b"EFI PART");
        v
    }

    /// A memory target that fails every write once `budget` bytes were
    /// written: the flash stops there, as if interrupted.
    struct Stops {
        disk: Vec<u8>,
        budget: u64,
    }

    impl ReadAt for Stops {
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            self.disk.read_exact_at(buf, offset)
        }
        fn size(&self) -> io::Result<u64> {
            ReadAt::size(&self.disk)
        }
    }

    impl WriteAt for Stops {
        fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
            let n = buf.len() as u64;
            if n > self.budget {
                return Err(io::Error::other("interrupted"));
            }
            self.budget -= n;
            self.disk.write_all_at(buf, offset)
        }
        fn set_len(&mut self, len: u64) -> io::Result<()> {
            WriteAt::set_len(&mut self.disk, len)
        }
    }

    impl FlashTarget for Stops {
        fn sync_data(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
            self.disk.discard(offset, len)
        }
        fn drop_cache(&self, _offset: u64, _len: u64) -> io::Result<()> {
            Ok(())
        }
        fn capacity(&self) -> io::Result<u64> {
            FlashTarget::capacity(&self.disk)
        }
        fn grow_to(&mut self, len: u64) -> io::Result<()> {
            FlashTarget::grow_to(&mut self.disk, len)
        }
    }

    fn no_table(disk: &[u8], what: &str) {
        let n = disk.len();
        assert_ne!(&disk[510..512], &[0x55, 0xAA], "{what}");
        assert_ne!(&disk[512..520], b"EFI PART", "{what}");
        assert_ne!(&disk[n - 512..n - 504], b"EFI PART", "{what}");
        assert!(
            disk[..HEAD_BYTES as usize].iter().all(|&b| b == 0),
            "{what}"
        );
        assert!(
            disk[n - TAIL_BYTES as usize..].iter().all(|&b| b == 0),
            "{what}"
        );
    }

    #[test]
    fn a_flash_stopped_before_the_commit_leaves_no_table() {
        let img = image();
        let ranges = nonzero_ranges(&img, 4096).unwrap();
        let bmap = Bmap::from_image(&img, img.len() as u64, 4096, &ranges).unwrap();
        // The fake headers carry no valid CRC: no GPT move.
        let opts = FlashOptions::new()
            .chunk_bytes(64 << 10)
            .relocate_gpt(false);
        // An old disk, larger than the image, with tables at both ends.
        let mut old = image();
        old.extend(image());
        let windows = 3 * (1 << 20);
        for with_bmap in [false, true] {
            for stop in [0, 1 << 20, 3 << 20, (img.len() - (2 << 20)) as u64] {
                let mut t = Stops {
                    disk: old.clone(),
                    budget: windows + stop,
                };
                let r = crate::flash(
                    ImageSource::Random(&img),
                    with_bmap.then_some(&bmap),
                    &mut t,
                    &opts,
                    &mut |_| {},
                );
                assert!(r.is_err(), "bmap {with_bmap} stop {stop}");
                no_table(&t.disk, &format!("bmap {with_bmap} stop {stop}"));
                // The image itself was cleared too, where it ends.
                let end = &t.disk[img.len() - TAIL_BYTES as usize..img.len()];
                assert!(end.iter().all(|&b| b == 0));
            }
            let mut t = Stops {
                disk: old.clone(),
                budget: u64::MAX,
            };
            let r = crate::flash(
                ImageSource::Random(&img),
                with_bmap.then_some(&bmap),
                &mut t,
                &opts,
                &mut |_| {},
            )
            .unwrap();
            assert_eq!(&t.disk[..img.len()], &img[..]);
            assert_eq!(r.verified_bytes, img.len() as u64);
        }
    }

    #[test]
    fn a_stream_of_unknown_size_holds_its_last_bytes() {
        let img = image();
        let opts = FlashOptions::new()
            .chunk_bytes(64 << 10)
            .relocate_gpt(false);
        for stop in [0u64, 2 << 20, (img.len() - (3 << 20)) as u64] {
            let mut t = Stops {
                disk: Vec::new(),
                budget: stop,
            };
            let mut s = img.as_slice();
            let r = crate::flash(
                ImageSource::Stream(&mut s),
                None,
                &mut t,
                &opts,
                &mut |_| {},
            );
            assert!(r.is_err());
            let d = &t.disk;
            assert!(d.len() < 2 << 20 || d[510..512] != [0x55, 0xAA]);
            assert!(d.len() < 1024 || &d[512..520] != b"EFI PART");
            assert!(d.len() < img.len(), "the last MiB is held back");
        }
        let mut t = Vec::new();
        let mut s = img.as_slice();
        let r = crate::flash(
            ImageSource::Stream(&mut s),
            None,
            &mut t,
            &opts,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(t, img);
        assert_eq!(r.verified_bytes, img.len() as u64);
    }

    #[test]
    fn windows_merge_and_reads_see_held_bytes() {
        assert_eq!(merge(vec![(5, 9), (0, 4), (4, 5), (20, 20)]), vec![(0, 9)]);
        let mut disk = vec![7u8; 4 << 20];
        let mut g = Guarded::arm(&mut disk, Some(3 << 20), false).unwrap();
        g.write_all_at(&[1u8; 3 << 20], 0).unwrap();
        let mut b = vec![0u8; 3 << 20];
        g.read_exact_at(&mut b, 0).unwrap();
        assert!(b.iter().all(|&x| x == 1));
        drop(b);
        assert_eq!(g.commit(true).unwrap(), 3 << 20);
        assert!(disk[..3 << 20].iter().all(|&x| x == 1));
        assert!(
            disk[3 << 20..].iter().all(|&x| x == 0),
            "the old tail is cleared"
        );
    }
}
