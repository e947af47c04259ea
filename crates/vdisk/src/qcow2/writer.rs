//! Streaming qcow2 v3 writer (layout in the module doc).

use flate2::{Compress, Compression, FlushCompress, Status};
use kiln_units::WriteAt;

use crate::error::{Error, Format, Result};
use crate::extent::{Assembler, DiskWriter, ExtentGuard, WriteSummary};
use crate::parallel::Batch;

use super::header::{Header, QCOW2_V3_HEADER_LEN};
use super::l1l2::{l1_entry, L2Entry};
use super::refcount::{RefcountLayout, QCOW2_REFCOUNT_ORDER};
use super::{Qcow2Options, QCOW2_CLUSTER_BITS};

pub(super) const CLUSTER: u64 = 1 << QCOW2_CLUSTER_BITS;
pub(super) const CLUSTER_USIZE: usize = 1 << QCOW2_CLUSTER_BITS;
/// Entries per L2 table (64 KiB / 8 bytes).
pub(super) const L2_ENTRIES: u64 = CLUSTER / 8;
/// Largest virtual size written: QEMU's limit of 32 MiB of L1 table
/// (4 Mi entries x 512 MiB = 2 PiB); kept well below u64 overflow.
pub(super) const MAX_VIRTUAL: u64 = (32 << 20) / 8 * L2_ENTRIES * CLUSTER;

/// Writes a qcow2 v3 image from an ordered extent stream.
///
/// Memory kept: the L1 table (8 bytes per 512 MiB of virtual size), one
/// L2 table (64 KiB), one cluster being assembled (64 KiB), in compressed
/// mode a batch of 16 clusters per thread (see [`Qcow2Options::threads`]),
/// and a 16-bit refcount per host cluster written (2 bytes per 64 KiB of
/// output).
#[derive(Debug)]
pub struct Qcow2Writer<W> {
    out: W,
    guard: ExtentGuard,
    virtual_size: u64,
    asm: Assembler,
    st: State,
    /// Backing file name and format of an overlay.
    backing: Option<(String, String)>,
}

/// Header extension type "backing file format name" (qcow2.txt).
const BACKING_FORMAT_EXT: u32 = 0xE279_2ACA;
/// Longest backing file name QEMU accepts.
const MAX_BACKING_NAME: usize = 1023;

#[derive(Debug)]
struct State {
    level: Option<u32>,
    l1: Vec<u64>,
    l1_clusters: u64,
    /// The L2 table being filled: its L1 index and entries.
    l2: Option<(u64, Vec<u64>)>,
    /// Next free host cluster.
    next_cluster: u64,
    /// Refcount per host cluster allocated so far.
    refcounts: Vec<u16>,
    /// Host byte offset just past the last compressed stream (0: none yet);
    /// the next one goes there while that cluster is not full.
    comp_pos: u64,
    compressor: Option<Compress>,
    batch: Batch,
    allocated_bytes: u64,
}

impl<W: WriteAt> Qcow2Writer<W> {
    /// A writer for a disk of `virtual_size` bytes, rounded up to a
    /// 512-byte sector as `qemu-img create` does (QEMU truncates a
    /// qcow2 size to whole sectors when reading) (any size up to QEMU's
    /// 2 PiB limit; a partial last cluster is fine).
    ///
    /// # Errors
    /// [`Error::SizeNotSupported`] above the limit.
    pub fn new(out: W, virtual_size: u64, options: &Qcow2Options) -> Result<Self> {
        if virtual_size > MAX_VIRTUAL {
            return Err(Error::SizeNotSupported {
                format: Format::Qcow2,
                size_bytes: virtual_size,
                max_bytes: MAX_VIRTUAL,
            });
        }
        let virtual_size = virtual_size.div_ceil(512) * 512;
        let l1_entries = virtual_size.div_ceil(L2_ENTRIES * CLUSTER);
        // An empty disk gets no L1 table at all (a reserved but unused
        // cluster would be a leak for `qemu-img check`).
        let l1_clusters = (l1_entries * 8).div_ceil(CLUSTER);
        let l1_len = usize::try_from(l1_entries).map_err(|_| Error::SizeNotSupported {
            format: Format::Qcow2,
            size_bytes: virtual_size,
            max_bytes: MAX_VIRTUAL,
        })?;
        let first_data = 1 + l1_clusters;
        let backing = options
            .get_backing_file()
            .map(|(f, t)| (f.to_owned(), t.to_owned()));
        if let Some((f, t)) = &backing {
            if f.is_empty() || f.len() > MAX_BACKING_NAME || t.len() > 255 {
                return Err(Error::unsupported(
                    Format::Qcow2,
                    "backing file name empty or longer than 1023 bytes (or format name over 255)",
                ));
            }
        }
        Ok(Self {
            out,
            guard: ExtentGuard::new(Format::Qcow2, virtual_size),
            virtual_size,
            asm: if backing.is_some() {
                Assembler::keeping_zeros(CLUSTER_USIZE)
            } else {
                Assembler::new(CLUSTER_USIZE)
            },
            backing,
            st: State {
                level: options.compression_level(),
                l1: vec![0; l1_len],
                l1_clusters,
                l2: None,
                next_cluster: first_data,
                refcounts: vec![1; usize::try_from(first_data).unwrap_or(0)],
                comp_pos: 0,
                compressor: None,
                batch: Batch::new(options.get_threads()),
                allocated_bytes: 0,
            },
        })
    }

    /// Gives back the target.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl State {
    fn alloc_cluster(&mut self) -> u64 {
        let c = self.next_cluster;
        self.next_cluster += 1;
        self.refcounts.push(1);
        c * CLUSTER
    }

    fn flush_l2<W: WriteAt>(&mut self, out: &mut W) -> Result<()> {
        if let Some((l1_idx, table)) = self.l2.take() {
            let off = self.alloc_cluster();
            let mut bytes = Vec::with_capacity(CLUSTER_USIZE);
            for e in &table {
                bytes.extend_from_slice(&e.to_be_bytes());
            }
            out.write_all_at(&bytes, off).map_err(Error::io(off))?;
            if let Some(slot) = usize::try_from(l1_idx)
                .ok()
                .and_then(|i| self.l1.get_mut(i))
            {
                *slot = l1_entry(off);
            }
        }
        Ok(())
    }

    fn write_cluster<W: WriteAt>(&mut self, out: &mut W, idx: u64, data: &[u8]) -> Result<()> {
        // Only overlays hand zero clusters over (see Assembler).
        if crate::bytes::is_zero(data) {
            return self.place_zero(out, idx);
        }
        match self.level {
            None => self.place(out, idx, data, &[]),
            Some(level) if self.batch.threads() <= 1 => {
                let c = self.compressor.get_or_insert_with(|| new_compressor(level));
                let packed = deflate_cluster(c, data);
                self.place(out, idx, data, &packed)
            }
            Some(_) => {
                if self.batch.push(idx, data) {
                    self.drain(out)?;
                }
                Ok(())
            }
        }
    }

    /// Compresses queued clusters in parallel and places them in order.
    fn drain<W: WriteAt>(&mut self, out: &mut W) -> Result<()> {
        let Some(level) = self.level else {
            return Ok(());
        };
        let mut batch = std::mem::replace(&mut self.batch, Batch::new(1));
        let r = batch.drain(
            || new_compressor(level),
            |c, _, data| Ok(deflate_cluster(c, data)),
            |idx, data, packed| self.place(out, idx, data, &packed),
        );
        self.batch = batch;
        r
    }

    /// Records virtual cluster `idx` as "reads as zeros" (no host cluster).
    fn place_zero<W: WriteAt>(&mut self, out: &mut W, idx: u64) -> Result<()> {
        // Queued compressed clusters go first so L2 tables fill in order.
        self.drain(out)?;
        let l1_idx = idx / L2_ENTRIES;
        if self.l2.as_ref().is_some_and(|(i, _)| *i != l1_idx) {
            self.flush_l2(out)?;
        }
        let t = self
            .l2
            .get_or_insert_with(|| (l1_idx, vec![0; L2_ENTRIES as usize]));
        if let Some(slot) = usize::try_from(idx % L2_ENTRIES)
            .ok()
            .and_then(|i| t.1.get_mut(i))
        {
            *slot = L2Entry::Zero.encode(QCOW2_CLUSTER_BITS);
        }
        Ok(())
    }

    /// Stores virtual cluster `idx`: compressed when `packed` is not empty,
    /// else `data` in a cluster of its own; records it in the L2 table.
    fn place<W: WriteAt>(
        &mut self,
        out: &mut W,
        idx: u64,
        data: &[u8],
        packed: &[u8],
    ) -> Result<()> {
        let l1_idx = idx / L2_ENTRIES;
        if self.l2.as_ref().is_some_and(|(i, _)| *i != l1_idx) {
            self.flush_l2(out)?;
        }
        if self.l2.is_none() {
            self.l2 = Some((l1_idx, vec![0; L2_ENTRIES as usize]));
        }
        let entry = if packed.is_empty() {
            let off = self.alloc_cluster();
            out.write_all_at(data, off).map_err(Error::io(off))?;
            L2Entry::Standard(off)
        } else {
            self.write_compressed(out, packed)?
        };
        self.allocated_bytes += CLUSTER;
        if let Some((_, t)) = self.l2.as_mut() {
            if let Some(slot) = usize::try_from(idx % L2_ENTRIES)
                .ok()
                .and_then(|i| t.get_mut(i))
            {
                *slot = entry.encode(QCOW2_CLUSTER_BITS);
            }
        }
        Ok(())
    }

    /// Appends already-deflated cluster data (shorter than a cluster).
    ///
    /// Compressed streams are packed back to back at 512-byte boundaries
    /// (the descriptor counts sectors) and may run into the next host
    /// cluster when that one is the next to be allocated, as QEMU packs
    /// them; every host cluster a stream touches gets one reference.
    fn write_compressed<W: WriteAt>(&mut self, out: &mut W, packed: &[u8]) -> Result<L2Entry> {
        let len = packed.len() as u64;
        let sectors = len.div_ceil(512);
        let open = self.comp_pos != 0 && self.comp_pos % CLUSTER != 0;
        let start = if open {
            let cur = self.comp_pos / CLUSTER;
            let end = self.comp_pos + sectors * 512;
            let crosses = (end - 1) / CLUSTER != cur;
            if crosses && self.next_cluster != cur + 1 {
                // Something else took the following cluster: start afresh.
                self.alloc_cluster()
            } else {
                self.add_ref(cur);
                self.comp_pos
            }
        } else {
            self.alloc_cluster()
        };
        let end = start + sectors * 512;
        // Clusters past the first one the stream runs into are new (and,
        // by the check above, contiguous).
        while self.next_cluster * CLUSTER < end {
            self.alloc_cluster();
        }
        out.write_all_at(packed, start).map_err(Error::io(start))?;
        self.comp_pos = end;
        Ok(L2Entry::Compressed {
            offset: start,
            extra_sectors: sectors - 1,
        })
    }

    fn add_ref(&mut self, cluster: u64) {
        if let Some(rc) = usize::try_from(cluster)
            .ok()
            .and_then(|i| self.refcounts.get_mut(i))
        {
            *rc = rc.saturating_add(1);
        }
    }
}

/// A raw-deflate compressor with QEMU's 4 KiB window.
fn new_compressor(level: u32) -> Compress {
    Compress::new_with_window_bits(Compression::new(level), false, 12)
}

/// Raw deflate of one cluster with QEMU's 4 KiB window (QEMU inflates with
/// windowBits -12); empty when the result would not save a sector.
fn deflate_cluster(c: &mut Compress, data: &[u8]) -> Vec<u8> {
    c.reset();
    let mut buf = Vec::with_capacity(CLUSTER_USIZE);
    let status = c.compress_vec(data, &mut buf, FlushCompress::Finish);
    if !matches!(status, Ok(Status::StreamEnd)) || buf.len() as u64 >= CLUSTER - 512 {
        buf.clear();
    }
    buf
}

impl<W: WriteAt> DiskWriter for Qcow2Writer<W> {
    fn format(&self) -> Format {
        Format::Qcow2
    }
    fn virtual_size(&self) -> u64 {
        self.virtual_size
    }
    fn write_extent(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.guard.check(offset, data.len())?;
        if self.backing.is_some() {
            let end = offset + data.len() as u64;
            if offset % CLUSTER != 0 || (end % CLUSTER != 0 && end != self.virtual_size) {
                return Err(Error::unsupported(
                    Format::Qcow2,
                    "an extent that is not whole 64 KiB clusters over a backing file",
                ));
            }
        }
        let Self { out, asm, st, .. } = self;
        asm.feed(offset, data, &mut |idx, c| st.write_cluster(out, idx, c))
    }

    fn finish(&mut self) -> Result<WriteSummary> {
        self.guard.finish()?;
        let Self { out, asm, st, .. } = self;
        asm.flush(&mut |idx, c| st.write_cluster(out, idx, c))?;
        st.drain(out)?;
        st.flush_l2(out)?;

        let file_size = write_tables(
            out,
            &Tables {
                virtual_size: self.virtual_size,
                l1: &st.l1,
                l1_clusters: st.l1_clusters,
                used: st.next_cluster,
                backing: self.backing.as_ref(),
            },
            |i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| st.refcounts.get(i))
                    .copied()
            },
        )?;
        Ok(WriteSummary {
            virtual_size: self.virtual_size,
            file_size,
            allocated_bytes: st.allocated_bytes,
        })
    }
}

/// What [`write_tables`] lays out after the data and L2 tables.
pub(super) struct Tables<'a> {
    pub virtual_size: u64,
    /// L1 entries (already encoded).
    pub l1: &'a [u64],
    pub l1_clusters: u64,
    /// Host clusters used so far (header, L1, data, L2 tables).
    pub used: u64,
    /// Backing file name and format of an overlay.
    pub backing: Option<&'a (String, String)>,
}

/// Writes the refcount blocks and table after `t.used` clusters (they
/// count themselves), the L1 table at cluster 1 and the header with its
/// extensions in cluster 0; `refcount(i)` is host cluster `i`'s count
/// for `i < t.used` (`None` counts 1). Returns the file size.
pub(super) fn write_tables<W: WriteAt + ?Sized>(
    out: &mut W,
    t: &Tables<'_>,
    refcount: impl Fn(u64) -> Option<u16>,
) -> Result<u64> {
    let layout = RefcountLayout::after(t.used, CLUSTER);
    let total = layout.total_clusters();
    // Refcount blocks: counters for our clusters, then 1 for every
    // refcount cluster, then 0 padding.
    let per_block = CLUSTER / 2;
    let mut block = Vec::with_capacity(CLUSTER_USIZE);
    for b in 0..layout.blocks {
        block.clear();
        for i in b * per_block..(b + 1) * per_block {
            let rc = match (i < t.used).then(|| refcount(i)) {
                Some(Some(rc)) => rc,
                _ if i < total => 1,
                _ => 0,
            };
            block.extend_from_slice(&rc.to_be_bytes());
        }
        let off = (layout.blocks_start + b) * CLUSTER;
        out.write_all_at(&block, off).map_err(Error::io(off))?;
    }
    let mut table =
        Vec::with_capacity(usize::try_from(layout.table_clusters * CLUSTER).unwrap_or(0));
    for b in 0..layout.blocks {
        table.extend_from_slice(&((layout.blocks_start + b) * CLUSTER).to_be_bytes());
    }
    table.resize(
        usize::try_from(layout.table_clusters * CLUSTER).unwrap_or(0),
        0,
    );
    let table_off = layout.table_start * CLUSTER;
    out.write_all_at(&table, table_off)
        .map_err(Error::io(table_off))?;

    let mut l1 = Vec::with_capacity(usize::try_from(t.l1_clusters * CLUSTER).unwrap_or(0));
    for e in t.l1 {
        l1.extend_from_slice(&e.to_be_bytes());
    }
    l1.resize(usize::try_from(t.l1_clusters * CLUSTER).unwrap_or(0), 0);
    out.write_all_at(&l1, CLUSTER).map_err(Error::io(CLUSTER))?;

    // An overlay's name sits after the format-name extension (type,
    // length, data padded to 8 bytes) and the end mark.
    let name_at = t
        .backing
        .as_ref()
        .map_or(0, |(_, fmt)| 104 + 8 + fmt.len().div_ceil(8) * 8 + 8);
    let header = Header {
        version: 3,
        backing_file_offset: name_at as u64,
        backing_file_size: t
            .backing
            .as_ref()
            .map_or(0, |(file, _)| u32::try_from(file.len()).unwrap_or(u32::MAX)),
        cluster_bits: QCOW2_CLUSTER_BITS,
        size: t.virtual_size,
        crypt_method: 0,
        l1_size: u32::try_from(t.l1.len()).unwrap_or(u32::MAX),
        l1_table_offset: if t.l1_clusters == 0 { 0 } else { CLUSTER },
        refcount_table_offset: table_off,
        refcount_table_clusters: u32::try_from(layout.table_clusters).unwrap_or(u32::MAX),
        nb_snapshots: 0,
        incompatible_features: 0,
        refcount_order: QCOW2_REFCOUNT_ORDER,
        header_length: QCOW2_V3_HEADER_LEN,
        compression_type: 0,
    };
    let mut cluster0 = vec![0u8; CLUSTER_USIZE];
    cluster0[..112].copy_from_slice(&header.to_bytes());
    if let Some((file, fmt)) = t.backing {
        // 104: the format-name extension, its data padded to 8
        // bytes; then the end mark (zeros); then the name.
        cluster0[104..108].copy_from_slice(&BACKING_FORMAT_EXT.to_be_bytes());
        cluster0[108..112].copy_from_slice(&(fmt.len() as u32).to_be_bytes());
        cluster0[112..112 + fmt.len()].copy_from_slice(fmt.as_bytes());
        cluster0[name_at..name_at + file.len()].copy_from_slice(file.as_bytes());
    }
    out.write_all_at(&cluster0, 0).map_err(Error::io(0))?;
    let file_size = total * CLUSTER;
    out.set_len(file_size).map_err(Error::io(file_size))?;
    Ok(file_size)
}
