//! Converts a disk image (raw, qcow2, vmdk, vhd, vhdx; detected) into another
//! format with kiln-vdisk, printing the elapsed time. Used by
//! `bench/vdisk.sh`.
//!
//! Usage: `vdisk_convert IN OUT raw|qcow2|qcow2-compressed[-mt]|vmdk[-mt]|vmdk-sparse|vhd|vhd-dynamic|vhdx|ova[-mt]`

use std::fs::{File, OpenOptions};
use std::time::Instant;

use kiln_vdisk::{
    copy_allocated, open, OutputFormat, OvaOptions, Qcow2Options, VhdKind, VhdOptions, VhdxOptions,
    VirtualDisk, VmdkOptions,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output, format] = args.as_slice() else {
        return Err(
            "usage: vdisk_convert IN OUT raw|qcow2|qcow2-compressed[-mt]|vmdk[-mt]|vmdk-sparse|vhd|vhd-dynamic|vhdx|ova[-mt]"
                .into(),
        );
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let fmt = match format.as_str() {
        "raw" => OutputFormat::Raw,
        "qcow2" => OutputFormat::Qcow2(Qcow2Options::new()),
        "qcow2-compressed" => OutputFormat::Qcow2(Qcow2Options::new().compressed(6)),
        "vmdk" => OutputFormat::Vmdk(VmdkOptions::new()),
        "vmdk-mt" => OutputFormat::Vmdk(VmdkOptions::new().threads(threads)),
        "qcow2-compressed-mt" => {
            OutputFormat::Qcow2(Qcow2Options::new().compressed(6).threads(threads))
        }
        "vhd" => OutputFormat::Vhd(VhdOptions::new()),
        "vhd-dynamic" => OutputFormat::Vhd(VhdOptions::new().kind(VhdKind::Dynamic)),
        "vmdk-sparse" => OutputFormat::VmdkSparse(VmdkOptions::new()),
        "vhdx" => OutputFormat::Vhdx(VhdxOptions::new()),
        "ova" => OutputFormat::Ova(OvaOptions::new("bench")),
        "ova-mt" => {
            OutputFormat::Ova(OvaOptions::new("bench").vmdk(VmdkOptions::new().threads(threads)))
        }
        other => return Err(format!("unknown format {other}").into()),
    };
    let start = Instant::now();
    let img = open(File::open(input)?)?;
    let out = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(output)?;
    let mut w = fmt.create_writer(out, img.virtual_size())?;
    copy_allocated(&img, &mut w)?;
    let s = w.finish()?;
    println!(
        "{:?} -> {format}: virtual {} B, file {} B, allocated {} B, {:.3} s",
        img.format(),
        s.virtual_size,
        s.file_size,
        s.allocated_bytes,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
