//! bmap files checked by bmaptool: `bmaptool copy` with our bmap
//! reproduces the image, refuses corrupted data and a tampered bmap; our
//! parser reads what `bmaptool create` writes.

mod common;

use std::path::Path;
use std::process::Command;

use common::{cmp_equal, make_image, ok, require, run};
use kiln_artifact::bmap::{nonzero_ranges, BlockRange, Bmap, BMAP_BLOCK_SIZE, BMAP_MAX_FILE_BYTES};

fn our_bmap(image: &Path, extents: &[(u64, u64)]) -> Bmap {
    let f = std::fs::File::open(image).unwrap();
    let size = f.metadata().unwrap().len();
    let ranges = BlockRange::cover_extents(extents, BMAP_BLOCK_SIZE).unwrap();
    Bmap::from_image(&f, size, BMAP_BLOCK_SIZE, &ranges).unwrap()
}

#[test]
fn bmaptool_copy_reproduces_image_with_our_bmap() {
    require("bmaptool", "bmap-tools");
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    let extents = make_image(&image);
    let bmap = our_bmap(&image, &extents);
    assert_eq!(bmap.ranges().len(), 4);
    let bmap_path = dir.path().join("disk.bmap");
    bmap.write_to(std::fs::File::create(&bmap_path).unwrap())
        .unwrap();
    // Our parser accepts our own output.
    assert_eq!(
        Bmap::parse(&std::fs::read(&bmap_path).unwrap()).unwrap(),
        bmap
    );

    let target = dir.path().join("target.img");
    let out = ok(Command::new("bmaptool")
        .arg("copy")
        .arg("--bmap")
        .arg(&bmap_path)
        .arg(&image)
        .arg(&target));
    let _ = out;
    assert!(
        cmp_equal(&image, &target),
        "bmaptool copy output differs from the image"
    );

    // bmaptool checks our per-range checksums: corrupt mapped data.
    let bad_image = dir.path().join("bad.img");
    std::fs::copy(&image, &bad_image).unwrap();
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&bad_image)
            .unwrap();
        f.write_all_at(b"X", (5 << 20) + 12345).unwrap();
    }
    let r = run(Command::new("bmaptool")
        .arg("copy")
        .arg("--bmap")
        .arg(&bmap_path)
        .arg(&bad_image)
        .arg(dir.path().join("t2.img")));
    assert!(
        !r.status.success(),
        "bmaptool accepted data that does not match our range checksum"
    );
    assert!(String::from_utf8_lossy(&r.stderr).contains("checksum mismatch"));

    // bmaptool checks our whole-file checksum: tamper with the bmap.
    let text = std::fs::read_to_string(&bmap_path).unwrap();
    let tampered = text.replacen(
        "    <!-- Image size in bytes -->",
        "    <!-- Image size in bytes! -->",
        1,
    );
    assert_ne!(tampered, text);
    let tampered_path = dir.path().join("tampered.bmap");
    std::fs::write(&tampered_path, tampered).unwrap();
    let r = run(Command::new("bmaptool")
        .arg("copy")
        .arg("--bmap")
        .arg(&tampered_path)
        .arg(&image)
        .arg(dir.path().join("t3.img")));
    assert!(
        !r.status.success(),
        "bmaptool accepted a bmap with a wrong file checksum"
    );
    assert!(matches!(
        Bmap::parse(&std::fs::read(&tampered_path).unwrap()),
        Err(kiln_artifact::Error::BmapChecksum { .. })
    ));
}

#[test]
fn bmaptool_copy_of_compressed_image_with_our_bmap() {
    // bmaptool decompresses .zst itself; the bmap describes the raw image.
    require("bmaptool", "bmap-tools");
    require("zstd", "zstd");
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    let extents = make_image(&image);
    let bmap = our_bmap(&image, &extents);
    let bmap_path = dir.path().join("disk.bmap");
    bmap.write_to(std::fs::File::create(&bmap_path).unwrap())
        .unwrap();
    {
        use kiln_artifact::compress::{CompressOptions, Compression, Encoder};
        let mut e = Encoder::new(
            std::fs::File::create(dir.path().join("disk.img.zst")).unwrap(),
            &CompressOptions::new(Compression::Zstd).threads(2),
        )
        .unwrap();
        std::io::copy(&mut std::fs::File::open(&image).unwrap(), &mut e).unwrap();
        e.finish().unwrap();
    }
    let target = dir.path().join("target.img");
    ok(Command::new("bmaptool")
        .arg("copy")
        .arg("--bmap")
        .arg(&bmap_path)
        .arg(dir.path().join("disk.img.zst"))
        .arg(&target));
    assert!(cmp_equal(&image, &target));
}

#[test]
fn our_parser_reads_bmaptool_create_output() {
    require("bmaptool", "bmap-tools");
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    make_image(&image);
    let created = dir.path().join("created.bmap");
    ok(Command::new("bmaptool")
        .arg("create")
        .arg("-o")
        .arg(&created)
        .arg(&image));
    let theirs =
        Bmap::read_from(std::fs::File::open(&created).unwrap(), BMAP_MAX_FILE_BYTES).unwrap();
    let f = std::fs::File::open(&image).unwrap();
    assert_eq!(theirs.image_size(), f.metadata().unwrap().len());
    assert_eq!(theirs.block_size(), 4096);
    assert!(!theirs.ranges().is_empty());
    // Their mapped ranges, hashed by us, give their checksums.
    let blocks: Vec<BlockRange> = theirs.ranges().iter().map(|r| r.blocks).collect();
    let ours = Bmap::from_image(&f, theirs.image_size(), 4096, &blocks).unwrap();
    assert_eq!(ours.ranges(), theirs.ranges());
    // Every non-zero block is inside a range bmaptool found.
    for nz in nonzero_ranges(&f, 4096).unwrap() {
        assert!(
            blocks
                .iter()
                .any(|b| b.first <= nz.first && nz.last <= b.last),
            "non-zero blocks {nz:?} not mapped by bmaptool"
        );
    }
}
