//! qcow2: validated by qemu-img (check, compare, info), read back by our
//! reader, compared against qemu-img's own qcow2 output.
#![cfg(all(feature = "qcow2", feature = "vmdk", feature = "vhd"))]

mod common;

use std::fs::File;

use common::*;
use kiln_vdisk::{open, Format, OutputFormat, Qcow2Options, VirtualDisk};

#[test]
fn qcow2_passes_check_and_equals_raw() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    let out = d.path("out.qcow2");
    let s = write_with(&raw, &out, &OutputFormat::Qcow2(Qcow2Options::new()));
    assert_check("qcow2", &out);
    assert_identical(&raw, "qcow2", &out);
    let j = info(None, &out);
    assert_eq!(j["format"], "qcow2");
    assert_eq!(j["virtual-size"], SIZE);
    assert_eq!(j["cluster-size"], 65536);
    assert_eq!(j["format-specific"]["data"]["compat"], "1.1");
    assert_eq!(j["format-specific"]["data"]["refcount-bits"], 16);
    // The zero region and all holes are skipped: 58 data clusters of 64 KiB
    // (the regions' cluster footprint), not the 1 MiB zero region.
    assert_eq!(s.allocated_bytes, 58 * 65536);
    assert_eq!(s.file_size, std::fs::metadata(&out).unwrap().len());
}

#[test]
fn qcow2_compressed_clusters_pass_check() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    let plain = d.path("plain.qcow2");
    let out = d.path("comp.qcow2");
    let sp = write_with(&raw, &plain, &OutputFormat::Qcow2(Qcow2Options::new()));
    let sc = write_with(
        &raw,
        &out,
        &OutputFormat::Qcow2(Qcow2Options::new().compressed(6)),
    );
    assert_check("qcow2", &out);
    let o = qemu_img(&["check", p(&out)]);
    assert!(o.stdout.contains("compressed clusters"), "{}", o.stdout);
    assert!(!o.stdout.contains(" 0.00% compressed"), "{}", o.stdout);
    assert_identical(&raw, "qcow2", &out);
    assert!(
        sc.file_size < sp.file_size,
        "compressed {} !< plain {}",
        sc.file_size,
        sp.file_size
    );
    assert_reader_matches(&open(File::open(&out).unwrap()).unwrap(), &raw);
}

#[test]
fn qcow2_is_deterministic() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    assert_deterministic(&d, &raw, &OutputFormat::Qcow2(Qcow2Options::new()), "plain");
    assert_deterministic(
        &d,
        &raw,
        &OutputFormat::Qcow2(Qcow2Options::new().compressed(1)),
        "comp",
    );
}

#[test]
fn qcow2_reader_reads_ours_and_qemus() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    let ours = d.path("ours.qcow2");
    write_with(&raw, &ours, &OutputFormat::Qcow2(Qcow2Options::new()));
    let img = open(File::open(&ours).unwrap()).unwrap();
    assert_eq!(img.format(), Format::Qcow2);
    assert_reader_matches(&img, &raw);
    for (name, extra) in [
        ("q.qcow2", &[][..]),
        ("qc.qcow2", &["-c"][..]),
        ("q2.qcow2", &["-o", "compat=0.10"][..]),
    ] {
        let theirs = d.path(name);
        qemu_convert(&raw, &theirs, "qcow2", extra);
        let img = open(File::open(&theirs).unwrap()).unwrap();
        assert_eq!(img.format(), Format::Qcow2, "{name}");
        assert_reader_matches(&img, &raw);
    }
}

/// Differential: qemu-img convert's qcow2 and ours hold the same disk, and
/// ours is not larger (both skip zero clusters).
#[test]
fn qcow2_differential_against_qemu_img_convert() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    let ours = d.path("ours.qcow2");
    let theirs = d.path("theirs.qcow2");
    write_with(&raw, &ours, &OutputFormat::Qcow2(Qcow2Options::new()));
    qemu_convert(&raw, &theirs, "qcow2", &[]);
    let o = qemu_img(&[
        "compare",
        "-f",
        "qcow2",
        "-F",
        "qcow2",
        p(&ours),
        p(&theirs),
    ]);
    assert_eq!(o.code, Some(0), "{} {}", o.stdout, o.stderr);
    let (a, b) = (
        std::fs::metadata(&ours).unwrap().len(),
        std::fs::metadata(&theirs).unwrap().len(),
    );
    eprintln!("qcow2 sizes: kiln {a} B, qemu-img {b} B");
    assert!(a <= b, "ours {a} > qemu-img {b}");
    let (ja, jb) = (info(None, &ours), info(None, &theirs));
    assert_eq!(ja["virtual-size"], jb["virtual-size"]);
}

/// Parallel compression: same bytes as one thread, and valid.
#[test]
fn qcow2_compressed_threads_are_deterministic() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    let one = OutputFormat::Qcow2(Qcow2Options::new().compressed(6));
    let two = OutputFormat::Qcow2(Qcow2Options::new().compressed(6).threads(3));
    let out = assert_same_output(&d, &raw, &one, &two, "mt");
    assert_check("qcow2", &out);
    assert_identical(&raw, "qcow2", &out);
}

/// Half-compressible clusters (~36 KiB each after deflate) force the
/// packing across host cluster boundaries; QEMU must agree with the
/// refcounts, and the packing must actually save space.
#[test]
fn qcow2_compressed_streams_cross_host_clusters() {
    use std::os::unix::fs::FileExt;
    let d = Dir::new();
    let raw = d.path("half.raw");
    let f = File::create(&raw).unwrap();
    let size: u64 = 64 << 20;
    f.set_len(size).unwrap();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<u8> = (0..(8 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 24) as u8
        })
        .collect();
    f.write_all_at(&data, 3 << 20).unwrap();
    drop(f);
    let out = d.path("half.qcow2");
    let s = write_with(
        &raw,
        &out,
        &OutputFormat::Qcow2(Qcow2Options::new().compressed(6)),
    );
    assert_check("qcow2", &out);
    assert_identical(&raw, "qcow2", &out);
    let theirs = d.path("theirs.qcow2");
    qemu_convert(&raw, &theirs, "qcow2", &["-c"]);
    let q = std::fs::metadata(&theirs).unwrap().len();
    eprintln!(
        "half-compressible 8 MiB: kiln {} B, qemu-img -c {q} B",
        s.file_size
    );
    assert!(
        s.file_size < (6 << 20),
        "packing wastes space: {}",
        s.file_size
    );
    assert!(
        s.file_size <= q + q / 10,
        "kiln {} vs qemu-img {q}",
        s.file_size
    );
    assert_contents_match(&open(File::open(&out).unwrap()).unwrap(), &raw);
}

/// Sizes that are not whole sectors round up (as `qemu-img create` does);
/// an empty disk has no L1 table and no leaked cluster.
#[test]
fn qcow2_odd_and_empty_sizes() {
    use std::os::unix::fs::FileExt;
    let d = Dir::new();
    let raw = d.path("odd.raw");
    let f = File::create(&raw).unwrap();
    f.set_len(1000).unwrap();
    f.write_all_at(b"abc", 997).unwrap();
    drop(f);
    let out = d.path("odd.qcow2");
    let s = write_with(&raw, &out, &OutputFormat::Qcow2(Qcow2Options::new()));
    assert_eq!(s.virtual_size, 1024);
    assert_check("qcow2", &out);
    assert_identical(&raw, "qcow2", &out);
    assert_eq!(info(None, &out)["virtual-size"], 1024);
    let empty = d.path("empty.raw");
    File::create(&empty).unwrap();
    let out = d.path("empty.qcow2");
    write_with(&empty, &out, &OutputFormat::Qcow2(Qcow2Options::new()));
    assert_check("qcow2", &out);
    assert_eq!(info(None, &out)["virtual-size"], 0);
}
