//! VHDX dynamic: validated by qemu-img (check, info, compare; QEMU
//! verifies the header and region table CRC-32C checksums on open), read
//! back by our reader, byte-reproducible, and hostile input refused with
//! a clear error.
#![cfg(feature = "vhdx")]

mod common;

use std::os::unix::fs::FileExt;

use common::*;
use kiln_units::Guid;
use kiln_vdisk::vhdx::VhdxCrc32c;
use kiln_vdisk::{open, DiskWriter, Error, Format, OutputFormat, VhdxOptions, VirtualDisk};

fn opts() -> OutputFormat {
    OutputFormat::Vhdx(
        VhdxOptions::new()
            .disk_id(Guid::v4_from_seed([3; 16]))
            .write_guid(Guid::v4_from_seed([4; 16])),
    )
}

#[test]
fn vhdx_is_valid_for_qemu_and_equals_raw() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    let out = d.path("out.vhdx");
    let s = write_with(&raw, &out, &opts());
    let size = std::fs::metadata(&raw).unwrap().len();
    assert_eq!(s.virtual_size, size);
    let j = info(None, &out);
    assert_eq!(j["format"], "vhdx", "{j}");
    assert_eq!(j["virtual-size"], size);
    assert_eq!(j["cluster-size"], 1 << 20, "1 MiB blocks: {j}");
    assert_check("vhdx", &out);
    assert_identical(&raw, "vhdx", &out);
    // Sparse: far smaller than the disk.
    assert!(s.file_size < size / 4, "{s:?}");
    let img = open(std::fs::File::open(&out).unwrap()).unwrap();
    assert_eq!(img.format(), Format::Vhdx);
    assert_reader_matches(&img, &raw);
    assert_deterministic(&d, &raw, &opts(), "vhdx");
}

#[test]
fn our_reader_reads_qemu_vhdx() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    for extra in [
        &["-o", "subformat=dynamic"][..],
        &["-o", "subformat=dynamic,block_size=33554432"],
    ] {
        let q = d.path("q.vhdx");
        let _ = std::fs::remove_file(&q);
        qemu_convert(&raw, &q, "vhdx", extra);
        let img = open(std::fs::File::open(&q).unwrap()).unwrap();
        assert_eq!(img.format(), Format::Vhdx);
        assert_contents_match(&img, &raw);
    }
}

#[test]
fn qemu_rejects_a_flipped_header_byte() {
    // The checksum check in QEMU is live: a header byte flipped in both
    // headers makes the file unreadable, so the pass above validated ours.
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    let out = d.path("out.vhdx");
    write_with(&raw, &out, &opts());
    let f = std::fs::OpenOptions::new().write(true).open(&out).unwrap();
    for h in [64u64 << 10, 128 << 10] {
        f.write_all_at(&[0x55], h + 200).unwrap();
    }
    let o = qemu_img(&["info", "-f", "vhdx", p(&out)]);
    assert!(!o.ok, "{}", o.stdout);
}

fn sample() -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = opts().create_writer(&mut out, 8 << 20).unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    w.write_extent(12_345, &data).unwrap();
    w.write_extent((6 << 20) + 1, &data[..70_000]).unwrap();
    w.finish().unwrap();
    drop(w);
    out
}

fn reseal(b: &mut [u8], at: usize, len: usize) {
    let sum = VhdxCrc32c::compute(&b[at..at + len], 4);
    b[at + 4..at + 8].copy_from_slice(&sum.0.to_le_bytes());
}

fn open_err(b: Vec<u8>) -> String {
    match open(b) {
        Ok(_) => panic!("hostile VHDX opened"),
        Err(e) => {
            assert!(
                matches!(
                    e,
                    Error::Corrupt { .. } | Error::Unsupported { .. } | Error::Io { .. }
                ),
                "{e:?}"
            );
            e.to_string()
        }
    }
}

#[test]
fn hostile_vhdx_is_refused_with_a_clear_error() {
    let good = sample();
    // Truncated anywhere: an error, never a panic or a wrong read.
    for cut in [
        8,
        4096,
        70_000,
        200_000,
        1 << 20,
        (3 << 20) + 5,
        good.len() - 1,
    ] {
        let mut b = good.clone();
        b.truncate(cut);
        if let Ok(img) = open(b) {
            let mut buf = vec![0u8; 8 << 20];
            assert!(img.read_virtual(&mut buf, 0).is_err(), "cut {cut} read");
        }
    }
    // Both headers' checksums bad.
    let mut b = good.clone();
    b[(64 << 10) + 100] ^= 1;
    b[(128 << 10) + 100] ^= 1;
    assert!(open_err(b).contains("no valid header"));
    // One bad header: the other is used.
    let mut b = good.clone();
    b[(128 << 10) + 100] ^= 1;
    assert!(open(b).is_ok());
    // Both region tables bad.
    let mut b = good.clone();
    b[(192 << 10) + 40] ^= 1;
    b[(256 << 10) + 40] ^= 1;
    assert!(open_err(b).contains("no valid region table"));
    // A huge virtual size (a huge BAT): refused before allocating.
    let mut b = good.clone();
    let size_item = (2 << 20) + (64 << 10) + 8;
    b[size_item..size_item + 8].copy_from_slice(&(60u64 << 40).to_le_bytes());
    assert!(open_err(b).contains("BAT larger than 128 MiB"));
    // A BAT entry pointing past the end of the file.
    let mut b = good.clone();
    let bat = 3 << 20;
    b[bat..bat + 8].copy_from_slice(&((1u64 << 40) | 6).to_le_bytes());
    let img = open(b).unwrap();
    let mut buf = [0u8; 16];
    let e = img.read_virtual(&mut buf, 0).unwrap_err().to_string();
    assert!(e.contains("payload block outside the file"), "{e}");
    // A log to replay is refused, not ignored.
    let mut b = good.clone();
    for h in [64usize << 10, 128 << 10] {
        b[h + 48] = 1;
        reseal(&mut b, h, 4096);
    }
    assert!(open_err(b).contains("log to replay"));
    // A differencing disk (HasParent).
    let mut b = good.clone();
    let params = (2 << 20) + (64 << 10) + 4;
    b[params] = 2;
    assert!(open_err(b).contains("differencing"));
}
