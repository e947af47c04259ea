//! `kiln convert IN OUT --format F`: one disk format to another.

use crate::env::{now, random_bytes, source_date_epoch};
use anyhow::Result;
use kiln_pipeline::{DiskFormat, Seed};
use std::path::PathBuf;

/// Arguments of `kiln convert`.
#[derive(clap::Args)]
pub struct Args {
    /// Input image.
    input: PathBuf,
    /// Output file.
    pub output: PathBuf,
    /// Output format: raw, qcow2, vmdk, vmdk-sparse, vhd, vhd-dynamic, vhdx.
    #[arg(long, value_parser = crate::env::disk_format)]
    format: DiskFormat,
    /// Follow a qcow2 overlay's backing file outside the overlay's directory (an absolute name, `..`, or a symlink leaving it); by default it is refused. It must be a regular file either way.
    #[arg(long)]
    allow_backing_outside: bool,
}

/// Runs `kiln convert`.
pub fn run(a: Args, quiet: bool) -> Result<()> {
    let sde = source_date_epoch(None)?;
    let seed = match sde {
        Some(t) => Seed::new(format!("convert:{t}")),
        None => Seed::new(random_bytes()?),
    };
    let r = kiln_pipeline::convert(
        &a.input,
        &a.output,
        a.format,
        seed.bytes16("vdisk"),
        sde.unwrap_or_else(now),
        kiln_vdisk::BackingOptions::new().allow_outside(a.allow_backing_outside),
    )?;
    if !quiet {
        eprintln!(
            "kiln: wrote {} ({} bytes, virtual size {})",
            a.output.display(),
            r.file_size,
            r.virtual_size
        );
    }
    Ok(())
}
