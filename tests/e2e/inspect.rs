//! `kiln inspect` reads back what `kiln build` wrote, and images made by
//! the standard tools (sfdisk + mkfs.vfat + mcopy + mke2fs).

use kiln_e2e::*;
use std::process::Command;

#[test]
fn inspect_roundtrips_a_kiln_image() {
    demo_inputs();
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("nuc.img");
    let built = ok(kiln()
        .args([
            "build",
            "-q",
            "--json",
            "--board",
            "nuc-gpt",
            "--recipe",
            "bob-onprem",
            "-o",
        ])
        .arg(&img)
        .args(["--set", "deviceApiKey=topsecret", "--set", "hostname=bob-7"]));
    let built: serde_json::Value = serde_json::from_str(&built).unwrap();
    let seen: serde_json::Value =
        serde_json::from_str(&ok(kiln().args(["inspect", "--json"]).arg(&img))).unwrap();
    assert_eq!(seen["table"], "gpt");
    assert_eq!(seen["disk_bytes"], built["disk_bytes"]);
    let bp = built["partitions"].as_array().unwrap();
    let sp = seen["partitions"].as_array().unwrap();
    assert_eq!(bp.len(), sp.len());
    for (b, s) in bp.iter().zip(sp) {
        assert_eq!(b["number"], s["number"]);
        assert_eq!(b["start"], s["start"]);
        assert_eq!(b["size"], s["size"]);
        assert_eq!(b["part_guid"], s["guid"]);
        assert_eq!(b["label"], s["name"]);
        match s["fs"]["type"].as_str().unwrap() {
            "ext4" => {
                assert_eq!(s["fs"]["label"], b["label"]);
                assert_eq!(s["fs"]["uuid"], b["fs_id"]);
            }
            "fat" => {
                assert_eq!(
                    s["fs"]["label"].as_str().unwrap().to_lowercase(),
                    "resin-boot"
                );
                assert_eq!(s["fs"]["id"], b["fs_id"]);
            }
            other => panic!("unexpected fs {other}"),
        }
    }
    // Config as built, secrets redacted in both.
    assert_eq!(seen["config"], built["config"]);
    assert_eq!(seen["config"]["deviceApiKey"], "<redacted>");
    assert_eq!(seen["config"]["hostname"], "bob-7");
    let files: Vec<&str> = seen["boot_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    for f in [
        "config.json",
        "system-connections/bob-ethernet",
        "grub/grub.cfg",
        "EFI/BOOT",
    ] {
        assert!(files.contains(&f), "{f} not in {files:?}");
    }
    // The data partition: preloaded images, apps.json services, swapfile.
    let data = &seen["data"];
    let images = data["images"].as_array().unwrap();
    assert_eq!(images.len(), 3, "{data}");
    assert!(images.iter().all(|i| i["layers"].as_u64().unwrap() >= 1));
    let services: Vec<&str> = data["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["api", "db", "proxy"]);
    assert!(data["services"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["preloaded"] == true));
    assert_eq!(data["swap"]["size"], 1u64 << 30);
    assert_eq!(data["swap"]["label"], "bob-swap");
    // The text form names partitions and never prints the secret.
    let text = ok(kiln().arg("inspect").arg(&img));
    assert!(
        text.contains("resin-data") && text.contains("config.json"),
        "{text}"
    );
    assert!(!text.contains("topsecret"));
}

#[test]
fn inspect_reads_an_image_made_by_standard_tools() {
    for tool in [
        ("sfdisk", "fdisk"),
        ("mkfs.vfat", "dosfstools"),
        ("mcopy", "mtools"),
        ("mke2fs", "e2fsprogs"),
    ] {
        require(tool.0, tool.1);
    }
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("std.img");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(96 << 20).unwrap();
    drop(f);
    let script = "label: dos\nlabel-id: 0x12345678\nstart=8192, size=81920, type=c, bootable\nstart=90112, size=90112, type=83\n";
    let mut child = Command::new("sfdisk")
        .arg("-q")
        .arg(&img)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    let boot = d.path().join("boot.vfat");
    ok(Command::new("mkfs.vfat")
        .args(["-F", "32", "-n", "RESIN-BOOT", "-i", "1234ABCD", "-C"])
        .arg(&boot)
        .arg("40960"));
    let cfg = d.path().join("config.json");
    std::fs::write(
        &cfg,
        br#"{"hostname":"std-tools","apiKey":"nope","deviceType":"fincm3"}"#,
    )
    .unwrap();
    ok(Command::new("mcopy")
        .arg("-i")
        .arg(&boot)
        .arg(&cfg)
        .arg("::config.json")
        .env("MTOOLS_SKIP_CHECK", "1"));
    let root = d.path().join("root.ext4");
    ok(Command::new("mke2fs")
        .args([
            "-q",
            "-t",
            "ext4",
            "-L",
            "resin-rootA",
            "-U",
            "11111111-2222-4333-8444-555555555555",
        ])
        .arg(&root)
        .arg("45056"));
    for (src, seek) in [(&boot, 8192), (&root, 90112)] {
        ok(Command::new("dd")
            .arg(format!("if={}", src.display()))
            .arg(format!("of={}", img.display()))
            .args([
                "bs=512",
                &format!("seek={seek}"),
                "conv=notrunc,sparse",
                "status=none",
            ]));
    }
    let seen: serde_json::Value =
        serde_json::from_str(&ok(kiln().args(["inspect", "--json"]).arg(&img))).unwrap();
    assert_eq!(seen["table"], "mbr");
    assert_eq!(seen["disk_id"], "0x12345678");
    let p = seen["partitions"].as_array().unwrap();
    assert_eq!(p[0]["start"], 8192 * 512);
    assert_eq!(p[0]["bootable"], true);
    assert_eq!(p[0]["type_id"], "0x0c");
    assert_eq!(p[0]["fs"]["variant"], "fat32");
    assert_eq!(p[0]["fs"]["id"], "1234-ABCD");
    assert_eq!(p[1]["fs"]["label"], "resin-rootA");
    assert_eq!(p[1]["fs"]["uuid"], "11111111-2222-4333-8444-555555555555");
    assert_eq!(seen["config"]["hostname"], "std-tools");
    assert_eq!(seen["config"]["apiKey"], "<redacted>");
}
