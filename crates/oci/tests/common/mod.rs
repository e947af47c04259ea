//! Test helpers: busybox-static from Debian, an OCI layout builder (its
//! output validated with skopeo), a sink that materialises entries into a
//! real directory as root, and a private containerd + dockerd.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use kiln_e2e::engine;
pub mod fixture;
pub mod materialise;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Fails (never skips) when a validator is missing.
pub fn require_tool(tool: &str, package: &str) {
    kiln_testkit::require(tool, package);
}

/// Runs `cmd`, asserting success; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    kiln_testkit::ok(cmd)
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `/bin/busybox` of Debian's busybox-static (amd64), cached in
/// `.cache/debs/amd64` and extracted once per cache.
pub fn busybox() -> PathBuf {
    require_tool("dpkg-deb", "dpkg");
    require_tool("apt-get", "apt");
    let cache = repo_root().join(".cache/debs/amd64");
    std::fs::create_dir_all(&cache).unwrap();
    let has_deb = |c: &Path| {
        std::fs::read_dir(c)
            .unwrap()
            .filter_map(Result::ok)
            .find(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("busybox-static_")
                    && e.file_name().to_string_lossy().ends_with(".deb")
            })
            .map(|e| e.path())
    };
    let deb = match has_deb(&cache) {
        Some(d) => d,
        None => {
            run(Command::new("apt-get")
                .arg("download")
                .arg("busybox-static")
                .current_dir(&cache));
            has_deb(&cache).expect("apt-get download busybox-static produced no .deb")
        }
    };
    let root = repo_root().join(".cache/busybox-amd64-root");
    let bin = root.join("bin/busybox");
    if !bin.is_file() {
        std::fs::create_dir_all(&root).unwrap();
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    }
    assert!(
        bin.is_file(),
        "{} missing after extracting {}",
        bin.display(),
        deb.display()
    );
    bin
}
