//! Content digests (`sha256:<64 hex>`) and a reader that verifies one
//! while the bytes stream through.

use crate::Error;
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::Read;
use std::path::Path;

/// A sha256 content digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`; other algorithms are refused.
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix("sha256:")?;
        Self::from_hex(hex)
    }

    /// Parses 64 lowercase hex digits.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 || hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).ok()?;
        Some(Self(out))
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    /// The raw 32 bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 hex digits without the algorithm.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Chain ID of a layer on top of `parent` (OCI image spec, "Layer
    /// ChainID"): `sha256("<parent chain id> <diff id>")`, or the diff ID
    /// itself for a base layer.
    pub fn chain(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
        match parent {
            None => *diff_id,
            Some(p) => Self::of(format!("{p} {diff_id}").as_bytes()),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// A streaming sha256 + byte counter.
#[derive(Clone, Default)]
pub(crate) struct Hasher {
    sha: Sha256,
    len: u64,
}

impl Hasher {
    pub(crate) fn update(&mut self, b: &[u8]) {
        self.sha.update(b);
        self.len = self.len.saturating_add(b.len() as u64);
    }
    pub(crate) fn finish(self) -> (Digest, u64) {
        (Digest(self.sha.finalize().into()), self.len)
    }
}

/// Hashes everything read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    /// `None`: a pass-through that cannot verify (a sizing pass).
    hasher: Option<Hasher>,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Some(Hasher::default()),
        }
    }
    /// The same reader without hashing; [`HashingReader::verify`] refuses it.
    pub(crate) fn unhashed(inner: R) -> Self {
        Self {
            inner,
            hasher: None,
        }
    }
    /// Reads to the end (so trailing bytes are hashed) and checks digest
    /// and size.
    pub(crate) fn verify(
        mut self,
        input: &Path,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<(), Error> {
        std::io::copy(&mut self, &mut std::io::sink()).map_err(|source| Error::Io {
            path: input.to_path_buf(),
            op: "cannot read blob",
            source,
        })?;
        let (actual, len) = self
            .hasher
            .ok_or(Error::InvalidRequest(
                "verifying a blob read without hashing",
            ))?
            .finish();
        if let Some(expected) = size {
            if expected != len {
                return Err(Error::SizeMismatch {
                    input: input.to_path_buf(),
                    digest: digest.to_string(),
                    expected,
                    actual: len,
                });
            }
        }
        if actual != *digest {
            return Err(Error::DigestMismatch {
                input: input.to_path_buf(),
                digest: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(buf.get(..n).unwrap_or_default());
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        let d = Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(&d.to_string()), Some(d));
        assert_eq!(Digest::parse("sha512:00"), None);
        assert_eq!(Digest::parse(&d.to_string().to_uppercase()), None);
        // chain of one layer is its diff id; of two, sha256 of the text.
        assert_eq!(Digest::chain(None, &d), d);
        let c = Digest::chain(Some(&d), &d);
        assert_eq!(c, Digest::of(format!("{d} {d}").as_bytes()));
    }

    #[test]
    fn verify_detects_corruption() {
        let good = Digest::of(b"abc");
        let r = HashingReader::new(&b"abc"[..]);
        r.verify(Path::new("x"), &good, Some(3)).unwrap();
        let r = HashingReader::new(&b"abd"[..]);
        assert!(matches!(
            r.verify(Path::new("x"), &good, Some(3)),
            Err(Error::DigestMismatch { .. })
        ));
        let r = HashingReader::new(&b"abcd"[..]);
        assert!(matches!(
            r.verify(Path::new("x"), &good, Some(3)),
            Err(Error::SizeMismatch { .. })
        ));
    }
}
