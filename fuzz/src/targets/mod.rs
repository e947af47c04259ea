//! The fuzz targets: one per parser of untrusted bytes. Each drives the
//! parser through its public API on an in-memory input and walks what it
//! returns (lists directories, reads files, follows allocation maps), so
//! the deep code runs too. Each returns a signature of how the input
//! ended (a hash of the error text without digits, or of what was read)
//! that the runner uses to keep inputs that reach new outcomes.
//!
//! Invariant of every target, stated again in each `invariant` line: no
//! panic, no execution over the hang limit, no allocation past the
//! allocator's bound, whatever the bytes.

mod disk;
mod fs;
mod image;
mod text;
mod tree;

use std::fmt::Display;

/// One fuzz target.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Name on the command line and of the corpus directory.
    pub name: &'static str,
    /// What must hold for every input.
    pub invariant: &'static str,
    /// Runs one input and returns its outcome signature.
    pub run: fn(&[u8]) -> u64,
}

/// Every target, in `list` order.
pub const ALL: &[Target] = &[
    disk::QCOW2,
    disk::VMDK,
    disk::VHD,
    disk::VDISK_OPEN,
    disk::PART,
    fs::FAT,
    fs::EXT4,
    tree::TAR,
    tree::OCI,
    tree::OCI_INSPECT_JSON,
    text::BMAP,
    text::RECIPE,
    text::PROFILE,
    text::DEVICES,
    image::BASE,
    image::INSPECT,
];

/// Targets that prove the harness catches what it claims to (run by
/// `fuzz/tests/harness.rs`; not listed, not in `all`). Each misbehaves
/// only on inputs starting with `!`, which mutations of its empty corpus
/// soon produce.
pub const SELFTEST: &[Target] = &[
    Target {
        name: "selftest-panic",
        invariant: "panics on inputs starting with `!`",
        run: |d| {
            assert!(d.first() != Some(&b'!'), "selftest panic");
            0
        },
    },
    Target {
        name: "selftest-hang",
        invariant: "sleeps 3 s on inputs starting with `!`",
        run: |d| {
            if d.first() == Some(&b'!') {
                std::thread::sleep(std::time::Duration::from_secs(3));
            }
            0
        },
    },
    Target {
        name: "selftest-alloc",
        invariant: "allocates 1 TiB on inputs starting with `!` (a lying size header)",
        run: |d| {
            if d.first() == Some(&b'!') {
                let v: Vec<u8> = Vec::with_capacity(1 << 40);
                return v.capacity() as u64;
            }
            0
        },
    },
];

/// The target called `name`.
pub fn find(name: &str) -> Option<&'static Target> {
    ALL.iter().chain(SELFTEST).find(|t| t.name == name)
}

/// Signature of an error: its text without digits (offsets and sizes
/// change with every input; the kind of failure is what matters).
pub(crate) fn err_sig<E: Display + ?Sized>(e: &E) -> u64 {
    if std::env::var_os("KILN_FUZZ_DEBUG").is_some() {
        eprintln!("outcome: {e}");
    }
    let text: Vec<u8> = e
        .to_string()
        .bytes()
        .filter(|b| !b.is_ascii_digit())
        .take(160)
        .collect();
    crate::mutate::fnv(&text) | 1
}

/// A scratch directory for targets whose parser takes a path: one per
/// process (a fresh temporary directory per execution would put a new
/// random name into every error message and cost more than the parse),
/// emptied before each use. [`remove_scratch`] deletes it at the end.
pub(crate) fn scratch() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("kiln-fuzz-{}", std::process::id()));
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Deletes the directory [`scratch`] made, if any.
pub fn remove_scratch() {
    let dir = std::env::temp_dir().join(format!("kiln-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(dir);
}

/// Mixes `v` into signature `h`.
pub(crate) fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x100_0000_01b3).rotate_left(17)
}

/// Buckets a count logarithmically (so "read 1000 vs 1001 bytes" is one
/// outcome).
pub(crate) fn bucket(n: u64) -> u64 {
    u64::from(64 - n.leading_zeros())
}
