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
mod drain;
mod fs;
mod image;
mod outcome;
mod scratch;
mod text;
mod tree;

pub use crate::target::Target;
pub use scratch::remove_scratch;

/// Every target, in `list` order.
pub const ALL: &[Target] = &[
    disk::QCOW2,
    disk::VMDK,
    disk::VHD,
    disk::VHDX,
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
