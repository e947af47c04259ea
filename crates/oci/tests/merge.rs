//! `Store::feed_onto` against a hand-made "old" store (the engine-run
//! proof is `tests/e2e/store_merge.rs` in kiln-e2e): the demo app's base
//! layer exists with a foreign cache id and link, db's config exists, some
//! standard directories exist. Only new things are emitted, new layers sit
//! on the old link, the old parent gets `committed`, and repositories.json
//! is the merge.
#![allow(missing_docs)]

mod common;

use kiln_oci::{cache_id, DirStoreView, ExistingStore, ImageInput, Platform, Store, StoreOptions};
use kiln_tree::{Content, Entry, EntryKind, Timestamp, TreeSink};
use std::collections::BTreeMap;
use std::process::Command;

#[derive(Default)]
struct Rec(BTreeMap<String, (EntryKind, Vec<u8>)>, usize);
impl TreeSink for Rec {
    type Error = std::io::Error;
    fn add(&mut self, e: &Entry, c: Content<'_>) -> Result<(), Self::Error> {
        let mut data = Vec::new();
        match c {
            Content::Stream { reader, .. } => {
                reader.read_to_end(&mut data)?;
            }
            Content::Bytes { data: d } => data = d.to_vec(),
            _ => {}
        }
        let key = e.path.to_string();
        assert!(
            self.0.insert(key.clone(), (e.kind.clone(), data)).is_none(),
            "{key} twice"
        );
        self.1 += 1;
        Ok(())
    }
}

#[test]
fn feed_onto_emits_only_what_is_new() {
    common::require_tool("umoci", "umoci");
    let root = common::repo_root();
    common::run(Command::new("sh").arg(root.join("demo/app/make-demo-app.sh")));
    let app = root.join(".cache/demo-app");
    let inputs: Vec<ImageInput> = ["api", "db", "proxy"]
        .iter()
        .map(|s| ImageInput::new(app.join(format!("{s}.oci"))))
        .collect();
    let store = Store::open(
        &inputs,
        StoreOptions {
            platform: Platform::parse("linux/amd64").unwrap(),
            time: Timestamp::new(1_700_000_000, 0),
        },
    )
    .unwrap();
    let api = store.find("demo/api:1.0").unwrap();
    let db = store.find("demo/db:1.0").unwrap();
    let chain = api.chain_ids();
    let (base, top) = (chain[0], chain[1]);

    // The old store.
    let d = tempfile::tempdir().unwrap();
    let old = d.path();
    let w = |p: &str, data: &[u8]| {
        let p = old.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    w(
        &format!("image/overlay2/layerdb/sha256/{}/cache-id", base.hex()),
        b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    );
    w(
        "overlay2/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef/link",
        b"OLDLINKOLDLINKOLDLINKOLDLI",
    );
    w(
        &format!("image/overlay2/imagedb/content/sha256/{}", db.id.hex()),
        db.config_bytes(),
    );
    w(
        "image/overlay2/repositories.json",
        br#"{"Repositories":{"old/img":{"old/img:1":"sha256:1111111111111111111111111111111111111111111111111111111111111111"},"demo/api":{"demo/api:1.0":"sha256:2222222222222222222222222222222222222222222222222222222222222222"}}}"#,
    );
    let existing = ExistingStore::scan(&DirStoreView::new(old)).unwrap();
    assert_eq!(existing.layer_count(), 1);
    assert!(existing.has_image(&db.id));

    let mut rec = Rec::default();
    let rep = store.feed_onto(&existing, &mut rec).unwrap();
    let got = &rec.0;
    // Only the three top layers are new.
    assert_eq!(rep.layers.len(), 3);
    assert!(rep.layers.iter().all(|l| l.chain_id != base));
    assert!(!got.keys().any(|k| k.contains(&cache_id(&base))));
    assert!(!got.keys().any(|k| k.contains(&base.hex())));
    // New layers sit on the old link; the old parent is marked committed once.
    let top_dir = format!("/overlay2/{}", cache_id(&top));
    assert_eq!(
        got[&format!("{top_dir}/lower")].1,
        b"l/OLDLINKOLDLINKOLDLINKOLDLI"
    );
    assert!(got.contains_key(
        "/overlay2/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef/committed"
    ));
    // Configs: db's exists already, api's is new.
    assert!(!got.contains_key(&format!(
        "/image/overlay2/imagedb/content/sha256/{}",
        db.id.hex()
    )));
    assert!(got.contains_key(&format!(
        "/image/overlay2/imagedb/content/sha256/{}",
        api.id.hex()
    )));
    // Standard directories that exist are not emitted again; missing ones are.
    assert!(!got.contains_key("/overlay2"));
    assert!(!got.contains_key("/image/overlay2/layerdb/sha256"));
    assert!(got.contains_key("/overlay2/l"));
    assert!(got.contains_key("/image/overlay2/distribution"));
    // repositories.json: old tags kept, the shared tag moves to the new image.
    let repos: serde_json::Value =
        serde_json::from_slice(&got["/image/overlay2/repositories.json"].1).unwrap();
    let r = &repos["Repositories"];
    assert_eq!(
        r["old/img"]["old/img:1"],
        "sha256:1111111111111111111111111111111111111111111111111111111111111111"
    );
    assert_eq!(r["demo/api"]["demo/api:1.0"], api.id.to_string());
    assert_eq!(r["demo/db"]["demo/db:1.0"], db.id.to_string());
    assert_eq!(
        ExistingStore::SKIP_PATHS,
        ["image/overlay2/repositories.json"]
    );

    // With nothing to merge with, feed_onto is feed.
    let mut a = Rec::default();
    let mut b = Rec::default();
    store.feed(&mut a).unwrap();
    store.feed_onto(&ExistingStore::empty(), &mut b).unwrap();
    assert_eq!(a.0, b.0);
    assert!(a.1 > rec.1);

    // An old layer whose overlay2 link is missing is a clear error.
    std::fs::remove_file(
        old.join("overlay2/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef/link"),
    )
    .unwrap();
    let e = ExistingStore::scan(&DirStoreView::new(old)).unwrap_err();
    assert!(e.to_string().contains("/link"), "{e}");
}
