//! qcow2 overlays with a backing file: only the fed clusters are stored,
//! the rest reads through to the backing image; validated by qemu-img
//! (check, compare against the expected raw disk, info, map).
#![cfg(feature = "qcow2")]

mod common;

use std::fs::File;

use common::*;
use kiln_vdisk::{DiskWriter, Qcow2Options, Qcow2Writer};

const C: usize = 65536;

#[test]
fn overlay_stores_only_fed_clusters_and_reads_through() {
    let d = Dir::new();
    // A 4 MiB + 512 B backing disk full of non-zero data (the odd tail
    // checks a last cluster that ends at the virtual size).
    let size = 4 * 1024 * 1024 + 512;
    let base: Vec<u8> = (0..size).map(|i| (i % 251 + 1) as u8).collect();
    std::fs::write(d.path("base.raw"), &base).unwrap();
    // Changes: cluster 3 new data, cluster 5 all zeros, the tail cluster.
    let mut want = base.clone();
    want[3 * C..4 * C].fill(0xAB);
    want[5 * C..6 * C].fill(0);
    let tail = 64 * C;
    want[tail..].fill(0xCD);
    std::fs::write(d.path("want.raw"), &want).unwrap();

    let opts = Qcow2Options::new().backing_file("base.raw", "raw");
    let out = File::create(d.path("ov.qcow2")).unwrap();
    let mut w = Qcow2Writer::new(out, size as u64, &opts).unwrap();
    w.write_extent(3 * C as u64, &want[3 * C..4 * C]).unwrap();
    w.write_extent(5 * C as u64, &want[5 * C..6 * C]).unwrap();
    w.write_extent(tail as u64, &want[tail..]).unwrap();
    let s = w.finish().unwrap();
    // Two data clusters; the zero cluster takes no host cluster.
    assert_eq!(s.allocated_bytes, 2 * C as u64);

    let ov = d.path("ov.qcow2");
    assert_check("qcow2", &ov);
    let o = qemu_img(&[
        "compare",
        "-f",
        "raw",
        "-F",
        "qcow2",
        p(&d.path("want.raw")),
        p(&ov),
    ]);
    assert_eq!(o.code, Some(0), "{} {}", o.stdout, o.stderr);
    let j = info(Some("qcow2"), &ov);
    assert_eq!(j["backing-filename"], "base.raw");
    assert_eq!(j["backing-filename-format"], "raw");
    assert_eq!(j["virtual-size"], size as u64);
    // qemu-img map: the overlay itself (depth 0) holds exactly the three
    // written clusters; everything else comes from the backing file.
    let o = qemu_img(&["map", "--output=json", p(&ov)]);
    assert!(o.ok, "{}", o.stderr);
    let map: Vec<serde_json::Value> = serde_json::from_str(&o.stdout).unwrap();
    let own: u64 = map
        .iter()
        .filter(|e| e["depth"] == 0)
        .map(|e| e["length"].as_u64().unwrap())
        .sum();
    // Clusters 3 and 5 (zeros) and the 512-byte tail.
    assert_eq!(own, (2 * C + 512) as u64);

    // kiln's reader: refused without the backing disk, then read through
    // it: equal to what qemu-img compared above (the zero cluster masks the
    // backing data, unallocated clusters read it), and every non-zero byte
    // inside the reported allocated extents.
    let f = File::open(&ov).unwrap();
    assert!(matches!(
        kiln_vdisk::open(&f),
        Err(kiln_vdisk::Error::Unsupported { .. })
    ));
    let img =
        kiln_vdisk::open_with_backing(&f, &d.path(""), kiln_vdisk::BackingOptions::new()).unwrap();
    let mut got = vec![0u8; size];
    kiln_vdisk::VirtualDisk::read_virtual(&img, &mut got, 0).unwrap();
    assert!(got == want, "the overlay read through its backing file");
    let mut covered = vec![false; size];
    for e in kiln_vdisk::allocated_extents(&img) {
        let e = e.unwrap();
        covered[e.offset as usize..e.end() as usize].fill(true);
    }
    assert!(
        want.iter().zip(&covered).all(|(&b, &c)| b == 0 || c),
        "a non-zero byte outside the allocated extents"
    );
    // qemu-img's own conversion of the overlay agrees byte for byte.
    let o = qemu_img(&["convert", "-O", "raw", p(&ov), p(&d.path("qemu.raw"))]);
    assert!(o.ok, "{}", o.stderr);
    assert!(std::fs::read(d.path("qemu.raw")).unwrap() == got);

    // A missing backing file: named.
    std::fs::rename(d.path("base.raw"), d.path("gone.raw")).unwrap();
    let e = kiln_vdisk::open_with_backing(&f, &d.path(""), kiln_vdisk::BackingOptions::new())
        .unwrap_err();
    assert!(
        e.to_string().contains("backing file") && e.to_string().contains("base.raw"),
        "{e}"
    );
}

#[test]
fn overlay_refuses_partial_clusters_and_long_names() {
    let d = Dir::new();
    let opts = Qcow2Options::new().backing_file("b.raw", "raw");
    let mut w = Qcow2Writer::new(File::create(d.path("x.qcow2")).unwrap(), 1 << 20, &opts).unwrap();
    assert!(w.write_extent(512, &[1u8; 512]).is_err());
    let long = "x".repeat(1024);
    let opts = Qcow2Options::new().backing_file(&long, "raw");
    assert!(Qcow2Writer::new(File::create(d.path("y.qcow2")).unwrap(), 1 << 20, &opts).is_err());
}
