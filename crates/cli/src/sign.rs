//! `kiln sign DIR --key K`: signs an existing output directory (its
//! `SHA256SUMS`, after checking every listed file still matches), and
//! the secret-key loading `kiln build --sign` and `kiln stamp --sign`
//! share: the passphrase of an encrypted key comes from
//! `--passphrase-file`, else `KILN_PASSPHRASE`, else a prompt on the
//! terminal (no echo). Neither the key nor the passphrase is ever
//! printed.

use crate::exit;
use anyhow::{Context, Result};
use kiln_sign::SecretKey;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Arguments of `kiln sign`.
#[derive(clap::Args)]
pub struct Args {
    /// The output directory (holding SHA256SUMS).
    dir: PathBuf,
    /// The secret key (from `kiln keygen` or `minisign -G`).
    #[arg(long, required_unless_present = "sign_x509")]
    key: Option<PathBuf>,
    /// Also (or only) write SHA256SUMS.p7s, a detached CMS signature with this certificate and its ECDSA P-256 PKCS #8 key (PEM files), for `openssl cms -verify`.
    #[arg(long, value_name = "CERT,KEY")]
    sign_x509: Option<String>,
    /// Read the key's passphrase from this file (first line) instead of KILN_PASSPHRASE or a prompt.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

impl Args {
    /// The directory being signed.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Runs `kiln sign`.
pub fn run(a: Args, quiet: bool) -> Result<()> {
    let key = a
        .key
        .as_deref()
        .map(|k| load_secret(k, a.passphrase_file.as_deref()))
        .transpose()?;
    let x509 = a.sign_x509.as_deref().map(load_x509).transpose()?;
    let report = kiln_pipeline::verify(&a.dir, None)?;
    if let Some(bad) = report
        .findings
        .iter()
        .find(|f| f.level == kiln_pipeline::Level::Fail)
    {
        return Err(exit::input(anyhow::anyhow!(
            "{}: {}: {} (not signing)",
            a.dir.display(),
            bad.file,
            bad.message
        )));
    }
    if let Some(key) = &key {
        let comment = dir_comment(&a.dir);
        let path = kiln_pipeline::sign_dir(&a.dir, key, &comment)?;
        if !quiet {
            eprintln!("kiln: signed {} with key {}", path.display(), key.id());
        }
    }
    if let Some(x509) = &x509 {
        let path = kiln_pipeline::sign_dir_x509(&a.dir, x509)?;
        if !quiet {
            eprintln!("kiln: wrote {} (CMS, X.509)", path.display());
        }
    }
    Ok(())
}

/// Loads `CERT,KEY` (PEM certificate, PEM PKCS #8 ECDSA P-256 key).
fn load_x509(arg: &str) -> Result<kiln_sign::X509Signer> {
    let Some((cert, key)) = arg.split_once(',') else {
        return Err(exit::input(anyhow::anyhow!(
            "--sign-x509 {arg:?}: give CERT,KEY (two PEM files)"
        )));
    };
    let (cert, key) = (Path::new(cert), Path::new(key));
    let cert_pem = std::fs::read(cert)
        .with_context(|| format!("{}: cannot read the certificate", cert.display()))
        .map_err(exit::input)?;
    let key_pem = Zeroizing::new(
        std::fs::read_to_string(key)
            .with_context(|| format!("{}: cannot read the private key", key.display()))
            .map_err(exit::input)?,
    );
    Ok(
        kiln_sign::X509Signer::from_pem(&cert_pem, &key_pem).map_err(|source| {
            kiln_pipeline::Error::Sign {
                path: key.to_path_buf(),
                source,
            }
        })?,
    )
}

/// The trusted comment for a directory signed after the fact: the recipe
/// and image of its build manifest when it holds exactly one.
fn dir_comment(dir: &Path) -> String {
    let manifests: Vec<kiln_artifact::manifest::Manifest> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".manifest.json"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| kiln_artifact::manifest::Manifest::from_json(&t).ok())
        .collect();
    match manifests.as_slice() {
        [m] => kiln_pipeline::trusted_comment(Some(&m.recipe.name), Some(&m.image.sha256.to_hex())),
        _ => kiln_pipeline::trusted_comment(None, None),
    }
}

/// Reads and, when encrypted, decrypts the secret key at `path`.
pub fn load_secret(path: &Path, passphrase_file: Option<&Path>) -> Result<SecretKey> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the secret key", path.display()))
            .map_err(exit::input)?,
    );
    let sign_err = |source| kiln_pipeline::Error::Sign {
        path: path.to_path_buf(),
        source,
    };
    let pass = if SecretKey::is_encrypted(&text).map_err(sign_err)? {
        Some(passphrase(passphrase_file, path, false)?)
    } else {
        None
    };
    Ok(SecretKey::parse(&text, pass.as_ref().map(|p| p.as_bytes())).map_err(sign_err)?)
}

/// Reads and decrypts the secret key a recipe's `[sign]` names: its text
/// from a file or an environment variable, the passphrase of an encrypted
/// one from `[sign] passphrase` (else `KILN_PASSPHRASE` or a prompt).
/// Errors name the recipe key and line, never the key's text.
pub fn load_recipe_secret(
    spec: &kiln_recipe::SignSpec,
    env: kiln_recipe::EnvLookup<'_>,
) -> Result<SecretKey> {
    let text = spec.key.read(env)?;
    let label = match &spec.key.source {
        kiln_recipe::SecretSource::File(p) => p.clone(),
        kiln_recipe::SecretSource::Env(v) => PathBuf::from(format!("environment variable {v}")),
    };
    let sign_err = |source| {
        exit::input(
            anyhow::Error::new(kiln_pipeline::Error::Sign {
                path: label.clone(),
                source,
            })
            .context(format!("{}: `{}`", spec.key.at, spec.key.key)),
        )
    };
    let pass = if SecretKey::is_encrypted(&text).map_err(sign_err)? {
        Some(match &spec.passphrase {
            Some(p) => p.read(env)?,
            None => passphrase(None, &label, false)?,
        })
    } else {
        None
    };
    SecretKey::parse(&text, pass.as_ref().map(|p| p.as_bytes())).map_err(sign_err)
}

/// The passphrase: from `file` (its first line), `KILN_PASSPHRASE`, or
/// the terminal (twice when `confirm`).
pub fn passphrase(file: Option<&Path>, key: &Path, confirm: bool) -> Result<Zeroizing<String>> {
    if let Some(f) = file {
        let text = Zeroizing::new(
            std::fs::read_to_string(f)
                .with_context(|| format!("{}: cannot read the passphrase file", f.display()))
                .map_err(exit::input)?,
        );
        return Ok(Zeroizing::new(
            text.lines().next().unwrap_or_default().to_string(),
        ));
    }
    if let Ok(p) = std::env::var("KILN_PASSPHRASE") {
        return Ok(Zeroizing::new(p));
    }
    let p = prompt(&format!("Passphrase for {}: ", key.display())).map_err(exit::input)?;
    if confirm && *prompt("Passphrase again: ").map_err(exit::input)? != *p {
        return Err(exit::input(anyhow::anyhow!(
            "{}: the passphrases differ",
            key.display()
        )));
    }
    Ok(p)
}

/// Asks on the controlling terminal with echo off.
fn prompt(question: &str) -> Result<Zeroizing<String>> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("the key is encrypted: give its passphrase with --passphrase-file or KILN_PASSPHRASE (no terminal to ask on)")?;
    let saved = tcgetattr(&tty).context("reading the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&tty, OptionalActions::Flush, &quiet).context("turning off the terminal's echo")?;
    let mut line = Zeroizing::new(String::new());
    let read = (&tty)
        .write_all(question.as_bytes())
        .and_then(|()| std::io::BufReader::new(&tty).read_line(&mut line));
    // Restore echo whatever happened.
    tcsetattr(&tty, OptionalActions::Flush, &saved).ok();
    (&tty).write_all(b"\n").ok();
    read.context("reading the passphrase")?;
    Ok(Zeroizing::new(
        line.trim_end_matches(['\n', '\r']).to_string(),
    ))
}
