//! qcow2 reader (versions 2 and 3, zlib compression). An overlay (a
//! header naming a backing file, qcow2.txt "Header" and the "backing file
//! format name" extension) is read only with its backing disk attached
//! ([`Qcow2Reader::open_overlay`]): its unallocated clusters read from it,
//! its zero clusters as zeros.

use std::io;
use std::sync::Mutex;

use flate2::{Decompress, FlushDecompress};
use kiln_units::ReadAt;

use crate::bytes::{be32, be64};
use crate::error::{Error, Format, Result};
use crate::extent::Extent;
use crate::source::{check_range, VirtualDisk};

use super::header::Header;
use super::l1l2::{l1_target, L2Entry};

/// Largest L1 table accepted (QEMU's `QCOW_MAX_L1_SIZE`, 32 MiB).
const MAX_L1_BYTES: u64 = 32 << 20;

/// Longest backing file name (qcow2.txt: "must not be longer than 1023
/// bytes").
const MAX_BACKING_NAME: u32 = 1023;
/// Header extension type of the backing file format name.
const EXT_BACKING_FORMAT: u32 = 0xE279_2ACA;

/// A qcow2 overlay's backing file, as its header names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backing {
    /// The name as recorded (QEMU resolves a relative name against the
    /// overlay's directory).
    pub name: String,
    /// The "backing file format name" extension (`raw`, `qcow2`, ...).
    pub format: Option<String>,
}

/// The disk an overlay's unallocated clusters read from.
pub type BackingDisk = Box<dyn VirtualDisk + Send + Sync>;

/// Opens the disk an overlay's header names ([`Qcow2Reader::open_overlay`]).
pub type OpenBacking<'a> = dyn FnMut(&Backing) -> Result<BackingDisk> + 'a;

/// [`BackingDisk`] with a `Debug` impl.
struct Under(BackingDisk);

impl std::fmt::Debug for Under {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} backing disk of {} bytes",
            self.0.format(),
            self.0.virtual_size()
        )
    }
}

/// A qcow2 image opened for reading.
///
/// Memory kept: the L1 table (bounded by 32 MiB, and by the virtual size),
/// one cached L2 table and one decompressed cluster (at most 2 MiB each).
#[derive(Debug)]
pub struct Qcow2Reader<R> {
    /// An overlay's backing file and disk (boxed: most images have none).
    backing: Option<Box<(Backing, Under)>>,
    src: R,
    file_size: u64,
    cluster_bits: u32,
    cluster_size: u64,
    size: u64,
    l1_offset: u64,
    l1: Vec<u64>,
    cache: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    l2_offset: u64,
    l2: Vec<u64>,
    comp_entry: Option<L2Entry>,
    comp_data: Vec<u8>,
}

fn corrupt(offset: u64, what: &'static str) -> Error {
    Error::corrupt(Format::Qcow2, offset, what)
}

impl<R: ReadAt> Qcow2Reader<R> {
    /// Parses the header and L1 table of `src`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for inconsistent headers or tables,
    /// [`Error::Unsupported`] for backing files, encryption, external data,
    /// zstd compression or extended L2 entries, [`Error::Io`] on read failure.
    pub fn open(src: R) -> Result<Self> {
        Self::open_overlay(src, None)
    }

    /// Like [`Qcow2Reader::open`], and an overlay is opened with the disk
    /// `backing` returns for the file its header names.
    ///
    /// # Errors
    /// As [`Qcow2Reader::open`]; [`Error::Unsupported`] for an overlay
    /// without `backing`, [`Error::Corrupt`] for a bad backing file name or
    /// extension; `backing`'s own error.
    pub fn open_overlay(src: R, backing: Option<&mut OpenBacking<'_>>) -> Result<Self> {
        let file_size = src.size().map_err(Error::io(0))?;
        let mut hb = [0u8; 112];
        if file_size < 72 {
            return Err(corrupt(0, "file shorter than a qcow2 header"));
        }
        let n = usize::try_from(file_size.min(112)).unwrap_or(112);
        src.read_exact_at(&mut hb[..n], 0).map_err(Error::io(0))?;
        let h = Header::parse(&hb)?;
        let backing = match (h.backing_file_offset, backing) {
            (0, _) => None,
            (_, None) => return Err(Error::unsupported(Format::Qcow2, "backing file")),
            (_, Some(open)) => {
                let b = read_backing(&src, &h, h.backing_file_size, file_size)?;
                let disk = open(&b)?;
                Some(Box::new((b, Under(disk))))
            }
        };
        let cluster_size = 1u64 << h.cluster_bits;
        let l2_entries = cluster_size / 8;
        let needed = h.size.div_ceil(l2_entries * cluster_size);
        let l1_size = u64::from(h.l1_size);
        if l1_size < needed {
            return Err(corrupt(36, "l1_size too small for the virtual size"));
        }
        if l1_size * 8 > MAX_L1_BYTES {
            return Err(corrupt(36, "l1_size above 32 MiB"));
        }
        if h.size > (1u64 << 56) {
            return Err(corrupt(24, "virtual size above 64 PiB"));
        }
        let l1_bytes = l1_size * 8;
        if l1_size != 0
            && (h.l1_table_offset % cluster_size != 0
                || h.l1_table_offset
                    .checked_add(l1_bytes)
                    .is_none_or(|e| e > file_size))
        {
            return Err(corrupt(40, "L1 table outside the file or unaligned"));
        }
        let mut raw = vec![0u8; usize::try_from(l1_bytes).map_err(|_| corrupt(36, "l1_size"))?];
        if !raw.is_empty() {
            src.read_exact_at(&mut raw, h.l1_table_offset)
                .map_err(Error::io(h.l1_table_offset))?;
        }
        let l1 = raw.chunks_exact(8).map(|c| be64(c, 0)).collect();
        Ok(Self {
            backing,
            src,
            file_size,
            cluster_bits: h.cluster_bits,
            cluster_size,
            // QEMU sees whole sectors only (total_sectors = size / 512).
            size: h.size / 512 * 512,
            l1_offset: h.l1_table_offset,
            l1,
            cache: Mutex::new(Cache::default()),
        })
    }

    /// The cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        self.cluster_size
    }

    /// An overlay's backing file.
    pub fn backing(&self) -> Option<&Backing> {
        self.backing.as_deref().map(|(b, _)| b)
    }

    /// Fills `buf` from the backing disk at virtual byte `offset` (zeros
    /// past its end, or without one).
    fn read_under(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let Some((_, Under(disk))) = self.backing.as_deref() else {
            buf.fill(0);
            return Ok(());
        };
        let inside = usize::try_from(disk.virtual_size().saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let (head, tail) = buf.split_at_mut(inside);
        if !head.is_empty() {
            disk.read_virtual(head, offset)?;
        }
        tail.fill(0);
        Ok(())
    }

    /// The first cluster at or after `from` holding data of this file
    /// (standard or compressed), clipped to start at `from`.
    fn next_own(&self, from: u64) -> Result<Option<Extent>> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let cs = self.cluster_size;
        let l2_span = cs / 8 * cs;
        let mut c = from / cs;
        let clusters = self.size.div_ceil(cs);
        while c < clusters {
            let l1_idx = c / (cs / 8);
            let present = usize::try_from(l1_idx)
                .ok()
                .and_then(|i| self.l1.get(i))
                .is_some_and(|&e| l1_target(e) != 0);
            if !present {
                c = (l1_idx + 1) * l2_span / cs;
                continue;
            }
            match self.l2_entry(&mut cache, c)? {
                L2Entry::Unallocated | L2Entry::Zero => c += 1,
                _ => {
                    let start = (c * cs).max(from);
                    let end = ((c + 1) * cs).min(self.size);
                    return Ok(Some(Extent {
                        offset: start,
                        len: end - start,
                    }));
                }
            }
        }
        Ok(None)
    }

    fn l2_entry(&self, cache: &mut Cache, vcluster: u64) -> Result<L2Entry> {
        let l2_entries = self.cluster_size / 8;
        let l1_idx = vcluster / l2_entries;
        let raw_l1 = usize::try_from(l1_idx)
            .ok()
            .and_then(|i| self.l1.get(i))
            .copied()
            .unwrap_or(0);
        let l2_off = l1_target(raw_l1);
        if l2_off == 0 {
            return Ok(L2Entry::Unallocated);
        }
        if cache.l2_offset != l2_off || cache.l2.is_empty() {
            if l2_off % self.cluster_size != 0
                || l2_off
                    .checked_add(self.cluster_size)
                    .is_none_or(|e| e > self.file_size)
            {
                return Err(corrupt(
                    self.l1_entry_pos(l1_idx),
                    "L2 table outside the file",
                ));
            }
            let mut b = vec![0u8; usize::try_from(self.cluster_size).unwrap_or(0)];
            self.src
                .read_exact_at(&mut b, l2_off)
                .map_err(Error::io(l2_off))?;
            cache.l2 = b.chunks_exact(8).map(|c| be64(c, 0)).collect();
            cache.l2_offset = l2_off;
        }
        let raw = usize::try_from(vcluster % l2_entries)
            .ok()
            .and_then(|i| cache.l2.get(i))
            .copied()
            .unwrap_or(0);
        Ok(L2Entry::decode(raw, self.cluster_bits))
    }

    fn l1_entry_pos(&self, l1_idx: u64) -> u64 {
        self.l1_offset.saturating_add(l1_idx.saturating_mul(8))
    }

    /// Reads within one cluster.
    fn read_in_cluster(&self, cache: &mut Cache, buf: &mut [u8], offset: u64) -> Result<()> {
        let vcluster = offset / self.cluster_size;
        let within = offset % self.cluster_size;
        match self.l2_entry(cache, vcluster)? {
            L2Entry::Unallocated => self.read_under(buf, offset)?,
            L2Entry::Zero => buf.fill(0),
            L2Entry::Standard(host) => {
                if host % self.cluster_size != 0
                    || host
                        .checked_add(self.cluster_size)
                        .is_none_or(|e| e > self.file_size)
                {
                    return Err(corrupt(cache.l2_offset, "data cluster outside the file"));
                }
                let at = host + within;
                self.src.read_exact_at(buf, at).map_err(Error::io(at))?;
            }
            e @ L2Entry::Compressed {
                offset: host,
                extra_sectors,
            } => {
                if cache.comp_entry != Some(e) {
                    self.inflate(cache, host, extra_sectors)?;
                    cache.comp_entry = Some(e);
                }
                let start = usize::try_from(within).unwrap_or(usize::MAX);
                let src = start
                    .checked_add(buf.len())
                    .and_then(|end| cache.comp_data.get(start..end))
                    .ok_or_else(|| corrupt(host, "compressed cluster"))?;
                buf.copy_from_slice(src);
            }
        }
        Ok(())
    }

    fn inflate(&self, cache: &mut Cache, host: u64, extra_sectors: u64) -> Result<()> {
        cache.comp_entry = None;
        let len = extra_sectors
            .checked_add(1)
            .and_then(|s| s.checked_mul(512))
            .map(|s| s - (host % 512))
            .ok_or_else(|| corrupt(host, "compressed length"))?;
        // Compressed data never exceeds a cluster plus a sector of slack.
        if len > self.cluster_size + 512 || host >= self.file_size {
            return Err(corrupt(
                host,
                "compressed cluster too large or outside the file",
            ));
        }
        let len = len.min(self.file_size - host);
        let mut input = vec![0u8; usize::try_from(len).unwrap_or(0)];
        self.src
            .read_exact_at(&mut input, host)
            .map_err(Error::io(host))?;
        let mut d = Decompress::new_with_window_bits(false, 12);
        cache.comp_data.clear();
        cache
            .comp_data
            .resize(usize::try_from(self.cluster_size).unwrap_or(0), 0);
        let res = d.decompress(&input, &mut cache.comp_data, FlushDecompress::Finish);
        let out = usize::try_from(d.total_out()).unwrap_or(0);
        if res.is_err() || out != cache.comp_data.len() {
            return Err(corrupt(
                host,
                "compressed cluster does not inflate to a cluster",
            ));
        }
        Ok(())
    }
}

impl<R: ReadAt> ReadAt for Qcow2Reader<R> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_virtual(buf, offset).map_err(io::Error::from)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.size)
    }
}

impl<R: ReadAt> VirtualDisk for Qcow2Reader<R> {
    fn format(&self) -> Format {
        Format::Qcow2
    }
    fn virtual_size(&self) -> u64 {
        self.size
    }
    /// The file's own data clusters and, on an overlay, the backing
    /// disk's allocated regions (reported as they are: a region may also
    /// hold this file's zero clusters, which allocated regions may).
    fn next_allocated(&self, from: u64) -> Result<Option<Extent>> {
        if from >= self.size {
            return Ok(None);
        }
        let own = self.next_own(from)?;
        let under = match self.backing.as_deref() {
            Some((_, Under(disk))) => disk.next_allocated(from)?.and_then(|e| {
                let end = e.end().min(self.size);
                (e.offset < end).then(|| Extent {
                    offset: e.offset,
                    len: end - e.offset,
                })
            }),
            None => None,
        };
        Ok(match (own, under) {
            (Some(a), Some(b)) if b.offset < a.offset => Some(b),
            (Some(a), Some(b)) if b.offset == a.offset => Some(if b.len > a.len { b } else { a }),
            (Some(a), _) => Some(a),
            (None, b) => b,
        })
    }
    fn read_virtual(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(offset, buf.len(), self.size)?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let room =
                usize::try_from(self.cluster_size - pos % self.cluster_size).unwrap_or(usize::MAX);
            let n = room.min(buf.len() - done);
            let part = buf
                .get_mut(done..done + n)
                .ok_or_else(|| corrupt(0, "read"))?;
            self.read_in_cluster(&mut cache, part, pos)?;
            done += n;
        }
        Ok(())
    }
}

/// Reads and checks an overlay's backing file name (at
/// `backing_file_offset`, `name_len` bytes) and its format name extension
/// (in the header extensions after `header_length`).
fn read_backing<R: ReadAt>(src: &R, h: &Header, name_len: u32, file_size: u64) -> Result<Backing> {
    let off = h.backing_file_offset;
    if name_len == 0
        || name_len > MAX_BACKING_NAME
        || off
            .checked_add(u64::from(name_len))
            .is_none_or(|e| e > file_size)
    {
        return Err(corrupt(8, "backing file name outside the file or too long"));
    }
    let mut name = vec![0u8; name_len as usize];
    src.read_exact_at(&mut name, off).map_err(Error::io(off))?;
    let name = String::from_utf8(name).map_err(|_| corrupt(off, "backing file name not UTF-8"))?;
    // Header extensions: type (4), length (4), data padded to 8, until
    // type 0; they lie in the first cluster, before the name.
    let mut format = None;
    let mut at = u64::from(h.header_length);
    let limit = off.min(1 << h.cluster_bits).min(file_size);
    while at + 8 <= limit {
        let mut e = [0u8; 8];
        src.read_exact_at(&mut e, at).map_err(Error::io(at))?;
        let (kind, len) = (be32(&e, 0), u64::from(be32(&e, 4)));
        if kind == 0 {
            break;
        }
        let data = at + 8;
        if data + len > limit {
            return Err(corrupt(at, "header extension outside the header cluster"));
        }
        if kind == EXT_BACKING_FORMAT {
            let mut f = vec![0u8; len as usize];
            src.read_exact_at(&mut f, data).map_err(Error::io(data))?;
            format = Some(
                String::from_utf8(f).map_err(|_| corrupt(data, "backing format name not UTF-8"))?,
            );
        }
        at = data + len.div_ceil(8) * 8;
    }
    Ok(Backing { name, format })
}
