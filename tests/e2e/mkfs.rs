//! `kiln mkfs ext4`: a rootless, tar-aware mke2fs -d, checked by e2fsck,
//! debugfs and the sizes it picks.

use kiln_e2e::*;

#[test]
fn mkfs_from_tar_min_size_and_into_an_image() {
    let demo = demo_inputs();
    let d = tempfile::tempdir().unwrap();
    let fs = d.path().join("root.ext4");
    ok(kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args([
            "mkfs",
            "ext4",
            "-q",
            "--size",
            "min",
            "--headroom",
            "8MiB",
            "--label",
            "rootfs",
            "--source",
        ])
        .arg(demo.join("rootfs-amd64.tar.gz"))
        .arg(&fs));
    e2fsck_clean(&fs);
    let size = std::fs::metadata(&fs).unwrap().len();
    assert!(size < 64 << 20, "min size stays small: {size}");
    let st = debugfs(&fs, "stat /bin/busybox");
    assert!(st.contains("Mode:  0755"), "{st}");
    let ls = debugfs(&fs, "ls -l /bin");
    assert!(ls.contains("sh"), "{ls}");
    // Into a window of an existing file at an offset; the rest untouched.
    let img = d.path().join("disk.img");
    std::fs::write(&img, vec![0xAAu8; 80 << 20]).unwrap();
    ok(kiln()
        .args([
            "mkfs", "ext4", "-q", "--size", "64MiB", "--offset", "8388608", "--label", "inner",
            "--source",
        ])
        .arg(demo.join("boot-amd64"))
        .arg(&img));
    let bytes = std::fs::read(&img).unwrap();
    assert!(bytes[..8 << 20].iter().all(|&b| b == 0xAA));
    assert!(bytes[72 << 20..].iter().all(|&b| b == 0xAA));
    let inner = d.path().join("inner.ext4");
    std::fs::write(&inner, &bytes[8 << 20..72 << 20]).unwrap();
    e2fsck_clean(&inner);
    // Too small: a clear error and no output file.
    let out = run(kiln()
        .args(["mkfs", "ext4", "-q", "--size", "1MiB", "--source"])
        .arg(demo.join("rootfs-amd64.tar.gz"))
        .arg(d.path().join("small.ext4")));
    assert!(!out.status.success());
    assert!(!d.path().join("small.ext4").exists());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}
