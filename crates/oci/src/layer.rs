//! Streaming one layer blob into the overlay2 `diff/` directory of its
//! cache id, with the whiteout conversion the engine's overlay2 driver
//! performs (moby `daemon/graphdriver/overlay2`, `pkg/archive`
//! `overlayWhiteoutConverter`):
//!
//! | in the layer tar | in `diff/` |
//! |---|---|
//! | `dir/.wh.name` | `dir/name`: character device 0:0, mode 0, owner of the marker |
//! | `dir/.wh..wh..opq` | xattr `trusted.overlay.opaque=y` on `dir` |
//! | other `.wh..wh.*` (aufs metadata) | dropped |
//! | the root entry `./` | ignored: `diff/` itself stays 0755, root-owned |
//!
//! The pipeline, on two threads: a decoder thread reads the blob file ->
//! sha256 of the blob (verified at the end) -> decompressor -> chunks over
//! a bounded channel (a few MiB in flight) to the calling thread: sha256
//! of the tar (the diff ID) -> tee (raw header bytes -> tar-split
//! segments; member data -> CRC-64 for tar-split) -> tar parser ->
//! entries. Decompression and hashing thus overlap with the sink's work
//! (the ext4 writer). A sizing pass can skip both digests
//! ([`Verify::No`]): the pass that writes checks them. Member data goes straight to the sink; directories are held
//! back (path and metadata only) and emitted after the layer's files, so
//! the opaque xattr, which a later member announces, is part of the
//! directory entry (sinks accept parents after children).

use crate::container::Container;
use crate::crc64::Crc64;
use crate::digest::{Hasher, HashingReader};
use crate::input::{BlobLoc, LayerSpec};
use crate::spec::LayerCompression;
use crate::tarsplit::TarSplitWriter;
use crate::{Error, FeedError};
use kiln_tree::tar_source::convert_member;
use kiln_tree::{Content, Entry, EntryKind, Metadata, SourceOptions, TreePath, TreeSink, Xattr};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::rc::Rc;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};

/// What streaming a layer found out.
#[derive(Debug, Clone)]
pub(crate) struct LayerResult {
    /// Bytes of non-directory inodes in `diff/` (hardlinks once,
    /// symlinks by target length), as the engine's `size` file.
    pub size: u64,
    /// Size of the uncompressed tar, bytes.
    pub tar_size: u64,
    /// `tar-split.json.gz`.
    pub tar_split: Vec<u8>,
    /// Number of tree entries emitted (files, dirs, links...).
    pub entries: u64,
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Mode {
    Header,
    Data,
}

struct TeeState {
    mode: Mode,
    segment: Vec<u8>,
    crc: Crc64,
}

struct Tee<R> {
    inner: R,
    st: Rc<RefCell<TeeState>>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let got = buf.get(..n).unwrap_or_default();
        let mut st = self.st.borrow_mut();
        match st.mode {
            Mode::Header => st.segment.extend_from_slice(got),
            Mode::Data => st.crc.update(got),
        }
        Ok(n)
    }
}

enum Decomp<R: BufRead> {
    Plain(R),
    Gzip(Box<flate2::bufread::MultiGzDecoder<R>>),
    Zstd(zstd::stream::read::Decoder<'static, R>),
}

impl<R: BufRead> Read for Decomp<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Decomp::Plain(r) => r.read(buf),
            Decomp::Gzip(r) => r.read(buf),
            Decomp::Zstd(r) => r.read(buf),
        }
    }
}

impl<R: BufRead> Decomp<R> {
    fn raw(&mut self) -> &mut R {
        match self {
            Decomp::Plain(r) => r,
            Decomp::Gzip(r) => r.get_mut(),
            Decomp::Zstd(r) => r.get_mut(),
        }
    }
    fn into_raw(self) -> R {
        match self {
            Decomp::Plain(r) => r,
            Decomp::Gzip(r) => r.into_inner(),
            Decomp::Zstd(r) => r.finish(),
        }
    }
}

/// Whether streaming a layer checks the blob digest and the diff ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verify {
    /// Check both (any pass whose output is kept).
    Yes,
    /// Skip both: a sizing pass, followed by a pass that checks.
    No,
}

/// Size of the decoded chunks handed from the decoder thread.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight between the threads (bounds the memory: ~1 MiB).
const IN_FLIGHT: usize = 4;

type Chunk = std::io::Result<Vec<u8>>;

/// What the decoder thread found at the end of the blob.
struct Decoded<R> {
    /// The blob reader, drained to its end (for the blob digest).
    raw: R,
    /// Length of the decompressed tar.
    tar_size: u64,
}

/// The decoder thread: decompresses `d` to its end (then drains the
/// compressed stream, so trailing bytes are hashed too) and sends the
/// output in chunks. Stops early with
/// `Err(Some(e))` when reading or decompressing failed (a copy of `e` went
/// down the channel too), `Err(None)` when the consumer went away.
fn decode<R: BufRead>(
    mut d: Decomp<R>,
    tx: &SyncSender<Chunk>,
    spare: &Receiver<Vec<u8>>,
) -> Result<Decoded<R>, Option<std::io::Error>> {
    let fail = |e: std::io::Error| {
        let _ = tx.send(Err(std::io::Error::new(e.kind(), e.to_string())));
        Some(e)
    };
    let mut tar_size = 0u64;
    loop {
        let mut buf = spare.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        let mut n = 0;
        // Fill whole chunks: decompressors return short reads.
        while n < CHUNK {
            match d.read(buf.get_mut(n..).unwrap_or_default()) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(fail(e)),
            }
        }
        if n == 0 {
            break;
        }
        buf.truncate(n);
        tar_size += n as u64;
        tx.send(Ok(buf)).map_err(|_| None)?;
    }
    std::io::copy(d.raw(), &mut std::io::sink()).map_err(fail)?;
    Ok(Decoded {
        raw: d.into_raw(),
        tar_size,
    })
}

/// The calling thread's end of the channel, as a reader. Hashes the
/// decoded tar (the diff ID) when verifying: the decoder thread has the
/// heavier half of the work.
struct Chunks {
    rx: Receiver<Chunk>,
    spare: Sender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    diff: Option<Hasher>,
}

impl Read for Chunks {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(rest) = self.cur.get(self.pos..).filter(|r| !r.is_empty()) {
                let n = rest.len().min(out.len());
                out.get_mut(..n)
                    .unwrap_or_default()
                    .copy_from_slice(rest.get(..n).unwrap_or_default());
                self.pos += n;
                return Ok(n);
            }
            if out.is_empty() {
                return Ok(0);
            }
            // Hand the used buffer back for reuse (the thread may be done).
            let _ = self.spare.send(std::mem::take(&mut self.cur));
            self.pos = 0;
            match self.rx.recv() {
                Ok(Ok(b)) => {
                    if let Some(h) = &mut self.diff {
                        h.update(&b);
                    }
                    self.cur = b;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
    }
}

const WH: &[u8] = b".wh.";
const WH_META: &[u8] = b".wh..wh.";
const WH_OPQ: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";

fn is_header_only(t: tar::EntryType) -> bool {
    use tar::EntryType as T;
    matches!(
        t,
        T::Link | T::Symlink | T::Char | T::Block | T::Directory | T::Fifo
    )
}

/// A layer blob read through its digest, buffered for sniffing.
type BlobReader = BufReader<HashingReader<Box<dyn Read + Send>>>;

/// The layer blob's bytes behind a hashing reader (for the blob digest)
/// and the decompressor its media type or magic names. `at` is the
/// (input, blob label) pair errors name.
fn open_decoder(
    raw: Box<dyn Read + Send>,
    compression: LayerCompression,
    verify: Verify,
    lio: &dyn Fn(std::io::Error) -> Error,
    at: (&Path, &str),
) -> Result<Decomp<BlobReader>, Error> {
    let hashing = match verify {
        Verify::Yes => HashingReader::new(raw),
        Verify::No => HashingReader::unhashed(raw),
    };
    let mut buffered = BufReader::with_capacity(256 * 1024, hashing);
    let comp = match compression {
        LayerCompression::Sniff => {
            let head = buffered.fill_buf().map_err(lio)?;
            match kiln_tree::tar_source::Compression::sniff(head) {
                kiln_tree::tar_source::Compression::None => LayerCompression::None,
                kiln_tree::tar_source::Compression::Gzip => LayerCompression::Gzip,
                kiln_tree::tar_source::Compression::Zstd => LayerCompression::Zstd,
                kiln_tree::tar_source::Compression::Xz => {
                    return Err(Error::BadLayer {
                        input: at.0.to_path_buf(),
                        blob: at.1.to_string(),
                        reason: "xz-compressed layers are not an OCI layer type".into(),
                    })
                }
            }
        }
        other => other,
    };
    Ok(match comp {
        LayerCompression::Gzip => {
            Decomp::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(buffered)))
        }
        LayerCompression::Zstd => {
            Decomp::Zstd(zstd::stream::read::Decoder::with_buffer(buffered).map_err(lio)?)
        }
        LayerCompression::None | LayerCompression::Sniff => Decomp::Plain(buffered),
    })
}

/// Streams `layer` (read from `c`) into `sink`, every path below
/// `diff_root`. Verifies the blob digest and the diff ID unless `verify`
/// is [`Verify::No`].
pub(crate) fn stream_layer<S: TreeSink>(
    c: &Container,
    layer: &LayerSpec,
    diff_root: &TreePath,
    default_meta: &Metadata,
    sink: &mut S,
    verify: Verify,
) -> Result<LayerResult, FeedError<S::Error>> {
    let input = c.path().to_path_buf();
    let label = layer.blob.label();
    let rel = match &layer.blob {
        BlobLoc::Oci { digest, .. } => format!("blobs/sha256/{}", digest.hex()),
        BlobLoc::Member(m) => m.clone(),
    };
    let (raw, _len) = c.open_file(&rel, &label)?;
    let lio = |source: std::io::Error| Error::LayerIo {
        input: input.clone(),
        blob: label.clone(),
        source,
    };
    let decomp = open_decoder(raw, layer.compression, verify, &lio, (&input, &label))?;
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel(IN_FLIGHT);
        let (spare_tx, spare_rx) = channel();
        let work = move || decode(decomp, &tx, &spare_rx);
        let decoder = match std::thread::Builder::new()
            .name("layer-decode".into())
            .spawn_scoped(scope, work)
        {
            Ok(h) => h,
            Err(source) => {
                return Err(Error::LayerIo {
                    input: input.clone(),
                    blob: label.clone(),
                    source,
                }
                .into())
            }
        };
        let chunks = Chunks {
            rx,
            spare: spare_tx,
            cur: Vec::new(),
            pos: 0,
            diff: (verify == Verify::Yes).then(Hasher::default),
        };
        let res = consume(chunks, diff_root, default_meta, sink, &input, &label);
        // On an early return the consumer's end is dropped by now, so the
        // decoder stops at its next send.
        let decoded = decoder.join().unwrap_or_else(|_| {
            Err(Some(std::io::Error::other(
                "the layer decoder thread panicked",
            )))
        });
        let (res, decoded) = match (res, decoded) {
            // A blob that fails to decompress is the cause, even when the
            // error reached the sink first (it reads member data).
            (_, Err(Some(source))) => {
                return Err(Error::LayerIo {
                    input,
                    blob: label,
                    source,
                }
                .into())
            }
            (Err(e), _) => return Err(e),
            (Ok(_), Err(None)) => {
                return Err(Error::LayerIo {
                    input,
                    blob: label,
                    source: std::io::Error::other("the layer decoder stopped early"),
                }
                .into())
            }
            (Ok(r), Ok(d)) => (r, d),
        };
        let (
            (res, diff),
            Decoded {
                raw: hashing,
                tar_size,
            },
        ) = (res, decoded);
        if verify == Verify::Yes {
            if let BlobLoc::Oci { digest, size } = &layer.blob {
                hashing.into_inner().verify(&input, digest, Some(*size))?;
            }
            let (diff_id, _) = diff.unwrap_or_default().finish();
            if diff_id != layer.diff_id {
                return Err(Error::DiffIdMismatch {
                    input,
                    blob: label,
                    expected: layer.diff_id.to_string(),
                    actual: diff_id.to_string(),
                }
                .into());
            }
        }
        Ok(LayerResult { tar_size, ..res })
    })
}

/// The calling thread's part of [`stream_layer`]: parses the decoded tar
/// from `chunks` to its end and feeds the entries to `sink`.
fn consume<S: TreeSink>(
    chunks: Chunks,
    diff_root: &TreePath,
    default_meta: &Metadata,
    sink: &mut S,
    input: &std::path::Path,
    label: &str,
) -> Result<(LayerResult, Option<Hasher>), FeedError<S::Error>> {
    let st = Rc::new(RefCell::new(TeeState {
        mode: Mode::Header,
        segment: Vec::new(),
        crc: Crc64::default(),
    }));
    let tee = Tee {
        inner: chunks,
        st: Rc::clone(&st),
    };
    let mut c = Consume {
        diff_root,
        default_meta,
        sink,
        input: input.to_path_buf(),
        label: label.to_string(),
        st,
        dirs: BTreeMap::new(),
        opaque: BTreeMap::new(),
        seen: HashSet::new(),
        size: 0,
        count: 0,
    };
    let mut ts = TarSplitWriter::new();
    let mut archive = tar::Archive::new(tee);
    {
        let mut members = archive.entries().map_err(|e| c.lio(e))?;
        loop {
            c.st.borrow_mut().mode = Mode::Header;
            let Some(member) = members.next() else { break };
            let mut member = member.map_err(|e| c.lio(e))?;
            c.member(&mut member, &mut ts)?;
        }
    }
    // After the last member, as tar-split (Go's archive/tar) records it:
    // one segment with the end-of-archive marker (the tar parser stopped
    // after its first zero block; Go reads the second one too), then one
    // with everything else up to the end of the stream.
    c.st.borrow_mut().mode = Mode::Header;
    let mut tee = archive.into_inner();
    std::io::copy(&mut (&mut tee).take(512), &mut std::io::sink()).map_err(|e| c.lio(e))?;
    let eof = std::mem::take(&mut c.st.borrow_mut().segment);
    ts.segment(&eof).map_err(|e| c.lio(e))?;
    std::io::copy(&mut tee, &mut std::io::sink()).map_err(|e| c.lio(e))?;
    let tail = std::mem::take(&mut c.st.borrow_mut().segment);
    ts.segment(&tail).map_err(|e| c.lio(e))?;
    // The decoder thread drains the compressed stream itself.
    let diff = tee.inner.diff;
    c.add_dirs()?;
    let tar_split = ts.finish().map_err(|e| c.lio(e))?;
    Ok((
        LayerResult {
            size: c.size,
            tar_size: 0,
            tar_split,
            entries: c.count,
        },
        diff,
    ))
}

/// The state of one layer's walk: where entries go, the directories kept
/// for last, the paths seen, the totals.
struct Consume<'a, S: TreeSink> {
    diff_root: &'a TreePath,
    default_meta: &'a Metadata,
    sink: &'a mut S,
    input: std::path::PathBuf,
    label: String,
    st: Rc<RefCell<TeeState>>,
    dirs: BTreeMap<TreePath, Metadata>,
    opaque: BTreeMap<TreePath, Metadata>,
    seen: HashSet<TreePath>,
    size: u64,
    count: u64,
}

impl<S: TreeSink> Consume<'_, S> {
    fn lio(&self, source: std::io::Error) -> Error {
        Error::LayerIo {
            input: self.input.clone(),
            blob: self.label.clone(),
            source,
        }
    }

    fn bad(&self, reason: String) -> Error {
        Error::BadLayer {
            input: self.input.clone(),
            blob: self.label.clone(),
            reason,
        }
    }

    fn tree_err(&self, source: kiln_tree::Error) -> Error {
        Error::Layer {
            input: self.input.clone(),
            blob: self.label.clone(),
            source,
        }
    }

    /// One tar member: its header segment and data CRC go to tar-split,
    /// its entry (or whiteout, or directory for later) to the sink.
    fn member<R: Read>(
        &mut self,
        member: &mut tar::Entry<'_, R>,
        ts: &mut TarSplitWriter,
    ) -> Result<(), FeedError<S::Error>> {
        let et = member.header().entry_type();
        if et == tar::EntryType::XGlobalHeader {
            // Its data stays in the segment: nothing to unpack.
            std::io::copy(member, &mut std::io::sink()).map_err(|e| self.lio(e))?;
            return Ok(());
        }
        if et == tar::EntryType::GNUSparse {
            return Err(self
                .bad(format!(
                    "GNU sparse member {:?} cannot be re-exported exactly",
                    String::from_utf8_lossy(&member.path_bytes())
                ))
                .into());
        }
        let data_size = member.size();
        if is_header_only(et) && data_size != 0 {
            return Err(self
                .bad(format!(
                    "member {:?} of a header-only type carries {data_size} data bytes",
                    String::from_utf8_lossy(&member.path_bytes())
                ))
                .into());
        }
        let raw_name = member.path_bytes().into_owned();
        let seg = std::mem::take(&mut self.st.borrow_mut().segment);
        ts.segment(&seg).map_err(|e| self.lio(e))?;
        let entry =
            convert_member(member, &SourceOptions::default()).map_err(|e| self.tree_err(e))?;
        let Some(entry) = entry else {
            return Ok(());
        };
        let name = entry.path.file_name().unwrap_or_default().to_vec();
        let mut crc = if name.starts_with(WH) {
            self.whiteout(&entry, &name)?;
            None
        } else {
            self.entry(entry, member, data_size)?
        };
        // Member data also passes through the tar reader when it is
        // skipped (e.g. `.wh.` markers with data): keep it in Data mode
        // so the next segment holds only headers and padding.
        if crc.is_none() && data_size > 0 {
            self.start_data();
            std::io::copy(member, &mut std::io::sink()).map_err(|e| self.lio(e))?;
            crc = Some(self.st.borrow().crc.finish());
        }
        ts.file(&raw_name, data_size, crc)
            .map_err(|e| self.lio(e))?;
        Ok(())
    }

    /// Member data follows: tar-split records its CRC-64, not its bytes.
    fn start_data(&self) {
        let mut s = self.st.borrow_mut();
        s.mode = Mode::Data;
        s.crc = Crc64::default();
    }

    /// A `.wh.` entry: an opaque-directory marker (kept for the
    /// directory pass) or a whiteout, stored as overlayfs's 0:0 device.
    fn whiteout(&mut self, entry: &Entry, name: &[u8]) -> Result<(), FeedError<S::Error>> {
        let parent = entry.path.parent().unwrap_or_default();
        if name == WH_OPQ {
            let mut m = self.default_meta.clone();
            m.mtime = entry.meta.mtime;
            self.opaque.insert(parent, m);
        } else if !name.starts_with(WH_META) {
            let target = name.get(WH.len()..).unwrap_or_default();
            let path = parent.join(target).map_err(|e| self.tree_err(e))?;
            if !self.seen.insert(path.clone()) {
                return Err(self.bad(format!("{path} appears twice")).into());
            }
            let mut meta = entry.meta.clone();
            meta.mode = 0;
            meta.xattrs.clear();
            let e = Entry::new(
                path.prefixed(self.diff_root),
                EntryKind::CharDev { major: 0, minor: 0 },
                meta,
            );
            self.sink.add(&e, Content::None).map_err(FeedError::Sink)?;
            self.count += 1;
        }
        Ok(())
    }

    /// Any other entry: directories are kept for the end, the rest goes
    /// to the sink now (file data streamed). Returns the data's CRC-64.
    fn entry<R: Read>(
        &mut self,
        mut entry: Entry,
        member: &mut tar::Entry<'_, R>,
        data_size: u64,
    ) -> Result<Option<[u8; 8]>, FeedError<S::Error>> {
        match &mut entry.kind {
            // The engine ignores the layer's root entry (`./`): `diff/`
            // keeps the driver's own 0755 root directory.
            EntryKind::Dir if entry.path.is_root() => return Ok(None),
            EntryKind::Dir => {
                self.dirs.insert(entry.path.clone(), entry.meta.clone());
                return Ok(None);
            }
            EntryKind::Hardlink { target } => {
                if !self.seen.contains(target) {
                    return Err(self
                        .tree_err(kiln_tree::Error::DanglingHardlink {
                            path: entry.path.to_string(),
                            target: target.to_string(),
                        })
                        .into());
                }
                *target = target.prefixed(self.diff_root);
            }
            _ => {}
        }
        if !self.seen.insert(entry.path.clone()) {
            return Err(self.bad(format!("{} appears twice", entry.path)).into());
        }
        let e = Entry::new(entry.path.prefixed(self.diff_root), entry.kind, entry.meta);
        let mut crc = None;
        match &e.kind {
            EntryKind::File => {
                self.size = self.size.saturating_add(data_size);
                self.start_data();
                let mut r = member.take(data_size);
                self.sink
                    .add(
                        &e,
                        Content::Stream {
                            size: data_size,
                            reader: &mut r,
                        },
                    )
                    .map_err(FeedError::Sink)?;
                let rest = std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| self.lio(e))?;
                if rest != 0 {
                    tracing::debug!(path = %e.path, rest, "sink left data unread");
                }
                if data_size > 0 {
                    crc = Some(self.st.borrow().crc.finish());
                }
            }
            EntryKind::Symlink { target } => {
                self.size = self.size.saturating_add(target.len() as u64);
                self.sink.add(&e, Content::None).map_err(FeedError::Sink)?;
            }
            _ => self.sink.add(&e, Content::None).map_err(FeedError::Sink)?,
        }
        self.count += 1;
        Ok(crc)
    }

    /// Directories last, parents first, with the opaque marker merged.
    fn add_dirs(&mut self) -> Result<(), FeedError<S::Error>> {
        let mut dirs = std::mem::take(&mut self.dirs);
        for (path, m) in &self.opaque {
            if !dirs.contains_key(path) {
                dirs.insert(path.clone(), m.clone());
            }
        }
        dirs.entry(TreePath::root())
            .or_insert_with(|| self.default_meta.clone());
        if let Some(clash) = dirs.keys().find(|p| self.seen.contains(*p)) {
            return Err(self
                .bad(format!("{clash} is both a directory and a non-directory"))
                .into());
        }
        for (path, mut meta) in dirs {
            if self.opaque.contains_key(&path) {
                meta.xattrs.retain(|x| x.name != OPAQUE_XATTR);
                meta.xattrs.push(Xattr {
                    name: OPAQUE_XATTR.to_vec(),
                    value: b"y".to_vec(),
                });
                meta.xattrs.sort();
            }
            let e = Entry::new(path.prefixed(self.diff_root), EntryKind::Dir, meta);
            self.sink.add(&e, Content::None).map_err(FeedError::Sink)?;
            self.count += 1;
        }
        Ok(())
    }
}
