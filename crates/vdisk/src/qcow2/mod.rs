//! qcow2 version 3, as specified by QEMU's `docs/interop/qcow2.txt`
//! ("QCOW2 Image Format"; sections "Header", "Host cluster management",
//! "Cluster mapping", "Compressed Clusters Descriptor").
//!
//! All fields are big-endian.
//!
//! Header (section "Header"), the 104 bytes of version 3 that we write:
//!
//! | offset | size | field                      | written as                  |
//! |-------:|-----:|----------------------------|-----------------------------|
//! | 0      | 4    | magic `QFI\xfb`            |                             |
//! | 4      | 4    | version                    | 3                           |
//! | 8      | 8    | backing_file_offset        | 0, or after the extensions  |
//! | 16     | 4    | backing_file_size          | 0, or the name's length     |
//! | 20     | 4    | cluster_bits               | 16 (64 KiB clusters)        |
//! | 24     | 8    | size (virtual, bytes)      |                             |
//! | 32     | 4    | crypt_method               | 0                           |
//! | 36     | 4    | l1_size (entries)          | ceil(size / 512 MiB)        |
//! | 40     | 8    | l1_table_offset            | cluster 1                   |
//! | 48     | 8    | refcount_table_offset      | after the data              |
//! | 56     | 4    | refcount_table_clusters    |                             |
//! | 60     | 4    | nb_snapshots               | 0                           |
//! | 64     | 8    | snapshots_offset           | 0                           |
//! | 72     | 8    | incompatible_features      | 0                           |
//! | 80     | 8    | compatible_features        | 0                           |
//! | 88     | 8    | autoclear_features         | 0                           |
//! | 96     | 4    | refcount_order             | 4 (16-bit refcounts)        |
//! | 100    | 4    | header_length              | 104                         |
//! | 104    | 8    | header extension end mark  | type 0, length 0            |
//!
//! An overlay ([`Qcow2Options::backing_file`]) instead has at 104 the
//! "backing file format name" extension (type `0xE2792ACA`, 4-byte length,
//! the format name padded to 8 bytes), then the end mark, then the
//! backing file name (not NUL-terminated) at `backing_file_offset`, all
//! in cluster 0 (section "Header extensions").
//!
//! L1/L2 entries (section "Cluster mapping"): bits 9..55 host offset,
//! bit 63 "copied" (refcount is exactly one). A standard L2 entry has bit 62
//! clear and bit 0 "reads as zeros"; a compressed one has bit 62 set and,
//! with `x = 62 - (cluster_bits - 8)`, bits 0..x-1 the host byte offset and
//! bits x..61 the number of additional 512-byte sectors. Compressed data is
//! a raw deflate stream (RFC 1951) with a 4 KiB window, as QEMU writes it.
//!
//! Refcounts (section "Host cluster management"): a refcount table of
//! 8-byte offsets of refcount blocks, each block an array of
//! `2^refcount_order`-bit counters, one per host cluster.
//!
//! Layout written by [`Qcow2Writer`]: header (cluster 0), L1 table
//! (reserved from the virtual size, clusters 1..), then data clusters in
//! the order they arrive with each L2 table written as soon as the stream
//! has moved past its 512 MiB, then refcount blocks and the refcount table
//! (computed at `finish` so they cover themselves); the header and L1 are
//! written last. Every host cluster is referenced exactly once except the
//! clusters that hold several compressed clusters.
//!
//! [`Qcow2RandomWriter`] takes positional writes in any order instead:
//! header, L1, data clusters in first-write order, then L2 tables,
//! refcount blocks and table at `finish` (see its module).

mod header;
mod l1l2;
mod random;
mod reader;
mod refcount;
mod writer;

pub use random::Qcow2RandomWriter;
pub use reader::{Backing, BackingDisk, OpenBacking, Qcow2Reader};
pub use writer::Qcow2Writer;

/// `QFI\xfb`, the first four header bytes.
pub(crate) const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";
/// Cluster size in bits used by the writer (64 KiB, QEMU's default).
pub(crate) const QCOW2_CLUSTER_BITS: u32 = 16;

/// Options of the qcow2 writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qcow2Options {
    compression_level: Option<u32>,
    threads: usize,
    backing: Option<(String, String)>,
}

impl Default for Qcow2Options {
    fn default() -> Self {
        Self::new()
    }
}

impl Qcow2Options {
    /// Defaults: uncompressed clusters, one thread.
    pub fn new() -> Self {
        Self {
            compression_level: None,
            threads: 1,
            backing: None,
        }
    }
    /// Writes an overlay: `file` is recorded as the backing file (as
    /// `qemu-img create -b file -F format` does: `backing_file_offset` /
    /// `backing_file_size` in the header, a "backing file format name"
    /// header extension 0xE2792ACA), and virtual clusters never fed to
    /// the writer stay unallocated so they read through to `file`. Fed
    /// clusters, all-zero ones included, are stored (zeros as "reads as
    /// zeros" entries). Each fed extent must then cover whole clusters
    /// (64 KiB aligned, the last one may end at the virtual size): the
    /// writer cannot merge partial clusters with the backing file's data.
    /// `file` is taken as given (a path relative to the overlay's
    /// directory, or absolute), at most 1023 bytes.
    pub fn backing_file(mut self, file: &str, format: &str) -> Self {
        self.backing = Some((file.to_owned(), format.to_owned()));
        self
    }
    /// The backing file and its format, if this is an overlay.
    pub fn get_backing_file(&self) -> Option<(&str, &str)> {
        self.backing.as_ref().map(|(f, t)| (f.as_str(), t.as_str()))
    }
    /// Compress clusters on this many threads (default 1; 0 is taken as
    /// 1). The output is byte-identical for every thread count.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }
    /// The compression thread count.
    pub fn get_threads(&self) -> usize {
        self.threads
    }
    /// Store data clusters deflate-compressed at `level` (0..=9, clamped),
    /// as `qemu-img convert -c` does; clusters that do not shrink are stored
    /// uncompressed.
    pub fn compressed(mut self, level: u32) -> Self {
        self.compression_level = Some(level.min(9));
        self
    }
    /// Store data clusters uncompressed (the default).
    pub fn uncompressed(mut self) -> Self {
        self.compression_level = None;
        self
    }
    /// The deflate level, if clusters are compressed.
    pub fn compression_level(&self) -> Option<u32> {
        self.compression_level
    }
}
