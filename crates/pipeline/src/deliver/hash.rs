//! sha256 of delivered files and of the image: whole files, sparse files
//! (holes hashed as zeros, never read), a prefix hashed while the rest is
//! written, and the pieces of a streamed disk.

use super::temps::out_err;
use crate::stream::{Piece, STREAM_END};
use crate::Error;
use kiln_artifact::digest::{Sha256Digest, Sha256Hasher};
use kiln_units::ReadAt;
use kiln_vdisk::DataRegions;
use std::fs::File;
use std::io::Read;
use std::path::Path;

pub(super) fn sha256_of(path: &Path) -> Result<(Sha256Digest, u64), Error> {
    let mut f = File::open(path).map_err(out_err(path, "cannot read back the artifact"))?;
    let mut h = Sha256Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(out_err(path, "cannot read back the artifact"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let len = h.bytes();
    Ok((h.finish(), len))
}

/// sha256 of the sparse image `raw`: its data `extents` read back, the
/// holes between them hashed as zeros; `start` is where to begin and the
/// hasher holding everything before (a [`hash_prefix`]).
pub(super) fn sparse_sha256(
    raw: &(dyn ReadAt + Sync),
    extents: &[(u64, u64)],
    size: u64,
    start: Option<(u64, Sha256Hasher)>,
) -> std::io::Result<Sha256Hasher> {
    let (mut pos, mut h) = start.unwrap_or_default();
    let mut buf = vec![0u8; 1 << 20];
    for &(off, len) in extents {
        let end = (off + len).min(size);
        h.update_zeros(off.saturating_sub(pos));
        let mut at = off.max(pos);
        while at < end {
            let n = usize::try_from((end - at).min(buf.len() as u64)).unwrap_or(buf.len());
            let chunk = buf.get_mut(..n).unwrap_or_default();
            raw.read_exact_at(chunk, at)?;
            h.update(chunk);
            at += n as u64;
        }
        pos = pos.max(end);
    }
    h.update_zeros(size.saturating_sub(pos));
    Ok(h)
}

/// The digest of an image's first bytes, computed on its own thread while
/// the rest is written ([`hash_prefix`]).
pub(crate) type PrefixHash = std::thread::JoinHandle<std::io::Result<Sha256Hasher>>;

/// Starts hashing `[0, end)` of the raw image `file` (holes as zeros) on
/// a thread: that range must be final already; the rest may still be
/// written meanwhile.
pub(crate) fn hash_prefix(file: File, end: u64) -> PrefixHash {
    std::thread::spawn(move || {
        let extents = data_extents(&file, end)?;
        sparse_sha256(&file, &extents, end, None)
    })
}

/// The data regions `(offset, len)` of the sparse file `f` before `end`
/// (SEEK_DATA/SEEK_HOLE), clipped to it.
pub(super) fn data_extents(f: &File, end: u64) -> std::io::Result<Vec<(u64, u64)>> {
    let mut extents = Vec::new();
    let mut from = 0;
    while from < end {
        let Some(e) = f.next_data(from)? else {
            break;
        };
        if e.offset >= end {
            break;
        }
        extents.push((e.offset, e.len.min(end - e.offset)));
        from = e.offset + e.len;
    }
    Ok(extents)
}

/// The sha256 of a disk of `size` bytes arriving on `pieces` (gaps
/// hashed as zeros); `None` if the stream ends without [`STREAM_END`]
/// (cut short: the rest is not hashed for nothing).
pub(super) fn hash_pieces(
    pieces: std::sync::mpsc::Receiver<Piece>,
    size: u64,
) -> Option<Sha256Digest> {
    let mut h = Sha256Hasher::new();
    let mut pos = 0u64;
    for (offset, data) in pieces {
        if offset == STREAM_END {
            h.update_zeros(size.saturating_sub(pos));
            return Some(h.finish());
        }
        h.update_zeros(offset.saturating_sub(pos));
        h.update(&data);
        pos = offset + data.len() as u64;
    }
    None
}
