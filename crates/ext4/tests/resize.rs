//! Growing with resize2fs (the device grows the data partition on first
//! boot): 4x, then e2fsck clean and contents intact.

mod common;
use common::*;
use kiln_ext4::Ext4Options;
use std::process::Command;

fn grow(img: &std::path::Path, new_size: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    f.set_len(new_size).unwrap();
    drop(f);
    let out = Command::new(tool("resize2fs", "e2fsprogs"))
        .arg(img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "resize2fs: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tree() -> Vec<Item> {
    let mut v = vec![
        dir("data"),
        file("data/a", b"alpha"),
        file("data/b", &vec![9u8; 300_000]),
    ];
    for i in 0..2000 {
        v.push(file(
            &format!("store/{}/f{i}", i % 7),
            format!("{i}").as_bytes(),
        ));
    }
    let mut x = file("data/x", b"xattrs");
    x.entry.meta.xattrs = vec![
        xa("user.k", &vec![1; 500]),
        xa("trusted.overlay.opaque", b"y"),
    ];
    v.push(x);
    v
}

#[test]
fn grow_4x_small() {
    let dir = tempfile::tempdir().unwrap();
    let items = tree();
    let img = write_image(
        dir.path(),
        "g.img",
        &items,
        Ext4Options::new(128 << 20).inode_ratio(8192),
    );
    e2fsck_clean(&img);
    grow(&img, 512 << 20);
    e2fsck_clean(&img);
    verify(&img, &items, true);
    let s = debugfs(&img, "stats");
    assert!(s.contains("Block count:              131072"), "{s}");
}

#[test]
fn grow_4x_past_one_gdt_block_uses_reserved_gdt() {
    // 3 GiB = 24 groups (one GDT block); 12 GiB = 96 groups needs a second
    // GDT block, which must come from the reserved GDT blocks.
    let tmp = tempfile::tempdir().unwrap();
    let items = vec![file("hello", b"world"), dir("d")];
    let img = write_image(tmp.path(), "g.img", &items, Ext4Options::new(3 << 30));
    let before = debugfs(&img, "stats");
    assert!(before.contains("Reserved GDT blocks:      "), "{before}");
    grow(&img, 12 << 30);
    e2fsck_clean(&img);
    verify(&img, &items, false);
    let s = debugfs(&img, "stats");
    assert!(s.contains("Block count:              3145728"), "{s}");
}
