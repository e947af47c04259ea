//! Hardening (issue 16): what kiln refuses and what it leaves behind when
//! a user hands it dangerous paths or hostile input. Each case reproduces
//! one of the findings.

use kiln_e2e::*;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;

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

/// Starts `cmd`, sends `signal` after `delay`, returns its exit code
/// (`None`: killed by the signal) or `Some(0)` when it finished first.
fn interrupt(cmd: &mut Command, signal: &str, delay: std::time::Duration) -> Option<i32> {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    if child.try_wait().unwrap().is_none() {
        ok(Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string()));
    }
    child.wait().unwrap().code()
}

#[test]
fn interrupted_builds_leave_the_previous_output_and_no_temporaries() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("nuc.img");
    let build = |hostname: &str| {
        let mut c = kiln();
        c.env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "-q", "--board", "nuc", "--recipe", "bob-onprem"])
            .args(["--format", "raw,qcow2,vmdk", "--set"])
            .arg(format!("hostname={hostname}"))
            .arg("-o")
            .arg(&out);
        c
    };
    let t0 = std::time::Instant::now();
    ok(&mut build("good"));
    let took = t0.elapsed();
    let good = snapshot(d.path());
    assert_eq!(good.len(), 6, "{good:?}");
    let mut interrupted = 0;
    for (signal, code) in [("INT", 130), ("TERM", 143), ("KILL", -1)] {
        for tenth in [1, 3, 5, 7, 9] {
            let delay = took * tenth / 10;
            match interrupt(&mut build("other"), signal, delay) {
                Some(0) => {
                    // Finished before the signal: put the good set back.
                    ok(&mut build("good"));
                }
                got => {
                    interrupted += 1;
                    if code > 0 {
                        assert_eq!(got, Some(code), "SIG{signal} at {delay:?}");
                        assert!(hidden(d.path()).is_empty(), "SIG{signal} at {delay:?}");
                    } else {
                        assert_eq!(got, None, "SIGKILL at {delay:?}");
                    }
                    let now: Vec<_> = snapshot(d.path())
                        .into_iter()
                        .filter(|(n, _)| !n.starts_with('.'))
                        .collect();
                    assert_eq!(now, good, "SIG{signal} at {delay:?} changed the output");
                }
            }
        }
    }
    assert!(
        interrupted >= 10,
        "only {interrupted} runs were interrupted"
    );
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
    for i in 0..6 {
        rows.push_str(&format!("{i:032x},bob-{i}\n"));
    }
    std::fs::write(&csv, rows).unwrap();
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("fleet");
    let stamp = || {
        let mut c = kiln();
        c.args(["stamp", "-q", "--devices"])
            .arg(&csv)
            .arg("-o")
            .arg(&out)
            .arg(&img);
        c
    };
    let t0 = std::time::Instant::now();
    ok(&mut stamp());
    let took = t0.elapsed();
    std::fs::remove_dir_all(&out).unwrap();
    let mut interrupted = 0;
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        for tenth in [1, 3, 5, 7, 9] {
            match interrupt(&mut stamp(), signal, took * tenth / 10) {
                Some(0) => {}
                got => {
                    interrupted += 1;
                    assert_eq!(got, Some(code));
                    assert!(!out.exists());
                }
            }
            // Whatever happened, nothing hidden is left.
            assert!(hidden(d.path()).is_empty(), "{:?}", hidden(d.path()));
            if out.exists() {
                std::fs::remove_dir_all(&out).unwrap();
            }
        }
    }
    assert!(interrupted >= 6, "only {interrupted} runs were interrupted");
}
