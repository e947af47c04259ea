//! Every entry kind through the writer, checked by e2fsck, debugfs,
//! ext4-view, tune2fs and the kernel (read-only loop mount).

mod common;
use common::*;
use kiln_ext4::Ext4Options;
use kiln_tree::{EntryKind, TreePath};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

fn tree() -> Vec<Item> {
    let mut v = Vec::new();
    // Children before their parents, as tar may send them.
    v.push(file("late/child.txt", b"child first\n"));
    let mut late = dir("late");
    late.entry.meta.mode = 0o750;
    late.entry.meta.uid = 1234;
    v.push(late);
    v.push(file("empty", b""));
    v.push(file("small", b"hello, ext4\n"));
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 17)
        .map(|i| (i * 7 + i / 4096) as u8)
        .collect();
    v.push(file("dir/big.bin", &big));
    v.push(item(
        "sparse",
        EntryKind::File,
        meta(0o600),
        Body::Sparse {
            size: 40 << 20,
            pieces: vec![
                (0, b"head".to_vec()),
                (8 << 20, vec![0xAB; 10000]),
                ((40 << 20) - 3, b"end".to_vec()),
            ],
        },
    ));
    v.push(item(
        "zeros",
        EntryKind::File,
        meta(0o644),
        Body::Sparse {
            size: 1 << 20,
            pieces: vec![],
        },
    ));
    let mut suid = file("bin/suid", b"#!/bin/sh\n");
    suid.entry.meta.mode = 0o4755;
    v.push(suid);
    let mut sgid = dir("shared");
    sgid.entry.meta.mode = 0o2775;
    v.push(sgid);
    let mut sticky = dir("tmp");
    sticky.entry.meta.mode = 0o1777;
    v.push(sticky);
    let mut owned = file("owned", b"x");
    owned.entry.meta.uid = 100_000;
    owned.entry.meta.gid = 200_000;
    owned.entry.meta.mtime = t(4_000_000_000, 5); // after 2038
    v.push(owned);
    v.push(item(
        "fast",
        EntryKind::Symlink {
            target: b"small".to_vec(),
        },
        meta(0o777),
        Body::None,
    ));
    let long_target = format!("dir/{}", "x".repeat(200));
    v.push(item(
        "slow",
        EntryKind::Symlink {
            target: long_target.into_bytes(),
        },
        meta(0o777),
        Body::None,
    ));
    v.push(item(
        "dangling",
        EntryKind::Symlink {
            target: b"/nowhere/at/all".to_vec(),
        },
        meta(0o777),
        Body::None,
    ));
    v.push(item(
        "hard",
        EntryKind::Hardlink {
            target: TreePath::parse(b"small").unwrap(),
        },
        meta(0o644),
        Body::None,
    ));
    v.push(item(
        "dir/hard2",
        EntryKind::Hardlink {
            target: TreePath::parse(b"small").unwrap(),
        },
        meta(0o644),
        Body::None,
    ));
    v.push(item(
        "whiteout",
        EntryKind::CharDev { major: 0, minor: 0 },
        meta(0o000),
        Body::None,
    ));
    v.push(item(
        "dev/null",
        EntryKind::CharDev { major: 1, minor: 3 },
        meta(0o666),
        Body::None,
    ));
    v.push(item(
        "dev/big",
        EntryKind::CharDev {
            major: 300,
            minor: 70000,
        },
        meta(0o600),
        Body::None,
    ));
    v.push(item(
        "dev/sda",
        EntryKind::BlockDev { major: 8, minor: 0 },
        meta(0o660),
        Body::None,
    ));
    v.push(item("fifo", EntryKind::Fifo, meta(0o644), Body::None));
    v.push(item("sock", EntryKind::Socket, meta(0o755), Body::None));
    more_items(&mut v);
    v
}

/// Xattrs, names, an indexed directory, re-declarations, replacements.
fn more_items(v: &mut Vec<Item>) {
    // Xattrs: in-inode and spilling into a block.
    let mut cap = file("bin/ping", b"\x7fELF");
    cap.entry.meta.xattrs = vec![xa(
        "security.capability",
        &[
            0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    )];
    v.push(cap);
    let mut opaque = dir("upper/opaque");
    opaque.entry.meta.xattrs = vec![xa("trusted.overlay.opaque", b"y")];
    v.push(opaque);
    let mut many = file("xattrs", b"many attributes");
    many.entry.meta.xattrs = vec![
        xa("user.small", b"1"),
        xa("user.big", &vec![b'b'; 2000]),
        xa("user.empty", b""),
        xa("trusted.overlay.origin", &[0xFB; 30]),
        xa(
            "system.posix_acl_access",
            &acl(&[
                (1, 6, u32::MAX),
                (2, 4, 1000),
                (4, 4, u32::MAX),
                (0x10, 4, u32::MAX),
                (0x20, 4, u32::MAX),
            ]),
        ),
    ];
    v.push(many);
    let mut dacl = dir("acldir");
    dacl.entry.meta.xattrs = vec![xa(
        "system.posix_acl_default",
        &acl(&[
            (1, 7, u32::MAX),
            (4, 5, u32::MAX),
            (8, 5, 50),
            (0x10, 5, u32::MAX),
            (0x20, 5, u32::MAX),
        ]),
    )];
    v.push(dacl);
    // Names: UTF-8 and the longest allowed.
    v.push(file("ünïcødé/日本語.txt", "ça va\n".as_bytes()));
    let long = "n".repeat(255);
    v.push(file(&format!("dir/{long}"), b"long name"));
    // A directory big enough to be indexed.
    for i in 0..300 {
        v.push(file(
            &format!("many/entry-{i:04}"),
            format!("{i}").as_bytes(),
        ));
    }
    // A directory re-declared with different (block-sized) attributes.
    let mut d1 = dir("redecl");
    d1.entry.meta.xattrs = vec![xa("user.first", &[1; 1500])];
    v.push(d1);
    let mut d2 = dir("redecl");
    d2.entry.meta.xattrs = vec![xa("user.second", &[2; 1600])];
    v.push(d2);
    // Replacement: a later entry for the same path wins.
    v.push(file("replaced", b"first version"));
    v.push(file("replaced", b"second"));
}

fn opts() -> Ext4Options {
    Ext4Options::new(256 << 20)
        .uuid(*b"kiln-ext4-test!!")
        .hash_seed([0x5A; 16])
        .label("kinds")
        .timestamp(t(1_700_000_000, 0))
}

#[test]
fn every_kind_is_valid_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let items = tree();
    let img = write_image(dir.path(), "kinds.img", &items, opts());
    e2fsck_clean(&img);
    verify(&img, &items, true);

    // debugfs: link counts, device numbers, extents of the sparse file.
    let s = debugfs(&img, "stat /small");
    assert!(s.contains("Links: 3"), "{s}");
    let s = debugfs(&img, "stat /dev/big");
    assert!(s.contains("Device major/minor number: 300:70000"), "{s}");
    let s = debugfs(&img, "stat /whiteout");
    assert!(s.contains("Device major/minor number: 00:00"), "{s}");
    let s = debugfs(&img, "stat /sparse");
    // Three data pieces: head, middle (3 blocks), tail; nothing else.
    assert!(
        s.contains("Blockcount: 40\n") || s.contains("Blockcount: 40 "),
        "{s}"
    );
    let s = debugfs(&img, "stat /zeros");
    assert!(s.contains("Blockcount: 0"), "{s}");
    let s = debugfs(&img, "stat /many");
    assert!(s.contains("Flags: 0x81000"), "indexed dir: {s}");
    let s = debugfs(&img, "stat /owned");
    assert!(
        s.contains(" mtime: 0xee6b2800:00000015"),
        "post-2038 mtime: {s}"
    );
    assert!(s.contains("User: 100000   Group: 200000"), "{s}");
    let s = debugfs(&img, "cat /replaced");
    assert_eq!(s, "second");
}

#[test]
fn features_like_mke2fs() {
    let dir = tempfile::tempdir().unwrap();
    let img = write_image(dir.path(), "f.img", &[file("a", b"a")], opts());
    let out = Command::new(tool("tune2fs", "e2fsprogs"))
        .arg("-l")
        .arg(&img)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    let line = s
        .lines()
        .find(|l| l.starts_with("Filesystem features:"))
        .unwrap();
    let got: Vec<&str> = line.split_whitespace().skip(2).collect();
    assert_eq!(
        got,
        "has_journal ext_attr resize_inode dir_index filetype extent 64bit flex_bg sparse_super large_file huge_file dir_nlink extra_isize metadata_csum"
            .split(' ')
            .collect::<Vec<_>>()
    );
    assert!(s.contains("Filesystem volume name:   kinds"), "{s}");
    assert!(
        s.contains("Filesystem UUID:          6b696c6e-2d65-7874-342d-746573742121"),
        "{s}"
    );
    assert!(s.contains("Inode size:\t          256"), "{s}");
    assert!(s.contains("Journal backup:           inode blocks"), "{s}");
    assert!(s.contains("Checksum type:            crc32c"), "{s}");
    assert!(
        s.contains("Directory Hash Seed:      5a5a5a5a-5a5a-5a5a-5a5a-5a5a5a5a5a5a"),
        "{s}"
    );
    let s = debugfs(&img, "stat <8>");
    assert!(
        s.contains("Size: 16777216"),
        "journal like mke2fs for 256 MiB: {s}"
    );
}

#[test]
fn deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let items = tree();
    let a = write_image(dir.path(), "a.img", &items, opts());
    let b = write_image(dir.path(), "b.img", &items, opts());
    assert!(
        std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
        "images differ"
    );
}

struct Mount(std::path::PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn kernel_mount_reads_everything() {
    let dir = tempfile::tempdir().unwrap();
    let items = tree();
    let img = write_image(dir.path(), "m.img", &items, opts());
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let st = Command::new(tool("mount", "mount"))
        .args(["-t", "ext4", "-o", "loop,ro"])
        .arg(&img)
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(
        st.success(),
        "mount -o loop,ro failed (need root and loop devices)"
    );
    let _guard = Mount(mnt.clone());
    let getfattr = tool("getfattr", "attr");
    for (key, it) in final_state(&items) {
        let rel = String::from_utf8(key).unwrap();
        let p = mnt.join(&rel);
        let md = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let m = &it.entry.meta;
        assert_eq!(md.permissions().mode() & 0o7777, m.mode, "{rel}");
        assert_eq!((md.uid(), md.gid()), (m.uid, m.gid), "{rel}");
        assert_eq!(
            (md.mtime(), md.mtime_nsec() as u32),
            (m.mtime.secs, m.mtime.nanos),
            "{rel}"
        );
        match &it.entry.kind {
            EntryKind::File => {
                assert_eq!(md.len(), it.body.size(), "{rel}");
                if it.body.size() < 8 << 20 {
                    assert!(
                        std::fs::read(&p).unwrap() == it.body.range(0, it.body.size() as usize),
                        "{rel}"
                    );
                }
            }
            EntryKind::Symlink { target } => {
                assert_eq!(
                    std::fs::read_link(&p)
                        .unwrap()
                        .as_os_str()
                        .as_encoded_bytes(),
                    target.as_slice()
                );
            }
            EntryKind::CharDev { major, minor } | EntryKind::BlockDev { major, minor } => {
                let rdev = md.rdev();
                let (ma, mi) = kiln_tree::dir::split_dev(rdev);
                assert_eq!((ma, mi), (*major, *minor), "{rel}");
            }
            _ => {}
        }
        for x in &m.xattrs {
            let name = String::from_utf8(x.name.clone()).unwrap();
            let out = Command::new(&getfattr)
                .args(["--only-values", "--absolute-names", "-n", &name])
                .arg(&p)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{rel}: getfattr {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.stdout, x.value, "{rel}: {name}");
        }
    }
    // Sparse file: holes read as zeros and cost no blocks.
    let md = std::fs::metadata(mnt.join("sparse")).unwrap();
    assert!(
        md.blocks() <= 40,
        "sparse file allocated {} sectors",
        md.blocks()
    );
    assert!(Path::new(&mnt.join("lost+found")).is_dir());
}
