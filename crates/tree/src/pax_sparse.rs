//! GNU sparse files stored in POSIX (PAX) archives, as
//! `tar --format=posix --sparse` writes them (formats 0.0, 0.1 and 1.0).
//!
//! Spec: GNU tar manual, appendix "Sparse Formats", section "PAX Format,
//! Versions 0.0, 0.1 and 1.0"
//! (<https://www.gnu.org/software/tar/manual/html_node/PAX-1.html>).
//!
//! | version | where the map is | records |
//! |---|---|---|
//! | 0.0 | PAX records | `GNU.sparse.size`, `GNU.sparse.numblocks`, then `GNU.sparse.offset` / `GNU.sparse.numbytes` repeated, in order |
//! | 0.1 | PAX records | `GNU.sparse.size`, `GNU.sparse.numblocks`, `GNU.sparse.map` = `off,len,off,len,...` |
//! | 1.0 | start of the member's data | `GNU.sparse.major` = 1, `GNU.sparse.minor` = 0, `GNU.sparse.name`, `GNU.sparse.realsize` |
//!
//! In 1.0 the member's data starts with decimal numbers, each ended by a
//! newline: the number of segments, then each segment's offset and length;
//! zeros pad that map to a 512-byte boundary. In every version the rest of
//! the member's data is the data segments back to back, and everything
//! between them is a hole that reads as zeros. `GNU.sparse.name`, when
//! present, is the real name; the ustar name is `GNUSparseFile.<pid>/<name>`.

use crate::Error;
use std::io::Read;

/// Tar block size: the 1.0 map is padded to it.
const BLOCK: u64 = 512;
/// Longest decimal number of a u64.
const MAX_DIGITS: usize = 20;

/// The GNU sparse records of one member, gathered from its PAX header.
#[derive(Debug, Default)]
pub(crate) struct PaxSparse {
    major: Option<u64>,
    minor: Option<u64>,
    /// `GNU.sparse.name`: the real name.
    pub(crate) name: Option<Vec<u8>>,
    /// `GNU.sparse.size` (0.x) or `GNU.sparse.realsize` (1.0).
    real_size: Option<u64>,
    numblocks: Option<u64>,
    /// Offsets and lengths from 0.0 or 0.1 records, flat.
    inline: Vec<u64>,
    seen: bool,
}

/// One data segment of a sparse file: `(offset, length)` in bytes.
type Segment = (u64, u64);

impl PaxSparse {
    /// Takes one PAX record. Returns `Ok(false)` for keys that are not
    /// GNU sparse ones.
    pub(crate) fn record(&mut self, key: &[u8], val: &[u8], path: &str) -> Result<bool, Error> {
        let Some(k) = key.strip_prefix(b"GNU.sparse.") else {
            return Ok(false);
        };
        self.seen = true;
        let num = || number(val).ok_or_else(|| bad(path, "a GNU.sparse record is not a number"));
        match k {
            b"major" => self.major = Some(num()?),
            b"minor" => self.minor = Some(num()?),
            b"name" => self.name = Some(val.to_vec()),
            b"size" | b"realsize" => self.real_size = Some(num()?),
            b"numblocks" => self.numblocks = Some(num()?),
            b"offset" | b"numbytes" => self.inline.push(num()?),
            b"map" if !val.is_empty() => {
                for part in val.split(|&b| b == b',') {
                    let n = number(part)
                        .ok_or_else(|| bad(path, "GNU.sparse.map holds a non-number"))?;
                    self.inline.push(n);
                }
            }
            _ => {}
        }
        Ok(true)
    }

    /// Whether any GNU sparse record was seen.
    pub(crate) fn is_sparse(&self) -> bool {
        self.seen
    }

    /// The size of the expanded file, in bytes.
    pub(crate) fn real_size(&self, path: &str) -> Result<u64, Error> {
        self.real_size
            .ok_or_else(|| bad(path, "no GNU.sparse.size or GNU.sparse.realsize"))
    }

    /// Reads the map (from the records, or for 1.0 from the start of
    /// `data`, whose length is `stored` bytes) and returns a reader that
    /// yields the expanded file.
    pub(crate) fn expand<R: Read>(
        &self,
        mut data: R,
        stored: u64,
        path: &str,
    ) -> Result<Expand<R>, Error> {
        let real = self.real_size(path)?;
        let (flat, consumed) = match (self.major, self.minor) {
            (Some(1), Some(0) | None) => read_map(&mut data, stored, path)?,
            (None | Some(0), _) => (self.inline.clone(), 0),
            _ => return Err(bad(path, "unknown GNU.sparse.major/minor version")),
        };
        if flat.len() % 2 != 0 {
            return Err(bad(path, "an offset without a length"));
        }
        let segs: Vec<Segment> = flat
            .chunks_exact(2)
            .filter_map(|c| match c {
                [off, len] => Some((*off, *len)),
                _ => None,
            })
            .collect();
        if let Some(n) = self.numblocks {
            if u64::try_from(segs.len()).ok() != Some(n) {
                return Err(bad(path, "GNU.sparse.numblocks differs from the map"));
            }
        }
        let mut end = 0u64;
        let mut data_bytes = 0u64;
        for &(off, len) in &segs {
            let seg_end = off
                .checked_add(len)
                .ok_or_else(|| bad(path, "segment end overflows"))?;
            if off < end || seg_end > real {
                return Err(bad(
                    path,
                    "segments overlap, are out of order or pass the size",
                ));
            }
            end = seg_end;
            data_bytes = data_bytes
                .checked_add(len)
                .ok_or_else(|| bad(path, "segment lengths overflow"))?;
        }
        if stored.checked_sub(consumed) != Some(data_bytes) {
            return Err(bad(
                path,
                "segment lengths differ from the member's data size",
            ));
        }
        Ok(Expand {
            inner: data,
            segs,
            idx: 0,
            pos: 0,
            size: real,
        })
    }
}

fn bad(path: &str, reason: &'static str) -> Error {
    Error::BadSparseMap {
        path: path.to_string(),
        reason,
    }
}

fn number(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > MAX_DIGITS || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Reads the 1.0 map at the start of a member's data (`stored` bytes
/// long). Returns the flat numbers and how many bytes the map took,
/// padding included.
fn read_map<R: Read>(data: &mut R, stored: u64, path: &str) -> Result<(Vec<u64>, u64), Error> {
    let mut consumed = 0u64;
    let mut next = |consumed: &mut u64| -> Result<u64, Error> {
        let mut digits = Vec::with_capacity(MAX_DIGITS);
        loop {
            let mut b = [0u8; 1];
            if *consumed >= stored {
                return Err(bad(path, "the map runs past the member's data"));
            }
            data.read_exact(&mut b).map_err(|source| Error::Io {
                path: path.into(),
                op: "cannot read the GNU sparse map",
                source,
            })?;
            *consumed += 1;
            if b[0] == b'\n' {
                break;
            }
            if digits.len() == MAX_DIGITS {
                return Err(bad(path, "a map number is too long"));
            }
            digits.push(b[0]);
        }
        number(&digits).ok_or_else(|| bad(path, "the map holds a non-number"))
    };
    let count = next(&mut consumed)?;
    // Each segment takes at least four bytes of map ("0\n0\n"): a count
    // the data cannot hold is refused before anything is allocated.
    if count > stored / 4 {
        return Err(bad(path, "more segments than the member's data can hold"));
    }
    let mut flat = Vec::new();
    for _ in 0..count.saturating_mul(2) {
        flat.push(next(&mut consumed)?);
    }
    let padded = consumed.div_ceil(BLOCK).saturating_mul(BLOCK);
    if padded > stored {
        return Err(bad(path, "the map's padding runs past the member's data"));
    }
    let pad = padded - consumed;
    let skipped =
        std::io::copy(&mut data.take(pad), &mut std::io::sink()).map_err(|source| Error::Io {
            path: path.into(),
            op: "cannot read the GNU sparse map",
            source,
        })?;
    if skipped != pad {
        return Err(bad(path, "the map's padding is cut short"));
    }
    Ok((flat, padded))
}

/// The expanded bytes of a sparse file: data segments from the member,
/// zeros in between and after the last one, up to the real size.
pub(crate) struct Expand<R> {
    inner: R,
    segs: Vec<Segment>,
    idx: usize,
    pos: u64,
    size: u64,
}

impl<R: Read> Read for Expand<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        loop {
            if self.pos >= self.size || buf.is_empty() {
                return Ok(0);
            }
            let (n, from_data) = match self.segs.get(self.idx) {
                Some(&(off, len)) if self.pos >= off.saturating_add(len) => {
                    self.idx += 1;
                    continue;
                }
                Some(&(off, len)) if self.pos >= off => (want.min(off + len - self.pos), true),
                Some(&(off, _)) => (want.min(off - self.pos), false),
                None => (want.min(self.size - self.pos), false),
            };
            let n = usize::try_from(n).unwrap_or(buf.len()).min(buf.len());
            let out = buf.get_mut(..n).unwrap_or_default();
            let got = if from_data {
                let got = self.inner.read(out)?;
                if got == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "sparse member data ends early",
                    ));
                }
                got
            } else {
                out.fill(0);
                n
            };
            self.pos += got as u64;
            return Ok(got);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_all(s: &PaxSparse, data: &[u8]) -> Result<Vec<u8>, Error> {
        let mut e = s.expand(data, data.len() as u64, "f")?;
        let mut out = Vec::new();
        e.read_to_end(&mut out).unwrap();
        assert_eq!(out.len() as u64, s.real_size("f")?);
        Ok(out)
    }

    fn with(records: &[(&str, &str)]) -> PaxSparse {
        let mut s = PaxSparse::default();
        for (k, v) in records {
            s.record(k.as_bytes(), v.as_bytes(), "f").unwrap();
        }
        s
    }

    #[test]
    fn version_0_0_and_0_1() {
        let v00 = with(&[
            ("GNU.sparse.size", "10"),
            ("GNU.sparse.numblocks", "2"),
            ("GNU.sparse.offset", "1"),
            ("GNU.sparse.numbytes", "2"),
            ("GNU.sparse.offset", "6"),
            ("GNU.sparse.numbytes", "1"),
        ]);
        assert_eq!(expand_all(&v00, b"abc").unwrap(), b"\0ab\0\0\0c\0\0\0");
        let v01 = with(&[
            ("GNU.sparse.size", "10"),
            ("GNU.sparse.numblocks", "2"),
            ("GNU.sparse.map", "1,2,6,1"),
        ]);
        assert_eq!(expand_all(&v01, b"abc").unwrap(), b"\0ab\0\0\0c\0\0\0");
    }

    #[test]
    fn version_1_0() {
        let s = with(&[
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.name", "big"),
            ("GNU.sparse.realsize", "8"),
        ]);
        let mut data = b"2\n0\n1\n5\n2\n".to_vec();
        data.resize(512, 0);
        data.extend_from_slice(b"xyz");
        assert_eq!(expand_all(&s, &data).unwrap(), b"x\0\0\0\0yz\0");
        assert_eq!(s.name.as_deref(), Some(&b"big"[..]));
    }

    #[test]
    fn bad_maps_are_refused() {
        let base = [("GNU.sparse.size", "10")];
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [u8]);
        let cases: &[Case<'_>] = &[
            // overlapping
            (&[("GNU.sparse.map", "0,4,2,1")], b"abcde"),
            // past the size
            (&[("GNU.sparse.map", "8,4")], b"abcd"),
            // data shorter than the segments
            (&[("GNU.sparse.map", "0,4")], b"ab"),
            // odd count
            (&[("GNU.sparse.map", "0,4,5")], b"abcd"),
            // numblocks disagrees
            (
                &[("GNU.sparse.numblocks", "3"), ("GNU.sparse.map", "0,1")],
                b"a",
            ),
        ];
        for (i, (recs, data)) in cases.iter().enumerate() {
            let mut s = with(&base);
            for (k, v) in recs.iter() {
                s.record(k.as_bytes(), v.as_bytes(), "f").unwrap();
            }
            let r = s.expand(*data, data.len() as u64, "f");
            assert!(
                matches!(r, Err(Error::BadSparseMap { .. })),
                "case {i} accepted"
            );
        }
        // 1.0: a count the data cannot hold, a map past the data.
        let v1 = with(&[
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.realsize", "8"),
        ]);
        for data in [&b"99999999\n"[..], b"1\n0\n", b"1\n0\n1\n"] {
            let r = v1.expand(data, data.len() as u64, "f");
            assert!(matches!(r, Err(Error::BadSparseMap { .. })), "{data:?}");
        }
        let mut s = PaxSparse::default();
        assert!(s.record(b"GNU.sparse.size", b"-1", "f").is_err());
        assert!(!s.record(b"path", b"x", "f").unwrap());
    }
}
