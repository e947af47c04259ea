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
    let hashing = match verify {
        Verify::Yes => HashingReader::new(raw),
        Verify::No => HashingReader::unhashed(raw),
    };
    let mut buffered = BufReader::with_capacity(256 * 1024, hashing);
    let comp = match layer.compression {
        LayerCompression::Sniff => {
            let head = buffered.fill_buf().map_err(lio)?;
            match kiln_tree::tar_source::Compression::sniff(head) {
                kiln_tree::tar_source::Compression::None => LayerCompression::None,
                kiln_tree::tar_source::Compression::Gzip => LayerCompression::Gzip,
                kiln_tree::tar_source::Compression::Zstd => LayerCompression::Zstd,
                kiln_tree::tar_source::Compression::Xz => {
                    return Err(Error::BadLayer {
                        input,
                        blob: label,
                        reason: "xz-compressed layers are not an OCI layer type".into(),
                    }
                    .into())
                }
            }
        }
        other => other,
    };
    let decomp = match comp {
        LayerCompression::Gzip => {
            Decomp::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(buffered)))
        }
        LayerCompression::Zstd => {
            Decomp::Zstd(zstd::stream::read::Decoder::with_buffer(buffered).map_err(lio)?)
        }
        LayerCompression::None | LayerCompression::Sniff => Decomp::Plain(buffered),
    };
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
    let input = input.to_path_buf();
    let label = label.to_string();
    let lio = |source: std::io::Error| Error::LayerIo {
        input: input.clone(),
        blob: label.clone(),
        source,
    };
    let st = Rc::new(RefCell::new(TeeState {
        mode: Mode::Header,
        segment: Vec::new(),
        crc: Crc64::default(),
    }));
    let tee = Tee {
        inner: chunks,
        st: Rc::clone(&st),
    };
    let mut ts = TarSplitWriter::new();
    let mut archive = tar::Archive::new(tee);
    let mut dirs: BTreeMap<TreePath, Metadata> = BTreeMap::new();
    let mut opaque: BTreeMap<TreePath, Metadata> = BTreeMap::new();
    let mut seen: HashSet<TreePath> = HashSet::new();
    let mut size: u64 = 0;
    let mut count: u64 = 0;
    let bad = |reason: String| Error::BadLayer {
        input: input.clone(),
        blob: label.clone(),
        reason,
    };
    let tree_err = |source: kiln_tree::Error| Error::Layer {
        input: input.clone(),
        blob: label.clone(),
        source,
    };
    {
        let mut members = archive.entries().map_err(lio)?;
        loop {
            st.borrow_mut().mode = Mode::Header;
            let Some(member) = members.next() else { break };
            let mut member = member.map_err(lio)?;
            let et = member.header().entry_type();
            if et == tar::EntryType::XGlobalHeader {
                // Its data stays in the segment: nothing to unpack.
                std::io::copy(&mut member, &mut std::io::sink()).map_err(lio)?;
                continue;
            }
            if et == tar::EntryType::GNUSparse {
                return Err(bad(format!(
                    "GNU sparse member {:?} cannot be re-exported exactly",
                    String::from_utf8_lossy(&member.path_bytes())
                ))
                .into());
            }
            let data_size = member.size();
            if is_header_only(et) && data_size != 0 {
                return Err(bad(format!(
                    "member {:?} of a header-only type carries {data_size} data bytes",
                    String::from_utf8_lossy(&member.path_bytes())
                ))
                .into());
            }
            let raw_name = member.path_bytes().into_owned();
            let seg = std::mem::take(&mut st.borrow_mut().segment);
            ts.segment(&seg).map_err(lio)?;
            let entry = convert_member(&mut member, &SourceOptions::default()).map_err(tree_err)?;
            let Some(mut entry) = entry else {
                continue;
            };
            let name = entry.path.file_name().unwrap_or_default().to_vec();
            let mut crc = None;
            if name.starts_with(WH) {
                let parent = entry.path.parent().unwrap_or_default();
                if name == WH_OPQ {
                    let mut m = default_meta.clone();
                    m.mtime = entry.meta.mtime;
                    opaque.insert(parent, m);
                } else if !name.starts_with(WH_META) {
                    let target = name.get(WH.len()..).unwrap_or_default();
                    let path = parent.join(target).map_err(tree_err)?;
                    if !seen.insert(path.clone()) {
                        return Err(bad(format!("{path} appears twice")).into());
                    }
                    let mut meta = entry.meta.clone();
                    meta.mode = 0;
                    meta.xattrs.clear();
                    let e = Entry::new(
                        path.prefixed(diff_root),
                        EntryKind::CharDev { major: 0, minor: 0 },
                        meta,
                    );
                    sink.add(&e, Content::None).map_err(FeedError::Sink)?;
                    count += 1;
                }
            } else {
                match &mut entry.kind {
                    // The engine ignores the layer's root entry (`./`):
                    // `diff/` keeps the driver's own 0755 root directory.
                    EntryKind::Dir if entry.path.is_root() => {}
                    EntryKind::Dir => {
                        dirs.insert(entry.path.clone(), entry.meta.clone());
                    }
                    kind => {
                        if let EntryKind::Hardlink { target } = kind {
                            if !seen.contains(target) {
                                return Err(tree_err(kiln_tree::Error::DanglingHardlink {
                                    path: entry.path.to_string(),
                                    target: target.to_string(),
                                })
                                .into());
                            }
                            *target = target.prefixed(diff_root);
                        }
                        if !seen.insert(entry.path.clone()) {
                            return Err(bad(format!("{} appears twice", entry.path)).into());
                        }
                        let e = Entry::new(
                            entry.path.prefixed(diff_root),
                            entry.kind.clone(),
                            entry.meta.clone(),
                        );
                        match &e.kind {
                            EntryKind::File => {
                                size = size.saturating_add(data_size);
                                {
                                    let mut s = st.borrow_mut();
                                    s.mode = Mode::Data;
                                    s.crc = Crc64::default();
                                }
                                let mut r = (&mut member).take(data_size);
                                sink.add(
                                    &e,
                                    Content::Stream {
                                        size: data_size,
                                        reader: &mut r,
                                    },
                                )
                                .map_err(FeedError::Sink)?;
                                let rest =
                                    std::io::copy(&mut r, &mut std::io::sink()).map_err(lio)?;
                                if rest != 0 {
                                    tracing::debug!(path = %e.path, rest, "sink left data unread");
                                }
                                if data_size > 0 {
                                    crc = Some(st.borrow().crc.finish());
                                }
                            }
                            EntryKind::Symlink { target } => {
                                size = size.saturating_add(target.len() as u64);
                                sink.add(&e, Content::None).map_err(FeedError::Sink)?;
                            }
                            _ => sink.add(&e, Content::None).map_err(FeedError::Sink)?,
                        }
                        count += 1;
                    }
                }
            }
            // Member data also passes through the tar reader when it is
            // skipped (e.g. `.wh.` markers with data): keep it in Data
            // mode so the next segment holds only headers and padding.
            if crc.is_none() && data_size > 0 {
                let mut s = st.borrow_mut();
                s.mode = Mode::Data;
                s.crc = Crc64::default();
                drop(s);
                std::io::copy(&mut member, &mut std::io::sink()).map_err(lio)?;
                crc = Some(st.borrow().crc.finish());
            }
            ts.file(&raw_name, data_size, crc).map_err(lio)?;
        }
    }
    // After the last member, as tar-split (Go's archive/tar) records it:
    // one segment with the end-of-archive marker (the tar parser stopped
    // after its first zero block; Go reads the second one too), then one
    // with everything else up to the end of the stream.
    st.borrow_mut().mode = Mode::Header;
    let mut tee = archive.into_inner();
    std::io::copy(&mut (&mut tee).take(512), &mut std::io::sink()).map_err(lio)?;
    let eof = std::mem::take(&mut st.borrow_mut().segment);
    ts.segment(&eof).map_err(lio)?;
    std::io::copy(&mut tee, &mut std::io::sink()).map_err(lio)?;
    let tail = std::mem::take(&mut st.borrow_mut().segment);
    ts.segment(&tail).map_err(lio)?;
    // The decoder thread drains the compressed stream itself.
    let diff = tee.inner.diff;
    // Directories last, parents first, with the opaque marker merged.
    for (path, m) in &opaque {
        if !dirs.contains_key(path) {
            dirs.insert(path.clone(), m.clone());
        }
    }
    dirs.entry(TreePath::root())
        .or_insert_with(|| default_meta.clone());
    if let Some(clash) = dirs.keys().find(|p| seen.contains(*p)) {
        return Err(bad(format!("{clash} is both a directory and a non-directory")).into());
    }
    for (path, mut meta) in dirs {
        if opaque.contains_key(&path) {
            meta.xattrs.retain(|x| x.name != OPAQUE_XATTR);
            meta.xattrs.push(Xattr {
                name: OPAQUE_XATTR.to_vec(),
                value: b"y".to_vec(),
            });
            meta.xattrs.sort();
        }
        let e = Entry::new(path.prefixed(diff_root), EntryKind::Dir, meta);
        sink.add(&e, Content::None).map_err(FeedError::Sink)?;
        count += 1;
    }
    let tar_split = ts.finish().map_err(lio)?;
    Ok((
        LayerResult {
            size,
            tar_size: 0,
            tar_split,
            entries: count,
        },
        diff,
    ))
}
