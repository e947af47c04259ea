//! The positional writers (qcow2, dynamic VHD): writes in any order
//! (overwrites, partial clusters and blocks, zeros, across L2 tables),
//! mirrored into a sparse raw file; the qcow2 passes `qemu-img check`
//! (QEMU has no check for VHD), `qemu-img compare` says each equals the
//! mirror, reads while writing see what was written, and the file depends
//! only on the writes.
#![cfg(all(feature = "qcow2", feature = "vmdk", feature = "vhd"))]

mod common;

use std::fs::File;

use common::*;
use kiln_units::{ReadAt, WriteAt};
use kiln_vdisk::{open, Qcow2RandomWriter, VhdDynamicRandomWriter, VhdOptions, VirtualDisk};

/// 1.5 GiB + 1 MiB: three qcow2 L2 tables (1 MiB-aligned, as a VHD's
/// size is).
const VSIZE: u64 = (3 << 29) + (1 << 20);

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

/// One of the positional writers.
enum Writer {
    Qcow2(Qcow2RandomWriter<File>),
    Vhd(VhdDynamicRandomWriter<File>),
}

impl Writer {
    fn new(qcow2: bool, f: File, size: u64) -> Self {
        if qcow2 {
            Writer::Qcow2(Qcow2RandomWriter::new(f, size).unwrap())
        } else {
            Writer::Vhd(VhdDynamicRandomWriter::new(f, size, &VhdOptions::new()).unwrap())
        }
    }
    fn io(&mut self) -> &mut dyn WriteRead {
        match self {
            Writer::Qcow2(w) => w,
            Writer::Vhd(w) => w,
        }
    }
    fn finish(self) -> kiln_vdisk::WriteSummary {
        match self {
            Writer::Qcow2(w) => w.finish().unwrap().1,
            Writer::Vhd(w) => w.finish().unwrap().1,
        }
    }
}

trait WriteRead: WriteAt + ReadAt {}
impl<T: WriteAt + ReadAt> WriteRead for T {}

fn build(
    qcow2: bool,
    path: &std::path::Path,
    mirror: Option<&mut File>,
) -> kiln_vdisk::WriteSummary {
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let mut w = Writer::new(qcow2, f, VSIZE);
    let mut mirror = mirror;
    for (off, data) in writes() {
        w.io().write_all_at(&data, off).unwrap();
        if let Some(m) = mirror.as_deref_mut() {
            m.write_all_at(&data, off).unwrap();
            // Reads while writing see the virtual disk (zeros where never
            // written), across cluster and allocation boundaries.
            let (at, len) = (off.saturating_sub(70_000), 300_000.min(VSIZE - off));
            let mut a = vec![0u8; len as usize];
            let mut b = vec![0u8; len as usize];
            w.io().read_exact_at(&mut a, at).unwrap();
            m.read_exact_at(&mut b, at).unwrap();
            assert!(a == b, "read back at {at}");
        }
    }
    // VSIZE is 1 MiB-aligned for the VHD too: past it is past the end.
    assert!(
        w.io().write_all_at(&[1], VSIZE).is_err(),
        "write past the end"
    );
    w.finish()
}

fn random_writes(qcow2: bool) {
    let (ext, fmt) = if qcow2 {
        ("qcow2", "qcow2")
    } else {
        ("vhd", "vpc")
    };
    let d = Dir::new();
    let raw = d.path("mirror.raw");
    File::create(&raw).unwrap().set_len(VSIZE).unwrap();
    let mut mirror = File::options().read(true).write(true).open(&raw).unwrap();
    let out = d.path(&format!("out.{ext}"));
    let s = build(qcow2, &out, Some(&mut mirror));
    if qcow2 {
        assert_check("qcow2", &out);
    }
    assert_identical(&raw, fmt, &out);
    let j = info(Some(fmt), &out);
    assert_eq!(j["format"], fmt);
    assert_eq!(j["virtual-size"], VSIZE);
    assert_eq!(s.file_size, std::fs::metadata(&out).unwrap().len());
    // Our own reader agrees, and only written clusters are allocated.
    let img = open(File::open(&out).unwrap()).unwrap();
    assert_contents_match(&img, &raw);
    assert!(s.allocated_bytes < img.virtual_size() / 2, "{s:?}");

    // Same writes, same bytes.
    let again = d.path(&format!("again.{ext}"));
    build(qcow2, &again, None);
    assert!(same_bytes(&out, &again));
}

#[test]
fn qcow2_random_writes_check_clean_and_compare_equal() {
    random_writes(true);
}

#[test]
fn vhd_dynamic_random_writes_compare_equal() {
    random_writes(false);
}

#[test]
fn zeros_allocate_nothing_and_a_partial_last_cluster_works() {
    let d = Dir::new();
    let size = (64 << 20) + 4096;
    let out = d.path("small.qcow2");
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&out)
        .unwrap();
    let mut w = Qcow2RandomWriter::new(f, size).unwrap();
    w.write_all_at(&[0u8; 65_536], 0).unwrap(); // zeros allocate nothing
    w.write_all_at(&[0x5Au8; 512], size - 512).unwrap();
    let (_, s) = w.finish().unwrap();
    assert_eq!(s.allocated_bytes, 65_536);
    assert_check("qcow2", &out);
    let raw = d.path("small.raw");
    let r = File::create(&raw).unwrap();
    r.set_len(size).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&r, &[0x5Au8; 512], size - 512).unwrap();
    assert_identical(&raw, "qcow2", &out);
}
