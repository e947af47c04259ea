//! GPT checked by the real tools (sgdisk -v, sfdisk -d, blkid, partx) on a
//! sparse 8 GB image, the reader on our and sfdisk-made GPTs, corruption
//! of the primary copy, determinism, and growing the disk.

mod common;

use common::*;
use kiln_part::{
    gpt_types, read_table, relocate_gpt_backup, resize_partition, restore_primary_gpt, BootCode,
    Error, Gpt, GptPartition, GptProblem, GptSource, PartitionType, Scheme,
};
use kiln_units::{ReadAt, WriteAt};

fn sgdisk_clean(img: &std::path::Path) -> String {
    let (out, err, _) = run("sgdisk", &["-v", s(img)]);
    assert!(
        out.contains("No problems found"),
        "sgdisk -v:\n{out}\n{err}"
    );
    out
}

#[test]
fn nuc_gpt_layout_on_8gb() {
    let dir = tempfile::tempdir().unwrap();
    let (img, mut f) = sparse(dir.path(), "nuc-gpt.img", DISK_8GB);
    nuc_gpt(DISK_8GB).write_to(&mut f, DISK_8GB).unwrap();
    sgdisk_clean(&img);

    let (header, rows) = sfdisk_dump(&img);
    assert_eq!(header["label"], "gpt");
    assert_eq!(header["label-id"], guid(0xd1).to_string().to_uppercase());
    assert_eq!(header["first-lba"], "34");
    assert_eq!(header["last-lba"], (15625000 - 34).to_string());
    let esp = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
    let linux = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
    let last_usable = 15625000 - 34;
    let expect = [
        (1, 8192, 81920, esp, "resin-boot"),
        (2, 90112, 2048000, linux, "resin-rootA"),
        (3, 2138112, 2048000, linux, "resin-rootB"),
        (4, 4186112, 40960, linux, "resin-state"),
        (5, 4227072, last_usable + 1 - 4227072, linux, "resin-data"),
    ];
    assert_eq!(rows.len(), expect.len());
    for (r, e) in rows.iter().zip(expect) {
        assert_eq!((r.number, r.start, r.size), (e.0, e.1, e.2));
        assert_eq!(r.fields["type"], e.3);
        assert_eq!(r.fields["name"], e.4);
        assert_eq!(r.fields["uuid"], guid(e.0 as u8).to_string().to_uppercase());
        assert!(!r.fields.contains_key("attrs"));
    }

    let b = blkid(&img);
    assert_eq!(b["PTTYPE"], "gpt");
    assert_eq!(b["PTUUID"], guid(0xd1).to_string());

    let px = partx(&img);
    let t = read_table(&f).unwrap();
    match t.scheme {
        Scheme::Gpt {
            disk_guid,
            source,
            primary_problem,
            backup_problem,
            first_usable_lba,
            last_usable_lba,
        } => {
            assert_eq!(disk_guid, guid(0xd1));
            assert_eq!(source, GptSource::Primary);
            assert_eq!((primary_problem, backup_problem), (None, None));
            assert_eq!((first_usable_lba, last_usable_lba), (34, last_usable));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.partitions.len(), 5);
    assert_eq!(px.len(), 5);
    for (p, e) in t.partitions.iter().zip(expect) {
        assert_eq!(
            (p.number, p.start_bytes, p.size_bytes),
            (e.0, e.1 * 512, e.2 * 512)
        );
        assert_eq!(p.name.as_deref(), Some(e.4));
        assert_eq!(p.guid, Some(guid(e.0 as u8)));
        let PartitionType::Gpt(ty) = p.partition_type else {
            panic!()
        };
        assert_eq!(ty.to_string().to_uppercase(), e.3);
        let (start, sectors, uuid, name) = &px[&p.number];
        assert_eq!((*start, *sectors), (e.1, e.2));
        assert_eq!(uuid, &guid(e.0 as u8).to_string());
        assert_eq!(name, e.4);
    }
    assert_eq!(
        t.partition(1).unwrap().partition_type,
        PartitionType::Gpt(gpt_types::EFI_SYSTEM)
    );
    // Protective MBR: one 0xEE record from LBA 1 over the whole disk.
    let mut pmbr = [0u8; 512];
    f.read_exact_at(&mut pmbr, 0).unwrap();
    assert_eq!(pmbr[446 + 4], 0xEE);
    assert_eq!(
        &pmbr[446 + 8..446 + 16],
        &[&1u32.to_le_bytes()[..], &(15625000u32 - 1).to_le_bytes()].concat()[..]
    );
    assert!(pmbr[446 + 16..510].iter().all(|&b| b == 0), "hybrid-free");
}

/// A small GPT image written by us (64 MiB, three partitions).
fn small_gpt(dir: &std::path::Path, disk: u64) -> (std::path::PathBuf, std::fs::File) {
    let (img, mut f) = sparse(dir, "small.img", disk);
    let mut gpt = Gpt::new(guid(9))
        .align(4 * MIB)
        .boot_code(BootCode::Code(Box::new([0xEB; 440])));
    gpt.push(GptPartition::new(
        "resin-boot",
        gpt_types::EFI_SYSTEM,
        guid(1),
        4 * MIB,
        8 * MIB,
    ))
    .push(
        GptPartition::new(
            "état-ünicode",
            gpt_types::LINUX_FILESYSTEM,
            guid(2),
            12 * MIB,
            8 * MIB,
        )
        .attributes(1 << 2 | 1 << 63),
    )
    .push(GptPartition::new(
        "resin-data",
        gpt_types::LINUX_FILESYSTEM,
        guid(3),
        20 * MIB,
        16 * MIB,
    ));
    gpt.write_to(&mut f, disk).unwrap();
    (img, f)
}

#[test]
fn names_attributes_boot_code() {
    let dir = tempfile::tempdir().unwrap();
    let (img, f) = small_gpt(dir.path(), 64 * MIB);
    sgdisk_clean(&img);
    let (_, rows) = sfdisk_dump(&img);
    assert_eq!(rows[1].fields["name"], "état-ünicode");
    assert_eq!(rows[1].fields["attrs"], "LegacyBIOSBootable GUID:63");
    let t = read_table(&f).unwrap();
    let p = t.partition(2).unwrap();
    assert_eq!(p.name.as_deref(), Some("état-ünicode"));
    assert_eq!(p.attributes, 1 << 2 | 1 << 63);
    assert!(p.bootable);
    let mut code = [0u8; 440];
    f.read_exact_at(&mut code, 0).unwrap();
    assert!(code.iter().all(|&b| b == 0xEB));
}

#[test]
fn reads_sfdisk_made_gpt() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _f) = sparse(dir.path(), "sf.img", 100 * MIB);
    let script = "label: gpt\nlabel-id: 01234567-89AB-CDEF-0123-456789ABCDEF\n\
        start=2048, size=20480, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=11111111-2222-3333-4444-555555555555, name=\"EFI system\"\n\
        start=22528, size=4096, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, name=\"swap\", attrs=\"LegacyBIOSBootable\"\n\
        type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"rest\"\n";
    let mut child = std::process::Command::new("sfdisk")
        .args(["-q", s(&img)])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sfdisk missing: install the Debian package `fdisk`");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    let (header, rows) = sfdisk_dump(&img);
    let f = std::fs::File::open(&img).unwrap();
    let t = read_table(&f).unwrap();
    let Scheme::Gpt {
        disk_guid, source, ..
    } = t.scheme
    else {
        panic!()
    };
    assert_eq!(disk_guid.to_string().to_uppercase(), header["label-id"]);
    assert_eq!(source, GptSource::Primary);
    assert_eq!(t.partitions.len(), 3);
    for (p, r) in t.partitions.iter().zip(&rows) {
        assert_eq!(
            (p.number, p.start_bytes / 512, p.size_bytes / 512),
            (r.number, r.start, r.size)
        );
        assert_eq!(p.name.as_deref(), Some(r.fields["name"].as_str()));
        assert_eq!(p.guid.unwrap().to_string().to_uppercase(), r.fields["uuid"]);
        let PartitionType::Gpt(ty) = p.partition_type else {
            panic!()
        };
        assert_eq!(ty.to_string().to_uppercase(), r.fields["type"]);
    }
    assert!(t.partition(2).unwrap().bootable);
    assert_eq!(
        t.partition(1).unwrap().guid.unwrap().to_string(),
        "11111111-2222-3333-4444-555555555555"
    );
}

#[test]
fn corrupt_primary_falls_back_to_backup() {
    let dir = tempfile::tempdir().unwrap();
    let disk = 64 * MIB;
    let (img, mut f) = small_gpt(dir.path(), disk);
    let good = read_table(&f).unwrap();

    // 1. Flip a byte of the primary header (disk GUID field): header CRC.
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 512 + 60).unwrap();
    f.write_all_at(&[b[0] ^ 0xFF], 512 + 60).unwrap();
    let (out, _, _) = run("sgdisk", &["-v", s(&img)]);
    assert!(out.contains("corrupt GPT"), "sgdisk did not notice:\n{out}");
    let t = read_table(&f).unwrap();
    match t.scheme {
        Scheme::Gpt {
            source,
            primary_problem,
            backup_problem,
            disk_guid,
            ..
        } => {
            assert_eq!(source, GptSource::Backup);
            assert_eq!(primary_problem, Some(GptProblem::HeaderCrc));
            assert_eq!(backup_problem, None);
            assert_eq!(disk_guid, guid(9));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.partitions, good.partitions);
    f.write_all_at(&b, 512 + 60).unwrap();
    assert_eq!(read_table(&f).unwrap(), good);

    // 2. Damage the primary entry array (a name byte): array CRC.
    f.write_all_at(&[0x41], 1024 + 128 + 60).unwrap();
    let t = read_table(&f).unwrap();
    let Scheme::Gpt {
        source,
        primary_problem,
        ..
    } = t.scheme
    else {
        panic!()
    };
    assert_eq!(
        (source, primary_problem),
        (GptSource::Backup, Some(GptProblem::EntriesCrc))
    );
    assert_eq!(t.partitions, good.partitions);

    // 3. Zero the primary header entirely: signature.
    f.write_all_at(&[0u8; 512], 512).unwrap();
    let Scheme::Gpt {
        source,
        primary_problem,
        ..
    } = read_table(&f).unwrap().scheme
    else {
        panic!()
    };
    assert_eq!(
        (source, primary_problem),
        (GptSource::Backup, Some(GptProblem::BadSignature))
    );

    // 4. Both copies gone: a typed error naming both problems.
    f.write_all_at(&[0u8; 512], disk - 512).unwrap();
    match read_table(&f) {
        Err(Error::CorruptGpt { primary, backup }) => {
            assert_eq!(
                (primary, backup),
                (GptProblem::BadSignature, GptProblem::BadSignature)
            )
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn hostile_entry_array_is_bounded() {
    // A primary header claiming 2^32-1 entries of 2^31 bytes (CRC made
    // valid): refused without allocating, backup used.
    let dir = tempfile::tempdir().unwrap();
    let (_, mut f) = small_gpt(dir.path(), 64 * MIB);
    let mut h = [0u8; 92];
    f.read_exact_at(&mut h, 512).unwrap();
    h[80..84].copy_from_slice(&u32::MAX.to_le_bytes());
    h[84..88].copy_from_slice(&(1u32 << 31).to_le_bytes());
    h[16..20].fill(0);
    let crc = crc32fast::hash(&h);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    f.write_all_at(&h, 512).unwrap();
    let Scheme::Gpt {
        source,
        primary_problem,
        ..
    } = read_table(&f).unwrap().scheme
    else {
        panic!()
    };
    assert_eq!(
        (source, primary_problem),
        (GptSource::Backup, Some(GptProblem::BadEntryArray))
    );
}

#[test]
fn deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let disk = 96 * MIB;
    let (_, a) = small_gpt(dir.path(), disk);
    let (pa, mut b) = sparse(dir.path(), "b.img", disk);
    drop(pa);
    let mut gpt = Gpt::new(guid(9))
        .align(4 * MIB)
        .boot_code(BootCode::Code(Box::new([0xEB; 440])));
    gpt.push(GptPartition::new(
        "resin-boot",
        gpt_types::EFI_SYSTEM,
        guid(1),
        4 * MIB,
        8 * MIB,
    ))
    .push(
        GptPartition::new(
            "état-ünicode",
            gpt_types::LINUX_FILESYSTEM,
            guid(2),
            12 * MIB,
            8 * MIB,
        )
        .attributes(1 << 2 | 1 << 63),
    )
    .push(GptPartition::new(
        "resin-data",
        gpt_types::LINUX_FILESYSTEM,
        guid(3),
        20 * MIB,
        16 * MIB,
    ));
    gpt.write_to(&mut b, disk).unwrap();
    let mut va = vec![0u8; disk as usize];
    let mut vb = vec![0u8; disk as usize];
    a.read_exact_at(&mut va, 0).unwrap();
    b.read_exact_at(&mut vb, 0).unwrap();
    assert!(va == vb);
    // And the same bytes in memory as on a file.
    let mut v = Vec::new();
    gpt.write_to(&mut v, disk).unwrap();
    assert!(v == va);
    // Pinned digest of the whole 96 MiB image (a reviewed decision to change).
    assert_eq!(crc32fast::hash(&va), PINNED_GPT_CRC);
}

const PINNED_GPT_CRC: u32 = 0x5845b49f;

#[test]
fn grow_relocates_backup_and_resizes_last_partition() {
    let dir = tempfile::tempdir().unwrap();
    let disk = 64 * MIB;
    let (img, mut f) = small_gpt(dir.path(), disk);
    sgdisk_clean(&img);
    // Grow the file 2x: the backup is now in the middle.
    f.set_len(2 * disk).unwrap();
    let (out, _, _) = run("sgdisk", &["-v", s(&img)]);
    assert!(
        !out.contains("No problems found"),
        "sgdisk should see the misplaced backup:\n{out}"
    );
    let Scheme::Gpt {
        source,
        backup_problem,
        ..
    } = read_table(&f).unwrap().scheme
    else {
        panic!()
    };
    assert_eq!(source, GptSource::Primary);
    assert!(backup_problem.is_some());

    assert!(matches!(
        resize_partition(&mut f, 3, 20 * MIB),
        Err(Error::CannotResize { number: 3, .. })
    ));
    relocate_gpt_backup(&mut f, 2 * disk).unwrap();
    sgdisk_clean(&img);
    let t = read_table(&f).unwrap();
    let Scheme::Gpt {
        backup_problem,
        last_usable_lba,
        ..
    } = t.scheme
    else {
        panic!()
    };
    assert_eq!(backup_problem, None);
    assert_eq!(last_usable_lba, 2 * disk / 512 - 34);
    // The stale backup header at the old end is gone.
    let mut sig = [0u8; 8];
    f.read_exact_at(&mut sig, disk - 512).unwrap();
    assert_eq!(sig, [0; 8]);
    let (header, _) = sfdisk_dump(&img);
    assert_eq!(header["last-lba"], (2 * disk / 512 - 34).to_string());

    // Grow the last partition to the end of the usable area.
    let p3 = t.partition(3).unwrap().clone();
    let new_size = (last_usable_lba + 1) * 512 - p3.start_bytes;
    let t2 = resize_partition(&mut f, 3, new_size).unwrap();
    sgdisk_clean(&img);
    assert_eq!(t2.partition(3).unwrap().size_bytes, new_size);
    let (_, rows) = sfdisk_dump(&img);
    assert_eq!(rows[2].size, new_size / 512);
    assert_eq!(rows[2].fields["name"], "resin-data");
    // Everything else unchanged.
    assert_eq!(t2.partitions[..2], t.partitions[..2]);

    // Refusals: past the usable area, into a neighbour, unknown number.
    assert!(matches!(
        resize_partition(&mut f, 3, new_size + 512),
        Err(Error::OutsideArea { .. })
    ));
    assert!(matches!(
        resize_partition(&mut f, 1, 9 * MIB),
        Err(Error::Overlap { .. })
    ));
    assert!(matches!(
        resize_partition(&mut f, 7, MIB),
        Err(Error::NoSuchPartition { number: 7 })
    ));
    assert!(matches!(
        resize_partition(&mut f, 3, 1000),
        Err(Error::Misaligned { .. })
    ));
    // Shrinking the disk below the last partition is refused before writing.
    assert!(matches!(
        relocate_gpt_backup(&mut f, disk),
        Err(Error::OutsideArea { .. })
    ));
    sgdisk_clean(&img);
}

#[test]
fn mismatched_backup_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let disk = 64 * MIB;
    let (img, mut f) = small_gpt(dir.path(), disk);
    // A different, self-consistent table; take its backup (last 33 sectors).
    let mut other = Gpt::new(guid(9));
    other.push(GptPartition::new(
        "other",
        gpt_types::LINUX_FILESYSTEM,
        guid(1),
        4 * MIB,
        8 * MIB,
    ));
    let mut v = Vec::new();
    other.write_to(&mut v, disk).unwrap();
    let tail = &v[(disk - 33 * 512) as usize..];
    f.write_all_at(tail, disk - 33 * 512).unwrap();
    let (out, _, _) = run("sgdisk", &["-v", s(&img)]);
    assert!(
        !out.contains("No problems found"),
        "sgdisk should see the mismatch:\n{out}"
    );
    let t = read_table(&f).unwrap();
    let Scheme::Gpt {
        source,
        primary_problem,
        backup_problem,
        ..
    } = t.scheme
    else {
        panic!()
    };
    assert_eq!(
        (source, primary_problem, backup_problem),
        (GptSource::Primary, None, Some(GptProblem::CopiesDiffer))
    );
    assert_eq!(t.partitions.len(), 3);
}

#[test]
fn backup_found_through_alternate_lba_after_unrelocated_grow() {
    // The image was grown (backup no longer at the end) and then the
    // primary entry array got damaged: the backup is found where the
    // intact primary header says it is.
    let dir = tempfile::tempdir().unwrap();
    let disk = 64 * MIB;
    let (_, mut f) = small_gpt(dir.path(), disk);
    let good = read_table(&f).unwrap();
    f.set_len(2 * disk).unwrap();
    f.write_all_at(&[0x41], 1024 + 60).unwrap();
    let t = read_table(&f).unwrap();
    let Scheme::Gpt {
        source,
        primary_problem,
        backup_problem,
        ..
    } = t.scheme
    else {
        panic!()
    };
    assert_eq!(
        (source, primary_problem, backup_problem),
        (GptSource::Backup, Some(GptProblem::EntriesCrc), None)
    );
    assert_eq!(t.partitions, good.partitions);
    // Without the hint (primary header zeroed too) both copies are lost.
    f.write_all_at(&[0u8; 512], 512).unwrap();
    assert!(matches!(read_table(&f), Err(Error::CorruptGpt { .. })));
}

#[test]
fn a_damaged_primary_is_restored_from_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let disk = 64 * MIB;
    let (img, mut f) = small_gpt(dir.path(), disk);
    let mut original = vec![0u8; 34 * 512];
    f.read_exact_at(&mut original, 0).unwrap();
    let good = read_table(&f).unwrap();
    // An intact primary is left alone.
    assert!(!restore_primary_gpt(&mut f).unwrap());
    // Header zeroed, then the entry array damaged too.
    for (at, len) in [(512u64, 512usize), (2 * 512, 32 * 512)] {
        f.write_all_at(&vec![0u8; len], at).unwrap();
        assert!(restore_primary_gpt(&mut f).unwrap());
        let mut now = vec![0u8; 34 * 512];
        f.read_exact_at(&mut now, 0).unwrap();
        assert!(
            now == original,
            "the restored primary differs from the original"
        );
        assert_eq!(read_table(&f).unwrap(), good);
        sgdisk_clean(&img);
    }
    // Both copies gone: refused, nothing written.
    f.write_all_at(&[0u8; 512], 512).unwrap();
    f.write_all_at(&[0u8; 512], disk - 512).unwrap();
    match restore_primary_gpt(&mut f) {
        Err(Error::CorruptGpt { primary, backup }) => {
            assert_eq!(primary, GptProblem::BadSignature);
            assert_eq!(backup, GptProblem::BadSignature);
        }
        other => panic!("{other:?}"),
    }
}
