//! The reproducibility pin: fixed synthetic inputs + SOURCE_DATE_EPOCH
//! give an image whose sha256 is pinned here. Any change to the bytes kiln
//! writes (ext4, FAT, tables, layout, identities) changes this digest, and
//! updating it is a reviewed decision: say why in the commit.

use kiln_e2e::*;
use std::path::Path;

/// sha256 of the fin-cm3 image built from [`inputs`].
const PINNED: &str = "d1d864798afe7c87db65b1599627e0f14e9007e75315c8044dc64cab53a81105";

/// A rootfs tar, boot files and a recipe, all made here, byte-stable.
fn inputs(dir: &Path) -> std::path::PathBuf {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, data: &[u8], kind: tar::EntryType| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        h.set_path(path).unwrap();
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    add("etc/", 0o755, b"", tar::EntryType::Directory);
    add("etc/hostname", 0o644, b"pinned\n", tar::EntryType::Regular);
    add(
        "etc/os-release",
        0o644,
        b"ID=pinned\n",
        tar::EntryType::Regular,
    );
    add("usr/bin/", 0o755, b"", tar::EntryType::Directory);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    add("usr/bin/tool", 0o4755, &big, tar::EntryType::Regular);
    add("var/lib/empty", 0o600, b"", tar::EntryType::Regular);
    std::fs::write(dir.join("rootfs.tar"), b.into_inner().unwrap()).unwrap();
    std::fs::create_dir_all(dir.join("boot/overlays")).unwrap();
    std::fs::write(dir.join("boot/config.txt"), b"enable_uart=1\n").unwrap();
    std::fs::write(dir.join("boot/overlays/README"), b"overlays\n").unwrap();
    let recipe = r#"
name = "pinned"
[os.armhf]
rootfs = "rootfs.tar"
boot = "boot"
[config]
hostname = "pinned"
[swap]
size = "64MiB"
label = "pin-swap"
[data]
headroom = "16MiB"
[build]
source-date-epoch = 1700000000
"#;
    let p = dir.join("pinned.toml");
    std::fs::write(&p, recipe).unwrap();
    p
}

#[test]
fn pinned_image_digest() {
    let d = tempfile::tempdir().unwrap();
    let recipe = inputs(d.path());
    let img = d.path().join("pinned.img");
    ok(kiln()
        .args(["build", "-q", "--board", "fin-cm3", "--recipe"])
        .arg(&recipe)
        .arg("-o")
        .arg(&img));
    let got = sha256_file(&img);
    assert_eq!(
        got, PINNED,
        "the image bytes changed; if intended, pin the new digest and say why"
    );
}
