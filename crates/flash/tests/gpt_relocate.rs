//! Moving the backup GPT to the end of a larger target, checked with
//! `sgdisk -v`.

// The validator helpers shared with kiln-artifact's tests.
#[path = "../../artifact/tests/common/mod.rs"]
mod common;

use std::fs::{File, OpenOptions};
use std::process::Command;

use common::{ok, require, run};
use kiln_artifact::bmap::{nonzero_ranges, Bmap};
use kiln_flash::{flash, FlashOptions, ImageSource};

const IMAGE_BYTES: u64 = 32 << 20;
const TARGET_BYTES: u64 = 80 << 20;

fn flash_gpt_image(relocate: bool) -> (tempfile::TempDir, String, kiln_flash::FlashReport) {
    require("sgdisk", "gdisk");
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("gpt.img");
    File::create(&image).unwrap().set_len(IMAGE_BYTES).unwrap();
    ok(Command::new("sgdisk")
        .args(["-o", "-U", "11111111-2222-3333-4444-555555555555"])
        .args(["-n", "1:2048:+8M", "-t", "1:ef00", "-c", "1:resin-boot"])
        .args(["-n", "2:0:0", "-t", "2:8300", "-c", "2:resin-data"])
        .arg(&image));
    let v = ok(Command::new("sgdisk").arg("-v").arg(&image));
    assert!(v.contains("No problems found"), "{v}");

    let src = File::open(&image).unwrap();
    let bmap = Bmap::from_image(
        &src,
        IMAGE_BYTES,
        4096,
        &nonzero_ranges(&src, 4096).unwrap(),
    )
    .unwrap();
    let target_path = dir.path().join("target.img");
    let mut target = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&target_path)
        .unwrap();
    target.set_len(TARGET_BYTES).unwrap();
    let report = flash(
        ImageSource::Random(&src),
        Some(&bmap),
        &mut target,
        &FlashOptions::new().relocate_gpt(relocate),
        &mut |_| {},
    )
    .unwrap();
    let out = run(Command::new("sgdisk").arg("-v").arg(&target_path));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (dir, text, report)
}

#[test]
fn backup_gpt_moved_to_end_passes_sgdisk_verify() {
    let (dir, verify, report) = flash_gpt_image(true);
    let g = report.gpt.expect("relocation happened");
    let last = TARGET_BYTES / 512 - 1;
    assert_eq!(g.old_backup_lba, IMAGE_BYTES / 512 - 1);
    assert_eq!(g.new_backup_lba, last);
    assert_eq!(g.new_backup_entries_lba, last - 32);
    assert_eq!(g.new_last_usable_lba, last - 33);
    assert!(g.protective_mbr_resized);
    assert!(
        verify.contains("No problems found"),
        "sgdisk -v on the target:\n{verify}"
    );
    // Partitions unchanged, and the free space now reaches the new end.
    let p = ok(Command::new("sgdisk")
        .arg("-p")
        .arg(dir.path().join("target.img")));
    assert!(
        p.contains(&format!("last usable sector is {}", last - 33)),
        "{p}"
    );
    assert!(p.contains("resin-boot") && p.contains("resin-data"), "{p}");
    assert!(p.contains("11111111-2222-3333-4444-555555555555"), "{p}");
}

#[test]
fn without_relocation_sgdisk_complains() {
    // The control: sgdisk does notice a backup GPT in the middle of the
    // disk, so the test above can fail.
    let (_dir, verify, report) = flash_gpt_image(false);
    assert_eq!(report.gpt, None);
    assert!(!verify.contains("No problems found"), "{verify}");
}
