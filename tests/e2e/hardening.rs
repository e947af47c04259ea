//! Hardening (issue 16): what kiln refuses and what it leaves behind when
//! a user hands it dangerous paths or hostile input. Each case reproduces
//! one of the findings.

use kiln_e2e::*;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

// ---------------------------------------------------------------------
// Finding 1: only regular files are ever created or replaced.
// ---------------------------------------------------------------------

/// What a non-regular output path is made as.
#[derive(Clone, Copy, Debug)]
enum Node {
    CharDev,
    BlockDev,
    Fifo,
    Dir,
    Symlink,
}

/// Makes `node` at `path` (device nodes need root: the suite runs as
/// root, as `make test` does).
fn make(node: Node, path: &Path) {
    let (kind, extra): (&str, &[&str]) = match node {
        Node::CharDev => ("c", &["1", "3"]),
        Node::BlockDev => ("b", &["7", "250"]),
        Node::Fifo => ("p", &[]),
        Node::Dir => {
            std::fs::create_dir(path).unwrap();
            return;
        }
        Node::Symlink => {
            let target = path.with_file_name("link-target");
            std::fs::write(&target, b"the link's target").unwrap();
            std::os::unix::fs::symlink(&target, path).unwrap();
            return;
        }
    };
    ok(Command::new("mknod").arg(path).arg(kind).args(extra));
}

/// `path` is still what `make(node, ..)` made.
fn unchanged(node: Node, path: &Path) {
    let ft = std::fs::symlink_metadata(path).unwrap().file_type();
    let same = match node {
        Node::CharDev => ft.is_char_device(),
        Node::BlockDev => ft.is_block_device(),
        Node::Fifo => ft.is_fifo(),
        Node::Dir => ft.is_dir(),
        Node::Symlink => ft.is_symlink(),
    };
    assert!(same, "{node:?} at {} was replaced", path.display());
    if let Node::Symlink = node {
        assert_eq!(
            std::fs::read(path.with_file_name("link-target")).unwrap(),
            b"the link's target"
        );
    }
}

/// The directory holds only `keep`.
fn only(dir: &Path, keep: &[&str]) {
    let mut left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()) && n != "link-target")
        .collect();
    left.sort();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A refused command: exit 3, one line naming the path.
fn refused(cmd: &mut Command, path: &Path) {
    let out = run(cmd);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "exit code; stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains("refusing to replace"), "{err}");
    assert!(
        err.contains(&*path.to_string_lossy()),
        "names the path: {err}"
    );
}

const NODES: [Node; 5] = [
    Node::CharDev,
    Node::BlockDev,
    Node::Fifo,
    Node::Dir,
    Node::Symlink,
];

#[test]
fn build_refuses_an_output_path_that_is_not_a_regular_file() {
    for node in NODES {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("n.img");
        make(node, &out);
        refused(
            kiln()
                .args([
                    "build",
                    "-q",
                    "--board",
                    "nuc",
                    "--recipe",
                    "bob-onprem",
                    "-o",
                ])
                .arg(&out),
            &out,
        );
        unchanged(node, &out);
        only(d.path(), &["n.img"]);
    }
}

#[test]
fn build_refuses_a_sibling_artifact_path_that_is_not_a_regular_file() {
    // Every file a build writes beside the image is checked before any
    // work: the bmap, the manifest, SHA256SUMS and the other formats.
    for (sibling, formats) in [
        ("a.img.bmap", "raw"),
        ("a.manifest.json", "raw"),
        ("SHA256SUMS", "raw"),
        ("a.spdx.json", "raw"),
        ("a.cdx.json", "raw"),
        ("a.qcow2", "qcow2"),
        ("a.vmdk", "raw,vmdk"),
        ("a.img.xz", "raw"),
    ] {
        let d = tempfile::tempdir().unwrap();
        let node = d.path().join(sibling);
        make(Node::CharDev, &node);
        let mut cmd = kiln();
        cmd.args(["build", "-q", "--board", "nuc", "--recipe", "bob-onprem"])
            .args(["--format", formats])
            .arg("-o")
            .arg(d.path().join("a.img"));
        if sibling.ends_with(".xz") {
            cmd.args(["--compress", "xz"]);
        }
        refused(&mut cmd, &node);
        unchanged(Node::CharDev, &node);
        only(d.path(), &[sibling]);
    }
}

/// A small raw image to convert and stamp.
fn small_image(dir: &Path) -> PathBuf {
    let img = dir.join("src.img");
    ok(kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args([
            "build",
            "-q",
            "--board",
            "nuc",
            "--recipe",
            "bob-onprem",
            "-o",
        ])
        .arg(&img));
    img
}

#[test]
fn convert_mkfs_and_stamp_refuse_non_regular_outputs() {
    let src = tempfile::tempdir().unwrap();
    let img = small_image(src.path());
    for node in NODES {
        let d = tempfile::tempdir().unwrap();
        // convert
        let out = d.path().join("c.qcow2");
        make(node, &out);
        refused(
            kiln()
                .args(["convert", "-q", "--format", "qcow2"])
                .arg(&img)
                .arg(&out),
            &out,
        );
        unchanged(node, &out);
        // mkfs, fresh file
        let fs = d.path().join("m.ext4");
        make(node, &fs);
        refused(
            kiln()
                .args(["mkfs", "ext4", "-q", "--size", "8MiB", "--source"])
                .arg(demo_inputs().join("boot-amd64"))
                .arg(&fs),
            &fs,
        );
        unchanged(node, &fs);
        // mkfs into a window of an existing file: never into a device.
        if !matches!(node, Node::Symlink | Node::Dir) {
            refused(
                kiln()
                    .args(["mkfs", "ext4", "-q", "--size", "8MiB", "--offset", "0"])
                    .arg("--source")
                    .arg(demo_inputs().join("boot-amd64"))
                    .arg(&fs),
                &fs,
            );
            unchanged(node, &fs);
        }
        only(d.path(), &["c.qcow2", "m.ext4"]);
    }
    // stamp -o names a directory: anything else standing there is refused.
    for node in [Node::CharDev, Node::BlockDev, Node::Fifo, Node::Symlink] {
        let d = tempfile::tempdir().unwrap();
        let csv = d.path().join("devices.csv");
        std::fs::write(
            &csv,
            "uuid,hostname\n0123456789abcdef0123456789abcdef,bob-1\n",
        )
        .unwrap();
        let out = d.path().join("fleet");
        make(node, &out);
        refused(
            kiln()
                .args(["stamp", "-q", "--devices"])
                .arg(&csv)
                .arg("-o")
                .arg(&out)
                .arg(&img),
            &out,
        );
        unchanged(node, &out);
        only(d.path(), &["fleet", "devices.csv"]);
    }
}

// ---------------------------------------------------------------------
// Finding 8 (part): a later run removes the stale temporary files of an
// interrupted one, and never follows a link planted at such a name.
// ---------------------------------------------------------------------

#[test]
fn stale_partials_are_removed_and_planted_links_not_followed() {
    let d = tempfile::tempdir().unwrap();
    let victim = d.path().join("victim");
    std::fs::write(&victim, b"must survive").unwrap();
    // What a SIGKILLed `--format raw,qcow2` build leaves.
    std::fs::write(d.path().join(".a.img.kiln-partial"), vec![7u8; 4096]).unwrap();
    std::fs::write(d.path().join(".a.qcow2.kiln-partial"), vec![7u8; 4096]).unwrap();
    std::os::unix::fs::symlink(&victim, d.path().join(".SHA256SUMS.kiln-partial")).unwrap();
    std::os::unix::fs::symlink(&victim, d.path().join(".a.img.bmap.kiln-partial")).unwrap();
    // A rebuild with fewer formats still clears the qcow2's stale partial.
    ok(kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args([
            "build",
            "-q",
            "--board",
            "nuc",
            "--recipe",
            "bob-onprem",
            "-o",
        ])
        .arg(d.path().join("a.img")));
    assert_eq!(std::fs::read(&victim).unwrap(), b"must survive");
    only(
        d.path(),
        &[
            "victim",
            "a.img",
            "a.img.bmap",
            "a.manifest.json",
            "SHA256SUMS",
            "a.cdx.json",
            "a.spdx.json",
        ],
    );
    ok(Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(d.path()));
}

// ---------------------------------------------------------------------
// Finding 14: a closed stdout is no panic.
// ---------------------------------------------------------------------

/// Runs `args` with stdout's reader gone before kiln writes a byte (as
/// `| head -1` is once it has its line): no panic, exit 0, nothing on
/// stderr.
fn closed_stdout(args: &[&std::ffi::OsStr]) {
    let mut child = kiln()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    assert!(err.is_empty(), "{args:?}: {err}");
}

#[test]
fn a_closed_stdout_ends_the_run_quietly() {
    let d = tempfile::tempdir().unwrap();
    let img = small_image(d.path());
    let img = img.as_os_str();
    closed_stdout(&["boards".as_ref()]);
    closed_stdout(&["recipes".as_ref()]);
    closed_stdout(&["inspect".as_ref(), img]);
    closed_stdout(&["inspect".as_ref(), "--json".as_ref(), img]);
}

// ---------------------------------------------------------------------
// Findings 4 and 5: recipe paths that would collide with what kiln
// writes, or name the recipe's own directory.
// ---------------------------------------------------------------------

/// A build of `recipe` fails with exit 2, one line holding `want`, and
/// leaves only the recipe in its directory.
fn recipe_refused(recipe: &Path, want: &[&str]) {
    let dir = recipe.parent().unwrap();
    let out = run(kiln()
        .args(["build", "-q", "--board", "nuc", "--recipe"])
        .arg(recipe)
        .arg("-o")
        .arg(dir.join("out.img")));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "exit code; stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for w in want {
        assert!(err.contains(w), "want {w:?} in: {err}");
    }
    only(dir, &["r.toml"]);
}

#[test]
fn swap_paths_colliding_with_the_data_layout_are_refused() {
    for path in [
        "/docker",
        "/docker/image",
        "/apps.json",
        "/resin-data",
        "/remove_me_to_reset",
        "/lost+found",
    ] {
        let d = tempfile::tempdir().unwrap();
        let r = recipe_copy(d.path(), |s| {
            s.replace("path = \"/swapfile\"", &format!("path = \"{path}\""))
        });
        recipe_refused(&r, &["r.toml:", "swap.path", "collides with"]);
    }
}

#[test]
fn an_empty_input_path_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let r = recipe_copy(d.path(), |s| {
        let start = s.find("rootfs = ").unwrap();
        let end = start + s[start..].find('\n').unwrap();
        format!("{}rootfs = \"\"{}", &s[..start], &s[end..])
    });
    recipe_refused(&r, &["r.toml:", "os.amd64.rootfs", "is empty"]);
}

// ---------------------------------------------------------------------
// Finding 8: interrupts. SIGINT/SIGTERM remove every temporary file and
// exit 130/143; after SIGKILL only hidden temporaries remain, and the
// next run removes them; a good output of the same name survives.
// ---------------------------------------------------------------------

/// Names and sha256 of every file in `dir`, hidden ones included.
fn snapshot(dir: &Path) -> Vec<(String, String)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                sha256_file(&p),
            )
        })
        .collect();
    v.sort();
    v
}

fn hidden(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// Starts `cmd` (progress on stderr), sends `signal` as soon as a
/// progress line contains `marker` (a phase of the run), and returns its
/// exit code (`None`: killed by the signal). Fails if the run ended
/// before reaching the marker.
fn interrupt_at(cmd: &mut Command, signal: &str, marker: &str) -> Option<i32> {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let reached = loop {
        match lines.next() {
            Some(Ok(l)) => {
                let hit = l.contains(marker);
                seen.push(l);
                if hit {
                    break true;
                }
            }
            _ => break false,
        }
    };
    assert!(reached, "the run ended before {marker:?}: {seen:?}");
    ok(Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string()));
    // Drain what it still says, then its status.
    lines.for_each(drop);
    child.wait().unwrap().code()
}

/// Starts `cmd`, sends `signal` as soon as `path` exists (a file the
/// run is writing), and returns its exit code (`None`: killed by the
/// signal). Fails if the run ended first.
fn interrupt_when_exists(cmd: &mut Command, signal: &str, path: &Path) -> Option<i32> {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while !path.exists() {
        let done = child.try_wait().unwrap();
        assert!(done.is_none(), "the run ended before {}", path.display());
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    ok(Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string()));
    child.wait().unwrap().code()
}

#[test]
fn interrupted_builds_leave_the_previous_output_and_no_temporaries() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("nuc.img");
    let build = |hostname: &str| {
        let mut c = kiln();
        c.env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "--board", "nuc", "--recipe", "bob-onprem"])
            .args(["--format", "raw,qcow2,vmdk", "--set"])
            .arg(format!("hostname={hostname}"))
            .arg("-o")
            .arg(&out);
        c
    };
    ok(&mut build("good"));
    let good = snapshot(d.path());
    // image, qcow2, vmdk, bmap, manifest, two SBOMs, SHA256SUMS.
    assert_eq!(good.len(), 8, "{good:?}");
    // Five points of the build: inputs, sizing, the first and the last
    // filesystem, delivery (the image, qcow2 and VMDK being written).
    let points = [
        "resolving the application images",
        "sizing the data partition",
        "writing p2",
        "writing p6",
        "delivering",
    ];
    for (signal, code) in [("INT", Some(130)), ("KILL", None)] {
        for marker in points {
            let got = interrupt_at(&mut build("other"), signal, marker);
            assert_eq!(got, code, "SIG{signal} at {marker:?}");
            if code.is_some() {
                assert!(hidden(d.path()).is_empty(), "SIG{signal} at {marker:?}");
            }
            let now: Vec<_> = snapshot(d.path())
                .into_iter()
                .filter(|(n, _)| !n.starts_with('.'))
                .collect();
            assert_eq!(now, good, "SIG{signal} at {marker:?} changed the output");
        }
    }
    // The next run removes what SIGKILL left.
    ok(&mut build("good"));
    assert_eq!(snapshot(d.path()), good);
}

#[test]
fn interrupted_stamps_leave_no_partial_directory() {
    let src = tempfile::tempdir().unwrap();
    let img = small_image(src.path());
    let csv = src.path().join("devices.csv");
    let mut rows = String::from("uuid,hostname\n");
    for i in 0..3 {
        rows.push_str(&format!("{i:032x},bob-{i}\n"));
    }
    std::fs::write(&csv, rows).unwrap();
    // A one-device file for the complete runs (they copy multi-GB images).
    let one = src.path().join("one.csv");
    std::fs::write(&one, format!("uuid,hostname\n{:032x},solo\n", 9)).unwrap();
    let d = tempfile::tempdir().unwrap();
    let stamp_with = |devices: &Path, out: &Path| {
        let mut c = kiln();
        c.args(["stamp", "--devices"])
            .arg(devices)
            .arg("-o")
            .arg(out)
            .arg(&img);
        c
    };
    let stamp = |out: &Path| stamp_with(&csv, out);
    // A good stamp beside the interrupted ones must stay as it is.
    let good = d.path().join("good");
    ok(&mut stamp_with(&one, &good));
    // Names, sizes, inodes and mtimes (hashing multi-GB sparse images
    // ten times would take minutes), and the SHA256SUMS text.
    let state = |dir: &Path| {
        use std::os::unix::fs::MetadataExt;
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let m = e.metadata().unwrap();
                (e.file_name(), m.len(), m.ino(), m.mtime_nsec(), m.mtime())
            })
            .collect();
        v.sort();
        (v, std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap())
    };
    let good_files = state(&good);
    assert_eq!(good_files.0.len(), 3, "{good_files:?}");
    let out = d.path().join("fleet");
    // Five points: hashing the source, copying the first device, after
    // it, copying the second, after it (a third follows, so the run is
    // never over).
    let partial = d.path().join(".fleet.partial");
    let points = ["3 devices", "bob-0.img", "bob-0:", "bob-1.img", "bob-1:"];
    for (signal, code) in [("INT", Some(130)), ("KILL", None)] {
        for (i, marker) in points.into_iter().enumerate() {
            let (signal, code) = match (signal, i) {
                ("INT", 2) => ("TERM", Some(143)),
                _ => (signal, code),
            };
            let got = if marker.ends_with(".img") {
                interrupt_when_exists(&mut stamp(&out), signal, &partial.join(marker))
            } else {
                interrupt_at(&mut stamp(&out), signal, marker)
            };
            assert_eq!(got, code, "SIG{signal} at {marker:?}");
            assert!(!out.exists(), "SIG{signal} at {marker:?}");
            if code.is_some() {
                let h = hidden(d.path());
                assert!(h.is_empty(), "SIG{signal} at {marker:?}: {h:?}");
            } else {
                // Only the hidden partial directory can remain.
                let left: Vec<_> = std::fs::read_dir(d.path())
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "good" && n != ".fleet.partial")
                    .collect();
                assert!(left.is_empty(), "SIG{signal} at {marker:?}: {left:?}");
            }
            assert_eq!(state(&good), good_files, "SIG{signal} at {marker:?}");
        }
    }
    // The next run removes what SIGKILL left and completes.
    ok(&mut stamp_with(&one, &out));
    assert!(hidden(d.path()).is_empty(), "{:?}", hidden(d.path()));
    assert_eq!(state(&out).0.len(), good_files.0.len());
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

// ---------------------------------------------------------------------
// Integrity of untrusted inputs (findings 2, 3, 6, 10, 11, 18): corrupt
// compressed data, damaged VMDK grains and VHD footers, qcow2 backing
// files outside the overlay's directory, PAX sparse members, 64-bit
// owner ids, special files as inputs, sparse holes claiming terabytes.
// ---------------------------------------------------------------------

/// Asserts a failed run with a one-line error containing every `needle`.
fn refused_with(o: &Output, code: Option<i32>, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "accepted: {}", text(o));
    if let Some(c) = code {
        assert_eq!(o.status.code(), Some(c), "{}", text(o));
    }
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} missing in: {err}");
    }
}

/// `kiln mkfs ext4 --size SIZE --source SRC OUT`, under a 60 s timeout so
/// a hang fails the test instead of stalling the suite.
fn mkfs(src: &Path, size: &str, out: &Path) -> Output {
    require("timeout", "coreutils");
    let o = run(Command::new("timeout")
        .arg("60")
        .arg(kiln_bin())
        .args(["mkfs", "ext4", "-q", "--size", size, "--source"])
        .arg(src)
        .arg(out));
    assert_ne!(o.status.code(), Some(124), "kiln hung on {}", src.display());
    o
}

/// A tree with one 64 KiB file of varied bytes.
fn small_tree(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    let data: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(src.join("etc/data.bin"), data).unwrap();
    src
}

#[test]
fn integrity_corrupt_tar_gz_is_refused_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let src = small_tree(d.path());
    let good = d.path().join("good.tar.gz");
    ok(Command::new("tar")
        .arg("-C")
        .arg(&src)
        .arg("-czf")
        .arg(&good)
        .arg("."));
    let o = mkfs(&good, "16MiB", &d.path().join("good.ext4"));
    assert!(o.status.success(), "{}", text(&o));
    let bytes = std::fs::read(&good).unwrap();
    let n = bytes.len();
    let mut zero_crc = bytes.clone();
    zero_crc[n - 8..n - 4].fill(0);
    let mut flipped = bytes.clone();
    flipped[n / 2] ^= 0x10;
    for (case, b) in [("zero-crc", zero_crc), ("flipped", flipped)] {
        let bad = d.path().join(format!("{case}.tar.gz"));
        std::fs::write(&bad, b).unwrap();
        let out = d.path().join(format!("{case}.ext4"));
        let o = mkfs(&bad, "16MiB", &out);
        refused_with(&o, None, &[&format!("{case}.tar.gz")]);
        assert!(!out.exists(), "{case}: output left behind");
    }
}

#[test]
fn integrity_pax_sparse_members_keep_name_and_bytes() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let size = 3u64 << 20;
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(src.join("holes.img")).unwrap();
        f.set_len(size).unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(b"middle").unwrap();
        f.seek(SeekFrom::Start(size - 5)).unwrap();
        f.write_all(b"tail!").unwrap();
    }
    let want = std::fs::read(src.join("holes.img")).unwrap();
    let tar = d.path().join("sparse.tar");
    ok(Command::new("tar")
        .args(["--format=posix", "--sparse", "-C"])
        .arg(&src)
        .arg("-cf")
        .arg(&tar)
        .arg("holes.img"));
    let fs = d.path().join("s.ext4");
    let o = mkfs(&tar, "32MiB", &fs);
    assert!(o.status.success(), "{}", text(&o));
    e2fsck_clean(&fs);
    let ls = debugfs(&fs, "ls /");
    assert!(
        ls.contains("holes.img") && !ls.contains("GNUSparseFile"),
        "{ls}"
    );
    let got = run(Command::new("debugfs")
        .arg("-R")
        .arg("cat /holes.img")
        .arg(&fs));
    assert!(got.stdout == want, "holes.img differs from the original");
}

#[test]
fn integrity_owner_ids_above_32_bits_are_refused() {
    require("python3", "python3");
    let d = tempfile::tempdir().unwrap();
    let tar = d.path().join("bigid.tar");
    // GNU tar refuses to write such ids; Python's tarfile writes them as
    // PAX records.
    ok(Command::new("python3").arg("-c").arg(format!(
        "import tarfile, io\n\
         t = tarfile.open({:?}, 'w', format=tarfile.PAX_FORMAT)\n\
         i = tarfile.TarInfo('etc/owned'); i.size = 2; i.uid = 2**32; i.gid = 5\n\
         t.addfile(i, io.BytesIO(b'hi')); t.close()",
        tar.to_str().unwrap()
    )));
    let out = d.path().join("id.ext4");
    let o = mkfs(&tar, "16MiB", &out);
    refused_with(&o, None, &["/etc/owned", "uid 4294967296"]);
    assert!(!out.exists());
}

#[test]
fn integrity_special_files_as_sources_are_refused_not_read() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("pipe");
    ok(Command::new("mkfifo").arg(&fifo));
    for (src, kind) in [
        (fifo, "FIFO"),
        (PathBuf::from("/dev/zero"), "character device"),
    ] {
        let out = d.path().join("x.ext4");
        let o = mkfs(&src, "16MiB", &out);
        refused_with(&o, Some(2), &[kind]);
        assert!(!out.exists());
    }
}

#[test]
fn integrity_sparse_member_claiming_4_tib_is_refused_at_once() {
    // An old-format GNU sparse member: 512 bytes of data at the end of a
    // 4 TiB file, a 2 KB archive.
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_path("huge.img").unwrap();
    h.set_size(512);
    h.set_mode(0o644);
    let real = 4u64 << 40;
    let g = h.as_gnu_mut().unwrap();
    g.set_real_size(real);
    g.sparse[0].set_offset(real - 512);
    g.sparse[0].set_length(512);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, &[7u8; 512][..]).unwrap();
    let bytes = b.into_inner().unwrap();
    assert!(bytes.len() <= 3072);
    let d = tempfile::tempdir().unwrap();
    let tar = d.path().join("bomb.tar");
    std::fs::write(&tar, bytes).unwrap();
    let out = d.path().join("bomb.ext4");
    let start = std::time::Instant::now();
    let o = mkfs(&tar, "64MiB", &out);
    refused_with(&o, None, &["/huge.img", "4398046511104 bytes"]);
    assert!(start.elapsed().as_secs() < 20, "{:?}", start.elapsed());
    assert!(!out.exists());
}

/// An empty qcow2 overlay `ov.qcow2` in `dir` naming `backing` (raw).
fn overlay(dir: &Path, backing: &str) -> PathBuf {
    require("qemu-img", "qemu-utils");
    let ov = dir.join("ov.qcow2");
    let _ = std::fs::remove_file(&ov);
    ok(Command::new("qemu-img")
        .args([
            "create", "-q", "-f", "qcow2", "-u", "-b", backing, "-F", "raw",
        ])
        .arg(&ov)
        .arg("1M"));
    ov
}

fn convert(input: &Path, output: &Path, extra: &[&str]) -> Output {
    run(Command::new("timeout")
        .arg("60")
        .arg(kiln_bin())
        .arg("convert")
        .arg(input)
        .arg(output)
        .args(["--format", "raw"])
        .args(extra))
}

#[test]
fn integrity_qcow2_backing_file_must_stay_beside_the_overlay() {
    let d = tempfile::tempdir().unwrap();
    let secret = d.path().join("secret.raw");
    let mut host = b"host secret\n".to_vec();
    host.resize(1 << 20, 0);
    std::fs::write(&secret, &host).unwrap();
    let dir = d.path().join("overlays");
    std::fs::create_dir(&dir).unwrap();
    let out = dir.join("out.raw");
    for name in [secret.to_str().unwrap(), "../secret.raw"] {
        let ov = overlay(&dir, name);
        let o = convert(&ov, &out, &[]);
        refused_with(&o, Some(2), &["outside the overlay's directory"]);
        assert!(!out.exists(), "{name}: output written");
        let o = run(kiln().arg("inspect").arg(&ov));
        refused_with(&o, Some(2), &["outside the overlay's directory"]);
        // Allowed explicitly: read through.
        let o = convert(&ov, &out, &["--allow-backing-outside"]);
        assert!(o.status.success(), "{name}: {}", text(&o));
        assert!(std::fs::read(&out).unwrap() == host, "{name}");
        std::fs::remove_file(&out).unwrap();
    }
    // A FIFO beside the overlay is refused, allowed or not, and no hang.
    ok(Command::new("mkfifo").arg(dir.join("pipe")));
    let ov = overlay(&dir, "pipe");
    let o = convert(&ov, &out, &["--allow-backing-outside"]);
    assert_ne!(o.status.code(), Some(124), "hung on a FIFO backing file");
    refused_with(&o, Some(2), &["FIFO"]);
}

/// A 4 MiB raw disk with data in its first grain.
fn data_disk(dir: &Path) -> PathBuf {
    let raw = dir.join("disk.raw");
    let mut b: Vec<u8> = (0..4u32 << 20).map(|i| (i * 13 % 251) as u8).collect();
    b[2 << 20..].fill(0);
    std::fs::write(&raw, b).unwrap();
    raw
}

#[test]
fn integrity_damaged_vmdk_grain_and_vhd_footer_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let raw = data_disk(d.path());
    let out = d.path().join("out.raw");
    // VMDK: 4 zeroed bytes inside the first grain's zlib stream (kiln's
    // writer puts the grain marker at sector 128).
    let vmdk = d.path().join("d.vmdk");
    ok(kiln()
        .arg("convert")
        .arg(&raw)
        .arg(&vmdk)
        .args(["--format", "vmdk"]));
    let mut b = std::fs::read(&vmdk).unwrap();
    let m = 128 * 512;
    assert_eq!(&b[m..m + 8], &[0; 8], "grain 0's marker at sector 128");
    assert_eq!(b[m + 12], 0x78, "a zlib stream after the marker");
    let size = u32::from_le_bytes(b[m + 8..m + 12].try_into().unwrap()) as usize;
    let mid = m + 12 + size / 2;
    b[mid..mid + 4].fill(0);
    std::fs::write(&vmdk, b).unwrap();
    let o = convert(&vmdk, &out, &[]);
    refused_with(&o, Some(2), &["vmdk", "grain"]);
    assert!(!out.exists());
    // Fixed VHD: a damaged footer cookie is refused, naming the footer's
    // offset, instead of converting the file as a raw disk.
    let vhd = d.path().join("d.vhd");
    ok(kiln()
        .arg("convert")
        .arg(&raw)
        .arg(&vhd)
        .args(["--format", "vhd"]));
    let mut b = std::fs::read(&vhd).unwrap();
    let at = b.len() - 512;
    b[at + 2] ^= 0x20;
    std::fs::write(&vhd, b).unwrap();
    let o = convert(&vhd, &out, &[]);
    refused_with(&o, Some(2), &["vhd", &format!("at file byte {at}")]);
    assert!(!out.exists());
}

#[test]
fn integrity_flash_of_a_gz_image_checks_its_trailer() {
    require("bmaptool", "bmap-tools");
    require("gzip", "gzip");
    let d = tempfile::tempdir().unwrap();
    let raw = data_disk(d.path());
    let bmap = d.path().join("map.bmap");
    ok(Command::new("bmaptool")
        .args(["-q", "create", "-o"])
        .arg(&bmap)
        .arg(&raw));
    ok(Command::new("gzip").arg("-k").arg(&raw));
    let gz = d.path().join("disk.raw.gz");
    let good = std::fs::read(&gz).unwrap();
    let n = good.len();
    let mut zero_crc = good.clone();
    zero_crc[n - 8..n - 4].fill(0);
    let mut junk = good.clone();
    junk.extend_from_slice(b"trailing junk");
    let target = d.path().join("target.img");
    for (case, with_bmap) in [
        (&zero_crc, true),
        (&zero_crc, false),
        (&junk, true),
        (&junk, false),
    ] {
        std::fs::write(&gz, case).unwrap();
        std::fs::File::create(&target)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        let mut cmd = kiln();
        cmd.arg("flash")
            .arg("-q")
            .arg(&gz)
            .arg(&target)
            .arg("--force");
        if with_bmap {
            cmd.arg("--bmap").arg(&bmap);
        }
        let o = run(&mut cmd);
        // Depending on where the decoder meets the trailer, flash itself
        // fails reading "the image stream", or the check after it names
        // the file.
        refused_with(&o, None, &[]);
        let t = text(&o);
        assert!(
            (t.contains("disk.raw.gz") || t.contains("image stream"))
                && (t.contains("checksum") || t.contains("corrupt") || t.contains("invalid gzip")),
            "bmap {with_bmap}: {t}"
        );
    }
}

#[test]
fn integrity_special_file_as_rootfs_is_refused_before_work() {
    let d = tempfile::tempdir().unwrap();
    let r = recipe_copy(d.path(), |s| {
        s.replace("\"../.cache/demo/rootfs-amd64.tar.gz\"", "\"/dev/zero\"")
            .replace(
                &format!("\"{}/rootfs-amd64.tar.gz\"", demo_inputs().display()),
                "\"/dev/zero\"",
            )
    });
    assert!(std::fs::read_to_string(&r)
        .unwrap()
        .contains("\"/dev/zero\""));
    let out = d.path().join("out.img");
    let o = run(Command::new("timeout")
        .arg("60")
        .arg(kiln_bin())
        .env("KILN_PROFILES_DIR", repo().join("board-profiles"))
        .args(["build", "-q", "--board", "nuc", "--recipe"])
        .arg(&r)
        .arg("-o")
        .arg(&out));
    assert_ne!(
        o.status.code(),
        Some(124),
        "kiln hung on rootfs = /dev/zero"
    );
    refused_with(
        &o,
        Some(2),
        &["os.amd64.rootfs", "/dev/zero", "character device"],
    );
    let left: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "r.toml")
        .collect();
    assert!(left.is_empty(), "output left behind: {left:?}");
}

// ---------------------------------------------------------------------
// Finding 15: output bookkeeping in a shared directory.
// ---------------------------------------------------------------------

#[test]
fn sums_cover_every_build_in_a_directory_and_fewer_formats_leave_no_stale_files() {
    let d = tempfile::tempdir().unwrap();
    let build = |name: &str, formats: &str| {
        ok(kiln()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "-q", "--board", "nuc", "--recipe", "bob-onprem"])
            .args(["--format", formats, "-o"])
            .arg(d.path().join(name)));
    };
    let sums = || std::fs::read_to_string(d.path().join("SHA256SUMS")).unwrap();
    let check = || {
        ok(Command::new("sha256sum")
            .args(["-c", "--strict", "SHA256SUMS"])
            .current_dir(d.path()));
    };
    std::fs::write(d.path().join("notes.txt"), b"the user's own file").unwrap();
    build("a.img", "raw,qcow2");
    build("b.img", "raw");
    // Both builds stay listed.
    let s = sums();
    for f in [
        "a.img",
        "a.qcow2",
        "a.manifest.json",
        "b.img",
        "b.img.bmap",
        "b.manifest.json",
    ] {
        assert!(s.contains(&format!("  {f}\n")), "{f} not in:\n{s}");
    }
    check();
    // A rebuild of a.img with fewer formats removes its old qcow2 (which
    // no longer matches the new manifest) and its line; b's stay.
    build("a.img", "raw");
    assert!(!d.path().join("a.qcow2").exists());
    let s = sums();
    assert!(!s.contains("a.qcow2"), "{s}");
    assert!(s.contains("  b.img\n"), "{s}");
    check();
    assert_eq!(
        std::fs::read(d.path().join("notes.txt")).unwrap(),
        b"the user's own file"
    );
    // A file the list names that was deleted since is dropped from it.
    for f in ["b.img", "b.img.bmap", "b.manifest.json"] {
        std::fs::remove_file(d.path().join(f)).unwrap();
    }
    build("a.img", "raw");
    assert!(!sums().contains("b.img"), "{}", sums());
    check();
}

#[test]
fn a_non_utf8_output_name_is_refused() {
    use std::os::unix::ffi::OsStrExt;
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join(std::ffi::OsStr::from_bytes(b"n\xff.img"));
    let o = run(kiln()
        .args([
            "build",
            "-q",
            "--board",
            "nuc",
            "--recipe",
            "bob-onprem",
            "-o",
        ])
        .arg(&out));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("UTF-8"), "{err}");
    only(d.path(), &[]);
}

// ---------------------------------------------------------------------
// Finding 11 (limits): pathologically deep and wide trees work. Sizing
// used to cost one path per ancestor per entry (depth 4000: > 60 s).
// ---------------------------------------------------------------------

/// A tar of a directory chain `depth` deep with a file at the bottom,
/// and one directory of `wide` empty files.
fn deep_and_wide_tar(path: &Path, depth: usize, wide: usize) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |name: &str, kind: tar::EntryType, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, data).unwrap();
    };
    let mut p = String::new();
    for _ in 0..depth {
        p.push_str(if p.is_empty() { "d" } else { "/d" });
        add(&p, tar::EntryType::Directory, b"");
    }
    add(&format!("{p}/bottom"), tar::EntryType::Regular, b"deep\n");
    add("wide", tar::EntryType::Directory, b"");
    for i in 0..wide {
        add(&format!("wide/file-{i:06}"), tar::EntryType::Regular, b"");
    }
    b.finish().unwrap();
}

#[test]
fn a_tree_4000_deep_and_a_directory_of_100k_entries_work() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("tree.tar");
    deep_and_wide_tar(&src, 4000, 100_000);
    let fs = d.path().join("tree.ext4");
    ok(kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["mkfs", "ext4", "-q", "--size", "min", "--source"])
        .arg(&src)
        .arg(&fs));
    e2fsck_clean(&fs);
    let deep = format!("/{}/bottom", vec!["d"; 4000].join("/"));
    let cat = debugfs(&fs, &format!("cat {deep}"));
    assert_eq!(cat, "deep\n");
    let ls = debugfs(&fs, "ls /wide");
    assert!(
        ls.contains("file-099999"),
        "last of the wide directory missing"
    );
}

// ---------------------------------------------------------------------
// Finding 12: a GPT base whose primary header is damaged (the backup
// intact, as `sgdisk -v` says) is preloaded like any other.
// ---------------------------------------------------------------------

#[test]
fn a_gpt_base_with_a_damaged_primary_header_is_preloaded() {
    require("sgdisk", "gdisk");
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("base.img");
    ok(kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args([
            "build",
            "-q",
            "--board",
            "nuc-gpt",
            "--recipe",
            "bob-onprem",
            "-o",
        ])
        .arg(&base));
    // Zero the primary header (LBA 1).
    let f = std::fs::OpenOptions::new().write(true).open(&base).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0u8; 512], 512).unwrap();
    drop(f);
    let v = run(Command::new("sgdisk").arg("-v").arg(&base));
    let text = String::from_utf8_lossy(&v.stderr);
    assert!(
        text.contains("Main header: ERROR") && text.contains("Backup header: OK"),
        "{text}"
    );
    // Base mode keeps the root filesystem: swap via the app or none.
    let r = recipe_copy(d.path(), |s| {
        s.replace("activation = \"systemd-unit\"", "activation = \"none\"")
    });
    let out = d.path().join("out.img");
    ok(kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "-q", "--board", "nuc-gpt", "--recipe"])
        .arg(&r)
        .arg("--base")
        .arg(&base)
        .arg("-o")
        .arg(&out));
    let v = ok(Command::new("sgdisk").arg("-v").arg(&out));
    assert!(v.contains("No problems found"), "{v}");
    let (_, parts) = sfdisk(&out);
    assert_eq!(parts.len(), 5, "{parts:?}");
}

// ---------------------------------------------------------------------
// Exit codes, secrets, error texts (findings 7, 13, 16, 17): bad input
// exits 2 with one line naming it, whatever layer refuses it; secrets
// never show in `kiln inspect` or in errors; devices files saved with a
// byte order mark; errors name the right line, partition and table.
// ---------------------------------------------------------------------

/// A tar whose second member lies below a regular file (`f/x` after `f`).
fn tar_with_file_as_parent(dir: &Path) -> PathBuf {
    let (a, b) = (dir.join("a"), dir.join("b"));
    std::fs::create_dir_all(b.join("f")).unwrap();
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(a.join("f"), b"file").unwrap();
    std::fs::write(b.join("f/x"), b"below a file").unwrap();
    let tar = dir.join("bad.tar");
    ok(Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&a)
        .arg("f")
        .arg("-C")
        .arg(&b)
        .arg("f/x"));
    tar
}

#[test]
fn bad_input_exits_2_with_one_line_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let tree = small_tree(p);
    let tar = tar_with_file_as_parent(p);
    let img = p.join("img.raw");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let target = p.join("target.raw");
    std::fs::File::create(&target)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let latin1 = p.join("latin1.csv");
    std::fs::write(
        &latin1,
        b"uuid,hostname\n0123456789abcdef0123456789abcdef,h\xe9\n",
    )
    .unwrap();
    let o = |s: &str| p.join(s).into_os_string();
    let s = |x: &Path| x.as_os_str().to_owned();
    let cases: Vec<(Vec<std::ffi::OsString>, &[&str])> = vec![
        (
            ["build", "--board", "nope", "--recipe", "bob-onprem", "-o"]
                .map(Into::into)
                .into_iter()
                .chain([o("x.img")])
                .collect(),
            &["no board profile named \"nope\""],
        ),
        (
            ["build", "--board", "nuc", "--recipe", "nope", "-o"]
                .map(Into::into)
                .into_iter()
                .chain([o("x.img")])
                .collect(),
            &["no recipe named \"nope\""],
        ),
        (
            [
                "build",
                "--board",
                "nuc",
                "--recipe",
                "bob-onprem",
                "--format",
                "iso",
                "-o",
            ]
            .map(Into::into)
            .into_iter()
            .chain([o("x.img")])
            .collect(),
            &["--format \"iso\""],
        ),
        (
            vec![
                "convert".into(),
                s(&img),
                o("x.iso"),
                "--format".into(),
                "iso".into(),
            ],
            &["--format \"iso\""],
        ),
        (
            vec![
                "mkfs".into(),
                "ext4".into(),
                "--size".into(),
                "0".into(),
                "--source".into(),
                s(&tree),
                o("zero.ext4"),
            ],
            // The filesystem is named by its file when it has no label.
            &["partition zero.ext4: ext4:", "too small"],
        ),
        (
            vec![
                "mkfs".into(),
                "ext4".into(),
                "--size".into(),
                "1".into(),
                "--source".into(),
                s(&tree),
                o("one.ext4"),
            ],
            // The size asked for, not the 0 it rounds down to.
            &["partition one.ext4: ext4: 1 bytes is too small"],
        ),
        (
            vec![
                "mkfs".into(),
                "ext4".into(),
                "--size".into(),
                "99999TB".into(),
                "--source".into(),
                s(&tree),
                o("huge.ext4"),
            ],
            &["partition huge.ext4: ext4:", "larger than"],
        ),
        (
            vec![
                "mkfs".into(),
                "ext4".into(),
                "--size".into(),
                "16MiB".into(),
                "--source".into(),
                s(&tar),
                o("tar.ext4"),
            ],
            &["partition tar.ext4:"],
        ),
        (
            vec![
                "mkfs".into(),
                "ext4".into(),
                "--size".into(),
                "lots".into(),
                "--source".into(),
                s(&tree),
                o("lots.ext4"),
            ],
            &["--size"],
        ),
        (
            vec!["flash".into(), s(&img), s(&target)],
            &["refusing to flash", "regular file"],
        ),
        (
            vec!["flash".into(), s(&img), "/dev/null".into()],
            &["refusing to flash", "neither a block device"],
        ),
        (
            vec![
                "flash".into(),
                s(&img),
                s(&target),
                "--force".into(),
                "--holes".into(),
                "maybe".into(),
            ],
            &["--holes \"maybe\""],
        ),
        (
            vec![
                "stamp".into(),
                s(&img),
                "--devices".into(),
                s(&latin1),
                "-o".into(),
                o("fleet"),
            ],
            &["latin1.csv:2", "not UTF-8"],
        ),
    ];
    for (args, needles) in cases {
        let out = run(kiln().args(&args));
        eprintln!("{args:?}: {}", text(&out).trim_end());
        refused_with(&out, Some(2), needles);
    }
    // Nothing was written by any of them.
    for f in [
        "x.img",
        "x.iso",
        "zero.ext4",
        "one.ext4",
        "huge.ext4",
        "tar.ext4",
        "lots.ext4",
        "fleet",
    ] {
        assert!(!p.join(f).exists(), "{f} left behind");
    }
    assert_eq!(std::fs::metadata(&target).unwrap().len(), 4 << 20);
}

/// A secret config value given by the environment in a recipe copy.
const PSK: &str = "psk-Zq8vW3xK-do-not-print";
const TOKEN: &str = "tok-Hh71pQ-do-not-print";

fn assert_inspect_hides(img: &Path, secrets: &[&str]) -> serde_json::Value {
    let t = ok(kiln().arg("inspect").arg(img));
    let j = ok(kiln().args(["inspect", "--json"]).arg(img));
    for s in secrets {
        assert!(!t.contains(s), "inspect shows {s}:\n{t}");
        assert!(!j.contains(s), "inspect --json shows {s}:\n{j}");
    }
    serde_json::from_str(&j).unwrap()
}

#[test]
fn secrets_stay_out_of_inspect_for_recipe_keys_and_stamp_columns() {
    let d = tempfile::tempdir().unwrap();
    let r = recipe_copy(d.path(), |s| {
        s.replace(
            "developmentMode = false\n",
            "developmentMode = false\nwifiPsk = { from-env = \"KILN_T_PSK\", secret = true }\n",
        )
    });
    let img = d.path().join("s.img");
    ok(kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("KILN_T_PSK", PSK)
        .args([
            "build", "-q", "--format", "raw", "--board", "nuc", "--recipe",
        ])
        .arg(&r)
        .arg("-o")
        .arg(&img));
    // The device needs the value: it is in the image's config.json.
    let (_, parts) = sfdisk(&img);
    let cfg = String::from_utf8(mtype(&img, &parts[0], "config.json")).unwrap();
    assert!(cfg.contains(PSK), "{cfg}");
    let seen = assert_inspect_hides(&img, &[PSK]);
    assert_eq!(seen["config"]["wifiPsk"], "<redacted>");
    assert_eq!(seen["config"]["hostname"], "bob-onprem");
    let manifest = std::fs::read_to_string(d.path().join("s.manifest.json")).unwrap();
    assert!(!manifest.contains(PSK));

    // Stamped with a secret column, from a devices file saved with a
    // byte order mark (finding 16).
    let csv = d.path().join("fleet.csv");
    let mut bytes = b"\xEF\xBB\xBFname,uuid,hostname,vpnToken\n".to_vec();
    bytes.extend_from_slice(
        format!("dev-1,0123456789abcdef0123456789abcdef,dev-1,{TOKEN}\n").as_bytes(),
    );
    std::fs::write(&csv, bytes).unwrap();
    let fleet = d.path().join("fleet");
    ok(kiln()
        .args(["stamp", "-q"])
        .arg(&img)
        .arg("--devices")
        .arg(&csv)
        .arg("-o")
        .arg(&fleet));
    let stamped = fleet.join("dev-1.img");
    let cfg = String::from_utf8(mtype(&stamped, &parts[0], "config.json")).unwrap();
    assert!(cfg.contains(TOKEN) && cfg.contains(PSK), "{cfg}");
    let seen = assert_inspect_hides(&stamped, &[PSK, TOKEN]);
    assert_eq!(seen["config"]["vpnToken"], "<redacted>");
    assert_eq!(seen["config"]["wifiPsk"], "<redacted>");
    assert_eq!(seen["config"]["hostname"], "dev-1");
}

#[test]
fn a_secret_hostname_is_not_echoed_and_its_line_is_named() {
    let d = tempfile::tempdir().unwrap();
    let r = recipe_copy(d.path(), |s| {
        s.replace(
            "hostname = \"bob-onprem\"\n",
            "hostname = { from-env = \"KILN_T_HOST\", secret = true }\n",
        )
    });
    let line = std::fs::read_to_string(&r)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("hostname = { from-env"))
        .unwrap()
        + 1;
    let o = run(kiln()
        .env("KILN_T_HOST", "Sekrit_Host")
        .args(["build", "-q", "--board", "nuc", "--recipe"])
        .arg(&r)
        .arg("-o")
        .arg(d.path().join("x.img")));
    refused_with(
        &o,
        Some(2),
        &[
            &format!("r.toml:{line}:"),
            "config.hostname",
            "not a valid host name",
        ],
    );
    assert!(!text(&o).contains("Sekrit"), "{}", text(&o));
}

#[test]
fn boot_file_refusals_exit_2_naming_the_key() {
    let d = tempfile::tempdir().unwrap();
    let extra = d.path().join("extra.txt");
    std::fs::write(&extra, b"extra").unwrap();
    let long = "x".repeat(300);
    for (dest, want) in [
        (
            "config.json",
            &["resin-boot", "config.json", "already exists"][..],
        ),
        (
            "a:b.txt",
            &["resin-boot", "a:b.txt", "not allowed in FAT names"][..],
        ),
        (long.as_str(), &["`boot.files.dest`", "300 bytes"][..]),
    ] {
        let r = recipe_copy(d.path(), |s| {
            format!(
                "{s}\n[boot]\nfiles = [{{ src = \"{}\", dest = \"{dest}\" }}]\n",
                extra.display()
            )
        });
        let o = run(kiln()
            .args(["build", "-q", "--board", "nuc", "--recipe"])
            .arg(&r)
            .arg("-o")
            .arg(d.path().join("x.img")));
        refused_with(&o, Some(2), want);
        assert!(!text(&o).contains("boot.files.src"), "{}", text(&o));
        assert!(!d.path().join("x.img").exists());
    }
}

#[test]
fn an_impossible_swap_size_says_it_does_not_fit() {
    let d = tempfile::tempdir().unwrap();
    let r = recipe_copy(d.path(), |s| {
        s.replace("size = \"1GiB\"", "size = \"99999TB\"")
    });
    assert!(std::fs::read_to_string(&r).unwrap().contains("99999TB"));
    let o = run(kiln()
        .args(["build", "-q", "--board", "nuc", "--recipe"])
        .arg(&r)
        .arg("-o")
        .arg(d.path().join("x.img")));
    refused_with(&o, Some(2), &["resin-data", "16 TiB"]);
    assert!(!text(&o).contains("too many inodes"), "{}", text(&o));
}

#[test]
fn a_gpt_profile_with_more_than_128_partitions_exits_2() {
    let d = tempfile::tempdir().unwrap();
    let src = std::fs::read_to_string(repo().join("board-profiles/nuc-gpt.toml")).unwrap();
    let data = "[[partition]]\nlabel = \"resin-data\"";
    let (head, rest) = src.split_once(data).unwrap();
    let extra: String = (0..130)
        .map(|i| format!("[[partition]]\nlabel = \"x{i}\"\nrole = \"state\"\nfs = \"ext4\"\nsize = \"8MiB\"\n\n"))
        .collect();
    let profile = d.path().join("gpt130.toml");
    std::fs::write(&profile, format!("{head}{extra}{data}{rest}")).unwrap();
    let o = run(kiln()
        .args(["build", "-q", "--board"])
        .arg(&profile)
        .args(["--recipe", "bob-onprem", "-o"])
        .arg(d.path().join("x.img")));
    refused_with(&o, Some(2), &["partition table", "at most 128"]);
    assert!(!d.path().join("x.img").exists());
}

#[test]
fn a_base_with_a_corrupt_data_filesystem_exits_2() {
    use kiln_e2e::base_fixtures::{make_base, BaseSpec};
    demo_inputs();
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let base = make_base(&d.path().join("b"), &BaseSpec::default());
    let (_, parts) = sfdisk(&base);
    let data = parts.last().unwrap();
    // Damage the superblock's checksum (`s_checksum`, superblock byte
    // 0x3FC; the superblock is at byte 1024).
    let f = std::fs::OpenOptions::new().write(true).open(&base).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[0xA5; 4], data.start * 512 + 1024 + 0x3FC)
        .unwrap();
    drop(f);
    let r = recipe_copy(d.path(), |s| {
        s.replace("size = \"1GiB\"", "size = \"64MiB\"")
            .replace("activation = \"systemd-unit\"", "activation = \"none\"")
            .replace("headroom = \"256MiB\"", "headroom = \"16MiB\"")
    });
    let o = run(kiln()
        .args(["build", "-q", "--board", "nuc", "--recipe"])
        .arg(&r)
        .arg("--base")
        .arg(&base)
        .arg("-o")
        .arg(d.path().join("x.img")));
    eprintln!("{}", text(&o));
    refused_with(&o, Some(2), &["resin-data"]);
    assert!(!d.path().join("x.img").exists());
}
