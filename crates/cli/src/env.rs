//! What the libraries must not read themselves: the clock, the
//! environment, randomness and the profile/recipe directories; plus the
//! progress display and clap's value parsers for typed arguments.

use crate::exit;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// clap's parser for `--format`: the library gets a [`DiskFormat`], and a
/// wrong name is a usage error (exit 2) naming the value.
///
/// [`DiskFormat`]: kiln_pipeline::DiskFormat
pub fn disk_format(s: &str) -> Result<kiln_pipeline::DiskFormat, String> {
    kiln_pipeline::DiskFormat::parse(s).ok_or_else(|| {
        format!("--format {s:?}: use raw, qcow2, vmdk, vmdk-sparse, vhd, vhd-dynamic, vhdx or ova")
    })
}

fn repo_dir(kind: &str) -> Vec<PathBuf> {
    let env = match kind {
        "board-profiles" => std::env::var_os("KILN_PROFILES_DIR"),
        _ => std::env::var_os("KILN_RECIPES_DIR"),
    };
    let mut dirs: Vec<PathBuf> = env.map(PathBuf::from).into_iter().collect();
    dirs.push(PathBuf::from(kind));
    if let Ok(exe) = std::env::current_exe() {
        if let Some(prefix) = exe.parent().and_then(Path::parent) {
            dirs.push(prefix.join("share/kiln").join(kind));
            // A binary in the repository's target/<profile>/.
            if let Some(repo) = prefix.parent() {
                dirs.push(repo.join(kind));
            }
        }
    }
    dirs
}

/// Finds `name` (a path, or a name looked up in the profile/recipe dirs).
pub fn locate(name: &str, kind: &str) -> Result<PathBuf> {
    if name.contains('/') || name.ends_with(".toml") {
        return Ok(PathBuf::from(name));
    }
    for d in repo_dir(kind) {
        let p = d.join(format!("{name}.toml"));
        if p.is_file() {
            return Ok(p);
        }
    }
    let known = list_dir(kind)
        .into_iter()
        .map(|(n, _)| n)
        .collect::<Vec<_>>()
        .join(", ");
    Err(exit::input(anyhow::anyhow!(
        "no {} named {name:?} (known: {known})",
        kind.trim_end_matches('s').replace('-', " ")
    )))
}

pub fn list_dir(kind: &str) -> Vec<(String, PathBuf)> {
    for d in repo_dir(kind) {
        if let Ok(rd) = std::fs::read_dir(&d) {
            let mut v: Vec<(String, PathBuf)> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .filter_map(|p| Some((p.file_stem()?.to_string_lossy().into_owned(), p)))
                .collect();
            v.sort();
            if !v.is_empty() {
                return v;
            }
        }
    }
    Vec::new()
}

pub fn source_date_epoch(recipe_value: Option<i64>) -> Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => Ok(Some(v.trim().parse().map_err(|e| {
            exit::input(
                anyhow::Error::new(e).context(format!("SOURCE_DATE_EPOCH={v:?} is not an integer")),
            )
        })?)),
        Err(_) => Ok(recipe_value),
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub fn random_bytes() -> Result<Vec<u8>> {
    use std::io::Read;
    let mut b = vec![0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom for fresh identities")?;
    Ok(b)
}

/// `N` bytes from the operating system's random generator (key material).
pub fn random_array<const N: usize>() -> Result<[u8; N]> {
    use std::io::Read;
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom for a new key")?;
    Ok(b)
}
