//! Base image sniffing and layout detection (kiln-base): format magic,
//! the balenaOS partition layout, device type from the boot partition,
//! OS release from rootA, a flasher's inner image.

use std::path::Path;
use std::rc::Rc;

use super::outcome::{bucket, err_sig, mix};
use crate::target::Target;

fn base(data: &[u8]) -> u64 {
    let head = &data[..data.len().min(512)];
    let tail = data.len().checked_sub(512).map(|at| &data[at..]);
    let mut h = crate::mutate::fnv(format!("{:?}", kiln_base::sniff_bytes(head, tail)).as_bytes());
    let layout = match kiln_base::detect(data) {
        Ok(l) => l,
        Err(e) => return mix(h, err_sig(&e)),
    };
    h = mix(h, layout.labels().len() as u64);
    h = mix(
        h,
        kiln_base::device_info(data, &layout).map_or_else(|e| err_sig(&e), |_| 2),
    );
    let disk = Rc::new(data.to_vec());
    h = mix(
        h,
        kiln_base::os_info(&disk, &layout).map_or_else(|e| err_sig(&e), |_| 3),
    );
    if layout.flasher {
        h = mix(
            h,
            kiln_base::flasher_inner(&disk, &layout)
                .map_or_else(|e| err_sig(&e), |i| u64::from(i.is_some())),
        );
    }
    h
}

/// Base image sniffing and layout detection (kiln-base).
pub const BASE: Target = Target {
    name: "base",
    invariant: "base image magic, partition layout and labels, device-type.json/config.json from the \
                boot FAT, os-release from the rootA ext4, flasher payload: no panic, no hang, memory \
                bounded",
    run: base,
};

fn inspect(data: &[u8]) -> u64 {
    // As `kiln inspect` reads an image: the container format detected,
    // then everything it reports read through it.
    let img = match kiln_vdisk::open(data.to_vec()) {
        Ok(i) => i,
        Err(e) => return err_sig(&e),
    };
    match kiln_pipeline::inspect_disk(Rc::new(img), Path::new("fuzz.img")) {
        Ok(r) => {
            let h = mix(
                bucket(r.partitions.len() as u64),
                bucket(r.boot_files.len() as u64),
            );
            mix(h, bucket(r.base_lines().len() as u64))
        }
        Err(e) => err_sig(&e),
    }
}

/// What `kiln inspect` reads (kiln-pipeline `inspect_disk` over
/// kiln-vdisk `open`).
pub const INSPECT: Target = Target {
    name: "inspect",
    invariant:
        "kiln inspect on a raw, qcow2, VMDK or VHD image: table, filesystems, boot files, \
                config.json, the data partition's store and apps: no panic, no hang, memory bounded",
    run: inspect,
};
