//! Base-image mode, data partition: a store written by a real engine
//! (`docker load` of demo/db into a private dockerd, plus a tag that the
//! new preload also sets) is read back as a tree — from the directory and,
//! as in a real base image, from an ext4 made of it by `mke2fs -d` through
//! kiln's `Ext4Reader` — and the demo app's store is merged onto it with
//! `Store::feed_onto` into a new ext4 written by `Ext4Writer`. `e2fsck -fn`
//! must be clean, and a fresh dockerd on the result lists the old and the
//! new images, resolves the shared tag to the new image, keeps the old
//! image, and runs old and new images (the new ones are children of a base
//! layer the old engine wrote with its own random cache id) offline.

use kiln_e2e::engine::{Engine, DEMO_SERVICES};
use kiln_e2e::*;
use kiln_ext4::{Ext4Options, Ext4Reader, Ext4Writer, Visit};
use kiln_oci::merge::ViewError;
use kiln_oci::{DirStoreView, ExistingStore, ImageInput, Platform, Store, StoreOptions, StoreView};
use kiln_tree::dir::DirSource;
use kiln_tree::{Content, Entry, PrefixSink, SourceOptions, Timestamp, TreePath, TreeSink};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `StoreView` over an existing ext4 (what the pipeline does for a base
/// image's data partition): paths under `prefix` (`docker`).
struct Ext4View<'a> {
    fs: &'a Ext4Reader<std::fs::File>,
    prefix: &'a str,
}
impl Ext4View<'_> {
    fn path(&self, p: &str) -> Result<TreePath, ViewError> {
        Ok(TreePath::parse(format!("{}/{p}", self.prefix).as_bytes())?)
    }
}
impl StoreView for Ext4View<'_> {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, ViewError> {
        Ok(self
            .fs
            .read_file(&self.path(path)?, kiln_oci::merge::MAX_METADATA_BYTES)?)
    }
    fn list(&self, path: &str) -> Result<Option<Vec<String>>, ViewError> {
        Ok(self.fs.list_dir(&self.path(path)?)?.map(|v| {
            v.into_iter()
                .map(|e| String::from_utf8_lossy(&e.name).into_owned())
                .collect()
        }))
    }
}

/// Drops the paths the merge replaces (for sources without a filter).
struct Skip<'a, S> {
    inner: S,
    skip: &'a [TreePath],
}
impl<S: TreeSink> TreeSink for Skip<'_, S> {
    type Error = S::Error;
    fn add(&mut self, e: &Entry, c: Content<'_>) -> Result<(), Self::Error> {
        if self.skip.contains(&e.path) {
            if let Content::Stream { reader, .. } = c {
                let _drained = std::io::copy(reader, &mut std::io::sink());
            }
            return Ok(());
        }
        self.inner.add(e, c)
    }
}

fn demo_store() -> Store {
    let app = repo().join(".cache/demo-app");
    if !app.join("api.oci").is_dir() {
        ok(Command::new("sh").arg(repo().join("demo/app/make-demo-app.sh")));
    }
    let inputs: Vec<ImageInput> = ["api", "db", "proxy"]
        .iter()
        .map(|n| ImageInput::new(app.join(format!("{n}.oci"))))
        .collect();
    Store::open(
        &inputs,
        StoreOptions {
            platform: Platform::parse("linux/amd64").unwrap(),
            time: Timestamp::new(1_700_000_000, 0),
        },
    )
    .unwrap()
}

/// Writes the merged data partition into `out` from an old tree fed by
/// `feed_old` and the demo store; returns the new images' ids by tag.
fn write_merged(
    out: &Path,
    existing: &ExistingStore,
    store: &Store,
    feed_old: impl FnOnce(&mut Ext4Writer<std::fs::File>),
) {
    let size = 512u64 << 20;
    let f = std::fs::File::create(out).unwrap();
    f.set_len(size).unwrap();
    let mut w =
        Ext4Writer::new(f, Ext4Options::new(size).label("resin-data").uuid([5; 16])).unwrap();
    feed_old(&mut w);
    let rep = store
        .feed_onto(
            existing,
            &mut PrefixSink::new(&mut w, TreePath::parse(b"docker").unwrap()),
        )
        .unwrap();
    // Only api's and proxy's own layers are new: the busybox base and
    // all of db come from the old store.
    assert_eq!(rep.layers.len(), 2, "{rep:?}");
    w.finish().unwrap();
    e2fsck_clean(out);
}

fn check_with_engine(scratch: &Path, img: &Path, old_db_id: &str, store: &Store) {
    let mnt = scratch.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    ok(Command::new("mount")
        .args(["-o", "ro,loop", "-t", "ext4"])
        .arg(img)
        .arg(&mnt));
    let root = scratch.join("data-root");
    let cp = run(Command::new("cp")
        .arg("-a")
        .arg(mnt.join("docker"))
        .arg(&root));
    let _ = Command::new("umount").arg(&mnt).status();
    assert!(
        cp.status.success(),
        "{}",
        String::from_utf8_lossy(&cp.stderr)
    );
    let mut engine = Engine::start(&scratch.join("engine"), &root);
    let listed = engine.docker(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    for tag in ["demo/api:1.0", "demo/db:1.0", "demo/proxy:1.0"] {
        assert!(listed.contains(tag), "{tag} missing from:\n{listed}");
    }
    // The tag both stores set points at the new image; the old image
    // that had it is still there.
    let api = engine.docker(&["image", "inspect", "--format", "{{.Id}}", "demo/api:1.0"]);
    assert_eq!(
        api.trim(),
        store.find("demo/api:1.0").unwrap().id.to_string()
    );
    let db = engine.docker(&["image", "inspect", "--format", "{{.Id}}", "demo/db:1.0"]);
    assert_eq!(db.trim(), old_db_id);
    // Old image (db, written by the old engine) and new ones (api, proxy:
    // new layers on the old engine's base layer) run offline.
    for (svc, port, cmd) in DEMO_SERVICES {
        let image = format!("demo/{svc}:1.0");
        assert_eq!(engine.health(&image, port, cmd), "ok", "{svc}");
    }
    engine.stop_clean();
}

/// The merged store on disk: api's own layer sits on the old engine's
/// base layer (its random cache id and link, not kiln's derived ones),
/// and repositories.json keeps the old references.
fn check_layout(img: &Path, existing: &ExistingStore, store: &Store) {
    let fs = Ext4Reader::open(std::fs::File::open(img).unwrap()).unwrap();
    let p = |s: &str| TreePath::parse(s.as_bytes()).unwrap();
    let read = |s: &str| String::from_utf8(fs.read_file(&p(s), 1 << 20).unwrap().unwrap()).unwrap();
    let api = store.find("demo/api:1.0").unwrap();
    let chain = api.chain_ids();
    let (base, top) = (chain[0], chain[1]);
    let old_base = existing.layer(&base).expect("old store has the base layer");
    assert_ne!(
        old_base.cache_id,
        kiln_oci::cache_id(&base),
        "engine ids are random"
    );
    let cid = read(&format!(
        "docker/image/overlay2/layerdb/sha256/{}/cache-id",
        top.hex()
    ));
    assert_eq!(cid, kiln_oci::cache_id(&top));
    assert_eq!(
        read(&format!("docker/overlay2/{cid}/lower")),
        format!("l/{}", old_base.link)
    );
    assert_eq!(
        read(&format!(
            "docker/image/overlay2/layerdb/sha256/{}/parent",
            top.hex()
        )),
        base.to_string()
    );
    // The old base layer's directory is the old engine's, with its link.
    assert_eq!(
        fs.read_link(&p(&format!("docker/overlay2/l/{}", old_base.link)))
            .unwrap()
            .unwrap(),
        format!("../{}/diff", old_base.cache_id).into_bytes()
    );
    assert!(fs
        .kind_of(&p(&format!(
            "docker/overlay2/{}/committed",
            old_base.cache_id
        )))
        .unwrap()
        .is_some());
    // No second copy of the base layer under kiln's id.
    assert!(fs
        .kind_of(&p(&format!(
            "docker/overlay2/{}",
            kiln_oci::cache_id(&base)
        )))
        .unwrap()
        .is_none());
    let repos: serde_json::Value =
        serde_json::from_str(&read("docker/image/overlay2/repositories.json")).unwrap();
    let r = &repos["Repositories"];
    assert_eq!(r["demo/api"]["demo/api:1.0"], api.id.to_string());
    for (name, refs) in existing.repositories() {
        for (reference, id) in refs {
            if reference != "demo/api:1.0" {
                assert_eq!(r[name][reference], id.as_str(), "old {reference} kept");
            }
        }
    }
}

#[test]
fn merge_onto_a_store_written_by_dockerd() {
    require("mke2fs", "e2fsprogs");
    require("skopeo", "skopeo");
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let store = demo_store();
    // The old store: demo/db loaded by a real engine, and demo/api:1.0
    // tagged onto it (the new preload sets that tag too).
    let old_root = d.path().join("part/docker");
    std::fs::create_dir_all(&old_root).unwrap();
    let archive = d.path().join("db.tar");
    ok(Command::new("skopeo")
        .args(["copy", "--quiet", "--override-arch", "amd64"])
        .arg(format!(
            "oci:{}:1.0",
            repo().join(".cache/demo-app/db.oci").display()
        ))
        .arg(format!("docker-archive:{}:demo/db:1.0", archive.display())));
    let old_db_id = {
        let mut e = Engine::start(&d.path().join("old-engine"), &old_root);
        e.docker(&["load", "-q", "-i", archive.to_str().unwrap()]);
        e.docker(&["tag", "demo/db:1.0", "demo/api:1.0"]);
        let id = e.docker(&["image", "inspect", "--format", "{{.Id}}", "demo/db:1.0"]);
        e.stop_clean();
        id.trim().to_string()
    };
    let skip: Vec<TreePath> = ExistingStore::SKIP_PATHS
        .iter()
        .map(|p| TreePath::parse(format!("docker/{p}").as_bytes()).unwrap())
        .collect();

    // 1. The old store as a directory.
    let existing = ExistingStore::scan(&DirStoreView::new(&old_root)).unwrap();
    assert_eq!(existing.layer_count(), 2);
    let dir_img = d.path().join("from-dir.img");
    write_merged(&dir_img, &existing, &store, |w| {
        DirSource::new(&old_root, SourceOptions::default())
            .feed(&mut Skip {
                inner: PrefixSink::new(w, TreePath::parse(b"docker").unwrap()),
                skip: &skip,
            })
            .unwrap();
    });
    check_with_engine(&d.path().join("dir"), &dir_img, &old_db_id, &store);

    // 2. The real case: the old data partition is an ext4 (mke2fs -d of
    // the engine's data root, as the OS would hold it).
    let old_part = d.path().join("old-data.img");
    ok(Command::new("mke2fs")
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-L",
            "resin-data",
            "-E",
            "root_owner=0:0",
            "-d",
        ])
        .arg(d.path().join("part"))
        .arg(&old_part)
        .arg("256M"));
    let fs = Ext4Reader::open(std::fs::File::open(&old_part).unwrap()).unwrap();
    let existing = ExistingStore::scan(&Ext4View {
        fs: &fs,
        prefix: "docker",
    })
    .unwrap();
    assert_eq!(existing.layer_count(), 2);
    let ext4_img = d.path().join("from-ext4.img");
    write_merged(&ext4_img, &existing, &store, |w| {
        fs.feed(w, |p, _| {
            if skip.contains(p) {
                Visit::Skip
            } else {
                Visit::Keep
            }
        })
        .unwrap();
    });
    check_layout(&ext4_img, &existing, &store);
    check_with_engine(&d.path().join("ext4"), &ext4_img, &old_db_id, &store);
    let _keep: PathBuf = d.path().to_path_buf();
}
