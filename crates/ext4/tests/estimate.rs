//! Sizing before writing, and the errors for trees that do not fit.

mod common;
use common::*;
use kiln_ext4::{Error, Ext4Estimator, Ext4Options, Ext4Writer};
use kiln_tree::{EntryKind, TreePath};

fn trees() -> Vec<(&'static str, Vec<Item>)> {
    let mut small = vec![file("etc/hostname", b"kiln\n"), dir("var/lib")];
    small.push(item(
        "swapfile",
        EntryKind::File,
        meta(0o600),
        Body::Prealloc {
            size: 64 << 20,
            head: vec![1; 4096],
        },
    ));
    let mut many = Vec::new();
    for i in 0..20_000 {
        many.push(file(
            &format!("d{}/file-{i}", i % 50),
            &vec![i as u8; (i % 9000) as usize],
        ));
    }
    let mut xattrs = Vec::new();
    for i in 0..500 {
        let mut f = file(&format!("x/{i}"), b"v");
        f.entry.meta.xattrs = vec![xa("user.big", &vec![b'x'; 1000])];
        xattrs.push(f);
    }
    let mut bigdir = Vec::new();
    for i in 0..30_000 {
        bigdir.push(item(
            &format!("one/a-rather-long-file-name-{i:08}"),
            EntryKind::Fifo,
            meta(0o644),
            Body::None,
        ));
    }
    vec![
        ("small", small),
        ("many", many),
        ("xattrs", xattrs),
        ("bigdir", bigdir),
    ]
}

#[test]
fn estimate_fits_exactly_and_is_not_absurd() {
    let dir = tempfile::tempdir().unwrap();
    for (name, items) in trees() {
        let mut est = Ext4Estimator::new();
        feed(&items, &mut est).unwrap();
        let opts = Ext4Options::new(0).inode_ratio(8192).uuid([4; 16]);
        let min = est.min_size_bytes(&opts, 0).unwrap();
        // Writing at exactly the estimate succeeds and is valid.
        let img = write_image(
            dir.path(),
            &format!("{name}.img"),
            &items,
            opts.clone().size(min),
        );
        e2fsck_clean(&img);
        // Not absurd: compare with what was actually used.
        let f = std::fs::File::create(dir.path().join("probe.img")).unwrap();
        let mut w = Ext4Writer::new(f, opts.clone().size(min)).unwrap();
        feed(&items, &mut w).unwrap();
        let r = w.finish().unwrap();
        let used = (r.blocks_count - r.free_blocks) * 4096;
        // The tree is bound either by its blocks or, at one inode per
        // 8 KiB, by its inode count.
        let by_inodes = est.inodes_needed() * 8192;
        assert!(
            min <= (used + used / 4 + (48 << 20)).max(by_inodes + by_inodes / 20 + (8 << 20)),
            "{name}: estimate {min} vs used {used}"
        );
        // Headroom is honoured: at least that much stays free.
        let with = est.min_size_bytes(&opts, 100 << 20).unwrap();
        let mut w = Ext4Writer::new(Vec::new(), opts.clone().size(with)).unwrap();
        feed(&items, &mut w).unwrap();
        let r = w.finish().unwrap();
        assert!(
            r.free_blocks * 4096 >= 100 << 20,
            "{name}: {} free",
            r.free_blocks * 4096
        );
    }
}

#[test]
fn does_not_fit_reports_shortfall_and_minimum() {
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<Item> = (0..40)
        .map(|i| file(&format!("f{i}"), &vec![1u8; 1 << 20]))
        .collect();
    let f = std::fs::File::create(dir.path().join("x.img")).unwrap();
    let mut w = Ext4Writer::new(f, Ext4Options::new(32 << 20)).unwrap();
    feed(&items, &mut w).unwrap();
    let err = w.finish().unwrap_err();
    let Error::DoesNotFit {
        size_bytes,
        short_bytes,
        min_size_bytes,
    } = err
    else {
        panic!("{err}");
    };
    assert_eq!(size_bytes, 32 << 20);
    assert!(short_bytes > 0 && min_size_bytes >= (40 << 20));
    assert!(err_text(&items, 32 << 20).contains("bytes short"));
    // The reported minimum works.
    let img = write_image(
        dir.path(),
        "ok.img",
        &items,
        Ext4Options::new(min_size_bytes),
    );
    e2fsck_clean(&img);
    verify(&img, &items, false);
}

fn err_text(items: &[Item], size: u64) -> String {
    let mut w = Ext4Writer::new(Vec::new(), Ext4Options::new(size)).unwrap();
    feed(items, &mut w).unwrap();
    w.finish().unwrap_err().to_string()
}

#[test]
fn clear_errors() {
    let mut w = Ext4Writer::new(Vec::new(), Ext4Options::new(8 << 20).inode_count(16)).unwrap();
    let r = feed(
        &(0..100)
            .map(|i| file(&format!("f{i}"), b""))
            .collect::<Vec<_>>(),
        &mut w,
    );
    assert!(r.is_ok());
    let e = w.finish().unwrap_err();
    assert!(matches!(e, Error::TooManyInodes { needed: 111, .. }), "{e}");

    let mut w = Ext4Writer::new(Vec::new(), Ext4Options::new(8 << 20)).unwrap();
    feed(&[file("f", b"x")], &mut w).unwrap();
    let e = feed(&[file("f/child", b"x")], &mut w).unwrap_err();
    assert!(matches!(e, Error::ParentNotDir { .. }), "{e}");
    let e = feed(
        &[item(
            "h",
            EntryKind::Hardlink {
                target: TreePath::parse(b"nope").unwrap(),
            },
            meta(0o644),
            Body::None,
        )],
        &mut w,
    )
    .unwrap_err();
    assert!(matches!(e, Error::BadHardlink { .. }), "{e}");
    let mut bad = file("x", b"");
    bad.entry.meta.xattrs = vec![xa("weird.ns", b"1")];
    assert!(matches!(
        feed(&[bad], &mut w).unwrap_err(),
        Error::Xattr { .. }
    ));
    let mut huge = file("y", b"");
    huge.entry.meta.xattrs = vec![xa("user.huge", &vec![0; 10_000])];
    assert!(matches!(
        feed(&[huge], &mut w).unwrap_err(),
        Error::Xattr { .. }
    ));
    let dev = item(
        "dev",
        EntryKind::CharDev {
            major: 5000,
            minor: 1,
        },
        meta(0o600),
        Body::None,
    );
    assert!(matches!(
        feed(&[dev], &mut w).unwrap_err(),
        Error::TooLarge { .. }
    ));
    // Names over 255 bytes never reach the writer: TreePath refuses them.
    assert!(TreePath::parse("n".repeat(256).as_bytes()).is_err());
    let e = feed(
        &[item(
            "root-link",
            EntryKind::Symlink {
                target: vec![b'a'; 5000],
            },
            meta(0o777),
            Body::None,
        )],
        &mut w,
    );
    assert!(matches!(e.unwrap_err(), Error::InvalidName { .. }));
    feed(&[dir("d"), file("d/x", b"")], &mut w).unwrap();
    assert!(matches!(
        feed(&[file("d", b"")], &mut w).unwrap_err(),
        Error::ReplaceNonEmptyDir { .. }
    ));
    w.finish().unwrap();

    assert!(matches!(
        Ext4Writer::new(Vec::new(), Ext4Options::new(100_000)).unwrap_err(),
        Error::TooSmall { .. }
    ));
    assert!(matches!(
        Ext4Writer::new(Vec::new(), Ext4Options::new(8 << 20).reserved_percent(60)).unwrap_err(),
        Error::InvalidOptions { .. }
    ));
}

/// Issue 16 finding 13: headroom past the largest filesystem (16 TiB) is
/// reported as such, not as "too many inodes".
#[test]
fn headroom_past_16_tib_says_so() {
    let est = Ext4Estimator::new();
    let e = est
        .min_size_bytes(&Ext4Options::new(0), 99_999_000_000_000_000)
        .unwrap_err();
    assert!(matches!(e, Error::InvalidOptions { .. }), "{e:?}");
    assert!(e.to_string().contains("16 TiB"), "{e}");
    assert_eq!(e.exit_code(), 2);
    // Just under the limit still sizes.
    let n = est.min_size_bytes(&Ext4Options::new(0), 8 << 40).unwrap();
    assert!(n > 8 << 40 && n <= u64::from(u32::MAX) * 4096, "{n}");
}
