//! `kiln flash` onto real block devices: loop devices with 512-byte and
//! 4096-byte (4Kn) logical sectors, checked with `cmp`, `sgdisk -v` on the
//! device itself and the backing file's allocation (a discarded hole on a
//! loop device is punched out of its backing file).
//!
//! Needs root (losetup, mount), as `make test` runs.

use kiln_e2e::*;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;

const MIB: u64 = 1 << 20;

/// A nuc-gpt image with a 64 MiB swapfile (GPT, 512-byte sectors) and
/// its bmap.
fn build_gpt_image(dir: &Path) -> std::path::PathBuf {
    let recipe = recipe_copy(dir, |s| s.replace("size = \"1GiB\"", "size = \"64MiB\""));
    let img = dir.join("n.img");
    ok(kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "-q", "--board", "nuc-gpt", "--recipe"])
        .arg(&recipe)
        .arg("-o")
        .arg(&img));
    img
}

/// A sparse file of `len` bytes.
fn sparse(path: &Path, len: u64) {
    File::create(path).unwrap().set_len(len).unwrap();
}

/// Bytes the file really occupies.
fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

fn stderr_of(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(!out.status.success(), "{cmd:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn sgdisk_clean(dev: &str) {
    require("sgdisk", "gdisk");
    let v = ok(Command::new("sgdisk").arg("-v").arg(dev));
    assert!(v.contains("No problems found"), "sgdisk -v {dev}: {v}");
}

/// `cmp` of the image and the device from LBA 2 to before the image's
/// own backup GPT (the protective MBR, the primary header and the old
/// backup are rewritten by the GPT move).
fn same_as_image(img: &Path, dev: &str) {
    let len = std::fs::metadata(img).unwrap().len();
    ok(Command::new("cmp")
        .args(["-i", "1024", "-n"])
        .arg((len - 1024 - 33 * 512).to_string())
        .arg(img)
        .arg(dev));
}

#[test]
fn discard_zeroes_holes_and_4kn_disks_need_a_4kn_table() {
    require("cmp", "diffutils");
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let img = build_gpt_image(d.path());
    let len = std::fs::metadata(&img).unwrap().len();

    // A 512-byte-sector disk 64 MiB larger than the image, full of
    // garbage: --holes discard must leave the image's holes reading as
    // zeros, by discarding (the loop device punches its backing file),
    // not by writing them.
    let backing = d.path().join("disk512");
    {
        let f = File::create(&backing).unwrap();
        let junk = vec![0x5Au8; MIB as usize];
        for i in 0..(len + 64 * MIB) / MIB {
            f.write_all_at(&junk, i * MIB).unwrap();
        }
    }
    let full = allocated(&backing);
    let lo = Loop::disk(&backing, 512);
    ok(kiln()
        .args(["flash", "-q", "--holes", "discard"])
        .arg(&img)
        .arg(&lo.0));
    same_as_image(&img, &lo.0);
    sgdisk_clean(&lo.0); // the backup GPT is at the end of the larger disk
    let mapped = allocated(&img);
    let after = allocated(&backing);
    assert!(
        after <= mapped + 64 * MIB + MIB && after < full - 64 * MIB,
        "holes were not discarded: {after} bytes allocated, image maps {mapped}, was {full}"
    );
    drop(lo);

    // A 4Kn disk: the image's 512-byte-sector GPT would not be found
    // there, so kiln refuses before writing anything...
    let backing4k = d.path().join("disk4k");
    sparse(&backing4k, len + 64 * MIB);
    let lo4k = Loop::disk(&backing4k, 4096);
    let err = stderr_of(kiln().args(["flash", "-q"]).arg(&img).arg(&lo4k.0));
    assert!(
        err.contains("512-byte sectors") && err.contains("4096-byte logical sectors"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(allocated(&backing4k), 0, "something was written");
    // ...and --force writes it anyway.
    ok(kiln()
        .args(["flash", "-q", "--force"])
        .arg(&img)
        .arg(&lo4k.0));
    same_as_image(&img, &lo4k.0);
    drop(lo4k);

    // An image whose GPT was written for 4096-byte sectors (by sgdisk on
    // a 4Kn device) flashes onto a larger 4Kn disk, and its backup GPT is
    // moved to the end in 4096-byte units: sgdisk on the device agrees.
    let img4k = d.path().join("gpt4k.img");
    sparse(&img4k, 32 * MIB);
    {
        let lo = Loop::disk(&img4k, 4096);
        ok(Command::new("sgdisk")
            .args(["-o", "-n", "1:0:+8M", "-t", "1:ef00", "-n", "2:0:0"])
            .arg(&lo.0));
        sgdisk_clean(&lo.0);
    }
    sparse(&backing4k, 0);
    sparse(&backing4k, 96 * MIB);
    let lo4k = Loop::disk(&backing4k, 4096);
    ok(kiln().args(["flash", "-q"]).arg(&img4k).arg(&lo4k.0));
    sgdisk_clean(&lo4k.0);
    let p = ok(Command::new("sgdisk").arg("-p").arg(&lo4k.0));
    // 96 MiB in 4096-byte sectors; partition 2 ("2:0:0" on the 32 MiB
    // image: last usable LBA 8186) still ends where it did.
    assert!(
        p.contains("Sector size (logical/physical): 4096/") && p.contains("24576 sectors"),
        "{p}"
    );
    assert!(
        p.lines()
            .any(|l| l.split_whitespace().take(3).eq(["2", "2304", "8186"])),
        "{p}"
    );
}

#[test]
fn a_mounted_device_is_refused() {
    require("mkfs.ext4", "e2fsprogs");
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let backing = d.path().join("fs.img");
    sparse(&backing, 64 * MIB);
    ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&backing));
    let image = d.path().join("small.img");
    sparse(&image, 8 * MIB);
    let before = std::fs::read(&backing).unwrap();
    let lo = Loop::disk(&backing, 512);
    let _mnt = Mount::ext4_ro(&lo, &d.path().join("mnt"));
    let err = stderr_of(kiln().args(["flash", "-q"]).arg(&image).arg(&lo.0));
    assert!(err.contains("mounted at"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    drop(_mnt);
    drop(lo);
    assert!(
        std::fs::read(&backing).unwrap() == before,
        "the device was written"
    );
}
