//! `kiln keygen -o release.key`: a new ed25519 key pair in minisign's
//! format (`release.key`, `release.pub`), the secret key encrypted with
//! a passphrase (scrypt, minisign's own parameters) unless
//! `--unencrypted`. `minisign -S -s release.key` signs with it and
//! `minisign -V -p release.pub` verifies kiln's signatures.

use crate::env::random_array;
use crate::exit;
use anyhow::Result;
use kiln_sign::{KdfLimits, SecretKey};
use std::path::PathBuf;

/// Arguments of `kiln keygen`.
#[derive(clap::Args)]
pub struct Args {
    /// The secret key file to write; the public key goes beside it as NAME.pub (NAME without .key).
    #[arg(long, short)]
    pub output: PathBuf,
    /// Store the secret key without a passphrase (for build machines whose key store protects it).
    #[arg(long)]
    unencrypted: bool,
    /// Read the passphrase from this file (first line) instead of KILN_PASSPHRASE or a prompt.
    #[arg(long, value_name = "FILE", conflicts_with = "unencrypted")]
    passphrase_file: Option<PathBuf>,
}

/// The public key's path for the secret key path `secret`.
pub fn public_path(secret: &std::path::Path) -> PathBuf {
    let name = secret
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".key").unwrap_or(&name);
    secret.with_file_name(format!("{stem}.pub"))
}

/// Runs `kiln keygen`.
pub fn run(a: Args, quiet: bool) -> Result<()> {
    let public = public_path(&a.output);
    if a.output.file_name().is_none() || public == a.output {
        return Err(exit::input(anyhow::anyhow!(
            "{}: name the secret key file (e.g. release.key)",
            a.output.display()
        )));
    }
    let key = SecretKey::generate(&random_array()?);
    let pass = if a.unencrypted {
        None
    } else {
        Some(crate::sign::passphrase(
            a.passphrase_file.as_deref(),
            &a.output,
            true,
        )?)
    };
    if pass.as_ref().is_some_and(|p| p.is_empty()) {
        return Err(exit::input(anyhow::anyhow!(
            "{}: empty passphrase (use --unencrypted for a key without one)",
            a.output.display()
        )));
    }
    let encrypt = pass.as_ref().map(|p| (p.as_bytes(), KdfLimits::SENSITIVE));
    let secret_text = key
        .to_text(encrypt)
        .map_err(|source| kiln_pipeline::Error::Sign {
            path: a.output.clone(),
            source,
        })?;
    let public_text = key.public().to_text();
    kiln_pipeline::write_key_pair(
        (&a.output, secret_text.as_bytes()),
        (&public, public_text.as_bytes()),
    )?;
    if !quiet {
        eprintln!(
            "kiln: wrote {} ({}) and {}; key id {}",
            a.output.display(),
            if a.unencrypted {
                "unencrypted"
            } else {
                "encrypted"
            },
            public.display(),
            key.id()
        );
    }
    Ok(())
}
