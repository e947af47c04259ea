//! Round trips through the independent fatfs reader (proptest), the size
//! estimator against the writer, and hostile or bad inputs (errors, never
//! panics) for both the writer and the reader.

mod common;

use common::*;
use kiln_fat::{
    Error, FatEntryKind, FatOptions, FatReader, FatType, FatWriter, ListLimits, SizeEstimator,
};
use kiln_tree::{Content, Entry, EntryKind, Metadata, TreePath, TreeSink};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn meta() -> Metadata {
    Metadata::new(0o644, EPOCH)
}

fn entry(p: &str, kind: EntryKind) -> Entry {
    Entry::new(TreePath::parse(p.as_bytes()).unwrap(), kind, meta())
}

fn fold(s: &str) -> String {
    s.chars().flat_map(char::to_uppercase).collect()
}

/// Reference model of what a FAT tree can hold: returns false if adding
/// `path` conflicts (case-insensitively) with what is there.
fn model_add(
    model: &mut BTreeMap<String, (String, Option<Vec<u8>>)>,
    path: &str,
    data: Option<Vec<u8>>,
) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    let mut exact = String::new();
    let mut folded = String::new();
    let mut to_create = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            exact.push('/');
            folded.push('/');
        }
        exact.push_str(part);
        folded.push_str(&fold(part));
        let last = i + 1 == parts.len();
        match model.get(&folded) {
            Some((e, kind)) => {
                if e != &exact {
                    return false;
                }
                if kind.is_some() || (last && data.is_some()) {
                    return false;
                }
            }
            None => to_create.push((
                folded.clone(),
                exact.clone(),
                if last { data.clone() } else { None },
            )),
        }
    }
    for (f, e, d) in to_create {
        model.insert(f, (e, d));
    }
    true
}

fn name_strategy() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ._~é日+-]{0,10}[a-zA-Z0-9é日]"
}

fn tree_strategy() -> impl Strategy<Value = Vec<(Vec<String>, Option<usize>)>> {
    prop::collection::vec(
        (
            prop::collection::vec(name_strategy(), 1..4),
            prop::option::weighted(0.8, 0usize..5000),
        ),
        0..14,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// tree -> kiln image -> fsck.fat clean and fatfs reads the same
    /// paths, kinds, sizes and bytes.
    #[test]
    fn tree_image_fatfs_round_trip(spec in tree_strategy(), fat32 in any::<bool>()) {
        let (t, size) = if fat32 { (FatType::Fat32, 40 * MIB) } else { (FatType::Fat16, 8 * MIB) };
        let mut img = Vec::new();
        let mut w = FatWriter::new(&mut img, size, opts(t)).unwrap();
        let mut model = BTreeMap::new();
        for (i, (comps, len)) in spec.iter().enumerate() {
            let path = comps.join("/");
            let data = len.map(|n| Data::Pattern { seed: i as u64, size: n as u64 }.bytes());
            if !model_add(&mut model, &path, data.clone()) {
                continue;
            }
            match &data {
                Some(d) => w.add(&entry(&path, EntryKind::File), Content::bytes(d)).unwrap(),
                None => w.add(&entry(&path, EntryKind::Dir), Content::None).unwrap(),
            }
        }
        w.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.img");
        std::fs::write(&file, &img).unwrap();
        fsck_clean(&file);

        let r = FatReader::open(&img).unwrap();
        let got: BTreeMap<String, (FatEntryKind, u64)> = r
            .list(ListLimits::default())
            .unwrap()
            .into_iter()
            .map(|e| (e.path, (e.kind, e.size_bytes)))
            .collect();
        let want: BTreeMap<String, (FatEntryKind, u64)> = model
            .values()
            .map(|(p, d)| match d {
                Some(d) => (p.clone(), (FatEntryKind::File, d.len() as u64)),
                None => (p.clone(), (FatEntryKind::Dir, 0)),
            })
            .collect();
        prop_assert_eq!(&got, &want);
        for (p, d) in model.values() {
            if let Some(d) = d {
                prop_assert_eq!(&r.read_file(p, 1 << 20).unwrap(), d);
            }
        }
    }
}

/// Entries in reverse order (children long before their parents' own
/// entries) give a valid volume with the same tree.
#[test]
fn any_arrival_order() {
    let mut tree = Tree::boot_like();
    tree.entries
        .retain(|(p, _)| !p.starts_with("overlays/dtoverlay-1"));
    let mut rev = tree.clone();
    rev.entries.reverse();
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for (name, t) in [("fwd.img", &tree), ("rev.img", &rev)] {
        let img = dir.path().join(name);
        build(&img, 40 * MIB, opts(FatType::Fat32), t);
        fsck_clean(&img);
        let f = std::fs::File::open(&img).unwrap();
        let mut list = FatReader::open(&f)
            .unwrap()
            .list(ListLimits::default())
            .unwrap();
        list.sort();
        seen.push(list);
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0].len(), tree.expected().len());
}

/// The estimator's minimum holds the tree (fsck clean) and 64 KiB less
/// does not.
#[test]
fn estimator_is_tight() {
    let mut tree = Tree::default();
    tree.big("kernel.img", 1, 6 * MIB + 5)
        .file("config.json", b"{}")
        .file(
            "system-connections/a very long network name.nmconnection",
            b"x",
        );
    for i in 0..300 {
        tree.file(&format!("overlays/overlay-number-{i}.dtbo"), &[1u8; 3000]);
    }
    for t in [FatType::Fat16, FatType::Fat32] {
        let mut est = SizeEstimator::new();
        tree.feed(&mut est).unwrap();
        let o = opts(t);
        let min = est.min_size_bytes(&o).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("min.img");
        build(&img, min, o.clone(), &tree);
        fsck_clean(&img);
        let mut v = Vec::new();
        let smaller = FatWriter::new(&mut v, min - 65536, o.clone()).and_then(|mut w| {
            tree.feed(&mut w)?;
            w.finish()
        });
        assert!(smaller.is_err(), "{t:?}: {min} - 64 KiB still fits");
    }
}

fn new_writer(v: &mut Vec<u8>) -> FatWriter<&mut Vec<u8>> {
    FatWriter::new(v, 40 * MIB, opts(FatType::Fat16)).unwrap()
}

#[test]
fn bad_names_and_conflicts_are_errors() {
    let mut v = Vec::new();
    let mut w = new_writer(&mut v);
    for bad in ["a:b", "dir/trailing.", "x/trailing ", "q?", "ctl\u{1}"] {
        let e = w
            .add(&entry(bad, EntryKind::File), Content::bytes(b"x"))
            .unwrap_err();
        assert!(matches!(e, Error::InvalidName { .. }), "{bad}: {e}");
    }
    let raw = Entry::new(
        TreePath::parse(b"bad\xff").unwrap(),
        EntryKind::File,
        meta(),
    );
    assert!(matches!(
        w.add(&raw, Content::None),
        Err(Error::InvalidName { .. })
    ));

    w.add(
        &entry("Boot/config.json", EntryKind::File),
        Content::bytes(b"{}"),
    )
    .unwrap();
    let e = w
        .add(&entry("boot/CONFIG.JSON", EntryKind::File), Content::None)
        .unwrap_err();
    assert!(matches!(e, Error::NameCollision { .. }), "{e}");
    assert!(e.to_string().contains("/Boot"), "{e}");
    let e = w
        .add(&entry("Boot/config.json", EntryKind::File), Content::None)
        .unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e}");
    let e = w
        .add(&entry("Boot/config.json/x", EntryKind::File), Content::None)
        .unwrap_err();
    assert!(matches!(e, Error::NotADirectory { .. }), "{e}");
    // A directory entry for an existing directory is fine (tar order).
    w.add(&entry("Boot", EntryKind::Dir), Content::None)
        .unwrap();
    w.finish().unwrap();
}

#[test]
fn unrepresentable_kinds_are_refused_with_the_path() {
    let mut v = Vec::new();
    let mut w = new_writer(&mut v);
    let kinds = [
        EntryKind::Symlink {
            target: b"/x".to_vec(),
        },
        EntryKind::Hardlink {
            target: TreePath::parse(b"a").unwrap(),
        },
        EntryKind::CharDev { major: 1, minor: 3 },
        EntryKind::BlockDev { major: 8, minor: 0 },
        EntryKind::Fifo,
        EntryKind::Socket,
    ];
    for k in kinds {
        let e = w.add(&entry("dir/special", k), Content::None).unwrap_err();
        assert!(matches!(e, Error::Unsupported { .. }), "{e}");
        assert!(e.to_string().contains("/dir/special"), "{e}");
    }
}

#[test]
fn size_limits_are_errors() {
    // A file of 4 GiB or more.
    let mut v = Vec::new();
    let mut w = new_writer(&mut v);
    let e = w
        .add(
            &entry("huge.bin", EntryKind::File),
            Content::Preallocated {
                size: 5 << 30,
                head: b"",
            },
        )
        .unwrap_err();
    assert!(
        matches!(e, Error::FileTooLarge { size_bytes, .. } if size_bytes == 5 << 30),
        "{e}"
    );

    // Does not fit: the error says by how much.
    let mut r = Pattern {
        seed: 1,
        size: 30 * MIB,
        pos: 0,
    };
    w.add(
        &entry("a.bin", EntryKind::File),
        Content::Stream {
            size: 30 * MIB,
            reader: &mut r,
        },
    )
    .unwrap();
    let mut r = Pattern {
        seed: 2,
        size: 30 * MIB,
        pos: 0,
    };
    let e = w
        .add(
            &entry("b.bin", EntryKind::File),
            Content::Stream {
                size: 30 * MIB,
                reader: &mut r,
            },
        )
        .unwrap_err();
    match &e {
        Error::NoSpace {
            what,
            needed_bytes,
            available_bytes,
        } => {
            assert_eq!(what, "/b.bin");
            assert_eq!(*needed_bytes, 30 * MIB);
            assert!(*available_bytes < 11 * MIB && *available_bytes > 9 * MIB);
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("bytes short"), "{e}");

    // The FAT16 root directory has 512 slots.
    let mut v = Vec::new();
    let mut w = new_writer(&mut v);
    for i in 0..300 {
        w.add(
            &entry(&format!("file number {i}"), EntryKind::File),
            Content::None,
        )
        .unwrap();
    }
    let e = w.finish().unwrap_err();
    assert!(
        matches!(e, Error::TooManyRootEntries { max: 512, .. }),
        "{e}"
    );

    // Volume sizes.
    let o = FatOptions::new(1, EPOCH);
    assert!(matches!(
        FatWriter::new(Vec::new(), MIB, o.clone()),
        Err(Error::VolumeTooSmall { .. })
    ));
    let e = FatWriter::new(Vec::new(), 20 * MIB, o.clone().fat_type(FatType::Fat32)).unwrap_err();
    match e {
        Error::VolumeTooSmall { min_bytes, .. } => {
            assert!(min_bytes > 32 * MIB && min_bytes < 36 * MIB)
        }
        other => panic!("{other}"),
    }
    assert!(matches!(
        FatWriter::new(Vec::new(), 40 * MIB, o.volume_label("way too long label")),
        Err(Error::InvalidLabel { .. })
    ));
}

struct Failing;
impl std::io::Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("source broke"))
    }
}

#[test]
fn source_and_target_failures_are_errors() {
    let mut v = Vec::new();
    let mut w = new_writer(&mut v);
    let mut short = &b"ten bytes!"[..];
    let e = w
        .add(
            &entry("short", EntryKind::File),
            Content::Stream {
                size: 1000,
                reader: &mut short,
            },
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::ShortContent {
                expected: 1000,
                got: 10,
                ..
            }
        ),
        "{e}"
    );
    let e = w
        .add(
            &entry("broken", EntryKind::File),
            Content::Stream {
                size: 10,
                reader: &mut Failing,
            },
        )
        .unwrap_err();
    assert!(matches!(e, Error::ContentIo { .. }), "{e}");

    // The target region is smaller than the volume: a write fails.
    let mut backing = Vec::new();
    let region = kiln_units::SubRegion::new(&mut backing, 0, MIB);
    let mut w = FatWriter::new(region, 40 * MIB, opts(FatType::Fat16)).unwrap();
    let mut r = Pattern {
        seed: 1,
        size: 5 * MIB,
        pos: 0,
    };
    let e = w
        .add(
            &entry("x", EntryKind::File),
            Content::Stream {
                size: 5 * MIB,
                reader: &mut r,
            },
        )
        .unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
}

/// A small valid image to corrupt.
fn small_image(t: FatType) -> Vec<u8> {
    let size = if t == FatType::Fat32 {
        34 * MIB
    } else {
        4 * MIB
    };
    let mut v = Vec::new();
    let mut w = FatWriter::new(&mut v, size, opts(t)).unwrap();
    w.add(
        &entry("d/e/f.txt", EntryKind::File),
        Content::bytes(b"hello"),
    )
    .unwrap();
    w.add(
        &entry("g.txt", EntryKind::File),
        Content::bytes(&[7u8; 9000]),
    )
    .unwrap();
    w.finish().unwrap();
    v
}

/// Opens, lists and reads everything; any outcome but a panic is fine.
fn poke(img: &[u8]) {
    let Ok(r) = FatReader::open(img) else { return };
    let _ = r.volume_label();
    let limits = ListLimits {
        max_entries: 5000,
        max_depth: 16,
    };
    if let Ok(list) = r.list(limits) {
        for e in list.iter().take(50) {
            if e.kind == FatEntryKind::File {
                let _ = r.read_file(&e.path, 1 << 20);
            }
        }
    }
}

#[test]
fn reader_survives_garbage_and_corruption() {
    // Pure garbage and truncated images.
    let mut x = 0x1234_5678_9abc_def0u64;
    let mut noise = vec![0u8; 2 * MIB as usize];
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    assert!(FatReader::open(&noise[..]).is_err());
    assert!(FatReader::open(&[][..]).is_err());
    for t in [FatType::Fat16, FatType::Fat32] {
        let good = small_image(t);
        poke(&good);
        for cut in [0usize, 11, 512, 4096, 65536, 300_000] {
            poke(&good[..cut.min(good.len())]);
        }
        // Every BPB byte set to 0x00, 0xFF, 0x80 and 0x01 in turn, and
        // random bytes over the reserved area, the FATs and the first
        // clusters (mutated in place and restored: the FAT32 image is
        // 34 MiB, cloning it per case would dominate the test).
        let mut bad = good.clone();
        for off in 0..96usize {
            let keep = bad[off];
            for val in [0x00u8, 0xFF, 0x80, 0x01] {
                bad[off] = val;
                poke(&bad);
            }
            bad[off] = keep;
        }
        for _round in 0..200usize {
            let mut undo = Vec::new();
            for _ in 0..8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let pos = (x as usize) % (700 * 1024).min(bad.len());
                undo.push((pos, bad[pos]));
                bad[pos] = (x >> 32) as u8;
            }
            poke(&bad);
            for (pos, v) in undo.into_iter().rev() {
                bad[pos] = v;
            }
        }
        assert!(bad == good, "restored");
    }
}

#[test]
fn reader_stops_on_directory_cluster_loops() {
    let img = small_image(FatType::Fat32);
    let r = FatReader::open(&img[..]).unwrap();
    drop(r);
    // Find directory `d`'s first cluster from its root entry and make the
    // FAT entry point back to itself: an endless directory.
    let l = kiln_fat::FatLayout::compute(34 * MIB, &opts(FatType::Fat32)).unwrap();
    let root = l.cluster_offset(2) as usize;
    let mut bad = img.clone();
    let mut cluster = None;
    for i in 0..16 {
        let e = &img[root + 32 * i..root + 32 * i + 32];
        if &e[..11] == b"D          " {
            cluster = Some(
                u32::from(u16::from_le_bytes([e[26], e[27]]))
                    | u32::from(u16::from_le_bytes([e[20], e[21]])) << 16,
            );
        }
    }
    let c = cluster.expect("entry D in root");
    // Fill the rest of d's only cluster with deleted entries, so there is
    // no end marker and the reader must follow the chain.
    let dc = l.cluster_offset(c) as usize;
    for slot in 3..16 {
        let at = dc + 32 * slot;
        let mut e = [0u8; 32];
        e[..11].copy_from_slice(b"\xe5ELETED TXT");
        e[11] = 0x20;
        bad[at..at + 32].copy_from_slice(&e);
    }
    for fat in 0..2 {
        let at = l.fat_offset(fat) as usize + 4 * c as usize;
        bad[at..at + 4].copy_from_slice(&c.to_le_bytes());
    }
    let r = FatReader::open(&bad[..]).unwrap();
    let e = r
        .list(ListLimits {
            max_entries: 10_000,
            max_depth: 64,
        })
        .unwrap_err();
    assert!(
        matches!(e, Error::TooManyEntries { .. } | Error::Read { .. }),
        "{e}"
    );
    // Reading still works afterwards (the budget is per operation).
    assert_eq!(r.read_file("g.txt", 10_000).unwrap(), vec![7u8; 9000]);
}
