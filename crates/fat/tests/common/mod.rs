//! Shared helpers of the validator-driven tests: test trees, running the
//! real tools (fsck.fat, mtools, mkfs.fat), comparing read-back content.

#![allow(dead_code)]

use kiln_fat::{FatOptions, FatReport, FatType, FatWriter};
use kiln_tree::{Content, Entry, EntryKind, Metadata, Timestamp, TreePath, TreeSink};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Output;

/// SOURCE_DATE_EPOCH used by the tests (2023-11-14T22:13:20Z).
pub const EPOCH: Timestamp = Timestamp::new(1_700_000_000, 0);
pub const MIB: u64 = 1 << 20;

/// Runs a validator; a missing tool fails the test naming its package.
pub fn run(tool: &str, package: &str, args: &[&str]) -> Output {
    kiln_testkit::run(
        kiln_testkit::command(tool, package)
            .args(args)
            .env("MTOOLS_SKIP_CHECK", "0"),
    )
}

pub use kiln_testkit::text;

/// `fsck.fat -n`: exit 0, nothing on stderr and exactly the version and
/// summary lines on stdout (any complaint adds lines). Returns
/// (files, used clusters, total clusters) from the summary.
pub fn fsck_clean(img: &Path) -> (u64, u64, u64) {
    let o = run("fsck.fat", "dosfstools", &["-n", img.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "fsck.fat -n failed:\n{out}\n{err}");
    assert!(err.trim().is_empty(), "fsck.fat stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "fsck.fat complained:\n{out}");
    assert!(lines[0].starts_with("fsck.fat "), "{out}");
    parse_summary(lines[1])
}

/// Parses "img: 12 files, 34/5678 clusters".
pub fn parse_summary(line: &str) -> (u64, u64, u64) {
    let rest = line.rsplit_once(": ").map(|x| x.1).unwrap_or(line);
    let mut it = rest.split_whitespace();
    let files: u64 = it.next().unwrap().parse().unwrap();
    assert_eq!(it.next(), Some("files,"), "{line}");
    let (used, total) = it.next().unwrap().split_once('/').unwrap();
    (files, used.parse().unwrap(), total.parse().unwrap())
}

/// `fsck.fat -vn` output (must also be clean).
pub fn fsck_verbose(img: &Path) -> String {
    let o = run("fsck.fat", "dosfstools", &["-vn", img.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "fsck.fat -vn failed:\n{out}\n{err}");
    out
}

/// `mdir -/ -b`: every path (with long names) below the root, without
/// the `::/` prefix, sorted.
pub fn mdir_paths(img_spec: &str) -> Vec<String> {
    let o = run("mdir", "mtools", &["-i", img_spec, "-/", "-b", "::/"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "mdir failed: {err}");
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim_start_matches("::/").trim_end_matches('/').to_owned())
        .collect();
    v.sort();
    v
}

/// How mtools 4.0 shows a name: it converts long names one UTF-16 unit at
/// a time, so each half of a surrogate pair (characters beyond U+FFFF,
/// e.g. emoji) appears as `_`. The bytes on disk are right (fatfs reads
/// them back); this only adapts the expectation to the tool.
pub fn mtools_name(p: &str) -> String {
    p.chars()
        .flat_map(|c| {
            if u32::from(c) > 0xFFFF {
                vec!['_', '_']
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Expected paths as mdir/mcopy show them, sorted.
pub fn mtools_paths(tree: &Tree) -> Vec<String> {
    let mut v: Vec<String> = tree.expected().keys().map(|p| mtools_name(p)).collect();
    v.sort();
    v
}

/// Deterministic pseudo-random content of `size` bytes.
pub struct Pattern {
    pub seed: u64,
    pub size: u64,
    pub pos: u64,
}

pub fn pattern_byte(seed: u64, i: u64) -> u8 {
    let x = (i ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0x2545_F491_4F6C_DD1D);
    (x >> 56) as u8
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.size - self.pos).min(buf.len() as u64) as usize;
        for (k, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern_byte(self.seed, self.pos + k as u64);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Content of a test file.
#[derive(Debug, Clone)]
pub enum Data {
    Bytes(Vec<u8>),
    Pattern { seed: u64, size: u64 },
}

impl Data {
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Data::Bytes(b) => b.clone(),
            Data::Pattern { seed, size } => (0..*size).map(|i| pattern_byte(*seed, i)).collect(),
        }
    }
}

/// A test tree: entries in the order they are fed.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub entries: Vec<(String, Option<Data>)>, // None = directory
}

impl Tree {
    pub fn dir(&mut self, p: &str) -> &mut Self {
        self.entries.push((p.to_owned(), None));
        self
    }
    pub fn file(&mut self, p: &str, data: &[u8]) -> &mut Self {
        self.entries
            .push((p.to_owned(), Some(Data::Bytes(data.to_vec()))));
        self
    }
    pub fn big(&mut self, p: &str, seed: u64, size: u64) -> &mut Self {
        self.entries
            .push((p.to_owned(), Some(Data::Pattern { seed, size })));
        self
    }

    /// Feeds every entry to `sink`.
    pub fn feed<S: TreeSink>(&self, sink: &mut S) -> Result<(), S::Error> {
        for (p, d) in &self.entries {
            let path = TreePath::parse(p.as_bytes()).unwrap();
            let meta = Metadata::new(0o644, EPOCH);
            match d {
                None => sink.add(&Entry::new(path, EntryKind::Dir, meta), Content::None)?,
                Some(Data::Bytes(b)) => {
                    sink.add(&Entry::new(path, EntryKind::File, meta), Content::bytes(b))?
                }
                Some(Data::Pattern { seed, size }) => {
                    let mut r = Pattern {
                        seed: *seed,
                        size: *size,
                        pos: 0,
                    };
                    sink.add(
                        &Entry::new(path, EntryKind::File, meta),
                        Content::Stream {
                            size: *size,
                            reader: &mut r,
                        },
                    )?
                }
            }
        }
        Ok(())
    }

    /// Expected view: every path (files and all directories, implied
    /// parents included) -> Some(content) for files, None for dirs.
    pub fn expected(&self) -> BTreeMap<String, Option<Data>> {
        let mut m = BTreeMap::new();
        for (p, d) in &self.entries {
            let p = p.trim_matches('/').to_owned();
            let mut acc = String::new();
            let parts: Vec<&str> = p.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                if !acc.is_empty() {
                    acc.push('/');
                }
                acc.push_str(part);
                if i + 1 < parts.len() {
                    m.entry(acc.clone()).or_insert(None);
                }
            }
            m.insert(p, d.clone());
        }
        m
    }

    /// The boot-partition-like tree used by the validator tests.
    pub fn boot_like() -> Tree {
        let mut t = Tree::default();
        t.file(
            "config.json",
            b"{\n  \"deviceType\": \"fincm3\",\n  \"hostname\": \"kiln\"\n}\n",
        )
        .file(
            "cmdline.txt",
            b"console=serial0,115200 root=LABEL=resin-rootA\n",
        )
        .file("README", b"readme\n")
        .file("Makefile", b"all:\n")
        .file("readme.TXT", b"mixed case parts\n")
        // Arrives before its parents.
        .file("system-connections/My Wifi", b"[connection]\nid=My Wifi\n")
        .dir("system-connections")
        .file(
            "system-connections/ethernet-static",
            b"[ipv4]\nmethod=manual\n",
        )
        .file("a/b/c/d/e/deep file with a long name.txt", b"deep\n")
        .dir("a/b/empty dir")
        .file("empty", b"")
        .file("a/empty.txt", b"")
        .file("longfilename1.txt", b"1")
        .file("longfilename2.txt", b"2")
        .file("longfilename3.txt", b"3")
        .file(".hidden", b"dot")
        .file("foo.tar.gz", b"tgz")
        .file("résumé.txt", "é".as_bytes())
        .file("日本語/ファイル.txt", "こんにちは".as_bytes())
        .file("emoji-🙂.txt", "🙂".as_bytes())
        .file("UPPER.TXT", b"upper")
        .file("a+b,c;d=e[f].txt", b"odd chars")
        .big("kernel-20mib.img", 7, 20 * MIB)
        .big("bootcode.bin", 8, 52_456);
        for i in 0..1100 {
            t.file(
                &format!("overlays/dtoverlay-{i:04}.dtbo"),
                format!("overlay {i}\n").as_bytes(),
            );
        }
        t
    }
}

/// Writes `tree` into a fresh `size`-byte image file.
pub fn build(path: &Path, size: u64, opts: FatOptions, tree: &Tree) -> FatReport {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let mut w = FatWriter::new(f, size, opts).unwrap();
    tree.feed(&mut w).unwrap();
    w.finish().unwrap()
}

pub fn opts(t: FatType) -> FatOptions {
    FatOptions::new(0x1234_ABCD, EPOCH)
        .fat_type(t)
        .volume_label("resin-boot")
        .hidden_sectors(8192)
}

/// Extracts every file with `mcopy -s` and compares each byte with the
/// tree; also checks that no unexpected file appeared.
pub fn mcopy_matches(img_spec: &str, tree: &Tree) {
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("x");
    std::fs::create_dir(&dest).unwrap();
    let o = run(
        "mcopy",
        "mtools",
        &["-s", "-n", "-i", img_spec, "::/*", dest.to_str().unwrap()],
    );
    assert!(o.status.success(), "mcopy failed: {:?}", text(&o));
    let expected: BTreeMap<String, Option<Data>> = tree
        .expected()
        .into_iter()
        .map(|(k, v)| (mtools_name(&k), v))
        .collect();
    let mut found = BTreeMap::new();
    walk(&dest, &dest, &mut found);
    let want: Vec<&String> = expected.keys().collect();
    let got: Vec<&String> = found.keys().collect();
    assert_eq!(got, want, "mcopy tree differs");
    for (p, d) in &expected {
        match (d, &found[p]) {
            (None, None) => {}
            (Some(d), Some(host)) => {
                let got = std::fs::read(host).unwrap();
                assert!(
                    got == d.bytes(),
                    "{p}: content differs ({} bytes)",
                    got.len()
                );
            }
            _ => panic!("{p}: kind differs"),
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<std::path::PathBuf>>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let rel = e
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        if e.file_type().unwrap().is_dir() {
            out.insert(rel, None);
            walk(root, &e.path(), out);
        } else {
            out.insert(rel, Some(e.path()));
        }
    }
}

/// Copies `len` bytes at `offset` of `src` into a new file (fsck.fat has
/// no offset option).
pub fn extract(src: &Path, offset: u64, len: u64, dst: &Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(src).unwrap();
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, offset).unwrap();
    std::fs::write(dst, buf).unwrap();
}
