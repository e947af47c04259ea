//! The Fin's boot partition (issue 5): a fin-cm3 image built by kiln from
//! the Raspberry Pi boot set of `demo/os/make-fin-boot.sh` carries the
//! files the CM3's firmware needs, byte for byte, in a FAT partition that
//! `fsck.fat -n` accepts: `bootcode.bin`, every `start*.elf` with its
//! `fixup*.dat`, `config.txt` (32-bit kernel, UART, the kernel and device
//! tree it names present), `cmdline.txt` (root by the rootA label the
//! image really has), the CM3 device tree and the armmp kernel.
//!
//! Inputs: Debian's `raspi-firmware` and `linux-image-armmp` packages
//! (`make-fin-boot.sh --from-debs`, downloaded once into
//! `.cache/debs-armhf-boot`), not the full armhf OS build (that takes tens
//! of minutes under qemu-user; `make boot` builds and boots it).

use kiln_e2e::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// The Pi 0-3 firmware pairs: the start file the firmware picks and the
/// fixup file it must match (`start_x.elf` needs `fixup_x.dat`, ...).
const FIRMWARE: [(&str, &str); 4] = [
    ("start.elf", "fixup.dat"),
    ("start_cd.elf", "fixup_cd.dat"),
    ("start_db.elf", "fixup_db.dat"),
    ("start_x.elf", "fixup_x.dat"),
];
const CM3_DTB: &str = "bcm2837-rpi-cm3-io3.dtb";

/// Files in the root directory of a FAT partition, by `mdir -b`.
fn fat_root(image: &Path, part: &SfPart) -> Vec<String> {
    require("mdir", "mtools");
    let out = ok(Command::new("mdir")
        .arg("-b")
        .arg("-i")
        .arg(format!("{}@@{}", image.display(), part.start * 512))
        .arg("::/")
        .env("MTOOLS_SKIP_CHECK", "1"));
    out.lines()
        .map(|l| l.trim().trim_start_matches("::/").to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// `key=value` lines of config.txt (comments skipped); `initramfs` lines
/// (`initramfs FILE followkernel`) under the key `initramfs`.
fn config_txt(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
            None => {
                let mut w = l.split_whitespace();
                let k = w.next().unwrap_or_default().to_string();
                (k, w.next().unwrap_or_default().to_string())
            }
        })
        .collect()
}

#[test]
fn fin_cm3_boot_partition_has_the_pi_boot_files() {
    require("dpkg-deb", "dpkg");
    require("fsck.fat", "dosfstools");
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let boot = d.path().join("fin-boot");
    ok(Command::new("bash")
        .arg(repo().join("demo/os/make-fin-boot.sh"))
        .arg(&boot)
        .arg("--from-debs")
        .env("KILN_CACHE", repo().join(".cache")));

    // The default recipe with this boot set for armhf (and a small swapfile).
    let cache = demo_inputs();
    let busybox_boot = format!("boot = \"{}/boot-armhf\"", cache.display());
    let recipe = recipe_copy(d.path(), |s| {
        assert!(s.contains(&busybox_boot), "recipe has no {busybox_boot}");
        s.replace(&busybox_boot, &format!("boot = \"{}\"", boot.display()))
            .replace("size = \"1GiB\"", "size = \"64MiB\"")
    });
    let image = d.path().join("fin.img");
    ok(kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "-q", "--board", "fin-cm3", "--recipe"])
        .arg(&recipe)
        .arg("-o")
        .arg(&image));

    let (_, parts) = sfdisk(&image);
    let p1 = parts.iter().find(|p| p.number == 1).expect("partition 1");
    let p2 = parts.iter().find(|p| p.number == 2).expect("partition 2");
    assert!(p1.bootable, "the Pi boot partition must be active: {p1:?}");
    assert_eq!(p1.kind, "c", "FAT32 LBA type for the Pi firmware: {p1:?}");
    let (fs, label, _) = blkid(&image, p1);
    assert_eq!((fs.as_str(), label.as_str()), ("vfat", "resin-boot"));
    let fat = d.path().join("p1.fat");
    extract(&image, p1, &fat);
    fsck_fat_clean(&fat);

    // Every input file is on the partition with the same bytes and name.
    let listing = fat_root(&image, p1);
    let mut names: Vec<String> = std::fs::read_dir(&boot)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in &names {
        assert!(
            listing.iter().any(|l| l == name),
            "{name} not in the boot partition: {listing:?}"
        );
        let want = std::fs::read(boot.join(name)).unwrap();
        assert!(
            mtype(&image, p1, name) == want,
            "{name} differs from its input"
        );
    }

    // The files the CM3 firmware loads, in boot order.
    let file = |n: &str| mtype(&image, p1, n);
    assert!(
        file("bootcode.bin").len() > 16 * 1024,
        "bootcode.bin too small"
    );
    for (start, fixup) in FIRMWARE {
        assert_eq!(
            &file(start)[..4],
            b"\x7fELF",
            "{start} is not the ELF firmware"
        );
        assert!(!file(fixup).is_empty(), "{fixup} empty");
    }
    let config = String::from_utf8(file("config.txt")).expect("config.txt is text");
    let cfg = config_txt(&config);
    assert_eq!(
        cfg.get("arm_64bit").map(String::as_str),
        Some("0"),
        "{config}"
    );
    assert_eq!(
        cfg.get("enable_uart").map(String::as_str),
        Some("1"),
        "{config}"
    );
    assert_eq!(
        cfg.get("device_tree").map(String::as_str),
        Some(CM3_DTB),
        "{config}"
    );
    assert_eq!(
        &file(CM3_DTB)[..4],
        &[0xd0, 0x0d, 0xfe, 0xed],
        "{CM3_DTB} is not a flattened device tree"
    );
    let dtb = file(CM3_DTB);
    let model = b"Raspberry Pi Compute Module 3";
    assert!(
        dtb.windows(model.len()).any(|w| w == model),
        "{CM3_DTB} is not the CM3's device tree"
    );
    // kernel=: an ARM zImage (magic 0x016f2818 at offset 0x24).
    let kernel = cfg.get("kernel").expect("config.txt names the kernel");
    let zimage = file(kernel);
    assert_eq!(
        zimage.get(0x24..0x28),
        Some(&0x016f_2818u32.to_le_bytes()[..]),
        "{kernel} is not a 32-bit ARM zImage"
    );
    if let Some(initrd) = cfg.get("initramfs") {
        assert!(
            listing.contains(initrd),
            "config.txt's initramfs {initrd} missing"
        );
    }
    let cmdline = String::from_utf8(file("cmdline.txt")).expect("cmdline.txt is text");
    assert_eq!(
        cmdline.lines().count(),
        1,
        "cmdline.txt must be one line: {cmdline:?}"
    );
    assert!(cmdline.contains("console=ttyAMA0,115200"), "{cmdline}");
    let root_label = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("root=LABEL="))
        .expect("cmdline.txt mounts root by label");
    let (fs2, label2, _) = blkid(&image, p2);
    assert_eq!(
        (fs2.as_str(), label2.as_str()),
        ("ext4", root_label),
        "cmdline.txt's root is not partition 2"
    );
}
