//! `Ext4Reader` streams a large file with bounded memory: a 384 MiB file
//! written by kiln's writer is read back through `feed` while the
//! process's peak resident set (VmHWM, reset through
//! `/proc/self/clear_refs`) is watched. Alone in its test binary so no
//! other test allocates meanwhile.

mod common;
use common::tool;
use kiln_ext4::{Ext4Options, Ext4Reader, Ext4Writer, Visit};
use kiln_tree::{Content, Entry, EntryKind, Metadata, Timestamp, TreePath, TreeSink};
use std::io::Read;

const SIZE: u64 = 384 << 20;

fn byte(i: u64) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 13)) as u8 | 1
}

struct Pattern(u64);
impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(SIZE - self.0) as usize;
        for (k, b) in buf[..n].iter_mut().enumerate() {
            *b = byte(self.0 + k as u64);
        }
        self.0 += n as u64;
        Ok(n)
    }
}

struct Check {
    checked: u64,
}
impl TreeSink for Check {
    type Error = std::io::Error;
    fn add(&mut self, e: &Entry, c: Content<'_>) -> Result<(), Self::Error> {
        if let Content::Stream { reader, size } = c {
            let mut buf = vec![0u8; 1 << 16];
            let mut pos = 0u64;
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                for (k, b) in buf[..n].iter().enumerate() {
                    assert_eq!(*b, byte(pos + k as u64), "{} at {}", e.path, pos + k as u64);
                }
                pos += n as u64;
            }
            assert_eq!(pos, size);
            self.checked += pos;
        }
        Ok(())
    }
}

fn status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[test]
fn big_file_streams_in_bounded_memory() {
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let img = d.path().join("big.img");
    let size = 512u64 << 20;
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(size).unwrap();
    let mut w = Ext4Writer::new(f, Ext4Options::new(size).uuid([9; 16])).unwrap();
    let e = Entry::new(
        TreePath::parse(b"big.bin").unwrap(),
        EntryKind::File,
        Metadata::new(0o644, Timestamp::new(1_700_000_000, 0)),
    );
    w.add(
        &e,
        Content::Stream {
            size: SIZE,
            reader: &mut Pattern(0),
        },
    )
    .unwrap();
    w.finish().unwrap();
    common::e2fsck_clean(&img);
    let _ = tool("e2fsck", "e2fsprogs");

    // Reset the peak to the current resident set, then read.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let base = status("VmRSS:");
    let started = std::time::Instant::now();
    let fs = Ext4Reader::open(std::fs::File::open(&img).unwrap()).unwrap();
    let mut check = Check { checked: 0 };
    fs.feed(&mut check, |_, _| Visit::Keep).unwrap();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "read and checked {SIZE} bytes in {secs:.2} s ({:.0} MiB/s, page cache warm)",
        SIZE as f64 / secs / f64::from(1 << 20)
    );
    let peak = status("VmHWM:");
    assert_eq!(check.checked, SIZE);
    let grown = peak.saturating_sub(base);
    eprintln!("reading {SIZE} bytes grew the peak RSS by {grown} bytes");
    assert!(grown < 16 << 20, "peak RSS grew by {grown} bytes");
}
