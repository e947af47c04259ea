//! [`flash`]: plan the ranges, write them (with the read-back thread
//! behind the writer when the target offers a second handle), flush,
//! verify what was not verified behind, move the backup GPT; all of it
//! on the target wrapped by `guard`, whose partition-table windows are
//! cleared first and committed last.

use std::sync::mpsc::{channel, sync_channel};

use kiln_artifact::bmap::Bmap;
use kiln_part::GptRelocation;
use kiln_units::{ReadAt, SectorSize};

use crate::copy::Copier;
use crate::error::{io_err, Error, Result};
use crate::guard::Guarded;
use crate::options::{FlashOptions, FlashReport, ImageSource, Phase, Progress};
use crate::segment::{bmap_segments, segments_for_size, Note, Segment};
use crate::target::FlashTarget;
use crate::verify::{blame, verify_behind, verify_segments};

/// The ranges to write and what is known of the image's size.
struct Plan {
    /// Image size in bytes, `None` for a stream without a bmap or size.
    image_size: Option<u64>,
    segments: Vec<Segment>,
    /// Mapped bytes to write, when the size is known.
    total: Option<u64>,
}

/// What the writing step did.
struct Written {
    image_bytes: u64,
    written_bytes: u64,
    hole_bytes: u64,
    discard_unsupported: bool,
    /// Bytes verified by the read-back thread, if it ran.
    verified_behind: Option<u64>,
}

/// Flashes `image` onto `target`, then verifies and relocates the GPT as
/// configured. `progress` is called after every chunk.
///
/// Safety checks are the caller's job: call [`crate::safety::check_target`]
/// first.
///
/// # Errors
/// [`Error::InvalidRequest`] for a bad chunk size, [`Error::BmapImageSize`]
/// if the bmap's image size differs from the image's,
/// [`Error::SourceMismatch`] if image data does not match the bmap,
/// [`Error::ImageTruncated`], [`Error::VerifyFailed`] naming the first
/// range whose read-back differs, [`Error::Gpt`], [`Error::Io`].
pub fn flash<T: FlashTarget + ?Sized>(
    image: ImageSource<'_>,
    bmap: Option<&Bmap>,
    target: &mut T,
    opts: &FlashOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<FlashReport> {
    check_chunk(opts)?;
    let mut plan = plan(&image, bmap, opts)?;
    // Nothing is written before the partition-table windows are cleared,
    // and they are written last (see `guard`).
    let discard = opts.holes == crate::options::HoleMode::Discard;
    let mut guarded = Guarded::arm(target, plan.image_size, discard)?;
    let report = write_verify_relocate(image, bmap, &mut guarded, opts, &mut plan, progress)?;
    guarded.commit(opts.verify)?;
    Ok(report)
}

/// Steps 2 to 4 of [`flash`] on the guarded target.
fn write_verify_relocate<T: FlashTarget + ?Sized>(
    image: ImageSource<'_>,
    bmap: Option<&Bmap>,
    target: &mut T,
    opts: &FlashOptions,
    plan: &mut Plan,
    progress: &mut dyn FnMut(Progress),
) -> Result<FlashReport> {
    let w = write_image(image, bmap.is_some(), target, opts, plan, progress)?;
    target
        .grow_to(w.image_bytes)
        .map_err(io_err("growing the target file", w.image_bytes))?;
    target
        .sync_data()
        .map_err(io_err("syncing the target", 0))?;
    let verified = match w.verified_behind {
        Some(v) => v,
        None if opts.verify => {
            let mut buf = vec![0u8; opts.chunk_bytes];
            verify_segments(
                &*target,
                &plan.segments,
                &mut buf,
                w.written_bytes,
                progress,
            )?
        }
        None => 0,
    };
    let gpt = if opts.relocate_gpt {
        relocate_gpt(target, opts.sector_size, w.image_bytes)?
    } else {
        None
    };
    Ok(FlashReport {
        image_bytes: w.image_bytes,
        written_bytes: w.written_bytes,
        hole_bytes: w.hole_bytes,
        discard_unsupported: w.discard_unsupported,
        verified_bytes: verified,
        ranges: plan.segments.len(),
        gpt,
    })
}

/// Refuses a chunk size the writer cannot use.
pub(crate) fn check_chunk(opts: &FlashOptions) -> Result<()> {
    if opts.chunk_bytes < (64 << 10) || opts.chunk_bytes % 4096 != 0 {
        return Err(Error::InvalidRequest {
            reason: "chunk size must be a multiple of 4096 and at least 64 KiB",
        });
    }
    Ok(())
}

/// The image size: the options', else the bmap's, else a random-access
/// source's; a bmap made for another size than the options' or the
/// source's is refused.
pub(crate) fn image_size(
    image: &ImageSource<'_>,
    bmap: Option<&Bmap>,
    opts: &FlashOptions,
) -> Result<Option<u64>> {
    let source_size = match image {
        ImageSource::Random(r) => Some(r.size().map_err(io_err("sizing the image", 0))?),
        ImageSource::Stream(_) => None,
    };
    if let (Some(b), Some(s)) = (bmap, opts.image_size.or(source_size)) {
        if b.image_size() != s {
            return Err(Error::BmapImageSize {
                bmap_bytes: b.image_size(),
                image_bytes: s,
            });
        }
    }
    Ok(opts
        .image_size
        .or(bmap.map(Bmap::image_size))
        .or(source_size))
}

/// Step 1: the image size (options, bmap or source, which must agree
/// with the bmap) and the ranges: the bmap's, or 64 MiB segments.
fn plan(image: &ImageSource<'_>, bmap: Option<&Bmap>, opts: &FlashOptions) -> Result<Plan> {
    let image_size = image_size(image, bmap, opts)?;
    let segments = match (bmap, image_size) {
        (Some(b), _) => bmap_segments(b),
        (None, Some(size)) => segments_for_size(size),
        (None, None) => Vec::new(),
    };
    let total = image_size.map(|_| segments.iter().map(|s| s.end - s.start).sum::<u64>());
    Ok(Plan {
        image_size,
        segments,
        total,
    })
}

/// Step 2: writes every range, with the read-back thread verifying
/// behind the writer when `opts` asks for verification and the target
/// offers a second handle. A range that fails there is blamed on the
/// image if a random-access image does not match the bmap itself.
fn write_image<T: FlashTarget + ?Sized>(
    image: ImageSource<'_>,
    with_bmap: bool,
    target: &mut T,
    opts: &FlashOptions,
    plan: &mut Plan,
    progress: &mut dyn FnMut(Progress),
) -> Result<Written> {
    let random: Option<&dyn ReadAt> = match &image {
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
    let hash_random = behind.is_none() || !with_bmap;
    let hash_stream = !opts.source_rereadable || hash_random;
    let chunk = opts.chunk_bytes;
    let total = plan.total;
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
            hash_stream,
        };
        let copied = copier
            .copy_all(image, &mut plan.segments, plan.image_size)
            .map(|size| Written {
                image_bytes: size,
                written_bytes: copier.done,
                hole_bytes: copier.hole_bytes,
                discard_unsupported: copier.discard_unsupported,
                verified_behind: None,
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
            r.join().unwrap_or(Err(Error::ThreadPanicked {
                thread: "read-back",
            }))
        });
        (copied, verified)
    });
    match (copied, verified_behind) {
        // The read-back thread's own error explains why the writer stopped.
        (Err(Error::ReadBackStopped), Some(Err(e))) => Err(blame(random, e)),
        (Err(e), _) => Err(e),
        (Ok(_), Some(Err(e))) => Err(blame(random, e)),
        (Ok(w), v) => Ok(Written {
            verified_behind: v.transpose()?,
            ..w
        }),
    }
}

/// Step 3: if the target is larger than the image and holds a GPT, moves
/// its backup to the target's end (`sector` tried first, then the other
/// of 512/4096: a GPT header can only be at LBA 1 of its own sector
/// size) and flushes again.
fn relocate_gpt<T: FlashTarget + ?Sized>(
    target: &mut T,
    sector: SectorSize,
    image_bytes: u64,
) -> Result<Option<GptRelocation>> {
    let cap = target.capacity().map_err(io_err("sizing the target", 0))?;
    if cap <= image_bytes {
        return Ok(None);
    }
    let other = if sector == SectorSize::S512 {
        SectorSize::S4096
    } else {
        SectorSize::S512
    };
    for ss in [sector, other] {
        if let Some(moved) = kiln_part::move_backup_gpt(target, ss, cap).map_err(Error::Gpt)? {
            target
                .sync_data()
                .map_err(io_err("syncing the target", 0))?;
            return Ok(Some(moved));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::HoleMode;
    use kiln_artifact::bmap::nonzero_ranges;
    use kiln_units::WriteAt;
    use std::fs::File;
    use std::io;

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
