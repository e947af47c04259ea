//! Scale: a 50,000-entry directory (htree) and a 5 GiB sparse file.

mod common;
use common::*;
use kiln_ext4::Ext4Options;
use kiln_tree::EntryKind;
use std::os::unix::fs::MetadataExt;

#[test]
fn fifty_thousand_entry_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut items = vec![dir_item()];
    for i in 0..50_000u32 {
        // Varied lengths and some UTF-8 so the hash sees signed bytes.
        let name = match i % 3 {
            0 => format!("big/f{i}"),
            1 => format!("big/entry-with-a-longer-name-{i:06}"),
            _ => format!("big/ü-{i}"),
        };
        items.push(item(&name, EntryKind::File, meta(0o644), Body::None));
    }
    let img = write_image(
        dir.path(),
        "big.img",
        &items,
        Ext4Options::new(512 << 20).inode_ratio(8192),
    );
    e2fsck_clean(&img);
    // htree: a root with indexes, every name resolvable through lookups.
    let s = debugfs(&img, "htree_dump /big");
    assert!(
        s.contains("Indirect levels: 0") || s.contains("Indirect levels: 1"),
        "{s}"
    );
    assert!(
        !s.contains("EXPECTED"),
        "checksum mismatch in htree: {}",
        &s[..2000.min(s.len())]
    );
    // ext4-view lists and looks up everything (hashed lookups).
    let fs = ext4_view::Ext4::load_from_path(&img).unwrap();
    let n = fs.read_dir("/big").unwrap().count();
    assert_eq!(n, 50_002); // plus . and ..
    for i in (0..50_000u32).step_by(997) {
        let p = match i % 3 {
            0 => format!("/big/f{i}"),
            1 => format!("/big/entry-with-a-longer-name-{i:06}"),
            _ => format!("/big/ü-{i}"),
        };
        assert!(fs.exists(p.as_str()).unwrap(), "{p}");
    }
}

fn dir_item() -> Item {
    dir("big")
}

#[test]
fn five_gib_sparse_file() {
    let dir = tempfile::tempdir().unwrap();
    let size: u64 = 5 << 30;
    let pieces = vec![
        (0u64, b"start".to_vec()),
        (1 << 30, vec![0x5A; 8192]),
        ((4 << 30) + 123, b"middle".to_vec()),
        (size - 4, b"end!".to_vec()),
    ];
    let items = vec![item(
        "huge.sparse",
        EntryKind::File,
        meta(0o644),
        Body::Sparse {
            size,
            pieces: pieces.clone(),
        },
    )];
    let img = write_image(dir.path(), "s.img", &items, Ext4Options::new(1 << 30));
    e2fsck_clean(&img);
    let s = debugfs(&img, "stat /huge.sparse");
    assert!(s.contains(&format!("Size: {size}")), "{s}");
    // 5 data blocks: start, two for the 8 KiB piece, middle, end.
    assert!(s.contains("Blockcount: 40"), "{s}");
    // The image itself stays small.
    assert!(std::fs::metadata(&img).unwrap().blocks() * 512 < 64 << 20);
    // Read the pieces back through ext4-view.
    use ext4_view::Ext4;
    let fs = Ext4::load_from_path(&img).unwrap();
    let mut f = fs.open("/huge.sparse").unwrap();
    use std::io::{Read, Seek, SeekFrom};
    for (off, data) in &pieces {
        f.seek(SeekFrom::Start(*off)).unwrap();
        let mut b = vec![0u8; data.len()];
        f.read_exact(&mut b).unwrap();
        assert_eq!(&b, data, "at {off}");
    }
    f.seek(SeekFrom::Start(3 << 30)).unwrap();
    let mut b = vec![1u8; 4096];
    f.read_exact(&mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0));
}
