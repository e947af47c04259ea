//! `kiln build` for every board profile, checked with the real tools:
//! sfdisk/sgdisk (exact layout), fsck.fat and e2fsck (every filesystem),
//! blkid (labels), mtools (config.json and network profiles read back),
//! debugfs (the swapfile); and reproducibility.

use base64::Engine as _;
use kiln_e2e::*;
use std::path::Path;
use std::process::Command;

const MIB_SECTORS: u64 = 2048;

struct Expect {
    board: &'static str,
    gpt: bool,
    boot_type: &'static str,
    root_mib: u64,
    device_type: &'static str,
}

const BOARDS: &[Expect] = &[
    Expect {
        board: "nuc",
        gpt: false,
        boot_type: "e",
        root_mib: 1000,
        device_type: "intel-nuc",
    },
    Expect {
        board: "nuc-gpt",
        gpt: true,
        boot_type: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
        root_mib: 1000,
        device_type: "intel-nuc",
    },
    Expect {
        board: "fin-cm3",
        gpt: false,
        boot_type: "c",
        root_mib: 320,
        device_type: "fincm3",
    },
    Expect {
        board: "fin-cm3plus",
        gpt: false,
        boot_type: "c",
        root_mib: 320,
        device_type: "fincm3",
    },
];

fn build(board: &str, out: &Path, extra: &[&str]) {
    demo_inputs();
    ok(kiln()
        .args([
            "build",
            "-q",
            "--board",
            board,
            "--recipe",
            "bob-onprem",
            "-o",
        ])
        .arg(out)
        .args(extra));
}

/// Expected (number, start, size-or-0-for-data, type) in 512-byte sectors.
fn layout(e: &Expect) -> Vec<(u32, u64, u64, String)> {
    let root = e.root_mib * MIB_SECTORS;
    let mut v = vec![
        (
            1,
            4 * MIB_SECTORS,
            40 * MIB_SECTORS,
            e.boot_type.to_string(),
        ),
        (
            2,
            44 * MIB_SECTORS,
            root,
            if e.gpt { LINUX.into() } else { "83".into() },
        ),
        (
            3,
            44 * MIB_SECTORS + root,
            root,
            if e.gpt { LINUX.into() } else { "83".into() },
        ),
    ];
    let after_roots = 44 * MIB_SECTORS + 2 * root;
    if e.gpt {
        v.push((4, after_roots, 20 * MIB_SECTORS, LINUX.into()));
        v.push((5, after_roots + 20 * MIB_SECTORS, 0, LINUX.into()));
    } else {
        // p4 extended from after rootB; EBR 4 MiB before each logical.
        v.push((4, after_roots, 0, "f".into()));
        v.push((
            5,
            after_roots + 4 * MIB_SECTORS,
            20 * MIB_SECTORS,
            "83".into(),
        ));
        v.push((6, after_roots + 28 * MIB_SECTORS, 0, "83".into()));
    }
    v
}

const LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

#[test]
fn every_board_builds_a_valid_image() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = std::fs::read(repo().join("recipes/bob-onprem/certs/onprem-ca.pem")).unwrap();
    let ssh = std::fs::read_to_string(repo().join("recipes/bob-onprem/ssh/ops.pub")).unwrap();
    let nm = std::fs::read(repo().join("recipes/bob-onprem/network/bob-ethernet")).unwrap();
    for e in BOARDS {
        let img = tmp.path().join(format!("{}.img", e.board));
        build(
            e.board,
            &img,
            &["--set", "uuid=0123456789abcdef0123456789abcdef"],
        );
        let (table, parts) = sfdisk(&img);
        let label = table["partitiontable"]["label"].as_str().unwrap();
        assert_eq!(label, if e.gpt { "gpt" } else { "dos" }, "{}", e.board);
        let want = layout(e);
        assert_eq!(parts.len(), want.len(), "{}: {parts:?}", e.board);
        for (p, (n, start, size, kind)) in parts.iter().zip(&want) {
            assert_eq!(
                (p.number, p.start, &p.kind),
                (*n, *start, kind),
                "{} p{n}: {p:?}",
                e.board
            );
            if *size != 0 {
                assert_eq!(p.size, *size, "{} p{n} size", e.board);
            }
            assert_eq!(
                p.bootable,
                !e.gpt && *n == 1,
                "{} p{n} active flag",
                e.board
            );
            assert_eq!(p.start % (4 * MIB_SECTORS), 0, "{} p{n} aligned", e.board);
        }
        if e.gpt {
            require("sgdisk", "gdisk");
            let v = ok(Command::new("sgdisk").arg("-v").arg(&img));
            assert!(v.contains("No problems found"), "{v}");
            let names: Vec<_> = parts
                .iter()
                .map(|p| p.name.clone().unwrap_or_default())
                .collect();
            assert_eq!(
                names,
                [
                    "resin-boot",
                    "resin-rootA",
                    "resin-rootB",
                    "resin-state",
                    "resin-data"
                ]
            );
        } else {
            let v = ok(Command::new("sfdisk").arg("-V").arg(&img));
            assert!(v.contains("No errors detected"), "{v}");
        }
        // Filesystems: labels, fsck.
        let fs_parts: Vec<_> = parts.iter().filter(|p| p.kind != "f").collect();
        let labels = [
            "resin-boot",
            "resin-rootA",
            "resin-rootB",
            "resin-state",
            "resin-data",
        ];
        for (p, want_label) in fs_parts.iter().zip(labels) {
            let (ty, lab, _uuid) = blkid(&img, p);
            assert_eq!(lab, want_label, "{} p{}", e.board, p.number);
            let part_img = tmp.path().join(format!("{}-p{}", e.board, p.number));
            extract(&img, p, &part_img);
            if p.number == 1 {
                assert_eq!(ty, "vfat");
                fsck_fat_clean(&part_img);
            } else {
                assert_eq!(ty, "ext4");
                e2fsck_clean(&part_img);
            }
            if want_label == "resin-rootA" {
                // The swap unit is enabled as systemctl does: a symlink in
                // swap.target.wants (systemd ignores regular files there).
                let link = debugfs(
                    &part_img,
                    "stat /etc/systemd/system/swap.target.wants/mnt-data-swapfile.swap",
                );
                assert!(
                    link.contains("Type: symlink")
                        && link.contains("\"../mnt-data-swapfile.swap\""),
                    "{link}"
                );
                let unit = debugfs(&part_img, "cat /etc/systemd/system/mnt-data-swapfile.swap");
                assert!(
                    unit.contains("What=/mnt/data/swapfile")
                        && unit.contains("RequiresMountsFor=/mnt/data"),
                    "{unit}"
                );
            }
            if want_label == "resin-data" {
                let st = debugfs(&part_img, "stat /swapfile");
                assert!(st.contains("Size: 1073741824"), "{st}");
                assert!(st.contains("Mode:  0600"), "{st}");
                let ls = debugfs(&part_img, "ls -l /");
                for name in ["resin-data", "remove_me_to_reset", "swapfile", "lost+found"] {
                    assert!(ls.contains(name), "{name} missing in data root: {ls}");
                }
            }
            std::fs::remove_file(&part_img).unwrap();
        }
        // config.json read back with mtools equals the recipe's values.
        let boot = &parts[0];
        let cfg: serde_json::Value =
            serde_json::from_slice(&mtype(&img, boot, "config.json")).unwrap();
        assert_eq!(cfg["hostname"], "bob-onprem");
        assert_eq!(cfg["deviceType"], e.device_type);
        assert_eq!(cfg["listenPort"], 48484);
        assert_eq!(cfg["persistentLogging"], true);
        assert_eq!(cfg["uuid"], "0123456789abcdef0123456789abcdef");
        assert_eq!(cfg["os"]["sshKeys"][0], ssh.trim());
        assert_eq!(
            cfg["balenaRootCA"],
            base64::engine::general_purpose::STANDARD.encode(&ca)
        );
        assert!(
            cfg.get("apiEndpoint").is_none(),
            "airgapped default: unmanaged"
        );
        let text = String::from_utf8(mtype(&img, boot, "config.json")).unwrap();
        assert!(text.starts_with("{\n  \""), "pretty printed: {text}");
        assert_eq!(mtype(&img, boot, "system-connections/bob-ethernet"), nm);
        std::fs::remove_file(&img).unwrap();
    }
}

#[test]
fn same_inputs_and_source_date_epoch_give_identical_images() {
    let tmp = tempfile::tempdir().unwrap();
    demo_inputs();
    let mut digests = Vec::new();
    for i in 0..2 {
        let img = tmp.path().join(format!("r{i}.img"));
        ok(kiln()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args([
                "build",
                "-q",
                "--board",
                "fin-cm3plus",
                "--recipe",
                "bob-onprem",
                "-o",
            ])
            .arg(&img));
        digests.push(sha256_file(&img));
    }
    assert_eq!(digests[0], digests[1]);
    // A different time gives a different image (the time really is used).
    let img = tmp.path().join("r2.img");
    ok(kiln()
        .env("SOURCE_DATE_EPOCH", "1700000001")
        .args([
            "build",
            "-q",
            "--board",
            "fin-cm3plus",
            "--recipe",
            "bob-onprem",
            "-o",
        ])
        .arg(&img));
    assert_ne!(sha256_file(&img), digests[0]);
}
