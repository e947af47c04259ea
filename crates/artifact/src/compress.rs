//! Compression of artifacts (xz, gzip, zstd) and auto-detecting
//! decompression of inputs.
//!
//! # Formats and magic numbers
//!
//! | format | spec | magic (offset 0) |
//! |---|---|---|
//! | xz   | The .xz File Format 1.2.1, §2.1.1.1 | `FD 37 7A 58 5A 00` |
//! | gzip | RFC 1952 §2.3.1 | `1F 8B` |
//! | zstd | RFC 8878 §3.1.1 | `28 B5 2F FD` |
//!
//! # xz container written here (.xz File Format 1.2.1)
//!
//! | structure | offset | size | field |
//! |---|---|---|---|
//! | stream header (§2.1.1) | 0 | 6 | magic `FD 37 7A 58 5A 00` |
//! | | 6 | 2 | stream flags `00 04` (check = CRC64) |
//! | | 8 | 4 | CRC32 of the stream flags |
//! | block header (§3.1) | 0 | 1 | header size / 4 - 1 |
//! | | 1 | 1 | block flags `C0` (one filter, both sizes present) |
//! | | 2 | var | compressed size (VLI), uncompressed size (VLI) |
//! | | | 3 | filter flags: id `21` (LZMA2), props size `01`, dictionary byte |
//! | | | 0-3 | header padding (zeros) to a multiple of 4 |
//! | | end-4 | 4 | CRC32 of the header before this field |
//! | block (§3.2-3.4) | | var | LZMA2 data, padding to 4, CRC64 of the uncompressed block |
//! | index (§4) | 0 | 1 | indicator `00` |
//! | | 1 | var | record count (VLI), then per block: unpadded size, uncompressed size (VLIs) |
//! | | | 0-3 | padding, then CRC32 of the index before it |
//! | stream footer (§2.1.2) | 0 | 4 | CRC32 of the next 6 bytes |
//! | | 4 | 4 | backward size: index size / 4 - 1 (LE) |
//! | | 8 | 2 | stream flags `00 04` |
//! | | 10 | 2 | `59 5A` ("YZ") |
//!
//! # Reproducibility
//!
//! Every encoder here produces the same bytes for the same input and the
//! same [`CompressOptions`], **whatever the thread count**:
//!
//! - **xz**: kiln's own block-parallel writer ([`Encoder`] with
//!   [`Compression::Xz`]). It cuts the input into independent blocks of
//!   `xz_block_size` bytes (0 = kiln's default: the preset's LZMA2
//!   dictionary size, within 1..=2 MiB; 2 MiB at `-6`), compresses each
//!   block with a fresh LZMA2 encoder of the preset, its dictionary cut to
//!   the block size (liblzma's raw encoder), on a worker thread, and writes
//!   the blocks in order with their headers, the index and the stream footer
//!   itself. The bytes depend on preset and block size only, never on the
//!   thread count, and equal `xz -T2 --block-size=B --lzma2=preset=P,dict=D`
//!   (`lzma_stream_encoder_mt`, which also stores both sizes in every block
//!   header) for the same LZMA2 encoder version. Memory: about 12 × the
//!   block size per thread plus `threads + 1` block buffers (about 60 MiB
//!   at `-6` with 2 threads, where `xz -T2 -6` takes 210 MiB); decoding needs
//!   only the block-sized dictionary. An all-zero block (an
//!   image's holes) is compressed once and its bytes reused, so holes cost a
//!   zero check instead of LZMA2 time. liblzma does not promise identical
//!   output across its own versions: pin the crate for reproducible
//!   releases.
//! - **gzip**: flate2 with the zlib-rs backend; header with mtime 0, no file
//!   name, OS byte from flate2's default, so no time or path leaks in.
//! - **zstd**: always the multi-threaded mode (`ZSTD_c_nbWorkers >= 1`)
//!   with the content checksum; zstd's multi-threaded output does not
//!   depend on the worker count (zstd(1), `--single-thread`: only the
//!   single-threaded mode differs).
//!
//! The tests check all three with their CLI validators and pin thread-count
//! independence.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufReader, Chain, Cursor, Read, Write};
use std::str::FromStr;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;

pub use crate::codec::{Compression, GZIP_MAGIC, XZ_MAGIC, ZSTD_MAGIC};
use crate::error::{Error, Result};

impl FromStr for Compression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" | "raw" => Ok(Self::None),
            "xz" => Ok(Self::Xz),
            "gz" | "gzip" => Ok(Self::Gzip),
            "zst" | "zstd" => Ok(Self::Zstd),
            _ => Err(Error::InvalidRequest {
                reason: "compression must be one of none, xz, gz, zst",
            }),
        }
    }
}

/// Parameters of a compressing writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressOptions {
    compression: Compression,
    level: u32,
    threads: u32,
    xz_block_size: u64,
}

impl CompressOptions {
    /// Options for `compression` at its default level, one thread.
    pub fn new(compression: Compression) -> Self {
        Self {
            compression,
            level: compression.default_level(),
            threads: 1,
            xz_block_size: 0,
        }
    }
    /// Sets the level (xz/gzip 0..=9, zstd 1..=22); checked when the
    /// encoder is created.
    pub fn level(mut self, level: u32) -> Self {
        self.level = level;
        self
    }
    /// Sets the number of worker threads (xz and zstd; gzip is single
    /// threaded). Must be at least 1; the output does not depend on it.
    pub fn threads(mut self, threads: u32) -> Self {
        self.threads = threads;
        self
    }
    /// Sets the xz block size in bytes (0 = kiln's default: the preset's
    /// dictionary size within 1..=2 MiB). The LZMA2 dictionary is cut to
    /// the block size. Changes the output bytes; memory grows with it
    /// (about 12 × the block per thread, `threads + 1` blocks buffered).
    pub fn xz_block_size(mut self, bytes: u64) -> Self {
        self.xz_block_size = bytes;
        self
    }
    /// The format.
    pub fn compression(&self) -> Compression {
        self.compression
    }
    /// The level.
    pub fn get_level(&self) -> u32 {
        self.level
    }
    /// The thread count.
    pub fn get_threads(&self) -> u32 {
        self.threads
    }
}

enum EncoderInner<W: Write> {
    Plain(W),
    Xz(XzBlocks<W>),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

/// A compressing writer; call [`Encoder::finish`] to write the trailer.
pub struct Encoder<W: Write> {
    inner: EncoderInner<W>,
    codec: Compression,
}

impl<W: Write> fmt::Debug for Encoder<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl<W: Write> Encoder<W> {
    /// Wraps `out` in an encoder for `opts`.
    ///
    /// # Errors
    /// [`Error::InvalidLevel`], [`Error::InvalidRequest`] for zero threads,
    /// [`Error::Codec`] if the library refuses the parameters.
    pub fn new(out: W, opts: &CompressOptions) -> Result<Self> {
        let codec = opts.compression;
        let (min, max) = codec.level_range();
        if opts.level < min || opts.level > max {
            return Err(Error::InvalidLevel {
                codec,
                level: opts.level,
                min,
                max,
            });
        }
        if opts.threads == 0 {
            return Err(Error::InvalidRequest {
                reason: "compression threads must be at least 1",
            });
        }
        let cerr = |source: io::Error| Error::Codec { codec, source };
        let inner = match codec {
            Compression::None => EncoderInner::Plain(out),
            Compression::Xz => EncoderInner::Xz(XzBlocks::new(out, opts).map_err(cerr)?),
            Compression::Gzip => EncoderInner::Gzip(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .write(out, flate2::Compression::new(opts.level)),
            ),
            Compression::Zstd => {
                let level = i32::try_from(opts.level).map_err(|_| Error::InvalidLevel {
                    codec,
                    level: opts.level,
                    min,
                    max,
                })?;
                let mut enc = zstd::stream::write::Encoder::new(out, level).map_err(cerr)?;
                enc.multithread(opts.threads).map_err(cerr)?;
                enc.include_checksum(true).map_err(cerr)?;
                EncoderInner::Zstd(enc)
            }
        };
        Ok(Self { inner, codec })
    }

    /// Flushes the compressed stream, writes its trailer and returns the
    /// inner writer.
    ///
    /// # Errors
    /// [`Error::Codec`] when the codec or the inner writer fails.
    pub fn finish(self) -> Result<W> {
        let codec = self.codec;
        let cerr = |source: io::Error| Error::Codec { codec, source };
        match self.inner {
            EncoderInner::Plain(mut w) => {
                w.flush().map_err(cerr)?;
                Ok(w)
            }
            EncoderInner::Xz(e) => e.finish().map_err(cerr),
            EncoderInner::Gzip(e) => e.finish().map_err(cerr),
            EncoderInner::Zstd(e) => e.finish().map_err(cerr),
        }
    }

    /// The format being written.
    pub fn compression(&self) -> Compression {
        self.codec
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            EncoderInner::Plain(w) => w.write(buf),
            EncoderInner::Xz(w) => w.write(buf),
            EncoderInner::Gzip(w) => w.write(buf),
            EncoderInner::Zstd(w) => w.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.inner {
            EncoderInner::Plain(w) => w.write_all(buf),
            EncoderInner::Xz(w) => w.write_all(buf),
            EncoderInner::Gzip(w) => w.write_all(buf),
            EncoderInner::Zstd(w) => w.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            EncoderInner::Plain(w) => w.flush(),
            EncoderInner::Xz(w) => w.flush(),
            EncoderInner::Gzip(w) => w.flush(),
            EncoderInner::Zstd(w) => w.flush(),
        }
    }
}

/// Stream flags: check type CRC64 (.xz §2.1.1.2).
const XZ_FLAGS: [u8; 2] = [0x00, 0x04];
/// Size of the CRC64 check field of each block.
const XZ_CHECK_SIZE: u64 = 8;
/// LZMA2 filter id (.xz §5.3.1).
const XZ_FILTER_LZMA2: u64 = 0x21;
/// Largest default block (kiln's memory budget, peak RSS <= 128 MiB for a
/// whole build on two threads: an LZMA2 encoder at `-6` touches about 25
/// MiB with a 2 MiB dictionary, 48 MiB with 4 MiB blocks, which measured
/// 146 MiB for the bench build for ~3 % smaller output). Fixed, not
/// derived from the thread count: the bytes must not depend on the
/// machine.
const XZ_DEFAULT_MAX_BLOCK: u64 = 2 << 20;
/// Largest block this writer cuts (keeps a block's buffers addressable
/// and its sizes far from the VLI limit).
const XZ_MAX_BLOCK: u64 = 1 << 30;

static CRC64: crc::Crc<u64, crc::Table<16>> = crc::Crc::<u64, crc::Table<16>>::new(&crc::CRC_64_XZ);

/// Appends `v` as an xz variable-length integer (.xz §1.2).
fn put_vli(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends the CRC32 of `out[from..]` in little-endian order.
fn put_crc32(out: &mut Vec<u8>, from: usize) {
    let crc = crc32fast::hash(out.get(from..).unwrap_or_default());
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Zero bytes that pad `len` to a multiple of four.
fn pad4(len: u64) -> usize {
    ((4 - (len % 4)) % 4) as usize
}

/// The LZMA2 dictionary-size property byte (.xz §5.3.1): the smallest
/// encoded size `(2 | (b & 1)) << (b / 2 + 11)` that holds `dict`.
fn lzma2_dict_byte(dict: u32) -> u8 {
    for b in 0u8..40 {
        let size = (2u64 | u64::from(b & 1)) << (u32::from(b) / 2 + 11);
        if size >= u64::from(dict) {
            return b;
        }
    }
    40
}

/// Bytes of `v` as a VLI.
fn vli_len(v: u64) -> usize {
    let mut n = 1;
    let mut v = v >> 7;
    while v > 0 {
        n += 1;
        v >>= 7;
    }
    n
}

/// The block header size liblzma's multi-threaded encoder reserves for
/// blocks of `block_size` bytes: sizes as large as the block's worst-case
/// compressed size (`lzma_block_buffer_bound64`: LZMA2 data of at most
/// `block_size` plus 3 bytes per 64 KiB chunk plus the end marker, rounded
/// to 4, plus 92 bytes of headers) and the full block size.
fn xz_reserved_header_size(block_size: u64) -> usize {
    let lzma2 = block_size + block_size.div_ceil(1 << 16) * 3 + 1;
    let bound = 92 + lzma2.next_multiple_of(4);
    let body = 2 + vli_len(bound) + vli_len(block_size) + 3;
    body + pad4(body as u64) + 4
}

fn is_zero(buf: &[u8]) -> bool {
    buf.chunks(4096)
        .all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// One finished block: its bytes (header, data, padding, check) and its
/// index record.
struct XzBlock {
    bytes: Arc<Vec<u8>>,
    unpadded: u64,
    uncompressed: u64,
}

/// Compresses `data` into one complete block (what `lzma_block_encoder`
/// writes in liblzma's multi-threaded encoder), its header padded to
/// `header_size` bytes.
fn xz_encode_block(level: u32, dict: u32, header_size: usize, data: &[u8]) -> io::Result<XzBlock> {
    use liblzma::stream::{Action, Filters, LzmaOptions, Status, Stream};
    let mut opts = LzmaOptions::new_preset(level).map_err(io::Error::from)?;
    opts.dict_size(dict);
    let mut filters = Filters::new();
    filters.lzma2(&opts);
    let mut stream = Stream::new_raw_encoder(&filters).map_err(io::Error::from)?;
    let mut lz = Vec::with_capacity((data.len() / 4).max(1 << 16));
    let mut input = data;
    loop {
        if lz.capacity() - lz.len() < (1 << 16) {
            lz.reserve(lz.capacity().max(1 << 16));
        }
        let before = stream.total_in();
        let status = stream
            .process_vec(input, &mut lz, Action::Finish)
            .map_err(io::Error::from)?;
        let used = usize::try_from(stream.total_in() - before).unwrap_or(usize::MAX);
        input = input.get(used..).unwrap_or_default();
        if status == Status::StreamEnd {
            break;
        }
    }
    let compressed = lz.len() as u64;
    let uncompressed = data.len() as u64;
    let mut out = Vec::with_capacity(lz.len() + 64);
    out.push(0); // header size, set below
    out.push(0xC0); // one filter, compressed and uncompressed size present
    put_vli(&mut out, compressed);
    put_vli(&mut out, uncompressed);
    put_vli(&mut out, XZ_FILTER_LZMA2);
    put_vli(&mut out, 1);
    out.push(lzma2_dict_byte(dict));
    // Padded to the size reserved for the largest block (as liblzma's
    // multi-threaded encoder does), so every block header has one size.
    out.resize(
        header_size.max(out.len() + 4 + pad4(out.len() as u64)) - 4,
        0,
    );
    let header_size = out.len() + 4;
    if let Some(b) = out.first_mut() {
        *b = (header_size / 4 - 1) as u8;
    }
    put_crc32(&mut out, 0);
    out.extend_from_slice(&lz);
    drop(lz);
    out.resize(out.len() + pad4(compressed), 0);
    out.extend_from_slice(&CRC64.checksum(data).to_le_bytes());
    Ok(XzBlock {
        bytes: Arc::new(out),
        unpadded: header_size as u64 + compressed + XZ_CHECK_SIZE,
        uncompressed,
    })
}

enum XzPending {
    Ready(XzBlock),
    Running(Receiver<io::Result<XzBlock>>),
}

/// A job for an xz worker: the block's bytes and where to send the result.
type XzJob = (Vec<u8>, Sender<io::Result<XzBlock>>);

/// Long-lived xz workers. One thread per block would give every block a
/// fresh thread, and glibc a fresh malloc arena to keep each encoder's
/// ~40 MiB of match-finder tables in: resident memory then grows with the
/// image. Workers that live as long as the stream reuse theirs.
struct XzPool {
    jobs: Sender<XzJob>,
}

impl XzPool {
    fn new(threads: usize, level: u32, dict: u32, header: usize) -> io::Result<Self> {
        let (jobs, rx) = std::sync::mpsc::channel::<XzJob>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for _ in 0..threads {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name("kiln-xz".into())
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    let Ok((data, reply)) = job else { return };
                    let _ = reply.send(xz_encode_block(level, dict, header, &data));
                })?;
        }
        Ok(Self { jobs })
    }
}

/// The block-parallel xz writer (see the module docs): blocks of
/// `block_size` bytes, at most `threads` of them compressing at once, written
/// in input order.
struct XzBlocks<W: Write> {
    out: W,
    level: u32,
    dict: u32,
    header_size: usize,
    block_size: usize,
    threads: usize,
    buf: Vec<u8>,
    pending: VecDeque<XzPending>,
    running: usize,
    /// Started with the first block that needs compressing.
    pool: Option<XzPool>,
    /// Index records: (unpadded size, uncompressed size).
    records: Vec<(u64, u64)>,
    /// The encoded all-zero block of `block_size` bytes, once seen.
    zero_block: Option<(Arc<Vec<u8>>, u64)>,
    header_written: bool,
}

impl<W: Write> XzBlocks<W> {
    fn new(out: W, opts: &CompressOptions) -> io::Result<Self> {
        // Validates the preset.
        liblzma::stream::LzmaOptions::new_preset(opts.level).map_err(io::Error::from)?;
        // LzmaOptions has no getter: the preset table of xz(1) (dictionary
        // sizes of -0 .. -9).
        const DICT: [u32; 10] = [
            256 << 10,
            1 << 20,
            2 << 20,
            4 << 20,
            4 << 20,
            8 << 20,
            8 << 20,
            16 << 20,
            32 << 20,
            64 << 20,
        ];
        let dict = DICT
            .get(usize::try_from(opts.level).unwrap_or(usize::MAX))
            .copied()
            .unwrap_or(8 << 20);
        let block = match opts.xz_block_size {
            0 => u64::from(dict).clamp(1 << 20, XZ_DEFAULT_MAX_BLOCK),
            b => b,
        };
        // A block is compressed on its own: a dictionary larger than the
        // block would never be used, but its hash tables would be allocated
        // and cleared.
        let dict = u32::try_from(block).map_or(dict, |b| dict.min(b.max(4096)));
        if block > XZ_MAX_BLOCK {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("xz block size {block} is over the {XZ_MAX_BLOCK}-byte limit"),
            ));
        }
        let block_size = usize::try_from(block).unwrap_or(1 << 20);
        Ok(Self {
            out,
            level: opts.level,
            dict,
            header_size: xz_reserved_header_size(block),
            block_size,
            threads: usize::try_from(opts.threads).unwrap_or(1).max(1),
            buf: Vec::new(),
            pending: VecDeque::new(),
            running: 0,
            pool: None,
            records: Vec::new(),
            zero_block: None,
            header_written: false,
        })
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            let mut h = XZ_MAGIC.to_vec();
            h.extend_from_slice(&XZ_FLAGS);
            put_crc32(&mut h, XZ_MAGIC.len());
            self.out.write_all(&h)?;
            self.header_written = true;
        }
        Ok(())
    }

    /// Writes the oldest pending block (waiting for it if `wait`); returns
    /// whether one was written.
    fn drain_one(&mut self, wait: bool) -> io::Result<bool> {
        let stopped = || io::Error::other("an xz worker thread stopped");
        let block = match self.pending.front() {
            None => return Ok(false),
            Some(XzPending::Ready(_)) => match self.pending.pop_front() {
                Some(XzPending::Ready(b)) => b,
                _ => return Ok(false),
            },
            Some(XzPending::Running(rx)) => {
                let r = if wait {
                    rx.recv().map_err(|_| stopped())?
                } else {
                    match rx.try_recv() {
                        Ok(r) => r,
                        Err(TryRecvError::Empty) => return Ok(false),
                        Err(TryRecvError::Disconnected) => return Err(stopped()),
                    }
                };
                self.pending.pop_front();
                self.running -= 1;
                r?
            }
        };
        self.write_header()?;
        self.out.write_all(&block.bytes)?;
        self.records.push((block.unpadded, block.uncompressed));
        Ok(true)
    }

    /// Hands a full (or the last) block to a worker, or reuses the encoded
    /// zero block.
    fn submit(&mut self, data: Vec<u8>) -> io::Result<()> {
        if data.len() == self.block_size && is_zero(&data) {
            let (bytes, unpadded) = match &self.zero_block {
                Some(z) => z.clone(),
                None => {
                    let b = xz_encode_block(self.level, self.dict, self.header_size, &data)?;
                    self.zero_block = Some((b.bytes.clone(), b.unpadded));
                    (b.bytes, b.unpadded)
                }
            };
            self.pending.push_back(XzPending::Ready(XzBlock {
                bytes,
                unpadded,
                uncompressed: data.len() as u64,
            }));
        } else {
            while self.running >= self.threads {
                self.drain_one(true)?;
            }
            if self.pool.is_none() {
                self.pool = Some(XzPool::new(
                    self.threads,
                    self.level,
                    self.dict,
                    self.header_size,
                )?);
            }
            let (reply, rx) = std::sync::mpsc::channel();
            self.pool
                .as_ref()
                .map(|p| p.jobs.send((data, reply)))
                .transpose()
                .map_err(|_| io::Error::other("the xz workers stopped"))?;
            self.pending.push_back(XzPending::Running(rx));
            self.running += 1;
        }
        while self.drain_one(false)? {}
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() {
            let last = std::mem::take(&mut self.buf);
            self.submit(last)?;
        }
        while self.drain_one(true)? {}
        self.write_header()?;
        let mut index = vec![0u8];
        put_vli(&mut index, self.records.len() as u64);
        for &(unpadded, uncompressed) in &self.records {
            put_vli(&mut index, unpadded);
            put_vli(&mut index, uncompressed);
        }
        index.resize(index.len() + pad4(index.len() as u64), 0);
        put_crc32(&mut index, 0);
        let backward = u32::try_from(index.len() / 4 - 1)
            .map_err(|_| io::Error::other("xz index over 16 GiB"))?;
        let mut footer = Vec::with_capacity(12);
        footer.extend_from_slice(&[0; 4]);
        footer.extend_from_slice(&backward.to_le_bytes());
        footer.extend_from_slice(&XZ_FLAGS);
        let crc = crc32fast::hash(footer.get(4..).unwrap_or_default());
        footer.splice(0..4, crc.to_le_bytes());
        footer.extend_from_slice(b"YZ");
        self.out.write_all(&index)?;
        self.out.write_all(&footer)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for XzBlocks<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.capacity() == 0 {
            self.buf = Vec::with_capacity(self.block_size);
        }
        let room = self.block_size - self.buf.len();
        let n = room.min(data.len());
        self.buf
            .extend_from_slice(data.get(..n).unwrap_or_default());
        if self.buf.len() == self.block_size {
            let full = std::mem::take(&mut self.buf);
            self.submit(full)?;
        }
        Ok(n)
    }
    /// Writes the blocks finished so far; a partial block stays buffered
    /// (cutting it would make the bytes depend on flush calls).
    fn flush(&mut self) -> io::Result<()> {
        while self.drain_one(false)? {}
        self.out.flush()
    }
}

type Peeked<R> = Chain<Cursor<Vec<u8>>, R>;

enum DecoderInner<R: Read> {
    Plain(Peeked<R>),
    Xz(liblzma::read::XzDecoder<Peeked<R>>),
    Gzip(flate2::read::MultiGzDecoder<Peeked<R>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<Peeked<R>>>),
}

/// A reader that decompresses its input according to the magic number it
/// starts with (xz, gzip, zstd; anything else passes through unchanged).
/// Concatenated streams/members/frames are all decoded.
pub struct Decoder<R: Read> {
    inner: DecoderInner<R>,
    codec: Compression,
}

impl<R: Read> fmt::Debug for Decoder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl<R: Read> Decoder<R> {
    /// Reads up to 6 bytes of `input` to detect the format, then decodes.
    ///
    /// # Errors
    /// [`Error::Io`] if the first bytes cannot be read, [`Error::Codec`] if
    /// the decoder cannot be set up.
    pub fn new(mut input: R) -> Result<Self> {
        let mut head = vec![0u8; XZ_MAGIC.len()];
        let mut got = 0;
        while got < head.len() {
            let Some(rest) = head.get_mut(got..) else {
                break;
            };
            match input.read(rest) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::Io {
                        op: "reading the magic number",
                        offset: 0,
                        source: e,
                    })
                }
            }
        }
        head.truncate(got);
        let codec = Compression::detect(&head);
        let stream = Cursor::new(head).chain(input);
        let inner = match codec {
            Compression::None => DecoderInner::Plain(stream),
            Compression::Xz => {
                DecoderInner::Xz(liblzma::read::XzDecoder::new_multi_decoder(stream))
            }
            Compression::Gzip => DecoderInner::Gzip(flate2::read::MultiGzDecoder::new(stream)),
            Compression::Zstd => DecoderInner::Zstd(
                zstd::stream::read::Decoder::new(stream)
                    .map_err(|source| Error::Codec { codec, source })?,
            ),
        };
        Ok(Self { inner, codec })
    }

    /// The detected format.
    pub fn compression(&self) -> Compression {
        self.codec
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            DecoderInner::Plain(r) => r.read(buf),
            DecoderInner::Xz(r) => r.read(buf),
            DecoderInner::Gzip(r) => r.read(buf),
            DecoderInner::Zstd(r) => r.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0u32..200_000 {
            v.extend_from_slice(format!("line {i} {}\n", i % 97).as_bytes());
        }
        v.extend(std::iter::repeat_n(0u8, 300_000));
        v
    }

    fn compress(opts: &CompressOptions, data: &[u8]) -> Vec<u8> {
        let mut e = Encoder::new(Vec::new(), opts).unwrap();
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn round_trip_and_detection() {
        let data = sample();
        for c in [
            Compression::None,
            Compression::Xz,
            Compression::Gzip,
            Compression::Zstd,
        ] {
            let opts = CompressOptions::new(c)
                .level(c.level_range().0.max(1).min(c.level_range().1))
                .threads(2);
            let packed = compress(&opts, &data);
            let mut d = Decoder::new(packed.as_slice()).unwrap();
            assert_eq!(d.compression(), c);
            let mut out = Vec::new();
            d.read_to_end(&mut out).unwrap();
            assert_eq!(out, data, "{c}");
        }
    }

    #[test]
    fn thread_count_does_not_change_bytes() {
        let data = sample();
        for c in [Compression::Xz, Compression::Zstd] {
            let small = CompressOptions::new(c).level(1).xz_block_size(1 << 20);
            let a = compress(&small.threads(1), &data);
            let b = compress(&small.threads(3), &data);
            assert_eq!(a, b, "{c}");
        }
    }

    #[test]
    fn levels_are_checked() {
        for (c, bad) in [
            (Compression::Xz, 10),
            (Compression::Gzip, 10),
            (Compression::Zstd, 0),
            (Compression::Zstd, 23),
        ] {
            let r = Encoder::new(Vec::new(), &CompressOptions::new(c).level(bad));
            assert!(matches!(r, Err(Error::InvalidLevel { .. })), "{c} {bad}");
        }
        let r = Encoder::new(
            Vec::new(),
            &CompressOptions::new(Compression::Xz).threads(0),
        );
        assert!(matches!(r, Err(Error::InvalidRequest { .. })));
    }

    #[test]
    fn detect_table() {
        assert_eq!(Compression::detect(&XZ_MAGIC), Compression::Xz);
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(Compression::detect(&ZSTD_MAGIC), Compression::Zstd);
        assert_eq!(Compression::detect(b"\xfd7zX"), Compression::None);
        assert_eq!(Compression::detect(b""), Compression::None);
        let mut d = Decoder::new(&b"ab"[..]).unwrap();
        let mut s = String::new();
        d.read_to_string(&mut s).unwrap();
        assert_eq!(s, "ab");
    }
}
