//! Hardening (issue #16): what kiln refuses when a hostile or careless
//! user hands it bad inputs, through the `kiln` binary. Each section
//! names the findings it covers; keep new tests in their own section.

use kiln_e2e::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

// ---------------------------------------------------------------------
// Integrity of untrusted inputs (findings 2, 3, 6, 10, 11, 18): corrupt
// compressed data, damaged VMDK grains and VHD footers, qcow2 backing
// files outside the overlay's directory, PAX sparse members, 64-bit
// owner ids, special files as inputs, sparse holes claiming terabytes.
// ---------------------------------------------------------------------

/// Asserts a failed run with a one-line error containing every `needle`.
fn refused(o: &Output, code: Option<i32>, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "accepted: {}", text(o));
    if let Some(c) = code {
        assert_eq!(o.status.code(), Some(c), "{}", text(o));
    }
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} missing in: {err}");
    }
}

/// `kiln mkfs ext4 --size SIZE --source SRC OUT`, under a 60 s timeout so
/// a hang fails the test instead of stalling the suite.
fn mkfs(src: &Path, size: &str, out: &Path) -> Output {
    require("timeout", "coreutils");
    let o = run(Command::new("timeout")
        .arg("60")
        .arg(kiln_bin())
        .args(["mkfs", "ext4", "-q", "--size", size, "--source"])
        .arg(src)
        .arg(out));
    assert_ne!(o.status.code(), Some(124), "kiln hung on {}", src.display());
    o
}

/// A tree with one 64 KiB file of varied bytes.
fn small_tree(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    let data: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(src.join("etc/data.bin"), data).unwrap();
    src
}

#[test]
fn integrity_corrupt_tar_gz_is_refused_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let src = small_tree(d.path());
    let good = d.path().join("good.tar.gz");
    ok(Command::new("tar")
        .arg("-C")
        .arg(&src)
        .arg("-czf")
        .arg(&good)
        .arg("."));
    let o = mkfs(&good, "16MiB", &d.path().join("good.ext4"));
    assert!(o.status.success(), "{}", text(&o));
    let bytes = std::fs::read(&good).unwrap();
    let n = bytes.len();
    let mut zero_crc = bytes.clone();
    zero_crc[n - 8..n - 4].fill(0);
    let mut flipped = bytes.clone();
    flipped[n / 2] ^= 0x10;
    for (case, b) in [("zero-crc", zero_crc), ("flipped", flipped)] {
        let bad = d.path().join(format!("{case}.tar.gz"));
        std::fs::write(&bad, b).unwrap();
        let out = d.path().join(format!("{case}.ext4"));
        let o = mkfs(&bad, "16MiB", &out);
        refused(&o, None, &[&format!("{case}.tar.gz")]);
        assert!(!out.exists(), "{case}: output left behind");
    }
}

#[test]
fn integrity_pax_sparse_members_keep_name_and_bytes() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let size = 3u64 << 20;
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(src.join("holes.img")).unwrap();
        f.set_len(size).unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(b"middle").unwrap();
        f.seek(SeekFrom::Start(size - 5)).unwrap();
        f.write_all(b"tail!").unwrap();
    }
    let want = std::fs::read(src.join("holes.img")).unwrap();
    let tar = d.path().join("sparse.tar");
    ok(Command::new("tar")
        .args(["--format=posix", "--sparse", "-C"])
        .arg(&src)
        .arg("-cf")
        .arg(&tar)
        .arg("holes.img"));
    let fs = d.path().join("s.ext4");
    let o = mkfs(&tar, "32MiB", &fs);
    assert!(o.status.success(), "{}", text(&o));
    e2fsck_clean(&fs);
    let ls = debugfs(&fs, "ls /");
    assert!(
        ls.contains("holes.img") && !ls.contains("GNUSparseFile"),
        "{ls}"
    );
    let got = run(Command::new("debugfs")
        .arg("-R")
        .arg("cat /holes.img")
        .arg(&fs));
    assert!(got.stdout == want, "holes.img differs from the original");
}

#[test]
fn integrity_owner_ids_above_32_bits_are_refused() {
    require("python3", "python3");
    let d = tempfile::tempdir().unwrap();
    let tar = d.path().join("bigid.tar");
    // GNU tar refuses to write such ids; Python's tarfile writes them as
    // PAX records.
    ok(Command::new("python3").arg("-c").arg(format!(
        "import tarfile, io\n\
         t = tarfile.open({:?}, 'w', format=tarfile.PAX_FORMAT)\n\
         i = tarfile.TarInfo('etc/owned'); i.size = 2; i.uid = 2**32; i.gid = 5\n\
         t.addfile(i, io.BytesIO(b'hi')); t.close()",
        tar.to_str().unwrap()
    )));
    let out = d.path().join("id.ext4");
    let o = mkfs(&tar, "16MiB", &out);
    refused(&o, None, &["/etc/owned", "uid 4294967296"]);
    assert!(!out.exists());
}

#[test]
fn integrity_special_files_as_sources_are_refused_not_read() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("pipe");
    ok(Command::new("mkfifo").arg(&fifo));
    for (src, kind) in [
        (fifo, "FIFO"),
        (PathBuf::from("/dev/zero"), "character device"),
    ] {
        let out = d.path().join("x.ext4");
        let o = mkfs(&src, "16MiB", &out);
        refused(&o, Some(2), &[kind]);
        assert!(!out.exists());
    }
}

#[test]
fn integrity_sparse_member_claiming_4_tib_is_refused_at_once() {
    // An old-format GNU sparse member: 512 bytes of data at the end of a
    // 4 TiB file, a 2 KB archive.
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_path("huge.img").unwrap();
    h.set_size(512);
    h.set_mode(0o644);
    let real = 4u64 << 40;
    let g = h.as_gnu_mut().unwrap();
    g.set_real_size(real);
    g.sparse[0].set_offset(real - 512);
    g.sparse[0].set_length(512);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, &[7u8; 512][..]).unwrap();
    let bytes = b.into_inner().unwrap();
    assert!(bytes.len() <= 3072);
    let d = tempfile::tempdir().unwrap();
    let tar = d.path().join("bomb.tar");
    std::fs::write(&tar, bytes).unwrap();
    let out = d.path().join("bomb.ext4");
    let start = std::time::Instant::now();
    let o = mkfs(&tar, "64MiB", &out);
    refused(&o, None, &["/huge.img", "4398046511104 bytes"]);
    assert!(start.elapsed().as_secs() < 20, "{:?}", start.elapsed());
    assert!(!out.exists());
}

/// An empty qcow2 overlay `ov.qcow2` in `dir` naming `backing` (raw).
fn overlay(dir: &Path, backing: &str) -> PathBuf {
    require("qemu-img", "qemu-utils");
    let ov = dir.join("ov.qcow2");
    let _ = std::fs::remove_file(&ov);
    ok(Command::new("qemu-img")
        .args([
            "create", "-q", "-f", "qcow2", "-u", "-b", backing, "-F", "raw",
        ])
        .arg(&ov)
        .arg("1M"));
    ov
}

fn convert(input: &Path, output: &Path, extra: &[&str]) -> Output {
    run(Command::new("timeout")
        .arg("60")
        .arg(kiln_bin())
        .arg("convert")
        .arg(input)
        .arg(output)
        .args(["--format", "raw"])
        .args(extra))
}

#[test]
fn integrity_qcow2_backing_file_must_stay_beside_the_overlay() {
    let d = tempfile::tempdir().unwrap();
    let secret = d.path().join("secret.raw");
    let mut host = b"host secret\n".to_vec();
    host.resize(1 << 20, 0);
    std::fs::write(&secret, &host).unwrap();
    let dir = d.path().join("overlays");
    std::fs::create_dir(&dir).unwrap();
    let out = dir.join("out.raw");
    for name in [secret.to_str().unwrap(), "../secret.raw"] {
        let ov = overlay(&dir, name);
        let o = convert(&ov, &out, &[]);
        refused(&o, Some(2), &["outside the overlay's directory"]);
        assert!(!out.exists(), "{name}: output written");
        let o = run(kiln().arg("inspect").arg(&ov));
        refused(&o, Some(2), &["outside the overlay's directory"]);
        // Allowed explicitly: read through.
        let o = convert(&ov, &out, &["--allow-backing-outside"]);
        assert!(o.status.success(), "{name}: {}", text(&o));
        assert!(std::fs::read(&out).unwrap() == host, "{name}");
        std::fs::remove_file(&out).unwrap();
    }
    // A FIFO beside the overlay is refused, allowed or not, and no hang.
    ok(Command::new("mkfifo").arg(dir.join("pipe")));
    let ov = overlay(&dir, "pipe");
    let o = convert(&ov, &out, &["--allow-backing-outside"]);
    assert_ne!(o.status.code(), Some(124), "hung on a FIFO backing file");
    refused(&o, Some(2), &["FIFO"]);
}

/// A 4 MiB raw disk with data in its first grain.
fn data_disk(dir: &Path) -> PathBuf {
    let raw = dir.join("disk.raw");
    let mut b: Vec<u8> = (0..4u32 << 20).map(|i| (i * 13 % 251) as u8).collect();
    b[2 << 20..].fill(0);
    std::fs::write(&raw, b).unwrap();
    raw
}

#[test]
fn integrity_damaged_vmdk_grain_and_vhd_footer_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let raw = data_disk(d.path());
    let out = d.path().join("out.raw");
    // VMDK: 4 zeroed bytes inside the first grain's zlib stream (kiln's
    // writer puts the grain marker at sector 128).
    let vmdk = d.path().join("d.vmdk");
    ok(kiln()
        .arg("convert")
        .arg(&raw)
        .arg(&vmdk)
        .args(["--format", "vmdk"]));
    let mut b = std::fs::read(&vmdk).unwrap();
    let m = 128 * 512;
    assert_eq!(&b[m..m + 8], &[0; 8], "grain 0's marker at sector 128");
    assert_eq!(b[m + 12], 0x78, "a zlib stream after the marker");
    let size = u32::from_le_bytes(b[m + 8..m + 12].try_into().unwrap()) as usize;
    let mid = m + 12 + size / 2;
    b[mid..mid + 4].fill(0);
    std::fs::write(&vmdk, b).unwrap();
    let o = convert(&vmdk, &out, &[]);
    refused(&o, Some(2), &["vmdk", "grain"]);
    assert!(!out.exists());
    // Fixed VHD: a damaged footer cookie is refused, naming the footer's
    // offset, instead of converting the file as a raw disk.
    let vhd = d.path().join("d.vhd");
    ok(kiln()
        .arg("convert")
        .arg(&raw)
        .arg(&vhd)
        .args(["--format", "vhd"]));
    let mut b = std::fs::read(&vhd).unwrap();
    let at = b.len() - 512;
    b[at + 2] ^= 0x20;
    std::fs::write(&vhd, b).unwrap();
    let o = convert(&vhd, &out, &[]);
    refused(&o, Some(2), &["vhd", &format!("at file byte {at}")]);
    assert!(!out.exists());
}

#[test]
fn integrity_flash_of_a_gz_image_checks_its_trailer() {
    require("bmaptool", "bmap-tools");
    require("gzip", "gzip");
    let d = tempfile::tempdir().unwrap();
    let raw = data_disk(d.path());
    let bmap = d.path().join("map.bmap");
    ok(Command::new("bmaptool")
        .args(["-q", "create", "-o"])
        .arg(&bmap)
        .arg(&raw));
    ok(Command::new("gzip").arg("-k").arg(&raw));
    let gz = d.path().join("disk.raw.gz");
    let good = std::fs::read(&gz).unwrap();
    let n = good.len();
    let mut zero_crc = good.clone();
    zero_crc[n - 8..n - 4].fill(0);
    let mut junk = good.clone();
    junk.extend_from_slice(b"trailing junk");
    let target = d.path().join("target.img");
    for (case, with_bmap) in [
        (&zero_crc, true),
        (&zero_crc, false),
        (&junk, true),
        (&junk, false),
    ] {
        std::fs::write(&gz, case).unwrap();
        std::fs::File::create(&target)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        let mut cmd = kiln();
        cmd.arg("flash").arg(&gz).arg(&target).arg("--force");
        if with_bmap {
            cmd.arg("--bmap").arg(&bmap);
        }
        let o = run(&mut cmd);
        // Depending on where the decoder meets the trailer, flash itself
        // fails reading "the image stream", or the check after it names
        // the file.
        refused(&o, None, &[]);
        let t = text(&o);
        assert!(
            (t.contains("disk.raw.gz") || t.contains("image stream"))
                && (t.contains("checksum") || t.contains("corrupt") || t.contains("invalid gzip")),
            "bmap {with_bmap}: {t}"
        );
    }
}

#[test]
fn integrity_special_file_as_rootfs_is_refused_before_work() {
    let d = tempfile::tempdir().unwrap();
    let r = recipe_copy(d.path(), |s| {
        s.replace("\"../.cache/demo/rootfs-amd64.tar.gz\"", "\"/dev/zero\"")
            .replace(
                &format!("\"{}/rootfs-amd64.tar.gz\"", demo_inputs().display()),
                "\"/dev/zero\"",
            )
    });
    assert!(std::fs::read_to_string(&r)
        .unwrap()
        .contains("\"/dev/zero\""));
    let out = d.path().join("out.img");
    let o = run(Command::new("timeout")
        .arg("60")
        .arg(kiln_bin())
        .env("KILN_PROFILES_DIR", repo().join("board-profiles"))
        .args(["build", "-q", "--board", "nuc", "--recipe"])
        .arg(&r)
        .arg("-o")
        .arg(&out));
    assert_ne!(
        o.status.code(),
        Some(124),
        "kiln hung on rootfs = /dev/zero"
    );
    refused(
        &o,
        Some(2),
        &["os.amd64.rootfs", "/dev/zero", "character device"],
    );
    let left: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "r.toml")
        .collect();
    assert!(left.is_empty(), "output left behind: {left:?}");
}
