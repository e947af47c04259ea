//! SHA-256 digests computed while data flows: a hashing writer (tee) for
//! artifacts and a hashing reader for inputs.
//!
//! Hashing happens on the bytes as they pass, so no artifact is read twice.
//! sha2 uses the SHA-NI instructions when the CPU has them.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::Error;
pub use crate::sha256::Sha256Digest;

impl FromStr for Sha256Digest {
    type Err = Error;
    /// Parses 64 hex digits (either case).
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.len() != 64 {
            return Err(Error::DigestSyntax);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| Error::DigestSyntax)?;
        Ok(Self(out))
    }
}

/// An incremental SHA-256 with a byte count.
#[derive(Clone, Default)]
pub struct Sha256Hasher {
    hasher: Sha256,
    bytes: u64,
}

impl fmt::Debug for Sha256Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sha256Hasher")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

/// 64 KiB of zeros for hashing holes without allocating.
static ZEROS: [u8; 65536] = [0; 65536];

impl Sha256Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }
    /// Feeds `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.bytes = self.bytes.saturating_add(data.len() as u64);
    }
    /// Feeds `len` zero bytes (a hole of a sparse image).
    pub fn update_zeros(&mut self, mut len: u64) {
        while len > 0 {
            let n = len.min(ZEROS.len() as u64);
            // OK: n <= 65536, fits in usize.
            let chunk = ZEROS.get(..n as usize).unwrap_or(&ZEROS);
            self.update(chunk);
            len -= n;
        }
    }
    /// Bytes fed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    /// The digest of everything fed.
    pub fn finish(self) -> Sha256Digest {
        Sha256Digest(self.hasher.finalize().into())
    }
}

/// A writer that hashes (SHA-256) and counts every byte it passes on to
/// the inner writer: wrap the final file of an artifact (after the
/// compressor) to get the artifact digest, or wrap the compressor to get
/// the digest of the uncompressed data.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256Hasher,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256Hasher::new(),
        }
    }
    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.hasher.bytes()
    }
    /// The inner writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
    /// Returns the inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Sha256Digest, u64) {
        let n = self.hasher.bytes();
        (self.inner, self.hasher.finish(), n)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        // Hash exactly what the inner writer accepted.
        self.hasher.update(buf.get(..n).unwrap_or(buf));
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts every byte read through it (for input
/// digests).
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256Hasher,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256Hasher::new(),
        }
    }
    /// Returns the inner reader, the digest and the byte count of what was
    /// read (not of what was left unread).
    pub fn finish(self) -> (R, Sha256Digest, u64) {
        let n = self.hasher.bytes();
        (self.inner, self.hasher.finish(), n)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or(&[]));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // FIPS 180-2 appendix B.1 and the empty string.
        assert_eq!(
            Sha256Digest::of(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            Sha256Digest::of(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn zeros_and_tee() {
        let mut h = Sha256Hasher::new();
        h.update(b"x");
        h.update_zeros(200_000);
        let mut v = vec![b'x'];
        v.extend(std::iter::repeat_n(0u8, 200_000));
        assert_eq!(h.finish(), Sha256Digest::of(&v));

        let mut w = HashingWriter::new(Vec::new());
        w.write_all(&v).unwrap();
        let (inner, d, n) = w.finish();
        assert_eq!(
            (inner, d, n),
            (v.clone(), Sha256Digest::of(&v), v.len() as u64)
        );

        let mut r = HashingReader::new(v.as_slice());
        let mut sink = Vec::new();
        r.read_to_end(&mut sink).unwrap();
        assert_eq!(r.finish().1, Sha256Digest::of(&v));
    }

    #[test]
    fn parse_digest() {
        let d = Sha256Digest::of(b"abc");
        assert_eq!(
            d.to_hex().to_uppercase().parse::<Sha256Digest>().unwrap(),
            d
        );
        assert!("abc".parse::<Sha256Digest>().is_err());
        assert!("g".repeat(64).parse::<Sha256Digest>().is_err());
        let j = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Sha256Digest>(&j).unwrap(), d);
    }
}
