//! The classifier on recorded sysfs trees: the attribute files and bus
//! paths of a USB stick, a USB card reader without a card, an SD card in
//! a built-in slot, an eMMC (with its hardware boot partitions), an NVMe
//! system disk, a SATA disk under device-mapper, and loop devices,
//! written into a temporary directory as the kernel lays them out.

use std::fs;
use std::path::{Path, PathBuf};

use kiln_drives::{scan, Error, Exclusion, Roots, Transport};
use kiln_flash::mountinfo::parse_mountinfo;

struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("sys/block")).unwrap();
        fs::create_dir_all(dir.path().join("udev")).unwrap();
        Self { dir }
    }

    fn sys(&self) -> PathBuf {
        self.dir.path().join("sys")
    }

    /// `<sys>/devices/<bus>/block/<name>` with its attributes, linked from
    /// `<sys>/block/<name>` as sysfs does.
    fn disk(&self, name: &str, bus: &str, attrs: &[(&str, &str)]) -> PathBuf {
        let rel = format!("devices/{bus}/block/{name}");
        let d = self.sys().join(&rel);
        for (k, v) in attrs {
            let p = d.join(k);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, format!("{v}\n")).unwrap();
        }
        std::os::unix::fs::symlink(format!("../{rel}"), self.sys().join("block").join(name))
            .unwrap();
        d
    }

    fn part(&self, disk: &Path, name: &str, dev: &str, sectors: u64) -> PathBuf {
        let p = disk.join(name);
        fs::create_dir_all(&p).unwrap();
        fs::write(p.join("partition"), "1\n").unwrap();
        fs::write(p.join("dev"), format!("{dev}\n")).unwrap();
        fs::write(p.join("size"), format!("{sectors}\n")).unwrap();
        p
    }

    fn udev(&self, dev: &str, text: &str) {
        fs::write(self.dir.path().join("udev").join(format!("b{dev}")), text).unwrap();
    }

    fn roots(&self) -> Roots {
        Roots::new(self.sys(), Some(&self.dir.path().join("udev")), "/dev")
    }
}

const USB_HOST: &str = "pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/host6/target6:0:0/6:0:0:0";
const READER_HOST: &str = "pci0000:00/0000:00:14.0/usb1/1-3/1-3:1.0/host7/target7:0:0/7:0:0:0";
const SD_HOST: &str = "platform/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa";
const EMMC_HOST: &str = "platform/fe310000.mmc/mmc_host/mmc1/mmc1:0001";
const NVME_HOST: &str = "pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0";
const SATA_HOST: &str = "pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0";

/// The machine: a laptop with an NVMe system disk, a SATA data disk
/// under dm-crypt, an SD slot with a card, a Fin's eMMC, two USB
/// devices and loop devices.
fn laptop() -> Tree {
    let t = Tree::new();
    // A 16 GB USB stick with a flashed balenaOS-style image: labels from udev.
    let sdb = t.disk(
        "sdb",
        USB_HOST,
        &[
            ("dev", "8:16"),
            ("size", "30031872"),
            ("removable", "1"),
            ("ro", "0"),
            ("device/vendor", "SanDisk "),
            ("device/model", "Cruzer Blade    "),
        ],
    );
    t.part(&sdb, "sdb1", "8:17", 81920);
    t.part(&sdb, "sdb2", "8:18", 2048000);
    t.udev(
        "8:16",
        "S:disk/by-id/usb-SanDisk_Cruzer_Blade_4C530001-0:0\nE:ID_BUS=usb\nE:ID_VENDOR=SanDisk\nE:ID_MODEL=Cruzer_Blade\nE:ID_SERIAL_SHORT=4C530001\n",
    );
    t.udev("8:17", "E:ID_FS_LABEL=resin-boot\nE:ID_FS_TYPE=vfat\n");
    t.udev("8:18", "E:ID_FS_LABEL=resin-rootA\n");
    // A USB card reader without a card.
    t.disk(
        "sdc",
        READER_HOST,
        &[
            ("dev", "8:32"),
            ("size", "0"),
            ("removable", "1"),
            ("device/vendor", "Generic-"),
            ("device/model", "SD/MMC"),
        ],
    );
    // An SD card in the built-in slot.
    t.disk(
        "mmcblk0",
        SD_HOST,
        &[
            ("dev", "179:0"),
            ("size", "31116288"),
            ("removable", "0"),
            ("device/type", "SD"),
            ("device/name", "SL16G"),
            ("device/serial", "0x1234abcd"),
        ],
    );
    // A Fin's eMMC, its first partition mounted; boot areas are skipped.
    let emmc = t.disk(
        "mmcblk1",
        EMMC_HOST,
        &[
            ("dev", "179:32"),
            ("size", "122142720"),
            ("removable", "0"),
            ("device/type", "MMC"),
            ("device/name", "DG4064"),
            ("device/serial", "0x9a8b7c6d"),
        ],
    );
    t.part(&emmc, "mmcblk1p1", "179:33", 81920);
    for b in ["mmcblk1boot0", "mmcblk1boot1"] {
        t.disk(
            b,
            EMMC_HOST,
            &[("dev", "179:64"), ("size", "8192"), ("ro", "1")],
        );
    }
    // The NVMe system disk.
    let nvme = t.disk(
        "nvme0n1",
        NVME_HOST,
        &[
            ("dev", "259:0"),
            ("size", "1000215216"),
            ("removable", "0"),
            ("device/model", "Samsung SSD 970 EVO Plus 500GB"),
            ("device/serial", "S4EVNX0N123456"),
        ],
    );
    t.part(&nvme, "nvme0n1p1", "259:1", 1048576);
    t.part(&nvme, "nvme0n1p2", "259:2", 999000000);
    // A SATA disk whose partition holds dm-0, mounted at /srv.
    let sda = t.disk(
        "sda",
        SATA_HOST,
        &[
            ("dev", "8:0"),
            ("size", "3907029168"),
            ("removable", "0"),
            ("device/vendor", "ATA     "),
            ("device/model", "WDC WD20EZRZ-00Z"),
        ],
    );
    let sda1 = t.part(&sda, "sda1", "8:1", 3907027120);
    let dm = t.disk(
        "dm-0",
        "virtual",
        &[("dev", "254:0"), ("size", "3907000000")],
    );
    fs::create_dir_all(sda1.join("holders")).unwrap();
    std::os::unix::fs::symlink(&dm, sda1.join("holders/dm-0")).unwrap();
    // loop0 attached to a 64 MiB file, loop1 unattached, zram0 unused.
    t.disk(
        "loop0",
        "virtual",
        &[
            ("dev", "7:0"),
            ("size", "131072"),
            ("loop/backing_file", "/var/tmp/stick.img"),
        ],
    );
    t.disk("loop1", "virtual", &[("dev", "7:1"), ("size", "0")]);
    t.disk("zram0", "virtual", &[("dev", "252:0"), ("size", "0")]);
    t
}

const MOUNTS: &str = "\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
23 22 259:1 / /boot/efi rw shared:2 - vfat /dev/nvme0n1p1 rw
24 22 179:33 / /media/fin/resin-boot rw shared:3 - vfat /dev/mmcblk1p1 rw
25 22 254:0 / /srv rw shared:4 - ext4 /dev/mapper/data rw
26 22 0:5 / /proc rw shared:5 - proc proc rw
";

#[test]
fn classifies_a_laptop_with_media() {
    let t = laptop();
    let mounts = parse_mountinfo(MOUNTS).unwrap();
    let drives = scan(&t.roots(), &mounts, Some(100 << 20)).unwrap();
    let names: Vec<&str> = drives.iter().map(|d| d.name.as_str()).collect();
    // Eligible drives first, then excluded ones, removable media first in
    // each group, then by name; boot
    // areas, loop1, zram0 left out; dm-0 listed as a virtual disk.
    assert_eq!(
        names,
        ["mmcblk0", "sdb", "mmcblk1", "sdc", "dm-0", "loop0", "nvme0n1", "sda"]
    );
    let by = |n: &str| drives.iter().find(|d| d.name == n).unwrap();

    let sdb = by("sdb");
    assert_eq!(sdb.transport, Transport::Usb);
    assert_eq!(sdb.path, Path::new("/dev/sdb"));
    assert_eq!(sdb.model.as_deref(), Some("SanDisk Cruzer Blade"));
    assert_eq!(sdb.serial.as_deref(), Some("4C530001"));
    assert_eq!(sdb.size_bytes, 30031872 * 512);
    assert_eq!(sdb.excluded, None);
    let labels: Vec<_> = sdb.partitions.iter().map(|p| p.label.as_deref()).collect();
    assert_eq!(labels, [Some("resin-boot"), Some("resin-rootA")]);
    assert_eq!(sdb.partitions[0].path, Path::new("/dev/sdb1"));
    assert_eq!(sdb.partitions[1].size_bytes, 2048000 * 512);

    let sd = by("mmcblk0");
    assert_eq!(sd.transport, Transport::Sd);
    assert_eq!(sd.model.as_deref(), Some("SL16G"));
    assert_eq!(sd.serial.as_deref(), Some("0x1234abcd"));
    assert!(sd.is_removable_media() && sd.excluded.is_none());

    let emmc = by("mmcblk1");
    assert_eq!(emmc.transport, Transport::Mmc);
    assert_eq!(
        emmc.excluded,
        Some(Exclusion::Mounted {
            mount_point: "/media/fin/resin-boot".into()
        })
    );
    assert_eq!(
        emmc.partitions[0].mounted_at,
        [PathBuf::from("/media/fin/resin-boot")]
    );

    let nvme = by("nvme0n1");
    assert_eq!(nvme.transport, Transport::Nvme);
    assert_eq!(nvme.excluded, Some(Exclusion::HoldsRoot));
    assert_eq!(nvme.serial.as_deref(), Some("S4EVNX0N123456"));
    assert_eq!(nvme.mounted_at.len(), 2);

    let sda = by("sda");
    assert_eq!(sda.transport, Transport::Sata);
    assert_eq!(sda.model.as_deref(), Some("ATA WDC WD20EZRZ-00Z"));
    assert_eq!(
        sda.excluded,
        Some(Exclusion::Mounted {
            mount_point: "/srv".into()
        }),
        "mounted through its dm-crypt holder"
    );

    let lp = by("loop0");
    assert_eq!(lp.transport, Transport::Loop);
    assert_eq!(
        lp.backing_file.as_deref(),
        Some(Path::new("/var/tmp/stick.img"))
    );
    assert_eq!(
        lp.excluded,
        Some(Exclusion::TooSmall {
            drive_bytes: 64 << 20,
            image_bytes: 100 << 20
        })
    );
    assert_eq!(by("sdc").excluded, Some(Exclusion::NoMedium));
    assert_eq!(by("sdc").transport, Transport::Usb);
}

#[test]
fn without_udev_or_image_size() {
    let t = laptop();
    let mounts = parse_mountinfo(MOUNTS).unwrap();
    let roots = Roots::new(t.sys(), None, "/dev");
    let drives = scan(&roots, &mounts, None).unwrap();
    let sdb = drives.iter().find(|d| d.name == "sdb").unwrap();
    // sysfs only: vendor and model as the device reports them, no labels.
    assert_eq!(sdb.model.as_deref(), Some("SanDisk Cruzer Blade"));
    assert_eq!(sdb.serial, None);
    assert!(sdb.partitions.iter().all(|p| p.label.is_none()));
    let lp = drives.iter().find(|d| d.name == "loop0").unwrap();
    assert_eq!(lp.excluded, None, "no image: no size check");
    // Without mounts nothing is mounted or root.
    let drives = scan(&roots, &[], None).unwrap();
    assert!(drives
        .iter()
        .all(|d| d.excluded.is_none() || d.excluded == Some(Exclusion::NoMedium)));
}

#[test]
fn a_corrupt_attribute_names_its_file() {
    let t = Tree::new();
    t.disk("sdx", USB_HOST, &[("dev", "8:80"), ("size", "lots")]);
    let e = scan(&t.roots(), &[], None).unwrap_err();
    assert!(matches!(e, Error::Attribute { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("block/sdx/size") && msg.contains("lots"),
        "{msg}"
    );
    let t = Tree::new();
    t.disk("sdy", USB_HOST, &[("dev", "8"), ("size", "8")]);
    let msg = scan(&t.roots(), &[], None).unwrap_err().to_string();
    assert!(msg.contains("block/sdy/dev"), "{msg}");
    let missing = Roots::new(t.sys().join("nope"), None, "/dev");
    let msg = scan(&missing, &[], None).unwrap_err().to_string();
    assert!(msg.contains("nope/block: cannot read"), "{msg}");
}
