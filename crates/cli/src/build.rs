//! `kiln build`: gathers the clock, the environment and randomness, loads
//! the board profile and recipe, runs `kiln_pipeline::build` with progress
//! and prints the report.

use crate::env::{locate, now, random_bytes, source_date_epoch};
use anyhow::Result;
use kiln_pipeline::{BuildRequest, DiskFormat, Seed};
use kiln_recipe::{BoardProfile, Recipe};
use std::path::PathBuf;

/// Arguments of `kiln build`.
#[derive(clap::Args)]
pub struct Args {
    /// Board profile name (see `kiln boards`) or path to a profile TOML.
    #[arg(long)]
    board: String,
    /// Recipe name (see `kiln recipes`) or path to a recipe TOML.
    #[arg(long)]
    recipe: String,
    /// Output image file.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Target medium the image must fit (e.g. 8GB, 64GB); default: any of the board's media.
    #[arg(long)]
    media: Option<String>,
    /// Override a config.json key: --set hostname=bob-17 --set os.network.wifi=false.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Output formats (raw, qcow2, vmdk, vmdk-sparse, vhd, vhd-dynamic, vhdx, ova); repeat or comma-separate. Default: the recipe's output section.
    #[arg(long = "format", value_delimiter = ',', value_parser = crate::env::disk_format)]
    formats: Vec<DiskFormat>,
    /// Compress the raw image: xz, gz, zst or none. Default: the recipe's output section.
    #[arg(long)]
    compress: Option<String>,
    /// Compression level (xz 0-9, gz 1-9, zst 1-19).
    #[arg(long)]
    level: Option<u32>,
    /// Print the build report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Preload into this existing OS image (raw, .xz, .gz, .zst, .zip, qcow2, vmdk, vhd) instead of building the OS partitions; overrides the recipe's `[base] image`.
    #[arg(long, value_name = "IMAGE")]
    base: Option<PathBuf>,
    /// With --base: preload even if the base's device type or architecture does not match the board.
    #[arg(long)]
    force: bool,
    /// Sign SHA256SUMS with this secret key (SHA256SUMS.minisig; see `kiln keygen`); overrides the recipe's `[sign] key`.
    #[arg(long, value_name = "KEY")]
    sign: Option<PathBuf>,
    /// With --sign: read the key's passphrase from this file instead of KILN_PASSPHRASE or a prompt.
    #[arg(long, value_name = "FILE", requires = "sign")]
    passphrase_file: Option<PathBuf>,
    /// Build a USB installer image (balenaOS flasher layout) that installs this build's disk onto the machine's internal disk with `kiln install`; see the recipe's `[installer]`.
    #[arg(long, conflicts_with = "base")]
    installer: bool,
}

/// Runs `kiln build`.
pub fn run(a: Args, quiet: bool) -> Result<()> {
    let threads = std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(1))
        .unwrap_or(1);
    let profile = BoardProfile::load(&locate(&a.board, "board-profiles")?)?;
    let recipe = Recipe::load(&locate(&a.recipe, "recipes")?)?;
    let sde = source_date_epoch(recipe.build.source_date_epoch)?;
    let seed = match (&recipe.build.seed, sde) {
        (Some(s), _) => Seed::new(s.as_bytes()),
        (None, Some(t)) => Seed::new(format!("{}:{t}", recipe.name)),
        (None, None) => Seed::new(random_bytes()?),
    };
    let env = |k: &str| std::env::var(k).ok();
    // Decrypted before the build: a wrong passphrase costs no build.
    // `--sign` overrides the recipe's `[sign]`.
    let signer = match (&a.sign, &recipe.sign) {
        (Some(k), _) => Some(crate::sign::load_secret(k, a.passphrase_file.as_deref())?),
        (None, Some(spec)) => Some(crate::sign::load_recipe_secret(spec, &env)?),
        (None, None) => None,
    };
    // Step notes and byte progress of the long steps: a bar on a
    // terminal, plain lines otherwise, nothing with --quiet.
    let bars = crate::progress::Bars::new(vec![String::new()], quiet);
    let on_bytes = |s: kiln_pipeline::StepBytes<'_>| {
        bars.report(0, s.step, s.done_bytes, s.total_bytes);
    };
    let req = BuildRequest {
        profile,
        recipe,
        medium: a.media,
        output: a.output,
        overrides: a.set,
        timestamp: sde.unwrap_or_else(now),
        seed,
        env: &env,
        formats: a.formats,
        compress: a.compress.map(|c| (c, a.level)),
        threads,
        base: a.base,
        force: a.force,
        signer: signer.as_ref(),
        on_bytes: Some(&on_bytes),
    };
    let started = std::time::Instant::now();
    let report = if a.installer {
        let exe = std::env::current_exe()?;
        kiln_pipeline::build_installer(&req, &exe, &mut |l| bars.note(l))
    } else {
        kiln_pipeline::build(&req, &mut |l| bars.note(l))
    };
    bars.done();
    let report = report?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else if !quiet {
        print_report(&report, started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// The human summary on stderr: the disk itself, then the files it was
/// delivered as (a raw image file only when raw is among them).
fn print_report(report: &kiln_pipeline::BuildReport, seconds: f64) {
    eprintln!(
        "kiln: built a {}-byte disk in {seconds:.1}s; fits {}",
        report.disk_bytes,
        if report.fits.is_empty() {
            "no listed medium".to_string()
        } else {
            report.fits.join(", ")
        }
    );
    if let Some(app) = &report.app {
        eprintln!("kiln: preloaded images:\n{}", app.trim_end());
    }
    for p in &report.partitions {
        eprintln!(
            "  p{:<2} {:<12} {:>6} start {:>12} size {:>12} used {:>12} id {}",
            p.number, p.label, p.fs, p.start, p.size, p.used_bytes, p.fs_id
        );
    }
    eprintln!("kiln: image sha256 {}", report.image_sha256);
    for a in &report.artifacts {
        eprintln!(
            "  {:<12} {:>12} bytes  {}  {}",
            a.format,
            a.size_bytes,
            &a.sha256[..16],
            a.path.display()
        );
    }
}
