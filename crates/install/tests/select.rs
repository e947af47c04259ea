//! Target selection on a recorded sysfs tree (laid out as the kernel
//! does, as in kiln-drives' own tests): a NUC booted from the installer
//! stick, with a second USB disk, two NVMe disks (one partitioned), a
//! mounted SATA disk, a small virtio disk and a loop device. Each
//! exclusion is checked with its reason, then the rules and the console.

use std::fs;
use std::path::{Path, PathBuf};

use kiln_drives::{scan, Exclusion, Roots, Transport};
use kiln_flash::mountinfo::parse_mountinfo;
use kiln_install::{candidates, choose, pick, Candidate, Console, Error, Reason, Settings};
use kiln_recipe::{InstallerSpec, TargetRule};

const IMAGE_BYTES: u64 = 3_602_907_136;

fn disk(sys: &Path, name: &str, bus: &str, attrs: &[(&str, &str)]) -> PathBuf {
    let rel = format!("devices/{bus}/block/{name}");
    let d = sys.join(&rel);
    for (k, v) in attrs {
        let p = d.join(k);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, format!("{v}\n")).unwrap();
    }
    std::os::unix::fs::symlink(format!("../{rel}"), sys.join("block").join(name)).unwrap();
    d
}

fn part(disk: &Path, name: &str, dev: &str, sectors: u64) {
    let p = disk.join(name);
    fs::create_dir_all(&p).unwrap();
    fs::write(p.join("partition"), "1\n").unwrap();
    fs::write(p.join("dev"), format!("{dev}\n")).unwrap();
    fs::write(p.join("size"), format!("{sectors}\n")).unwrap();
}

const USB1: &str = "pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/host6/target6:0:0/6:0:0:0";
const USB2: &str = "pci0000:00/0000:00:14.0/usb1/1-3/1-3:1.0/host7/target7:0:0/7:0:0:0";
const NVME0: &str = "pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0";
const NVME1: &str = "pci0000:00/0000:00:1d.1/0000:3e:00.0/nvme/nvme1";
const SATA: &str = "pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0";
const VIRTIO: &str = "pci0000:00/0000:00:05.0/virtio2";

const MOUNTS: &str = "\
22 1 8:18 / / ro,relatime shared:1 - ext4 /dev/sdb2 ro
23 22 8:1 / /srv rw shared:2 - ext4 /dev/sda1 rw
26 22 0:5 / /proc rw shared:5 - proc proc rw
";

fn machine() -> (tempfile::TempDir, Vec<Candidate>) {
    let dir = tempfile::tempdir().unwrap();
    let sys = dir.path().join("sys");
    fs::create_dir_all(sys.join("block")).unwrap();
    let stick = disk(
        &sys,
        "sdb",
        USB1,
        &[("dev", "8:16"), ("size", "30031872"), ("removable", "1")],
    );
    part(&stick, "sdb1", "8:17", 81920);
    part(&stick, "sdb2", "8:18", 2048000);
    disk(
        &sys,
        "sdc",
        USB2,
        &[("dev", "8:32"), ("size", "976773168"), ("removable", "0")],
    );
    disk(
        &sys,
        "nvme0n1",
        NVME0,
        &[
            ("dev", "259:0"),
            ("size", "500118192"),
            ("device/model", "Samsung SSD 980 250GB"),
            ("device/serial", "S64DNX0R1"),
        ],
    );
    let n1 = disk(
        &sys,
        "nvme1n1",
        NVME1,
        &[
            ("dev", "259:3"),
            ("size", "250069680"),
            ("device/serial", "WD123"),
        ],
    );
    part(&n1, "nvme1n1p1", "259:4", 1048576);
    let sda = disk(
        &sys,
        "sda",
        SATA,
        &[
            ("dev", "8:0"),
            ("size", "3907029168"),
            ("device/model", "WDC"),
        ],
    );
    part(&sda, "sda1", "8:1", 3907027120);
    disk(
        &sys,
        "vda",
        VIRTIO,
        &[("dev", "254:0"), ("size", "4194304")],
    );
    disk(
        &sys,
        "loop0",
        "virtual",
        &[
            ("dev", "7:0"),
            ("size", "8388608"),
            ("loop/backing_file", "/var/tmp/t.img"),
        ],
    );
    let mounts = parse_mountinfo(MOUNTS).unwrap();
    let drives = scan(&Roots::new(&sys, None, "/dev"), &mounts, Some(IMAGE_BYTES)).unwrap();
    (dir, candidates(drives))
}

fn by_name<'a>(c: &'a [Candidate], name: &str) -> &'a Candidate {
    c.iter().find(|c| c.drive.name == name).unwrap()
}

#[test]
fn each_exclusion_with_its_reason() {
    let (_d, c) = machine();
    let table: [(&str, Option<Reason>); 7] = [
        ("sdb", Some(Reason::Drive(Exclusion::HoldsRoot))),
        ("sdc", Some(Reason::Removable)),
        ("nvme0n1", None),
        ("nvme1n1", None),
        (
            "sda",
            Some(Reason::Drive(Exclusion::Mounted {
                mount_point: "/srv".into(),
            })),
        ),
        (
            "vda",
            Some(Reason::Drive(Exclusion::TooSmall {
                drive_bytes: 4194304 * 512,
                image_bytes: IMAGE_BYTES,
            })),
        ),
        ("loop0", Some(Reason::Transport(Transport::Loop))),
    ];
    for (name, want) in table {
        assert_eq!(by_name(&c, name).excluded, want, "{name}");
    }
    let text = by_name(&c, "sdb").excluded.as_ref().unwrap().to_string();
    assert!(text.contains("runs from"), "{text}");
    let line = by_name(&c, "nvme0n1").describe();
    for want in [
        "/dev/nvme0n1",
        "nvme",
        "Samsung SSD 980",
        "S64DNX0R1",
        "256060514304",
        "no partitions",
    ] {
        assert!(line.contains(want), "{line}");
    }
    assert!(by_name(&c, "nvme1n1").describe().contains("nvme1n1p1"));
}

#[test]
fn target_rules() {
    let (_d, c) = machine();
    let pick = |r: TargetRule| choose(&c, &r).map(|c| c.drive.name.clone());
    assert_eq!(pick(TargetRule::LargestInternal).unwrap(), "nvme0n1");
    assert_eq!(pick(TargetRule::Serial("WD123".into())).unwrap(), "nvme1n1");
    // An explicit path waives only the transport rule.
    assert_eq!(
        pick(TargetRule::Path("/dev/loop0".into())).unwrap(),
        "loop0"
    );
    assert!(matches!(
        pick(TargetRule::Path("/dev/sda".into())),
        Err(Error::Refused { .. })
    ));
    assert!(matches!(
        pick(TargetRule::Path("/dev/sdb".into())),
        Err(Error::Refused { .. })
    ));
    assert!(matches!(
        pick(TargetRule::Serial("nope".into())),
        Err(Error::NoTarget { .. })
    ));
}

fn settings(unattended: bool, target: Option<TargetRule>, allow: bool) -> Settings {
    let spec = InstallerSpec {
        unattended,
        target,
        allow_data_loss: allow,
        ..InstallerSpec::default()
    };
    Settings::new(&spec, "/opt/kiln-nuc.img", IMAGE_BYTES, "ab")
}

fn ask(s: &Settings, c: &[Candidate], answers: &str) -> (Result<String, Error>, String) {
    let mut input = answers.as_bytes();
    let mut output = Vec::new();
    let got = pick(
        s,
        c,
        &mut Console {
            input: &mut input,
            output: &mut output,
        },
    )
    .map(|c| c.drive.name.clone());
    (got, String::from_utf8(output).unwrap())
}

#[test]
fn console_and_partition_guard() {
    let (_d, c) = machine();
    // Unattended: the rule decides, a partitioned disk needs allow-data-loss.
    let (got, out) = ask(
        &settings(true, Some(TargetRule::LargestInternal), false),
        &c,
        "",
    );
    assert_eq!(got.unwrap(), "nvme0n1");
    assert!(out.contains("excluded: removable media"), "{out}");
    let serial = Some(TargetRule::Serial("WD123".into()));
    let (got, _) = ask(&settings(true, serial.clone(), false), &c, "");
    let e = got.unwrap_err();
    assert!(e.to_string().contains("allow-data-loss"), "{e}");
    assert_eq!(
        ask(&settings(true, serial, true), &c, "").0.unwrap(),
        "nvme1n1"
    );
    // Interactive: two eligible disks, a number, then yes.
    let (got, out) = ask(&settings(false, None, false), &c, "2\nyes\n");
    assert_eq!(got.unwrap(), "nvme1n1");
    assert!(out.contains("DESTROYED"), "{out}");
    assert!(matches!(
        ask(&settings(false, None, false), &c, "1\nno\n").0,
        Err(Error::Declined)
    ));
    assert!(matches!(
        ask(&settings(false, None, false), &c, "").0,
        Err(Error::Declined)
    ));
}
