//! VM import formats (issue 19): the dynamic VHDX and the monolithicSparse
//! VMDK, checked by qemu-img (check, info, compare with the raw image),
//! converted back to raw by `kiln convert`, listed in SHA256SUMS and the
//! manifest, and byte-identical across two builds; the OVA: `tar -tf`
//! order, `.mf` digests by `sha1sum -c` (OVF 1.x manifests are SHA-1),
//! the descriptor by `xmllint` with its hardware as the recipe's `[vm]`
//! asks (VMware's and VirtualBox's firmware forms included), by COT (PyPI
//! `cot`, the Common OVF Tool, in the venv `make ovf-validators` makes):
//! `cot info` with no warning or error reporting that hardware, and a `cot
//! edit-hardware` round trip; the VMDK inside equal to the raw image by
//! `qemu-img compare`.

use kiln_e2e::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The default recipe with a 64 MiB swapfile, for `board`.
fn build(dir: &Path, board: &str, extra: &[&str]) {
    build_with(dir, board, "", extra);
}

/// As [`build`], with `append` added to the recipe.
fn build_with(dir: &Path, board: &str, append: &str, extra: &[&str]) {
    let recipe = recipe_copy(dir, |s| {
        s.replace("size = \"1GiB\"", "size = \"64MiB\"") + append
    });
    ok(kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "-q", "--board", board, "--recipe"])
        .arg(&recipe)
        .arg("-o")
        .arg(dir.join("vm.img"))
        .args(extra));
}

fn qemu_img(args: &[&str], files: &[&Path]) -> String {
    ok(Command::new("qemu-img").args(args).args(files))
}

/// `qemu-img check` clean, `info` names `fmt`, `compare` identical to `raw`.
fn assert_valid_and_equal(img: &Path, fmt: &str, raw: &Path) {
    let check = qemu_img(&["check", "-f", fmt], &[img]);
    assert!(check.contains("No errors were found"), "{check}");
    let info: serde_json::Value =
        serde_json::from_str(&qemu_img(&["info", "--output=json"], &[img])).unwrap();
    assert_eq!(info["format"], fmt, "{info}");
    let cmp = qemu_img(&["compare", "-f", fmt, "-F", "raw"], &[img, raw]);
    assert!(cmp.contains("Images are identical"), "{cmp}");
}

/// `kiln convert` of `img` back to raw equals `raw` byte for byte.
fn assert_converts_back(img: &Path, raw: &Path) {
    let back = img.with_extension("back.img");
    ok(kiln()
        .args(["convert", "-q", "--format", "raw"])
        .arg(img)
        .arg(&back));
    assert_eq!(sha256_file(&back), sha256_file(raw), "{}", img.display());
    std::fs::remove_file(back).unwrap();
}

#[test]
fn vhdx_and_sparse_vmdk_match_raw_convert_back_and_are_reproducible() {
    require("qemu-img", "qemu-utils");
    require("sha256sum", "coreutils");
    let mut digests = Vec::new();
    for _ in 0..2 {
        let d = tempfile::tempdir_in("/var/tmp").unwrap();
        build(d.path(), "nuc-gpt", &["--format", "raw,vhdx,vmdk-sparse"]);
        let raw = d.path().join("vm.img");
        let (vhdx, vmdk) = (d.path().join("vm.vhdx"), d.path().join("vm.sparse.vmdk"));
        assert_valid_and_equal(&vhdx, "vhdx", &raw);
        assert_valid_and_equal(&vmdk, "vmdk", &raw);
        let info: serde_json::Value =
            serde_json::from_str(&qemu_img(&["info", "--output=json"], &[&vmdk])).unwrap();
        assert_eq!(
            info["format-specific"]["data"]["create-type"], "monolithicSparse",
            "{info}"
        );
        assert_converts_back(&vhdx, &raw);
        assert_converts_back(&vmdk, &raw);
        let m = sums_ok_and_manifest(d.path(), "vm");
        let listed = m.to_string();
        for want in ["vm.vhdx", "\"vhdx\"", "vm.sparse.vmdk", "\"vmdk-sparse\""] {
            assert!(listed.contains(want), "{want} not in {m}");
        }
        let sums = std::fs::read_to_string(d.path().join("SHA256SUMS")).unwrap();
        assert!(
            sums.contains("  vm.vhdx\n") && sums.contains("  vm.sparse.vmdk\n"),
            "{sums}"
        );
        digests.push((sha256_file(&vhdx), sha256_file(&vmdk)));
    }
    assert_eq!(digests[0], digests[1], "two builds give the same files");
    // VHDX alone: streamed straight into the VHDX, no raw file left.
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    build(d.path(), "nuc-gpt", &["--format", "vhdx"]);
    assert_eq!(
        outputs_in(d.path(), "vm"),
        [
            "SHA256SUMS",
            "vm.cdx.json",
            "vm.manifest.json",
            "vm.spdx.json",
            "vm.vhdx"
        ]
    );
    assert_eq!(sha256_file(&d.path().join("vm.vhdx")), digests[0].0);
    sums_ok_and_manifest(d.path(), "vm");
}

/// `xmllint --xpath` of `expr` (namespace-free: local names) on `ovf`.
fn xpath(ovf: &Path, expr: &str) -> String {
    ok(Command::new("xmllint").args(["--xpath", expr]).arg(ovf))
        .trim()
        .to_owned()
}

/// The `field` of the hardware item of CIM resource type `t`.
fn item(ovf: &Path, t: u32, field: &str) -> String {
    xpath(
        ovf,
        &format!(
            "string(//*[local-name()='Item'][*[local-name()='ResourceType']='{t}']/*[local-name()='{field}'])"
        ),
    )
}

fn firmware(ovf: &Path) -> String {
    xpath(
        ovf,
        "string(//*[local-name()='Config'][@*[local-name()='key']='firmware']/@*[local-name()='value'])",
    )
}

/// Extracts `ova` into `dir/x`, checks member order and digests; returns
/// the directory.
fn unpack(dir: &Path, ova: &Path) -> std::path::PathBuf {
    let list = ok(Command::new("tar").arg("-tf").arg(ova));
    assert_eq!(
        list, "bob-onprem.ovf\nbob-onprem-disk1.vmdk\nbob-onprem.mf\n",
        "descriptor first"
    );
    let x = dir.join("x");
    std::fs::create_dir(&x).unwrap();
    ok(Command::new("tar").arg("-xf").arg(ova).arg("-C").arg(&x));
    let ck = ok(Command::new("sha1sum")
        .args(["-c", "bob-onprem.mf"])
        .current_dir(&x));
    assert_eq!(ck.matches(": OK").count(), 2, "{ck}");
    ok(Command::new("xmllint")
        .arg("--noout")
        .arg(x.join("bob-onprem.ovf")));
    x
}

/// COT from the venv `make ovf-validators` makes.
fn cot_bin() -> PathBuf {
    let p = repo().join("target/ovf-venv/bin/cot");
    assert!(
        p.exists(),
        "{} missing: run `make ovf-validators`",
        p.display()
    );
    p
}

/// Runs `cot ARGS` (no prompts): it must succeed and log no warning or
/// error (its notices are allowed); returns its stdout.
fn cot(args: &[&str], files: &[&Path]) -> String {
    let mut c = Command::new(cot_bin());
    c.arg("--force").args(args).args(files);
    let out = run(&mut c);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{c:?}: {stdout}\n{stderr}");
    for bad in ["WARNING", "ERROR", "CRITICAL"] {
        assert!(!stderr.contains(bad), "{c:?} logged {bad}:\n{stderr}");
    }
    stdout
}

/// `cot info` of `ova`: the default configuration profile's CPUs, memory
/// and NIC count, and the disk on SATA 0:0.
fn assert_cot_info(ova: &Path, cpus: u32, memory: &str, nics: u32) {
    let info = cot(&["info"], &[ova]);
    let profile = info
        .lines()
        .find(|l| l.trim_start().starts_with("None (default)"))
        .unwrap_or_else(|| panic!("no default profile in:\n{info}"));
    let f: Vec<&str> = profile.split_whitespace().collect();
    assert_eq!(
        (f[2], format!("{} {}", f[3], f[4]), f[5]),
        (
            cpus.to_string().as_str(),
            memory.to_owned(),
            nics.to_string().as_str()
        ),
        "{info}"
    );
    assert!(
        info.lines()
            .any(|l| l.contains("bob-onprem-disk1.vmdk") && l.contains("harddisk @ SATA 0:0")),
        "{info}"
    );
}

/// `cot edit-hardware` to 4 CPUs and 4 GiB into a new OVA, which `cot
/// info` then reads back without complaint.
fn assert_cot_round_trip(dir: &Path, ova: &Path, nics: u32) {
    let out = dir.join("edited.ova");
    let mut args = vec!["edit-hardware"];
    let ova_s = ova.to_str().unwrap();
    args.push(ova_s);
    args.extend(["-c", "4", "-m", "4GiB", "-o"]);
    cot(&args, &[&out]);
    assert_cot_info(&out, 4, "4 GiB", nics);
}

/// VirtualBox's `vbox:Machine`: `Some((firmware, CPUs, RAM MiB))` with its
/// disk attachment matching the DiskSection's `vbox:uuid`, or `None`.
fn vbox_machine(ovf: &Path) -> Option<(String, String, String)> {
    let m = "//*[local-name()='Machine']";
    if xpath(ovf, &format!("count({m})")) == "0" {
        return None;
    }
    let disk = xpath(
        ovf,
        "string(//*[local-name()='Disk']/@*[local-name()='uuid'])",
    );
    assert_eq!(
        xpath(
            ovf,
            &format!("string({m}//*[local-name()='AttachedDevice']/*[local-name()='Image']/@uuid)")
        ),
        format!("{{{disk}}}")
    );
    let hw = |e: &str, a: &str| {
        xpath(
            ovf,
            &format!("string({m}/*[local-name()='Hardware']/*[local-name()='{e}']/@{a})"),
        )
    };
    Some((
        hw("Firmware", "type"),
        hw("CPU", "count"),
        hw("Memory", "RAMSize"),
    ))
}

#[test]
fn ova_declares_the_recipe_machine_and_holds_the_disk() {
    require("qemu-img", "qemu-utils");
    require("xmllint", "libxml2-utils");
    require("tar", "tar");
    let vm = "\n[vm]\ncpus = 3\nmemory = \"3GiB\"\nnetwork = false\nvendor = \"ACME\"\nversion = \"2.1\"\n";
    let mut digests = Vec::new();
    let keep = tempfile::tempdir_in("/var/tmp").unwrap();
    let d0 = keep.path().to_path_buf();
    for i in 0..2 {
        let d = tempfile::tempdir_in("/var/tmp").unwrap();
        build_with(d.path(), "nuc", vm, &["--format", "raw,ova"]);
        if i == 0 {
            std::fs::copy(d.path().join("vm.ova"), d0.join("vm.ova")).unwrap();
        }
        let (raw, ova) = (d.path().join("vm.img"), d.path().join("vm.ova"));
        let x = unpack(d.path(), &ova);
        let vmdk = x.join("bob-onprem-disk1.vmdk");
        assert_valid_and_equal(&vmdk, "vmdk", &raw);
        let ovf = x.join("bob-onprem.ovf");
        assert_eq!(item(&ovf, 3, "VirtualQuantity"), "3");
        assert_eq!(item(&ovf, 4, "VirtualQuantity"), "3072");
        assert_eq!(item(&ovf, 4, "AllocationUnits"), "byte * 2^20");
        assert_eq!(item(&ovf, 17, "Parent"), item(&ovf, 20, "InstanceID"));
        assert_eq!(item(&ovf, 10, "InstanceID"), "", "network = false: no NIC");
        assert_eq!(firmware(&ovf), "bios", "nuc boots BIOS");
        assert_eq!(vbox_machine(&ovf), None, "BIOS is VirtualBox's default");
        assert_cot_info(&ova, 3, "3 GiB", 0);
        assert_eq!(
            xpath(&ovf, "string(//*[local-name()='Product'])"),
            "bob-onprem"
        );
        assert_eq!(xpath(&ovf, "string(//*[local-name()='Vendor'])"), "ACME");
        assert_eq!(xpath(&ovf, "string(//*[local-name()='Version'])"), "2.1");
        assert_eq!(
            xpath(
                &ovf,
                "string(//*[local-name()='File']/@*[local-name()='size'])"
            ),
            std::fs::metadata(&vmdk).unwrap().len().to_string()
        );
        assert_eq!(
            xpath(
                &ovf,
                "string(//*[local-name()='Disk']/@*[local-name()='capacity'])"
            ),
            std::fs::metadata(&raw).unwrap().len().to_string()
        );
        let m = sums_ok_and_manifest(d.path(), "vm");
        assert!(m.to_string().contains("vm.ova"), "{m}");
        let sums = std::fs::read_to_string(d.path().join("SHA256SUMS")).unwrap();
        assert!(sums.contains("  vm.ova\n"), "{sums}");
        digests.push(sha256_file(&ova));
    }
    assert_eq!(digests[0], digests[1], "two builds give the same OVA");
    assert_cot_round_trip(&d0, &d0.join("vm.ova"), 0);
    // A GPT board alone, [vm] defaults: UEFI, 2 CPUs, 2 GiB, a NIC; the
    // OVA streamed with no raw image left.
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    build(d.path(), "nuc-gpt", &["--format", "ova"]);
    assert_eq!(
        outputs_in(d.path(), "vm"),
        [
            "SHA256SUMS",
            "vm.cdx.json",
            "vm.manifest.json",
            "vm.ova",
            "vm.spdx.json"
        ]
    );
    let x = unpack(d.path(), &d.path().join("vm.ova"));
    let ovf = x.join("bob-onprem.ovf");
    assert_eq!(firmware(&ovf), "efi");
    assert_eq!(
        vbox_machine(&ovf),
        Some(("EFI".into(), "2".into(), "2048".into())),
        "VirtualBox reads UEFI from its own section"
    );
    assert_cot_info(&d.path().join("vm.ova"), 2, "2 GiB", 1);
    assert_cot_round_trip(d.path(), &d.path().join("vm.ova"), 1);
    assert_eq!(item(&ovf, 3, "VirtualQuantity"), "2");
    assert_eq!(item(&ovf, 4, "VirtualQuantity"), "2048");
    assert_eq!(item(&ovf, 10, "ResourceSubType"), "E1000");
    let check = qemu_img(
        &["check", "-f", "vmdk"],
        &[&x.join("bob-onprem-disk1.vmdk")],
    );
    assert!(check.contains("No errors were found"), "{check}");
}

#[test]
fn bad_vm_section_is_refused_naming_the_key() {
    for (vm, key) in [
        ("cpus = 0", "vm.cpus"),
        ("memory = \"100KiB\"", "vm.memory"),
        ("firmware = \"efi\"", "firmware"),
    ] {
        let d = tempfile::tempdir_in("/var/tmp").unwrap();
        let recipe = recipe_copy(d.path(), |s| format!("{s}\n[vm]\n{vm}\n"));
        let out = run(kiln()
            .args([
                "build", "-q", "--board", "nuc", "--format", "ova", "--recipe",
            ])
            .arg(&recipe)
            .arg("-o")
            .arg(d.path().join("vm.img")));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{vm}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(err.contains(key), "{key} not in {err}");
        assert_eq!(outputs_in(d.path(), "vm"), Vec::<String>::new(), "{vm}");
    }
}
