//! The same host directory through `mke2fs -t ext4 -d` and through kiln
//! (via `DirSource`): listings, metadata, xattrs and contents must agree,
//! as seen by debugfs and ext4-view.

mod common;
use common::*;
use kiln_ext4::{Ext4Options, Ext4Writer};
use kiln_tree::dir::DirSource;
use kiln_tree::SourceOptions;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-ec").arg(cmd).status().unwrap();
    assert!(st.success(), "{cmd}");
}

fn build_source(root: &Path) {
    let r = root.display();
    tool("setfattr", "attr");
    sh(&format!(
        r#"cd {r}
        mkdir -p etc usr/bin var/empty big 'sp ace' ünï
        printf 'kiln\n' > etc/hostname
        head -c 3000000 /dev/urandom > usr/bin/blob
        : > etc/empty
        ln -s hostname etc/fast
        ln -s "$(printf 'x%.0s' $(seq 1 120))" etc/slow
        ln etc/hostname etc/hard
        mknod usr/null c 1 3
        mknod usr/sda b 8 0
        mknod usr/wh c 0 0
        mkfifo var/fifo
        python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.bind("var/sock")'
        truncate -s 20M var/sparse && printf 'tail' >> var/sparse
        printf 'ü' > ünï/fïlé
        for i in $(seq 1 3000); do : > big/entry-$i; done
        chmod 4755 usr/bin/blob; chmod 1777 var/empty; chmod 2750 etc
        chown 1000:1001 etc/hostname; chown 65534:65534 'sp ace'
        setfattr -n user.comment -v hello etc/hostname
        setfattr -n user.big -v "$(head -c 1500 /dev/zero | tr '\0' b)" usr/bin/blob
        setfattr -n trusted.overlay.opaque -v y var/empty
        find . -exec touch -h -d '2024-02-03 04:05:06.123456789' {{}} +
        "#
    ));
}

/// Per path: a normalised `debugfs stat` (type, mode, owner, size, links,
/// a/m/ctime, device, fast link target, xattrs).
fn inventory(img: &Path, paths: &[String]) -> BTreeMap<String, String> {
    let cmds: String = paths.iter().map(|p| format!("stat \"{p}\"\n")).collect();
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), cmds).unwrap();
    let out = Command::new(tool("debugfs", "e2fsprogs"))
        .arg("-f")
        .arg(f.path())
        .arg(img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut m = BTreeMap::new();
    let mut cur: Option<(String, Vec<String>)> = None;
    let mut skip_block_list = false;
    for line in text.lines() {
        if let Some(p) = line.strip_prefix("debugfs: stat \"") {
            if let Some((k, v)) = cur.take() {
                m.insert(k, v.join("\n"));
            }
            cur = Some((p.trim_end_matches('"').to_string(), Vec::new()));
            skip_block_list = false;
            continue;
        }
        let Some((_, v)) = cur.as_mut() else { continue };
        if skip_block_list {
            continue;
        }
        let l = line.trim();
        if l.starts_with("EXTENTS:") || l.starts_with("BLOCKS:") {
            skip_block_list = true;
            continue;
        }
        if let Some(rest) = l.strip_prefix("Inode:") {
            // "12   Type: regular    Mode:  0644   Flags: 0x80000"
            let t = rest.split("Type:").nth(1).unwrap_or("");
            let t = t.split("Flags:").next().unwrap_or("");
            v.push(t.split_whitespace().collect::<Vec<_>>().join(" "));
        } else if l.starts_with("User:") {
            let mut w: Vec<&str> = l.split_whitespace().collect();
            if v.last().is_some_and(|t| t.starts_with("directory")) {
                // Directory sizes depend on how names are packed.
                w.truncate(w.len().saturating_sub(2));
            }
            v.push(w.join(" "));
        } else if l.starts_with("Links:") {
            v.push(l.split_whitespace().take(2).collect::<Vec<_>>().join(" "));
        } else if l.starts_with("ctime:") || l.starts_with("mtime:") {
            // mke2fs 1.47.0 -d drops nanoseconds; atime changes as the
            // source is read, so it is not compared (kinds.rs checks
            // nanosecond times exactly).
            v.push(l.split(':').take(2).collect::<Vec<_>>().join(":"));
        } else if l.starts_with("Device major")
            || l.starts_with("Fast link dest")
            || l.starts_with("Extended attributes:")
            || line.starts_with("  ") && l.contains(" = ")
        {
            v.push(l.to_string());
        }
    }
    if let Some((k, v)) = cur.take() {
        m.insert(k, v.join("\n"));
    }
    m
}

fn walk(root: &Path) -> Vec<String> {
    let mut out = vec!["/".to_string()];
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(root.join(&rel))
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let p = rel.join(e.file_name());
            out.push(format!("/{}", p.display()));
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn same_as_mke2fs_d() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    build_source(&src);
    let size: u64 = 256 << 20;
    // Reference.
    let reference = dir.path().join("ref.img");
    let out = Command::new(tool("mke2fs", "e2fsprogs"))
        .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-i", "16384", "-d"])
        .arg(&src)
        .arg(&reference)
        .arg(format!("{}k", size / 1024))
        .env("E2FSPROGS_FAKE_TIME", "1700000000")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mke2fs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    e2fsck_clean(&reference);
    // kiln.
    let ours = dir.path().join("kiln.img");
    let f = std::fs::File::create(&ours).unwrap();
    f.set_len(size).unwrap();
    let mut w = Ext4Writer::new(f, Ext4Options::new(size)).unwrap();
    DirSource::new(&src, SourceOptions::default())
        .feed(&mut w)
        .unwrap();
    w.finish().unwrap();
    e2fsck_clean(&ours);

    let paths = walk(&src);
    assert!(paths.len() > 3000);
    let a = inventory(&reference, &paths);
    let b = inventory(&ours, &paths);
    assert_eq!(
        a.len(),
        paths.len(),
        "debugfs missed paths in the reference"
    );
    for p in &paths {
        let (mut x, mut y) = (a.get(p).cloned().unwrap(), b.get(p).cloned().unwrap());
        if p == "/" {
            // mke2fs -d gives the root its own time, not the source's.
            let head = |s: &str| s.lines().take(3).collect::<Vec<_>>().join("\n");
            x = head(&x);
            y = head(&y);
        }
        assert_eq!(x, y, "{p} differs (left: mke2fs -d, right: kiln)");
    }
    // Listings of every directory (names, types, modes) agree too.
    let fa = ext4_view::Ext4::load_from_path(&reference).unwrap();
    let fb = ext4_view::Ext4::load_from_path(&ours).unwrap();
    for p in &paths {
        let ma = fa.symlink_metadata(p.as_str()).unwrap();
        let mb = fb.symlink_metadata(p.as_str()).unwrap();
        assert_eq!(ma.file_type(), mb.file_type(), "{p}");
        if ma.file_type().is_dir() {
            let list = |fs: &ext4_view::Ext4| {
                let mut v: Vec<String> = fs
                    .read_dir(p.as_str())
                    .unwrap()
                    .map(|e| e.unwrap().file_name().display().to_string())
                    .collect();
                v.sort();
                v
            };
            assert_eq!(list(&fa), list(&fb), "{p}");
        } else if ma.file_type().is_regular_file() {
            assert!(
                fa.read(p.as_str()).unwrap() == fb.read(p.as_str()).unwrap(),
                "{p}: content"
            );
        } else if ma.file_type().is_symlink() {
            assert_eq!(
                fa.read_link(p.as_str()).unwrap(),
                fb.read_link(p.as_str()).unwrap(),
                "{p}"
            );
        }
    }
}
