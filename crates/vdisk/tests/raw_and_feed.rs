//! Raw sparse writer, the extent pumps (SEEK_DATA/SEEK_HOLE and any
//! ReadAt), the writer contract, and 64 GiB disks with bounded tables.
#![cfg(all(feature = "qcow2", feature = "vmdk", feature = "vhd"))]

mod common;

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};

use common::*;
use kiln_vdisk::{
    feed_read_at, feed_sparse_file, open, DiskWriter, Error, Format, OutputFormat, Qcow2Options,
    VhdKind, VhdOptions, VmdkOptions, WriteSummary,
};

/// Records the extents a pump sends.
struct Recorder(Vec<(u64, usize)>, u64);

impl DiskWriter for Recorder {
    fn format(&self) -> Format {
        Format::Raw
    }
    fn virtual_size(&self) -> u64 {
        self.1
    }
    fn write_extent(&mut self, offset: u64, data: &[u8]) -> kiln_vdisk::Result<()> {
        assert!(data.iter().any(|&b| b != 0), "all-zero extent at {offset}");
        self.0.push((offset, data.len()));
        Ok(())
    }
    fn finish(&mut self) -> kiln_vdisk::Result<WriteSummary> {
        unreachable!()
    }
}

#[test]
fn raw_writer_is_sparse_and_identical() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    let out = d.path("out.raw");
    let s = write_with(&raw, &out, &OutputFormat::Raw);
    assert_eq!(s.file_size, SIZE);
    assert!(same_bytes(&raw, &out));
    assert_identical(&raw, "raw", &out);
    // Holes stay holes and the written-zero MiB is not allocated either.
    let allocated = std::fs::metadata(&out).unwrap().blocks() * 512;
    assert!(
        allocated < 6 << 20,
        "raw output allocates {allocated} bytes"
    );
    let img = open(File::open(&out).unwrap()).unwrap();
    let exts: Vec<_> = kiln_vdisk::allocated_extents(&img)
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(exts
        .iter()
        .all(|e| e.end() <= ZERO_REGION.0 || e.offset >= ZERO_REGION.0 + ZERO_REGION.1 as u64));
}

#[test]
fn pumps_send_only_nonzero_blocks_in_order() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    let f = File::open(&raw).unwrap();
    let mut a = Recorder(Vec::new(), SIZE);
    feed_sparse_file(&f, &mut a).unwrap();
    // Same stream from a plain reader that knows no holes.
    let mut b = Recorder(Vec::new(), SIZE);
    feed_read_at(&f, &mut b).unwrap();
    assert_eq!(a.0, b.0);
    for w in a.0.windows(2) {
        assert!(w[0].0 + w[0].1 as u64 <= w[1].0);
    }
    let sent: u64 = a.0.iter().map(|e| e.1 as u64).sum();
    // 4 KiB footprint of the regions, nothing of the zero MiB.
    let footprint: u64 = REGIONS
        .iter()
        .map(|&(o, l, _)| (o + l as u64).div_ceil(4096).min(SIZE.div_ceil(4096)) * 4096 - o / 4096 * 4096)
        .sum::<u64>()
        - 4096 // the last region's block is cut at SIZE
        + (SIZE % 4096);
    assert_eq!(sent, footprint);
}

#[test]
fn writers_enforce_the_extent_contract() {
    let fmts = [
        OutputFormat::Raw,
        OutputFormat::Qcow2(Qcow2Options::new()),
        OutputFormat::Vmdk(VmdkOptions::new()),
        OutputFormat::Vhd(VhdOptions::new()),
        OutputFormat::Vhd(VhdOptions::new().kind(VhdKind::Dynamic)),
    ];
    for fmt in &fmts {
        let mut out = Vec::new();
        let mut w = fmt.create_writer(&mut out, 4 << 20).unwrap();
        w.write_extent(8192, &[1; 100]).unwrap();
        assert!(
            matches!(
                w.write_extent(8000, &[1]),
                Err(Error::ExtentOutOfOrder { .. })
            ),
            "{fmt:?}"
        );
        assert!(
            matches!(
                w.write_extent(8200, &[1]),
                Err(Error::ExtentOutOfOrder { .. })
            ),
            "{fmt:?}"
        );
        assert!(
            matches!(
                w.write_extent(4 << 20, &[1]),
                Err(Error::ExtentOutOfOrder { .. })
            ),
            "{fmt:?}"
        );
        w.write_extent((4 << 20) - 1, &[2]).unwrap();
        w.finish().unwrap();
        assert!(matches!(
            w.write_extent((4 << 20) - 1, &[]),
            Err(Error::AlreadyFinished { .. })
        ));
        assert!(matches!(w.finish(), Err(Error::AlreadyFinished { .. })));
        drop(w);
        let img = open(out).unwrap();
        let mut b = [0u8; 101];
        kiln_vdisk::VirtualDisk::read_virtual(&img, &mut b, 8191).unwrap();
        assert_eq!(b[0], 0);
        assert!(b[1..].iter().all(|&x| x == 1), "{fmt:?}");
    }
    assert!(matches!(
        OutputFormat::Vhd(VhdOptions::new()).create_writer(Vec::new(), 3 << 40),
        Err(Error::SizeNotSupported { .. })
    ));
}

/// A 64 GiB disk with data at its start, middle and last byte: every
/// format passes qemu-img check/compare; the writers keep only tables
/// proportional to the virtual size (L1, GD, BAT) and to the data.
#[test]
fn sixty_four_gib_disks() {
    let d = Dir::new();
    let size: u64 = 64 << 30;
    let raw = d.path("big.raw");
    let f = File::create(&raw).unwrap();
    f.set_len(size).unwrap();
    for (off, fill) in [
        (0u64, 1u8),
        (33 << 30, 2),
        ((48 << 30) + 777, 3),
        (size - 4096, 4),
    ] {
        f.write_all_at(&vec![fill; 4096], off).unwrap();
    }
    drop(f);
    for (name, fmt, qfmt) in [
        (
            "big.qcow2",
            OutputFormat::Qcow2(Qcow2Options::new()),
            "qcow2",
        ),
        ("big.vmdk", OutputFormat::Vmdk(VmdkOptions::new()), "vmdk"),
        (
            "big.vhd",
            OutputFormat::Vhd(VhdOptions::new().kind(VhdKind::Dynamic)),
            "vpc",
        ),
        ("bigf.vhd", OutputFormat::Vhd(VhdOptions::new()), "vpc"),
    ] {
        let out = d.path(name);
        write_with(&raw, &out, &fmt);
        if qfmt != "vpc" {
            assert_check(qfmt, &out);
        }
        assert_identical(&raw, qfmt, &out);
        let _ = std::fs::remove_file(&out);
    }
}

/// Raw, VHD fixed and VMDK streamOptimized stream into a plain `Write`
/// (here a file opened for appending-only writes through the adapter) and
/// come out identical to the positional output; qcow2 refuses clearly.
#[test]
fn sequential_output_for_stream_formats() {
    use kiln_vdisk::SequentialWriter;
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    let src = File::open(&raw).unwrap();
    for (name, fmt, qfmt) in [
        ("s.raw", OutputFormat::Raw, "raw"),
        ("s.vhd", OutputFormat::Vhd(VhdOptions::new()), "vpc"),
        ("s.vmdk", OutputFormat::Vmdk(VmdkOptions::new()), "vmdk"),
    ] {
        let out = d.path(name);
        let sink = SequentialWriter::new(std::io::BufWriter::new(File::create(&out).unwrap()));
        let mut w = fmt.create_writer(sink, SIZE).unwrap();
        feed_sparse_file(&src, &mut w).unwrap();
        w.finish().unwrap();
        drop(w);
        assert_identical(&raw, qfmt, &out);
        let positional = d.path(&format!("p.{name}"));
        write_with(&raw, &positional, &fmt);
        assert!(
            same_bytes(&out, &positional),
            "{name}: streamed output differs"
        );
    }
    let sink = SequentialWriter::new(Vec::new());
    let mut w = OutputFormat::Qcow2(Qcow2Options::new())
        .create_writer(sink, SIZE)
        .unwrap();
    feed_sparse_file(&src, &mut w).unwrap();
    assert!(matches!(w.finish(), Err(Error::Io { .. })));
}
