//! VHD fixed and dynamic: validated by qemu-img (compare, info; QEMU
//! verifies the footer and header checksums on open), read back by our
//! reader, geometry and checksum cross-checked against qemu-img's files.
#![cfg(all(feature = "qcow2", feature = "vmdk", feature = "vhd"))]

mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;

use common::*;
use kiln_units::Guid;
use kiln_vdisk::vhd::{ChsGeometry, VhdChecksum};
use kiln_vdisk::{open, Format, OutputFormat, VhdKind, VhdOptions, VirtualDisk};

const MIB256: u64 = 256 << 20;

fn opts(kind: VhdKind) -> VhdOptions {
    VhdOptions::new()
        .kind(kind)
        .unique_id(Guid::v4_from_seed([7; 16]))
        .timestamp_unix(1_700_000_000)
}

#[test]
fn vhd_fixed_equals_raw_and_has_spec_footer() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    let out = d.path("out.vhd");
    let s = write_with(&raw, &out, &OutputFormat::Vhd(opts(VhdKind::Fixed)));
    // Size rounded up to 1 MiB; the file is data + one 512-byte footer.
    assert_eq!(s.virtual_size, MIB256);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), MIB256 + 512);
    // QEMU refuses a footer whose checksum is wrong, so opening proves it.
    let j = info(Some("vpc"), &out);
    assert_eq!(j["format"], "vpc");
    assert_eq!(j["virtual-size"], MIB256);
    assert!(
        j.get("cluster-size").is_none(),
        "a fixed VHD has no blocks: {j}"
    );
    assert_identical(&raw, "vpc", &out);
    let f = File::open(&out).unwrap();
    let mut footer = [0u8; 512];
    f.read_exact_at(&mut footer, MIB256).unwrap();
    assert_eq!(&footer[..8], b"conectix");
    assert_eq!(&footer[60..64], &[0, 0, 0, 2], "disk type fixed");
    assert_eq!(
        &footer[24..28],
        &(1_700_000_000u32 - 946_684_800).to_be_bytes()
    );
    assert_eq!(&footer[68..84], &Guid::v4_from_seed([7; 16]).to_rfc_bytes());
}

#[test]
fn vhd_dynamic_equals_raw() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    let out = d.path("out.vhd");
    let s = write_with(&raw, &out, &OutputFormat::Vhd(opts(VhdKind::Dynamic)));
    // Probed as vpc without -f (footer copy at 0), with 2 MiB blocks.
    let j = info(None, &out);
    assert_eq!(j["format"], "vpc");
    assert_eq!(j["virtual-size"], MIB256);
    assert_eq!(j["cluster-size"], 2 << 20);
    assert_identical(&raw, "vpc", &out);
    // Sparse: only blocks with data (7 of 128) are stored.
    assert_eq!(s.allocated_bytes, 7 * (2 << 20));
    assert!(s.file_size < 16 << 20);
    // Flipping a reserved footer byte must make QEMU reject the file:
    // its checksum check is live, so the pass above validated ours.
    let f = std::fs::OpenOptions::new().write(true).open(&out).unwrap();
    f.write_all_at(&[1], 100).unwrap();
    let o = qemu_img(&["info", p(&out)]);
    assert!(!o.ok && o.stderr.contains("checksum"), "{}", o.stderr);
}

#[test]
fn vhd_is_deterministic() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    assert_deterministic(&d, &raw, &OutputFormat::Vhd(opts(VhdKind::Fixed)), "fixed");
    assert_deterministic(&d, &raw, &OutputFormat::Vhd(opts(VhdKind::Dynamic)), "dyn");
}

#[test]
fn vhd_reader_reads_ours_and_qemus() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    for kind in [VhdKind::Fixed, VhdKind::Dynamic] {
        let ours = d.path("ours.vhd");
        write_with(&raw, &ours, &OutputFormat::Vhd(opts(kind)));
        let img = open(File::open(&ours).unwrap()).unwrap();
        assert_eq!(img.format(), Format::Vhd);
        assert_eq!(img.virtual_size(), MIB256);
        assert_reader_matches(&img, &raw);
        // Fixed: the map comes from the file's holes; dynamic: the BAT.
        let mapped: u64 = kiln_vdisk::allocated_extents(&img)
            .map(|e| e.unwrap().len)
            .sum();
        assert!(mapped < 16 << 20, "{kind:?}: {mapped} bytes mapped");
    }
    for sub in [
        "subformat=fixed",
        "subformat=dynamic",
        "subformat=fixed,force_size=on",
    ] {
        let theirs = d.path("theirs.vhd");
        let _ = std::fs::remove_file(&theirs);
        qemu_convert(&raw, &theirs, "vpc", &["-o", sub]);
        let img = open(File::open(&theirs).unwrap()).unwrap();
        assert_eq!(img.format(), Format::Vhd, "{sub}");
        let j = info(Some("vpc"), &theirs);
        assert_eq!(
            j["virtual-size"],
            img.virtual_size(),
            "{sub}: size rule differs from QEMU's"
        );
        assert_reader_matches(&img, &raw);
    }
}

/// Known answers taken from qemu-img's own VHDs: their footer checksums
/// verify with our checksum type, and for sizes that are an exact CHS
/// product QEMU's geometry (computed by its own code) equals ours.
#[test]
fn vhd_checksum_and_geometry_match_qemu() {
    let d = Dir::new();
    for sectors in [20_480u64, 524_288, 6_291_456, 16_000] {
        let bytes = ChsGeometry::from_sectors(sectors).sectors() * 512;
        let path = d.path("q.vhd");
        let _ = std::fs::remove_file(&path);
        let o = qemu_img(&[
            "create",
            "-f",
            "vpc",
            "-o",
            "subformat=fixed",
            p(&path),
            &bytes.to_string(),
        ]);
        assert!(o.ok, "{}", o.stderr);
        let f = File::open(&path).unwrap();
        let len = f.metadata().unwrap().len();
        let mut footer = [0u8; 512];
        f.read_exact_at(&mut footer, len - 512).unwrap();
        let stored = u32::from_be_bytes(footer[64..68].try_into().unwrap());
        assert_eq!(
            VhdChecksum::compute(&footer, 64),
            VhdChecksum(stored),
            "{sectors}"
        );
        let cur = u64::from_be_bytes(footer[48..56].try_into().unwrap());
        assert_eq!(cur, bytes, "{sectors}: QEMU kept the exact CHS size");
        let g = ChsGeometry::from_sectors(bytes / 512);
        let theirs = (
            u16::from_be_bytes([footer[56], footer[57]]),
            footer[58],
            footer[59],
        );
        assert_eq!(
            (g.cylinders, g.heads, g.sectors_per_track),
            theirs,
            "{sectors}"
        );
    }
}
