//! Writes an engine store (and, with a compose file, `apps.json`,
//! `resin-data/`, `remove_me_to_reset`) into a directory, as the data
//! partition would hold them: `OUT/docker/...`, `OUT/apps.json`.
//! Needs root (device nodes, trusted.* xattrs, ownership).
//!
//! ```text
//! preload --platform linux/amd64 --out DIR [--compose FILE] [--seed S]
//!         [--app-name NAME] INPUT[=NAME]...
//! ```

use kiln_oci::{AppIds, AppsJson, Compose, ImageInput, Platform, Store, StoreOptions};
use kiln_tree::{PrefixSink, Timestamp, TreePath};
use std::collections::BTreeMap;
use std::path::PathBuf;

// The same directory materialiser the dockerd tests use.
#[path = "../tests/common/materialise.rs"]
mod materialise;
use materialise::DirSink;

fn main() -> anyhow::Result<()> {
    let mut platform = "linux/amd64".to_string();
    let mut out = None;
    let mut compose = None;
    let mut seed = "kiln".to_string();
    let mut app_name = "bob".to_string();
    let mut inputs = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--platform" => platform = val()?,
            "--out" => out = Some(PathBuf::from(val()?)),
            "--compose" => compose = Some(PathBuf::from(val()?)),
            "--seed" => seed = val()?,
            "--app-name" => app_name = val()?,
            _ => inputs.push(match a.split_once('=') {
                Some((p, n)) => ImageInput::new(p).named(n),
                None => ImageInput::new(a),
            }),
        }
    }
    let out = out.ok_or_else(|| anyhow::anyhow!("--out DIR is required"))?;
    anyhow::ensure!(
        !out.exists(),
        "{} exists; give a new directory",
        out.display()
    );
    let time = Timestamp::new(1_700_000_000, 0);
    let t0 = std::time::Instant::now();
    let store = Store::open(
        &inputs,
        StoreOptions {
            platform: Platform::parse(&platform)?,
            time,
        },
    )?;
    let apps = match &compose {
        Some(c) => {
            let compose = Compose::read(c)?;
            let ids = AppIds::derive(seed.as_bytes(), &app_name);
            Some(AppsJson::build(
                &compose,
                &store,
                &ids,
                &BTreeMap::new(),
                None,
            )?)
        }
        None => None,
    };
    let mut sink = DirSink::new(&out);
    let report = {
        let mut prefixed = PrefixSink::new(&mut sink, TreePath::parse(b"docker")?);
        store.feed(&mut prefixed)?
    };
    if let Some(a) = &apps {
        kiln_oci::feed_data_extras(&mut sink, &a.to_bytes(), time)?;
    }
    sink.finish()?;
    println!("{}", store.summary());
    println!(
        "{} entries, {} bytes of file content, {} layers written in {:.2}s",
        report.entries,
        report.content_bytes,
        report.layers.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
