//! Swap-style preallocated files: head written, rest unwritten extents,
//! contiguous, costing nothing in the sparse image.

mod common;
use common::*;
use kiln_ext4::Ext4Options;
use kiln_tree::EntryKind;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

fn swap_head() -> Vec<u8> {
    // What mkswap writes: a 4 KiB page ending in the signature.
    let mut h = vec![0u8; 4096];
    h[1024..1028].copy_from_slice(&1u32.to_le_bytes()); // version
    h[4086..].copy_from_slice(b"SWAPSPACE2");
    h
}

fn opts() -> Ext4Options {
    Ext4Options::new(1 << 30)
        .uuid([0x11; 16])
        .timestamp(t(1_700_000_000, 0))
}

/// Parses debugfs's EXTENTS line into (logical start, logical end,
/// physical start, unwritten).
fn extents(stat: &str) -> Vec<(u64, u64, u64, bool)> {
    let line = stat
        .lines()
        .skip_while(|l| !l.starts_with("EXTENTS:"))
        .nth(1)
        .unwrap_or("");
    let mut v = Vec::new();
    for part in line.split(", ") {
        // "(0):1234" | "(1-32767[u]):1235-33001" | "(ETB0):99"
        if part.starts_with("(ETB") {
            continue;
        }
        let (l, p) = part.split_once(':').unwrap_or_else(|| panic!("{line}"));
        let l = l.trim_matches(|c| c == '(' || c == ')');
        let unwritten = l.ends_with("[u]");
        let l = l.trim_end_matches("[u]");
        let (ls, le) = match l.split_once('-') {
            Some((a, b)) => (
                a.parse().unwrap_or_else(|_| panic!("{line}")),
                b.parse().unwrap_or_else(|_| panic!("{line}")),
            ),
            None => (
                l.parse().unwrap_or_else(|_| panic!("{line}")),
                l.parse().unwrap(),
            ),
        };
        let ps: u64 = p.split('-').next().unwrap().parse().unwrap();
        v.push((ls, le, ps, unwritten));
    }
    v
}

#[test]
fn swapfile_is_unwritten_contiguous_and_free_in_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let size: u64 = 300 << 20;
    let head = swap_head();
    let base = vec![file("etc/fstab", b"/swapfile none swap sw 0 0\n")];
    let mut with = base.clone();
    with.push(item(
        "swapfile",
        EntryKind::File,
        meta(0o600),
        Body::Prealloc {
            size,
            head: head.clone(),
        },
    ));
    let img0 = write_image(dir.path(), "base.img", &base, opts());
    let img = write_image(dir.path(), "swap.img", &with, opts());
    e2fsck_clean(&img);

    let s = debugfs(&img, "stat /swapfile");
    assert!(s.contains(&format!("Size: {size}")), "{s}");
    let ext = extents(&s);
    assert!(!ext.is_empty(), "{s}");
    // Head written, everything after it unwritten.
    assert_eq!((ext[0].0, ext[0].3), (0, false), "{s}");
    assert!(ext[1..].iter().all(|e| e.3), "{s}");
    // Every block covered, in order.
    let mut next_l = 0;
    let mut prev_end_p = None;
    for &(ls, le, ps, _) in &ext {
        assert_eq!(ls, next_l, "gap in logical blocks: {s}");
        next_l = le + 1;
        // Physically contiguous except where a backup superblock area sits
        // at a group start.
        if let Some(pe) = prev_end_p {
            if ps != pe {
                assert!(pe % 32768 == 0, "needless physical gap before {ps}: {s}");
            }
        }
        prev_end_p = Some(ps + (le - ls) + 1);
    }
    assert_eq!(next_l, size / 4096, "{s}");
    // Allocated size of the image grows only by the head (plus at most one
    // extent-tree block and the journal-free metadata already there).
    let a0 = std::fs::metadata(&img0).unwrap().blocks() * 512;
    let a1 = std::fs::metadata(&img).unwrap().blocks() * 512;
    assert!(
        a1 >= a0 + 4096 && a1 - a0 <= 3 * 4096,
        "image grew by {} bytes",
        a1 - a0
    );

    // ext4-view reads the head and zeros.
    let fs = ext4_view::Ext4::load_from_path(&img).unwrap();
    let md = fs.metadata("/swapfile").unwrap();
    assert_eq!(md.len(), size);

    // The kernel sees the right size, head and zeros.
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let st = Command::new(tool("mount", "mount"))
        .args(["-o", "loop,ro"])
        .arg(&img)
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "mount -o loop,ro failed");
    let r = || {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(mnt.join("swapfile")).unwrap();
        assert_eq!(f.metadata().unwrap().len(), size);
        let mut b = vec![0u8; 4096];
        f.read_exact_at(&mut b, 0).unwrap();
        assert_eq!(b, head);
        f.read_exact_at(&mut b, size - 4096).unwrap();
        assert!(b.iter().all(|&x| x == 0));
        f.read_exact_at(&mut b, size / 2).unwrap();
        assert!(b.iter().all(|&x| x == 0));
    };
    let res = std::panic::catch_unwind(r);
    Command::new("umount").arg(&mnt).status().unwrap();
    res.unwrap();
}

#[test]
fn small_preallocated_files_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let items = vec![
        item(
            "p/empty-head",
            EntryKind::File,
            meta(0o600),
            Body::Prealloc {
                size: 1 << 20,
                head: vec![],
            },
        ),
        item(
            "p/odd",
            EntryKind::File,
            meta(0o600),
            Body::Prealloc {
                size: 3 * 4096 + 5,
                head: vec![7; 5000],
            },
        ),
        item(
            "p/tiny",
            EntryKind::File,
            meta(0o600),
            Body::Prealloc {
                size: 10,
                head: b"0123456789abc".to_vec(),
            },
        ),
    ];
    let img = write_image(dir.path(), "p.img", &items, Ext4Options::new(64 << 20));
    e2fsck_clean(&img);
    // `Body::range` models the head cut to the size and zeros after it.
    let mut expect = items.clone();
    if let Body::Prealloc { head, .. } = &mut expect[2].body {
        head.truncate(10);
    }
    verify(&img, &expect, false);
    let s = debugfs(&img, "stat /p/empty-head");
    let e = extents(&s);
    assert!(e.iter().all(|x| x.3), "{s}");
}

/// The kernel accepts the preallocated file as swap (written header page,
/// unwritten extents, no holes): mount read-write on a loop device and
/// `swapon` it.
#[test]
fn swapon_accepts_the_preallocated_file() {
    let dir = tempfile::tempdir().unwrap();
    let size: u64 = 64 << 20;
    let mut head = swap_head();
    // mkswap header: last_page at offset 1024+4.
    let last_page = (size / 4096 - 1) as u32;
    head[1028..1032].copy_from_slice(&last_page.to_le_bytes());
    let items = vec![item(
        "swapfile",
        EntryKind::File,
        meta(0o600),
        Body::Prealloc { size, head },
    )];
    let img = write_image(dir.path(), "swap.img", &items, Ext4Options::new(256 << 20));
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let st = Command::new(tool("mount", "mount"))
        .args(["-o", "loop"])
        .arg(&img)
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "mount -o loop failed");
    let swap = mnt.join("swapfile");
    let on = Command::new(tool("swapon", "mount"))
        .arg(&swap)
        .output()
        .unwrap();
    if on.status.success() {
        Command::new(tool("swapoff", "mount"))
            .arg(&swap)
            .status()
            .unwrap();
    }
    Command::new("umount").arg(&mnt).status().unwrap();
    assert!(
        on.status.success(),
        "swapon: {}",
        String::from_utf8_lossy(&on.stderr)
    );
    e2fsck_clean(&img);
}
