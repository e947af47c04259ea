//! Fixed-offset field access for on-disk structures.
//!
//! Every structure is first copied into a fixed-size array, so the offsets
//! used here are compile-time constants inside that array; a field that does
//! not fit reads as zero instead of panicking (it never happens for the
//! constant offsets used, but keeps the parsers panic-free by construction).

// Each format uses a subset (qcow2/VHD big-endian, VMDK little-endian) and
// formats are optional features.
#![allow(dead_code)]

pub(crate) fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(s) = at.checked_add(N).and_then(|end| b.get(at..end)) {
        out.copy_from_slice(s);
    }
    out
}

pub(crate) fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(arr(b, at))
}
pub(crate) fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(arr(b, at))
}
pub(crate) fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(arr(b, at))
}
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(arr(b, at))
}
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(arr(b, at))
}
pub(crate) fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(arr(b, at))
}

/// Writes `v` at `at`; the caller's buffer is a fixed-size structure.
pub(crate) fn put(b: &mut [u8], at: usize, v: &[u8]) {
    if let Some(s) = at.checked_add(v.len()).and_then(|end| b.get_mut(at..end)) {
        s.copy_from_slice(v);
    }
}

/// Whether every byte is zero (64 bytes at a time, OR-folded so the
/// compiler vectorises it; this is the hot path of every writer).
pub(crate) fn is_zero(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(64);
    for c in &mut chunks {
        if c.iter().fold(0u8, |a, &x| a | x) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&x| x == 0)
}

/// Positional access `[offset, offset + len)` must lie within a virtual
/// disk of `size` bytes (the positional writers' bound check).
pub(crate) fn check_in_disk(offset: u64, len: usize, size: u64) -> std::io::Result<()> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("bytes {offset}..+{len} are past the end of the {size}-byte virtual disk"),
        )),
    }
}

/// `set_len` on a positional writer: its virtual size is fixed at
/// creation, so only that length is accepted.
pub(crate) fn keep_size(len: u64, size: u64) -> std::io::Result<()> {
    if len == size {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "a virtual disk being written keeps its virtual size",
        ))
    }
}

/// One piece of a positional request: a run within one allocation unit
/// (qcow2 cluster, VHD block).
pub(crate) struct Piece {
    /// Index of the unit in the virtual disk.
    pub idx: u64,
    /// Offset within the unit.
    pub within: u64,
    /// Offset within the caller's buffer.
    pub at: usize,
    pub len: usize,
}

/// Splits `[offset, offset + len)` at multiples of `unit` bytes.
pub(crate) fn pieces(offset: u64, len: usize, unit: u64) -> impl Iterator<Item = Piece> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at >= len || unit == 0 {
            return None;
        }
        let pos = offset + at as u64;
        let within = pos % unit;
        let n = usize::try_from((unit - within).min((len - at) as u64)).unwrap_or(0);
        let p = Piece {
            idx: pos / unit,
            within,
            at,
            len: n,
        };
        at += n;
        Some(p)
    })
}
