//! Issue 16: an interrupted `kiln flash` leaves no partition table.
//!
//! SIGINT (and once SIGTERM) and SIGKILL at five points spread over the
//! write, onto a regular file (`--force`) and onto a loop device. The
//! points are chosen from the bytes the process has written so far
//! (`wchar` in `/proc/PID/io`), not from sleeps. After each: the exit
//! code, no table for `sfdisk -d`, `blkid -p` or `sgdisk`, no `55 AA` at
//! the end of LBA 0, no `EFI PART` at LBA 1 or in the last sector (512
//! and 4096-byte sectors), and nothing left beside the target. A complete
//! run afterwards gives the image byte for byte, `sgdisk -v` clean.
//!
//! Needs root (losetup), as `make test` runs.

use kiln_e2e::*;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const MIB: u64 = 1 << 20;
/// Image size: large enough that the write lasts a while, small enough
/// to flash twenty times quickly.
const IMAGE_BYTES: u64 = 128 * MIB;

/// A GPT disk image (512-byte sectors) of [`IMAGE_BYTES`] filled with
/// pseudo-random data, two partitions; no bmap, so every byte is written.
fn gpt_image(dir: &Path) -> PathBuf {
    let img = dir.join("disk.img");
    let mut data = vec![0u8; IMAGE_BYTES as usize];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for c in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    std::fs::write(&img, data).unwrap();
    sfdisk_write(&img, "label: gpt\nsize=64MiB, type=linux\ntype=linux\n");
    sgdisk_clean(&img);
    img
}

fn sfdisk_write(disk: &Path, script: &str) {
    use std::io::Write;
    let mut c = Command::new("sfdisk")
        .args(["-q", "--no-reread", "--no-tell-kernel", "-w", "never"])
        .arg(disk)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(c.wait().unwrap().success(), "sfdisk {}", disk.display());
}

fn sgdisk_clean(disk: &Path) {
    require("sgdisk", "gdisk");
    let v = ok(Command::new("sgdisk").arg("-v").arg(disk));
    assert!(
        v.contains("No problems found"),
        "sgdisk -v {}: {v}",
        disk.display()
    );
}

/// Bytes `pid` has written so far (`wchar`), `None` once it is gone.
fn written(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|v| v.trim().parse().ok())
}

/// Runs `kiln flash IMG TARGET`, sends `signal` once it has written
/// `at` bytes, and returns its exit code (`None`: killed by the signal)
/// and what it wrote when signalled. Fails if it ended first.
fn flash_until(img: &Path, target: &Path, signal: &str, at: u64) -> (Option<i32>, u64) {
    let mut child = kiln()
        .args(["flash", "--force"])
        .arg(img)
        .arg(target)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let seen = loop {
        match written(pid) {
            Some(n) if n >= at => break n,
            Some(_) => std::thread::sleep(std::time::Duration::from_micros(200)),
            None => panic!("kiln flash ended before writing {at} bytes"),
        }
    };
    ok(Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string()));
    (child.wait().unwrap().code(), seen)
}

/// Reads `len` bytes of `path` at `off`.
fn bytes_at(path: &Path, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    File::open(path)
        .unwrap()
        .read_exact_at(&mut b, off)
        .unwrap();
    b
}

fn size_of(path: &Path) -> u64 {
    use std::io::{Seek, SeekFrom};
    File::open(path).unwrap().seek(SeekFrom::End(0)).unwrap()
}

/// No tool and no firmware sees a partition table on `target`.
fn no_table(target: &Path, what: &str) {
    let sf = run(Command::new("sfdisk").arg("-d").arg(target));
    assert!(!sf.status.success(), "{what}: sfdisk -d finds a table");
    let b = run(Command::new("blkid")
        .arg("-p")
        .arg("-o")
        .arg("export")
        .arg(target));
    let b = String::from_utf8_lossy(&b.stdout).into_owned();
    assert!(!b.contains("PTTYPE"), "{what}: blkid -p: {b}");
    // sgdisk finds no GPT header at either end and starts a new table.
    let g = run(Command::new("sgdisk").arg("-v").arg(target));
    let g = String::from_utf8_lossy(&g.stdout).into_owned();
    assert!(
        g.contains("Creating new GPT entries"),
        "{what}: sgdisk -v: {g}"
    );
    let lba0 = bytes_at(target, 0, 512);
    assert_ne!(&lba0[510..], &[0x55, 0xAA], "{what}: MBR signature");
    let len = size_of(target);
    for off in [512, 4096, len - 512, len - 4096] {
        let s = bytes_at(target, off, 8);
        assert_ne!(&s[..], b"EFI PART", "{what}: GPT header at byte {off}");
    }
}

/// The five points: fractions of the image written (the first few MiB
/// of `wchar` are the cleared windows).
fn points() -> [u64; 5] {
    [10, 30, 50, 70, 85].map(|pct| 2 * MIB + IMAGE_BYTES * pct / 100)
}

/// Interrupts flashes of `img` onto `target` at every point with SIGINT
/// (one of them SIGTERM) and SIGKILL, checking what each leaves; then a
/// complete run.
fn interrupt_everywhere(img: &Path, target: &Path, dir: &Path) {
    let before: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    for (signal, code) in [("INT", Some(130)), ("KILL", None)] {
        for (i, at) in points().into_iter().enumerate() {
            let (signal, code) = match (signal, i) {
                ("INT", 2) => ("TERM", Some(143)),
                _ => (signal, code),
            };
            let (got, seen) = flash_until(img, target, signal, at);
            let what = format!("SIG{signal} after {} MiB written", seen >> 20);
            assert_eq!(got, code, "{what}: exit code");
            no_table(target, &what);
            let now: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(now, before, "{what}: files beside the target");
        }
    }
    ok(kiln().args(["flash", "-q", "--force"]).arg(img).arg(target));
}

#[test]
fn an_interrupted_flash_onto_a_file_leaves_no_partition_table() {
    let d = tempfile::tempdir().unwrap();
    let img = gpt_image(d.path());
    let t = tempfile::tempdir().unwrap();
    let target = t.path().join("target.img");
    // What the file held before: a larger GPT disk, whose backup GPT at
    // its end must not survive either.
    File::create(&target)
        .unwrap()
        .set_len(IMAGE_BYTES + 32 * MIB)
        .unwrap();
    sfdisk_write(&target, "label: gpt\ntype=linux\n");
    sgdisk_clean(&target);
    interrupt_everywhere(&img, &target, t.path());
    // The backup GPT moved to the end of the larger file: the rest is
    // the image's, byte for byte.
    sgdisk_clean(&target);
    ok(Command::new("cmp")
        .args(["-i", "1024", "-n"])
        .arg((IMAGE_BYTES - 1024 - 33 * 512).to_string())
        .arg(&img)
        .arg(&target));
}

#[test]
fn an_interrupted_flash_onto_a_device_leaves_no_partition_table() {
    let d = tempfile::tempdir().unwrap();
    let img = gpt_image(d.path());
    let backing = d.path().join("backing.img");
    File::create(&backing)
        .unwrap()
        .set_len(IMAGE_BYTES)
        .unwrap();
    let lo = Loop::disk(&backing, 512);
    let dev = PathBuf::from(&lo.0);
    // A good flash first: the device holds a valid table at both ends.
    ok(kiln().args(["flash", "-q"]).arg(&img).arg(&dev));
    sgdisk_clean(&dev);
    interrupt_everywhere(&img, &dev, d.path());
    ok(Command::new("cmp").arg(&img).arg(&dev));
    sgdisk_clean(&dev);
}
