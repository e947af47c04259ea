//! VM import formats (issue 19): the dynamic VHDX, checked by qemu-img
//! (check, info, compare with the raw image), converted back to raw by
//! `kiln convert`, listed in SHA256SUMS and the manifest, and
//! byte-identical across two builds.

use kiln_e2e::*;
use std::path::Path;
use std::process::Command;

/// The default recipe with a 64 MiB swapfile, for `board`.
fn build(dir: &Path, board: &str, extra: &[&str]) {
    let recipe = recipe_copy(dir, |s| s.replace("size = \"1GiB\"", "size = \"64MiB\""));
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
fn vhdx_matches_raw_converts_back_and_is_reproducible() {
    require("qemu-img", "qemu-utils");
    require("sha256sum", "coreutils");
    let mut digests = Vec::new();
    for _ in 0..2 {
        let d = tempfile::tempdir_in("/var/tmp").unwrap();
        build(d.path(), "nuc-gpt", &["--format", "raw,vhdx"]);
        let (raw, vhdx) = (d.path().join("vm.img"), d.path().join("vm.vhdx"));
        assert_valid_and_equal(&vhdx, "vhdx", &raw);
        assert_converts_back(&vhdx, &raw);
        let m = sums_ok_and_manifest(d.path(), "vm");
        let listed = m.to_string();
        assert!(
            listed.contains("vm.vhdx") && listed.contains("\"vhdx\""),
            "{m}"
        );
        digests.push(sha256_file(&vhdx));
    }
    assert_eq!(digests[0], digests[1], "two builds give the same VHDX");
    // VHDX alone: streamed straight into the VHDX, no raw file left.
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    build(d.path(), "nuc-gpt", &["--format", "vhdx"]);
    assert_eq!(
        outputs_in(d.path(), "vm"),
        ["SHA256SUMS", "vm.manifest.json", "vm.vhdx"]
    );
    assert_eq!(sha256_file(&d.path().join("vm.vhdx")), digests[0]);
    sums_ok_and_manifest(d.path(), "vm");
}
