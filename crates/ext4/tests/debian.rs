//! A real Debian root filesystem (mmdebstrap minbase + packages, as a
//! tar, >= 20,000 entries) through the writer straight from the tar:
//! e2fsck clean and every path equal to the tar (kind, mode, owner,
//! mtime, content, link target, xattrs).
//!
//! `#[ignore]`d: building the tar with mmdebstrap takes minutes on first
//! run (it is cached under `.cache/ext4/`). Run with
//! `cargo test -p kiln-ext4 --test debian -- --ignored`.

mod common;
use common::*;
use kiln_ext4::{Ext4Estimator, Ext4Options, Ext4Writer};
use kiln_tree::tar_source::TarSource;
use kiln_tree::{Content, Entry, EntryKind, SourceOptions, TreeSink};
use std::collections::BTreeMap;
use std::hash::Hasher;
use std::path::PathBuf;
use std::process::Command;

/// The cached Debian rootfs tar, built with mmdebstrap when missing.
pub fn debian_tar() -> PathBuf {
    let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/ext4");
    let tar = cache.join("debian-rootfs.tar");
    if tar.exists() {
        return tar;
    }
    std::fs::create_dir_all(&cache).unwrap();
    let tmp = cache.join("debian-rootfs.tar.tmp");
    let st = Command::new(tool("mmdebstrap", "mmdebstrap"))
        .args([
            "--variant=minbase",
            "--format=tar",
            "--include=systemd,udev,perl,python3,python3-pip,iproute2,openssh-server,curl,vim-tiny,less,kmod,procps,git,gcc,g++,make,locales,manpages,bash-completion,python3-numpy",
            "bookworm",
        ])
        .arg(&tmp)
        .arg("http://deb.debian.org/debian")
        .status()
        .unwrap();
    assert!(st.success(), "mmdebstrap failed");
    std::fs::rename(&tmp, &tar).unwrap();
    tar
}

#[derive(Default)]
struct Record(BTreeMap<Vec<u8>, (Entry, u64, u64)>);

impl TreeSink for Record {
    type Error = std::io::Error;
    fn add(&mut self, e: &Entry, c: Content<'_>) -> Result<(), std::io::Error> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let size = c.size();
        if let Content::Stream { reader, .. } = c {
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.write(&buf[..n]);
            }
        }
        let e = match &e.kind {
            EntryKind::Hardlink { target } => {
                let mut t = self.0.get(&target.to_bytes()).unwrap().clone();
                t.0.path = e.path.clone();
                self.0.insert(e.path.to_bytes(), t);
                return Ok(());
            }
            _ => e.clone(),
        };
        self.0.insert(e.path.to_bytes(), (e, size, h.finish()));
        Ok(())
    }
}

#[test]
#[ignore = "needs mmdebstrap and network on first run (cached afterwards)"]
fn debian_rootfs_from_tar() {
    let tar = debian_tar();
    let src = TarSource::new(&tar, SourceOptions::default());
    let mut rec = Record::default();
    src.feed(&mut rec).unwrap();
    assert!(rec.0.len() >= 20_000, "only {} entries", rec.0.len());
    let mut est = Ext4Estimator::new();
    src.feed(&mut est).unwrap();
    let opts = Ext4Options::new(0).uuid([0xDE; 16]).label("debian");
    let size = est.min_size_bytes(&opts, 64 << 20).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("debian.img");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(size).unwrap();
    let mut w = Ext4Writer::new(f, opts.size(size)).unwrap();
    src.feed(&mut w).unwrap();
    let report = w.finish().unwrap();
    assert!(report.free_blocks * 4096 >= 64 << 20);
    e2fsck_clean(&img);

    let fs = ext4_view::Ext4::load_from_path(&img).unwrap();
    let mut with_xattrs = 0;
    for (key, (e, size, hash)) in &rec.0 {
        if key.is_empty() {
            continue;
        }
        let p = format!("/{}", String::from_utf8_lossy(key));
        let md = fs
            .symlink_metadata(p.as_str())
            .unwrap_or_else(|x| panic!("{p}: {x}"));
        assert_eq!(u32::from(md.mode()) & 0o7777, e.meta.mode, "{p}");
        assert_eq!((md.uid(), md.gid()), (e.meta.uid, e.meta.gid), "{p}");
        assert_eq!(md.modified().seconds(), e.meta.mtime.secs, "{p}");
        match &e.kind {
            EntryKind::File => {
                assert_eq!(md.len(), *size, "{p}");
                let mut h = std::collections::hash_map::DefaultHasher::new();
                h.write(&fs.read(p.as_str()).unwrap());
                assert_eq!(h.finish(), *hash, "{p}: content");
            }
            EntryKind::Symlink { target } => {
                assert_eq!(
                    fs.read_link(p.as_str()).unwrap().as_ref(),
                    target.as_slice(),
                    "{p}"
                );
            }
            EntryKind::Dir => assert!(md.is_dir(), "{p}"),
            _ => {}
        }
        if !e.meta.xattrs.is_empty() && with_xattrs < 20 {
            with_xattrs += 1;
            for x in &e.meta.xattrs {
                let name = String::from_utf8_lossy(&x.name).into_owned();
                let want = if name.starts_with("system.posix_acl_") {
                    debugfs_acl_form(&x.value)
                } else {
                    x.value.clone()
                };
                assert_eq!(
                    debugfs_xattr(&img, &p[1..], &name),
                    Some(want),
                    "{p} {name}"
                );
            }
        }
    }
}
