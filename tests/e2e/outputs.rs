//! Delivery: every format checked by qemu-img (check, compare with the raw
//! image, info's format and subformat), the bmap by `bmaptool copy`, the
//! checksums by `sha256sum -c`, the compressed images by `xz -t`,
//! `gzip -t`, `zstd -t`, and every artifact byte-identical across two
//! builds.

use kiln_e2e::*;
use std::path::Path;
use std::process::Command;

/// The default recipe with a 64 MiB swapfile (smaller images, same paths).
fn build(dir: &Path, extra: &[&str]) {
    let recipe = recipe_copy(dir, |s| s.replace("size = \"1GiB\"", "size = \"64MiB\""));
    ok(kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "-q", "--board", "fin-cm3", "--recipe"])
        .arg(&recipe)
        .arg("-o")
        .arg(dir.join("fin.img"))
        .args(extra));
}

fn qemu_info(path: &Path, fmt: &str) -> serde_json::Value {
    serde_json::from_str(&ok(Command::new("qemu-img")
        .args(["info", "--output=json", "-f", fmt])
        .arg(path)))
    .unwrap()
}

#[test]
fn every_format_matches_the_raw_image() {
    require("qemu-img", "qemu-utils");
    require("bmaptool", "bmap-tools");
    require("sha256sum", "coreutils");
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    build(d.path(), &["--format", "raw,qcow2,vmdk,vhd,vhd-dynamic"]);
    let raw = d.path().join("fin.img");
    for (file, fmt, check) in [
        ("fin.qcow2", "qcow2", true),
        ("fin.vmdk", "vmdk", true),
        ("fin.vhd", "vpc", false),
        ("fin.dyn.vhd", "vpc", false),
    ] {
        let p = d.path().join(file);
        if check {
            let out = run(Command::new("qemu-img").args(["check", "-f", fmt]).arg(&p));
            assert!(
                out.status.success(),
                "qemu-img check {file}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let cmp = ok(Command::new("qemu-img")
            .args(["compare", "-f", fmt, "-F", "raw"])
            .arg(&p)
            .arg(&raw));
        assert!(cmp.contains("Images are identical"), "{file}: {cmp}");
        let info = qemu_info(&p, fmt);
        assert_eq!(info["format"], fmt, "{file}");
        match file {
            "fin.qcow2" => assert_eq!(info["format-specific"]["data"]["compat"], "1.1"),
            "fin.vmdk" => assert_eq!(
                info["format-specific"]["data"]["create-type"],
                "streamOptimized"
            ),
            _ => {}
        }
    }
    // VHD fixed vs dynamic: fixed is raw data + footer (file = virtual + 512).
    let fixed = std::fs::metadata(d.path().join("fin.vhd")).unwrap().len();
    let dynamic = std::fs::metadata(d.path().join("fin.dyn.vhd"))
        .unwrap()
        .len();
    let virt = qemu_info(&d.path().join("fin.vhd"), "vpc")["virtual-size"]
        .as_u64()
        .unwrap();
    assert_eq!(fixed, virt + 512, "fixed VHD");
    assert!(
        dynamic < fixed / 4,
        "dynamic VHD stores only allocated blocks"
    );
    // bmaptool reproduces the raw image from kiln's bmap.
    let copy = d.path().join("copy.img");
    ok(Command::new("bmaptool")
        .args(["copy", "--bmap"])
        .arg(d.path().join("fin.img.bmap"))
        .arg(&raw)
        .arg(&copy));
    ok(Command::new("cmp").arg(&raw).arg(&copy));
    // Checksums and manifest.
    let m = sums_ok_and_manifest(d.path(), "fin");
    assert_eq!(m["profile"]["name"], "fin-cm3");
    assert_eq!(m["image"]["sha256"], sha256_file(&raw));
    assert_eq!(m["partitions"].as_array().unwrap().len(), 5);
    assert_eq!(m["preload"]["services"].as_array().unwrap().len(), 3);
    assert_eq!(m["swap"]["size_bytes"], 64u64 << 20);
    let names: Vec<&str> = m["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["file"].as_str().unwrap())
        .collect();
    for f in [
        "fin.img",
        "fin.qcow2",
        "fin.vmdk",
        "fin.vhd",
        "fin.dyn.vhd",
        "fin.img.bmap",
    ] {
        assert!(names.contains(&f), "{f} not in manifest {names:?}");
    }
    assert!(m["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["kind"] == "root-fs"));
}

#[test]
fn compressed_images_pass_their_tools_and_builds_are_reproducible() {
    for (c, tool, pkg) in [
        ("xz", "xz", "xz-utils"),
        ("gz", "gzip", "gzip"),
        ("zst", "zstd", "zstd"),
    ] {
        require(tool, pkg);
        let mut digests = Vec::new();
        for run_no in 0..2 {
            let d = tempfile::tempdir_in("/var/tmp").unwrap();
            // With zstd, every format, so SHA256SUMS pins all of them.
            let formats = if c == "zst" {
                "raw,qcow2,vmdk,vhd,vhd-dynamic"
            } else {
                "raw,qcow2"
            };
            build(
                d.path(),
                &[
                    "--format",
                    formats,
                    "--compress",
                    c,
                    "--level",
                    "1",
                    "--set",
                    "deviceApiKey=s3cr3t-key",
                ],
            );
            let img = d.path().join(format!("fin.img.{c}"));
            ok(Command::new(tool).arg("-t").arg(&img));
            assert!(
                !d.path().join("fin.img").exists(),
                "only the compressed raw image is delivered"
            );
            ok(Command::new("sha256sum")
                .arg("-c")
                .arg("SHA256SUMS")
                .current_dir(d.path()));
            let manifest = std::fs::read_to_string(d.path().join("fin.manifest.json")).unwrap();
            assert!(
                !manifest.contains("s3cr3t-key"),
                "secret leaked into the manifest"
            );
            digests.push(std::fs::read_to_string(d.path().join("SHA256SUMS")).unwrap());
            if run_no == 1 && c == "xz" {
                // bmaptool takes the compressed image with the raw image's bmap.
                let copy = d.path().join("copy.img");
                ok(Command::new("bmaptool")
                    .args(["copy", "--bmap"])
                    .arg(d.path().join("fin.img.bmap"))
                    .arg(&img)
                    .arg(&copy));
                let raw = d.path().join("raw.img");
                ok(Command::new("xz")
                    .args(["-dkc"])
                    .arg(&img)
                    .stdout(std::fs::File::create(&raw).unwrap()));
                ok(Command::new("cmp").arg(&raw).arg(&copy));
            }
        }
        // Every artifact (and the manifest) byte-identical across builds.
        assert_eq!(digests[0], digests[1], "{c}");
    }
}

#[test]
fn flash_writes_and_verifies_and_convert_round_trips() {
    require("qemu-img", "qemu-utils");
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    build(d.path(), &["--format", "raw,qcow2", "--compress", "zst"]);
    let img = d.path().join("fin.img.zst");
    let target = d.path().join("target.img");
    // A regular file is refused without --force, and nothing is written.
    let out = run(kiln().args(["flash", "-q"]).arg(&img).arg(&target));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("regular file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!target.exists());
    ok(kiln()
        .args(["flash", "-q", "--force"])
        .arg(&img)
        .arg(&target));
    let raw = d.path().join("raw.img");
    ok(Command::new("zstd")
        .args(["-dq", "--sparse", "-o"])
        .arg(&raw)
        .arg(&img));
    ok(Command::new("cmp").arg(&raw).arg(&target));
    ok(kiln()
        .args(["flash", "-q", "--verify-only"])
        .arg(&img)
        .arg(&target));
    // A flipped byte inside a mapped range is caught by verify.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&target)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0xA5], 4 * 1024 * 1024 + 1024).unwrap();
    let out = run(kiln()
        .args(["flash", "-q", "--verify-only"])
        .arg(&img)
        .arg(&target));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("verify failed") && err.contains("bytes 4194304.."),
        "{err}"
    );
    // qcow2 as the flash source.
    let t2 = d.path().join("t2.img");
    ok(kiln()
        .args(["flash", "-q", "--force"])
        .arg(d.path().join("fin.qcow2"))
        .arg(&t2));
    ok(Command::new("cmp").arg(&raw).arg(&t2));
    // convert: compressed raw -> vmdk, qcow2 -> vhd; both identical to the raw image.
    for (input, out, fmt, qfmt) in [
        ("fin.img.zst", "c.vmdk", "vmdk", "vmdk"),
        ("fin.qcow2", "c.vhd", "vhd", "vpc"),
    ] {
        let o = d.path().join(out);
        ok(kiln()
            .args(["convert", "-q", "--format", fmt])
            .arg(d.path().join(input))
            .arg(&o));
        let cmp = ok(Command::new("qemu-img")
            .args(["compare", "-f", qfmt, "-F", "raw"])
            .arg(&o)
            .arg(&raw));
        assert!(cmp.contains("Images are identical"), "{out}: {cmp}");
    }
}

/// Only sequential outputs (VMDK, the compressed raw image): the disk is
/// streamed into them and no image file is written at all. The build runs
/// on a tmpfs too small for the raw image's data, and its outputs are the
/// raw build's, byte for byte.
#[test]
fn vmdk_and_compressed_images_are_streamed_without_an_image_file() {
    require("qemu-img", "qemu-utils");
    require("xz", "xz-utils");
    require("bmaptool", "bmap-tools");
    require("sha256sum", "coreutils");
    let raw_dir = tempfile::tempdir_in("/var/tmp").unwrap();
    build(raw_dir.path(), &["--format", "raw,vmdk"]);
    let raw = raw_dir.path().join("fin.img");
    let small: u64 = 4 << 20;
    let raw_data = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&raw).unwrap()) * 512;
    assert!(
        raw_data > small,
        "premise: the raw image holds {raw_data} bytes of data, more than the {small}-byte tmpfs"
    );
    let same = |a: &Path, b: &Path| {
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "{} differs from {}",
            a.display(),
            b.display()
        );
    };

    let t = Tmpfs::new(&format!("size={small}"));
    build(t.path(), &["--format", "raw,vmdk", "--compress", "xz"]);
    assert_eq!(
        outputs_in(t.path(), "fin"),
        [
            "SHA256SUMS",
            "fin.cdx.json",
            "fin.img.bmap",
            "fin.img.xz",
            "fin.manifest.json",
            "fin.spdx.json",
            "fin.vmdk"
        ]
    );
    same(&t.path().join("fin.vmdk"), &raw_dir.path().join("fin.vmdk"));
    same(
        &t.path().join("fin.img.bmap"),
        &raw_dir.path().join("fin.img.bmap"),
    );
    let xz = t.path().join("fin.img.xz");
    ok(Command::new("xz").arg("-t").arg(&xz));
    let m = sums_ok_and_manifest(t.path(), "fin");
    assert_eq!(m["image"]["sha256"], sha256_file(&raw));
    // The compressed image with its bmap restores the raw build's image.
    let copy = raw_dir.path().join("copy.img");
    ok(Command::new("bmaptool")
        .args(["copy", "--bmap"])
        .arg(t.path().join("fin.img.bmap"))
        .arg(&xz)
        .arg(&copy));
    ok(Command::new("cmp").arg(&copy).arg(&raw));
    let cmp = ok(Command::new("qemu-img")
        .args(["compare", "-f", "vmdk", "-F", "raw"])
        .arg(t.path().join("fin.vmdk"))
        .arg(&raw));
    assert!(cmp.contains("Images are identical"), "{cmp}");
    drop(t);

    // VMDK alone.
    let t = Tmpfs::new(&format!("size={small}"));
    build(t.path(), &["--format", "vmdk"]);
    assert_eq!(
        outputs_in(t.path(), "fin"),
        [
            "SHA256SUMS",
            "fin.cdx.json",
            "fin.manifest.json",
            "fin.spdx.json",
            "fin.vmdk"
        ]
    );
    same(&t.path().join("fin.vmdk"), &raw_dir.path().join("fin.vmdk"));
    let m = sums_ok_and_manifest(t.path(), "fin");
    assert_eq!(m["image"]["sha256"], sha256_file(&raw));
}

#[test]
fn qcow2_or_vhd_without_raw_are_written_in_place() {
    require("qemu-img", "qemu-utils");
    require("zstd", "zstd");
    let raw_dir = tempfile::tempdir_in("/var/tmp").unwrap();
    build(raw_dir.path(), &["--format", "raw,vhd"]);
    let raw = raw_dir.path().join("fin.img");
    // Without raw or qcow2, the fixed VHD is written in place: the raw
    // disk, then its footer. It is the same file as one made from a raw
    // image, and the VMDK is made from it.
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    build(d.path(), &["--format", "vhd,vmdk"]);
    assert_eq!(
        outputs_in(d.path(), "fin"),
        [
            "SHA256SUMS",
            "fin.cdx.json",
            "fin.manifest.json",
            "fin.spdx.json",
            "fin.vhd",
            "fin.vmdk"
        ]
    );
    assert_eq!(
        sha256_file(&d.path().join("fin.vhd")),
        sha256_file(&raw_dir.path().join("fin.vhd"))
    );
    let cmp = ok(Command::new("qemu-img")
        .args(["compare", "-f", "vmdk", "-F", "raw"])
        .arg(d.path().join("fin.vmdk"))
        .arg(&raw));
    assert!(cmp.contains("Images are identical"), "{cmp}");
    let m = sums_ok_and_manifest(d.path(), "fin");
    assert_eq!(m["image"]["sha256"], sha256_file(&raw));
    // A dynamic VHD alone is written in place as well (blocks in the order
    // they were first written).
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    build(d.path(), &["--format", "vhd-dynamic"]);
    assert_eq!(
        outputs_in(d.path(), "fin"),
        [
            "SHA256SUMS",
            "fin.cdx.json",
            "fin.dyn.vhd",
            "fin.manifest.json",
            "fin.spdx.json"
        ]
    );
    let dynamic = d.path().join("fin.dyn.vhd");
    let cmp = ok(Command::new("qemu-img")
        .args(["compare", "-f", "vpc", "-F", "raw"])
        .arg(&dynamic)
        .arg(&raw));
    assert!(cmp.contains("Images are identical"), "{cmp}");
    assert!(
        std::fs::metadata(&dynamic).unwrap().len() < std::fs::metadata(&raw).unwrap().len() / 4,
        "the dynamic VHD holds only the written blocks"
    );
    let m = sums_ok_and_manifest(d.path(), "fin");
    assert_eq!(m["image"]["sha256"], sha256_file(&raw));

    let mut qcow2_digests = Vec::new();
    for run_no in 0..2 {
        let d = tempfile::tempdir_in("/var/tmp").unwrap();
        // qcow2 alone, then with every other output made from it.
        let extra: &[&str] = if run_no == 0 {
            &["--format", "qcow2"]
        } else {
            &["--format", "qcow2,vmdk,vhd", "--compress", "zst"]
        };
        build(d.path(), extra);
        let q = d.path().join("fin.qcow2");
        let out = run(Command::new("qemu-img")
            .args(["check", "-f", "qcow2"])
            .arg(&q));
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("No errors"),
            "qemu-img check: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(qemu_info(&q, "qcow2")["format"], "qcow2");
        // The disk inside equals the raw build's, byte for byte.
        let cmp = ok(Command::new("qemu-img")
            .args(["compare", "-f", "qcow2", "-F", "raw"])
            .arg(&q)
            .arg(&raw));
        assert!(cmp.contains("Images are identical"), "{cmp}");
        // No raw image, no leftovers: only the asked-for files.
        let want: &[&str] = if run_no == 0 {
            &[
                "SHA256SUMS",
                "fin.cdx.json",
                "fin.manifest.json",
                "fin.qcow2",
                "fin.spdx.json",
            ]
        } else {
            &[
                "SHA256SUMS",
                "fin.cdx.json",
                "fin.img.zst",
                "fin.manifest.json",
                "fin.qcow2",
                "fin.spdx.json",
                "fin.vhd",
                "fin.vmdk",
            ]
        };
        assert_eq!(outputs_in(d.path(), "fin"), want);
        let m = sums_ok_and_manifest(d.path(), "fin");
        assert_eq!(m["image"]["sha256"], sha256_file(&raw));
        if run_no == 1 {
            // The outputs read from the qcow2 equal the raw image too.
            for (file, fmt) in [("fin.vmdk", "vmdk"), ("fin.vhd", "vpc")] {
                let cmp = ok(Command::new("qemu-img")
                    .args(["compare", "-f", fmt, "-F", "raw"])
                    .arg(d.path().join(file))
                    .arg(&raw));
                assert!(cmp.contains("Images are identical"), "{file}: {cmp}");
            }
            let unpacked = d.path().join("unpacked.img");
            ok(Command::new("zstd")
                .args(["-dq", "-o"])
                .arg(&unpacked)
                .arg(d.path().join("fin.img.zst")));
            ok(Command::new("cmp").arg(&raw).arg(&unpacked));
        }
        qcow2_digests.push(sha256_file(&q));
    }
    // Reproducible: the in-place qcow2 is the same file both times.
    assert_eq!(qcow2_digests[0], qcow2_digests[1]);
}
