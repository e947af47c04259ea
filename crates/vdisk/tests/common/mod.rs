//! Shared helpers of the validator-driven tests: a synthetic sparse raw
//! image, qemu-img wrappers (a missing qemu-img FAILS the test and names
//! the Debian package), and content comparison through our readers.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use kiln_vdisk::{allocated_extents, feed_sparse_file, DiskWriter, OutputFormat, VirtualDisk};

/// Virtual size of the synthetic disk: 256 MiB minus 7 sectors, so the
/// last qcow2 cluster / VMDK grain is partial and VHD must round up.
pub const SIZE: u64 = 256 * 1024 * 1024 - 3584;

/// (offset, length, compressible) of the data regions: unaligned starts
/// and tails, a run crossing a cluster boundary, data in the last partial
/// cluster, and an explicitly written all-zero region (allocated in the raw
/// file, must not be allocated in the outputs).
pub const REGIONS: &[(u64, usize, bool)] = &[
    (0, 4096, false),
    ((1 << 20) + 7, 100_000, false),
    ((64 << 20) - 100, 300, false),
    (100 << 20, 3 << 20, true),
    ((200 << 20) + 12_345, 65_536 * 3 + 17, false),
    (SIZE - 1000, 1000, false),
];
/// An allocated-but-zero region of the raw file.
pub const ZERO_REGION: (u64, usize) = (150 << 20, 1 << 20);

pub struct Dir(pub tempfile::TempDir);

impl Dir {
    pub fn new() -> Self {
        Dir(tempfile::tempdir().unwrap())
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

fn fill(buf: &mut [u8], seed: u64, compressible: bool) {
    if compressible {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = b"kiln builds disk images "[i % 24];
        }
        return;
    }
    let mut x = seed | 1;
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 24) as u8;
    }
}

/// Writes the synthetic sparse raw image.
pub fn make_raw(path: &Path) {
    let f = File::create(path).unwrap();
    f.set_len(SIZE).unwrap();
    for (i, &(off, len, comp)) in REGIONS.iter().enumerate() {
        let mut b = vec![0u8; len];
        fill(&mut b, 0x9e37_79b9 + i as u64, comp);
        f.write_all_at(&b, off).unwrap();
    }
    f.write_all_at(&vec![0u8; ZERO_REGION.1], ZERO_REGION.0)
        .unwrap();
    f.sync_all().unwrap();
}

/// Converts the raw file at `raw` into `out` with our writer.
pub fn write_with(raw: &Path, out: &Path, fmt: &OutputFormat) -> kiln_vdisk::WriteSummary {
    let src = File::open(raw).unwrap();
    let dst = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(out)
        .unwrap();
    let mut w = fmt
        .create_writer(dst, src.metadata().unwrap().len())
        .unwrap();
    feed_sparse_file(&src, &mut w).unwrap();
    w.finish().unwrap()
}

pub struct Out {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs qemu-img; a missing binary fails the test naming the package.
pub fn qemu_img(args: &[&str]) -> Out {
    let o = kiln_testkit::run(kiln_testkit::command("qemu-img", "qemu-utils").args(args));
    Out {
        ok: o.status.success(),
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `qemu-img check` must exit 0 and report no errors and no leaks.
pub fn assert_check(fmt: &str, path: &Path) {
    let o = qemu_img(&["check", "-f", fmt, p(path)]);
    assert!(
        o.ok,
        "qemu-img check {fmt} failed: {} {}",
        o.stdout, o.stderr
    );
    assert!(o.stdout.contains("No errors were found"), "{}", o.stdout);
    assert!(!o.stdout.contains("leaked"), "{}", o.stdout);
}

/// `qemu-img compare` of the raw image with `path` must say identical.
pub fn assert_identical(raw: &Path, fmt: &str, path: &Path) {
    let o = qemu_img(&["compare", "-f", "raw", "-F", fmt, p(raw), p(path)]);
    assert_eq!(
        o.code,
        Some(0),
        "qemu-img compare: {} {}",
        o.stdout,
        o.stderr
    );
    assert!(o.stdout.contains("Images are identical"), "{}", o.stdout);
}

pub fn info(fmt: Option<&str>, path: &Path) -> serde_json::Value {
    let mut args = vec!["info", "--output=json"];
    if let Some(f) = fmt {
        args.extend(["-f", f]);
    }
    args.push(p(path));
    let o = qemu_img(&args);
    assert!(o.ok, "qemu-img info: {}", o.stderr);
    serde_json::from_str(&o.stdout).unwrap()
}

/// qemu-img convert from the raw image (extra options appended).
pub fn qemu_convert(raw: &Path, out: &Path, fmt: &str, extra: &[&str]) {
    let mut args = vec!["convert", "-f", "raw", "-O", fmt];
    args.extend_from_slice(extra);
    args.extend([p(raw), p(out)]);
    let o = qemu_img(&args);
    assert!(o.ok, "qemu-img convert: {}", o.stderr);
}

/// Our reader's virtual contents equal the raw file byte for byte, and
/// every non-zero byte lies inside a reported allocated extent.
pub fn assert_reader_matches(img: &dyn VirtualDisk, raw: &Path) {
    assert_contents_match(img, raw);
    check_regions_mapped(img);
}

/// Our reader's virtual contents equal the raw file byte for byte (and
/// read as zeros past it).
pub fn assert_contents_match(img: &dyn VirtualDisk, raw: &Path) {
    let raw = File::open(raw).unwrap();
    let size = raw.metadata().unwrap().len();
    assert!(
        img.virtual_size() >= size,
        "virtual size {} < {size}",
        img.virtual_size()
    );
    let mut a = vec![0u8; 1 << 20];
    let mut b = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < size {
        let n = ((size - off) as usize).min(a.len());
        raw.read_exact_at(&mut a[..n], off).unwrap();
        img.read_virtual(&mut b[..n], off).unwrap();
        assert!(a[..n] == b[..n], "content differs in the MiB at {off}");
        off += n as u64;
    }
    // Past the raw size (VHD rounding) the disk reads as zeros.
    if img.virtual_size() > size {
        let n = (img.virtual_size() - size) as usize;
        let mut t = vec![1u8; n];
        img.read_virtual(&mut t, size).unwrap();
        assert!(t.iter().all(|&x| x == 0));
    }
}

/// Every data region of the synthetic image is covered by allocated
/// extents, which are ordered and merged.
fn check_regions_mapped(img: &dyn VirtualDisk) {
    let exts: Vec<_> = allocated_extents(img).collect::<Result<_, _>>().unwrap();
    assert!(!exts.is_empty());
    for w in exts.windows(2) {
        assert!(
            w[0].end() < w[1].offset,
            "extents not merged/ordered: {w:?}"
        );
    }
    for &(off, len, _) in REGIONS {
        let end = off + len as u64;
        let covered: u64 = exts
            .iter()
            .map(|e| e.end().min(end).saturating_sub(e.offset.max(off)))
            .sum();
        assert_eq!(
            covered, len as u64,
            "region {off}+{len} not fully in {exts:?}"
        );
    }
    // Reads past the end are refused.
    let mut one = [0u8; 1];
    assert!(img.read_virtual(&mut one, img.virtual_size()).is_err());
}

/// Byte-for-byte file equality, 1 MiB at a time.
pub fn same_bytes(a: &Path, b: &Path) -> bool {
    let (fa, fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    let len = fa.metadata().unwrap().len();
    if len != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut off = 0;
    while off < len {
        let n = ((len - off) as usize).min(x.len());
        fa.read_exact_at(&mut x[..n], off).unwrap();
        fb.read_exact_at(&mut y[..n], off).unwrap();
        if x[..n] != y[..n] {
            return false;
        }
        off += n as u64;
    }
    true
}

/// Writes the same output twice and requires identical bytes.
pub fn assert_deterministic(dir: &Dir, raw: &Path, fmt: &OutputFormat, name: &str) {
    let a = dir.path(&format!("{name}.a"));
    let b = dir.path(&format!("{name}.b"));
    write_with(raw, &a, fmt);
    write_with(raw, &b, fmt);
    assert!(same_bytes(&a, &b), "{name}: two writes differ");
}

/// Two option sets that must give byte-identical files (e.g. thread counts).
pub fn assert_same_output(
    dir: &Dir,
    raw: &Path,
    a: &OutputFormat,
    b: &OutputFormat,
    name: &str,
) -> PathBuf {
    let pa = dir.path(&format!("{name}.1"));
    let pb = dir.path(&format!("{name}.2"));
    write_with(raw, &pa, a);
    write_with(raw, &pb, b);
    assert!(same_bytes(&pa, &pb), "{name}: outputs differ");
    pb
}
