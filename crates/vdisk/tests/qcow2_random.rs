//! The positional qcow2 writer: writes in any order (overwrites, partial
//! clusters, zeros, across L2 tables), mirrored into a sparse raw file;
//! the result passes `qemu-img check`, `qemu-img compare` says it equals
//! the mirror, reads while writing see what was written, and the file
//! depends only on the writes.
#![cfg(all(feature = "qcow2", feature = "vmdk", feature = "vhd"))]

mod common;

use std::fs::File;

use common::*;
use kiln_units::{ReadAt, WriteAt};
use kiln_vdisk::{open, Qcow2RandomWriter, VirtualDisk};

/// 1.5 GiB + 4 KiB: three L2 tables, a partial last cluster.
const VSIZE: u64 = (3 << 29) + 4096;

/// A deterministic pseudo-random sequence of writes: (offset, bytes).
fn writes() -> Vec<(u64, Vec<u8>)> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut v = Vec::new();
    for i in 0..400 {
        let len = match i % 5 {
            0 => 512,
            1 => 4096,
            2 => 65_536,
            3 => (1 << 20) + 123,
            _ => (next() % 200_000) as usize + 1,
        };
        let off = next() % (VSIZE - len as u64);
        let data: Vec<u8> = if i % 7 == 0 {
            vec![0; len] // zeros: dropped where unallocated, written where not
        } else {
            (0..len).map(|_| next() as u8).collect()
        };
        v.push((off, data));
    }
    // Overwrite earlier data with zeros, touch both ends, and straddle the
    // first L2 boundary (512 MiB).
    let (o, d) = &v[3];
    v.push((*o, vec![0; d.len()]));
    v.push((0, vec![0xAB; 512]));
    v.push((VSIZE - 100, vec![0xCD; 100]));
    v.push(((1 << 29) - 70_000, vec![0xEF; 140_000]));
    v
}

fn build(path: &std::path::Path, mirror: Option<&mut File>) -> kiln_vdisk::WriteSummary {
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let mut w = Qcow2RandomWriter::new(f, VSIZE).unwrap();
    let mut mirror = mirror;
    for (off, data) in writes() {
        w.write_all_at(&data, off).unwrap();
        if let Some(m) = mirror.as_deref_mut() {
            m.write_all_at(&data, off).unwrap();
            // Reads while writing see the virtual disk (zeros where never
            // written), across cluster and allocation boundaries.
            let (at, len) = (off.saturating_sub(70_000), 300_000.min(VSIZE - off));
            let mut a = vec![0u8; len as usize];
            let mut b = vec![0u8; len as usize];
            w.read_exact_at(&mut a, at).unwrap();
            m.read_exact_at(&mut b, at).unwrap();
            assert!(a == b, "read back at {at}");
        }
    }
    assert!(w.write_all_at(&[1], VSIZE).is_err(), "write past the end");
    let (_, summary) = w.finish().unwrap();
    summary
}

#[test]
fn random_writes_check_clean_and_compare_equal() {
    let d = Dir::new();
    let raw = d.path("mirror.raw");
    File::create(&raw).unwrap().set_len(VSIZE).unwrap();
    let mut mirror = File::options().read(true).write(true).open(&raw).unwrap();
    let out = d.path("out.qcow2");
    let s = build(&out, Some(&mut mirror));
    assert_check("qcow2", &out);
    assert_identical(&raw, "qcow2", &out);
    let j = info(None, &out);
    assert_eq!(j["format"], "qcow2");
    assert_eq!(j["virtual-size"], VSIZE);
    assert_eq!(s.file_size, std::fs::metadata(&out).unwrap().len());
    // Our own reader agrees, and only written clusters are allocated.
    let img = open(File::open(&out).unwrap()).unwrap();
    assert_contents_match(&img, &raw);
    assert!(s.allocated_bytes < img.virtual_size() / 4, "{s:?}");

    // Same writes, same bytes.
    let again = d.path("again.qcow2");
    build(&again, None);
    assert!(same_bytes(&out, &again));
}

#[test]
fn an_empty_disk_is_valid() {
    let d = Dir::new();
    let out = d.path("empty.qcow2");
    let f = File::create(&out).unwrap();
    let mut w = Qcow2RandomWriter::new(f, 64 << 20).unwrap();
    w.write_all_at(&[0u8; 65_536], 0).unwrap(); // zeros allocate nothing
    let (_, s) = w.finish().unwrap();
    assert_eq!(s.allocated_bytes, 0);
    assert_check("qcow2", &out);
    let raw = d.path("zero.raw");
    File::create(&raw).unwrap().set_len(64 << 20).unwrap();
    assert_identical(&raw, "qcow2", &out);
}
