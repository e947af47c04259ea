//! `kiln inspect IMAGE`: prints what `kiln_pipeline::inspect` found, as
//! text or JSON.

use anyhow::{Context, Result};
use kiln_pipeline::{FsInfo, InspectReport};
use std::path::PathBuf;

/// Arguments of `kiln inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// The image: raw, qcow2, vmdk, vhd (read in place), or .xz/.gz/.zst/.zip (expanded into a temporary file first).
    image: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// Follow a qcow2 overlay's backing file outside the overlay's directory (an absolute name, `..`, or a symlink leaving it); by default it is refused. It must be a regular file either way.
    #[arg(long)]
    allow_backing_outside: bool,
    /// Print a summary of the SBOM beside the image (`NAME.cdx.json`: OS packages, preloaded images and their packages, listed files) instead of reading the image.
    #[arg(long)]
    sbom: bool,
}

/// Runs `kiln inspect`.
pub fn run(a: Args) -> Result<()> {
    if a.sbom {
        let (path, summary) = kiln_pipeline::sbom_summary(&a.image)?;
        if a.json {
            outln!("{}", serde_json::to_string_pretty(&summary)?);
        } else {
            outln!("{}", path.display());
            outln!("{summary}");
        }
        return Ok(());
    }
    // A compressed image is expanded into an unnamed file in the
    // temporary directory (gone when kiln exits, however it exits).
    let compressed = matches!(kiln_base::sniff(&a.image), Ok(f) if f.is_packed());
    let scratch = if compressed {
        eprintln!(
            "kiln: expanding {} into a temporary file to inspect it",
            a.image.display()
        );
        Some(tempfile::tempfile().context("cannot create a temporary file")?)
    } else {
        None
    };
    let r = kiln_pipeline::inspect(
        &a.image,
        scratch.as_ref(),
        kiln_vdisk::BackingOptions::new().allow_outside(a.allow_backing_outside),
    )?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    outln!("image     {} ({} bytes)", a.image.display(), r.disk_bytes);
    outln!("table     {} (disk id {})", r.table, r.disk_id);
    print_partitions(&r)?;
    if let Some(c) = &r.config {
        outln!("config.json (secrets redacted):");
        outln!("{}", serde_json::to_string_pretty(c)?);
    }
    print_data(&r)?;
    for line in r.base_lines() {
        outln!("{line}");
    }
    Ok(())
}

fn print_partitions(r: &InspectReport) -> Result<()> {
    outln!("partitions:");
    for p in &r.partitions {
        let fs = match &p.fs {
            FsInfo::Fat { variant, label, id } => {
                format!(
                    "{variant} label={} id={id}",
                    label.as_deref().unwrap_or("-")
                )
            }
            FsInfo::Ext4 { label, uuid, size } => {
                format!("ext4 label={label} uuid={uuid} size={size}")
            }
            FsInfo::Unknown => "unknown".into(),
        };
        outln!(
            "  p{:<2} start {:>12} size {:>12} type {}{}{}  {fs}",
            p.number,
            p.start,
            p.size,
            p.type_id,
            if p.bootable { " boot" } else { "" },
            p.name
                .as_ref()
                .map(|n| format!(" name={n}"))
                .unwrap_or_default(),
        );
    }
    if !r.boot_files.is_empty() {
        outln!("boot files:");
        for f in &r.boot_files {
            match f.size {
                Some(s) => outln!("  {:>10}  {}", s, f.path),
                None => outln!("  {:>10}  {}/", "dir", f.path),
            }
        }
    }
    Ok(())
}

fn print_data(r: &InspectReport) -> Result<()> {
    let Some(d) = &r.data else {
        return Ok(());
    };
    if !d.images.is_empty() {
        outln!("preloaded images (docker/):");
        for i in &d.images {
            outln!(
                "  {} {} layers  {}",
                &i.id[..19.min(i.id.len())],
                i.layers,
                i.references.join(" ")
            );
        }
    }
    if !d.services.is_empty() {
        outln!("apps.json services:");
        for s in &d.services {
            outln!(
                "  {}/{} {} {}",
                s.app,
                s.service,
                s.image,
                if s.preloaded {
                    "(preloaded)"
                } else {
                    "(NOT in the store: the device would pull it)"
                }
            );
        }
    }
    if let Some(sw) = &d.swap {
        outln!(
            "swapfile  {} {} bytes label={} uuid={}",
            sw.path,
            sw.size,
            sw.label,
            sw.uuid
        );
    }
    Ok(())
}
