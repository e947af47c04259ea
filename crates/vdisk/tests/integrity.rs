//! Integrity checks the formats carry are verified (issue #16): a VMDK
//! grain whose zlib stream is damaged, fails its Adler-32 or inflates past
//! the grain; a VHD whose footer cookie or checksum is damaged (refused,
//! not read as raw); a qcow2 overlay whose backing file is outside its
//! directory or not a regular file.
#![cfg(all(feature = "qcow2", feature = "vmdk", feature = "vhd"))]

mod common;

use std::io::Write;

use common::Dir;
use kiln_vdisk::{
    open, open_with_backing, BackingOptions, DiskWriter, Error, Format, OutputFormat, Qcow2Options,
    Qcow2Writer, VhdKind, VhdOptions, VirtualDisk, VmdkOptions,
};

fn sample(fmt: &OutputFormat) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = fmt.create_writer(&mut out, 8 << 20).unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    w.write_extent(12_345, &data).unwrap();
    w.finish().unwrap();
    drop(w);
    out
}

/// Reads the whole virtual disk.
fn read_all(b: Vec<u8>) -> kiln_vdisk::Result<Vec<u8>> {
    let img = open(b)?;
    let mut buf = vec![0u8; img.virtual_size() as usize];
    img.read_virtual(&mut buf, 0)?;
    Ok(buf)
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

#[test]
fn vmdk_damaged_grains_are_refused() {
    let good = sample(&OutputFormat::Vmdk(VmdkOptions::new()));
    let want = read_all(good.clone()).unwrap();
    // The first grain's marker (LBA, size) sits at sector 128, its zlib
    // stream right after.
    let m = 128 * 512;
    assert_eq!(&good[m..m + 8], &[0; 8], "grain 0's marker");
    let size = le32(&good, m + 8) as usize;
    let data = m + 12;
    assert_eq!(good[data], 0x78, "a zlib stream");
    let mut middle = good.clone();
    middle[data + size / 2..data + size / 2 + 4].fill(0);
    let mut adler = good.clone();
    adler[data + size - 4..data + size].fill(0);
    // A valid zlib stream of one grain and a sector: too long by 512.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&vec![0u8; 65536 + 512]).unwrap();
    let z = z.finish().unwrap();
    assert!(z.len() < size);
    let mut long = good.clone();
    long[m + 8..m + 12].copy_from_slice(&(z.len() as u32).to_le_bytes());
    long[data..data + z.len()].copy_from_slice(&z);
    let mut short = good.clone();
    short[m + 8..m + 12].copy_from_slice(&(size as u32 / 2).to_le_bytes());
    for (case, b) in [
        ("stream cut short", short),
        ("4 zeroed bytes", middle),
        ("zeroed Adler-32", adler),
        ("inflates past the grain", long),
    ] {
        match read_all(b) {
            Err(Error::Corrupt {
                format: Format::Vmdk,
                offset,
                ..
            }) => assert_eq!(offset, data as u64, "{case}"),
            Err(e) => panic!("{case}: {e}"),
            Ok(got) => panic!(
                "{case}: accepted ({} wrong bytes)",
                got.iter().zip(&want).filter(|(a, b)| a != b).count()
            ),
        }
    }
}

#[test]
fn vhd_damaged_footer_is_refused_not_read_as_raw() {
    for kind in [VhdKind::Fixed, VhdKind::Dynamic] {
        let good = sample(&OutputFormat::Vhd(VhdOptions::new().kind(kind)));
        assert!(read_all(good.clone()).is_ok());
        let at = good.len() - 512;
        let mut cookie = good.clone();
        cookie[at + 3] ^= 0x20;
        let mut size = good.clone();
        size[at + 50] ^= 1;
        let mut dynamic_both = cookie.clone();
        dynamic_both[3] ^= 0x20;
        let mut cases = vec![("size", size, at + 64)];
        if kind == VhdKind::Fixed {
            cases.push(("cookie", cookie, at));
        } else {
            // The copy at 0 rescues a damaged trailing cookie (as QEMU
            // does), unless it is damaged too.
            assert_eq!(read_all(cookie).unwrap(), read_all(good.clone()).unwrap());
            cases.push(("both copies", dynamic_both, at));
        }
        for (case, b, want_at) in cases {
            match open(b) {
                Err(Error::Corrupt {
                    format: Format::Vhd,
                    offset,
                    ..
                }) => assert_eq!(offset, want_at as u64, "{kind:?} {case}"),
                Err(e) => panic!("{kind:?} {case}: {e}"),
                Ok(img) => panic!("{kind:?} {case}: opened as {}", img.format()),
            }
        }
    }
    // A raw disk stays raw.
    assert_eq!(open(vec![0u8; 1 << 20]).unwrap().format(), Format::Raw);
}

/// An empty overlay in `dir` naming `backing` as its raw backing file.
fn overlay(dir: &std::path::Path, backing: &str) -> std::path::PathBuf {
    let path = dir.join("ov.qcow2");
    let opts = Qcow2Options::new().backing_file(backing, "raw");
    let mut w = Qcow2Writer::new(std::fs::File::create(&path).unwrap(), 1 << 20, &opts).unwrap();
    w.finish().unwrap();
    path
}

fn open_overlay(
    dir: &std::path::Path,
    backing: &str,
    opts: BackingOptions,
) -> kiln_vdisk::Result<()> {
    let path = overlay(dir, backing);
    let f = std::fs::File::open(&path).unwrap();
    open_with_backing(&f, dir, opts).map(|_| ())
}

#[test]
fn qcow2_backing_must_stay_in_the_overlay_directory() {
    let outside = Dir::new();
    std::fs::write(outside.path("secret.raw"), vec![7u8; 1 << 20]).unwrap();
    let d = Dir::new();
    let dir = d.path("images");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("base.raw"), vec![1u8; 1 << 20]).unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/base.raw"), vec![1u8; 1 << 20]).unwrap();
    std::fs::write(d.path("up.raw"), vec![1u8; 1 << 20]).unwrap();
    std::os::unix::fs::symlink(outside.path("secret.raw"), dir.join("link.raw")).unwrap();
    let secret = outside.path("secret.raw");
    let strict = BackingOptions::new();
    let loose = BackingOptions::new().allow_outside(true);
    for name in ["base.raw", "sub/base.raw", "./sub/../base.raw"] {
        open_overlay(&dir, name, strict).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for name in [
        secret.to_str().unwrap(),
        "../up.raw",
        "link.raw",
        "/etc/hostname",
    ] {
        match open_overlay(&dir, name, strict) {
            Err(Error::BackingOutside { .. }) => {}
            Err(e) => panic!("{name}: {e}"),
            Ok(()) => panic!("{name}: followed"),
        }
    }
    for name in [secret.to_str().unwrap(), "../up.raw", "link.raw"] {
        open_overlay(&dir, name, loose).unwrap_or_else(|e| panic!("allowed {name}: {e}"));
    }
}

#[test]
fn qcow2_backing_must_be_a_regular_file() {
    let d = Dir::new();
    let dir = d.path("");
    std::fs::create_dir(d.path("subdir")).unwrap();
    let st = std::process::Command::new("mkfifo")
        .arg(d.path("fifo"))
        .status()
        .expect("mkfifo (Debian package coreutils) is needed");
    assert!(st.success());
    std::os::unix::fs::symlink("/dev/zero", d.path("zero")).unwrap();
    let loose = BackingOptions::new().allow_outside(true);
    for (name, kind) in [
        ("fifo", "FIFO"),
        ("subdir", "directory"),
        ("zero", "character device"),
    ] {
        match open_overlay(&dir, name, loose) {
            Err(Error::BackingNotRegular { kind: k, .. }) => assert_eq!(k, kind, "{name}"),
            Err(e) => panic!("{name}: {e}"),
            Ok(()) => panic!("{name}: followed"),
        }
    }
}
