//! Growing an MBR base image: the data partition (last logical) grows
//! together with its extended container; checked with sfdisk -V / -d.

mod common;

use common::*;
use kiln_part::{read_table, resize_partition, Error, MbrType};

#[test]
fn grow_logical_data_partition_and_extended() {
    let dir = tempfile::tempdir().unwrap();
    let small = 1024 * MIB;
    // fin layout with a "just enough" data partition of 100 MiB.
    let (img, mut f) = sparse(dir.path(), "fin.img", small);
    balena_mbr(0xf1, MbrType::FAT32_LBA, 320, small, Some(100))
        .write_to(&mut f, small)
        .unwrap();
    let (out, _, ok) = run("sfdisk", &["-V", s(&img)]);
    assert!(ok && out.contains("No errors detected"), "{out}");
    let before = read_table(&f).unwrap();
    assert_eq!(before.partition(6).unwrap().size_bytes, 100 * MIB);

    // The medium is 8 GB: grow the image file and the data partition.
    f.set_len(DISK_8GB).unwrap();
    let data_start = before.partition(6).unwrap().start_bytes;
    let t = resize_partition(&mut f, 6, DISK_8GB - data_start).unwrap();
    let (out, err, ok) = run("sfdisk", &["-V", s(&img)]);
    assert!(ok && out.contains("No errors detected"), "{out}{err}");
    let (_, rows) = sfdisk_dump(&img);
    let ext_start = 684 * 2048;
    assert_eq!(
        (rows[3].start, rows[3].size),
        (ext_start, 15625000 - ext_start)
    );
    assert_eq!(
        (rows[5].start, rows[5].size),
        (712 * 2048, 15625000 - 712 * 2048)
    );
    assert_eq!(t.partition(6).unwrap().end_bytes(), DISK_8GB);
    assert_eq!(t.partition(4).unwrap().end_bytes(), DISK_8GB);
    // Unchanged: p1-p3 and p5.
    for n in [1, 2, 3, 5] {
        assert_eq!(t.partition(n), before.partition(n));
    }

    // Growing the state partition (p5) into p6's EBR is refused.
    match resize_partition(&mut f, 5, 24 * MIB) {
        Err(Error::Overlap { name, other }) => {
            assert_eq!(name, "partition 5");
            assert!(other.contains("EBR of partition 6"), "{other}");
        }
        r => panic!("{r:?}"),
    }
    // Growing rootB into the extended partition is refused.
    assert!(matches!(
        resize_partition(&mut f, 3, 324 * MIB),
        Err(Error::Overlap { .. })
    ));
    // Past the disk end.
    assert!(matches!(
        resize_partition(&mut f, 6, DISK_8GB),
        Err(Error::OutsideArea { .. })
    ));
    // Shrinking p6 keeps the extended container as it is.
    let t = resize_partition(&mut f, 6, 200 * MIB).unwrap();
    assert_eq!(t.partition(6).unwrap().size_bytes, 200 * MIB);
    assert_eq!(t.partition(4).unwrap().end_bytes(), DISK_8GB);
    let (out, err, ok) = run("sfdisk", &["-V", s(&img)]);
    assert!(ok && out.contains("No errors detected"), "{out}{err}");
}

#[test]
fn grow_primary_partition() {
    let dir = tempfile::tempdir().unwrap();
    let disk = 256 * MIB;
    let (img, mut f) = sparse(dir.path(), "p.img", disk);
    let mut mbr = kiln_part::Mbr::new(3).align(4 * MIB);
    mbr.push_primary(
        kiln_part::MbrPartition::new("a", MbrType::FAT32_LBA, 4 * MIB, 8 * MIB).bootable(true),
    )
    .push_primary(kiln_part::MbrPartition::new(
        "b",
        MbrType::LINUX,
        12 * MIB,
        8 * MIB,
    ));
    mbr.write_to(&mut f, disk).unwrap();
    let t = resize_partition(&mut f, 2, disk - 12 * MIB).unwrap();
    let (_, rows) = sfdisk_dump(&img);
    assert_eq!(
        (rows[1].start, rows[1].size),
        (12 * 2048, (disk - 12 * MIB) / 512)
    );
    assert!(rows[0].bootable);
    assert_eq!(t.partition(2).unwrap().end_bytes(), disk);
    let (out, err, ok) = run("sfdisk", &["-V", s(&img)]);
    assert!(ok && out.contains("No errors detected"), "{out}{err}");
}
