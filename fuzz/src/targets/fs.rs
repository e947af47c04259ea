//! Filesystem readers: FAT (kiln-fat: reader and the rebuild editor) and
//! ext4 (kiln-ext4: superblock, group descriptors, inodes, extents,
//! directories incl. htree, xattrs, symlinks).

use std::io::Read;

use kiln_ext4::{Ext4Reader, NodeKind, Visit};
use kiln_fat::{FatEdits, FatEntryKind, FatReader, ListLimits};
use kiln_tree::{Timestamp, TreePath};

use super::drain::{drain, HasCounts};
use super::outcome::{bucket, err_sig, mix};
use crate::target::Target;

/// Bounds on a fuzzed listing.
const LIMITS: ListLimits = ListLimits {
    max_entries: 10_000,
    max_depth: 64,
};

/// Largest file the targets read whole, bytes.
const MAX_FILE: u64 = 4 << 20;

fn fat(data: &[u8]) -> u64 {
    let r = match FatReader::open(data) {
        Ok(r) => r,
        Err(e) => return err_sig(&e),
    };
    let mut h = mix(
        u64::from(r.fat_type().is_some()),
        u64::from(r.volume_id() & 1),
    );
    h = mix(
        h,
        r.volume_label()
            .map_or_else(|e| err_sig(&e), |l| l.map_or(2, |l| l.len() as u64)),
    );
    let files = match r.list(LIMITS) {
        Ok(list) => list,
        Err(e) => return mix(h, err_sig(&e)),
    };
    h = mix(h, bucket(files.len() as u64));
    for f in files
        .iter()
        .filter(|f| f.kind == FatEntryKind::File)
        .take(16)
    {
        h = mix(
            h,
            r.read_file(&f.path, MAX_FILE)
                .map_or_else(|e| err_sig(&e), |d| bucket(d.len() as u64)),
        );
    }
    let walked = r.walk(LIMITS, |_info, stamp, content| {
        if let Some(c) = content {
            std::io::copy(&mut c.take(MAX_FILE), &mut std::io::sink()).map_err(|source| {
                kiln_fat::Error::Read {
                    op: "fuzz read",
                    path: String::new(),
                    source,
                }
            })?;
        }
        let _ = stamp.attributes;
        Ok(())
    });
    h = mix(h, walked.map_or_else(|e| err_sig(&e), |()| 3));
    // The editor: rebuild with one put and one remove, then the result
    // must mount and hold the put file.
    let mut edits = FatEdits::new();
    edits.put("config.json", b"{\"fuzz\":1}".to_vec());
    if let Some(f) = files.first() {
        edits.remove(&f.path);
    }
    let mut out = Vec::new();
    match kiln_fat::rebuild(&data, &mut out, &edits, Timestamp::new(1_700_000_000, 0)) {
        Ok(_) => {
            let back = FatReader::open(&out).and_then(|r| r.read_file("config.json", 64));
            match back {
                Ok(d) => assert_eq!(d, b"{\"fuzz\":1}", "rebuilt volume lost the put file"),
                Err(e) => panic!("rebuilt volume does not read back: {e}"),
            }
            mix(h, 4)
        }
        Err(e) => mix(h, err_sig(&e)),
    }
}

/// FAT reader and editor (kiln-fat).
pub const FAT: Target = Target {
    name: "fat",
    invariant: "FAT12/16/32 boot sector, FATs, directories, long names, cluster chains (loops, out of \
                range), and a rebuild of what was read: no panic, no hang, memory bounded; a rebuild \
                that succeeds reads back",
    run: fat,
};

fn ext4(data: &[u8]) -> u64 {
    let r = match Ext4Reader::open(data) {
        Ok(r) => r,
        Err(e) => return err_sig(&e),
    };
    let info = r.info();
    let mut h = mix(bucket(info.blocks_count), u64::from(info.block_size));
    let mut sink = drain();
    h = mix(
        h,
        r.feed(&mut sink, |_, _| Visit::Keep)
            .map_or_else(|e| err_sig(&e), |rep| bucket(rep.entries)),
    );
    let (n, b) = sink.counts();
    h = mix(h, bucket(n) ^ bucket(b) << 8);
    let root = TreePath::root();
    let list = match r.list_dir(&root) {
        Ok(Some(l)) => l,
        Ok(None) => return mix(h, 5),
        Err(e) => return mix(h, err_sig(&e)),
    };
    for e in list.iter().take(32) {
        let Ok(p) = root.join(&e.name) else { continue };
        let got = match e.kind {
            NodeKind::File => r
                .read_file(&p, MAX_FILE)
                .map(|d| d.map_or(6, |d| bucket(d.len() as u64))),
            NodeKind::Symlink => r.read_link(&p).map(|d| d.map_or(7, |d| d.len() as u64)),
            NodeKind::Dir => r
                .list_dir(&p)
                .map(|d| d.map_or(8, |d| bucket(d.len() as u64))),
            _ => r.kind_of(&p).map(|k| u64::from(k.is_some())),
        };
        h = mix(h, got.unwrap_or_else(|e| err_sig(&e)));
    }
    h
}

/// ext4 reader (kiln-ext4).
pub const EXT4: Target = Target {
    name: "ext4",
    invariant: "ext4 superblock, group descriptors, inodes, extent trees, directories (linear and \
                htree), xattrs, symlinks, walked whole and file by file: no panic, no hang, memory \
                bounded",
    run: ext4,
};
