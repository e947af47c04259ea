//! VMDK hosted sparse extents, as specified by VMware's "Virtual Disk
//! Format 1.1" (sections "Hosted Sparse Extent Header", "The Descriptor
//! File", "Grain Directories and Grain Tables", "Stream-Optimized
//! Compressed Sparse Extents").
//!
//! All fields are little-endian; offsets and sizes are in 512-byte sectors
//! unless noted.
//!
//! SparseExtentHeader (sector 0; a copy as the footer of a stream):
//!
//! | offset | size | field              | written as                                |
//! |-------:|-----:|--------------------|-------------------------------------------|
//! | 0      | 4    | magicNumber        | `KDMV` (0x564d444b)                        |
//! | 4      | 4    | version            | 3                                         |
//! | 8      | 4    | flags              | bit 0 newline test, 16 compressed, 17 markers |
//! | 12     | 8    | capacity           | virtual size in sectors                   |
//! | 20     | 8    | grainSize          | 128 (64 KiB)                              |
//! | 28     | 8    | descriptorOffset   | 1                                         |
//! | 36     | 8    | descriptorSize     | 20                                        |
//! | 44     | 4    | numGTEsPerGT       | 512                                       |
//! | 48     | 8    | rgdOffset          | 0                                         |
//! | 56     | 8    | gdOffset           | header: all ones (GD at end); footer: GD  |
//! | 64     | 8    | overHead           | 128 (sectors before the first grain)      |
//! | 72     | 1    | uncleanShutdown    | 0                                         |
//! | 73     | 4    | line-end test      | `\n`, ` `, `\r`, `\n`                     |
//! | 77     | 2    | compressAlgorithm  | 1 (deflate)                               |
//! | 79     | 433  | pad                | 0                                         |
//!
//! Markers (stream-optimized only), each starting a sector:
//!
//! | offset | size | grain marker          | metadata marker                       |
//! |-------:|-----:|-----------------------|---------------------------------------|
//! | 0      | 8    | lba (virtual sector)  | numSectors of what follows            |
//! | 8      | 4    | size (bytes of data)  | 0                                     |
//! | 12     | 4    | zlib data follows     | type: 0 EOS, 1 GT, 2 GD, 3 footer     |
//! | 16     | 496  |                       | 0                                     |
//!
//! A compressed grain is its marker (12 bytes) followed by a zlib stream
//! (RFC 1950) of the 64 KiB grain, padded to a sector. Grain tables are
//! 512 4-byte sector numbers (2 KiB); the grain directory has one 4-byte
//! sector number per grain table (0: no table, all grains unallocated).
//!
//! Layout written: header, descriptor, padding to sector 128, then for each
//! 32 MiB span the compressed grains in order followed by that span's grain
//! table (GT marker + table; an all-zero table for spans without data
//! unless [`VmdkOptions::empty_grain_tables`] is off), then the GD
//! marker + GD, the footer marker + footer, and the end-of-stream marker.
//! This is what `qemu-img convert -O vmdk -o subformat=streamOptimized`
//! produces and what VMware and VirtualBox import.
//!
//! [`VmdkSparseWriter`] writes the other hosted sparse flavour,
//! monolithicSparse (version 1, uncompressed grains, no markers, grain
//! directory and a redundant copy up front): a disk a VM runs on
//! directly (layout in its module).

mod descriptor;
mod header;
mod marker;
mod reader;
mod sparse;
mod writer;

pub use reader::VmdkReader;
pub use sparse::VmdkSparseWriter;
pub use writer::VmdkWriter;

/// Controller type recorded in the descriptor (`ddb.adapterType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VmdkAdapter {
    /// IDE (VMware's default for streamOptimized; 16 heads, 63 sectors).
    #[default]
    Ide,
    /// LSI Logic SCSI (255 heads, 63 sectors).
    LsiLogic,
    /// BusLogic SCSI.
    BusLogic,
    /// VMware paravirtual SCSI.
    Pvscsi,
}

impl VmdkAdapter {
    pub(crate) fn name(self) -> &'static str {
        match self {
            VmdkAdapter::Ide => "ide",
            VmdkAdapter::LsiLogic => "lsilogic",
            VmdkAdapter::BusLogic => "buslogic",
            VmdkAdapter::Pvscsi => "pvscsi",
        }
    }
}

/// Options of the VMDK writers (streamOptimized and monolithicSparse; the
/// compression, thread and empty-table options apply to streamOptimized).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmdkOptions {
    cid: u32,
    adapter: VmdkAdapter,
    compression_level: u32,
    extent_file_name: String,
    empty_grain_tables: bool,
    threads: usize,
}

impl Default for VmdkOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl VmdkOptions {
    /// Defaults: CID 0x6b696c6e (`kiln`), IDE adapter, deflate level 6,
    /// extent file name `disk.vmdk`, every grain table written.
    pub fn new() -> Self {
        Self {
            cid: 0x6b69_6c6e,
            adapter: VmdkAdapter::Ide,
            compression_level: 6,
            extent_file_name: "disk.vmdk".to_owned(),
            empty_grain_tables: true,
            threads: 1,
        }
    }
    /// The descriptor's content id (callers derive it from the build seed;
    /// it must not be `0xffffffff`, which means "no parent").
    pub fn cid(mut self, cid: u32) -> Self {
        self.cid = cid;
        self
    }
    /// The controller type.
    pub fn adapter(mut self, adapter: VmdkAdapter) -> Self {
        self.adapter = adapter;
        self
    }
    /// Deflate level for grains (1..=9, clamped).
    pub fn compression_level(mut self, level: u32) -> Self {
        self.compression_level = level.clamp(1, 9);
        self
    }
    /// Deflate grains on this many threads (default 1; 0 is taken as 1).
    /// The output is byte-identical for every thread count.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }
    /// Whether grain tables of 32 MiB spans without data are written (all
    /// zero, the default, as VMware's tools lay a stream out: 2.5 KiB per
    /// span) or left out with a zero directory entry (smaller; QEMU reads
    /// both, other importers are not verified here).
    pub fn empty_grain_tables(mut self, write: bool) -> Self {
        self.empty_grain_tables = write;
        self
    }
    /// The file name the descriptor's extent line names (the output's own
    /// name, e.g. `disk.vmdk`); quotes and newlines are replaced by `_`.
    pub fn extent_file_name(mut self, name: &str) -> Self {
        self.extent_file_name = name
            .chars()
            .map(|c| if c == '"' || c.is_control() { '_' } else { c })
            .collect();
        self
    }
}

/// `KDMV` as a little-endian u32.
pub(crate) const VMDK4_MAGIC: u32 = 0x564d_444b;
/// Grain size in sectors written (64 KiB).
pub(crate) const VMDK_GRAIN_SECTORS: u64 = 128;
/// Grain table entries per table written.
pub(crate) const VMDK_GTES_PER_GT: u32 = 512;
