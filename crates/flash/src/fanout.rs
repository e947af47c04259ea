//! [`flash_many`]: one image, read (and decompressed) once, written to
//! several targets at the same time.
//!
//! One producer (the calling thread) reads the image in order, in chunks
//! of the flash chunk size, and hands each chunk (shared, not copied:
//! `Arc`) to a small bounded queue per target ([`QUEUE_CHUNKS`] chunks)
//! and, unless [`FlashOptions::image_sha256`] turned it off, to a hashing
//! thread that computes the whole image's sha256. A chunk of a
//! random-access image that the bmap leaves entirely unmapped is not read:
//! one shared buffer of zeros stands for it. Each target runs the
//! ordinary single-target engine ([`crate::flash`]) on its own thread,
//! reading its queue as a stream, so every target has its own progress,
//! read-back verify (behind its writer), GPT move, partition-table
//! windows cleared first and written last, and result. Memory is
//! bounded by `(targets + 1) * QUEUE_CHUNKS` chunks, and the slowest
//! target sets the pace.
//!
//! A target that fails drops its queue; the producer stops feeding it and
//! goes on with the others. Only a failure to read the image itself stops
//! every target.

use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use kiln_artifact::bmap::Bmap;
use kiln_artifact::digest::{Sha256Digest, Sha256Hasher};
use kiln_units::{ReadAt, SectorSize};

use crate::copy::fill;
use crate::engine::{check_chunk, flash, image_size};
use crate::error::{io_err, Error, Result};
use crate::options::{FlashOptions, FlashReport, ImageSource, Progress};
use crate::target::FlashTarget;
use crate::verify::blame;

/// Chunks queued per target (and for the image hasher).
pub const QUEUE_CHUNKS: usize = 4;

/// A chunk of the image: `len` bytes of a shared buffer.
struct Piece {
    data: Arc<Vec<u8>>,
    len: usize,
}

/// A target's end of its queue, read as a stream.
struct QueueReader {
    rx: Receiver<Piece>,
    cur: Option<Piece>,
    at: usize,
}

impl Read for QueueReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(p) = &self.cur {
                let rest = p.data.get(self.at..p.len).unwrap_or_default();
                if !rest.is_empty() {
                    let n = rest.len().min(buf.len());
                    buf.get_mut(..n)
                        .unwrap_or_default()
                        .copy_from_slice(rest.get(..n).unwrap_or_default());
                    self.at += n;
                    return Ok(n);
                }
            }
            match self.rx.recv() {
                Ok(p) => {
                    self.cur = Some(p);
                    self.at = 0;
                }
                // The producer is done (or failed): end of the stream.
                Err(_) => return Ok(0),
            }
        }
    }
}

/// What [`flash_many`] did.
#[derive(Debug)]
pub struct ManyReport {
    /// sha256 of the whole image as read (holes as zeros), i.e. of the
    /// raw disk image every successful target now holds; `None` when
    /// [`FlashOptions::image_sha256`] turned the whole-image hash off
    /// (with a bmap, whose per-range digests the read-back checks).
    pub image_sha256: Option<Sha256Digest>,
    /// Image size in bytes.
    pub image_bytes: u64,
    /// One result per target, in the order given.
    pub results: Vec<Result<FlashReport>>,
}

/// Flashes `image` onto every target at once, reading it once (see the
/// module documentation); `progress` is called with the target's index.
/// Each target comes with the sector size its backup GPT is looked for
/// in first ([`FlashOptions::sector_size`]). Safety checks are the
/// caller's job, for every target.
///
/// # Errors
/// [`Error::InvalidRequest`] for a bad chunk size or no target,
/// [`Error::BmapImageSize`] if the bmap's size differs from a
/// random-access image's, [`Error::Io`] or [`Error::ImageTruncated`] if
/// the image cannot be read. A failing target is not an error here: its
/// entry in [`ManyReport::results`] is.
pub fn flash_many(
    image: ImageSource<'_>,
    bmap: Option<&Bmap>,
    targets: Vec<(&mut (dyn FlashTarget + Send), SectorSize)>,
    opts: &FlashOptions,
    progress: &(dyn Fn(usize, Progress) + Sync),
) -> Result<ManyReport> {
    if targets.is_empty() {
        return Err(Error::InvalidRequest {
            reason: "no target to flash",
        });
    }
    check_chunk(opts)?;
    let size = image_size(&image, bmap, opts)?;
    let mut base_opts = *opts;
    base_opts.image_size = size;
    // A random-access image is re-read below to tell a bad image from a
    // bad medium, so the targets need not hash it while writing.
    let random: Option<&dyn ReadAt> = match &image {
        ImageSource::Random(r) => Some(*r),
        ImageSource::Stream(_) => None,
    };
    base_opts.source_rereadable = random.is_some();
    std::thread::scope(|scope| {
        let mut queues = Vec::with_capacity(targets.len());
        let mut workers = Vec::with_capacity(targets.len());
        for (i, (t, sector)) in targets.into_iter().enumerate() {
            let (tx, rx) = sync_channel::<Piece>(QUEUE_CHUNKS);
            queues.push(Some(tx));
            let topts = base_opts.sector_size(sector);
            workers.push(scope.spawn(move || {
                let mut q = QueueReader {
                    rx,
                    cur: None,
                    at: 0,
                };
                flash(ImageSource::Stream(&mut q), bmap, t, &topts, &mut |p| {
                    progress(i, p)
                })
            }));
        }
        let (htx, hrx) = sync_channel::<Piece>(QUEUE_CHUNKS);
        let hasher = opts.image_sha256.then(|| {
            scope.spawn(move || {
                let mut h = Sha256Hasher::new();
                for p in hrx {
                    h.update(p.data.get(..p.len).unwrap_or_default());
                }
                h
            })
        });
        let mut feed = Feed {
            queues,
            hasher: hasher.is_some().then_some(htx),
            chunk: opts.chunk_bytes,
        };
        let produced = feed.produce(image, bmap, size);
        drop(feed);
        let results: Vec<Result<FlashReport>> = workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or(Err(Error::ThreadPanicked {
                        thread: "target writer",
                    }))
                    .map_err(|e| blame(random, e))
            })
            .collect();
        let image_sha256 = match hasher {
            Some(h) => Some(
                h.join()
                    .map_err(|_| Error::ThreadPanicked {
                        thread: "image hasher",
                    })?
                    .finish(),
            ),
            None => None,
        };
        let image_bytes = produced?;
        Ok(ManyReport {
            image_bytes,
            image_sha256,
            results,
        })
    })
}

/// The producer's side: a queue per live target and the hasher's.
struct Feed {
    queues: Vec<Option<SyncSender<Piece>>>,
    hasher: Option<SyncSender<Piece>>,
    chunk: usize,
}

impl Feed {
    /// Hands `piece` to every live queue; a target that stopped (its
    /// receiver dropped) is dropped too. Returns whether any target is
    /// still live.
    fn send(&mut self, piece: &Piece) -> bool {
        for q in &mut self.queues {
            if let Some(tx) = q {
                let p = Piece {
                    data: Arc::clone(&piece.data),
                    len: piece.len,
                };
                if tx.send(p).is_err() {
                    *q = None;
                }
            }
        }
        if let Some(tx) = &self.hasher {
            let p = Piece {
                data: Arc::clone(&piece.data),
                len: piece.len,
            };
            if tx.send(p).is_err() {
                self.hasher = None;
            }
        }
        self.queues.iter().any(Option::is_some)
    }

    /// Reads the image in chunks and feeds them; returns its size.
    fn produce(
        &mut self,
        image: ImageSource<'_>,
        bmap: Option<&Bmap>,
        size: Option<u64>,
    ) -> Result<u64> {
        let chunk = self.chunk as u64;
        let zeros = Arc::new(vec![0u8; self.chunk]);
        // Mapped byte ranges, for skipping reads of unmapped chunks.
        let mapped: Vec<(u64, u64)> = bmap
            .map(|b| b.ranges().iter().map(|r| b.byte_range(r.blocks)).collect())
            .unwrap_or_default();
        let mut next_range = 0usize;
        let mut pos = 0u64;
        match image {
            ImageSource::Random(src) => {
                let size = size.unwrap_or(0);
                while pos < size {
                    let end = (pos + chunk).min(size);
                    let len = (end - pos) as usize;
                    while mapped.get(next_range).is_some_and(|r| r.1 <= pos) {
                        next_range += 1;
                    }
                    let hole = bmap.is_some() && mapped.get(next_range).is_none_or(|r| r.0 >= end);
                    let data = if hole {
                        Arc::clone(&zeros)
                    } else {
                        Arc::new(read_random(src, pos, len)?)
                    };
                    if !self.send(&Piece { data, len }) {
                        break;
                    }
                    pos = end;
                }
            }
            ImageSource::Stream(src) => loop {
                let want = size.map_or(chunk, |s| chunk.min(s - pos)) as usize;
                if want == 0 {
                    break;
                }
                let mut buf = vec![0u8; want];
                let got = fill(src, &mut buf, pos)?;
                // A stream ending before the size it was given is a
                // truncated image, whatever the targets did meanwhile.
                if got < want && size.is_some() {
                    return Err(Error::ImageTruncated {
                        expected: size.unwrap_or_default(),
                        actual: pos + got as u64,
                    });
                }
                if got == 0 {
                    break;
                }
                if !self.send(&Piece {
                    data: Arc::new(buf),
                    len: got,
                }) {
                    break;
                }
                pos += got as u64;
                if got < want {
                    break;
                }
            },
        }
        Ok(pos)
    }
}

fn read_random(src: &dyn ReadAt, pos: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    src.read_exact_at(&mut buf, pos).map_err(|source| {
        if source.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::ImageTruncated {
                expected: pos + len as u64,
                actual: pos,
            }
        } else {
            io_err("reading the image", pos)(source)
        }
    })?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_artifact::bmap::nonzero_ranges;
    use kiln_units::WriteAt;
    use std::io;

    fn image() -> Vec<u8> {
        let mut v = vec![0u8; 5 << 20];
        for (i, b) in v.iter_mut().enumerate() {
            if i < (1 << 20) || (i > (3 << 20) && i < (3 << 20) + 5000) {
                *b = (i.wrapping_mul(2_654_435_761) >> 9) as u8;
            }
        }
        v
    }

    /// A target that fails every write at or past `fail_at` bytes.
    struct Failing {
        inner: Vec<u8>,
        fail_at: u64,
    }

    impl ReadAt for Failing {
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            self.inner.read_exact_at(buf, offset)
        }
        fn size(&self) -> io::Result<u64> {
            ReadAt::size(&self.inner)
        }
    }

    impl WriteAt for Failing {
        fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
            if offset + buf.len() as u64 > self.fail_at {
                return Err(io::Error::other("medium pulled"));
            }
            self.inner.write_all_at(buf, offset)
        }
        fn set_len(&mut self, len: u64) -> io::Result<()> {
            WriteAt::set_len(&mut self.inner, len)
        }
    }

    impl FlashTarget for Failing {
        fn sync_data(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
            self.inner.discard(offset, len)
        }
        fn drop_cache(&self, _offset: u64, _len: u64) -> io::Result<()> {
            Ok(())
        }
        fn capacity(&self) -> io::Result<u64> {
            FlashTarget::capacity(&self.inner)
        }
        fn grow_to(&mut self, len: u64) -> io::Result<()> {
            FlashTarget::grow_to(&mut self.inner, len)
        }
    }

    #[test]
    fn one_read_many_targets_one_fails_alone() {
        let img = image();
        let ranges = nonzero_ranges(&img, 4096).unwrap();
        let bmap = Bmap::from_image(&img, img.len() as u64, 4096, &ranges).unwrap();
        let digest = {
            let mut h = Sha256Hasher::new();
            h.update(&img);
            h.finish()
        };
        for (with_bmap, stream, whole) in [
            (true, false, true),
            (true, true, true),
            (false, false, true),
            (false, true, true),
            // With a bmap the whole-image hash can be left out; the
            // targets are still written and verified range by range.
            (true, false, false),
            (true, true, false),
        ] {
            let opts = FlashOptions::new()
                .chunk_bytes(64 << 10)
                .image_sha256(whole);
            {
                let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
                let mut bad = Failing {
                    inner: Vec::new(),
                    fail_at: 512 << 10,
                };
                let calls = std::sync::Mutex::new([0usize; 4]);
                let mut s = img.as_slice();
                let source = if stream {
                    ImageSource::Stream(&mut s)
                } else {
                    ImageSource::Random(&img)
                };
                let r = flash_many(
                    source,
                    with_bmap.then_some(&bmap),
                    vec![
                        (&mut a as &mut (dyn FlashTarget + Send), SectorSize::S512),
                        (&mut bad, SectorSize::S512),
                        (&mut b, SectorSize::S512),
                        (&mut c, SectorSize::S512),
                    ],
                    &opts,
                    &|i, _| calls.lock().unwrap()[i] += 1,
                )
                .unwrap();
                assert_eq!(
                    r.image_sha256,
                    whole.then_some(digest),
                    "bmap {with_bmap} stream {stream}"
                );
                assert_eq!(r.image_bytes, img.len() as u64);
                for t in [&a, &b, &c] {
                    assert_eq!(t, &img);
                }
                assert!(r.results[1].is_err(), "{:?}", r.results[1]);
                for i in [0, 2, 3] {
                    let rep = r.results[i].as_ref().unwrap();
                    assert_eq!(rep.verified_bytes, rep.written_bytes);
                    assert!(calls.lock().unwrap()[i] > 0);
                }
            }
        }
    }

    #[test]
    fn refuses_no_target_and_a_bmap_of_another_size() {
        let img = image();
        let ranges = nonzero_ranges(&img, 4096).unwrap();
        let bmap = Bmap::from_image(&img, img.len() as u64, 4096, &ranges).unwrap();
        let e = flash_many(
            ImageSource::Random(&img),
            None,
            vec![],
            &FlashOptions::new(),
            &|_, _| {},
        );
        assert!(matches!(e, Err(Error::InvalidRequest { .. })), "{e:?}");
        let short = &img[..img.len() - 4096];
        let e = flash_many(
            ImageSource::Random(&short),
            Some(&bmap),
            vec![(&mut Vec::new(), SectorSize::S512)],
            &FlashOptions::new(),
            &|_, _| {},
        );
        assert!(matches!(e, Err(Error::BmapImageSize { .. })), "{e:?}");
        // A stream shorter than its bmap says fails every target.
        let mut s = short;
        let e = flash_many(
            ImageSource::Stream(&mut s),
            Some(&bmap),
            vec![(&mut Vec::new(), SectorSize::S512)],
            &FlashOptions::new(),
            &|_, _| {},
        );
        assert!(matches!(e, Err(Error::ImageTruncated { .. })), "{e:?}");
    }

    #[test]
    fn an_image_that_does_not_match_its_bmap_is_blamed_not_the_medium() {
        let img = image();
        let ranges = nonzero_ranges(&img, 4096).unwrap();
        let bmap = Bmap::from_image(&img, img.len() as u64, 4096, &ranges).unwrap();
        let mut bad = img.clone();
        bad[(3 << 20) + 100] ^= 1;
        let dir = tempfile::tempdir().unwrap();
        for stream in [false, true] {
            // File targets verify behind the writer: a random image is
            // then not hashed while writing but re-read on a mismatch.
            let mut f = std::fs::File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(dir.path().join(format!("t{stream}")))
                .unwrap();
            let mut s = bad.as_slice();
            let source = if stream {
                ImageSource::Stream(&mut s)
            } else {
                ImageSource::Random(&bad)
            };
            let r = flash_many(
                source,
                Some(&bmap),
                vec![(&mut f, SectorSize::S512)],
                &FlashOptions::new(),
                &|_, _| {},
            )
            .unwrap();
            assert!(
                matches!(r.results[0], Err(Error::SourceMismatch { .. })),
                "stream {stream}: {:?}",
                r.results[0]
            );
        }
    }
}
