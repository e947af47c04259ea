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
//! # Reproducibility
//!
//! Every encoder here produces the same bytes for the same input and the
//! same [`CompressOptions`], **whatever the thread count**:
//!
//! - **xz** always uses liblzma's multi-threaded encoder
//!   (`lzma_stream_encoder_mt`), even with one thread. It cuts the input into
//!   independent blocks of `xz_block_size` bytes (0 = liblzma's default,
//!   3 × the LZMA2 dictionary size or 1 MiB, whichever is more) and
//!   compresses each block on its own, so the output depends on preset,
//!   check (CRC64) and block size, not on the number of threads (xz(1),
//!   `--block-size`/`--threads`). It equals `xz -T2` (or `-T+1`) at the same
//!   preset for the same liblzma encoder version; the single-threaded
//!   encoder (`xz -T1`) would produce different bytes and is never used.
//!   liblzma does not promise identical output across its own versions, so
//!   pin the crate version for reproducible releases.
//! - **gzip**: flate2 with the zlib-rs backend; header with mtime 0, no file
//!   name, OS byte from flate2's default, so no time or path leaks in.
//! - **zstd**: always the multi-threaded mode (`ZSTD_c_nbWorkers >= 1`)
//!   with the content checksum; zstd's multi-threaded output does not
//!   depend on the worker count (zstd(1), `--single-thread`: only the
//!   single-threaded mode differs).
//!
//! The tests check all three with their CLI validators and pin thread-count
//! independence.

use std::fmt;
use std::io::{self, BufReader, Chain, Cursor, Read, Write};
use std::str::FromStr;

use crate::error::{Error, Result};

/// A compression format of an artifact or input (serialised as `none`,
/// `xz`, `gzip`, `zstd`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Not compressed.
    None,
    /// xz (LZMA2), multi-threaded.
    Xz,
    /// gzip (deflate).
    Gzip,
    /// Zstandard, multi-threaded.
    Zstd,
}

/// xz stream header magic (.xz format §2.1.1.1).
pub const XZ_MAGIC: [u8; 6] = [0xFD, b'7', b'z', b'X', b'Z', 0x00];
/// gzip member header magic (RFC 1952 §2.3.1, ID1 ID2).
pub const GZIP_MAGIC: [u8; 2] = [0x1F, 0x8B];
/// Zstandard frame magic (RFC 8878 §3.1.1, 0xFD2FB528 little-endian).
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

impl Compression {
    /// The usual file-name extension without the dot (`None` for plain).
    pub fn extension(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Xz => Some("xz"),
            Self::Gzip => Some("gz"),
            Self::Zstd => Some("zst"),
        }
    }

    /// Detects the format from the first bytes of a stream (6 are enough);
    /// anything unrecognised is [`Compression::None`].
    pub fn detect(head: &[u8]) -> Self {
        if head.starts_with(&XZ_MAGIC) {
            Self::Xz
        } else if head.starts_with(&ZSTD_MAGIC) {
            Self::Zstd
        } else if head.starts_with(&GZIP_MAGIC) {
            Self::Gzip
        } else {
            Self::None
        }
    }

    /// Default level: xz 6, gzip 6, zstd 3 (the CLIs' defaults).
    pub fn default_level(self) -> u32 {
        match self {
            Self::None => 0,
            Self::Xz | Self::Gzip => 6,
            Self::Zstd => 3,
        }
    }

    /// Allowed level range (inclusive).
    pub fn level_range(self) -> (u32, u32) {
        match self {
            Self::None => (0, 0),
            Self::Xz | Self::Gzip => (0, 9),
            Self::Zstd => (1, 22),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Xz => "xz",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        })
    }
}

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
    /// Sets the xz block size in bytes (0 = liblzma default). Changes the
    /// output bytes.
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
    Xz(liblzma::write::XzEncoder<W>),
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
            Compression::Xz => {
                let stream = liblzma::stream::MtStreamBuilder::new()
                    .threads(opts.threads)
                    .preset(opts.level)
                    .block_size(opts.xz_block_size)
                    .check(liblzma::stream::Check::Crc64)
                    .encoder()
                    .map_err(|e| cerr(e.into()))?;
                EncoderInner::Xz(liblzma::write::XzEncoder::new_stream(out, stream))
            }
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
