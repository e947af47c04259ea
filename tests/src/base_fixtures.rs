//! Base images in the balenaOS layouts, made by the real tools (sfdisk,
//! mkfs.vfat + mcopy, mke2fs -d, dockerd + `docker load`, qemu-img, xz,
//! gzip, zstd, zip), for the base-image and stamping tests.
//!
//! Layout (512-byte sectors, every partition 4 MiB-aligned, p1 at 4 MiB,
//! as balenaOS ships it):
//!
//! | MBR | GPT | label | filesystem |
//! |---|---|---|---|
//! | p1 (0x0e FAT16 / 0x0c FAT32, active) | p1 (ESP) | resin-boot | FAT16/FAT32 |
//! | p2 (0x83) | p2 | resin-rootA | ext4 |
//! | p3 (0x83) | p3 | resin-rootB | ext4 |
//! | p4 extended (0x0f) | — | — | — |
//! | p5 logical (4 MiB after its EBR) | p4 | resin-state | ext4 |
//! | p6 logical (4 MiB after its EBR) | p5 | resin-data | ext4 |
//!
//! GPT partition names equal the labels.

use crate::{ok, repo, require};
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1 << 20;
const SECTOR: u64 = 512;

/// Partition table kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// DOS/MBR with p4 extended, p5 state and p6 data logical.
    Mbr,
    /// GPT with five partitions.
    Gpt,
}

/// FAT variant of the boot partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootFat {
    /// FAT16 (MBR type 0x0e).
    Fat16,
    /// FAT32 (MBR type 0x0c).
    Fat32,
}

/// What the data partition's engine store holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// An empty `docker/` directory.
    Empty,
    /// Images loaded with a real `docker load` into a private dockerd:
    /// (demo-app OCI layout name such as `proxy`, reference to store it
    /// under such as `balena/amd64-supervisor:v16.1.0`).
    Docker(Vec<(String, String)>),
}

/// What [`make_base`] builds.
#[derive(Debug, Clone)]
pub struct BaseSpec {
    /// Partition table kind.
    pub table: Table,
    /// Boot FAT variant.
    pub fat: BootFat,
    /// Label prefix: `resin` (default) or `balena`.
    pub prefix: String,
    /// Device-type slug (device-type.json `slug`, config.json `deviceType`).
    pub slug: String,
    /// Architecture (device-type.json `arch`).
    pub arch: String,
    /// OS version (os-release `VERSION`, `VERSION_ID`).
    pub os_version: String,
    /// config.json `hostname`.
    pub hostname: String,
    /// Write device-type.json (else only config.json names the type).
    pub device_type_json: bool,
    /// Engine store on the data partition.
    pub store: Store,
    /// Extra files at the data partition root (name, contents), e.g.
    /// `apps.json`.
    pub data_files: Vec<(String, Vec<u8>)>,
    /// Give the data partition this label instead (tests of a missing
    /// label).
    pub data_label: Option<String>,
    /// Sizes in MiB: boot, rootA/rootB each, state, data.
    pub boot_mib: u64,
    /// rootA and rootB size in MiB.
    pub root_mib: u64,
    /// State size in MiB.
    pub state_mib: u64,
    /// Data size in MiB.
    pub data_mib: u64,
}

impl Default for BaseSpec {
    fn default() -> Self {
        BaseSpec {
            table: Table::Mbr,
            fat: BootFat::Fat16,
            prefix: "resin".into(),
            slug: "intel-nuc".into(),
            arch: "amd64".into(),
            os_version: "2.115.3".into(),
            hostname: "balena".into(),
            device_type_json: true,
            store: Store::Empty,
            data_files: Vec::new(),
            data_label: None,
            boot_mib: 40,
            root_mib: 32,
            state_mib: 8,
            data_mib: 64,
        }
    }
}

impl BaseSpec {
    /// The label of role `suffix` (`boot`, `rootA`, ...).
    pub fn label(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }
    /// The os-release `PRETTY_NAME` written.
    pub fn pretty_name(&self) -> String {
        format!("balenaOS {}", self.os_version)
    }
    /// The `/etc/image-version-info` text written.
    pub fn image_version_info(&self) -> String {
        format!(
            "BALENA_OS_VERSION={}\nMACHINE={}\nBUILD=kiln-fixture",
            self.os_version, self.slug
        )
    }
    /// The boot partition's config.json.
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::json!({
            "deviceType": self.slug,
            "hostname": self.hostname,
            "persistentLogging": false,
            "localMode": true,
            "listenPort": 48484,
            "vpnPort": 443,
            "registryEndpoint": "registry2.balena-cloud.com",
            "deltaEndpoint": "https://delta.balena-cloud.com",
        })
    }
}

/// The demo app's OCI layouts (`.cache/demo-app`), made by
/// `demo/app/make-demo-app.sh` when missing.
pub fn demo_app() -> PathBuf {
    let dir = repo().join(".cache/demo-app");
    if !dir.join("proxy.oci/index.json").is_file() {
        ok(Command::new("sh").arg(repo().join("demo/app/make-demo-app.sh")));
    }
    dir
}

/// A `docker save`-format archive of the demo app's `name` image (amd64)
/// stored under `reference`, made with skopeo.
pub fn docker_archive(dir: &Path, name: &str, reference: &str) -> PathBuf {
    require("skopeo", "skopeo");
    let out = dir.join(format!("{}.docker.tar", reference.replace(['/', ':'], "_")));
    let _ = std::fs::remove_file(&out);
    ok(Command::new("skopeo")
        .args([
            "copy",
            "-q",
            "--override-arch",
            "amd64",
            "--override-os",
            "linux",
        ])
        .arg(format!(
            "oci:{}",
            demo_app().join(format!("{name}.oci")).display()
        ))
        .arg(format!("docker-archive:{}:{reference}", out.display())));
    out
}

fn mkfs_fat(file: &Path, fat: BootFat, label: &str, mib: u64) {
    require("mkfs.vfat", "dosfstools");
    ok(Command::new("truncate")
        .arg("-s")
        .arg((mib * MIB).to_string())
        .arg(file));
    let mut c = Command::new("mkfs.vfat");
    match fat {
        BootFat::Fat16 => c.args(["-F", "16"]),
        // One sector per cluster so a small volume still has the
        // 65525 clusters FAT32 needs.
        BootFat::Fat32 => c.args(["-F", "32", "-s", "1"]),
    };
    ok(c.args(["-i", "1a2b3c4d", "-n", label]).arg(file));
}

fn mcopy(fat: &Path, src: &Path) {
    require("mcopy", "mtools");
    let mut c = Command::new("mcopy");
    c.env("MTOOLS_SKIP_CHECK", "1")
        .args(["-s", "-p", "-m", "-i"])
        .arg(fat);
    for e in std::fs::read_dir(src).expect("boot dir") {
        c.arg(e.expect("entry").path());
    }
    ok(c.arg("::"));
}

fn mke2fs(file: &Path, label: &str, mib: u64, root: Option<&Path>) {
    require("mke2fs", "e2fsprogs");
    let mut c = Command::new("mke2fs");
    c.env("E2FSPROGS_FAKE_TIME", "1700000000")
        .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-L", label])
        .args([
            "-U",
            "clear",
            "-E",
            "root_owner=0:0,hash_seed=00000000-0000-4000-8000-000000000001",
        ]);
    if let Some(d) = root {
        c.arg("-d").arg(d);
    }
    ok(c.arg(file).arg(format!("{}M", mib)));
}

fn place(image: &Path, fs: &Path, start_bytes: u64) {
    ok(Command::new("dd")
        .arg(format!("if={}", fs.display()))
        .arg(format!("of={}", image.display()))
        .args([
            "bs=1M",
            "conv=notrunc,sparse",
            "status=none",
            "oflag=seek_bytes",
        ])
        .arg(format!("seek={start_bytes}")));
}

fn boot_tree(dir: &Path, spec: &BaseSpec) -> PathBuf {
    let b = dir.join("boot");
    std::fs::create_dir_all(b.join("splash")).unwrap();
    std::fs::create_dir_all(b.join("overlays")).unwrap();
    std::fs::write(
        b.join("config.json"),
        serde_json::to_vec_pretty(&spec.config_json()).unwrap(),
    )
    .unwrap();
    if spec.device_type_json {
        let dt = serde_json::json!({
            "slug": spec.slug,
            "name": format!("{} (fixture)", spec.slug),
            "arch": spec.arch,
            "state": "released",
            "yocto": {"machine": spec.slug, "fstype": "balenaos-img"},
        });
        std::fs::write(
            b.join("device-type.json"),
            serde_json::to_vec_pretty(&dt).unwrap(),
        )
        .unwrap();
    }
    // A PNG signature and IHDR chunk start: enough for a "splash" file.
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.extend((0..4000u32).map(|i| (i % 251) as u8));
    std::fs::write(b.join("splash/balena-logo.png"), png).unwrap();
    std::fs::write(b.join("overlays/fixture.dtbo"), vec![0xd0u8; 3000]).unwrap();
    std::fs::write(b.join("os-release"), os_release(spec)).unwrap();
    std::fs::write(b.join("cmdline.txt"), "rootwait quiet\n").unwrap();
    b
}

fn os_release(spec: &BaseSpec) -> String {
    format!(
        "ID=\"balena-os\"\nNAME=\"balenaOS\"\nVERSION=\"{v}\"\nVERSION_ID=\"{v}\"\nPRETTY_NAME=\"{p}\"\nMACHINE=\"{m}\"\nMETA_BALENA_VERSION=\"{v}\"\n",
        v = spec.os_version,
        p = spec.pretty_name(),
        m = spec.slug
    )
}

fn root_tree(dir: &Path, spec: &BaseSpec, name: &str) -> PathBuf {
    let r = dir.join(name);
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::create_dir_all(r.join("usr/lib")).unwrap();
    std::fs::create_dir_all(r.join("opt")).unwrap();
    std::fs::write(r.join("usr/lib/os-release"), os_release(spec)).unwrap();
    std::os::unix::fs::symlink("../usr/lib/os-release", r.join("etc/os-release")).unwrap();
    std::fs::write(
        r.join("etc/image-version-info"),
        format!("{}\n", spec.image_version_info()),
    )
    .unwrap();
    std::fs::write(r.join("etc/hostname"), "balena\n").unwrap();
    r
}

/// Fills `root/docker` with an engine store made by a private dockerd's
/// `docker load` of `images`.
fn docker_store(dir: &Path, root: &Path, images: &[(String, String)]) {
    let data_root = root.join("docker");
    std::fs::create_dir_all(&data_root).unwrap();
    let mut archives = Vec::new();
    for (name, reference) in images {
        archives.push(docker_archive(dir, name, reference));
    }
    let mut engine = crate::engine::Engine::start(&dir.join("engine"), &data_root);
    for a in &archives {
        engine.docker(&["load", "-i", a.to_str().unwrap()]);
    }
    let listed = engine.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    for (_, reference) in images {
        assert!(
            listed.lines().any(|l| l == reference),
            "docker load did not store {reference}: {listed}"
        );
    }
    engine.stop_clean();
}

/// Builds a raw base image `base.img` in `dir` as `spec` says.
pub fn make_base(dir: &Path, spec: &BaseSpec) -> PathBuf {
    require("sfdisk", "fdisk");
    std::fs::create_dir_all(dir).unwrap();
    let work = dir.join("work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();

    // Layout in MiB.
    let boot = (4, spec.boot_mib);
    let root_a = (boot.0 + boot.1, spec.root_mib);
    let root_b = (root_a.0 + root_a.1, spec.root_mib);
    let (state, data, total) = match spec.table {
        Table::Mbr => {
            // Extended from after rootB; each logical 4 MiB after its EBR.
            let ext = root_b.0 + root_b.1;
            let state = (ext + 4, spec.state_mib);
            let data = (state.0 + state.1 + 4, spec.data_mib);
            (state, data, data.0 + data.1)
        }
        Table::Gpt => {
            let state = (root_b.0 + root_b.1, spec.state_mib);
            let data = (state.0 + state.1, spec.data_mib);
            // Room for the backup GPT.
            (state, data, data.0 + data.1 + 1)
        }
    };
    let image = dir.join("base.img");
    let _ = std::fs::remove_file(&image);
    ok(Command::new("truncate")
        .arg("-s")
        .arg((total * MIB).to_string())
        .arg(&image));
    let sec = |mib: u64| mib * MIB / SECTOR;
    let data_label = spec
        .data_label
        .clone()
        .unwrap_or_else(|| spec.label("data"));
    let script = match spec.table {
        Table::Mbr => {
            let boot_type = match spec.fat {
                BootFat::Fat16 => "e",
                BootFat::Fat32 => "c",
            };
            let ext = root_b.0 + root_b.1;
            format!(
                "label: dos\nlabel-id: 0x5eed0001\nunit: sectors\n\
                 start={}, size={}, type={boot_type}, bootable\n\
                 start={}, size={}, type=83\n\
                 start={}, size={}, type=83\n\
                 start={}, size={}, type=f\n\
                 start={}, size={}, type=83\n\
                 start={}, size={}, type=83\n",
                sec(boot.0),
                sec(boot.1),
                sec(root_a.0),
                sec(root_a.1),
                sec(root_b.0),
                sec(root_b.1),
                sec(ext),
                sec(total - ext),
                sec(state.0),
                sec(state.1),
                sec(data.0),
                sec(data.1),
            )
        }
        Table::Gpt => {
            let linux = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
            format!(
                "label: gpt\nlabel-id: 5EED0000-0000-4000-8000-000000000001\nunit: sectors\n\
                 start={}, size={}, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"{}\"\n\
                 start={}, size={}, type={linux}, name=\"{}\"\n\
                 start={}, size={}, type={linux}, name=\"{}\"\n\
                 start={}, size={}, type={linux}, name=\"{}\"\n\
                 start={}, size={}, type={linux}, name=\"{}\"\n",
                sec(boot.0),
                sec(boot.1),
                spec.label("boot"),
                sec(root_a.0),
                sec(root_a.1),
                spec.label("rootA"),
                sec(root_b.0),
                sec(root_b.1),
                spec.label("rootB"),
                sec(state.0),
                sec(state.1),
                spec.label("state"),
                sec(data.0),
                sec(data.1),
                data_label,
            )
        }
    };
    sfdisk_apply(&image, &script);

    let fat = work.join("boot.fat");
    mkfs_fat(&fat, spec.fat, &spec.label("boot"), boot.1);
    mcopy(&fat, &boot_tree(&work, spec));
    place(&image, &fat, boot.0 * MIB);

    for (name, (start, mib)) in [("rootA", root_a), ("rootB", root_b)] {
        let fs = work.join(format!("{name}.ext4"));
        let tree = root_tree(&work, spec, name);
        mke2fs(&fs, &spec.label(name), mib, Some(&tree));
        place(&image, &fs, start * MIB);
    }
    let st = work.join("state.ext4");
    mke2fs(&st, &spec.label("state"), state.1, None);
    place(&image, &st, state.0 * MIB);

    let data_root = work.join("data");
    std::fs::create_dir_all(data_root.join("resin-data")).unwrap();
    std::fs::write(data_root.join("remove_me_to_reset"), "").unwrap();
    match &spec.store {
        Store::Empty => std::fs::create_dir_all(data_root.join("docker")).unwrap(),
        Store::Docker(images) => docker_store(&work, &data_root, images),
    }
    for (name, bytes) in &spec.data_files {
        std::fs::write(data_root.join(name), bytes).unwrap();
    }
    let dfs = work.join("data.ext4");
    mke2fs(&dfs, &data_label, data.1, Some(&data_root));
    place(&image, &dfs, data.0 * MIB);
    let _ = std::fs::remove_dir_all(&work);
    image
}

fn sfdisk_apply(image: &Path, script: &str) {
    use std::io::Write;
    let mut child = Command::new("sfdisk")
        .args(["-q", "--no-reread", "--no-tell-kernel", "-w", "never"])
        .arg(image)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sfdisk");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sfdisk failed: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An installer image `flasher.img` in `dir`: MBR with p1 flash-boot
/// (FAT16: config.json with `installer`, device-type.json) and p2
/// flash-rootA (ext4 holding `/opt/<file name of inner>`, sparse).
pub fn make_flasher(dir: &Path, inner: &Path) -> PathBuf {
    require("sfdisk", "fdisk");
    let spec = BaseSpec::default();
    let work = dir.join("flasher-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let inner_mib = std::fs::metadata(inner).unwrap().len().div_ceil(MIB);
    let boot = (4, 40);
    let root = (44, (inner_mib + 32).div_ceil(4) * 4);
    let total = root.0 + root.1;
    let image = dir.join("flasher.img");
    let _ = std::fs::remove_file(&image);
    ok(Command::new("truncate")
        .arg("-s")
        .arg((total * MIB).to_string())
        .arg(&image));
    let sec = |mib: u64| mib * MIB / SECTOR;
    sfdisk_apply(
        &image,
        &format!(
            "label: dos\nlabel-id: 0x5eed0002\nunit: sectors\nstart={}, size={}, type=e, bootable\nstart={}, size={}, type=83\n",
            sec(boot.0),
            sec(boot.1),
            sec(root.0),
            sec(root.1)
        ),
    );
    let b = boot_tree(&work, &spec);
    let mut cfg = spec.config_json();
    cfg["installer"] = serde_json::json!({"secureboot": false, "migrate": {"force": false}});
    std::fs::write(
        b.join("config.json"),
        serde_json::to_vec_pretty(&cfg).unwrap(),
    )
    .unwrap();
    let fat = work.join("boot.fat");
    mkfs_fat(&fat, BootFat::Fat16, "flash-boot", boot.1);
    mcopy(&fat, &b);
    place(&image, &fat, boot.0 * MIB);
    let tree = root_tree(&work, &spec, "rootA");
    let name = inner.file_name().unwrap();
    ok(Command::new("cp")
        .arg("--sparse=always")
        .arg(inner)
        .arg(tree.join("opt").join(name)));
    let fs = work.join("rootA.ext4");
    mke2fs(&fs, "flash-rootA", root.1, Some(&tree));
    place(&image, &fs, root.0 * MIB);
    let _ = std::fs::remove_dir_all(&work);
    image
}

/// Output kinds of [`pack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packed {
    /// `xz -T2`.
    Xz,
    /// `gzip`.
    Gz,
    /// `zstd`.
    Zst,
    /// `zip` with the image as its only member.
    Zip,
    /// `qemu-img convert -O qcow2`.
    Qcow2,
    /// `qemu-img convert -O vmdk` (monolithicSparse).
    Vmdk,
    /// `qemu-img convert -O vpc` (dynamic VHD, exact size).
    Vhd,
}

impl Packed {
    /// Every kind.
    pub const ALL: [Packed; 7] = [
        Packed::Xz,
        Packed::Gz,
        Packed::Zst,
        Packed::Zip,
        Packed::Qcow2,
        Packed::Vmdk,
        Packed::Vhd,
    ];
}

/// Writes `raw` packed as `kind` next to it (`<raw>.xz`, `.gz`, `.zst`,
/// `.zip`, `.qcow2`, `.vmdk`, `.vhd`) and returns the path.
pub fn pack(raw: &Path, kind: Packed) -> PathBuf {
    let with = |ext: &str| PathBuf::from(format!("{}.{ext}", raw.display()));
    let stream = |tool: &str, pkg: &str, args: &[&str], out: &Path| {
        require(tool, pkg);
        let f = std::fs::File::create(out).unwrap();
        let st = Command::new(tool)
            .args(args)
            .arg(raw)
            .stdout(f)
            .status()
            .unwrap();
        assert!(st.success(), "{tool} failed");
    };
    let qemu = |fmt: &str, opts: &[&str], out: &Path| {
        require("qemu-img", "qemu-utils");
        ok(Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", fmt])
            .args(opts)
            .arg(raw)
            .arg(out));
    };
    match kind {
        Packed::Xz => {
            let o = with("xz");
            stream("xz", "xz-utils", &["-T2", "-1", "-c"], &o);
            o
        }
        Packed::Gz => {
            let o = with("gz");
            stream("gzip", "gzip", &["-1", "-c"], &o);
            o
        }
        Packed::Zst => {
            let o = with("zst");
            stream("zstd", "zstd", &["-q", "-c"], &o);
            o
        }
        Packed::Zip => {
            let o = with("zip");
            zip(&o, &[raw]);
            o
        }
        Packed::Qcow2 => {
            let o = with("qcow2");
            qemu("qcow2", &[], &o);
            o
        }
        Packed::Vmdk => {
            let o = with("vmdk");
            qemu("vmdk", &[], &o);
            o
        }
        Packed::Vhd => {
            let o = with("vhd");
            qemu("vpc", &["-o", "force_size=on"], &o);
            o
        }
    }
}

/// A zip archive `out` holding `members` (stored by file name, deflate).
pub fn zip(out: &Path, members: &[&Path]) {
    require("zip", "zip");
    let _ = std::fs::remove_file(out);
    let mut c = Command::new("zip");
    c.args(["-q", "-j", "-1"]).arg(out);
    for m in members {
        c.arg(m);
    }
    ok(&mut c);
}
