//! `kiln mkfs ext4`: one filesystem from a directory or tar archive.

use crate::env::{now, random_bytes, source_date_epoch};
use crate::exit;
use anyhow::Result;
use kiln_pipeline::{MkfsRequest, MkfsSize, Seed};
use kiln_units::{ByteSize, Guid};
use std::path::PathBuf;

/// `kiln mkfs`'s filesystems.
#[derive(clap::Subcommand)]
pub enum Command {
    /// ext4 from a directory or tar archive.
    Ext4(Ext4Args),
}

/// Arguments of `kiln mkfs ext4`.
#[derive(clap::Args)]
pub struct Ext4Args {
    /// Directory or tar archive (plain, .gz, .xz, .zst).
    #[arg(long)]
    source: PathBuf,
    /// Filesystem size (e.g. 512MiB), or `min` for the smallest that fits plus --headroom.
    #[arg(long)]
    size: String,
    /// Free space to leave with --size min.
    #[arg(long, default_value = "0")]
    headroom: String,
    /// Volume label.
    #[arg(long, default_value = "")]
    label: String,
    /// Filesystem UUID (default: derived from the label and SOURCE_DATE_EPOCH, or random).
    #[arg(long)]
    uuid: Option<String>,
    /// Bytes per inode (mke2fs -i).
    #[arg(long)]
    inode_ratio: Option<u64>,
    /// Make every entry owned by root (for trees prepared by an unprivileged user).
    #[arg(long)]
    root_owner: bool,
    /// Write into an existing image at this byte offset.
    #[arg(long)]
    offset: Option<u64>,
    /// Output file.
    pub output: PathBuf,
}

impl Command {
    /// The file the command writes.
    pub fn output(&self) -> &PathBuf {
        match self {
            Self::Ext4(a) => &a.output,
        }
    }
}

/// Runs `kiln mkfs`.
pub fn run(c: Command, quiet: bool) -> Result<()> {
    let Command::Ext4(a) = c;
    let headroom: ByteSize = a
        .headroom
        .parse()
        .map_err(|e| exit::input(anyhow::Error::new(e).context("--headroom")))?;
    let size = if a.size == "min" {
        MkfsSize::Min {
            headroom: headroom.bytes(),
        }
    } else {
        MkfsSize::Bytes(
            a.size
                .parse::<ByteSize>()
                .map_err(|e| exit::input(anyhow::Error::new(e).context("--size")))?
                .bytes(),
        )
    };
    let sde = source_date_epoch(None)?;
    let seed = match sde {
        Some(t) => Seed::new(format!("mkfs:{}:{t}", a.label)),
        None => Seed::new(random_bytes()?),
    };
    let uuid = match a.uuid {
        Some(u) => u
            .parse::<Guid>()
            .map_err(|e| exit::input(anyhow::Error::new(e).context("--uuid")))?
            .to_rfc_bytes(),
        None => seed.uuid("uuid").to_rfc_bytes(),
    };
    let req = MkfsRequest {
        source: a.source,
        size,
        label: a.label,
        uuid,
        hash_seed: seed.bytes16("hash"),
        inode_ratio: a.inode_ratio,
        timestamp: sde.unwrap_or_else(now),
        force_owner: a.root_owner.then_some((0, 0)),
        output: a.output,
        offset: a.offset,
    };
    let r = kiln_pipeline::mkfs_ext4(&req)?;
    if !quiet {
        eprintln!(
            "kiln: ext4 {} bytes, {} inodes and {} blocks used",
            r.size_bytes, r.inodes_used, r.blocks_used
        );
    }
    Ok(())
}
