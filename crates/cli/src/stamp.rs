//! `kiln stamp`: per-device images from one built image (see
//! `kiln_pipeline::stamp`). Prints progress and a summary; never prints
//! config values (secrets stay in the images).

use crate::env::{now, source_date_epoch};
use anyhow::Result;
use kiln_pipeline::{StampFormat, StampRequest};
use std::path::PathBuf;

/// Arguments of `kiln stamp`.
#[derive(clap::Args)]
pub struct Args {
    /// The built raw image (balenaOS layout: a FAT boot partition labelled resin-boot/balena-boot/flash-boot).
    image: PathBuf,
    /// Devices file: CSV (header row; uuid and hostname columns required; dotted columns nest) or JSON array.
    #[arg(long)]
    devices: PathBuf,
    /// Output directory (must not exist or be empty): NAME.img or NAME.qcow2, NAME.manifest.json, SHA256SUMS.
    #[arg(long, short)]
    pub output: PathBuf,
    /// raw (a full sparse image per device) or qcow2-overlay (small overlays backed by IMAGE).
    #[arg(long, default_value = "raw", value_parser = parse_format)]
    format: StampFormat,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Sign the output directory's SHA256SUMS with this secret key (SHA256SUMS.minisig).
    #[arg(long, value_name = "KEY")]
    sign: Option<PathBuf>,
    /// With --sign: read the key's passphrase from this file instead of KILN_PASSPHRASE or a prompt.
    #[arg(long, value_name = "FILE", requires = "sign")]
    passphrase_file: Option<PathBuf>,
}

/// clap's parser for `--format`.
fn parse_format(s: &str) -> Result<StampFormat, String> {
    StampFormat::parse(s).ok_or_else(|| format!("--format {s:?}: use raw or qcow2-overlay"))
}

/// Runs `kiln stamp`.
pub fn run(a: Args, quiet: bool) -> Result<()> {
    let timestamp = source_date_epoch(None)?.unwrap_or_else(now);
    let signer = a
        .sign
        .as_deref()
        .map(|k| crate::sign::load_secret(k, a.passphrase_file.as_deref()))
        .transpose()?;
    let req = StampRequest {
        image: a.image,
        devices: a.devices,
        out_dir: a.output,
        format: a.format,
        timestamp,
    };
    let started = std::time::Instant::now();
    let report = kiln_pipeline::stamp(&req, &mut |line| {
        if !quiet {
            eprintln!("kiln: {line}");
        }
    })?;
    if let Some(key) = &signer {
        let comment = format!(
            "{} stamp of image sha256 {}",
            kiln_pipeline::trusted_comment(None, None),
            report.source_sha256
        );
        kiln_pipeline::sign_dir(&report.out_dir, key, &comment)?;
    }
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
