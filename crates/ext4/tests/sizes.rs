//! Layout across sizes: tiny (no journal), group boundaries (runt last
//! group dropped like mke2fs), many groups and flex groups, a second GDT
//! block. Every image must be e2fsck-clean.

mod common;
use common::*;
use kiln_ext4::Ext4Options;

#[test]
fn sizes_are_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let items = vec![dir("d"), file("d/f", b"hi\n")];
    for size in [
        1u64 << 20,
        (2 << 20) + 12345,
        7 << 20,
        8 << 20,
        (128 << 20) - (1 << 20),
        (128 << 20) + 4096,
        129 << 20,
        300 << 20,
        (2 << 30) + (1 << 20),
        16 << 30,
    ] {
        let img = write_image(
            tmp.path(),
            "s.img",
            &items,
            Ext4Options::new(size).inode_ratio(16384),
        );
        e2fsck_clean(&img);
        verify(&img, &items, false);
        let s = debugfs(&img, "stats");
        let blocks: u64 = s
            .lines()
            .find_map(|l| l.strip_prefix("Block count:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            blocks <= size / 4096 && blocks + 32768 > size / 4096,
            "{size}: {blocks}"
        );
        std::fs::remove_file(img).unwrap();
    }
}
