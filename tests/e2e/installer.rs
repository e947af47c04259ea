//! `kiln build --installer` and `kiln install`, checked with the real
//! tools: sfdisk and blkid (the flasher layout), fsck.fat and e2fsck,
//! debugfs (the inner image, byte for byte the plain build's; the
//! settings, the binary, the unit), xz and qemu-img (other outputs), and
//! installs onto loop devices read back with sfdisk, cmp and mtype.

use kiln_e2e::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const INSTALLER: &str = "\n[installer]\nunattended = true\ntarget = \"largest-internal\"\n";

/// A recipe with `[installer]` (text `installer`) in `dir`.
fn recipe(dir: &Path, installer: &str) -> PathBuf {
    let installer = installer.to_string();
    recipe_copy(dir, move |s| s + &installer)
}

fn build(board: &str, recipe: &Path, out: &Path, extra: &[&str]) {
    ok(kiln()
        .args(["build", "-q", "--board", board, "--recipe"])
        .arg(recipe)
        .arg("-o")
        .arg(out)
        .args(extra));
}

/// SHA-256 of a file in an ext4 image, streamed out by `debugfs cat`.
fn debugfs_sha256(fs: &Path, path: &str) -> String {
    use sha2::{Digest, Sha256};
    require("debugfs", "e2fsprogs");
    let mut child = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(fs)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut h = Sha256::new();
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    assert!(child.wait().unwrap().success());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The installer's rootA, extracted into `dir`.
fn root_of(image: &Path, dir: &Path) -> PathBuf {
    let (_, parts) = sfdisk(image);
    let root = dir.join("rootA.ext4");
    extract(image, &parts[1], &root);
    root
}

#[test]
fn installer_image_carries_the_plain_build_in_the_flasher_layout() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), INSTALLER);
    let plain = dir.path().join("plain.img");
    let inst = dir.path().join("inst.img");
    build("nuc", &r, &plain, &[]);
    build("nuc", &r, &inst, &["--installer"]);

    let (_, parts) = sfdisk(&inst);
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!((parts[0].kind.as_str(), parts[0].bootable), ("e", true));
    assert_eq!(parts[1].kind, "83");
    assert_eq!(blkid(&inst, &parts[0]).1, "flash-boot");
    assert_eq!(blkid(&inst, &parts[1]).1, "flash-rootA");
    let boot = dir.path().join("boot.fat");
    extract(&inst, &parts[0], &boot);
    fsck_fat_clean(&boot);
    let root = root_of(&inst, dir.path());
    e2fsck_clean(&root);

    // The inner image is the plain build, byte for byte, with its bmap.
    let plain_sha = sha256_file(&plain);
    assert_eq!(debugfs_sha256(&root, "/opt/kiln-nuc.img"), plain_sha);
    let bmap = debugfs(&root, "cat /opt/kiln-nuc.img.bmap");
    assert_eq!(
        bmap,
        std::fs::read_to_string(dir.path().join("plain.img.bmap")).unwrap()
    );
    // Stored sparse: the stick image costs far less than the inner disk.
    let inner_bytes = std::fs::metadata(&plain).unwrap().len();
    assert!(std::fs::metadata(&inst).unwrap().len() < inner_bytes / 2);

    let settings: serde_json::Value =
        serde_json::from_str(&debugfs(&root, "cat /opt/kiln/installer.json")).unwrap();
    assert_eq!(settings["image"], "/opt/kiln-nuc.img");
    assert_eq!(settings["image-sha256"], plain_sha.as_str());
    assert_eq!(settings["image-bytes"], inner_bytes);
    assert_eq!(settings["unattended"], true);
    assert_eq!(settings["target"], "largest-internal");
    assert_eq!(settings["power-off"], true);
    assert_eq!(settings["allow-data-loss"], false);

    assert_eq!(
        debugfs_sha256(&root, "/usr/bin/kiln"),
        sha256_file(&kiln_bin())
    );
    let unit = debugfs(&root, "cat /etc/systemd/system/kiln-install.service");
    assert!(unit.contains("ExecStart=/usr/bin/kiln install"), "{unit}");
    let link = debugfs(
        &root,
        "stat /etc/systemd/system/multi-user.target.wants/kiln-install.service",
    );
    assert!(link.contains("Type: symlink"), "{link}");
    // The recipe's root filesystem is there too.
    assert!(debugfs(&root, "ls /etc").contains("os-release"));
    // Nothing left behind: no scratch directory, no partial files.
    let left: Vec<String> = outputs_in(dir.path(), "inst")
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn installer_delivers_every_format_and_compression() {
    require("qemu-img", "qemu-utils");
    require("xz", "xz-utils");
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "");
    let inst = dir.path().join("inst.img");
    build(
        "nuc-gpt",
        &r,
        &inst,
        &["--installer", "--format", "raw,qcow2", "--compress", "xz"],
    );
    ok(Command::new("xz")
        .arg("-t")
        .arg(dir.path().join("inst.img.xz")));
    ok(Command::new("xz")
        .args(["-dk"])
        .arg(dir.path().join("inst.img.xz")));
    ok(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "qcow2"])
        .arg(&inst)
        .arg(dir.path().join("inst.qcow2")));
    let (_, parts) = sfdisk(&inst);
    assert_eq!(parts[0].name.as_deref(), Some("flash-boot"));
    assert_eq!(parts[1].name.as_deref(), Some("flash-rootA"));
    sums_ok_and_manifest(dir.path(), "inst");
}

#[test]
fn installer_section_is_validated_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    for (text, want) in [
        ("\n[installer]\nunatended = true\n", "unatended"),
        ("\n[installer]\ntarget = \"sda\"\n", "installer.target"),
        (
            "\n[installer]\nunattended = true\n",
            "needs installer.target",
        ),
    ] {
        let r = recipe(dir.path(), text);
        let out = run(kiln()
            .args(["build", "-q", "--board", "nuc", "--installer", "--recipe"])
            .arg(&r)
            .arg("-o")
            .arg(dir.path().join("x.img")));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("r.toml:") && err.contains(want), "{err}");
        assert!(!dir.path().join("x.img").exists());
    }
}

/// A loop device over a new sparse file of `bytes`, with partition
/// scanning (`-P`) so sysfs lists its partitions; detached on drop.
fn loop_disk(backing: &Path, bytes: u64) -> Loop {
    require("losetup", "mount");
    let f = std::fs::File::create(backing).unwrap();
    f.set_len(bytes).unwrap();
    drop(f);
    let dev = ok(Command::new("losetup")
        .args(["-f", "--show", "-P"])
        .arg(backing));
    Loop(dev.trim().to_string())
}

fn allocated(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).unwrap().blocks()
}

/// Runs `kiln install` (never powering off) with settings for the image
/// `image` (its bmap beside it), feeding `answers` on stdin.
fn install(
    dir: &Path,
    image: &Path,
    target: &str,
    unattended: bool,
    config_from: &Path,
    answers: &str,
) -> std::process::Output {
    use std::io::Write;
    let settings = serde_json::json!({
        "version": 1,
        "image": image.display().to_string(),
        "bmap": format!("{}.bmap", image.display()),
        "image-bytes": std::fs::metadata(image).unwrap().len(),
        "image-sha256": "00",
        "unattended": unattended,
        "target": target,
        "power-off": false,
        "verify": true,
        "allow-data-loss": false,
    });
    let sp = dir.join("installer.json");
    std::fs::write(&sp, serde_json::to_vec(&settings).unwrap()).unwrap();
    let mut child = kiln()
        .args(["install", "--no-power-off", "--settings"])
        .arg(&sp)
        .arg("--config-from")
        .arg(config_from)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answers.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A FAT volume holding only `config.json` = `text`.
fn config_fat(dir: &Path, text: &str) -> PathBuf {
    require("mkfs.fat", "dosfstools");
    require("mcopy", "mtools");
    let fat = dir.join("cfg.fat");
    let _ = std::fs::remove_file(&fat);
    ok(Command::new("mkfs.fat").args(["-C"]).arg(&fat).arg("2048"));
    let src = dir.join("config.json");
    std::fs::write(&src, text).unwrap();
    ok(Command::new("mcopy")
        .arg("-i")
        .arg(&fat)
        .arg(&src)
        .arg("::config.json")
        .env("MTOOLS_SKIP_CHECK", "1"));
    fat
}

#[test]
fn install_onto_loop_devices() {
    require("cmp", "diffutils");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = recipe(d, "");
    let plain = d.join("plain.img");
    build("nuc", &r, &plain, &[]);
    let size = std::fs::metadata(&plain).unwrap().len();
    let cfg = config_fat(d, "{\"hostname\":\"stamped-17\"}");

    // Unattended onto an empty disk: partitions equal the image's, the
    // installer's config.json in the boot partition.
    let backing = d.join("target.raw");
    let lo = loop_disk(&backing, size + (64 << 20));
    let out = install(d, &plain, &lo.0, true, &cfg, "");
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{so}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        so.contains("PASS") && so.contains("config.json copied"),
        "{so}"
    );
    let (_, want) = sfdisk(&plain);
    let (_, got) = sfdisk(Path::new(&lo.0));
    assert_eq!(got, want);
    for p in want.iter().skip(1) {
        ok(Command::new("cmp")
            .arg(format!("--bytes={}", p.size * 512))
            .arg(format!("--ignore-initial={}", p.start * 512))
            .arg(&plain)
            .arg(&lo.0));
    }
    assert_eq!(
        mtype(&backing, &want[0], "config.json"),
        b"{\"hostname\":\"stamped-17\"}"
    );
    let boot = d.join("boot.fat");
    extract(&backing, &want[0], &boot);
    fsck_fat_clean(&boot);
    drop(lo);

    // Now partitioned: unattended without allow-data-loss is refused.
    let before = sha256_file(&backing);
    let lo = loop_disk_keep(&backing);
    let out = install(d, &plain, &lo.0, true, &cfg, "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("allow-data-loss"), "{err}");
    drop(lo);
    assert_eq!(sha256_file(&backing), before);

    // "no" on the console: nothing written.
    let empty = d.join("empty.raw");
    let lo = loop_disk(&empty, size);
    let out = install(d, &plain, &lo.0, false, &cfg, "no\n");
    let so = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{so}");
    assert!(so.contains("Type yes"), "{so}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cancelled"));
    drop(lo);
    assert_eq!(allocated(&empty), 0);

    // Too small: refused, nothing written.
    let small = d.join("small.raw");
    let lo = loop_disk(&small, size / 2);
    let out = install(d, &plain, &lo.0, true, &cfg, "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("too small"), "{err}");
    drop(lo);
    assert_eq!(allocated(&small), 0);

    // A flipped byte in the image (against its bmap): caught, exit non-zero.
    let bad = d.join("bad.img");
    ok(Command::new("cp")
        .arg("--sparse=always")
        .arg(&plain)
        .arg(&bad));
    std::fs::copy(d.join("plain.img.bmap"), d.join("bad.img.bmap")).unwrap();
    ok(Command::new("dd")
        .args(["bs=1", "count=1", "conv=notrunc", "status=none"])
        .arg(format!("of={}", bad.display()))
        .arg(format!("seek={}", want[1].start * 512 + 1024 + 56))
        .arg("if=/dev/urandom"));
    let flipped = d.join("flipped.raw");
    let lo = loop_disk(&flipped, size);
    let out = install(d, &bad, &lo.0, true, &cfg, "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("writing the image failed"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("PASS"));
}

/// A loop device over an existing file, with partition scanning.
fn loop_disk_keep(backing: &Path) -> Loop {
    let dev = ok(Command::new("losetup")
        .args(["-f", "--show", "-P"])
        .arg(backing));
    Loop(dev.trim().to_string())
}

#[test]
fn installer_is_read_as_a_flasher_by_inspect_and_base_mode() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = recipe(d, INSTALLER);
    let inst = d.join("inst.img");
    build("nuc", &r, &inst, &["--installer"]);
    let text = ok(kiln().arg("inspect").arg(&inst));
    for want in [
        "balenaOS flasher (installer) image",
        "boot=p1 flash-boot, rootA=p2 flash-rootA",
        "/opt/kiln-nuc.img",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    // kiln build --base on it works as on a vendor flasher: the inner
    // image is re-preloaded, config.json merged into flash-boot.
    let base_recipe = recipe_copy(d, |s| {
        s.replace("size = \"1GiB\"", "size = \"64MiB\"")
            .replace(
                "activation = \"systemd-unit\"",
                "activation = \"app-service\"\nservice-image = \"demo/api:1.0\"",
            )
            .replace("hostname = \"bob-onprem\"", "hostname = \"rebased\"")
            .replace("headroom = \"256MiB\"", "headroom = \"16MiB\"")
    });
    let out = d.join("rebased.img");
    ok(kiln()
        .args(["build", "-q", "--board", "nuc", "--recipe"])
        .arg(&base_recipe)
        .arg("--base")
        .arg(&inst)
        .arg("-o")
        .arg(&out));
    let (_, parts) = sfdisk(&out);
    assert_eq!(blkid(&out, &parts[1]).1, "flash-rootA");
    let cfg: serde_json::Value =
        serde_json::from_slice(&mtype(&out, &parts[0], "config.json")).unwrap();
    assert_eq!(cfg["hostname"], "rebased");
    let root = root_of(&out, d);
    e2fsck_clean(&root);
    // The settings and the binary survive the rebuild.
    assert!(debugfs(&root, "cat /opt/kiln/installer.json").contains("\"image\""));
    assert!(debugfs(&root, "ls -l /usr/bin").contains("kiln"));
}
