//! The flash engine on file targets: written bytes equal the image (`cmp`),
//! read-back verification passes, and a corrupted target is detected with
//! the failing range named. Safety refusals with this machine's real
//! mountinfo.

// The validator helpers shared with kiln-artifact's tests.
#[path = "../../artifact/tests/common/mod.rs"]
mod common;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use common::{cmp_equal, make_image, ok, require};
use kiln_artifact::bmap::{BlockRange, Bmap, BMAP_BLOCK_SIZE};
use kiln_artifact::compress::Decoder;
use kiln_flash::mountinfo::{parse_mountinfo, root_device};
use kiln_flash::safety::{check_target, ImageFacts, TargetFacts, TargetKind};
use kiln_flash::{
    flash, verify_target, FlashOptions, FlashTarget, HoleMode, ImageSource, Phase, Progress,
    ReadBack,
};
use kiln_flash::{Error, Refusal};
use kiln_units::{ReadAt, WriteAt};

fn bmap_for(image: &Path, extents: &[(u64, u64)]) -> Bmap {
    let f = File::open(image).unwrap();
    let ranges = BlockRange::cover_extents(extents, BMAP_BLOCK_SIZE).unwrap();
    Bmap::from_image(&f, f.metadata().unwrap().len(), BMAP_BLOCK_SIZE, &ranges).unwrap()
}

fn open_target(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap()
}

#[test]
fn flash_to_file_with_bmap_random_and_streams() {
    require("xz", "xz-utils");
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    let extents = make_image(&image);
    let bmap = bmap_for(&image, &extents);
    let size = bmap.image_size();

    // A regular file needs force.
    let facts = TargetFacts {
        kind: TargetKind::RegularFile,
        size_bytes: 0,
        mounted_at: vec![],
        holds_root: false,
        logical_sector: None,
    };
    let image_facts = ImageFacts {
        bytes: size,
        table_sector: None,
    };
    assert!(matches!(
        check_target(&facts, &image_facts, false),
        Err(Error::Refused(Refusal::RegularFileWithoutForce))
    ));
    check_target(&facts, &image_facts, true).unwrap();

    // Random access + bmap.
    let target_path = dir.path().join("t1.img");
    let mut target = open_target(&target_path);
    let src = File::open(&image).unwrap();
    let mut reports: Vec<Progress> = Vec::new();
    let r = flash(
        ImageSource::Random(&src),
        Some(&bmap),
        &mut target,
        &FlashOptions::new(),
        &mut |p| reports.push(p),
    )
    .unwrap();
    assert!(cmp_equal(&image, &target_path));
    assert_eq!(r.written_bytes, bmap.mapped_bytes());
    assert_eq!(r.verified_bytes, bmap.mapped_bytes());
    assert_eq!(r.ranges, bmap.ranges().len());
    assert_eq!(r.gpt, None);
    let last_write = reports
        .iter()
        .rev()
        .find(|p| p.phase == Phase::Write)
        .unwrap();
    assert_eq!(last_write.done_bytes, bmap.mapped_bytes());
    assert_eq!(last_write.total_bytes, Some(bmap.mapped_bytes()));
    assert!(reports.iter().any(|p| p.phase == Phase::Verify));
    assert_eq!(
        verify_target(&target, &bmap, &mut |_| {}).unwrap(),
        bmap.mapped_bytes()
    );

    // xz stream (made by the CLI) + bmap, read in order.
    ok(Command::new("xz").args(["-1", "-T2", "-k"]).arg(&image));
    let xz_path = dir.path().join("disk.img.xz");
    let mut dec = Decoder::new(File::open(&xz_path).unwrap()).unwrap();
    let t2 = dir.path().join("t2.img");
    let mut target = open_target(&t2);
    flash(
        ImageSource::Stream(&mut dec),
        Some(&bmap),
        &mut target,
        &FlashOptions::new(),
        &mut |_| {},
    )
    .unwrap();
    assert!(cmp_equal(&image, &t2));

    // Stream without a bmap: everything is written and verified.
    let mut dec = Decoder::new(File::open(&xz_path).unwrap()).unwrap();
    let t3 = dir.path().join("t3.img");
    let mut target = open_target(&t3);
    let r = flash(
        ImageSource::Stream(&mut dec),
        None,
        &mut target,
        &FlashOptions::new(),
        &mut |_| {},
    )
    .unwrap();
    assert!(cmp_equal(&image, &t3));
    assert_eq!(r.written_bytes, size);
    assert_eq!(r.verified_bytes, size);
}

#[test]
fn holes_zeroed_or_discarded_on_a_dirty_target() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    let extents = make_image(&image);
    let bmap = bmap_for(&image, &extents);
    for mode in [HoleMode::Zero, HoleMode::Discard, HoleMode::Skip] {
        let t = dir.path().join("dirty.img");
        std::fs::write(&t, vec![0xAAu8; bmap.image_size() as usize]).unwrap();
        let mut target = open_target(&t);
        let src = File::open(&image).unwrap();
        let r = flash(
            ImageSource::Random(&src),
            Some(&bmap),
            &mut target,
            &FlashOptions::new().holes(mode),
            &mut |_| {},
        )
        .unwrap();
        let equal = cmp_equal(&image, &t);
        if mode == HoleMode::Skip {
            // Holes keep the old bytes; mapped data still verifies.
            assert!(!equal);
            assert_eq!(r.hole_bytes, 0);
        } else {
            assert!(equal, "{mode:?}");
            assert_eq!(r.hole_bytes, bmap.image_size() - bmap.mapped_bytes());
        }
    }
}

/// A file that silently corrupts one byte as it is written, like a bad
/// medium; with `read_back`, flash() verifies it behind the writer on a
/// second handle (otherwise after writing).
struct BadMedium {
    file: File,
    corrupt_at: u64,
    read_back: bool,
}

impl ReadAt for BadMedium {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(&self.file, buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        ReadAt::size(&self.file)
    }
}

impl WriteAt for BadMedium {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut data = buf.to_vec();
        if (offset..offset + buf.len() as u64).contains(&self.corrupt_at) {
            data[(self.corrupt_at - offset) as usize] ^= 0x01;
        }
        FileExt::write_all_at(&self.file, &data, offset)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

impl FlashTarget for BadMedium {
    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.file.discard(offset, len)
    }
    fn drop_cache(&self, offset: u64, len: u64) -> io::Result<()> {
        self.file.drop_cache(offset, len)
    }
    fn capacity(&self) -> io::Result<u64> {
        self.file.capacity()
    }
    fn grow_to(&mut self, len: u64) -> io::Result<()> {
        self.file.grow_to(len)
    }
    fn read_back(&self) -> Option<Box<dyn ReadBack + Send>> {
        if self.read_back {
            self.file.read_back()
        } else {
            None
        }
    }
}

#[test]
fn corrupted_target_fails_verify_naming_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    let extents = make_image(&image);
    let bmap = bmap_for(&image, &extents);
    let src = File::open(&image).unwrap();
    // The second range covers 5 MiB .. 8 MiB: blocks 1280-2047.
    let bad_offset = (6 << 20) + 77;

    // 1. The medium corrupts a byte while flashing: flash() fails, with
    //    the read-back after writing and behind the writer alike.
    for read_back in [false, true] {
        let mut target = BadMedium {
            file: open_target(&dir.path().join("bad.img")),
            corrupt_at: bad_offset,
            read_back,
        };
        let e = flash(
            ImageSource::Random(&src),
            Some(&bmap),
            &mut target,
            &FlashOptions::new(),
            &mut |_| {},
        )
        .unwrap_err();
        match &e {
            Error::VerifyFailed {
                first_block,
                last_block,
                start_byte,
                end_byte,
                ..
            } => {
                assert_eq!((*first_block, *last_block), (1280, 2047));
                assert!((*start_byte..*end_byte).contains(&bad_offset));
            }
            other => panic!("expected VerifyFailed, got {other:?} (read_back {read_back})"),
        }
        assert!(e.to_string().contains("blocks 1280-2047"), "{e}");
    }

    // 2. A good flash, then one byte flipped on the target: verify fails.
    let good = dir.path().join("good.img");
    let mut target = open_target(&good);
    flash(
        ImageSource::Random(&src),
        Some(&bmap),
        &mut target,
        &FlashOptions::new(),
        &mut |_| {},
    )
    .unwrap();
    let third = bmap.ranges()[2];
    let (s, _) = bmap.byte_range(third.blocks);
    let mut b = [0u8; 1];
    FileExt::read_exact_at(&target, &mut b, s + 5000).unwrap();
    FileExt::write_all_at(&target, &[b[0] ^ 0x80], s + 5000).unwrap();
    target.sync_all().unwrap();
    match verify_target(&target, &bmap, &mut |_| {}) {
        Err(Error::VerifyFailed {
            first_block,
            last_block,
            ..
        }) => {
            assert_eq!(
                (first_block, last_block),
                (third.blocks.first, third.blocks.last)
            );
        }
        other => panic!("expected VerifyFailed, got {other:?}"),
    }

    // 3. Without a bmap, the failing 64 MiB segment is named.
    let mut target = BadMedium {
        file: open_target(&dir.path().join("bad2.img")),
        corrupt_at: bad_offset,
        read_back: true,
    };
    let e = flash(
        ImageSource::Random(&src),
        None,
        &mut target,
        &FlashOptions::new(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::VerifyFailed {
                first_block: 0,
                start_byte: 0,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn image_not_matching_bmap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    let extents = make_image(&image);
    let bmap = bmap_for(&image, &extents);
    File::options()
        .write(true)
        .open(&image)
        .unwrap()
        .write_all_at(b"?", 3)
        .unwrap();
    let src = File::open(&image).unwrap();
    let mut target = open_target(&dir.path().join("t.img"));
    let e = flash(
        ImageSource::Random(&src),
        Some(&bmap),
        &mut target,
        &FlashOptions::new(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::SourceMismatch { first_block: 0, .. }),
        "{e:?}"
    );
}

#[test]
fn system_disk_refused_with_real_mountinfo() {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounts = parse_mountinfo(&text).unwrap();
    let root = root_device(&mounts).unwrap();
    let facts = TargetFacts::from_mountinfo(TargetKind::BlockDevice, u64::MAX, &[root], &mounts);
    assert!(facts.holds_root);
    let gib = ImageFacts {
        bytes: 1 << 30,
        table_sector: Some(512),
    };
    assert!(matches!(
        check_target(&facts, &gib, true),
        Err(Error::Refused(Refusal::HoldsRoot))
    ));
    let other = TargetFacts::from_mountinfo(TargetKind::BlockDevice, 100, &[(259, 9999)], &mounts);
    assert!(matches!(
        check_target(&other, &gib, true),
        Err(Error::Refused(Refusal::TooSmall {
            target_bytes: 100,
            ..
        }))
    ));
}
