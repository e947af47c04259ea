//! Bad input: each case gives a clear one-line error naming the file,
//! key or partition, a non-zero exit code, and leaves no output behind.

use kiln_e2e::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn recipe(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    recipe_copy(dir, edit)
}

/// Runs a failing build into `out_dir` and checks the contract.
fn fails(recipe: &Path, out_dir: &Path, extra: &[&str], want_code: i32, want: &[&str]) -> String {
    let out = run(kiln()
        .args(["build", "-q", "--board", "nuc", "--recipe"])
        .arg(recipe)
        .arg("-o")
        .arg(out_dir.join("out.img"))
        .args(extra));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(want_code),
        "exit code; stderr: {err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("kiln: error: "), "{err}");
    for w in want {
        assert!(err.contains(w), "want {w:?} in: {err}");
    }
    let left: Vec<_> = std::fs::read_dir(out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "r.toml" && n != "bad.tar")
        .collect();
    assert!(left.is_empty(), "output left behind: {left:?}");
    err
}

#[test]
fn unknown_key_names_line_and_suggests() {
    let d = tempfile::tempdir().unwrap();
    let r = recipe(d.path(), |s| s.replace("headroom = ", "hedroom = "));
    let line = std::fs::read_to_string(&r)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("hedroom"))
        .unwrap()
        + 1;
    fails(
        &r,
        d.path(),
        &[],
        2,
        &[
            &format!("r.toml:{line}:1"),
            "unknown key `hedroom`",
            "did you mean `headroom`",
        ],
    );
}

#[test]
fn wrong_type_names_key() {
    let d = tempfile::tempdir().unwrap();
    let r = recipe(d.path(), |s| s.replace("size = \"1GiB\"", "size = true"));
    fails(&r, d.path(), &[], 2, &["r.toml:", "invalid type"]);
    let r = recipe(d.path(), |s| {
        s.replace("listenPort = 48484", "listenPort = \"many\"")
    });
    fails(&r, d.path(), &[], 2, &["listenPort"]);
}

#[test]
fn missing_rootfs_names_key_and_path() {
    let d = tempfile::tempdir().unwrap();
    let r = recipe(d.path(), |s| {
        s.replace("rootfs-amd64.tar.gz", "no-such-rootfs.tar.gz")
    });
    fails(
        &r,
        d.path(),
        &[],
        2,
        &["os.amd64.rootfs", "no-such-rootfs.tar.gz"],
    );
}

fn hostile_tar(dir: &Path, name: &str) -> PathBuf {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    // Raw name field: the tar crate's set_path refuses these, an attacker's tool does not.
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_cksum();
    b.append(&h, &b"evil"[..]).unwrap();
    let p = dir.join("bad.tar");
    std::fs::write(&p, b.into_inner().unwrap()).unwrap();
    p
}

#[test]
fn hostile_tar_paths_are_refused() {
    for name in ["../../etc/evil", "/etc/evil", "a/../../evil"] {
        let d = tempfile::tempdir().unwrap();
        let t = hostile_tar(d.path(), name);
        let r = recipe(d.path(), |s| {
            s.replace(
                &format!("{}/rootfs-amd64.tar.gz", demo_inputs().display()),
                t.to_str().unwrap(),
            )
        });
        fails(&r, d.path(), &[], 2, &["resin-rootA", "refusing path"]);
    }
}

#[test]
fn image_larger_than_medium() {
    let d = tempfile::tempdir().unwrap();
    let r = recipe(d.path(), |s| {
        s.replace("size = \"auto\"", "size = \"7GiB\"")
    });
    fails(
        &r,
        d.path(),
        &["--media", "8GB"],
        2,
        &[
            "medium 8GB holds 8000000000 bytes",
            "image needs",
            "it fits 16GB",
        ],
    );
    let r = recipe(d.path(), |s| {
        s.replace("size = \"1GiB\"", "size = \"300GiB\"")
    });
    fails(
        &r,
        d.path(),
        &[],
        2,
        &["no medium of board nuc is large enough"],
    );
    fails(
        &recipe(d.path(), |s| s),
        d.path(),
        &["--media", "1TB"],
        2,
        &["no medium \"1TB\"", "8GB, 16GB"],
    );
}

#[test]
fn output_directory_not_writable() {
    let d = tempfile::tempdir().unwrap();
    let r = recipe(d.path(), |s| s);
    let ro = Tmpfs::new("ro,size=1m");
    fails(
        &r,
        ro.path(),
        &[],
        3,
        &["out.img", "cannot create the output file"],
    );
}

#[test]
fn disk_full_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let r = recipe(d.path(), |s| s);
    // The raw image, and the qcow2 written in place (no raw file).
    for extra in [&[][..], &["--format", "qcow2"]] {
        let small = Tmpfs::new("size=3m");
        // A full disk is an output error (exit 3), whichever writer meets it.
        let err = fails(&r, small.path(), extra, 3, &["No space left on device"]);
        assert!(err.contains("resin-"), "names the partition: {err}");
    }
    // Streamed builds (no image file): the output that fills the disk is
    // named, and the stream stops.
    for (extra, file) in [
        (&["--format", "vmdk"][..], "out.vmdk"),
        (&["--compress", "xz"][..], "out.img.xz"),
    ] {
        let small = Tmpfs::new("size=1m");
        fails(
            &r,
            small.path(),
            extra,
            3,
            &["No space left on device", file],
        );
    }
}

/// A copy of the demo app's OCI layouts with one layer blob corrupted.
#[test]
fn corrupt_preload_blob_is_named_and_nothing_is_left() {
    let d = tempfile::tempdir().unwrap();
    demo_inputs();
    let apps = d.path().join("apps");
    ok(Command::new("cp")
        .arg("-a")
        .arg(repo().join(".cache/demo-app"))
        .arg(&apps));
    // The largest blob of api.oci is a layer: flip its last byte.
    let blobs = apps.join("api.oci/blobs/sha256");
    let mut biggest = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&biggest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&biggest, bytes).unwrap();
    let name = biggest.file_name().unwrap().to_string_lossy().into_owned();
    biggest.pop();
    let r = recipe(d.path(), |s| {
        s.replace(
            &format!("{}/.cache/demo-app", repo().display()),
            apps.to_str().unwrap(),
        )
    });
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    for extra in [&[][..], &["--format", "qcow2"], &["--format", "vmdk"]] {
        let err = fails(&r, &out, extra, 2, &["resin-data", "app preload"]);
        assert!(
            err.contains(&name[..12]) || err.contains("digest"),
            "names the blob: {err}"
        );
    }
}

#[test]
fn compose_naming_a_missing_image() {
    let d = tempfile::tempdir().unwrap();
    let compose = d.path().join("compose.yml");
    let orig = std::fs::read_to_string(repo().join("demo/app/docker-compose.yml")).unwrap();
    std::fs::write(&compose, orig.replace("demo/db:1.0", "demo/nosuch:1.0")).unwrap();
    let r = recipe(d.path(), |s| {
        s.replace(
            &format!("{}/demo/app/docker-compose.yml", repo().display()),
            compose.to_str().unwrap(),
        )
    });
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    fails(&r, &out, &[], 2, &["demo/nosuch:1.0"]);
}
