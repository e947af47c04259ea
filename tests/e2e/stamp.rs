//! `kiln stamp`: 100 per-device images from one kiln-built image, checked
//! with the real tools: cmp (nothing outside the boot partition changes),
//! mtools (the boot listing and every other file are unchanged, each
//! config.json carries its own uuid/hostname), fsck.fat, sfdisk,
//! qemu-img (overlays: check, compare against the stamped raw image,
//! backing file), sha256sum -c; secrets never printed or recorded; bad
//! devices files refused with file:line and nothing written.

use kiln_e2e::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const N: usize = 100;
const EPOCH: &str = "1750000000";

/// A small nuc-like board (same partition roles and labels, small root
/// filesystems) so 100 full raw copies stay quick to hash and compare.
const TINY_BOARD: &str = r#"
name = "tiny-nuc"
description = "nuc layout with small partitions (stamp test)"
arch = "amd64"
table = "mbr"
device-type = "intel-nuc"
alignment = "4MiB"
first-partition = "4MiB"
ebr-gap = "4MiB"
ram = "1GiB"
media = ["8GB"]

[[partition]]
label = "resin-boot"
role = "boot"
fs = "fat16"
size = "40MiB"
bootable = true

[[partition]]
label = "resin-rootA"
role = "root-a"
fs = "ext4"
size = "24MiB"

[[partition]]
label = "resin-rootB"
role = "root-b"
fs = "ext4"
size = "24MiB"

[[partition]]
label = "resin-state"
role = "state"
fs = "ext4"
size = "8MiB"
logical = true

[[partition]]
label = "resin-data"
role = "data"
fs = "ext4"
size = "auto"
logical = true
"#;

fn uuid(i: usize) -> String {
    format!(
        "{:032x}",
        0x5eed_0000_0000_0000_0000_0000_0000_0000u128 + i as u128 * 7919
    )
}

fn secret(i: usize) -> String {
    format!("SeCrEtApIkEy{i:04}x")
}

/// Builds the source image; returns (image, boot partition).
fn source(dir: &Path) -> (PathBuf, SfPart) {
    let board = dir.join("tiny-nuc.toml");
    std::fs::write(&board, TINY_BOARD).unwrap();
    let recipe = recipe_copy(dir, |s| {
        let app = s.find("[app]").expect("[app]");
        let swap = s.find("[swap]").expect("[swap]");
        format!("{}{}", &s[..app], &s[swap..])
            .replace("size = \"1GiB\"", "size = \"8MiB\"")
            .replace("headroom = \"256MiB\"", "headroom = \"8MiB\"")
    });
    let img = dir.join("src.img");
    ok(kiln()
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .args(["build", "-q", "--board"])
        .arg(&board)
        .arg("--recipe")
        .arg(&recipe)
        .arg("-o")
        .arg(&img));
    let (_, parts) = sfdisk(&img);
    let boot = parts.iter().find(|p| p.number == 1).unwrap().clone();
    (img, boot)
}

fn devices_csv(dir: &Path) -> PathBuf {
    let mut s = String::from(
        "name,uuid,hostname,deviceApiKey,os.network.wifi,supervisor.tag:json,network.address,network.gateway,network.dns\n",
    );
    for i in 0..N {
        let net = if i % 2 == 0 {
            format!("10.1.{}.{}/16,10.1.0.1,10.1.0.53", i / 200, i % 200 + 10)
        } else {
            ",,".into()
        };
        s.push_str(&format!(
            "dev-{i:03},{},host-{i:03},{},false,\"{{\"\"n\"\": {i}}}\",{net}\n",
            uuid(i),
            secret(i)
        ));
    }
    let p = dir.join("devices.csv");
    std::fs::write(&p, s).unwrap();
    p
}

fn stamp(args: &[&str]) -> std::process::Output {
    run(kiln()
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .arg("stamp")
        .args(args))
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `mdir -/ -a` of the boot partition: per-directory sorted entry lines,
/// without totals/free space and without the lines of `skip` names.
fn listing(img: &Path, boot: &SfPart, skip: &[&str]) -> Vec<(String, Vec<String>)> {
    require("mdir", "mtools");
    let out = ok(Command::new("mdir")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(format!("{}@@{}", img.display(), boot.start * 512))
        .args(["-/", "-a", "::/"]));
    let mut blocks: Vec<(String, Vec<String>)> = vec![(String::new(), Vec::new())];
    for l in out.lines() {
        if l.starts_with("Directory for ") {
            blocks.push((l.to_owned(), Vec::new()));
        } else if !(l.trim().is_empty()
            || l.contains(" file")
            || l.contains("bytes free")
            || skip.iter().any(|s| l.ends_with(s)))
        {
            blocks.last_mut().unwrap().1.push(l.to_owned());
        }
    }
    for b in &mut blocks {
        b.1.sort();
    }
    blocks
}

/// Every file path on the boot partition (`mdir -/ -b`).
fn files(img: &Path, boot: &SfPart) -> Vec<String> {
    let out = ok(Command::new("mdir")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(format!("{}@@{}", img.display(), boot.start * 512))
        .args(["-/", "-b", "::/"]));
    out.lines()
        .filter(|l| !l.ends_with('/'))
        .map(|l| l.trim_start_matches("::").to_owned())
        .collect()
}

fn cmp_outside(src: &Path, out: &Path, boot: &SfPart) {
    require("cmp", "diffutils");
    let start = (boot.start * 512).to_string();
    let end = ((boot.start + boot.size) * 512).to_string();
    // Before the boot partition, then after it.
    ok(Command::new("cmp").arg("-n").arg(&start).arg(src).arg(out));
    ok(Command::new("cmp").arg("-i").arg(&end).arg(src).arg(out));
    assert_eq!(
        std::fs::metadata(src).unwrap().len(),
        std::fs::metadata(out).unwrap().len()
    );
}

#[test]
fn stamp_100_devices_raw_and_qcow2_overlays() {
    require("qemu-img", "qemu-utils");
    require("sha256sum", "coreutils");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (src, boot) = source(d);
    let csv = devices_csv(d);
    let src_sha = sha256_file(&src);

    // Raw images.
    let t0 = std::time::Instant::now();
    let o = stamp(&[
        src.to_str().unwrap(),
        "--devices",
        csv.to_str().unwrap(),
        "-o",
        d.join("raw").to_str().unwrap(),
    ]);
    let raw_secs = t0.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", text(&o));
    let raw_log = text(&o);
    // Overlays.
    let t0 = std::time::Instant::now();
    let o = stamp(&[
        src.to_str().unwrap(),
        "--devices",
        csv.to_str().unwrap(),
        "-o",
        d.join("ov").to_str().unwrap(),
        "--format",
        "qcow2-overlay",
        "--json",
    ]);
    let ov_secs = t0.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", text(&o));
    let ov_log = text(&o);
    eprintln!("stamp of {N} devices: raw {raw_secs:.1} s, qcow2-overlay {ov_secs:.1} s");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["devices"].as_array().unwrap().len(), N);
    assert_eq!(report["source_sha256"], src_sha.as_str());

    // The source is untouched.
    assert_eq!(sha256_file(&src), src_sha);

    let skip = ["config.json", "static-ip"];
    let base_listing = listing(&src, &boot, &skip);
    let base_files = files(&src, &boot);
    let (_, src_parts) = sfdisk(&src);
    for i in 0..N {
        let name = format!("dev-{i:03}");
        let img = d.join("raw").join(format!("{name}.img"));
        // Nothing outside the boot partition changed; the table reads the same.
        cmp_outside(&src, &img, &boot);
        // Boot partition: the same listing (names, sizes, times) except
        // the config files; config.json is this device's.
        assert_eq!(listing(&img, &boot, &skip), base_listing, "{name}");
        let cfg: serde_json::Value =
            serde_json::from_slice(&mtype(&img, &boot, "/config.json")).unwrap();
        assert_eq!(cfg["uuid"], uuid(i).as_str(), "{name}");
        assert_eq!(cfg["hostname"], format!("host-{i:03}").as_str());
        assert_eq!(cfg["deviceApiKey"], secret(i).as_str());
        assert_eq!(cfg["os"]["network"]["wifi"], false);
        assert_eq!(cfg["supervisor"]["tag"]["n"], i);
        // Recipe keys kept.
        assert_eq!(cfg["persistentLogging"], true);
        assert_eq!(cfg["deviceType"], "intel-nuc");
        let net = files(&img, &boot).contains(&"/system-connections/static-ip".to_owned());
        assert_eq!(net, i % 2 == 0, "{name}");
        if i % 2 == 0 {
            let kf =
                String::from_utf8(mtype(&img, &boot, "/system-connections/static-ip")).unwrap();
            let want = format!("address1=10.1.0.{}/16,10.1.0.1\n", i % 200 + 10);
            assert!(kf.contains(&want), "{kf}");
        }
        // A sample in full: fsck.fat, the table, every other file's bytes,
        // the overlay against the raw image.
        let ov = d.join("ov").join(format!("{name}.qcow2"));
        let o = run(Command::new("qemu-img")
            .args(["check", "-f", "qcow2"])
            .arg(&ov));
        assert!(
            o.status.success() && text(&o).contains("No errors"),
            "{}",
            text(&o)
        );
        if i % 10 == 0 {
            let part = d.join("boot.part");
            let _ = std::fs::remove_file(&part);
            extract(&img, &boot, &part);
            fsck_fat_clean(&part);
            assert_eq!(sfdisk(&img).1, src_parts);
            for f in &base_files {
                if !skip.iter().any(|s| f.ends_with(s)) {
                    assert!(
                        mtype(&img, &boot, f) == mtype(&src, &boot, f),
                        "{name}: {f} changed"
                    );
                }
            }
            let o = run(Command::new("qemu-img")
                .args(["compare", "-f", "qcow2", "-F", "raw"])
                .arg(&ov)
                .arg(&img));
            assert!(o.status.success(), "{name}: {}", text(&o));
            let info = ok(Command::new("qemu-img")
                .args(["info", "--output=json"])
                .arg(&ov));
            let info: serde_json::Value = serde_json::from_str(&info).unwrap();
            assert_eq!(info["backing-filename"], "../src.img");
            assert_eq!(info["backing-filename-format"], "raw");
            // Only the boot partition's clusters are in the overlay.
            assert!(std::fs::metadata(&ov).unwrap().len() < boot.size * 512);
        }
        // Manifests: source digest, device, no secrets; raw and overlay
        // agree on the boot partition.
        let m: serde_json::Value = serde_json::from_slice(
            &std::fs::read(d.join("raw").join(format!("{name}.manifest.json"))).unwrap(),
        )
        .unwrap();
        let mo: serde_json::Value = serde_json::from_slice(
            &std::fs::read(d.join("ov").join(format!("{name}.manifest.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(m["source_image"]["sha256"], src_sha.as_str());
        assert_eq!(m["device"], name.as_str());
        assert_eq!(m["config"]["uuid"], uuid(i).as_str());
        assert_eq!(m["config"]["deviceApiKey"], "<redacted>");
        assert_eq!(
            m["boot_partition"]["sha256"],
            mo["boot_partition"]["sha256"]
        );
        assert_eq!(m["boot_partition"]["label"], "resin-boot");
    }
    // An overlay is read through its backing file by kiln too: inspect
    // sees the device's config, flash writes the same disk as the raw
    // stamp's image. The backing image is `../IMAGE`, outside the
    // overlay's directory: refused unless allowed (issue #16, finding 2).
    let name = format!("dev-{:03}", 7);
    let ov = d.join("ov").join(format!("{name}.qcow2"));
    let o = run(kiln().args(["inspect", "--json"]).arg(&ov));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("outside the overlay's directory"),
        "{}",
        text(&o)
    );
    let o = run(kiln()
        .args(["inspect", "--json", "--allow-backing-outside"])
        .arg(&ov));
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["config"]["uuid"], uuid(7).as_str(), "{}", j["config"]);
    let target = d.join("flashed.img");
    let o = run(kiln()
        .arg("flash")
        .arg(&ov)
        .arg(&target)
        .args(["--force", "--allow-backing-outside"]));
    assert!(o.status.success(), "{}", text(&o));
    ok(Command::new("cmp")
        .arg(&target)
        .arg(d.join("raw").join(format!("{name}.img"))));
    std::fs::remove_file(&target).unwrap();

    // Every output has its own digest, listed in SHA256SUMS with its
    // manifest's (checked with sha256sum -c for the overlays and a sample
    // of raw images).
    let sums = std::fs::read_to_string(d.join("raw/SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), 2 * N);
    let sums: String = sums
        .lines()
        .filter(|l| !l.ends_with(".manifest.json"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(sums.lines().count(), N);
    let digests: std::collections::BTreeSet<&str> = sums
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(digests.len(), N);
    let sample: String = sums.lines().step_by(25).map(|l| format!("{l}\n")).collect();
    std::fs::write(d.join("raw/SAMPLE.sums"), sample).unwrap();
    ok(Command::new("sha256sum")
        .args(["-c", "--quiet", "SAMPLE.sums"])
        .current_dir(d.join("raw")));
    ok(Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(d.join("ov")));

    // Secrets: applied to the images, never in logs or manifests.
    for i in 0..N {
        let s = secret(i);
        assert!(
            !raw_log.contains(&s) && !ov_log.contains(&s),
            "secret in the output"
        );
    }
    for sub in ["raw", "ov"] {
        for e in std::fs::read_dir(d.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "json") {
                let t = std::fs::read_to_string(&p).unwrap();
                assert!(!t.contains("SeCrEt"), "secret in {}", p.display());
            }
        }
    }
    // No leftovers beside the outputs.
    let names: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("partial")), "{names:?}");
    assert!(!std::fs::read_dir(d.join("ov")).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("scratch")));
}

#[test]
fn bad_devices_files_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (src, _) = source(d);
    let u1 = uuid(1);
    let u2 = uuid(2);
    let cases: Vec<(&str, String, &str)> = vec![
        ("devices.csv", format!("hostname,deviceApiKey\nh1,{}\n", secret(1)), "devices.csv:1: missing column `uuid`"),
        ("devices.csv", format!("uuid,deviceApiKey\n{u1},{}\n", secret(1)), "devices.csv:1: missing column `hostname`"),
        ("devices.csv", format!("uuid,hostname\n{u1},a\n\n{u2},a\n"), "devices.csv:4: duplicate device name"),
        ("devices.csv", format!("uuid,hostname,x:json\n{u1},a,{{oops\n"), "devices.csv:2: column `x:json`: invalid JSON"),
        ("devices.json", format!("[\n  {{\"uuid\": \"{u1}\", \"hostname\": \"a\"}},\n  {{\"uuid\": \"{u2}\" \"hostname\": \"b\"}}\n]\n"), "devices.json:3: invalid JSON"),
        ("devices.json", format!("[\n  {{\"uuid\": \"{u1}\", \"hostname\": \"a\"}},\n  {{\"hostname\": \"b\"}}\n]\n"), "devices.json:3: missing `uuid`"),
    ];
    for (file, body, want) in cases {
        let p = d.join(file);
        std::fs::write(&p, body).unwrap();
        let out = d.join("fleet");
        let o = stamp(&[
            src.to_str().unwrap(),
            "--devices",
            p.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(2), "{want}: {err}");
        let line = err
            .lines()
            .find(|l| l.starts_with("kiln: error:"))
            .unwrap_or_default();
        assert!(line.contains(want), "want {want:?}, got {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!err.contains("SeCrEt"), "{err}");
        assert!(!out.exists(), "{want}: output written");
        let left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("fleet"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
    // A non-empty output directory is refused too, and left as it was.
    let p = d.join("ok.csv");
    std::fs::write(&p, format!("uuid,hostname\n{u1},a\n")).unwrap();
    let out = d.join("full");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep"), b"x").unwrap();
    let o = stamp(&[
        src.to_str().unwrap(),
        "--devices",
        p.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
    // An image without a boot partition.
    let blank = d.join("blank.img");
    std::fs::write(&blank, vec![0u8; 1 << 20]).unwrap();
    let o = stamp(&[
        blank.to_str().unwrap(),
        "--devices",
        p.to_str().unwrap(),
        "-o",
        d.join("x").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(!d.join("x").exists());
}
