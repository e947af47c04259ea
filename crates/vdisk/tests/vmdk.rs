//! VMDK streamOptimized: validated by qemu-img (check, compare, info
//! create-type), read back by our reader, compared with qemu-img's output.
#![cfg(all(feature = "qcow2", feature = "vmdk", feature = "vhd"))]

mod common;

use std::fs::File;

use common::*;
use kiln_vdisk::{open, Format, OutputFormat, VirtualDisk, VmdkOptions};

#[test]
fn vmdk_stream_optimized_passes_check_and_equals_raw() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    let out = d.path("out.vmdk");
    write_with(
        &raw,
        &out,
        &OutputFormat::Vmdk(VmdkOptions::new().cid(0x1234_5678)),
    );
    assert_check("vmdk", &out);
    assert_identical(&raw, "vmdk", &out);
    let j = info(None, &out);
    assert_eq!(j["format"], "vmdk");
    assert_eq!(j["virtual-size"], SIZE);
    let data = &j["format-specific"]["data"];
    assert_eq!(data["create-type"], "streamOptimized");
    assert_eq!(data["cid"], 0x1234_5678);
    assert_eq!(data["extents"][0]["compressed"], true);
    // End-of-stream marker: the last sector is all zero; the footer before
    // it starts with the magic.
    let bytes = std::fs::read(&out).unwrap();
    let n = bytes.len();
    assert_eq!(n % 512, 0);
    assert!(bytes[n - 512..].iter().all(|&b| b == 0));
    assert_eq!(&bytes[n - 1024..n - 1020], b"KDMV");
}

#[test]
fn vmdk_is_deterministic() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    assert_deterministic(&d, &raw, &OutputFormat::Vmdk(VmdkOptions::new()), "vmdk");
}

#[test]
fn vmdk_reader_reads_ours_and_qemus() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    let ours = d.path("ours.vmdk");
    write_with(&raw, &ours, &OutputFormat::Vmdk(VmdkOptions::new()));
    let img = open(File::open(&ours).unwrap()).unwrap();
    assert_eq!(img.format(), Format::Vmdk);
    assert_reader_matches(&img, &raw);
    for (name, sub) in [
        ("s.vmdk", "subformat=streamOptimized"),
        ("m.vmdk", "subformat=monolithicSparse"),
    ] {
        let theirs = d.path(name);
        qemu_convert(&raw, &theirs, "vmdk", &["-o", sub]);
        let img = open(File::open(&theirs).unwrap()).unwrap();
        assert_eq!(img.format(), Format::Vmdk, "{name}");
        assert_reader_matches(&img, &raw);
    }
}

/// Differential: qemu-img's streamOptimized and ours hold the same disk;
/// sizes are reported (both deflate every non-zero grain).
#[test]
fn vmdk_differential_against_qemu_img_convert() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    let ours = d.path("ours.vmdk");
    let theirs = d.path("theirs.vmdk");
    write_with(&raw, &ours, &OutputFormat::Vmdk(VmdkOptions::new()));
    qemu_convert(&raw, &theirs, "vmdk", &["-o", "subformat=streamOptimized"]);
    let o = qemu_img(&["compare", "-f", "vmdk", "-F", "vmdk", p(&ours), p(&theirs)]);
    assert_eq!(o.code, Some(0), "{} {}", o.stdout, o.stderr);
    let (a, b) = (
        std::fs::metadata(&ours).unwrap().len(),
        std::fs::metadata(&theirs).unwrap().len(),
    );
    eprintln!("vmdk sizes: kiln {a} B, qemu-img {b} B");
    assert!(a <= b + b / 10, "ours {a} much larger than qemu-img {b}");
}

/// The grain directory read from the footer of a stream we wrote.
fn grain_directory(path: &std::path::Path) -> Vec<u32> {
    let b = std::fs::read(path).unwrap();
    let n = b.len();
    let footer = &b[n - 1024..n - 512];
    let gd = u64::from_le_bytes(footer[56..64].try_into().unwrap()) as usize * 512;
    let cap = u64::from_le_bytes(footer[12..20].try_into().unwrap());
    let entries = cap.div_ceil(128).div_ceil(512) as usize;
    (0..entries)
        .map(|i| u32::from_le_bytes(b[gd + 4 * i..gd + 4 * i + 4].try_into().unwrap()))
        .collect()
}

#[test]
fn vmdk_grain_table_modes_both_valid() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    let all = d.path("all.vmdk");
    let sparse = d.path("sparse.vmdk");
    write_with(&raw, &all, &OutputFormat::Vmdk(VmdkOptions::new()));
    write_with(
        &raw,
        &sparse,
        &OutputFormat::Vmdk(VmdkOptions::new().empty_grain_tables(false)),
    );
    for f in [&all, &sparse] {
        assert_check("vmdk", f);
        assert_identical(&raw, "vmdk", f);
    }
    let (ga, gs) = (grain_directory(&all), grain_directory(&sparse));
    assert_eq!(ga.len(), 8);
    assert!(ga.iter().all(|&s| s != 0), "{ga:?}");
    // Spans 4 and 5 (128..192 MiB) hold no data.
    assert_eq!((gs[4], gs[5]), (0, 0), "{gs:?}");
    assert_eq!(gs.iter().filter(|&&s| s != 0).count(), 6);
}

/// Parallel deflate: same bytes as one thread, and valid.
#[test]
fn vmdk_threads_are_deterministic() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    let one = OutputFormat::Vmdk(VmdkOptions::new());
    let two = OutputFormat::Vmdk(VmdkOptions::new().threads(3));
    let out = assert_same_output(&d, &raw, &one, &two, "mt");
    assert_check("vmdk", &out);
    assert_identical(&raw, "vmdk", &out);
}
