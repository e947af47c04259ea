//! The ranges a flash writes and verifies: a bmap's mapped ranges with
//! their sha256, or 64 MiB segments of an image without a bmap, hashed
//! while they are written.

use kiln_artifact::bmap::Bmap;
use kiln_artifact::digest::{Sha256Digest, Sha256Hasher};

use crate::error::{Error, Result};

/// Segment length used without a bmap, in bytes: the unit a verify failure
/// is reported in.
pub const UNMAPPED_SEGMENT_BYTES: u64 = 64 << 20;
/// Block size used to name segments without a bmap, in bytes.
pub const DEFAULT_BLOCK_BYTES: u64 = 4096;

/// One range of the image, `[start, end)` in bytes, with the blocks that
/// name it in errors and its expected (bmap) and actual (hashed while
/// writing) digests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segment {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) first_block: u64,
    pub(crate) last_block: u64,
    pub(crate) expected: Option<Sha256Digest>,
    pub(crate) actual: Option<Sha256Digest>,
}

/// A message from the writer to the read-back thread.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Note {
    /// `[start, end)` of the current segment is written.
    Chunk { start: u64, end: u64 },
    /// The segment is complete (its expected digest, or the image's own
    /// digest computed while writing, is inside).
    End(Segment),
}

/// The bmap's mapped ranges with their checksums.
pub(crate) fn bmap_segments(bmap: &Bmap) -> Vec<Segment> {
    bmap.ranges()
        .iter()
        .map(|r| {
            let (start, end) = bmap.byte_range(r.blocks);
            Segment {
                start,
                end,
                first_block: r.blocks.first,
                last_block: r.blocks.last,
                expected: Some(r.sha256),
                actual: None,
            }
        })
        .collect()
}

/// An image of `size` bytes cut into [`UNMAPPED_SEGMENT_BYTES`] segments.
pub(crate) fn segments_for_size(size: u64) -> Vec<Segment> {
    let mut v = Vec::new();
    let mut s = 0;
    while s < size {
        let e = (s + UNMAPPED_SEGMENT_BYTES).min(size);
        v.push(plain_segment(s, e));
        s = e;
    }
    v
}

/// A segment without a bmap digest.
pub(crate) fn plain_segment(start: u64, end: u64) -> Segment {
    Segment {
        start,
        end,
        first_block: start / DEFAULT_BLOCK_BYTES,
        last_block: end.saturating_sub(1) / DEFAULT_BLOCK_BYTES,
        expected: None,
        actual: None,
    }
}

/// Checks the digest of the image data written for `seg` against the
/// bmap and keeps it for the read-back.
pub(crate) fn finish_segment(seg: &mut Segment, h: Sha256Hasher) -> Result<()> {
    let actual = h.finish();
    if let Some(expected) = seg.expected {
        if expected != actual {
            return Err(Error::SourceMismatch {
                first_block: seg.first_block,
                last_block: seg.last_block,
                expected,
                actual,
            });
        }
    }
    seg.actual = Some(actual);
    Ok(())
}

/// The error for a segment whose read-back hashes to `actual`.
pub(crate) fn verify_failed(seg: &Segment, expected: Sha256Digest, actual: Sha256Digest) -> Error {
    Error::VerifyFailed {
        first_block: seg.first_block,
        last_block: seg.last_block,
        start_byte: seg.start,
        end_byte: seg.end,
        expected,
        actual,
    }
}
