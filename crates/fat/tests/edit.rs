//! Rebuilding volumes made by mkfs.fat + mcopy (FAT16 and FAT32, long
//! names, subdirectories, attributes) with edits, checked with fsck.fat,
//! mtools (mdir, mattrib, mcopy) and blkid.

mod common;

use common::{fsck_clean, mdir_paths, run, text, MIB};
use kiln_fat::{rebuild, volume_params, FatEdits, FatReader, FatType};
use kiln_tree::Timestamp;
use std::fs::File;
use std::path::Path;

const T: Timestamp = Timestamp::new(1_750_000_000, 0);

/// mkfs.fat + mcopy a tree with long names, nested directories, a
/// read-only hidden file, an empty file and a multi-cluster file.
fn mkfs_source(dir: &Path, flag: &str, size: u64) -> std::path::PathBuf {
    let src = dir.join(format!("tree{flag}"));
    std::fs::create_dir_all(src.join("overlays/nested dir")).unwrap();
    std::fs::create_dir_all(src.join("system-connections")).unwrap();
    std::fs::write(
        src.join("config.json"),
        b"{\"deviceType\":\"raspberrypi4-64\"}\n",
    )
    .unwrap();
    std::fs::write(src.join("cmdline.txt"), b"console=tty1 quiet\n").unwrap();
    std::fs::write(src.join("A Long File Name.txt"), b"long").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    let big: Vec<u8> = (0..3 * MIB + 123).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(src.join("start4.elf"), &big).unwrap();
    std::fs::write(src.join("overlays/vc4-kms-v3d.dtbo"), b"dtbo").unwrap();
    std::fs::write(src.join("overlays/nested dir/readme.md"), b"# r").unwrap();
    std::fs::write(
        src.join("system-connections/resin-sample.ignore"),
        b"[connection]",
    )
    .unwrap();
    let img = dir.join(format!("mkfs{flag}.img"));
    File::create(&img).unwrap().set_len(size).unwrap();
    let o = run(
        "mkfs.fat",
        "dosfstools",
        &[
            "-F",
            flag,
            "-n",
            "resin-boot",
            "-i",
            "1234ABCD",
            "-h",
            "8192",
            img.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let mut args = vec!["-s", "-m", "-i", img.to_str().unwrap()];
    let items: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path().to_str().unwrap().to_owned())
        .collect();
    args.extend(items.iter().map(String::as_str));
    args.push("::/");
    let o = run("mcopy", "mtools", &args);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = run(
        "mattrib",
        "mtools",
        &[
            "-i",
            img.to_str().unwrap(),
            "+r",
            "+h",
            "::/A Long File Name.txt",
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    img
}

/// `mdir -/ -a` entry lines (name, size, date, time, long name) per
/// directory, sorted within each directory (kiln writes entries in name
/// order, mcopy in arrival order), minus directory totals and the
/// free-space line, which edits change, and lines or directories
/// matching `skip`.
fn mdir_entries(img: &Path, skip: &[&str]) -> Vec<(String, Vec<String>)> {
    let o = run(
        "mdir",
        "mtools",
        &["-i", img.to_str().unwrap(), "-/", "-a", "::/"],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let (out, _) = text(&o);
    let mut blocks: Vec<(String, Vec<String>)> = vec![(String::new(), Vec::new())];
    for l in out.lines() {
        if l.starts_with("Directory for ") {
            blocks.push((l.to_owned(), Vec::new()));
        } else if !(l.trim().is_empty()
            || l.contains(" files ")
            || l.contains(" file ")
            || l.contains("bytes free")
            || skip.iter().any(|s| l.ends_with(s)))
        {
            if let Some(b) = blocks.last_mut() {
                b.1.push(l.to_owned());
            }
        }
    }
    blocks.retain(|(h, _)| !skip.iter().any(|s| h.contains(s)));
    for b in &mut blocks {
        b.1.sort();
    }
    blocks
}

fn mattrib(img: &Path) -> Vec<String> {
    let o = run(
        "mattrib",
        "mtools",
        &["-/", "-i", img.to_str().unwrap(), "::/"],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    text(&o).0.lines().map(str::to_owned).collect()
}

fn blkid(img: &Path) -> Vec<String> {
    let o = run(
        "blkid",
        "util-linux",
        &["-p", "-o", "export", img.to_str().unwrap()],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    text(&o)
        .0
        .lines()
        .filter(|l| !l.starts_with("DEVNAME="))
        .map(str::to_owned)
        .collect()
}

fn mcopy_out(img: &Path, path: &str) -> Vec<u8> {
    let o = run(
        "mcopy",
        "mtools",
        &[
            "-n",
            "-i",
            img.to_str().unwrap(),
            &format!("::/{path}"),
            "-",
        ],
    );
    assert!(o.status.success(), "{path}: {:?}", text(&o));
    o.stdout
}

fn check(flag: &str, size: u64, fat_type: FatType) {
    let dir = tempfile::tempdir().unwrap();
    let src_path = mkfs_source(dir.path(), flag, size);
    let src = File::open(&src_path).unwrap();
    let mut edits = FatEdits::new();
    edits
        .put("config.json", b"{\"uuid\":\"0123abcd\"}\n".to_vec())
        .put(
            "system-connections/static eth0",
            b"[connection]\nid=eth0\n".to_vec(),
        )
        .remove("overlays/nested dir");
    let out_path = dir.path().join(format!("edited{flag}.img"));
    let out = File::create(&out_path).unwrap();
    let rep = rebuild(&src, out, &edits, T).unwrap();
    assert_eq!(rep.fat.fat_type, fat_type);
    assert_eq!(rep.replaced, vec!["config.json"]);
    assert_eq!(rep.added, vec!["system-connections/static eth0"]);
    assert_eq!(rep.removed, vec!["overlays/nested dir"]);

    // fsck.fat clean; label, serial and type kept (blkid), geometry kept.
    fsck_clean(&out_path);
    assert_eq!(blkid(&src_path), blkid(&out_path));
    assert_eq!(
        volume_params(&src).unwrap(),
        volume_params(&File::open(&out_path).unwrap()).unwrap()
    );
    assert_eq!(FatReader::open(&src).unwrap().fat_type(), Some(fat_type));

    // Listing: the same except the edits.
    let before = mdir_paths(src_path.to_str().unwrap());
    let after = mdir_paths(out_path.to_str().unwrap());
    let mut expect: Vec<String> = before
        .iter()
        .filter(|p| !p.starts_with("overlays/nested dir"))
        .cloned()
        .chain(["system-connections/static eth0".to_owned()])
        .collect();
    expect.sort();
    assert_eq!(after, expect);
    let skip = ["config.json", "static eth0", "nested dir"];
    let a = mdir_entries(&src_path, &skip);
    let b = mdir_entries(&out_path, &skip);
    assert_eq!(a, b, "mdir -a differs beyond the edits");
    let strip = |v: Vec<String>| -> Vec<String> {
        let mut v: Vec<String> = v
            .into_iter()
            .filter(|l| !skip.iter().any(|s| l.contains(s)))
            .collect();
        v.sort();
        v
    };
    assert_eq!(strip(mattrib(&src_path)), strip(mattrib(&out_path)));
    assert!(mattrib(&out_path)
        .iter()
        .any(|l| l.contains("HR") && l.ends_with("A Long File Name.txt")));

    // Unchanged files byte-equal; edits applied.
    for p in &before {
        if skip.iter().any(|s| p.contains(s))
            || ["overlays", "system-connections"].contains(&p.as_str())
        {
            continue;
        }
        assert_eq!(mcopy_out(&src_path, p), mcopy_out(&out_path, p), "{p}");
    }
    assert_eq!(
        mcopy_out(&out_path, "config.json"),
        b"{\"uuid\":\"0123abcd\"}\n"
    );
    assert_eq!(
        mcopy_out(&out_path, "system-connections/static eth0"),
        b"[connection]\nid=eth0\n"
    );

    // Deterministic.
    let again_path = dir.path().join("again.img");
    rebuild(&src, File::create(&again_path).unwrap(), &edits, T).unwrap();
    assert!(std::fs::read(&again_path).unwrap() == std::fs::read(&out_path).unwrap());
}

#[test]
fn fat16_from_mkfs_fat() {
    check("16", 64 * MIB, FatType::Fat16);
}

#[test]
fn fat32_from_mkfs_fat() {
    check("32", 300 * MIB, FatType::Fat32);
}
