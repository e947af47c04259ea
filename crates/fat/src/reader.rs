//! Reading existing FAT volumes (kiln's own or made by other tools), built
//! on the `fatfs` 0.3.6 crate, whose reading side works (only its writer
//! is broken, see the crate docs).
//!
//! fatfs wants `Read + Write + Seek`; [`FatReader`] adapts any
//! [`ReadAt`] region and refuses every write, so inspecting an image can
//! never change it. Listings are bounded ([`ListLimits`]) because a corrupt
//! or hostile image can contain directory cluster loops, and file reads are
//! bounded by a caller-given byte limit.

use crate::{EntryStamp, Error, FatTime, FatType};
use kiln_units::ReadAt;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// `Read + Write + Seek` over a [`ReadAt`], read-only, with a read
/// budget: every byte fatfs reads is counted, and once an operation has
/// read more than the budget the reads fail. fatfs follows cluster chains
/// without loop detection (a directory whose chain loops over deleted
/// entries would spin forever), so this is what bounds the work a hostile
/// image can cause.
struct ReadAtIo<R> {
    inner: R,
    pos: u64,
    len: u64,
    budget: Arc<AtomicU64>,
    /// One aligned block of the volume: fatfs reads directories and FAT
    /// entries a few bytes at a time, which would be one system call each
    /// on a file.
    cache: Vec<u8>,
    cache_start: u64,
}

/// Size of the read cache block in bytes.
const CACHE_BLOCK: u64 = 64 * 1024;

impl<R: ReadAt> ReadAtIo<R> {
    /// Copies from the cache at `self.pos`, filling it first if needed.
    fn read_cached(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let cached_end = self.cache_start + self.cache.len() as u64;
        if self.pos < self.cache_start || self.pos >= cached_end {
            let start = self.pos - self.pos % CACHE_BLOCK;
            let n = CACHE_BLOCK.min(self.len - start);
            self.cache.resize(usize::try_from(n).unwrap_or(0), 0);
            if let Err(e) = self.inner.read_exact_at(&mut self.cache, start) {
                self.cache.clear();
                return Err(e);
            }
            self.cache_start = start;
        }
        let off = usize::try_from(self.pos - self.cache_start).unwrap_or(usize::MAX);
        let avail = self.cache.get(off..).unwrap_or(&[]);
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        Ok(n)
    }
}

impl<R: ReadAt> Read for ReadAtIo<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let spent = self
            .budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                b.checked_sub(n as u64)
            });
        if spent.is_err() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "read budget exhausted (corrupt volume: cluster chain loop?)",
            ));
        }
        let n = self.read_cached(&mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Runs a fatfs operation, turning a panic inside fatfs (0.3.6 has
/// unchecked arithmetic on cluster numbers that overflows on corrupt
/// entries in debug builds) into an error. kiln's own code does not panic;
/// this fences the third-party parser.
fn guarded<T>(
    op: &'static str,
    path: &str,
    f: impl FnOnce() -> Result<T, Error>,
) -> Result<T, Error> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(Error::Read {
            op,
            path: path.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidData, "fatfs failed on corrupt data"),
        })
    })
}

impl<R> Write for ReadAtIo<R> {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the FAT reader is read-only",
        ))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<R> Seek for ReadAtIo<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let new =
            new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek out of range"))?;
        self.pos = new;
        Ok(new)
    }
}

/// The visitor of [`FatReader::walk`], as a trait object.
type WalkVisit<'a> =
    dyn FnMut(&FatEntryInfo, &EntryStamp, Option<&mut dyn Read>) -> Result<(), Error> + 'a;

/// Kind of a listed entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FatEntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FatEntryInfo {
    /// Slash-separated path from the root, without a leading slash, using
    /// long names where present.
    pub path: String,
    /// File or directory.
    pub kind: FatEntryKind,
    /// File size in bytes (0 for directories).
    pub size_bytes: u64,
}

/// Bounds on a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListLimits {
    /// Most entries returned before giving up.
    pub max_entries: u64,
    /// Deepest directory nesting followed.
    pub max_depth: usize,
}

impl Default for ListLimits {
    /// 1,000,000 entries, 64 levels.
    fn default() -> Self {
        Self {
            max_entries: 1_000_000,
            max_depth: 64,
        }
    }
}

/// A read-only view of a FAT12/16/32 volume.
///
/// ```
/// use kiln_fat::{FatOptions, FatReader, FatWriter};
/// use kiln_tree::{Content, Entry, EntryKind, Metadata, Timestamp, TreePath, TreeSink};
/// let t = Timestamp::new(1_700_000_000, 0);
/// let mut img = Vec::new();
/// let mut w = FatWriter::new(&mut img, 4 << 20, FatOptions::new(7, t).volume_label("BOOT")).unwrap();
/// let e = Entry::new(TreePath::parse(b"cmdline.txt").unwrap(), EntryKind::File, Metadata::new(0o644, t));
/// w.add(&e, Content::bytes(b"quiet\n")).unwrap();
/// w.finish().unwrap();
/// let r = FatReader::open(&img).unwrap();
/// assert_eq!(r.volume_label().unwrap().as_deref(), Some("BOOT"));
/// assert_eq!(r.read_file("cmdline.txt", 1024).unwrap(), b"quiet\n");
/// ```
pub struct FatReader<R: ReadAt> {
    fs: fatfs::FileSystem<ReadAtIo<R>>,
    budget: Arc<AtomicU64>,
    /// Budget granted to each operation: twice the volume plus 16 MiB.
    per_op: u64,
}

impl<R: ReadAt> std::fmt::Debug for FatReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FatReader")
            .field("fat_type", &self.fs.fat_type())
            .field("volume_id", &self.fs.volume_id())
            .finish()
    }
}

fn read_err<'a>(op: &'static str, path: &'a str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Read {
        op,
        path: path.to_owned(),
        source,
    }
}

impl<R: ReadAt> FatReader<R> {
    /// Opens the volume at offset 0 of `region` (a [`kiln_units::SubRegion`]
    /// for a partition inside a disk image).
    pub fn open(region: R) -> Result<Self, Error> {
        let len = region.size().map_err(read_err("size", "/"))?;
        let per_op = len.saturating_mul(2).saturating_add(16 << 20);
        let budget = Arc::new(AtomicU64::new(per_op));
        let io = ReadAtIo {
            inner: region,
            pos: 0,
            len,
            budget: Arc::clone(&budget),
            cache: Vec::new(),
            cache_start: 0,
        };
        let fs = guarded("mount", "/", || {
            fatfs::FileSystem::new(io, fatfs::FsOptions::new()).map_err(read_err("mount", "/"))
        })?;
        Ok(Self { fs, budget, per_op })
    }

    fn refill(&self) {
        self.budget.store(self.per_op, Ordering::Relaxed);
    }

    /// FAT16 or FAT32; FAT12 volumes are reported as `None`.
    pub fn fat_type(&self) -> Option<FatType> {
        match self.fs.fat_type() {
            fatfs::FatType::Fat16 => Some(FatType::Fat16),
            fatfs::FatType::Fat32 => Some(FatType::Fat32),
            fatfs::FatType::Fat12 => None,
        }
    }

    /// The volume serial number (`BS_VolID`).
    pub fn volume_id(&self) -> u32 {
        self.fs.volume_id()
    }

    /// The volume label: the root directory's label entry if present
    /// (what Linux `blkid` and mtools show), else the boot sector's, with
    /// trailing spaces removed; `None` for no label / `NO NAME`.
    pub fn volume_label(&self) -> Result<Option<String>, Error> {
        self.refill();
        let from_root = guarded("read the volume label of", "/", || {
            self.fs
                .read_volume_label_from_root_dir_as_bytes()
                .map_err(read_err("read the volume label of", "/"))
        })?;
        let raw: Vec<u8> = match from_root {
            Some(b) => b.to_vec(),
            None => self.fs.volume_label_as_bytes().to_vec(),
        };
        let text = String::from_utf8_lossy(&raw).trim_end().to_owned();
        Ok(if text.is_empty() || text == "NO NAME" {
            None
        } else {
            Some(text)
        })
    }

    /// Every file and directory, depth first, directories before their
    /// contents, in on-disk order within a directory.
    pub fn list(&self, limits: ListLimits) -> Result<Vec<FatEntryInfo>, Error> {
        self.refill();
        guarded("list", "/", || self.list_inner(limits))
    }

    fn list_inner(&self, limits: ListLimits) -> Result<Vec<FatEntryInfo>, Error> {
        let mut out = Vec::new();
        let mut stack: Vec<(String, fatfs::Dir<'_, ReadAtIo<R>>, usize)> =
            vec![(String::new(), self.fs.root_dir(), 0)];
        while let Some((prefix, dir, depth)) = stack.pop() {
            let mut subdirs = Vec::new();
            for e in dir.iter() {
                let e = e.map_err(read_err("list", &prefix))?;
                let name = e.file_name();
                if name == "." || name == ".." {
                    continue;
                }
                if out.len() as u64 >= limits.max_entries {
                    return Err(Error::TooManyEntries {
                        limit: limits.max_entries,
                        what: "entries",
                    });
                }
                let path = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                let is_dir = e.is_dir();
                out.push(FatEntryInfo {
                    path: path.clone(),
                    kind: if is_dir {
                        FatEntryKind::Dir
                    } else {
                        FatEntryKind::File
                    },
                    size_bytes: if is_dir { 0 } else { e.len() },
                });
                if is_dir {
                    if depth + 1 > limits.max_depth {
                        return Err(Error::TooManyEntries {
                            limit: limits.max_depth as u64,
                            what: "levels",
                        });
                    }
                    subdirs.push((path, e.to_dir(), depth + 1));
                }
            }
            // Reverse so the first subdirectory is listed first.
            stack.extend(subdirs.into_iter().rev());
        }
        Ok(out)
    }

    /// Visits every file and directory like [`FatReader::list`] (depth
    /// first, directories before their contents), with each entry's
    /// attributes and times, and for files a reader of exactly
    /// `size_bytes` bytes of content. One file is open at a time, so
    /// memory does not grow with file sizes. `visit` errors end the walk
    /// and are returned as they are.
    pub fn walk(
        &self,
        limits: ListLimits,
        mut visit: impl FnMut(&FatEntryInfo, &EntryStamp, Option<&mut dyn Read>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.refill();
        guarded("walk", "/", || self.walk_inner(limits, &mut visit))
    }

    fn walk_inner(&self, limits: ListLimits, visit: &mut WalkVisit<'_>) -> Result<(), Error> {
        let mut seen = 0u64;
        let mut stack: Vec<(String, fatfs::Dir<'_, ReadAtIo<R>>, usize)> =
            vec![(String::new(), self.fs.root_dir(), 0)];
        while let Some((prefix, dir, depth)) = stack.pop() {
            let mut subdirs = Vec::new();
            for e in dir.iter() {
                let e = e.map_err(read_err("walk", &prefix))?;
                let name = e.file_name();
                if name == "." || name == ".." {
                    continue;
                }
                seen += 1;
                if seen > limits.max_entries {
                    return Err(Error::TooManyEntries {
                        limit: limits.max_entries,
                        what: "entries",
                    });
                }
                let path = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                let is_dir = e.is_dir();
                let info = FatEntryInfo {
                    path: path.clone(),
                    kind: if is_dir {
                        FatEntryKind::Dir
                    } else {
                        FatEntryKind::File
                    },
                    size_bytes: if is_dir { 0 } else { e.len() },
                };
                let stamp = stamp_of(&e);
                if is_dir {
                    visit(&info, &stamp, None)?;
                    if depth + 1 > limits.max_depth {
                        return Err(Error::TooManyEntries {
                            limit: limits.max_depth as u64,
                            what: "levels",
                        });
                    }
                    subdirs.push((path, e.to_dir(), depth + 1));
                } else {
                    let mut file = e.to_file();
                    let mut counted = ReadErr {
                        inner: &mut file,
                        path: &path,
                        error: None,
                    };
                    let r = visit(&info, &stamp, Some(&mut counted));
                    if let Some(err) = counted.error.take() {
                        // A source read failure surfaces in the writer as
                        // a content error; report the reader's cause.
                        return Err(err);
                    }
                    r?;
                }
            }
            stack.extend(subdirs.into_iter().rev());
        }
        Ok(())
    }

    /// The bytes of the file at `path` (slash-separated, long or short
    /// names, case-insensitive), refusing files larger than `max_bytes`.
    pub fn read_file(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>, Error> {
        self.refill();
        guarded("read", path, || self.read_file_inner(path, max_bytes))
    }

    fn read_file_inner(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>, Error> {
        let p = path.trim_start_matches('/');
        let root = self.fs.root_dir();
        let mut file = root.open_file(p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound {
                path: path.to_owned(),
            },
            _ => Error::Read {
                op: "open",
                path: path.to_owned(),
                source: e,
            },
        })?;
        // The size recorded in the directory entry; fatfs stops at it.
        let size = file
            .seek(SeekFrom::End(0))
            .map_err(read_err("size", path))?;
        if size > max_bytes {
            return Err(Error::ReadLimit {
                path: path.to_owned(),
                size_bytes: size,
                limit_bytes: max_bytes,
            });
        }
        file.seek(SeekFrom::Start(0))
            .map_err(read_err("seek", path))?;
        let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        (&mut file)
            .take(max_bytes)
            .read_to_end(&mut out)
            .map_err(read_err("read", path))?;
        Ok(out)
    }
}

/// The attributes and raw times of a fatfs directory entry.
fn stamp_of<T: Read + Write + Seek>(e: &fatfs::DirEntry<'_, T>) -> EntryStamp {
    // fatfs decodes the on-disk words losslessly; encode them back
    // (fatgen103 §6 date and time layouts).
    let date =
        |d: fatfs::Date| (d.year.wrapping_sub(1980) << 9) | ((d.month & 0xF) << 5) | (d.day & 0x1F);
    let time = |t: fatfs::Time| {
        let word = ((t.hour & 0x1F) << 11) | ((t.min & 0x3F) << 5) | ((t.sec / 2) & 0x1F);
        let tenths = (t.millis / 10 + (t.sec % 2) * 100) as u8;
        (word, tenths)
    };
    let c = e.created();
    let (ct, tenths) = time(c.time);
    let m = e.modified();
    let (mt, _) = time(m.time);
    EntryStamp {
        attributes: e.attributes().bits(),
        created: FatTime {
            date: date(c.date),
            time: ct,
            tenths,
        },
        accessed_date: date(e.accessed()),
        modified: FatTime {
            date: date(m.date),
            time: mt,
            tenths: 0,
        },
    }
}

/// A file reader that keeps the first read error so the walk can report
/// it as a reader failure (with the path) rather than as the consumer's.
struct ReadErr<'a, F: Read> {
    inner: &'a mut F,
    path: &'a str,
    error: Option<Error>,
}

impl<F: Read> Read for ReadErr<'_, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if self.error.is_none() {
                self.error = Some(Error::Read {
                    op: "read",
                    path: self.path.to_owned(),
                    source: io::Error::new(e.kind(), e.to_string()),
                });
            }
        })
    }
}
