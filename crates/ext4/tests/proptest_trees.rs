//! Property test: random trees (depth, UTF-8 names, sizes up to a few
//! MiB, sparse files, hardlinks, xattrs, children before parents) are
//! e2fsck-clean and read back equal.

mod common;
use common::*;
use kiln_ext4::Ext4Options;
use kiln_tree::{EntryKind, TreePath};
use proptest::prelude::*;
use std::collections::BTreeSet;

#[derive(Debug, Clone)]
enum Kind {
    File { size: u32, fill: u8, sparse: bool },
    Dir,
    Symlink(u8),
    Hardlink(usize),
    Fifo,
    Dev(u32, u32),
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,12}",
        "[a-zA-Z0-9._-]{1,40}",
        "[äöüß日本éñ]{1,6}",
        "[x]{200,255}",
    ]
    .prop_filter("not dot", |s| s != "." && s != "..")
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => (0u32..3_000_000, any::<u8>(), any::<bool>()).prop_map(|(size, fill, sparse)| Kind::File { size, fill, sparse }),
        2 => Just(Kind::Dir),
        1 => any::<u8>().prop_map(Kind::Symlink),
        1 => (0usize..1000).prop_map(Kind::Hardlink),
        1 => Just(Kind::Fifo),
        1 => (0u32..300, 0u32..70000).prop_map(|(a, b)| Kind::Dev(a, b)),
    ]
}

/// One generated row: path components, kind, mode, xattrs, mtime.
type Row = (Vec<String>, Kind, u32, Vec<(String, usize)>, (i64, u32));

fn spec() -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec(
        (
            prop::collection::vec(name(), 1..5),
            kind(),
            0u32..0o7777,
            prop::collection::vec(("[a-z]{1,20}", 0usize..600), 0..4),
            (0i64..2_000_000_000, 0u32..1_000_000_000),
        ),
        1..60,
    )
}

/// Turns a random spec into a consistent tree: unique paths, every path
/// used as a parent is a directory, hardlinks point at earlier files.
fn build(spec: Vec<Row>) -> Vec<Item> {
    let mut seen = BTreeSet::new();
    let mut parents = BTreeSet::new();
    let mut rows = Vec::new();
    for (comps, k, mode, xattrs, time) in spec {
        let path = comps.join("/");
        if !seen.insert(path.clone()) {
            continue;
        }
        for i in 1..comps.len() {
            parents.insert(comps[..i].join("/"));
        }
        rows.push((path, k, mode, xattrs, time));
    }
    // Parents that are also rows must be directories; rows below a
    // non-directory are dropped by making that row a directory.
    let mut files: Vec<String> = Vec::new();
    let mut items = Vec::new();
    for (path, k, mode, xattrs, (secs, nanos)) in rows {
        let mut m = meta(mode);
        m.mtime = t(secs, nanos);
        m.xattrs = xattrs
            .iter()
            .map(|(n, len)| xa(&format!("user.{n}"), &vec![b'v'; *len]))
            .collect();
        // Unique xattr names.
        let mut names = BTreeSet::new();
        m.xattrs.retain(|x| names.insert(x.name.clone()));
        let total: usize = m
            .xattrs
            .iter()
            .map(|x| x.value.len() + x.name.len() + 20)
            .sum();
        if total > 3500 {
            m.xattrs.clear();
        }
        let is_parent = parents.contains(&path);
        let k = if is_parent { Kind::Dir } else { k };
        let it = match k {
            Kind::Dir => item(&path, EntryKind::Dir, m, Body::None),
            Kind::File { size, fill, sparse } => {
                let size = u64::from(size);
                let body = if sparse {
                    Body::Sparse {
                        size,
                        pieces: vec![(size / 3, vec![fill | 1; 5000.min(size as usize / 2)])],
                    }
                } else {
                    Body::Bytes(
                        (0..size)
                            .map(|i| (i as u8).wrapping_mul(fill | 1))
                            .collect(),
                    )
                };
                files.push(path.clone());
                item(&path, EntryKind::File, m, body)
            }
            Kind::Symlink(n) => {
                // Components stay under 255 bytes (ext4-view refuses longer).
                let target = (0..=n / 4)
                    .map(|i| format!("seg{i}"))
                    .collect::<Vec<_>>()
                    .join("/");
                item(
                    &path,
                    EntryKind::Symlink {
                        target: target.into_bytes(),
                    },
                    m,
                    Body::None,
                )
            }
            Kind::Hardlink(i) if !files.is_empty() => {
                let target = files[i % files.len()].clone();
                item(
                    &path,
                    EntryKind::Hardlink {
                        target: TreePath::parse(target.as_bytes()).unwrap(),
                    },
                    m,
                    Body::None,
                )
            }
            Kind::Hardlink(_) | Kind::Fifo => item(&path, EntryKind::Fifo, m, Body::None),
            Kind::Dev(a, b) => item(
                &path,
                EntryKind::CharDev { major: a, minor: b },
                m,
                Body::None,
            ),
        };
        items.push(it);
    }
    // Children before parents: reverse half of the time (deterministic on
    // the content).
    if items.len() % 2 == 0 {
        items.reverse();
        // Hardlinks must still come after their targets: move them last.
        let (links, rest): (Vec<Item>, Vec<Item>) = items
            .into_iter()
            .partition(|i| matches!(i.entry.kind, EntryKind::Hardlink { .. }));
        items = rest;
        items.extend(links);
    }
    items
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn random_trees_are_valid_and_read_back(s in spec()) {
        let items = build(s);
        let dir = tempfile::tempdir().unwrap();
        let img = write_image(dir.path(), "p.img", &items, Ext4Options::new(256 << 20).uuid([9; 16]));
        e2fsck_clean(&img);
        verify(&img, &items, false);
        // xattrs through debugfs for a few entries (one process each).
        // (Hardlinks share their target's inode and attributes.)
        let with: Vec<(Vec<u8>, Item)> = final_state(&items)
            .into_iter()
            .filter(|(_, i)| !i.entry.meta.xattrs.is_empty())
            .take(3)
            .collect();
        for (key, it) in with {
            let p = String::from_utf8(key).unwrap();
            for x in &it.entry.meta.xattrs {
                let name = String::from_utf8(x.name.clone()).unwrap();
                prop_assert_eq!(debugfs_xattr(&img, &p, &name), Some(x.value.clone()), "{} {}", p, name);
            }
        }
    }
}
