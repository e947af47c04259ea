//! Input handling without an engine: platform selection, bad inputs
//! (each must fail with an error naming what is wrong), determinism, and
//! apps.json generation from a compose file.
#![allow(missing_docs)]

mod common;

use common::fixture::{self, Comp, Layout, M};
use kiln_oci::{
    AppIds, AppsJson, Compose, Error, FeedError, ImageInput, Platform, Store, StoreOptions,
};
use kiln_tree::{Content, Entry, Timestamp, TreeSink};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};

fn opts(platform: &str) -> StoreOptions {
    StoreOptions {
        platform: Platform::parse(platform).unwrap(),
        time: Timestamp::new(1_700_000_000, 0),
    }
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Hashes every entry and its content: two equal digests mean two equal
/// entry streams.
#[derive(Default)]
struct HashSink(Sha256, u64);
impl TreeSink for HashSink {
    type Error = std::io::Error;
    fn add(&mut self, e: &Entry, c: Content<'_>) -> Result<(), Self::Error> {
        self.0.update(format!("{e:?}").as_bytes());
        match c {
            Content::Stream { reader, .. } => {
                let mut buf = Vec::new();
                reader.read_to_end(&mut buf)?;
                self.0.update(&buf);
            }
            Content::Bytes { data } => self.0.update(data),
            _ => {}
        }
        self.1 += 1;
        Ok(())
    }
}

fn base_layer() -> Vec<u8> {
    fixture::layer_tar(&[
        M::Dir("etc", 0o755),
        M::File("etc/hostname", b"kiln\n".to_vec(), 0o644, (0, 0)),
        M::File("etc/big", vec![7u8; 300_000], 0o644, (0, 0)),
    ])
}

/// A layout with `app:1` as a two-platform index (amd64, arm/v7 or the
/// given arm variant).
fn two_platform_layout(dir: &Path, arm_variant: &str) -> PathBuf {
    let l = dir.join("mp.oci");
    let mut layout = Layout::new(&l);
    let top = fixture::layer_tar(&[M::File("etc/app", b"app\n".to_vec(), 0o644, (0, 0))]);
    let amd = layout.image(
        &[(base_layer(), Comp::Gzip), (top.clone(), Comp::Zstd)],
        "amd64",
        None,
        &["/bin/true"],
    );
    let arm = layout.image(
        &[(base_layer(), Comp::Gzip), (top, Comp::None)],
        "arm",
        Some(arm_variant),
        &["/bin/true"],
    );
    layout.add_index(&[amd.manifest, arm.manifest], "1");
    layout.finish();
    fixture::skopeo_validate(&l, "1", dir, true);
    l
}

#[test]
fn picks_the_platform_with_arm_fallback_and_names_what_is_present() {
    let d = tmp();
    let l = two_platform_layout(d.path(), "v7");
    let input = [ImageInput::new(&l).named("demo/app")];
    let amd = Store::open(&input, opts("linux/amd64")).unwrap();
    assert_eq!(amd.images()[0].platform, "linux/amd64");
    let arm = Store::open(&input, opts("linux/arm/v7")).unwrap();
    assert_eq!(arm.images()[0].platform, "linux/arm/v7");
    assert_ne!(amd.images()[0].id, arm.images()[0].id);
    let err = Store::open(&input, opts("linux/arm64")).unwrap_err();
    match &err {
        Error::PlatformNotFound {
            wanted, present, ..
        } => {
            assert_eq!(wanted, "linux/arm64");
            assert_eq!(present, "linux/amd64, linux/arm/v7");
        }
        other => panic!("wrong error {other}"),
    }
    assert!(
        err.to_string().contains("linux/amd64, linux/arm/v7"),
        "{err}"
    );
    // An armv6-only image serves an armv7 board; an armv7 image does not
    // serve an armv6 board.
    let d6 = tmp();
    let l6 = two_platform_layout(d6.path(), "v6");
    let input6 = [ImageInput::new(&l6).named("demo/app")];
    assert_eq!(
        Store::open(&input6, opts("linux/arm/v7")).unwrap().images()[0].platform,
        "linux/arm/v6"
    );
    assert!(matches!(
        Store::open(&input, opts("linux/arm/v6")),
        Err(Error::PlatformNotFound { .. })
    ));
}

#[test]
fn feeding_is_deterministic_and_directory_equals_archive() {
    let d = tmp();
    let l = two_platform_layout(d.path(), "v7");
    let tar = d.path().join("mp.tar");
    common::run(
        std::process::Command::new("tar")
            .arg("-C")
            .arg(&l)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    );
    let digest = |p: &Path| {
        let s = Store::open(
            &[ImageInput::new(p).named("demo/app")],
            opts("linux/arm/v7"),
        )
        .unwrap();
        let mut h = HashSink::default();
        let rep = s.feed(&mut h).unwrap();
        assert_eq!(rep.entries, h.1);
        (hex::encode(h.0.finalize()), rep)
    };
    let (a, ra) = digest(&l);
    let (b, _) = digest(&l);
    let (c, _) = digest(&tar);
    assert_eq!(a, b, "two feeds differ");
    assert_eq!(a, c, "directory and archive inputs differ");
    let s = Store::open(
        &[ImageInput::new(&l).named("demo/app")],
        opts("linux/arm/v7"),
    )
    .unwrap();
    assert_eq!(s.measure().unwrap(), ra);
    // 300000 + 5 + 4 bytes of files.
    assert_eq!(ra.layers.iter().map(|l| l.size).sum::<u64>(), 300_009);
}

fn single(dir: &Path, layers: &[(Vec<u8>, Comp)]) -> (PathBuf, fixture::Built) {
    let l = dir.join("one.oci");
    let mut layout = Layout::new(&l);
    let b = layout.image(layers, "amd64", None, &["/bin/true"]);
    layout.add(b.manifest.clone(), "1");
    layout.finish();
    (l, b)
}

fn blob_file(l: &Path, digest: &str) -> PathBuf {
    l.join("blobs/sha256").join(&digest[7..])
}

fn layer_digests(l: &Path, b: &fixture::Built) -> Vec<String> {
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob_file(l, b.manifest["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["digest"].as_str().unwrap().to_string())
        .collect()
}

fn feed_err(l: &Path) -> Error {
    let s = Store::open(&[ImageInput::new(l).named("x")], opts("linux/amd64")).unwrap();
    match s.feed(&mut HashSink::default()) {
        Err(FeedError::Input(e)) => e,
        Err(FeedError::Sink(e)) => panic!("sink error {e}"),
        Ok(_) => panic!("corrupt input accepted"),
    }
}

#[test]
fn digest_mismatch_names_the_blob() {
    let d = tmp();
    let (l, b) = single(d.path(), &[(base_layer(), Comp::None)]);
    let layer = layer_digests(&l, &b).remove(0);
    let f = blob_file(&l, &layer);
    let mut data = std::fs::read(&f).unwrap();
    // Flip a byte of file data (the tar still parses).
    data[5000] ^= 0xff;
    std::fs::write(&f, data).unwrap();
    let e = feed_err(&l);
    assert!(
        matches!(&e, Error::DigestMismatch { digest, .. } if *digest == layer),
        "{e}"
    );
    assert!(e.to_string().contains(&layer));
    // A corrupt config is caught when opening.
    let d2 = tmp();
    let (l2, b2) = single(d2.path(), &[(base_layer(), Comp::Gzip)]);
    let cf = blob_file(&l2, &b2.config_digest);
    let mut c = std::fs::read(&cf).unwrap();
    c[10] ^= 1;
    std::fs::write(&cf, c).unwrap();
    let e = Store::open(&[ImageInput::new(&l2).named("x")], opts("linux/amd64")).unwrap_err();
    assert!(
        matches!(&e, Error::DigestMismatch { digest, .. } if *digest == b2.config_digest),
        "{e}"
    );
}

#[test]
fn wrong_diff_id_is_refused() {
    let d = tmp();
    let l = d.path().join("bad.oci");
    let mut layout = Layout::new(&l);
    let b = layout.image(&[(base_layer(), Comp::Gzip)], "amd64", None, &["/bin/true"]);
    // Rewrite the config with another diff ID, and the manifest with it.
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob_file(&l, &b.config_digest)).unwrap()).unwrap();
    cfg["rootfs"]["diff_ids"] = json!([fixture::sha(b"not the layer")]);
    let cb = serde_json::to_vec(&cfg).unwrap();
    let (cd, cs) = layout.blob(&cb);
    let mut m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob_file(&l, b.manifest["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    m["config"]["digest"] = json!(cd);
    m["config"]["size"] = json!(cs);
    let mb = serde_json::to_vec(&m).unwrap();
    let (md, ms) = layout.blob(&mb);
    layout.add(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms}), "1");
    layout.finish();
    let e = feed_err(&l);
    assert!(matches!(e, Error::DiffIdMismatch { .. }), "{e}");
}

#[test]
fn missing_blob_and_unsupported_media_type() {
    let d = tmp();
    let (l, b) = single(
        d.path(),
        &[(base_layer(), Comp::Gzip), (base_layer(), Comp::Zstd)],
    );
    let layers = layer_digests(&l, &b);
    std::fs::remove_file(blob_file(&l, &layers[1])).unwrap();
    let e = Store::open(&[ImageInput::new(&l).named("x")], opts("linux/amd64")).unwrap_err();
    assert!(
        matches!(&e, Error::MissingBlob { digest, .. } if *digest == layers[1]),
        "{e}"
    );

    let d = tmp();
    let l = d.path().join("mt.oci");
    let mut layout = Layout::new(&l);
    let b = layout.image(&[(base_layer(), Comp::Gzip)], "amd64", None, &["/bin/true"]);
    let mut m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob_file(&l, b.manifest["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    m["layers"][0]["mediaType"] =
        json!("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip");
    let (md, ms) = layout.blob(&serde_json::to_vec(&m).unwrap());
    layout.add(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms}), "1");
    layout.finish();
    let e = Store::open(&[ImageInput::new(&l).named("x")], opts("linux/amd64")).unwrap_err();
    assert!(
        matches!(&e, Error::UnsupportedMediaType { media_type, .. } if media_type.contains("nondistributable")),
        "{e}"
    );
}

#[test]
fn hostile_layers_are_refused() {
    use tar::EntryType as T;
    let cases: Vec<(&str, Vec<M>)> = vec![
        ("dotdot", vec![M::Hostile("../evil", T::Regular, None)]),
        (
            "absolute",
            vec![M::Hostile("/etc/shadow", T::Regular, None)],
        ),
        (
            "inner dotdot",
            vec![M::Hostile("a/../../b", T::Regular, None)],
        ),
        (
            "hardlink escaping",
            vec![M::Hostile("x", T::Link, Some("../../etc/shadow"))],
        ),
        (
            "hardlink to unseen",
            vec![M::Hostile("x", T::Link, Some("never/seen"))],
        ),
    ];
    for (what, members) in cases {
        let d = tmp();
        let (l, _) = single(d.path(), &[(fixture::layer_tar(&members), Comp::Gzip)]);
        let e = feed_err(&l);
        assert!(
            matches!(
                &e,
                Error::Layer {
                    source: kiln_tree::Error::HostilePath { .. }
                        | kiln_tree::Error::DanglingHardlink { .. },
                    ..
                }
            ),
            "{what}: {e}"
        );
    }
}

#[test]
fn not_an_image_and_unnamed_images_are_refused() {
    let d = tmp();
    std::fs::write(d.path().join("x"), b"x").unwrap();
    assert!(matches!(
        Store::open(&[ImageInput::new(d.path())], opts("linux/amd64")),
        Err(Error::InvalidInput { .. })
    ));
    let (l, _) = single(d.path(), &[(base_layer(), Comp::Gzip)]);
    // ref.name "1" is a bare tag: without a name the image cannot be stored.
    let e = Store::open(&[ImageInput::new(&l)], opts("linux/amd64")).unwrap_err();
    assert!(e.to_string().contains("no name"), "{e}");
}

const COMPOSE: &str = r#"
version: "2.1"
services:
  api:
    image: demo/app:1
    environment: {PORT: "8080"}
    labels: {io.kiln.role: api}
    volumes: ["data:/data"]
    ports: ["8080:8080"]
    restart: always
  db:
    image: demo/app@DIGEST
    privileged: true
volumes:
  data: {}
"#;

#[test]
fn apps_json_uses_the_stored_digest_references() {
    let d = tmp();
    let l = two_platform_layout(d.path(), "v7");
    let store = Store::open(
        &[ImageInput::new(&l).named("demo/app")],
        opts("linux/arm/v7"),
    )
    .unwrap();
    let img = &store.images()[0];
    let yaml = COMPOSE.replace("DIGEST", &img.manifest_digest.to_string());
    let compose = Compose::parse(Path::new("docker-compose.yml"), yaml.as_bytes()).unwrap();
    let ids = AppIds::derive(b"seed", "bob");
    let config = [("HOST_CONFIG_gpu_mem".to_string(), "16".to_string())]
        .into_iter()
        .collect();
    let apps = AppsJson::build(&compose, &store, &ids, &config, Some(true)).unwrap();
    let bytes = apps.to_bytes();
    assert_eq!(
        bytes,
        AppsJson::build(&compose, &store, &ids, &config, Some(true))
            .unwrap()
            .to_bytes()
    );
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let rel = &v["apps"][&ids.app_uuid]["releases"][&ids.release_commit];
    let want = format!("demo/app@{}", img.manifest_digest);
    assert_eq!(rel["services"]["api"]["image"], want);
    assert_eq!(rel["services"]["db"]["image"], want);
    assert_eq!(rel["services"]["api"]["environment"]["PORT"], "8080");
    assert_eq!(rel["services"]["db"]["composition"]["privileged"], true);
    assert_eq!(rel["volumes"], json!({"data": {}}));
    assert_eq!(v["pinDevice"], true);
    assert_eq!(v["config"]["HOST_CONFIG_gpu_mem"], "16");
    // The reference apps.json uses is in repositories.json.
    let repos: serde_json::Value = serde_json::from_slice(&store.repositories_json()).unwrap();
    assert_eq!(
        repos["Repositories"]["demo/app"][&want],
        json!(img.id.to_string())
    );
    // Keys sorted at every level.
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.find("\"apps\"").unwrap() < text.find("\"config\"").unwrap());

    let bad = Compose::parse(
        Path::new("c.yml"),
        b"services:\n  web:\n    image: demo/missing:1\n",
    )
    .unwrap();
    let e = AppsJson::build(&bad, &store, &ids, &config, None).unwrap_err();
    assert!(
        matches!(&e, Error::ImageNotProvided { service, .. } if service == "web"),
        "{e}"
    );
    assert!(e.to_string().contains("demo/app:1"), "{e}");
}

#[test]
fn corrupt_compressed_layer_is_named_as_corrupt() {
    let d = tmp();
    let (l, b) = single(d.path(), &[(base_layer(), Comp::Gzip)]);
    let layer = layer_digests(&l, &b).remove(0);
    let f = blob_file(&l, &layer);
    let mut z = std::fs::read(&f).unwrap();
    let mid = z.len() / 2;
    z[mid] ^= 0x55;
    std::fs::write(&f, z).unwrap();
    let e = feed_err(&l);
    assert!(
        matches!(&e, Error::DigestMismatch { digest, .. } if *digest == layer),
        "{e}"
    );
}

#[test]
fn docker_save_archive_of_another_platform_is_refused() {
    let d = tmp();
    let l = d.path().join("arm.oci");
    let mut layout = Layout::new(&l);
    let b = layout.image(
        &[(base_layer(), Comp::Gzip)],
        "arm",
        Some("v7"),
        &["/bin/true"],
    );
    layout.add(b.manifest, "1");
    layout.finish();
    let tar = d.path().join("arm.docker.tar");
    fixture::skopeo_docker_archive(&l, "1", &tar, "demo/arm:1");
    let e = Store::open(&[ImageInput::new(&tar)], opts("linux/amd64")).unwrap_err();
    assert!(
        matches!(&e, Error::PlatformNotFound { present, .. } if present == "linux/arm/v7"),
        "{e}"
    );
    let s = Store::open(&[ImageInput::new(&tar)], opts("linux/arm/v7")).unwrap();
    let img = s.find("demo/arm:1").unwrap();
    assert!(img.manifest_digest_computed);
    // Same archive, same computed digest; the layers verify on feed.
    let again = Store::open(&[ImageInput::new(&tar)], opts("linux/arm/v7")).unwrap();
    assert_eq!(again.images()[0].manifest_digest, img.manifest_digest);
    s.measure().unwrap();
}

#[test]
fn names_from_annotations_and_conflicting_tags() {
    let d = tmp();
    let l = d.path().join("named.oci");
    let mut layout = Layout::new(&l);
    let a = layout.image(&[(base_layer(), Comp::Gzip)], "amd64", None, &["/a"]);
    let mut desc = a.manifest.clone();
    desc["annotations"] = json!({
        "io.containerd.image.name": "docker.io/library/foo:2",
        "org.opencontainers.image.ref.name": "2"
    });
    let b = layout.image(&[(base_layer(), Comp::Gzip)], "amd64", None, &["/b"]);
    layout.add(b.manifest.clone(), "registry.local:5000/team/bar:3");
    layout.finish();
    let mut idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(l.join("index.json")).unwrap()).unwrap();
    idx["manifests"].as_array_mut().unwrap().push(desc);
    std::fs::write(l.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    // Without a name for the input: names come from the annotations.
    let s = Store::open(&[ImageInput::new(&l)], opts("linux/amd64")).unwrap();
    assert_eq!(s.find("foo:2").unwrap().id.to_string(), a.config_digest);
    assert_eq!(
        s.find("docker.io/library/foo:2").unwrap().id.to_string(),
        a.config_digest
    );
    assert_eq!(
        s.find("registry.local:5000/team/bar:3")
            .unwrap()
            .id
            .to_string(),
        b.config_digest
    );
    let refs = s.references();
    assert!(refs.contains(&"foo:2".to_string()), "{refs:?}");

    // The same tag for two different images is refused.
    let l2 = d.path().join("other.oci");
    let mut other = Layout::new(&l2);
    let c = other.image(&[(base_layer(), Comp::None)], "amd64", None, &["/c"]);
    other.add(c.manifest, "foo:2");
    other.finish();
    let e = Store::open(
        &[ImageInput::new(&l), ImageInput::new(&l2)],
        opts("linux/amd64"),
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::ConflictingReference { reference, .. } if reference == "foo:2"),
        "{e}"
    );
}

/// Records every entry (with a digest of its content) into a shared list.
struct Rec<'a>(&'a std::sync::Mutex<Vec<String>>);
impl TreeSink for Rec<'_> {
    type Error = std::io::Error;
    fn add(&mut self, e: &Entry, c: Content<'_>) -> Result<(), Self::Error> {
        let mut h = Sha256::new();
        match c {
            Content::Stream { reader, .. } => {
                let mut buf = Vec::new();
                reader.read_to_end(&mut buf)?;
                h.update(&buf);
            }
            Content::Bytes { data } => h.update(data),
            _ => {}
        }
        let line = format!("{e:?} {}", hex::encode(h.finalize()));
        self.0.lock().unwrap().push(line);
        Ok(())
    }
}

#[test]
fn parallel_sizing_feeds_the_same_entries() {
    let d = tmp();
    let l = d.path().join("two.oci");
    let mut layout = Layout::new(&l);
    let top = |n: &'static str| {
        fixture::layer_tar(&[
            M::Dir("srv", 0o755),
            M::File(n, vec![3u8; 70_000], 0o644, (0, 0)),
            M::File("etc/hostname", n.as_bytes().to_vec(), 0o644, (0, 0)),
        ])
    };
    let a = layout.image(
        &[(base_layer(), Comp::Gzip), (top("srv/a"), Comp::Zstd)],
        "amd64",
        None,
        &["/bin/a"],
    );
    layout.add(a.manifest, "a");
    let b = layout.image(
        &[
            (base_layer(), Comp::Gzip),
            (top("srv/b"), Comp::Gzip),
            (top("srv/c"), Comp::None),
        ],
        "amd64",
        None,
        &["/bin/b"],
    );
    layout.add(b.manifest.clone(), "b");
    layout.finish();
    let s = Store::open(&[ImageInput::new(&l).named("demo/x")], opts("linux/amd64")).unwrap();
    let serial = std::sync::Mutex::new(Vec::new());
    let want = s.feed(&mut Rec(&serial)).unwrap();
    let mut want_lines = serial.into_inner().unwrap();
    want_lines.sort();
    assert_eq!(want.layers.len(), 4);
    for workers in [1, 2, 3, 8] {
        let shared = std::sync::Mutex::new(Vec::new());
        let got = s
            .feed_for_sizing_parallel(|| Rec(&shared), workers)
            .unwrap();
        let mut lines = shared.into_inner().unwrap();
        lines.sort();
        assert_eq!(lines, want_lines, "{workers} workers");
        assert_eq!(got, want, "{workers} workers");
    }
    // A corrupt layer is still named as such.
    let layer = layer_digests(&l, &b).remove(1);
    let f = blob_file(&l, &layer);
    let mut z = std::fs::read(&f).unwrap();
    let mid = z.len() / 2;
    z[mid] ^= 0x55;
    std::fs::write(&f, z).unwrap();
    let shared = std::sync::Mutex::new(Vec::new());
    match s.feed_for_sizing_parallel(|| Rec(&shared), 2) {
        Err(FeedError::Input(Error::DigestMismatch { digest, .. })) => assert_eq!(digest, layer),
        other => panic!("{other:?}"),
    }
}
