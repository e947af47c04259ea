//! `kiln stamp`: per-device images from one built image (see
//! `kiln_pipeline::stamp`). Prints progress and a summary; never prints
//! config values (secrets stay in the images).

use anyhow::Result;
use kiln_pipeline::{StampFormat, StampRequest};
use std::path::PathBuf;

/// Arguments of `kiln stamp`.
pub struct Args {
    pub image: PathBuf,
    pub devices: PathBuf,
    pub output: PathBuf,
    pub format: String,
    pub json: bool,
    pub quiet: bool,
    pub timestamp: i64,
}

pub fn run(a: Args) -> Result<()> {
    let format = StampFormat::parse(&a.format).ok_or_else(|| {
        crate::exit::input(anyhow::anyhow!(
            "--format {:?}: use raw or qcow2-overlay",
            a.format
        ))
    })?;
    let req = StampRequest {
        image: a.image,
        devices: a.devices,
        out_dir: a.output,
        format,
        timestamp: a.timestamp,
    };
    let quiet = a.quiet;
    let started = std::time::Instant::now();
    let report = kiln_pipeline::stamp(&req, &mut |line| {
        if !quiet {
            eprintln!("kiln: {line}");
        }
    })?;
    if a.json {
        let devices: Vec<serde_json::Value> = report
            .devices
            .iter()
            .map(|d| {
                serde_json::json!({
                    "name": d.name,
                    "output": d.output,
                    "sha256": d.sha256,
                    "boot_sha256": d.boot_sha256,
                    "manifest": d.manifest,
                    "files_changed": d.files_changed,
                })
            })
            .collect();
        let v = serde_json::json!({
            "out_dir": report.out_dir,
            "source_sha256": report.source_sha256,
            "boot_partition": {"number": report.boot_partition.0, "label": report.boot_partition.1},
            "devices": devices,
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else if !quiet {
        eprintln!(
            "kiln: stamped {} devices into {} in {:.1} s (SHA256SUMS, one manifest per device)",
            report.devices.len(),
            report.out_dir.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
