//! `convert` path: images made by qemu-img in every input format are
//! opened with format detection, pumped through `copy_allocated` into each
//! of our writers, and the result must equal the original raw disk
//! (qemu-img compare).
#![cfg(all(feature = "qcow2", feature = "vmdk", feature = "vhd"))]

mod common;

use std::fs::{File, OpenOptions};

use common::*;
use kiln_vdisk::{
    copy_allocated, open, Format, OutputFormat, Qcow2Options, VhdKind, VhdOptions, VirtualDisk,
    VmdkOptions,
};

#[test]
fn any_input_format_to_any_output_format() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    let inputs: [(&str, &str, &[&str], Format); 6] = [
        ("i.raw", "raw", &[], Format::Raw),
        ("i.qcow2", "qcow2", &[], Format::Qcow2),
        ("ic.qcow2", "qcow2", &["-c"], Format::Qcow2),
        (
            "i.vmdk",
            "vmdk",
            &["-o", "subformat=streamOptimized"],
            Format::Vmdk,
        ),
        ("id.vhd", "vpc", &["-o", "subformat=dynamic"], Format::Vhd),
        ("if.vhd", "vpc", &["-o", "subformat=fixed"], Format::Vhd),
    ];
    let outputs: [(&str, OutputFormat, &str); 6] = [
        ("raw", OutputFormat::Raw, "raw"),
        ("qcow2", OutputFormat::Qcow2(Qcow2Options::new()), "qcow2"),
        (
            "qcow2c",
            OutputFormat::Qcow2(Qcow2Options::new().compressed(1)),
            "qcow2",
        ),
        (
            "vmdk",
            OutputFormat::Vmdk(VmdkOptions::new().compression_level(1)),
            "vmdk",
        ),
        ("vhd", OutputFormat::Vhd(VhdOptions::new()), "vpc"),
        (
            "vhdd",
            OutputFormat::Vhd(VhdOptions::new().kind(VhdKind::Dynamic)),
            "vpc",
        ),
    ];
    for (iname, ifmt, extra, detected) in inputs {
        let input = d.path(iname);
        qemu_convert(&raw, &input, ifmt, extra);
        let img = open(File::open(&input).unwrap()).unwrap();
        assert_eq!(img.format(), detected, "{iname}");
        for (oname, ofmt, qfmt) in &outputs {
            let out = d.path(&format!("{iname}.{oname}"));
            let dst = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&out)
                .unwrap();
            let mut w = ofmt.create_writer(dst, img.virtual_size()).unwrap();
            copy_allocated(&img, &mut w).unwrap();
            w.finish().unwrap();
            drop(w);
            assert_identical(&raw, qfmt, &out);
            std::fs::remove_file(&out).unwrap();
        }
    }
}
