//! qcow2 v3 written in place, at any offset, in any order: the target of
//! a disk built by writers that place data anywhere and come back to it
//! (filesystem builders fill inode tables and bitmaps last), so the image
//! never goes through a raw file first.
//!
//! Layout: header (cluster 0), L1 table (clusters 1..), then data clusters
//! in the order they are first written, then at [`Qcow2RandomWriter::finish`]
//! the L2 tables (in L1 order), the refcount blocks and the refcount table
//! (qcow2.txt, "Cluster mapping" and "Host cluster management"; the tables
//! are written as the streaming [`super::Qcow2Writer`] writes them). The
//! file depends only on the sequence of writes, so a deterministic builder
//! gets a byte-identical image.
//!
//! Never-written clusters stay unallocated (read as zeros), and so do
//! clusters only ever written with zeros: an all-zero write to an
//! unallocated cluster is dropped. A partly written cluster's other bytes
//! are zeros (the host file is sparse there). Clusters are stored
//! uncompressed, every host cluster is referenced once (refcount 1).
//!
//! Memory: the L1 table (8 bytes per 512 MiB of virtual size) and one
//! 64 KiB L2 table per 512 MiB of the disk written to (at most 8 MiB for a
//! 64 GiB disk).

use kiln_units::{ReadAt, WriteAt};
use std::io;

use crate::bytes::pieces;
use crate::error::{Error, Format, Result};
use crate::extent::WriteSummary;

use super::l1l2::{l1_entry, L2Entry};
use super::writer::{write_tables, Tables, CLUSTER, L2_ENTRIES, MAX_VIRTUAL};
use super::QCOW2_CLUSTER_BITS;

/// A qcow2 v3 image written positionally through [`WriteAt`] (and read
/// back through [`ReadAt`]) over the virtual disk; [`Self::finish`]
/// writes the tables.
#[derive(Debug)]
pub struct Qcow2RandomWriter<W> {
    out: W,
    virtual_size: u64,
    l1_clusters: u64,
    /// Per L1 entry, the host byte offset of each virtual cluster (0: not
    /// allocated).
    l2: Vec<Option<Box<[u64]>>>,
    /// Next free host cluster.
    next_cluster: u64,
    data_clusters: u64,
    /// Length of the host file so far (writes and extensions).
    host_len: u64,
}

/// Consecutive pieces whose host bytes are contiguous, done in one call.
struct Run {
    host: u64,
    at: usize,
    len: usize,
}

impl Run {
    /// Extends the run with a piece at `host`, or returns the finished run
    /// and starts a new one.
    fn push(run: &mut Option<Run>, host: u64, at: usize, len: usize) -> Option<Run> {
        match run {
            Some(r) if r.host + r.len as u64 == host && r.at + r.len == at => {
                r.len += len;
                None
            }
            _ => run.replace(Run { host, at, len }),
        }
    }
}

impl<W: WriteAt + ReadAt> Qcow2RandomWriter<W> {
    /// A writer for a disk of `virtual_size` bytes (rounded up to a
    /// 512-byte sector, as [`super::Qcow2Writer::new`]) over an empty
    /// `out`.
    ///
    /// # Errors
    /// [`Error::SizeNotSupported`] above QEMU's 2 PiB limit.
    pub fn new(out: W, virtual_size: u64) -> Result<Self> {
        let too_big = || Error::SizeNotSupported {
            format: Format::Qcow2,
            size_bytes: virtual_size,
            max_bytes: MAX_VIRTUAL,
        };
        if virtual_size > MAX_VIRTUAL {
            return Err(too_big());
        }
        let virtual_size = virtual_size.div_ceil(512) * 512;
        let l1_entries = virtual_size.div_ceil(L2_ENTRIES * CLUSTER);
        let l1_clusters = (l1_entries * 8).div_ceil(CLUSTER);
        let l1_len = usize::try_from(l1_entries).map_err(|_| too_big())?;
        Ok(Self {
            out,
            virtual_size,
            l1_clusters,
            l2: (0..l1_len).map(|_| None).collect(),
            next_cluster: 1 + l1_clusters,
            data_clusters: 0,
            host_len: 0,
        })
    }

    /// Host byte offset of virtual cluster `idx` (0: not allocated).
    fn host(&self, idx: u64) -> u64 {
        let (t, i) = (idx / L2_ENTRIES, idx % L2_ENTRIES);
        usize::try_from(t)
            .ok()
            .and_then(|t| self.l2.get(t))
            .and_then(Option::as_ref)
            .and_then(|table| table.get(usize::try_from(i).ok()?))
            .copied()
            .unwrap_or(0)
    }

    /// Allocates the next host cluster for virtual cluster `idx`.
    fn allocate(&mut self, idx: u64) -> u64 {
        let host = self.next_cluster * CLUSTER;
        let (t, i) = (idx / L2_ENTRIES, idx % L2_ENTRIES);
        let entries = usize::try_from(L2_ENTRIES).unwrap_or(0);
        if let Some(slot) = usize::try_from(t)
            .ok()
            .and_then(|t| self.l2.get_mut(t))
            .map(|s| s.get_or_insert_with(|| vec![0u64; entries].into_boxed_slice()))
            .and_then(|table| table.get_mut(usize::try_from(i).ok()?))
        {
            *slot = host;
            self.next_cluster += 1;
            self.data_clusters += 1;
        }
        host
    }

    /// Writes the L2 tables, refcounts, L1 table and header; returns the
    /// target and what was written.
    ///
    /// # Errors
    /// [`Error::Io`] from the target.
    pub fn finish(mut self) -> Result<(W, WriteSummary)> {
        let mut l1 = vec![0u64; self.l2.len()];
        let tables = std::mem::take(&mut self.l2);
        let mut bytes = Vec::with_capacity(usize::try_from(CLUSTER).unwrap_or(0));
        for (slot, table) in l1.iter_mut().zip(tables) {
            let Some(table) = table else { continue };
            bytes.clear();
            for &host in table.iter() {
                let e = if host == 0 {
                    0
                } else {
                    L2Entry::Standard(host).encode(QCOW2_CLUSTER_BITS)
                };
                bytes.extend_from_slice(&e.to_be_bytes());
            }
            let off = self.next_cluster * CLUSTER;
            self.next_cluster += 1;
            self.out.write_all_at(&bytes, off).map_err(Error::io(off))?;
            *slot = l1_entry(off);
        }
        let file_size = write_tables(
            &mut self.out,
            &Tables {
                virtual_size: self.virtual_size,
                l1: &l1,
                l1_clusters: self.l1_clusters,
                used: self.next_cluster,
                backing: None,
            },
            |_| Some(1),
        )?;
        let summary = WriteSummary {
            virtual_size: self.virtual_size,
            file_size,
            allocated_bytes: self.data_clusters * CLUSTER,
        };
        Ok((self.out, summary))
    }
}

impl<W: WriteAt + ReadAt> WriteAt for Qcow2RandomWriter<W> {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        crate::bytes::check_in_disk(offset, buf.len(), self.virtual_size)?;
        let mut run = None;
        let flush = |out: &mut W, host_len: &mut u64, r: Run| {
            let data = buf.get(r.at..r.at + r.len).unwrap_or_default();
            *host_len = (*host_len).max(r.host + r.len as u64);
            out.write_all_at(data, r.host)
        };
        for p in pieces(offset, buf.len(), CLUSTER) {
            let data = buf.get(p.at..p.at + p.len).unwrap_or_default();
            let mut host = self.host(p.idx);
            if host == 0 {
                if crate::bytes::is_zero(data) {
                    // Unallocated already reads as these zeros.
                    if let Some(r) = run.take() {
                        flush(&mut self.out, &mut self.host_len, r)?;
                    }
                    continue;
                }
                host = self.allocate(p.idx);
                // The rest of a partly written cluster must read as zeros
                // before anything lands after it: extend the file over it.
                if (p.len as u64) < CLUSTER && host + CLUSTER > self.host_len {
                    self.host_len = host + CLUSTER;
                    self.out.set_len(self.host_len)?;
                }
            }
            if let Some(r) = Run::push(&mut run, host + p.within, p.at, p.len) {
                flush(&mut self.out, &mut self.host_len, r)?;
            }
        }
        match run {
            Some(r) => flush(&mut self.out, &mut self.host_len, r),
            None => Ok(()),
        }
    }

    /// The virtual size is fixed at creation: only that length is accepted.
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        crate::bytes::keep_size(len, self.virtual_size)
    }
}

impl<W: WriteAt + ReadAt> ReadAt for Qcow2RandomWriter<W> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        crate::bytes::check_in_disk(offset, buf.len(), self.virtual_size)?;
        let mut run: Option<Run> = None;
        let mut holes = Vec::new();
        let mut runs = Vec::new();
        for p in pieces(offset, buf.len(), CLUSTER) {
            let host = self.host(p.idx);
            if host == 0 {
                holes.push((p.at, p.len));
                if let Some(r) = run.take() {
                    runs.push(r);
                }
            } else if let Some(r) = Run::push(&mut run, host + p.within, p.at, p.len) {
                runs.push(r);
            }
        }
        runs.extend(run);
        for (at, len) in holes {
            if let Some(b) = buf.get_mut(at..at + len) {
                b.fill(0);
            }
        }
        for r in runs {
            if let Some(b) = buf.get_mut(r.at..r.at + r.len) {
                self.out.read_exact_at(b, r.host)?;
            }
        }
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.virtual_size)
    }
}
