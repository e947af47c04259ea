//! Helpers for the validator-driven tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Fails (never skips) when `tool` is missing, naming the Debian package.
pub fn require(tool: &str, package: &str) {
    kiln_testkit::require(tool, package);
}

pub use kiln_testkit::{ok, run};

/// Deterministic pseudo-random bytes (xorshift), mixed with text so the
/// data compresses somewhat like a filesystem image.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len);
    let mut line = 0u64;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x % 4 == 0 {
            v.extend_from_slice(&x.to_le_bytes());
        } else {
            line += 1;
            v.extend_from_slice(
                format!("/usr/lib/file-{line} mode=0644 size={}\n", x % 9973).as_bytes(),
            );
        }
    }
    v.truncate(len);
    v
}

/// Writes a sparse image: `size` bytes, `data` at each offset.
pub fn sparse_image(path: &Path, size: u64, data: &[(u64, Vec<u8>)]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    for (off, bytes) in data {
        f.write_all_at(bytes, *off).unwrap();
    }
    f.sync_all().unwrap();
}

/// Byte-compares two files with `cmp`.
pub fn cmp_equal(a: &Path, b: &Path) -> bool {
    require("cmp", "diffutils");
    run(Command::new("cmp").arg(a).arg(b)).status.success()
}

/// A 48 MiB (+1000 bytes, so the last block is partial) sparse image with
/// data at known extents; returns the extents `(offset, length)`.
pub fn make_image(path: &Path) -> Vec<(u64, u64)> {
    let size = (48 << 20) + 1000;
    let data = vec![
        (0u64, payload(70_000, 1)),
        (5 << 20, payload(3 << 20, 2)),
        ((20 << 20) + 100, payload(4096 * 3, 3)),
        (size - 500, payload(500, 4)),
    ];
    sparse_image(path, size, &data);
    data.iter().map(|(o, d)| (*o, d.len() as u64)).collect()
}
