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
use kiln_tree::{Content, Entry, EntryKind, Metadata, PrefixSink, Timestamp, TreePath, TreeSink};
use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, CWD};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Materialises entries under a directory; directory metadata last.
struct DirSink {
    root: PathBuf,
    dirs: BTreeMap<TreePath, Metadata>,
}

fn ts(t: Timestamp) -> Timespec {
    Timespec {
        tv_sec: t.secs,
        tv_nsec: t.nanos.into(),
    }
}

impl DirSink {
    fn host(&self, p: &TreePath) -> PathBuf {
        let mut h = self.root.clone();
        for c in p.components() {
            h.push(std::ffi::OsStr::from_bytes(c));
        }
        h
    }
    fn meta(path: &Path, m: &Metadata, link: bool) -> std::io::Result<()> {
        std::os::unix::fs::lchown(path, Some(m.uid), Some(m.gid))?;
        if !link {
            rustix::fs::chmod(path, Mode::from_raw_mode(m.mode))?;
        }
        for x in &m.xattrs {
            xattr::set(path, std::ffi::OsStr::from_bytes(&x.name), &x.value)?;
        }
        let t = Timestamps {
            last_access: ts(m.atime),
            last_modification: ts(m.mtime),
        };
        rustix::fs::utimensat(CWD, path, &t, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }
    fn finish(self) -> std::io::Result<()> {
        for (p, m) in self.dirs.iter().rev() {
            Self::meta(&self.host(p), m, false)?;
        }
        Ok(())
    }
}

impl TreeSink for DirSink {
    type Error = std::io::Error;
    fn add(&mut self, e: &Entry, content: Content<'_>) -> Result<(), Self::Error> {
        let p = self.host(&e.path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let dev = |ft, maj, min| {
            rustix::fs::mknodat(
                CWD,
                &p,
                ft,
                Mode::from_raw_mode(e.meta.mode),
                rustix::fs::makedev(maj, min),
            )
        };
        match &e.kind {
            EntryKind::Dir => {
                std::fs::create_dir_all(&p)?;
                self.dirs.insert(e.path.clone(), e.meta.clone());
                return Ok(());
            }
            EntryKind::File => {
                let mut f = std::fs::File::create(&p)?;
                match content {
                    Content::Stream { reader, .. } => {
                        std::io::copy(reader, &mut f)?;
                    }
                    Content::Bytes { data } => f.write_all(data)?,
                    Content::Preallocated { size, head } => {
                        f.write_all(head)?;
                        f.set_len(size)?;
                    }
                    Content::None => {}
                }
            }
            EntryKind::Symlink { target } => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &p)?;
                return Self::meta(&p, &e.meta, true);
            }
            EntryKind::Hardlink { target } => return std::fs::hard_link(self.host(target), &p),
            EntryKind::CharDev { major, minor } => dev(FileType::CharacterDevice, *major, *minor)?,
            EntryKind::BlockDev { major, minor } => dev(FileType::BlockDevice, *major, *minor)?,
            EntryKind::Fifo => dev(FileType::Fifo, 0, 0)?,
            EntryKind::Socket => return Ok(()),
        }
        Self::meta(&p, &e.meta, false)
    }
}

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
    let mut sink = DirSink {
        root: out.clone(),
        dirs: BTreeMap::new(),
    };
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
