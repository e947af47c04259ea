//! `kiln drives [--json] [--for IMAGE]`: the disks this machine could
//! flash, from `/sys`, `/run/udev/data` (when present) and
//! `/proc/self/mountinfo` through `kiln-drives`; no root needed.

use anyhow::{Context, Result};
use kiln_drives::{Drive, Exclusion, Roots};
use kiln_flash::mountinfo;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Arguments of `kiln drives`.
#[derive(clap::Args)]
pub struct Args {
    /// Print JSON (an array of drives) instead of text.
    #[arg(long)]
    json: bool,
    /// Also exclude the drives smaller than this image (raw, qcow2, vmdk, vhd, or compressed raw with its .bmap).
    #[arg(long = "for", value_name = "IMAGE")]
    image: Option<PathBuf>,
}

/// Runs `kiln drives`.
pub fn run(a: Args) -> Result<()> {
    let image_bytes = match &a.image {
        // An image that cannot be opened or read is bad input (exit 2).
        Some(p) => Some(
            crate::flash::image_bytes(p)
                .map_err(crate::exit::input)?
                .ok_or_else(|| {
                    crate::exit::input(anyhow::anyhow!(
                        "{}: its size is unknown (a compressed image without a .bmap)",
                        p.display()
                    ))
                })?,
        ),
        None => None,
    };
    let mounts = mountinfo::parse_mountinfo(
        &std::fs::read_to_string("/proc/self/mountinfo")
            .context("/proc/self/mountinfo: cannot read")?,
    )?;
    let udev = Path::new("/run/udev/data");
    let roots = Roots::new("/sys", udev.is_dir().then_some(udev), "/dev");
    let drives = kiln_drives::scan(&roots, &mounts, image_bytes)?;
    if a.json {
        let v: Vec<_> = drives.iter().map(to_json).collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for d in &drives {
        print_drive(d)?;
    }
    if drives.iter().all(|d| d.excluded.is_some()) {
        eprintln!("kiln: no drive to flash (plug in a USB stick or an SD card)");
    }
    Ok(())
}

/// A size with a binary unit (`14.3 GiB`).
fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

fn print_drive(d: &Drive) -> Result<()> {
    let mut line = format!(
        "{:<14} {:<7} {:>10}  {}",
        d.path.display(),
        d.transport.as_str(),
        human(d.size_bytes),
        d.model.as_deref().unwrap_or("-")
    );
    if let Some(s) = &d.serial {
        line.push_str(&format!("  serial {s}"));
    }
    if let Some(b) = &d.backing_file {
        line.push_str(&format!("  file {}", b.display()));
    }
    if let Some(x) = &d.excluded {
        line.push_str(&format!("  [excluded: {x}]"));
    }
    outln!("{line}");
    for p in &d.partitions {
        let mut line = format!(
            "  {:<14} {:>10}  {}",
            p.path.display(),
            human(p.size_bytes),
            p.label.as_deref().unwrap_or("-")
        );
        for m in &p.mounted_at {
            line.push_str(&format!("  mounted at {}", m.display()));
        }
        outln!("{line}");
    }
    Ok(())
}

/// The stable key of an exclusion in `--json`.
fn reason_key(x: &Exclusion) -> &'static str {
    match x {
        Exclusion::HoldsRoot => "holds-root",
        Exclusion::Mounted { .. } => "mounted",
        Exclusion::ReadOnly => "read-only",
        Exclusion::NoMedium => "no-medium",
        Exclusion::TooSmall { .. } => "too-small",
    }
}

fn to_json(d: &Drive) -> serde_json::Value {
    json!({
        "path": d.path,
        "name": d.name,
        "transport": d.transport.as_str(),
        "size_bytes": d.size_bytes,
        "model": d.model,
        "serial": d.serial,
        "removable": d.removable,
        "backing_file": d.backing_file,
        "mounted_at": d.mounted_at,
        "partitions": d.partitions.iter().map(|p| json!({
            "path": p.path,
            "size_bytes": p.size_bytes,
            "label": p.label,
            "mounted_at": p.mounted_at,
        })).collect::<Vec<_>>(),
        "excluded": d.excluded.as_ref().map(|x| json!({
            "reason": reason_key(x),
            "message": x.to_string(),
        })),
    })
}
