//! `kiln verify DIR|IMAGE --key release.pub`: checks an output directory
//! (or one image and its files) offline: the signature of `SHA256SUMS`,
//! every listed file's sha256, the build manifests' artifact digests and
//! the bmap ranges of raw and compressed raw images
//! (`kiln_pipeline::verify`). Prints one line per finding; exits 0 only
//! when every check holds. `kiln flash --key` runs the same checks first.

use crate::exit;
use anyhow::{Context, Result};
use kiln_pipeline::{Level, VerifyReport};
use kiln_sign::PublicKey;
use std::path::{Path, PathBuf};

/// Arguments of `kiln verify`.
#[derive(clap::Args)]
pub struct Args {
    /// An output directory, or an image file in one.
    target: PathBuf,
    /// The public key (release.pub from `kiln keygen`, or a minisign public key).
    #[arg(long)]
    key: PathBuf,
    /// Print the findings as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Reads the public key at `path`.
pub fn load_public(path: &Path) -> Result<PublicKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the public key", path.display()))
        .map_err(exit::input)?;
    Ok(
        PublicKey::parse(&text).map_err(|source| kiln_pipeline::Error::Sign {
            path: path.to_path_buf(),
            source,
        })?,
    )
}

/// Runs `kiln verify`.
pub fn run(a: Args, quiet: bool) -> Result<()> {
    let key = load_public(&a.key)?;
    let report = kiln_pipeline::verify(&a.target, Some(&key))?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for f in &report.findings {
            let tag = match f.level {
                Level::Ok => "ok  ",
                Level::Note => "note",
                Level::Fail => "FAIL",
            };
            outln!("{tag} {}: {}", f.file, f.message);
        }
    }
    conclude(&a.target, &report, quiet)
}

/// Ok when every check held, else the one-line error naming the first
/// failing file (exit 2).
pub fn conclude(target: &Path, report: &VerifyReport, quiet: bool) -> Result<()> {
    let fails: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.level == Level::Fail)
        .collect();
    match fails.first() {
        None => {
            if !quiet {
                eprintln!("kiln: {}: verified", target.display());
            }
            Ok(())
        }
        Some(first) => Err(exit::input(anyhow::anyhow!(
            "{}: verification failed ({} problem{}): {}: {}",
            target.display(),
            fails.len(),
            if fails.len() == 1 { "" } else { "s" },
            first.file,
            first.message
        ))),
    }
}

/// `kiln flash --key`: the image and its files verified, and a `--bmap`
/// given in place of the image's own checked against the signed list,
/// before the target is opened; any failure refuses the flash (exit 2).
pub fn before_flash(image: &Path, key: &Path, bmap: Option<&Path>, quiet: bool) -> Result<()> {
    let refusing = "refusing to flash; the target was not touched";
    let key = load_public(key)?;
    let report = kiln_pipeline::verify(image, Some(&key))?;
    conclude(image, &report, quiet).context(refusing)?;
    if let Some(b) = bmap {
        kiln_pipeline::check_listed_bmap(image, b).context(refusing)?;
    }
    Ok(())
}
