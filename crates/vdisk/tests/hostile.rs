//! Hostile and truncated input: readers return errors, never panic, and
//! never allocate past their documented bounds.
#![cfg(all(feature = "qcow2", feature = "vmdk", feature = "vhd"))]

mod common;

use kiln_vdisk::vhd::VhdChecksum;
use kiln_vdisk::{
    allocated_extents, open, DiskWriter, Error, OutputFormat, Qcow2Options, VhdKind, VhdOptions,
    VirtualDisk, VmdkOptions,
};

fn sample(fmt: &OutputFormat) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = fmt.create_writer(&mut out, 8 << 20).unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    w.write_extent(12_345, &data).unwrap();
    w.write_extent((6 << 20) + 1, &data[..70_000]).unwrap();
    w.finish().unwrap();
    drop(w);
    out
}

fn formats() -> Vec<(&'static str, OutputFormat)> {
    vec![
        ("qcow2", OutputFormat::Qcow2(Qcow2Options::new())),
        (
            "qcow2c",
            OutputFormat::Qcow2(Qcow2Options::new().compressed(6)),
        ),
        ("vmdk", OutputFormat::Vmdk(VmdkOptions::new())),
        (
            "vhd-dyn",
            OutputFormat::Vhd(VhdOptions::new().kind(VhdKind::Dynamic)),
        ),
    ]
}

/// Opens and exercises an image: walks at most 1000 extents and reads a
/// bounded amount. Returns whether every step succeeded.
fn exercise(bytes: Vec<u8>) -> bool {
    let Ok(img) = open(bytes) else { return false };
    let mut buf = vec![0u8; 1 << 16];
    let mut ok = true;
    for e in allocated_extents(&img).take(1000) {
        match e {
            Ok(e) => {
                let n = (e.len as usize).min(buf.len());
                ok &= img.read_virtual(&mut buf[..n], e.offset).is_ok();
            }
            Err(_) => return false,
        }
    }
    let n = (img.virtual_size() as usize).min(buf.len());
    ok && img.read_virtual(&mut buf[..n], 0).is_ok()
}

#[test]
fn truncated_images_fail_cleanly() {
    for (name, fmt) in formats() {
        let full = sample(&fmt);
        assert!(exercise(full.clone()), "{name}: intact image must read");
        let len = full.len();
        let mut cuts: Vec<usize> = (0..8192).step_by(97).collect();
        cuts.extend((1..4096).step_by(61).map(|k| len.saturating_sub(k)));
        cuts.extend((0..len).step_by(len / 50 + 1));
        let mut failed = 0;
        for cut in cuts {
            if cut >= len {
                continue;
            }
            // A truncated image may still open as raw (no magic left), but
            // must never panic; truncated headers of a detected format err.
            if !exercise(full[..cut].to_vec()) {
                failed += 1;
            }
        }
        assert!(failed > 0, "{name}: no truncation was detected");
    }
}

fn set_be32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
fn set_be64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}
fn set_le32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn set_le64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

type Edit = Box<dyn Fn(&mut Vec<u8>)>;

fn corrupt_or_unsupported<T: std::fmt::Debug>(r: kiln_vdisk::Result<T>) -> bool {
    matches!(
        r,
        Err(Error::Corrupt { .. }) | Err(Error::Unsupported { .. })
    )
}

#[test]
fn qcow2_hostile_fields() {
    let good = sample(&OutputFormat::Qcow2(Qcow2Options::new()));
    let cases: Vec<(&str, Edit)> = vec![
        ("l1_size huge", Box::new(|b| set_be32(b, 36, u32::MAX))),
        ("l1 offset past end", Box::new(|b| set_be64(b, 40, 1 << 60))),
        ("cluster_bits 40", Box::new(|b| set_be32(b, 20, 40))),
        ("size 2^63", Box::new(|b| set_be64(b, 24, 1 << 63))),
        ("version 9", Box::new(|b| set_be32(b, 4, 9))),
        ("backing file", Box::new(|b| set_be64(b, 8, 512))),
        ("encrypted", Box::new(|b| set_be32(b, 32, 1))),
        ("unknown incompat", Box::new(|b| set_be64(b, 72, 1 << 40))),
    ];
    for (what, f) in cases {
        let mut b = good.clone();
        f(&mut b);
        assert!(corrupt_or_unsupported(open(b)), "{what}");
    }
    // L1 entry pointing past the file: open succeeds, reads fail.
    let mut b = good.clone();
    set_be64(&mut b, 65536, (1u64 << 63) | (1 << 40));
    let img = open(b).unwrap();
    let mut buf = [0u8; 16];
    assert!(img.read_virtual(&mut buf, 12_345).is_err());
    // Compressed L2 entry with the largest sector count.
    let mut b = good.clone();
    let l1 = u64::from_be_bytes(b[65536..65544].try_into().unwrap()) & 0x00ff_ffff_ffff_fe00;
    let l2 = l1 as usize;
    set_be64(&mut b, l2, (1 << 62) | (0xff << 54) | 0x3_0000);
    let img = open(b).unwrap();
    assert!(img.read_virtual(&mut buf, 0).is_err());
}

#[test]
fn vmdk_hostile_fields() {
    let good = sample(&OutputFormat::Vmdk(VmdkOptions::new()));
    let n = good.len();
    let both = |f: &dyn Fn(&mut [u8])| {
        let mut b = good.clone();
        f(&mut b[..512]);
        f(&mut b[n - 1024..n - 512]);
        b
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("numGTEsPerGT huge", both(&|h| set_le32(h, 44, u32::MAX))),
        ("grainSize 3", both(&|h| set_le64(h, 20, 3))),
        ("capacity huge", both(&|h| set_le64(h, 12, u64::MAX / 512))),
        ("gd past end", {
            let mut b = good.clone();
            set_le64(&mut b[n - 1024..], 56, 1 << 50);
            b
        }),
        ("footer capacity mismatch", {
            let mut b = good.clone();
            set_le64(&mut b[n - 1024..], 12, 1);
            b
        }),
        (
            "text descriptor",
            b"# Disk DescriptorFile\nversion=1\n".repeat(40),
        ),
    ];
    for (what, b) in cases {
        assert!(corrupt_or_unsupported(open(b)), "{what}");
    }
    // A grain marker claiming a huge size: reads fail.
    let mut b = good.clone();
    set_le32(&mut b, 128 * 512 + 8, u32::MAX);
    let img = open(b).unwrap();
    let mut buf = [0u8; 16];
    assert!(img.read_virtual(&mut buf, 12_345).is_err());
}

fn refresh_vhd_footer(f: &mut [u8]) {
    f[64..68].fill(0);
    let c = VhdChecksum::compute(f, 64);
    f[64..68].copy_from_slice(&c.0.to_be_bytes());
}

#[test]
fn vhd_hostile_fields() {
    let good = sample(&OutputFormat::Vhd(VhdOptions::new().kind(VhdKind::Dynamic)));
    let n = good.len();
    let footer_edit = |f: &dyn Fn(&mut [u8])| {
        let mut b = good.clone();
        for at in [0, n - 512] {
            f(&mut b[at..at + 512]);
            refresh_vhd_footer(&mut b[at..at + 512]);
        }
        b
    };
    let mut bad_sum = good.clone();
    bad_sum[n - 512 + 100] ^= 1;
    bad_sum[100] ^= 1;
    let mut bad_hdr = good.clone();
    set_be32(&mut bad_hdr, 512 + 28, u32::MAX); // max table entries, checksum now wrong
    let mut huge_bat = good.clone();
    set_be32(&mut huge_bat, 512 + 28, u32::MAX);
    bad_hdr_sum(&mut huge_bat);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("checksum", bad_sum),
        ("header checksum", bad_hdr),
        ("max table entries huge", huge_bat),
        (
            "current size huge",
            footer_edit(&|f| set_be64(f, 48, 1 << 62)),
        ),
        (
            "data offset past end",
            footer_edit(&|f| set_be64(f, 16, 1 << 40)),
        ),
        ("differencing", footer_edit(&|f| set_be32(f, 60, 4))),
        ("disk type 9", footer_edit(&|f| set_be32(f, 60, 9))),
    ];
    for (what, b) in cases {
        assert!(corrupt_or_unsupported(open(b)), "{what}");
    }
    // A BAT entry pointing past the file: reads fail.
    let mut b = good.clone();
    set_be32(&mut b, 1536, 0x7fff_fff0);
    let img = open(b).unwrap();
    let mut buf = [0u8; 16];
    assert!(img.read_virtual(&mut buf, 12_345).is_err());
    // Fixed VHD claiming more data than the file holds.
    let fixed = sample(&OutputFormat::Vhd(VhdOptions::new()));
    let mut b = fixed.clone();
    let m = b.len();
    set_be64(&mut b[m - 512..], 48, 1 << 40);
    refresh_vhd_footer(&mut b[m - 512..]);
    assert!(corrupt_or_unsupported(open(b)));
}

fn bad_hdr_sum(b: &mut [u8]) {
    let h = &mut b[512..1536];
    h[36..40].fill(0);
    let c = VhdChecksum::compute(h, 36);
    h[36..40].copy_from_slice(&c.0.to_be_bytes());
}

/// Random bytes behind each magic: whatever happens, no panic.
#[test]
fn random_garbage_never_panics() {
    let mut x = 0x1234_5678_9abc_def1u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..300 {
        let len = 512 + (next() % 70_000) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        match i % 3 {
            0 => b[..4].copy_from_slice(b"QFI\xfb"),
            1 => b[..4].copy_from_slice(b"KDMV"),
            _ => b[len - 512..len - 504].copy_from_slice(b"conectix"),
        }
        // Small version numbers so parsers get further.
        if i % 3 == 0 {
            b[4..8].copy_from_slice(&[0, 0, 0, 3]);
        }
        let _ = exercise(b);
    }
}
