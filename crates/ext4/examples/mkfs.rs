//! `mkfs` — a rootless, tar-aware `mke2fs -d` replacement built on
//! kiln-ext4 (used by `bench/ext4.sh` and the tests).
//!
//! ```text
//! mkfs --source DIR|TAR --size BYTES|min [--headroom BYTES] [--label L]
//!      [--uuid HEX32] [--hash-seed HEX32] [--inode-ratio N] [--time SECS] OUT
//! ```

use kiln_ext4::{Ext4Estimator, Ext4Options, Ext4Writer};
use kiln_tree::dir::DirSource;
use kiln_tree::tar_source::TarSource;
use kiln_tree::{SourceOptions, Timestamp, TreeSink};
use std::path::PathBuf;

fn hex16(s: &str) -> Result<[u8; 16], String> {
    let h: String = s.chars().filter(|c| *c != '-').collect();
    if h.len() != 32 {
        return Err(format!("{s}: need 32 hex digits"));
    }
    let mut o = [0u8; 16];
    for (i, b) in o.iter_mut().enumerate() {
        *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(o)
}

fn feed<S: TreeSink>(src: &PathBuf, sink: &mut S) -> Result<(), String>
where
    S::Error: std::fmt::Display,
{
    let opts = SourceOptions::default();
    let r = if src.is_dir() {
        DirSource::new(src, opts).feed(sink)
    } else {
        TarSource::new(src, opts).feed(sink)
    };
    r.map_err(|e| format!("{e}: {}", source_chain(&e)))
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = String::new();
    let mut c = e.source();
    while let Some(x) = c {
        s.push_str(&format!("{x}; "));
        c = x.source();
    }
    s
}

fn main() {
    if let Err(e) = run() {
        eprintln!("mkfs: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut source = None;
    let mut size = None;
    let mut headroom = 0u64;
    let mut out = None;
    let mut opts = Ext4Options::new(0);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--source" => source = Some(PathBuf::from(val()?)),
            "--size" => size = Some(val()?),
            "--headroom" => headroom = val()?.parse().map_err(|e| format!("{e}"))?,
            "--label" => opts = opts.label(&val()?),
            "--uuid" => opts = opts.uuid(hex16(&val()?)?),
            "--hash-seed" => opts = opts.hash_seed(hex16(&val()?)?),
            "--inode-ratio" => opts = opts.inode_ratio(val()?.parse().map_err(|e| format!("{e}"))?),
            "--time" => {
                let t = Timestamp::new(val()?.parse().map_err(|e| format!("{e}"))?, 0);
                opts = opts.timestamp(t);
            }
            _ if out.is_none() && !a.starts_with("--") => out = Some(PathBuf::from(a)),
            _ => return Err(format!("unexpected argument {a}")),
        }
    }
    let source = source.ok_or("--source is required")?;
    let out = out.ok_or("OUT is required")?;
    let size = size.ok_or("--size is required")?;
    let size = if size == "min" {
        let mut est = Ext4Estimator::new();
        feed(&source, &mut est)?;
        est.min_size_bytes(&opts, headroom)
            .map_err(|e| e.to_string())?
    } else {
        size.parse::<u64>().map_err(|e| format!("--size: {e}"))?
    };
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&out)
        .map_err(|e| format!("{}: {e}", out.display()))?;
    f.set_len(size).map_err(|e| e.to_string())?;
    let mut w = Ext4Writer::new(f, opts.size(size)).map_err(|e| e.to_string())?;
    feed(&source, &mut w)?;
    let r = w.finish().map_err(|e| e.to_string())?;
    eprintln!(
        "mkfs: {} bytes, {} files, {} of {} blocks free",
        r.size_bytes, r.files, r.free_blocks, r.blocks_count
    );
    Ok(())
}
