//! The streaming FAT writer: a [`TreeSink`] that formats a volume and
//! fills it from a file tree in one pass.
//!
//! File contents go straight to their clusters as entries arrive: each
//! file gets one contiguous run of clusters from a bump allocator, so the
//! FAT chain of a file is `start, start+1, …, EOC` and only `(start, len)`
//! is remembered per file. Directories, the FATs, the boot sector(s) and
//! FSInfo are written by [`FatWriter::finish`], when every name of every
//! directory is known (short-name tails depend on the siblings). Memory is
//! one I/O buffer plus a few dozen bytes per entry; the FAT is generated
//! in chunks from the run list, never held whole.
//!
//! On FAT32 the root directory keeps cluster 2 (as mkfs.fat does; some
//! boot ROMs assume it); if it outgrows one cluster the rest is chained
//! from clusters allocated after the files.
//!
//! Every directory entry (files, directories, `.`/`..`, the volume label)
//! carries [`FatOptions::timestamp`] as creation, write and access time;
//! the entries' own times are ignored so the image depends only on the
//! build's `SOURCE_DATE_EPOCH`. Modes and owners are not stored (FAT has
//! none). Symlinks, hardlinks, devices, FIFOs and sockets are refused with
//! [`Error::Unsupported`] naming the path: FAT cannot represent them, and
//! silently copying or dropping them would make the boot partition differ
//! from its source without anyone noticing.

use crate::layout::{FatLayout, NUM_FATS};
use crate::name::{
    fold_key, lfn_checksum, lfn_entries, lfn_entry_count, plan_short, validate_long_name,
    ShortNames, ShortPlan,
};
use crate::raw::{
    RawBootSector16, RawBootSector32, RawBpb, RawDirEntry, RawExtBoot, RawFsInfo, ATTR_ARCHIVE,
    ATTR_DIRECTORY, ATTR_VOLUME_ID, BPB_BYTS_PER_SEC, BS_BOOT_SIG, DIR_ENTRY_SIZE, FSI_LEAD_SIG,
    FSI_STRUC_SIG, FSI_TRAIL_SIG,
};
use crate::time::FatTime;
use crate::{Error, FatOptions, FatType};
use kiln_tree::{Content, Entry, EntryKind, TreePath, TreeSink};
use kiln_units::WriteAt;
use std::collections::HashMap;
use std::io::Read;
use zerocopy::little_endian::{U16, U32};
use zerocopy::IntoBytes;

/// Size of the I/O buffer used to stream file content, in bytes.
const IO_BUF: usize = 256 * 1024;
/// Most 32-byte entries in one directory (fatgen103 §6: a directory may
/// not grow beyond 65536 entries, 2 MiB).
pub const MAX_DIR_ENTRIES: u64 = 65536;
/// Boot code kiln places after the BPB: `cli; hlt; jmp $-1` — a volume
/// that is booted by mistake halts instead of running garbage.
const BOOT_STUB: [u8; 4] = [0xFA, 0xF4, 0xEB, 0xFD];

/// What [`FatWriter::finish`] reports about the written volume.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FatReport {
    /// FAT16 or FAT32.
    pub fat_type: FatType,
    /// Bytes per cluster.
    pub cluster_bytes: u32,
    /// Data clusters in the volume.
    pub total_clusters: u32,
    /// Clusters left free.
    pub free_clusters: u32,
    /// Regular files written.
    pub files: u64,
    /// Directories written, not counting the root.
    pub dirs: u64,
    /// Sum of the file sizes in bytes.
    pub file_bytes: u64,
}

#[derive(Debug)]
struct Node {
    name: String,
    parent: usize,
    kind: NodeKind,
    /// Attributes and times kept from a volume being rebuilt
    /// ([`FatWriter::add_stamped`]); `None`: the writer's defaults.
    stamp: Option<EntryStamp>,
}

/// Directory-entry attributes and times stored for one entry instead of
/// the writer's defaults (archive bit, [`FatOptions::timestamp`]). Used
/// when a volume is rebuilt ([`crate::rebuild`]) so entries that were not
/// edited keep what they had. Field layout as in fatgen103 §6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryStamp {
    /// `DIR_Attr` bits kept: read-only 0x01, hidden 0x02, system 0x04,
    /// archive 0x20 (the directory bit is set by the writer, other bits
    /// are dropped).
    pub attributes: u8,
    /// `DIR_CrtDate`, `DIR_CrtTime`, `DIR_CrtTimeTenth`.
    pub created: FatTime,
    /// `DIR_LstAccDate`.
    pub accessed_date: u16,
    /// `DIR_WrtDate`, `DIR_WrtTime` (its `tenths` is not stored).
    pub modified: FatTime,
}

/// Attribute bits an [`EntryStamp`] may carry.
const STAMP_ATTRS: u8 = 0x01 | 0x02 | 0x04 | ATTR_ARCHIVE;

#[derive(Debug)]
enum NodeKind {
    Dir {
        children: Vec<usize>,
        index: HashMap<String, usize>,
        /// First cluster, assigned in `finish` (0 for the FAT16 root).
        first_cluster: u32,
    },
    File {
        first_cluster: u32,
        size: u32,
    },
}

/// A run of consecutive clusters `start..start+len` of one chain, followed
/// by `next` (0: end of chain).
#[derive(Debug, Clone, Copy)]
struct Run {
    start: u32,
    len: u32,
    next: u32,
}

/// One planned directory entry slot.
struct Slot {
    node: usize,
    short: [u8; 11],
    case_bits: u8,
    lfn: bool,
}

/// Formats a FAT16/FAT32 volume on `target` and writes a tree into it.
///
/// Feed it with any tree source ([`kiln_tree::dir::DirSource`],
/// [`kiln_tree::tar_source::TarSource`], or [`TreeSink::add`] by hand),
/// then call [`FatWriter::finish`]. Entries may come in any order; missing
/// parent directories are created.
///
/// ```
/// use kiln_fat::{FatOptions, FatType, FatWriter};
/// use kiln_tree::{Content, Entry, EntryKind, Metadata, Timestamp, TreePath, TreeSink};
/// let t = Timestamp::new(1_700_000_000, 0);
/// let mut img = Vec::new();
/// let opts = FatOptions::new(0xB00F_CAFE, t).volume_label("resin-boot");
/// let mut w = FatWriter::new(&mut img, 8 << 20, opts).unwrap();
/// let e = Entry::new(TreePath::parse(b"config.json").unwrap(), EntryKind::File, Metadata::new(0o644, t));
/// w.add(&e, Content::bytes(b"{}\n")).unwrap();
/// let report = w.finish().unwrap();
/// assert_eq!(report.fat_type, FatType::Fat16);
/// assert_eq!(img.len(), 8 << 20);
/// ```
#[derive(Debug)]
pub struct FatWriter<W: WriteAt> {
    target: W,
    size_bytes: u64,
    layout: FatLayout,
    opts: FatOptions,
    label: Option<[u8; 11]>,
    nodes: Vec<Node>,
    runs: Vec<Run>,
    /// Next cluster the bump allocator hands out.
    next_cluster: u32,
    /// One past the highest byte written.
    high_water: u64,
    buf: Vec<u8>,
    files: u64,
    file_bytes: u64,
}

impl<W: WriteAt> FatWriter<W> {
    /// A writer for a volume of `size_bytes` at offset 0 of `target`
    /// (use [`kiln_units::SubRegion`] for a partition inside a disk image).
    /// Computes the layout now, so a volume that cannot be FAT16/FAT32 or
    /// bad options fail before anything is written.
    pub fn new(target: W, size_bytes: u64, opts: FatOptions) -> Result<Self, Error> {
        let layout = FatLayout::compute(size_bytes, &opts)?;
        let label = opts.label_bytes()?;
        let root = Node {
            name: String::new(),
            parent: 0,
            kind: NodeKind::Dir {
                children: Vec::new(),
                index: HashMap::new(),
                first_cluster: 0,
            },
            stamp: None,
        };
        // FAT32: cluster 2 is the root directory's first cluster.
        let next_cluster = if layout.fat_type == FatType::Fat32 {
            3
        } else {
            2
        };
        Ok(Self {
            target,
            size_bytes,
            layout,
            opts,
            label,
            nodes: vec![root],
            runs: Vec::new(),
            next_cluster,
            high_water: 0,
            buf: Vec::new(),
            files: 0,
            file_bytes: 0,
        })
    }

    /// The computed layout.
    pub fn layout(&self) -> &FatLayout {
        &self.layout
    }

    /// The target being written (for a caller that observes or routes the
    /// writes, e.g. to tell file data, written while entries are added,
    /// from the metadata [`FatWriter::finish`] writes).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.target
    }

    fn end_cluster(&self) -> u32 {
        self.layout.cluster_count + 2
    }

    fn free_clusters(&self) -> u32 {
        self.end_cluster().saturating_sub(self.next_cluster)
    }

    /// Takes `n` consecutive clusters, or says how far short we are.
    fn allocate(&mut self, n: u32, what: impl FnOnce() -> String) -> Result<u32, Error> {
        if n > self.free_clusters() {
            let cb = u64::from(self.layout.cluster_bytes());
            return Err(Error::NoSpace {
                what: what(),
                needed_bytes: u64::from(n) * cb,
                available_bytes: u64::from(self.free_clusters()) * cb,
            });
        }
        let start = self.next_cluster;
        self.next_cluster += n;
        Ok(start)
    }

    fn write(&mut self, data: &[u8], offset: u64, op: &'static str) -> Result<(), Error> {
        self.target
            .write_all_at(data, offset)
            .map_err(Error::io(op, offset))?;
        self.high_water = self.high_water.max(offset + data.len() as u64);
        Ok(())
    }

    /// Writes `len` zero bytes at `offset` (skipped on a zeroed target
    /// when `skippable`).
    fn write_zeros(&mut self, mut offset: u64, len: u64, skippable: bool) -> Result<(), Error> {
        if skippable && self.opts.assume_zeroed {
            return Ok(());
        }
        let zeros = vec![0u8; IO_BUF.min(usize::try_from(len).unwrap_or(IO_BUF))];
        let end = offset + len;
        while offset < end {
            let n = usize::try_from(end - offset)
                .unwrap_or(IO_BUF)
                .min(zeros.len());
            self.write(&zeros[..n], offset, "zeroing")?;
            offset += n as u64;
        }
        Ok(())
    }

    fn dir_children_mut(
        &mut self,
        dir: usize,
    ) -> Option<(&mut Vec<usize>, &mut HashMap<String, usize>)> {
        match &mut self.nodes.get_mut(dir)?.kind {
            NodeKind::Dir {
                children, index, ..
            } => Some((children, index)),
            NodeKind::File { .. } => None,
        }
    }

    fn lookup(&self, dir: usize, key: &str) -> Option<usize> {
        match &self.nodes.get(dir)?.kind {
            NodeKind::Dir { index, .. } => index.get(key).copied(),
            NodeKind::File { .. } => None,
        }
    }

    fn insert(&mut self, parent: usize, name: String, key: String, kind: NodeKind) -> usize {
        let id = self.nodes.len();
        self.nodes.push(Node {
            name,
            parent,
            kind,
            stamp: None,
        });
        if let Some((children, index)) = self.dir_children_mut(parent) {
            children.push(id);
            index.insert(key, id);
        }
        id
    }

    /// Checks one component and returns (name, fold key).
    fn check_name(path: &TreePath, comp: &[u8]) -> Result<(String, String), Error> {
        let name = validate_long_name(comp).map_err(|reason| Error::InvalidName {
            path: path.to_string(),
            reason,
        })?;
        Ok((name.to_owned(), fold_key(name)))
    }

    /// Walks `comps` from the root, creating missing directories.
    /// `target`: the last component is the entry itself (a directory entry),
    /// not a parent on the way to a file.
    fn ensure_dir<'a>(
        &mut self,
        path: &TreePath,
        comps: impl Iterator<Item = &'a [u8]>,
        target: bool,
    ) -> Result<usize, Error> {
        let mut cur = 0usize;
        let mut comps = comps.peekable();
        while let Some(comp) = comps.next() {
            let (name, key) = Self::check_name(path, comp)?;
            let last = target && comps.peek().is_none();
            cur = match self.lookup(cur, &key) {
                Some(id) => {
                    let node = &self.nodes[id];
                    if !matches!(node.kind, NodeKind::Dir { .. }) {
                        return Err(if last && node.name == name {
                            Error::AlreadyExists {
                                path: path.to_string(),
                            }
                        } else {
                            Error::NotADirectory {
                                path: path.to_string(),
                            }
                        });
                    }
                    if node.name != name {
                        return Err(Error::NameCollision {
                            path: path.to_string(),
                            existing: self.path_of(id),
                        });
                    }
                    id
                }
                None => self.insert(
                    cur,
                    name,
                    key,
                    NodeKind::Dir {
                        children: Vec::new(),
                        index: HashMap::new(),
                        first_cluster: 0,
                    },
                ),
            };
        }
        Ok(cur)
    }

    /// `/a/b` of a node, for messages.
    fn path_of(&self, mut id: usize) -> String {
        let mut parts = Vec::new();
        while id != 0 {
            let Some(n) = self.nodes.get(id) else { break };
            parts.push(n.name.as_str());
            id = n.parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    fn add_file(&mut self, entry: &Entry, content: Content<'_>) -> Result<(), Error> {
        let path = &entry.path;
        let Some(file_name) = path.file_name() else {
            return Err(Error::AlreadyExists {
                path: path.to_string(),
            });
        };
        let depth = path.depth();
        let parent = self.ensure_dir(path, path.components().take(depth - 1), false)?;
        let (name, key) = Self::check_name(path, file_name)?;
        if let Some(id) = self.lookup(parent, &key) {
            return Err(if self.nodes[id].name == name {
                Error::AlreadyExists {
                    path: path.to_string(),
                }
            } else {
                Error::NameCollision {
                    path: path.to_string(),
                    existing: self.path_of(id),
                }
            });
        }
        let size64 = content.size();
        let size = u32::try_from(size64).map_err(|_| Error::FileTooLarge {
            path: path.to_string(),
            size_bytes: size64,
        })?;
        let cb = self.layout.cluster_bytes();
        let n = size.div_ceil(cb);
        let first = if n == 0 {
            0
        } else {
            self.allocate(n, || path.to_string())?
        };
        if n > 0 {
            self.runs.push(Run {
                start: first,
                len: n,
                next: 0,
            });
            let start = self.layout.cluster_offset(first);
            let written = self.stream(path, content, start, size64)?;
            // Zero the slack of the last cluster so the image does not
            // depend on what the target held before.
            let end = start + u64::from(n) * u64::from(cb);
            self.write_zeros(start + written, end - (start + written), true)?;
        }
        self.insert(
            parent,
            name,
            key,
            NodeKind::File {
                first_cluster: first,
                size,
            },
        );
        self.files += 1;
        self.file_bytes += size64;
        Ok(())
    }

    /// Copies the content to `offset`; returns the bytes placed.
    fn stream(
        &mut self,
        path: &TreePath,
        content: Content<'_>,
        offset: u64,
        size: u64,
    ) -> Result<u64, Error> {
        match content {
            Content::None => Ok(0),
            Content::Bytes { data } => {
                self.write(data, offset, "writing file data")?;
                Ok(data.len() as u64)
            }
            Content::Preallocated { size, head } => {
                let head = &head[..head.len().min(usize::try_from(size).unwrap_or(usize::MAX))];
                self.write(head, offset, "writing file data")?;
                let rest = size - head.len() as u64;
                self.write_zeros(offset + head.len() as u64, rest, true)?;
                Ok(size)
            }
            Content::Stream { reader, .. } => {
                let mut buf = std::mem::take(&mut self.buf);
                buf.resize(IO_BUF, 0);
                let r = self.copy_stream(path, reader, &mut buf, offset, size);
                self.buf = buf;
                r
            }
        }
    }

    fn copy_stream(
        &mut self,
        path: &TreePath,
        reader: &mut dyn Read,
        buf: &mut [u8],
        offset: u64,
        size: u64,
    ) -> Result<u64, Error> {
        let mut done = 0u64;
        while done < size {
            let want = usize::try_from(size - done)
                .unwrap_or(buf.len())
                .min(buf.len());
            let mut filled = 0;
            while filled < want {
                match reader.read(&mut buf[filled..want]) {
                    Ok(0) => {
                        return Err(Error::ShortContent {
                            path: path.to_string(),
                            expected: size,
                            got: done + filled as u64,
                        })
                    }
                    Ok(k) => filled += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(source) => {
                        return Err(Error::ContentIo {
                            path: path.to_string(),
                            source,
                        })
                    }
                }
            }
            let chunk = &buf[..filled];
            if !(self.opts.assume_zeroed && chunk.iter().all(|&b| b == 0)) {
                self.write(chunk, offset + done, "writing file data")?;
            }
            done += filled as u64;
        }
        Ok(done)
    }

    /// Directories in depth-first order, children sorted by name bytes.
    fn dir_order(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let mut stack = vec![0usize];
        while let Some(id) = stack.pop() {
            out.push(id);
            if let NodeKind::Dir { children, .. } = &self.nodes[id].kind {
                let mut dirs: Vec<usize> = children
                    .iter()
                    .copied()
                    .filter(|&c| matches!(self.nodes[c].kind, NodeKind::Dir { .. }))
                    .collect();
                dirs.sort_by(|&a, &b| self.nodes[b].name.cmp(&self.nodes[a].name));
                stack.extend(dirs);
            }
        }
        out
    }

    /// Short names for the children of `dir`, in name order.
    fn plan_dir(&self, dir: usize) -> Result<Vec<Slot>, Error> {
        let NodeKind::Dir { children, .. } = &self.nodes[dir].kind else {
            return Ok(Vec::new());
        };
        let mut kids = children.clone();
        kids.sort_by(|&a, &b| {
            self.nodes[a]
                .name
                .as_bytes()
                .cmp(self.nodes[b].name.as_bytes())
        });
        let plans: Vec<ShortPlan> = kids
            .iter()
            .map(|&k| plan_short(&self.nodes[k].name))
            .collect();
        let mut names = ShortNames::default();
        let mut shorts: Vec<Option<([u8; 11], u8)>> = vec![None; kids.len()];
        // Exact 8.3 names first, so a generated `~N` never takes a name
        // that exists literally.
        for (i, p) in plans.iter().enumerate() {
            if let ShortPlan::Exact { short, case_bits } = p {
                if names.reserve(*short) {
                    shorts[i] = Some((*short, *case_bits));
                }
            }
        }
        let mut out = Vec::with_capacity(kids.len());
        for (i, (&k, p)) in kids.iter().zip(&plans).enumerate() {
            let (short, case_bits, lfn) = match shorts[i] {
                Some((s, bits)) => (s, bits, false),
                None => {
                    let s = names.assign(p).ok_or_else(|| Error::NameCollision {
                        path: self.path_of(k),
                        existing: "every numeric-tail short name".to_owned(),
                    })?;
                    (s, 0, true)
                }
            };
            out.push(Slot {
                node: k,
                short,
                case_bits,
                lfn,
            });
        }
        Ok(out)
    }

    fn entry(&self, name: [u8; 11], attr: u8, nt: u8, cluster: u32, size: u32) -> RawDirEntry {
        self.entry_stamped(name, attr, nt, cluster, size, None)
    }

    /// A directory entry; `stamp` replaces the default times and the
    /// archive bit (`attr` keeps its directory/volume bits).
    fn entry_stamped(
        &self,
        name: [u8; 11],
        attr: u8,
        nt: u8,
        cluster: u32,
        size: u32,
        stamp: Option<&EntryStamp>,
    ) -> RawDirEntry {
        let t = FatTime::from_timestamp(self.opts.timestamp);
        let (attr, c, acc, m) = match stamp {
            Some(s) => (
                (attr & !ATTR_ARCHIVE) | (s.attributes & STAMP_ATTRS),
                s.created,
                s.accessed_date,
                s.modified,
            ),
            None => (attr, t, t.date, t),
        };
        RawDirEntry {
            dir_name: name,
            dir_attr: attr,
            dir_nt_res: nt,
            dir_crt_time_tenth: c.tenths,
            dir_crt_time: U16::new(c.time),
            dir_crt_date: U16::new(c.date),
            dir_lst_acc_date: U16::new(acc),
            dir_fst_clus_hi: U16::new((cluster >> 16) as u16),
            dir_wrt_time: U16::new(m.time),
            dir_wrt_date: U16::new(m.date),
            dir_fst_clus_lo: U16::new((cluster & 0xFFFF) as u16),
            dir_file_size: U32::new(size),
        }
    }

    /// Like [`TreeSink::add`], but the entry's directory entry carries
    /// `stamp` (attributes and times) instead of the defaults. For a
    /// directory that already exists (created as a parent), the stamp is
    /// set on it.
    ///
    /// # Errors
    /// As [`TreeSink::add`].
    pub fn add_stamped(
        &mut self,
        entry: &Entry,
        content: Content<'_>,
        stamp: EntryStamp,
    ) -> Result<(), Error> {
        let id = match &entry.kind {
            EntryKind::Dir if !entry.path.is_root() => {
                Some(self.ensure_dir(&entry.path, entry.path.components(), true)?)
            }
            EntryKind::File if !entry.path.is_root() => {
                self.add_file(entry, content)?;
                // add_file pushes the file's node last.
                Some(self.nodes.len() - 1)
            }
            _ => {
                self.add(entry, content)?;
                None
            }
        };
        if let Some(node) = id.and_then(|i| self.nodes.get_mut(i)) {
            node.stamp = Some(stamp);
        }
        Ok(())
    }

    fn dir_cluster(&self, id: usize) -> u32 {
        match &self.nodes[id].kind {
            NodeKind::Dir { first_cluster, .. } => *first_cluster,
            NodeKind::File { first_cluster, .. } => *first_cluster,
        }
    }

    fn entry_count(&self, dir: usize, slots: &[Slot]) -> u64 {
        let base: u64 = if dir == 0 {
            u64::from(self.label.is_some())
        } else {
            2
        };
        base + slots
            .iter()
            .map(|s| {
                1 + if s.lfn {
                    lfn_entry_count(&self.nodes[s.node].name) as u64
                } else {
                    0
                }
            })
            .sum::<u64>()
    }

    /// Serialises directory `dir`.
    fn dir_bytes(&self, dir: usize, slots: &[Slot]) -> Vec<u8> {
        let mut out = Vec::new();
        if dir == 0 {
            if let Some(label) = self.label {
                out.extend_from_slice(self.entry(label, ATTR_VOLUME_ID, 0, 0, 0).as_bytes());
            }
        } else {
            let me = self.dir_cluster(dir);
            let parent = self.nodes[dir].parent;
            // `..` of a directory in the root points to cluster 0, also on
            // FAT32 (fatgen103 §6: "dotdot" of a directory whose parent is
            // the root has a first cluster of 0).
            let up = if parent == 0 {
                0
            } else {
                self.dir_cluster(parent)
            };
            let st = self.nodes[dir].stamp.as_ref();
            out.extend_from_slice(
                self.entry_stamped(*b".          ", ATTR_DIRECTORY, 0, me, 0, st)
                    .as_bytes(),
            );
            out.extend_from_slice(
                self.entry_stamped(*b"..         ", ATTR_DIRECTORY, 0, up, 0, st)
                    .as_bytes(),
            );
        }
        for s in slots {
            let node = &self.nodes[s.node];
            if s.lfn {
                for l in lfn_entries(&node.name, lfn_checksum(&s.short)) {
                    out.extend_from_slice(l.as_bytes());
                }
            }
            let st = node.stamp.as_ref();
            let e = match &node.kind {
                NodeKind::Dir { first_cluster, .. } => {
                    self.entry_stamped(s.short, ATTR_DIRECTORY, s.case_bits, *first_cluster, 0, st)
                }
                NodeKind::File {
                    first_cluster,
                    size,
                } => self.entry_stamped(
                    s.short,
                    ATTR_ARCHIVE,
                    s.case_bits,
                    *first_cluster,
                    *size,
                    st,
                ),
            };
            out.extend_from_slice(e.as_bytes());
        }
        out
    }

    /// Writes directories, FATs, FSInfo and boot sectors.
    pub fn finish(mut self) -> Result<FatReport, Error> {
        let cb = self.layout.cluster_bytes();
        let order = self.dir_order();
        // Pass 1: names, sizes, clusters.
        let mut plans: Vec<(usize, Vec<Slot>, Vec<Run>)> = Vec::with_capacity(order.len());
        for &dir in &order {
            let slots = self.plan_dir(dir)?;
            let count = self.entry_count(dir, &slots);
            let fat16_root = dir == 0 && self.layout.fat_type == FatType::Fat16;
            if fat16_root {
                if count > u64::from(self.layout.root_entries) {
                    return Err(Error::TooManyRootEntries {
                        count,
                        max: u64::from(self.layout.root_entries),
                    });
                }
                plans.push((dir, slots, Vec::new()));
                continue;
            }
            if count > MAX_DIR_ENTRIES {
                return Err(Error::TooManyDirEntries {
                    path: self.path_of(dir),
                    count,
                    max: MAX_DIR_ENTRIES,
                });
            }
            // count ≤ 65536, so the byte size fits in u32.
            let bytes = (count * u64::from(DIR_ENTRY_SIZE)) as u32;
            let clusters = bytes.div_ceil(cb).max(1);
            let what = || self.path_of(dir);
            let mut runs = Vec::new();
            if dir == 0 {
                // FAT32 root: cluster 2, then more if needed.
                let what = what();
                runs.push(Run {
                    start: 2,
                    len: 1,
                    next: 0,
                });
                if clusters > 1 {
                    let start = self.allocate(clusters - 1, || what)?;
                    runs[0].next = start;
                    runs.push(Run {
                        start,
                        len: clusters - 1,
                        next: 0,
                    });
                }
            } else {
                let what = what();
                let start = self.allocate(clusters, || what)?;
                runs.push(Run {
                    start,
                    len: clusters,
                    next: 0,
                });
            }
            if let NodeKind::Dir { first_cluster, .. } = &mut self.nodes[dir].kind {
                *first_cluster = runs[0].start;
            }
            plans.push((dir, slots, runs));
        }
        // Pass 2: directory contents.
        for (dir, slots, runs) in &plans {
            let mut bytes = self.dir_bytes(*dir, slots);
            if runs.is_empty() {
                // FAT16 root: fill the whole fixed region.
                bytes.resize(
                    self.layout.root_dir_sectors as usize * BPB_BYTS_PER_SEC as usize,
                    0,
                );
                let off = self.layout.root_dir_offset();
                self.write(&bytes, off, "writing the root directory")?;
                continue;
            }
            let mut pos = 0usize;
            for r in runs {
                let len = r.len as usize * cb as usize;
                let mut chunk = bytes.get(pos..).unwrap_or(&[]).to_vec();
                chunk.resize(len, 0);
                chunk.truncate(len);
                let off = self.layout.cluster_offset(r.start);
                self.write(&chunk, off, "writing a directory")?;
                pos += len;
            }
        }
        for (_, _, runs) in plans {
            self.runs.extend(runs);
        }
        self.write_fats()?;
        self.write_boot()?;
        // Make the whole region addressable (a standalone image file must
        // reach its last sector) without overwriting anything written.
        if self.high_water < self.size_bytes {
            let from = self
                .high_water
                .max(self.size_bytes.saturating_sub(u64::from(BPB_BYTS_PER_SEC)));
            let len = self.size_bytes - from;
            self.write_zeros(from, len, false)?;
        }
        let dirs = self
            .nodes
            .iter()
            .skip(1)
            .filter(|n| matches!(n.kind, NodeKind::Dir { .. }))
            .count() as u64;
        Ok(FatReport {
            fat_type: self.layout.fat_type,
            cluster_bytes: cb,
            total_clusters: self.layout.cluster_count,
            free_clusters: self.free_clusters(),
            files: self.files,
            dirs,
            file_bytes: self.file_bytes,
        })
    }

    /// Generates both FATs from the run list, chunk by chunk.
    fn write_fats(&mut self) -> Result<(), Error> {
        let mut runs = std::mem::take(&mut self.runs);
        runs.sort_by_key(|r| r.start);
        let fat32 = self.layout.fat_type == FatType::Fat32;
        let bpe: u64 = if fat32 { 4 } else { 2 };
        let eoc: u32 = if fat32 { 0x0FFF_FFFF } else { 0xFFFF };
        let media = u32::from(self.opts.media);
        let fat_bytes = u64::from(self.layout.fat_sectors) * u64::from(BPB_BYTS_PER_SEC);
        let entries = fat_bytes / bpe;
        let per_chunk = (IO_BUF as u64) / bpe;
        let mut chunk: Vec<u8> = Vec::with_capacity(IO_BUF);
        let mut ri = 0usize;
        let mut first = 0u64;
        while first < entries {
            chunk.clear();
            let last = (first + per_chunk).min(entries);
            for c in first..last {
                let v: u32 = match c {
                    0 => (eoc & !0xFF) | media,
                    1 => eoc,
                    _ => {
                        while ri < runs.len()
                            && u64::from(runs[ri].start) + u64::from(runs[ri].len) <= c
                        {
                            ri += 1;
                        }
                        match runs.get(ri) {
                            Some(r) if u64::from(r.start) <= c => {
                                let end = u64::from(r.start) + u64::from(r.len);
                                if c + 1 < end {
                                    (c + 1) as u32
                                } else if r.next != 0 {
                                    r.next
                                } else {
                                    eoc
                                }
                            }
                            _ => 0,
                        }
                    }
                };
                if fat32 {
                    chunk.extend_from_slice(&v.to_le_bytes());
                } else {
                    chunk.extend_from_slice(&(v as u16).to_le_bytes());
                }
            }
            for i in 0..NUM_FATS {
                let off = self.layout.fat_offset(i) + first * bpe;
                self.write(&chunk, off, "writing the FAT")?;
            }
            first = last;
        }
        self.runs = runs;
        Ok(())
    }

    fn write_boot(&mut self) -> Result<(), Error> {
        let l = &self.layout;
        let fat32 = l.fat_type == FatType::Fat32;
        let sec = u64::from(BPB_BYTS_PER_SEC);
        // Zero the reserved area first so nothing old survives in it.
        self.write_zeros(0, u64::from(self.layout.reserved_sectors) * sec, false)?;
        let l = &self.layout;
        let small = !fat32 && l.total_sectors < 0x1_0000;
        let bpb = RawBpb {
            bs_jmp_boot: if fat32 {
                [0xEB, 0x58, 0x90]
            } else {
                [0xEB, 0x3C, 0x90]
            },
            bs_oem_name: self.opts.oem_name,
            bpb_byts_per_sec: U16::new(BPB_BYTS_PER_SEC as u16),
            bpb_sec_per_clus: l.sectors_per_cluster as u8,
            bpb_rsvd_sec_cnt: U16::new(l.reserved_sectors as u16),
            bpb_num_fats: NUM_FATS as u8,
            bpb_root_ent_cnt: U16::new(if fat32 { 0 } else { l.root_entries as u16 }),
            bpb_tot_sec16: U16::new(if small { l.total_sectors as u16 } else { 0 }),
            bpb_media: self.opts.media,
            bpb_fat_sz16: U16::new(if fat32 { 0 } else { l.fat_sectors as u16 }),
            bpb_sec_per_trk: U16::new(l.sectors_per_track),
            bpb_num_heads: U16::new(l.heads),
            bpb_hidd_sec: U32::new(self.opts.hidden_sectors),
            bpb_tot_sec32: U32::new(if small { 0 } else { l.total_sectors }),
        };
        let ext = |fs_type: [u8; 8]| RawExtBoot {
            bs_drv_num: 0x80,
            bs_reserved1: 0,
            bs_boot_sig: BS_BOOT_SIG,
            bs_vol_id: U32::new(self.opts.volume_id),
            bs_vol_lab: self.label.unwrap_or(*b"NO NAME    "),
            bs_fil_sys_type: fs_type,
        };
        if fat32 {
            let mut boot_code = [0u8; 420];
            boot_code[..BOOT_STUB.len()].copy_from_slice(&BOOT_STUB);
            let bs = RawBootSector32 {
                bpb,
                bpb_fat_sz32: U32::new(l.fat_sectors),
                bpb_ext_flags: U16::new(0),
                bpb_fs_ver: U16::new(0),
                bpb_root_clus: U32::new(2),
                bpb_fs_info: U16::new(1),
                bpb_bk_boot_sec: U16::new(6),
                bpb_reserved: [0; 12],
                ext: ext(*b"FAT32   "),
                boot_code,
                signature: [0x55, 0xAA],
            };
            let next_free = if self.next_cluster < self.end_cluster() {
                self.next_cluster
            } else {
                0xFFFF_FFFF
            };
            let info = RawFsInfo {
                fsi_lead_sig: U32::new(FSI_LEAD_SIG),
                fsi_reserved1: [0; 480],
                fsi_struc_sig: U32::new(FSI_STRUC_SIG),
                fsi_free_count: U32::new(self.free_clusters()),
                fsi_nxt_free: U32::new(next_free),
                fsi_reserved2: [0; 12],
                fsi_trail_sig: U32::new(FSI_TRAIL_SIG),
            };
            for base in [0u64, 6] {
                self.write(bs.as_bytes(), base * sec, "writing the boot sector")?;
                self.write(info.as_bytes(), (base + 1) * sec, "writing FSInfo")?;
            }
        } else {
            let mut boot_code = [0u8; 448];
            boot_code[..BOOT_STUB.len()].copy_from_slice(&BOOT_STUB);
            let bs = RawBootSector16 {
                bpb,
                ext: ext(*b"FAT16   "),
                boot_code,
                signature: [0x55, 0xAA],
            };
            self.write(bs.as_bytes(), 0, "writing the boot sector")?;
        }
        Ok(())
    }
}

impl<W: WriteAt> TreeSink for FatWriter<W> {
    type Error = Error;

    fn add(&mut self, entry: &Entry, content: Content<'_>) -> Result<(), Error> {
        let path = &entry.path;
        let unsupported = |kind| {
            Err(Error::Unsupported {
                path: path.to_string(),
                kind,
            })
        };
        match &entry.kind {
            EntryKind::Dir => self.ensure_dir(path, path.components(), true).map(|_| ()),
            EntryKind::File => {
                if path.is_root() {
                    return Err(Error::NotADirectory {
                        path: path.to_string(),
                    });
                }
                self.add_file(entry, content)
            }
            EntryKind::Symlink { .. } => unsupported("symlink"),
            EntryKind::Hardlink { .. } => unsupported("hardlink"),
            EntryKind::CharDev { .. } | EntryKind::BlockDev { .. } => unsupported("device node"),
            EntryKind::Fifo => unsupported("fifo"),
            EntryKind::Socket => unsupported("socket"),
        }
    }
}
