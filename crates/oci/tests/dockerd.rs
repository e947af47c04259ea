//! The key acceptance test: a real dockerd (Debian docker.io 20.10) runs
//! on a store kiln wrote, and the store matches, file by file, the one
//! `docker load` writes for the same images.

#![allow(missing_docs)]

mod common;

use common::engine::Engine;
use common::fixture::{self, Comp, Layout, M};
use common::materialise::DirSink;
use kiln_oci::{ImageInput, Platform, Store, StoreOptions};
use kiln_tree::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Fixtures {
    pub layout: PathBuf,
    pub layout_tar: PathBuf,
    pub app3: PathBuf,
    /// reference -> (image id, diff ids)
    pub expect: BTreeMap<String, (String, Vec<String>)>,
}

/// VFS_CAP_REVISION_2 with the effective flag, permitted = CAP_NET_RAW (13).
fn cap_net_raw() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x0200_0001u32.to_le_bytes());
    v.extend_from_slice(&(1u32 << 13).to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v
}

/// The fixtures' layers: base (busybox), l2, l3, an empty one, app2's
/// and app3's.
fn layers() -> [Vec<u8>; 6] {
    let bb = std::fs::read(common::busybox()).unwrap();
    let base = fixture::layer_tar(&[
        M::Dir("bin", 0o755),
        M::File("bin/busybox", bb.clone(), 0o755, (0, 0)),
        M::Sym("bin/sh", "busybox"),
        M::Dir("etc", 0o755),
        M::File(
            "etc/passwd",
            b"root:x:0:0:root:/:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n".to_vec(),
            0o644,
            (0, 0),
        ),
        M::File(
            "etc/group",
            b"root:x:0:\nu:x:1000:\n".to_vec(),
            0o644,
            (0, 0),
        ),
        M::File("etc/motd", b"hello\n".to_vec(), 0o644, (0, 0)),
        M::Dir("data", 0o755),
        M::File("data/old", b"old\n".to_vec(), 0o644, (0, 0)),
        M::Dir("home", 0o755),
        M::Dir("home/u", 0o755),
        M::Dir("tmp", 0o1777),
    ]);
    let long = "long/".to_string() + &"n".repeat(150);
    let long: &'static str = Box::leak(long.into_boxed_str());
    let l2 = fixture::layer_tar(&[
        M::XFile(
            "capbin/busybox",
            bb.clone(),
            0o755,
            vec![
                ("security.capability", cap_net_raw()),
                ("user.kiln", b"yes".to_vec()),
            ],
        ),
        M::Dir("hl", 0o755),
        M::File("hl/a", b"shared inode\n".to_vec(), 0o644, (0, 0)),
        M::Link("hl/b", "hl/a"),
        M::File("bin/su-test", b"#!/bin/sh\n".to_vec(), 0o4755, (0, 0)),
        M::File("home/u/owned", b"mine\n".to_vec(), 0o600, (1000, 1000)),
        M::Dir("run", 0o755),
        M::Fifo("run/fifo"),
        M::Dir("devs", 0o755),
        M::Char("devs/kiln-null", 1, 3),
        M::Raw(b"odd/caf\xe9".to_vec(), b"latin1\n".to_vec()),
        M::File(long, b"long\n".to_vec(), 0o644, (0, 0)),
        M::Sym("etc/alt", "motd"),
    ]);
    let l3 = fixture::layer_tar(&[
        M::Dir("etc", 0o755),
        M::File("etc/.wh.motd", Vec::new(), 0o644, (0, 0)),
        M::Dir("data", 0o750),
        M::File("data/.wh..wh..opq", Vec::new(), 0o644, (0, 0)),
        M::File("data/new", b"new\n".to_vec(), 0o644, (0, 0)),
    ]);
    let empty = fixture::layer_tar(&[]);
    let l_app2 = fixture::layer_tar(&[
        // A root entry (as umoci writes): its metadata goes to diff/.
        M::Dir(".", 0o711),
        M::Dir("srv", 0o755),
        M::File("srv/index.html", b"app2\n".to_vec(), 0o644, (0, 0)),
    ]);
    let l_app3 = fixture::layer_tar(&[
        M::Dir("app3", 0o755),
        M::File("app3/hello", b"app3\n".to_vec(), 0o644, (0, 0)),
    ]);
    [base, l2, l3, empty, l_app2, l_app3]
}

pub fn build_fixtures(dir: &Path) -> Fixtures {
    let [base, l2, l3, empty, l_app2, l_app3] = layers();
    let ldir = dir.join("apps.oci");
    let _ = std::fs::remove_dir_all(&ldir);
    let mut layout = Layout::new(&ldir);
    let cmd = ["/bin/busybox", "sh", "-c", "echo ok"];
    let app1 = layout.image(
        &[
            (base.clone(), Comp::Gzip),
            (l2, Comp::Zstd),
            (l3, Comp::None),
            (empty, Comp::Gzip),
        ],
        "amd64",
        None,
        &cmd,
    );
    layout.add(app1.manifest.clone(), "1.0");
    let app2_amd = layout.image(
        &[(base.clone(), Comp::Gzip), (l_app2.clone(), Comp::Gzip)],
        "amd64",
        None,
        &cmd,
    );
    let app2_arm = layout.image(
        &[(base.clone(), Comp::Gzip), (l_app2, Comp::Gzip)],
        "arm",
        Some("v7"),
        &cmd,
    );
    layout.add_index(
        &[app2_amd.manifest.clone(), app2_arm.manifest.clone()],
        "demo/app2:2.0",
    );
    layout.finish();
    // app3 travels as a docker-save archive (made by skopeo from its own layout).
    let l3dir = dir.join("app3.oci");
    let _ = std::fs::remove_dir_all(&l3dir);
    let mut layout3 = Layout::new(&l3dir);
    let app3 = layout3.image(
        &[(base, Comp::Gzip), (l_app3, Comp::None)],
        "amd64",
        None,
        &cmd,
    );
    layout3.add(app3.manifest.clone(), "app3");
    layout3.finish();
    // Real tools check the layout: skopeo verifies every blob it copies.
    fixture::skopeo_validate(&ldir, "1.0", dir, false);
    fixture::skopeo_validate(&ldir, "demo/app2:2.0", dir, true);
    let app3_tar = dir.join("app3.docker.tar");
    fixture::skopeo_docker_archive(&l3dir, "app3", &app3_tar, "demo/app3:1");
    // The same layout as a plain tar archive (an OCI archive).
    let layout_tar = dir.join("apps.oci.tar");
    common::run(
        Command::new("tar")
            .arg("-C")
            .arg(&ldir)
            .arg("-cf")
            .arg(&layout_tar)
            .arg("."),
    );
    let mut expect = BTreeMap::new();
    expect.insert(
        "demo/app1:1.0".to_string(),
        (app1.config_digest, app1.diff_ids),
    );
    expect.insert(
        "demo/app2:2.0".to_string(),
        (app2_amd.config_digest, app2_amd.diff_ids),
    );
    expect.insert(
        "demo/app3:1".to_string(),
        (app3.config_digest, app3.diff_ids),
    );
    Fixtures {
        layout: ldir,
        layout_tar,
        app3: app3_tar,
        expect,
    }
}

fn opts(platform: &str) -> StoreOptions {
    StoreOptions {
        platform: Platform::parse(platform).unwrap(),
        time: Timestamp::new(1_700_000_000, 0),
    }
}

fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(format!("/var/tmp/kiln-oci-test-{name}"));
    let _ = Command::new("umount").arg("-R").arg(&d).status();
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every path of a store's `image/` and `overlay2/` trees, with ids the
/// engine picks at random replaced by the chain id they belong to, mapped
/// to (type, mode, uid, gid, size, link target, rdev, xattr names).
fn canonical_listing(root: &Path) -> BTreeMap<String, String> {
    let mut ids: Vec<(String, String)> = Vec::new();
    let ldb = root.join("image/overlay2/layerdb/sha256");
    for e in std::fs::read_dir(&ldb).unwrap() {
        let e = e.unwrap();
        let chain = e.file_name().to_string_lossy().into_owned();
        let cid = std::fs::read_to_string(e.path().join("cache-id")).unwrap();
        let link = std::fs::read_to_string(root.join("overlay2").join(&cid).join("link")).unwrap();
        ids.push((cid, format!("CID<{}>", &chain[..12])));
        ids.push((link, format!("LNK<{}>", &chain[..12])));
    }
    let norm = |s: &str| {
        let mut s = s.to_string();
        for (from, to) in &ids {
            s = s.replace(from.as_str(), to);
        }
        s
    };
    let mut out = BTreeMap::new();
    for top in ["image", "overlay2"] {
        let out_ref = &mut out;
        walk(&root.join(top), &mut |p, md| {
            let rel = norm(&String::from_utf8_lossy(
                std::os::unix::ffi::OsStrExt::as_bytes(p.strip_prefix(root).unwrap().as_os_str()),
            ));
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                "d"
            } else if ft.is_symlink() {
                "l"
            } else if ft.is_char_device() {
                "c"
            } else if ft.is_fifo() {
                "p"
            } else {
                "f"
            };
            let target = if ft.is_symlink() {
                norm(&std::fs::read_link(p).unwrap().to_string_lossy())
            } else {
                String::new()
            };
            let size = if ft.is_file() {
                md.len().to_string()
            } else {
                String::new()
            };
            let mut xs: Vec<String> = xattr::list(p)
                .map(|l| l.map(|n| n.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            xs.sort();
            let content = if ft.is_file()
                && (rel.ends_with("/lower")
                    || rel.ends_with("/link")
                    || rel.ends_with("/cache-id")
                    || rel.ends_with("/size")
                    || rel.ends_with("/diff")
                    || rel.ends_with("/parent"))
            {
                norm(&std::fs::read_to_string(p).unwrap())
            } else {
                String::new()
            };
            out_ref.insert(
                rel,
                format!(
                    "{kind} {:o} {}:{} {size} {target} {} {xs:?} {content}",
                    md.mode() & 0o7777,
                    md.uid(),
                    md.gid(),
                    md.rdev()
                ),
            );
        });
    }
    out
}

fn walk(p: &Path, f: &mut dyn FnMut(&Path, &std::fs::Metadata)) {
    let md = std::fs::symlink_metadata(p).unwrap();
    f(p, &md);
    if md.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for n in names {
            walk(&n, f);
        }
    }
}

fn sha_file(p: &Path) -> String {
    fixture::sha(&std::fs::read(p).unwrap())
}

#[test]
fn dockerd_runs_the_written_store_and_matches_docker_load() {
    let dir = scratch("dockerd");
    let fx = build_fixtures(&dir);
    let inputs = [
        ImageInput::new(&fx.layout_tar).named("demo/app1"),
        ImageInput::new(&fx.app3),
    ];
    let store = Store::open(&inputs, opts("linux/amd64")).unwrap();
    println!("{}", store.summary());
    let data = dir.join("data");
    let mut sink = DirSink::new(&data);
    let report = store.feed(&mut sink).unwrap();
    sink.finish().unwrap();
    // Listed before the engine runs containers (which adds runtime state).
    let ours = canonical_listing(&data);
    // The base layer is shared by three images and written once.
    assert_eq!(report.layers.len(), 1 + 3 + 1 + 1, "{report:?}");

    // The overlay conversions are on disk.
    let app1 = store.find("demo/app1:1.0").unwrap();
    let chains = app1.chain_ids();
    let diff3 = data
        .join("overlay2")
        .join(kiln_oci::cache_id(&chains[2]))
        .join("diff");
    assert_eq!(
        xattr::get(diff3.join("data"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    let wh = std::fs::symlink_metadata(diff3.join("etc/motd")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout is not a 0:0 char device"
    );
    let diff2 = data
        .join("overlay2")
        .join(kiln_oci::cache_id(&chains[1]))
        .join("diff");
    assert_eq!(
        xattr::get(diff2.join("capbin/busybox"), "user.kiln")
            .unwrap()
            .as_deref(),
        Some(&b"yes"[..])
    );

    let mut engine = Engine::start(&dir.join("engine"), &data);
    let ls = engine.docker(&[
        "image",
        "ls",
        "--no-trunc",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}}",
    ]);
    let listed: BTreeSet<String> = ls.lines().map(str::to_string).collect();
    let want: BTreeSet<String> = fx
        .expect
        .iter()
        .map(|(r, (id, _))| format!("{r} {id}"))
        .collect();
    assert_eq!(listed, want, "docker image ls");

    for (reference, expected) in &fx.expect {
        check_image(&engine, &store, &dir, reference, expected);
    }

    layer_semantics(&engine);
    // The layer tars docker re-exports are byte-identical to the inputs
    // (same diff IDs, checked above): feed them to a reference engine.
    let all_tar = dir.join("all.docker.tar");
    let mut args = vec!["save", "-o", all_tar.to_str().unwrap()];
    args.extend(fx.expect.keys().map(String::as_str));
    engine.docker(&args);
    engine.stop_clean();

    // docker 20.10's own `docker save` (manifest.json, repositories,
    // <id>/layer.tar) is an input too: same images, same layers.
    let saved = Store::open(&[ImageInput::new(&all_tar)], opts("linux/amd64")).unwrap();
    for (reference, (id, diff_ids)) in &fx.expect {
        let img = saved.find(reference).unwrap();
        assert_eq!(img.id.to_string(), *id);
        assert!(img.manifest_digest_computed);
        assert_eq!(
            img.diff_ids()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            *diff_ids
        );
    }
    let resaved = saved.feed(&mut DirSink::new(&dir.join("resaved"))).unwrap();
    assert_eq!(resaved.layers.len(), report.layers.len());

    // Reference: the same images through `docker load` into a fresh root.
    let ref_root = dir.join("ref-data");
    let mut reference = Engine::start(&dir.join("ref-engine"), &ref_root);
    reference.docker(&["load", "-i", all_tar.to_str().unwrap()]);
    reference.stop();
    let theirs = canonical_listing(&ref_root);
    let skip = |k: &str| {
        k.ends_with("repositories.json")
            || k.contains("/tar-split.json.gz")
            || k.starts_with("image/overlay2/imagedb/metadata/sha256/")
    };
    let mut diffs = Vec::new();
    for k in ours.keys().chain(theirs.keys()).collect::<BTreeSet<_>>() {
        if skip(k) {
            continue;
        }
        let (a, b) = (ours.get(k), theirs.get(k));
        // Whiteout devices and dirs get the engine's clock; sizes of dirs
        // are filesystem-dependent: compare the rest.
        if a != b {
            diffs.push(format!("{k}\n  kiln:   {a:?}\n  docker: {b:?}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "store differs from docker load's:\n{}",
        diffs.join("\n")
    );
    // tar-split: the same records (raw segments, names, sizes, CRC-64s) as
    // the engine's own disassembly of the same layer tars.
    for l in &report.layers {
        let (a, b) = (tar_split(&data, l), tar_split(&ref_root, l));
        assert_eq!(a.len(), b.len(), "tar-split record count of {}", l.chain_id);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x, y, "tar-split of layer {}", l.chain_id);
        }
    }
}

/// The tar-split records the engine store under `root` keeps for layer `l`.
fn tar_split(root: &Path, l: &kiln_oci::LayerReport) -> Vec<serde_json::Value> {
    let f = root
        .join("image/overlay2/layerdb/sha256")
        .join(l.chain_id.hex())
        .join("tar-split.json.gz");
    let mut s = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(f).unwrap()),
        &mut s,
    )
    .unwrap();
    s.lines()
        .map(|x| serde_json::from_str(x).unwrap())
        .collect()
}

/// `docker image inspect` of one preloaded image matches what was fed,
/// it runs offline, and `docker save` re-exports the input's diff IDs.
fn check_image(
    engine: &Engine,
    store: &Store,
    dir: &Path,
    reference: &str,
    (id, diff_ids): &(String, Vec<String>),
) {
    let inspect: serde_json::Value =
        serde_json::from_str(&engine.docker(&["image", "inspect", reference])).unwrap();
    let i = &inspect[0];
    assert_eq!(i["Id"], *id);
    assert_eq!(i["RepoTags"], serde_json::json!([reference]));
    let img = store.find(reference).unwrap();
    assert_eq!(
        i["RepoDigests"],
        serde_json::json!(img.digest_refs()),
        "{reference}"
    );
    assert_eq!(i["RootFS"]["Layers"], serde_json::json!(diff_ids));
    assert_eq!(
        i["Config"]["Cmd"],
        serde_json::json!(["/bin/busybox", "sh", "-c", "echo ok"])
    );
    assert_eq!(i["Config"]["Labels"]["kiln.test"], "1");
    // Runs offline.
    let out = engine.docker(&["run", "--rm", "--network", "none", reference]);
    assert_eq!(out.trim(), "ok");
    // Re-export: every layer has the input's diff ID.
    let save = dir.join("save.tar");
    engine.docker(&["save", "-o", save.to_str().unwrap(), reference]);
    let x = dir.join("save");
    let _ = std::fs::remove_dir_all(&x);
    std::fs::create_dir_all(&x).unwrap();
    common::run(Command::new("tar").arg("-C").arg(&x).arg("-xf").arg(&save));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.join("manifest.json")).unwrap()).unwrap();
    let saved: Vec<String> = m[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| sha_file(&x.join(l.as_str().unwrap())))
        .collect();
    assert_eq!(&saved, diff_ids, "docker save of {reference}");
}

/// Layer semantics inside a container (whiteouts, hardlinks, modes,
/// owners, special files, long names) and a file capability taking effect
/// for an unprivileged user.
fn layer_semantics(engine: &Engine) {
    // Layer semantics inside a container.
    let script = "set -e; \
        test ! -e /etc/motd; \
        test ! -e /data/old; test \"$(cat /data/new)\" = new; \
        test \"$(stat -c %i /hl/a)\" = \"$(stat -c %i /hl/b)\"; test \"$(stat -c %h /hl/a)\" = 2; \
        test \"$(stat -c %a /bin/su-test)\" = 4755; \
        test \"$(stat -c %u:%g /home/u/owned)\" = 1000:1000; \
        test -p /run/fifo; test -c /devs/kiln-null; \
        test \"$(readlink /etc/alt)\" = motd; \
        test \"$(ls /odd | wc -l)\" = 1; \
        test -f /long/$(printf 'n%.0s' $(seq 150)); \
        echo semantics-ok";
    let out = engine.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "demo/app1:1.0",
        "/bin/busybox",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(out.trim(), "semantics-ok");
    // The file capability takes effect for an unprivileged user.
    let st = engine.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "1000:1000",
        "demo/app1:1.0",
        "/capbin/busybox",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert!(
        st.contains("0000000000002000"),
        "capability not effective: {st}"
    );
}
