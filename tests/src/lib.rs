//! Helpers for kiln's end-to-end tests: run the built `kiln` binary and
//! the real validators. A missing validator fails the test, naming the
//! Debian package to install (`make test` installs them all).

pub mod base_fixtures;
pub mod engine;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repo root")
}

/// The `kiln` binary: `$KILN_BIN`, or the one next to this test binary's
/// target directory (`make test` builds it first).
pub fn kiln_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KILN_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test exe");
    // target/<profile>/deps/<test> -> target/<profile>/kiln
    let candidate = exe.parent().and_then(Path::parent).map(|d| d.join("kiln"));
    match candidate {
        Some(p) if p.is_file() => p,
        _ => panic!("kiln binary not found next to {}: run `cargo build -p kiln` (make test does) or set KILN_BIN", exe.display()),
    }
}

/// Fails unless `tool` is installed, naming the package that provides it.
pub fn require(tool: &str, package: &str) {
    kiln_testkit::require(tool, package);
}

pub use kiln_testkit::{ok, run};

/// A `kiln` command with a fixed environment (SOURCE_DATE_EPOCH unset
/// unless the test sets it).
pub fn kiln() -> Command {
    let mut c = Command::new(kiln_bin());
    c.env_remove("SOURCE_DATE_EPOCH");
    c.env("KILN_PROFILES_DIR", repo().join("board-profiles"));
    c.env("KILN_RECIPES_DIR", repo().join("recipes"));
    c
}

/// The demo inputs made by `demo/make-inputs.sh` (run it if missing).
pub fn demo_inputs() -> PathBuf {
    let dir = repo().join(".cache/demo");
    if !dir.join("rootfs-armhf.tar.gz").is_file() || !dir.join("boot-amd64").is_dir() {
        ok(Command::new("bash").arg(repo().join("demo/make-inputs.sh")));
    }
    dir
}

/// One partition from `sfdisk --json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SfPart {
    /// Node name suffix number.
    pub number: u32,
    /// Start sector.
    pub start: u64,
    /// Size in sectors.
    pub size: u64,
    /// Type (`e`, `83`, GUID).
    pub kind: String,
    /// Bootable flag.
    pub bootable: bool,
    /// GPT name.
    pub name: Option<String>,
}

/// The partition table as `sfdisk --json` reads it.
pub fn sfdisk(image: &Path) -> (serde_json::Value, Vec<SfPart>) {
    require("sfdisk", "fdisk");
    let text = ok(Command::new("sfdisk").arg("--json").arg(image));
    let v: serde_json::Value = serde_json::from_str(&text).expect("sfdisk json");
    let parts = v["partitiontable"]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            let node = p["node"].as_str().unwrap_or_default();
            let number = node
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap_or("0")
                .parse()
                .unwrap_or(0);
            SfPart {
                number,
                start: p["start"].as_u64().unwrap_or(0),
                size: p["size"].as_u64().unwrap_or(0),
                kind: p["type"].as_str().unwrap_or_default().to_string(),
                bootable: p["bootable"].as_bool().unwrap_or(false),
                name: p["name"].as_str().map(str::to_string),
            }
        })
        .collect();
    (v, parts)
}

/// Copies a partition out of an image into its own sparse file.
pub fn extract(image: &Path, part: &SfPart, dest: &Path) {
    ok(Command::new("dd")
        .arg(format!("if={}", image.display()))
        .arg(format!("of={}", dest.display()))
        .arg("bs=512")
        .arg(format!("skip={}", part.start))
        .arg(format!("count={}", part.size))
        .arg("conv=sparse")
        .arg("status=none"));
}

/// `blkid -p` of a partition inside an image: (TYPE, LABEL, UUID).
pub fn blkid(image: &Path, part: &SfPart) -> (String, String, String) {
    require("blkid", "util-linux");
    let out = ok(Command::new("blkid")
        .args(["-p", "-o", "export", "-O"])
        .arg((part.start * 512).to_string())
        .arg("-S")
        .arg((part.size * 512).to_string())
        .arg(image));
    let get = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_default()
            .to_string()
    };
    (get("TYPE"), get("LABEL"), get("UUID"))
}

/// `e2fsck -fn` must exit 0.
pub fn e2fsck_clean(fs: &Path) {
    require("e2fsck", "e2fsprogs");
    let out = run(Command::new("e2fsck").arg("-fn").arg(fs));
    assert!(
        out.status.success(),
        "e2fsck -fn {} failed:\n{}{}",
        fs.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `fsck.fat -n` must exit 0.
pub fn fsck_fat_clean(fs: &Path) {
    require("fsck.fat", "dosfstools");
    let out = run(Command::new("fsck.fat").arg("-n").arg(fs));
    assert!(
        out.status.success(),
        "fsck.fat -n {} failed:\n{}{}",
        fs.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `mtype` of a file in a FAT partition of an image.
pub fn mtype(image: &Path, part: &SfPart, path: &str) -> Vec<u8> {
    require("mtype", "mtools");
    let out = run(Command::new("mtype")
        .arg("-i")
        .arg(format!("{}@@{}", image.display(), part.start * 512))
        .arg(format!("::{path}"))
        .env("MTOOLS_SKIP_CHECK", "1"));
    assert!(
        out.status.success(),
        "mtype {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// SHA-256 of a file, hex.
pub fn sha256_file(p: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(p).expect("open");
    std::io::copy(&mut f, &mut h).expect("read");
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A copy of the default recipe in `dir` with absolute input paths and
/// `edit` applied (tests shrink the swapfile or break things with it).
pub fn recipe_copy(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let demo = demo_inputs();
    let src = std::fs::read_to_string(repo().join("recipes/bob-onprem.toml")).expect("recipe");
    let src = src
        .replace(
            "../.cache/",
            &format!("{}/", demo.parent().expect("cache dir").display()),
        )
        .replace("../demo/", &format!("{}/demo/", repo().display()))
        .replace(
            "\"bob-onprem/",
            &format!("\"{}/recipes/bob-onprem/", repo().display()),
        );
    let p = dir.join("r.toml");
    std::fs::write(&p, edit(src)).expect("write recipe");
    p
}

/// `debugfs -R <request>` on an ext4 image; asserts success.
pub fn debugfs(fs: &Path, request: &str) -> String {
    require("debugfs", "e2fsprogs");
    ok(Command::new("debugfs").arg("-R").arg(request).arg(fs))
}

/// A read-only loop device over one partition of an image, detached on
/// drop.
pub struct Loop(pub String);

impl Loop {
    /// Attaches `part` of `image` read-only.
    pub fn new(image: &Path, part: &SfPart) -> Self {
        require("losetup", "mount");
        let dev = ok(Command::new("losetup")
            .args(["-f", "--show", "-r", "-o"])
            .arg((part.start * 512).to_string())
            .arg("--sizelimit")
            .arg((part.size * 512).to_string())
            .arg(image));
        Loop(dev.trim().to_string())
    }
}

impl Loop {
    /// Attaches the whole of `backing` read-write as a block device with
    /// `sector` logical sectors (512, or 4096 for a 4Kn disk).
    pub fn disk(backing: &Path, sector: u32) -> Self {
        require("losetup", "mount");
        let dev = ok(Command::new("losetup")
            .args(["-f", "--show", "-b"])
            .arg(sector.to_string())
            .arg(backing));
        Loop(dev.trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// A mount point, unmounted on drop.
pub struct Mount(pub PathBuf);

impl Mount {
    /// Mounts the ext4 on `lo` read-only at `dir` (the kernel's own ext4
    /// driver reads it).
    pub fn ext4_ro(lo: &Loop, dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("mount point");
        ok(Command::new("mount")
            .args(["-o", "ro", "-t", "ext4"])
            .arg(&lo.0)
            .arg(dir));
        Mount(dir.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// `sha256sum -c SHA256SUMS` passes in `dir`; returns the parsed
/// `<stem>.manifest.json`.
pub fn sums_ok_and_manifest(dir: &Path, stem: &str) -> serde_json::Value {
    ok(Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(dir));
    serde_json::from_slice(&std::fs::read(dir.join(format!("{stem}.manifest.json"))).unwrap())
        .unwrap()
}

/// The files in `dir` named `<stem>*`, hidden ones (leftovers) and
/// `SHA256SUMS`, sorted: what a build with outputs named `stem` left.
pub fn outputs_in(dir: &Path, stem: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(stem) || n.starts_with('.') || n == "SHA256SUMS")
        .collect();
    v.sort();
    v
}

/// A tmpfs mounted with `opts` (e.g. `size=3m`) at a new directory,
/// unmounted on drop (tests run as root, as CI does).
pub struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    /// Mounts it.
    pub fn new(opts: &str) -> Self {
        let d = tempfile::tempdir().expect("mount point");
        ok(Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "kiln-test"])
            .arg(d.path()));
        Self(d)
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}
