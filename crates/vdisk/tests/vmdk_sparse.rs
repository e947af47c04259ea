//! VMDK monolithicSparse: validated by qemu-img (check, info's create
//! type, compare with the raw image), read back by our reader, and
//! byte-reproducible.
#![cfg(feature = "vmdk")]

mod common;

use common::*;
use kiln_vdisk::{open, Format, OutputFormat, VirtualDisk, VmdkOptions};

fn opts() -> OutputFormat {
    OutputFormat::VmdkSparse(
        VmdkOptions::new()
            .cid(0x1234_5678)
            .extent_file_name("out.vmdk"),
    )
}

#[test]
fn monolithic_sparse_is_valid_for_qemu_and_equals_raw() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    let out = d.path("out.vmdk");
    let s = write_with(&raw, &out, &opts());
    let size = std::fs::metadata(&raw).unwrap().len();
    let j = info(None, &out);
    assert_eq!(j["format"], "vmdk", "{j}");
    assert_eq!(j["virtual-size"], size);
    let data = &j["format-specific"]["data"];
    assert_eq!(data["create-type"], "monolithicSparse", "{j}");
    assert_ne!(data["extents"][0]["compressed"], true, "{j}");
    assert_check("vmdk", &out);
    assert_identical(&raw, "vmdk", &out);
    assert!(s.file_size < size / 4, "{s:?}");
    let img = open(std::fs::File::open(&out).unwrap()).unwrap();
    assert_eq!(img.format(), Format::Vmdk);
    assert_reader_matches(&img, &raw);
    assert_deterministic(&d, &raw, &opts(), "vmdk-sparse");
}

#[test]
fn qemu_writes_into_our_monolithic_sparse() {
    // A VM writes to the disk: QEMU's writes land in the preallocated
    // grain tables and the image stays consistent.
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    let out = d.path("out.vmdk");
    write_with(&raw, &out, &opts());
    let o = qemu_img(&["convert", "-n", "-f", "raw", "-O", "vmdk", p(&raw), p(&out)]);
    assert!(o.ok, "{}", o.stderr);
    let w = std::process::Command::new("qemu-io")
        .args(["-f", "vmdk", "-c", "write -P 0x5a 100M 128k", p(&out)])
        .output()
        .expect("qemu-io (Debian package qemu-utils)");
    assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));
    assert_check("vmdk", &out);
    let r = std::process::Command::new("qemu-io")
        .args(["-f", "vmdk", "-c", "read -P 0x5a 100M 128k", p(&out)])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&r.stdout).contains("read 131072/131072"));
}
