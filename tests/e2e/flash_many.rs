//! `kiln flash IMAGE TARGET...`: one image (bmap from `bmaptool create`)
//! written to four targets at once, two loop devices and two files
//! (`--force`), each `cmp`-equal to the image; a fifth target, a loop
//! device whose backing file sits on an 8 MiB tmpfs, fails mid-way alone
//! and is reported while the others succeed; and `--verify-only` catches
//! a byte flipped in a loop device's backing file behind the device's
//! page cache, proving verification reads the medium. The final line
//! names the digest that was verified: the image's sha256 from the
//! `SHA256SUMS` beside it when that file lists the bmap with the bmap's
//! own digest (checked with `sha256sum`), else the bmap's, and the whole
//! image's with `--sha256`. Progress: plain lines without a terminal,
//! a bar redrawn in place on one (`script` gives a pty), nothing with
//! `--quiet`.
//!
//! Needs root (losetup, mount), as `make test` runs.

use kiln_e2e::*;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1 << 20;
const IMAGE_BYTES: u64 = 64 * MIB;

/// A 64 MiB image with 40 MiB of data in five ranges and holes between
/// them, and its bmap from `bmaptool create`.
fn image(dir: &Path) -> PathBuf {
    require("bmaptool", "bmap-tools");
    let img = dir.join("disk.img");
    let f = File::create(&img).unwrap();
    f.set_len(IMAGE_BYTES).unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; MIB as usize];
    for start in [0u64, 10, 22, 40, 55] {
        for i in 0..8 {
            for b in block.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            f.write_all_at(&block, (start + i) * MIB).unwrap();
        }
    }
    drop(f);
    let bmap = ok(Command::new("bmaptool").arg("create").arg(&img));
    std::fs::write(dir.join("disk.img.bmap"), bmap).unwrap();
    img
}

fn sparse(path: &Path, len: u64) {
    File::create(path).unwrap().set_len(len).unwrap();
}

fn cmp_image(img: &Path, target: &Path) {
    require("cmp", "diffutils");
    ok(Command::new("cmp")
        .arg("-n")
        .arg(IMAGE_BYTES.to_string())
        .arg(img)
        .arg(target));
}

/// A tmpfs of `size`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        ok(Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size}"))
            .arg("tmpfs")
            .arg(dir));
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn four_targets_at_once_and_one_failing_alone() {
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let img = image(d.path());
    let (b1, b2) = (d.path().join("stick1"), d.path().join("stick2"));
    sparse(&b1, IMAGE_BYTES);
    sparse(&b2, IMAGE_BYTES);
    let (lo1, lo2) = (Loop::disk(&b1, 512), Loop::disk(&b2, 512));
    let (f1, f2) = (d.path().join("file1.img"), d.path().join("file2.img"));
    // Garbage in a file target: the image's mapped ranges replace it.
    std::fs::write(&f2, vec![0x5Au8; MIB as usize]).unwrap();

    let out = run(kiln()
        .args(["flash", "--force"])
        .arg(&img)
        .args([&lo1.0, &lo2.0])
        .arg(&f1)
        .arg(&f2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for t in [Path::new(&lo1.0), Path::new(&lo2.0), &f1, &f2] {
        cmp_image(&img, t);
        assert!(
            err.contains(&format!("{}: flashed {IMAGE_BYTES} bytes", t.display())),
            "{err}"
        );
    }
    let sha = sha256sum(&img);
    let last = err.trim().lines().last().unwrap();
    assert!(
        last.contains(&format!(
            "bmap sha256 {}",
            sha256sum(&img.with_extension("img.bmap"))
        )) && last.contains("written and 5 mapped ranges verified on 4 targets"),
        "{err}"
    );

    // A fifth target that runs out of space after 8 MiB (its backing
    // file is on an 8 MiB tmpfs) fails alone; the others are written.
    let small = Tmpfs::new(&d.path().join("small"), "8m");
    let b3 = small.0.join("stick3");
    sparse(&b3, IMAGE_BYTES);
    let lo3 = Loop::disk(&b3, 512);
    for t in [&b1, &b2] {
        sparse(t, 0);
        sparse(t, IMAGE_BYTES);
    }
    std::fs::remove_file(&f1).unwrap();
    let out = run(kiln()
        .args(["flash", "--force", "--sha256"])
        .arg(&img)
        .args([&lo1.0, &lo3.0, &lo2.0])
        .arg(&f1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for t in [Path::new(&lo1.0), Path::new(&lo2.0), &f1] {
        cmp_image(&img, t);
        assert!(err.contains(&format!("{}: flashed", t.display())), "{err}");
    }
    assert!(err.contains(&format!("{}: FAILED: ", lo3.0)), "{err}");
    let last = err.trim().lines().last().unwrap();
    assert!(
        last.contains(&format!(
            "1 of 4 targets failed ({}); succeeded: {}, {}, {}",
            lo3.0,
            lo1.0,
            lo2.0,
            f1.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("image sha256 {sha} ")),
        "the image's digest (--sha256) is still shown: {err}"
    );
    drop(lo3);
    drop(small);

    // --verify-only reads the medium, not the page cache: flip a mapped
    // byte in the backing file behind /dev/loopN (whose own page cache
    // still holds what was written and read back) and it is caught.
    ok(kiln()
        .args(["flash", "-q", "--verify-only"])
        .arg(&img)
        .args([&lo1.0, &lo2.0]));
    let bf = File::options().read(true).write(true).open(&b2).unwrap();
    let mut byte = [0u8; 1];
    let at = 23 * MIB + 12345;
    bf.read_exact_at(&mut byte, at).unwrap();
    bf.write_all_at(&[byte[0] ^ 0x10], at).unwrap();
    drop(bf);
    let out = run(kiln()
        .args(["flash", "-q", "--verify-only"])
        .arg(&img)
        .arg(&lo2.0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "flipped byte not caught: {err}");
    assert!(
        err.contains("verify failed") && err.contains(&lo2.0),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

fn sha256sum(path: &Path) -> String {
    let out = ok(Command::new("sha256sum").arg(path));
    out.split_whitespace().next().unwrap().to_owned()
}

/// The final line without hashing the whole image: the image's digest
/// from a `SHA256SUMS` (made by `sha256sum`) that lists the image and
/// the bmap; the bmap's digest when `SHA256SUMS` does not list the bmap;
/// the whole image's with `--sha256`; and a bmap whose digest differs
/// from its `SHA256SUMS` line is refused before the target is created.
#[test]
fn final_line_names_the_digest_verified() {
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let img = image(d.path());
    let t = d.path().join("t.img");
    let flash = |extra: &[&str]| {
        let _ = std::fs::remove_file(&t);
        let out = run(kiln()
            .args(["flash", "--force"])
            .args(extra)
            .arg(&img)
            .arg(&t));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (
            out.status.code(),
            err.trim().lines().last().unwrap_or("").to_owned(),
            err,
        )
    };
    let sha = sha256sum(&img);
    let bmap_sha = sha256sum(&d.path().join("disk.img.bmap"));
    // Made by the standard tool; a fake digest for the image proves it is
    // read from SHA256SUMS, not computed.
    let listed = "ab".repeat(32);
    let sums = d.path().join("SHA256SUMS");
    std::fs::write(
        &sums,
        format!("{listed}  disk.img\n{bmap_sha}  disk.img.bmap\n"),
    )
    .unwrap();
    require("sha256sum", "coreutils");
    let check = Command::new("sha256sum")
        .args(["-c", "--ignore-missing", "SHA256SUMS"])
        .current_dir(d.path())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("disk.img.bmap: OK"),
        "{check:?}"
    );
    let (code, last, err) = flash(&[]);
    assert_eq!(code, Some(0), "{err}");
    cmp_image(&img, &t);
    assert!(
        last.contains(&format!("image sha256 {listed} (from SHA256SUMS"))
            && last.contains("written and 5 mapped ranges verified on the target"),
        "{err}"
    );
    let (code, last, err) = flash(&["--sha256"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(last.contains(&format!("image sha256 {sha} (")), "{err}");

    // SHA256SUMS lists only the image: the bmap's digest is shown.
    std::fs::write(&sums, format!("{sha}  disk.img\n")).unwrap();
    let (code, last, err) = flash(&[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(last.contains(&format!("bmap sha256 {bmap_sha} (")), "{err}");

    // A bmap that is not the one SHA256SUMS lists: refused, nothing made.
    std::fs::write(&sums, format!("{sha}  disk.img\n{listed}  disk.img.bmap\n")).unwrap();
    let (code, _, err) = flash(&[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("disk.img.bmap: sha256") && err.contains("differs from"),
        "{err}"
    );
    assert!(!t.exists(), "the target was created: {err}");
}

/// Progress of a flash: without a terminal, plain lines (no escape codes,
/// no carriage returns) for the write and the verify; on a pty (from
/// `script -qec`), a bar redrawn in place (a carriage return not ending a
/// line); with `--quiet`, nothing on stderr.
#[test]
fn progress_bar_on_a_tty_plain_lines_otherwise() {
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let img = image(d.path());
    let t = d.path().join("t.img");
    let out = run(kiln().args(["flash", "--force"]).arg(&img).arg(&t));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains('\x1b') && !err.contains('\r'), "{err:?}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("kiln: writing ") && l.contains('%'))
            && err.lines().any(|l| l.starts_with("kiln: verifying 100.0%")),
        "{err}"
    );

    std::fs::remove_file(&t).unwrap();
    let out = run(kiln().args(["flash", "-q", "--force"]).arg(&img).arg(&t));
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    cmp_image(&img, &t);

    require("script", "util-linux");
    std::fs::remove_file(&t).unwrap();
    // `script` runs the command on a pty and copies what it draws.
    let cmd = format!(
        "'{}' flash --force '{}' '{}'",
        kiln_bin().display(),
        img.display(),
        t.display()
    );
    let out = run(Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .envs(kiln().get_envs().filter_map(|(k, v)| Some((k, v?)))));
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(
        tty.contains("\r\x1b[2Kkiln: writing ["),
        "no bar redrawn in place: {tty:?}"
    );
    cmp_image(&img, &t);
}
