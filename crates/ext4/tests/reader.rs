//! `Ext4Reader`: existing filesystems made by `mke2fs -d` (ext4 with 4 KiB
//! and 1 KiB blocks, block-mapped ext3) and by kiln's own writer are read
//! as a tree, written again with `Ext4Writer`, checked by `e2fsck -fn`, and
//! compared entry by entry through the kernel (read-only loop mounts walked
//! with `DirSource`) and against the source directory.

mod common;
use common::*;
use kiln_ext4::{Error, Ext4Options, Ext4Reader, Ext4Writer, NodeKind, Visit};
use kiln_tree::dir::DirSource;
use kiln_tree::{Content, Entry, EntryKind, Metadata, SourceOptions, TreePath, TreeSink};
use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One recorded entry: path, kind, metadata, content length and hash.
type Rec = (String, EntryKind, Metadata, u64, u64);

#[derive(Default)]
struct Recorder(Vec<Rec>);
impl TreeSink for Recorder {
    type Error = std::io::Error;
    fn add(&mut self, e: &Entry, c: Content<'_>) -> Result<(), Self::Error> {
        let mut h = DefaultHasher::new();
        let mut n = 0u64;
        match c {
            Content::Stream { reader, size } => {
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let k = reader.read(&mut buf)?;
                    if k == 0 {
                        break;
                    }
                    h.write(&buf[..k]);
                    n += k as u64;
                }
                assert_eq!(n, size, "{}", e.path);
            }
            Content::Bytes { data } => {
                h.write(data);
                n = data.len() as u64;
            }
            _ => {}
        }
        self.0.push((
            e.path.to_string(),
            e.kind.clone(),
            e.meta.clone(),
            n,
            h.finish(),
        ));
        Ok(())
    }
}

fn rec_reader(img: &Path) -> Vec<Rec> {
    let f = std::fs::File::open(img).unwrap();
    let fs = Ext4Reader::open(f).unwrap();
    let mut r = Recorder::default();
    fs.feed(&mut r, |_, _| Visit::Keep).unwrap();
    r.0
}

fn rec_dir(dir: &Path) -> Vec<Rec> {
    let mut r = Recorder::default();
    DirSource::new(dir, SourceOptions::default())
        .feed(&mut r)
        .unwrap();
    r.0
}

/// Drops what differs legitimately between two views: atime/ctime
/// (the kernel updates them), crtime (DirSource reports mtime), the
/// root's times, and sub-second mtimes when `secs_only`.
fn normalise(v: &[Rec], secs_only: bool) -> Vec<Rec> {
    v.iter()
        .map(|(p, k, m, n, h)| {
            let mut m = m.clone();
            m.atime = Default::default();
            m.ctime = Default::default();
            m.crtime = Default::default();
            if secs_only {
                m.mtime.nanos = 0;
            }
            if p == "/" || p == "/lost+found" {
                m.mtime = Default::default();
            }
            // Directory sizes are not content.
            (p.clone(), k.clone(), m, *n, *h)
        })
        .collect()
}

fn assert_same(a: &[Rec], b: &[Rec], what: &str) {
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x, y, "{what}: first difference");
    }
    assert_eq!(a.len(), b.len(), "{what}: entry count");
}

struct Mount(PathBuf);
impl Mount {
    fn ro(img: &Path, at: &Path) -> Mount {
        tool("mount", "mount");
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-o", "ro,loop", "-t", "ext4"])
            .arg(img)
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount {}: {}",
            img.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Mount(at.to_path_buf())
    }
}
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn posix_acl() -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 6u16, u32::MAX),
        (2, 4, 1000),
        (4, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

fn hex(v: &[u8]) -> String {
    let mut s = String::from("0x");
    for b in v {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A host directory with every entry kind, xattrs, hardlinks and a
/// sparse file.
fn make_source(root: &Path) {
    let setfattr = tool("setfattr", "attr");
    let w = |p: &str, d: &[u8]| std::fs::write(root.join(p), d).unwrap();
    let xattr = |p: &str, n: &str, v: &[u8]| {
        sh(Command::new(&setfattr)
            .args(["-h", "-n", n, "-v", &hex(v)])
            .arg(root.join(p)))
    };
    std::fs::create_dir_all(root.join("d/sub")).unwrap();
    std::fs::create_dir_all(root.join("hl")).unwrap();
    std::fs::create_dir_all(root.join("many")).unwrap();
    w("d/f", b"hello\n");
    w("d/sub/g", b"nested\n");
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 17u32)
        .map(|i| (i.wrapping_mul(7) ^ (i >> 12)) as u8)
        .collect();
    w("big.bin", &big);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(root.join("sparse")).unwrap();
        f.set_len(40 << 20).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(&[0xAB; 10000], 8 << 20).unwrap();
        f.write_all_at(b"end", (40 << 20) - 3).unwrap();
        // 20 separate pieces: more extents than the inode holds, so an
        // extent tree block.
        let f = std::fs::File::create(root.join("frag")).unwrap();
        for i in 0..20u64 {
            f.write_all_at(&[i as u8 + 1; 5000], i << 20).unwrap();
        }
    }
    w("cap", b"#!/bin/true\n");
    w("bigxattr", b"x");
    w("acl", b"acl");
    w("suid", b"#!/bin/sh\n");
    w("hl/a", b"linked content\n");
    std::fs::hard_link(root.join("hl/a"), root.join("hl/b")).unwrap();
    std::fs::hard_link(root.join("hl/a"), root.join("hl/c")).unwrap();
    for i in 0..300 {
        w(&format!("many/entry-with-a-longish-name-{i:04}"), b"");
    }
    std::os::unix::fs::symlink("d/f", root.join("sym-short")).unwrap();
    std::os::unix::fs::symlink("t/".repeat(100), root.join("sym-long")).unwrap();
    sh(Command::new("mknod")
        .arg(root.join("wh"))
        .args(["c", "0", "0"]));
    sh(Command::new("mknod")
        .arg(root.join("null"))
        .args(["c", "1", "3"]));
    sh(Command::new("mknod")
        .arg(root.join("sda1"))
        .args(["b", "8", "1"]));
    sh(Command::new("mkfifo").arg(root.join("fifo")));
    drop(std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap());
    xattr("d", "trusted.overlay.opaque", b"y");
    xattr("d/f", "user.comment", b"a comment");
    // cap_net_bind_service=ep, VFS_CAP_REVISION_2.
    let mut cap = 0x0200_0001u32.to_le_bytes().to_vec();
    cap.extend_from_slice(&(1u32 << 10).to_le_bytes());
    cap.extend_from_slice(&[0; 12]);
    xattr("cap", "security.capability", &cap);
    xattr("bigxattr", "user.big", &[0x5A; 900]);
    xattr("bigxattr", "user.small", b"s");
    xattr("acl", "system.posix_acl_access", &posix_acl());
    std::fs::set_permissions(root.join("suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::set_permissions(root.join("d"), std::fs::Permissions::from_mode(0o750)).unwrap();
    sh(Command::new("chown").args(["1000:100"]).arg(root.join("d")));
    sh(Command::new("chown")
        .args(["-h", "2000:2000"])
        .arg(root.join("sym-short")));
    sh(Command::new("chown")
        .args(["65537:70000"])
        .arg(root.join("big.bin")));
    sh(Command::new("touch")
        .args(["-h", "-d", "2023-11-14 22:13:20.123456789", "--"])
        .arg(root.join("d/f"))
        .arg(root.join("sym-long")));
}

/// Reads `img` with the reader into a new kiln image, checks it with
/// e2fsck and compares both through the kernel.
fn rewrite_and_compare(dir: &Path, img: &Path, label: &str) -> PathBuf {
    let src = Ext4Reader::open(std::fs::File::open(img).unwrap()).unwrap();
    let out = dir.join(format!("{label}.kiln.img"));
    let f = std::fs::File::create(&out).unwrap();
    let size = src.info().size_bytes().max(64 << 20);
    f.set_len(size).unwrap();
    let fs_label = src.info().label.clone();
    let mut w = Ext4Writer::new(f, Ext4Options::new(size).label(&fs_label).uuid([7; 16])).unwrap();
    let rep = src.feed(&mut w, |_, _| Visit::Keep).unwrap();
    assert!(rep.entries > 300, "{rep:?}");
    w.finish().unwrap();
    e2fsck_clean(&out);
    // The reader sees the same tree in both images...
    assert_same(
        &normalise(&rec_reader(img), false),
        &normalise(&rec_reader(&out), false),
        &format!("{label}: reader(original) vs reader(rewritten)"),
    );
    // ...and so does the kernel.
    let a = Mount::ro(img, &dir.join(format!("{label}.mnt-a")));
    let b = Mount::ro(&out, &dir.join(format!("{label}.mnt-b")));
    assert_same(
        &normalise(&rec_dir(&a.0), false),
        &normalise(&rec_dir(&b.0), false),
        &format!("{label}: kernel view of original vs rewritten"),
    );
    // The reader agrees with the kernel on the original.
    assert_same(
        &normalise(&rec_reader(img), false),
        &normalise(&rec_dir(&a.0), false),
        &format!("{label}: reader vs kernel"),
    );
    out
}

#[test]
fn mke2fs_images_round_trip() {
    let mke2fs = tool("mke2fs", "e2fsprogs");
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let src = d.path().join("src");
    make_source(&src);
    let want = normalise(&rec_dir(&src), true);
    for (label, args) in [
        ("ext4-4k", &["-t", "ext4", "-b", "4096"][..]),
        ("ext4-1k", &["-t", "ext4", "-b", "1024"][..]),
        ("ext3-1k", &["-t", "ext3", "-b", "1024", "-I", "256"][..]),
    ] {
        let img = d.path().join(format!("{label}.img"));
        sh(Command::new(&mke2fs)
            .args(["-q", "-F", "-L", label, "-E", "root_owner=0:0"])
            .args(args)
            .arg("-d")
            .arg(&src)
            .arg(&img)
            .arg("128M"));
        e2fsck_clean(&img);
        let fs = Ext4Reader::open(std::fs::File::open(&img).unwrap()).unwrap();
        assert_eq!(fs.info().label, label);
        assert_eq!(fs.info().size_bytes(), 128 << 20);
        // What mke2fs -d stored equals the source directory (mke2fs
        // keeps whole seconds only), lost+found aside.
        let got: Vec<Rec> = normalise(&rec_reader(&img), true)
            .into_iter()
            .filter(|r| r.0 != "/lost+found")
            .collect();
        let mut want = want.clone();
        want[0].2.mode = got[0].2.mode;
        assert_same(&got, &want, &format!("{label}: reader vs source directory"));
        rewrite_and_compare(d.path(), &img, label);
        if label == "ext4-4k" {
            corrupt_extent_and_dir_blocks(&img);
        }
    }
}

/// A flipped byte in an extent tree block or a directory block is caught
/// by its metadata_csum checksum.
fn corrupt_extent_and_dir_blocks(img: &Path) {
    let stat = debugfs(img, "stat /frag");
    let etb = stat
        .split("(ETB0):")
        .nth(1)
        .unwrap_or_else(|| panic!("no extent tree block in:\n{stat}"));
    let etb: u64 = etb
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let stat = debugfs(img, "stat /bigxattr");
    let xblk: u64 = stat
        .split("File ACL: ")
        .nth(1)
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let blocks = debugfs(img, "blocks /d");
    let dblk: u64 = blocks.split_whitespace().next().unwrap().parse().unwrap();
    for (blk, at, what) in [
        (etb, 20, "extent block checksum"),
        (dblk, 30, "directory block checksum"),
        (xblk, 4000, "xattr block checksum"),
    ] {
        let mut b = std::fs::read(img).unwrap();
        b[(blk * 4096) as usize + at] ^= 0x5A;
        let fs = Ext4Reader::open(b).unwrap();
        let e = fs.feed(&mut Skim, |_, _| Visit::Keep).unwrap_err();
        assert!(e.to_string().contains(what), "{what}: {e}");
    }
}

#[test]
fn kiln_image_round_trips_with_htree_dirs() {
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let mut items = vec![dir("big-dir"), dir("x")];
    for i in 0..3000 {
        items.push(file(&format!("big-dir/file-number-{i:05}"), b"v"));
    }
    let mut f = file("x/attrs", b"data");
    f.entry.meta.xattrs = vec![xa("trusted.overlay.opaque", b"y"), xa("user.k", &[1; 300])];
    items.push(f);
    items.push(item(
        "swapfile",
        EntryKind::File,
        meta(0o600),
        Body::Prealloc {
            size: 8 << 20,
            head: b"SWAPHEAD".to_vec(),
        },
    ));
    items.push(item(
        "x/link",
        EntryKind::Hardlink {
            target: TreePath::parse(b"x/attrs").unwrap(),
        },
        meta(0o644),
        Body::None,
    ));
    let img = write_image(
        d.path(),
        "kiln.img",
        &items,
        Ext4Options::new(64 << 20).label("kiln-src").uuid([1; 16]),
    );
    let out = rewrite_and_compare(d.path(), &img, "kiln");
    // Deterministic: reading and writing again gives the same bytes.
    let again = rewrite_and_compare(d.path(), &img, "kiln2");
    let (a, b) = (std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
    assert!(a == b, "two rewrites of the same filesystem differ");
    // Unwritten extents read as zeros after the written head.
    let fs = Ext4Reader::open(std::fs::File::open(&out).unwrap()).unwrap();
    let sw = fs
        .read_file(&TreePath::parse(b"swapfile").unwrap(), 16 << 20)
        .unwrap()
        .unwrap();
    assert_eq!(&sw[..8], b"SWAPHEAD");
    assert!(sw[8..].iter().all(|&b| b == 0) && sw.len() == 8 << 20);
    // Conveniences.
    let p = |s: &str| TreePath::parse(s.as_bytes()).unwrap();
    let ls = fs.list_dir(&p("big-dir")).unwrap().unwrap();
    assert_eq!(ls.len(), 3000);
    assert_eq!(ls[0].name, b"file-number-00000");
    assert!(ls.windows(2).all(|w| w[0].name < w[1].name));
    assert_eq!(fs.kind_of(&p("x")).unwrap(), Some(NodeKind::Dir));
    assert_eq!(fs.kind_of(&p("nope")).unwrap(), None);
    assert!(fs.list_dir(&p("nope")).unwrap().is_none());
    assert!(matches!(
        fs.read_file(&p("swapfile"), 100),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(fs.read_link(&p("x")), Err(Error::NotFound { .. })));
    // The filter skips whole subtrees, and a hardlink whose first name
    // is skipped carries the file itself.
    let mut r = Recorder::default();
    let rep = fs
        .feed(&mut r, |path, _| {
            if path.to_string() == "/big-dir" || path.to_string() == "/x/attrs" {
                Visit::Skip
            } else {
                Visit::Keep
            }
        })
        .unwrap();
    assert_eq!(rep.skipped, 2);
    assert!(r.0.iter().all(|e| !e.0.starts_with("/big-dir")));
    let link = r.0.iter().find(|e| e.0 == "/x/link").unwrap();
    assert_eq!(link.1, EntryKind::File);
    assert_eq!(link.3, 4);
}

#[test]
fn corrupt_input_is_an_error_not_a_panic() {
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let mut items = vec![dir("a"), file("a/b", b"bytes"), file("c", &[9; 20000])];
    items.push(item(
        "s",
        EntryKind::Symlink {
            target: b"a/b".to_vec(),
        },
        meta(0o777),
        Body::None,
    ));
    let img = write_image(
        d.path(),
        "c.img",
        &items,
        Ext4Options::new(8 << 20).uuid([2; 16]),
    );
    let good = std::fs::read(&img).unwrap();
    let open = |b: &Vec<u8>| Ext4Reader::open(b.clone());
    // Bad magic, bad checksum, truncated region, empty region.
    let mut b = good.clone();
    b[1024 + 0x38] = 0;
    assert!(matches!(open(&b), Err(Error::Corrupt { inode: 0, .. })));
    let mut b = good.clone();
    b[1024 + 0x10] ^= 1;
    let e = open(&b).unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
    let b = good[..4 << 20].to_vec();
    let e = open(&b).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
    assert!(open(&Vec::new()).is_err());
    // Unsupported incompat feature (inline_data), checksum fixed up so
    // the feature check is what refuses it.
    let mut b = good.clone();
    b[1024 + 0x60] |= 0x80; // 0x8000 in the second byte of incompat
    b[1024 + 0x61] |= 0x80;
    fix_sb_csum(&mut b);
    assert!(matches!(open(&b), Err(Error::Unsupported { .. })));
    // A flipped bit in an inode (located by debugfs) fails its checksum.
    let imap = debugfs(&img, "imap /c");
    let loc = imap.split("located at block ").nth(1).unwrap();
    let (blk, off) = loc.trim().split_once(", offset 0x").unwrap();
    let at = blk.parse::<usize>().unwrap() * 4096 + usize::from_str_radix(off.trim(), 16).unwrap();
    let mut b = good.clone();
    b[at + 0x10] ^= 0x40; // i_mtime
    let fs = open(&b).unwrap();
    let e = fs.feed(&mut Skim, |_, _| Visit::Keep).unwrap_err();
    assert!(e.to_string().contains("inode checksum"), "{e}");
    // Deterministic garbage over the metadata: every outcome is Ok or
    // Err, never a panic or a hang.
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let meta_end = 1 << 20;
    for _ in 0..300 {
        let mut b = good.clone();
        for _ in 0..8 {
            let at = (rnd() % meta_end) as usize;
            b[at] = rnd() as u8;
        }
        fix_sb_csum(&mut b);
        if let Ok(fs) = Ext4Reader::open(b) {
            let _outcome = fs.feed(&mut Skim, |_, _| Visit::Keep);
        }
    }
}

fn fix_sb_csum(b: &mut [u8]) {
    // ext4 stores the raw CRC32C register from !0:
    // raw(!0, d) == !crc32c_append(0, d).
    let raw = !crc32c::crc32c_append(0, &b[1024..1024 + 0x3FC]);
    b[1024 + 0x3FC..1024 + 0x400].copy_from_slice(&raw.to_le_bytes());
}

/// Reads at most 1 MiB of each file (a corrupt size may announce
/// terabytes of holes, which is legal to stream but slow to drain).
struct Skim;
impl TreeSink for Skim {
    type Error = std::io::Error;
    fn add(&mut self, _e: &Entry, c: Content<'_>) -> Result<(), Self::Error> {
        if let Content::Stream { reader, .. } = c {
            std::io::copy(&mut reader.take(1 << 20), &mut std::io::sink())?;
        }
        Ok(())
    }
}
