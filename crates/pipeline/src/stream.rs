//! Streamed builds: the disk produced in order, straight into sequential
//! outputs (VMDK streamOptimized, the compressed raw image), with no image
//! file at all.
//!
//! The filesystem writers place file data as entries arrive but write
//! their metadata (directories, inode tables, bitmaps, group descriptors,
//! superblocks, FATs, boot sectors) in `finish`, at offsets *before* that
//! data. A sequential output cannot go back, so a streamed build runs the
//! writers twice over the same inputs:
//!
//! 1. A dry run into a [`Recorder`]: the partition table is kept; of each
//!    partition, the data written while entries are added is dropped (only
//!    where it lands is kept, for the block map), and what `finish` writes
//!    is kept. That is the disk's metadata: memory grows with the number
//!    of files and the disk size (one bitmap bit per block), not with the
//!    payload.
//! 2. The real run into a [`Streamer`]: the writers add the same entries
//!    again. Both writers allocate with bump allocators (blocks and
//!    clusters handed out in increasing order), so the data arrives in
//!    disk order; before each write the streamer emits the kept metadata
//!    that lies before it, and the gaps between are zeros. All-zero writes
//!    ahead of the stream (the ext4 writer's "make the target this long"
//!    block) are the zeros the gaps give anyway. A write behind the stream
//!    or across kept metadata is an error, never a silently wrong disk.
//!    When a writer finishes, its metadata is produced again and checked
//!    against the dry run's (sha256 over every write's offset, length and
//!    bytes): an input that changed between the runs, or a writer that is
//!    not deterministic, fails the build.
//!
//! The pieces go to the delivery (`deliver_stream`) on another thread
//! through a bounded channel, so compression and hashing run beside the
//! writers and at most a few pieces are in flight.

use kiln_artifact::digest::{Sha256Digest, Sha256Hasher};
use std::collections::BTreeMap;
use std::io;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

/// One piece of the disk, in order: its offset and bytes (gaps between
/// pieces are zeros), shared with the whole-image hasher.
pub(crate) type Piece = (u64, std::sync::Arc<[u8]>);

/// The offset of the piece that ends a complete stream.
pub(crate) const STREAM_END: u64 = u64::MAX;

/// Which writes a recorder or streamer is seeing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The partition table and boot code (recorder only: kept).
    Table,
    /// File data, written while a partition's entries are added.
    Data,
    /// A partition writer's `finish`: its metadata.
    Finish,
}

/// Granularity of the zero runs an [`Overlay`] does not store.
const ZERO_GRAIN: usize = 64;

/// One stored piece of an [`Overlay`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Run {
    /// Bytes (not all zero).
    Bytes(Vec<u8>),
    /// That many zero bytes, kept as a length: the metadata writers write
    /// mostly-empty blocks (a directory block with a few names, the
    /// reserved GDT blocks), so this keeps the record a fraction of the
    /// bytes written.
    Zeros(u64),
}

impl Run {
    fn len(&self) -> u64 {
        match self {
            Run::Bytes(v) => v.len() as u64,
            Run::Zeros(n) => *n,
        }
    }

    /// Bytes `from..to` of this run.
    fn slice(&self, from: u64, to: u64) -> Run {
        match self {
            Run::Bytes(v) => {
                let (f, t) = (
                    usize::try_from(from).unwrap_or(v.len()),
                    usize::try_from(to).unwrap_or(v.len()),
                );
                Run::Bytes(v.get(f..t).unwrap_or_default().to_vec())
            }
            Run::Zeros(_) => Run::Zeros(to - from),
        }
    }
}

/// Bytes at disk offsets, later writes replacing earlier ones where they
/// overlap; entries never overlap each other. Zero runs (in
/// [`ZERO_GRAIN`] units) are kept as lengths.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    map: BTreeMap<u64, Run>,
}

impl Overlay {
    /// Stores `data` at `offset`, over whatever was there.
    fn insert(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        let mut hit: Vec<u64> = Vec::new();
        if let Some((&s, r)) = self.map.range(..offset).next_back() {
            if s + r.len() > offset {
                hit.push(s);
            }
        }
        hit.extend(self.map.range(offset..end).map(|(&s, _)| s));
        for s in hit {
            let Some(r) = self.map.remove(&s) else {
                continue;
            };
            let e = s + r.len();
            if s < offset {
                self.map.insert(s, r.slice(0, offset - s));
            }
            if e > end {
                self.map.insert(end, r.slice(end - s, e - s));
            }
        }
        // Split into zero and nonzero runs.
        let mut at = 0usize;
        while at < data.len() {
            let zero = |c: &[u8]| c.iter().all(|&b| b == 0);
            let first = zero(&data[at..(at + ZERO_GRAIN).min(data.len())]);
            let mut to = at;
            while to < data.len() {
                let next = (to + ZERO_GRAIN).min(data.len());
                if zero(&data[to..next]) != first {
                    break;
                }
                to = next;
            }
            let run = if first {
                Run::Zeros((to - at) as u64)
            } else {
                Run::Bytes(data[at..to].to_vec())
            };
            self.map.insert(offset + at as u64, run);
            at = to;
        }
    }

    /// Removes and returns the first entry if it starts before `end`.
    fn pop_before(&mut self, end: u64) -> Option<(u64, Run)> {
        let (&s, _) = self.map.first_key_value()?;
        if s < end {
            self.map.pop_first()
        } else {
            None
        }
    }

    /// The first entry's range.
    fn first(&self) -> Option<(u64, u64)> {
        self.map.first_key_value().map(|(&s, r)| (s, s + r.len()))
    }

    /// Bytes held (zero runs not counted).
    pub(crate) fn bytes(&self) -> u64 {
        self.map
            .values()
            .map(|r| match r {
                Run::Bytes(v) => v.len() as u64,
                Run::Zeros(_) => 0,
            })
            .sum()
    }
}

/// Folds one write into a partition's metadata digest.
fn hash_write(h: &mut Sha256Hasher, offset: u64, data: &[u8]) {
    h.update(&offset.to_le_bytes());
    h.update(&(data.len() as u64).to_le_bytes());
    h.update(data);
}

/// The dry run's target ([module docs](self)).
#[derive(Debug)]
pub(crate) struct Recorder {
    phase: Phase,
    kept: Overlay,
    /// Every write's `[start, end)`, merged when contiguous.
    written: Vec<(u64, u64)>,
    hash: Sha256Hasher,
    digests: Vec<Sha256Digest>,
}

/// What the dry run found out about the disk.
#[derive(Debug)]
pub(crate) struct Recorded {
    /// The partition table and every partition's metadata.
    pub(crate) kept: Overlay,
    /// Everything written, as sorted, merged `(offset, len)` extents:
    /// what a raw image file of the same build would have allocated.
    pub(crate) extents: Vec<(u64, u64)>,
    /// Per partition, the digest of its metadata writes.
    digests: Vec<Sha256Digest>,
}

impl Recorder {
    /// Starts with the partition table.
    pub(crate) fn new() -> Self {
        Self {
            phase: Phase::Table,
            kept: Overlay::default(),
            written: Vec::new(),
            hash: Sha256Hasher::new(),
            digests: Vec::new(),
        }
    }

    pub(crate) fn write(&mut self, buf: &[u8], offset: u64) {
        if buf.is_empty() {
            return;
        }
        let end = offset + buf.len() as u64;
        match self.written.last_mut() {
            Some(last) if last.0 <= offset && offset <= last.1 => last.1 = last.1.max(end),
            _ => self.written.push((offset, end)),
        }
        match self.phase {
            Phase::Table => self.kept.insert(offset, buf),
            Phase::Data => {}
            Phase::Finish => {
                self.kept.insert(offset, buf);
                hash_write(&mut self.hash, offset, buf);
            }
        }
    }

    /// A partition's entries are being added.
    pub(crate) fn begin_partition(&mut self) {
        self.phase = Phase::Data;
        self.hash = Sha256Hasher::new();
    }

    /// The partition writer's `finish` runs.
    pub(crate) fn begin_finish(&mut self) {
        self.phase = Phase::Finish;
    }

    /// The partition is complete.
    pub(crate) fn end_partition(&mut self) {
        let h = std::mem::take(&mut self.hash);
        self.digests.push(h.finish());
        self.phase = Phase::Data;
    }

    /// The record of the whole disk.
    pub(crate) fn finish(self) -> Recorded {
        let mut w = self.written;
        w.sort_unstable();
        let mut extents: Vec<(u64, u64)> = Vec::with_capacity(w.len());
        for (s, e) in w {
            match extents.last_mut() {
                Some(last) if s <= last.0 + last.1 => {
                    last.1 = last.1.max(e - last.0);
                }
                _ => extents.push((s, e - s)),
            }
        }
        Recorded {
            kept: self.kept,
            extents,
            digests: self.digests,
        }
    }
}

/// The real run's target ([module docs](self)): emits the disk in order.
#[derive(Debug)]
pub(crate) struct Streamer {
    phase: Phase,
    pending: Overlay,
    cursor: u64,
    hash: Sha256Hasher,
    digests: std::vec::IntoIter<Sha256Digest>,
    partition: usize,
    tx: Option<SyncSender<Piece>>,
}

/// The error of a piece that cannot be streamed.
fn order_err(msg: String) -> io::Error {
    io::Error::other(format!("internal: cannot stream the disk in order: {msg}"))
}

/// The error when the delivery side has stopped (its own error is the one
/// to report).
pub(crate) fn stopped() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the output stream stopped")
}

impl Streamer {
    /// Streams to `tx`, with the dry run's `recorded` metadata.
    pub(crate) fn new(recorded: Recorded, tx: SyncSender<Piece>) -> Self {
        Self {
            phase: Phase::Data,
            pending: recorded.kept,
            cursor: 0,
            hash: Sha256Hasher::new(),
            digests: recorded.digests.into_iter(),
            partition: 0,
            tx: Some(tx),
        }
    }

    fn emit(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset + data.len() as u64;
        let tx = self.tx.as_ref().ok_or_else(stopped)?;
        tx.send((offset, Arc::from(data))).map_err(|_| stopped())?;
        self.cursor = end;
        Ok(())
    }

    /// Emits every kept piece that starts before `end` (zero runs are the
    /// stream's gaps: they only move it on).
    fn drain_before(&mut self, end: u64) -> io::Result<()> {
        while let Some((s, r)) = self.pending.pop_before(end) {
            match r {
                Run::Bytes(v) => self.emit(s, &v)?,
                Run::Zeros(n) => self.cursor = self.cursor.max(s + n),
            }
        }
        Ok(())
    }

    pub(crate) fn write(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.phase == Phase::Finish {
            hash_write(&mut self.hash, offset, buf);
            return Ok(());
        }
        let zero = buf.iter().all(|&b| b == 0);
        if buf.is_empty() || (zero && offset >= self.cursor) {
            return Ok(());
        }
        if offset < self.cursor {
            return Err(order_err(format!(
                "a write at byte {offset} came after byte {}",
                self.cursor
            )));
        }
        let end = offset + buf.len() as u64;
        if let Some((s, e)) = self.pending.first() {
            if s < end && e > offset {
                return Err(order_err(format!(
                    "file data at bytes {offset}..{end} overlaps metadata at {s}..{e}"
                )));
            }
        }
        self.drain_before(offset)?;
        if let Some((s, e)) = self.pending.first() {
            if s < end {
                return Err(order_err(format!(
                    "file data at bytes {offset}..{end} overlaps metadata at {s}..{e}"
                )));
            }
        }
        self.emit(offset, buf)
    }

    /// A partition's entries are being added again.
    pub(crate) fn begin_partition(&mut self) {
        self.phase = Phase::Data;
        self.hash = Sha256Hasher::new();
    }

    /// The partition writer's `finish` runs: its writes are checked, not
    /// emitted (the dry run's are).
    pub(crate) fn begin_finish(&mut self) {
        self.phase = Phase::Finish;
    }

    /// The partition is complete: its metadata must match the dry run's.
    pub(crate) fn end_partition(&mut self) -> io::Result<()> {
        let h = std::mem::take(&mut self.hash);
        self.phase = Phase::Data;
        self.partition += 1;
        match self.digests.next() {
            Some(d) if d == h.finish() => Ok(()),
            _ => Err(io::Error::other(format!(
                "partition {} came out different from its dry run (did an input change during the build?)",
                self.partition
            ))),
        }
    }

    /// Emits what is left and closes the stream.
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        self.drain_before(STREAM_END)?;
        let tx = self.tx.take().ok_or_else(stopped)?;
        tx.send((STREAM_END, Arc::from(&[][..])))
            .map_err(|_| stopped())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(o: &mut Overlay) -> Vec<(u64, Vec<u8>)> {
        let mut v = Vec::new();
        while let Some((s, r)) = o.pop_before(u64::MAX) {
            match r {
                Run::Bytes(b) => v.push((s, b)),
                Run::Zeros(n) => v.push((s, vec![0; n as usize])),
            }
        }
        v
    }

    #[test]
    fn overlay_later_writes_win() {
        let mut o = Overlay::default();
        o.insert(10, &[1; 10]);
        o.insert(15, &[2; 10]);
        o.insert(0, &[3; 4]);
        o.insert(12, &[4; 2]);
        assert_eq!(o.bytes(), 4 + 15);
        assert_eq!(
            collect(&mut o),
            vec![
                (0, vec![3; 4]),
                (10, vec![1; 2]),
                (12, vec![4; 2]),
                (14, vec![1; 1]),
                (15, vec![2; 10]),
            ]
        );
        let mut o = Overlay::default();
        o.insert(10, &[1; 10]);
        o.insert(5, &[2; 30]);
        assert_eq!(collect(&mut o), vec![(5, vec![2; 30])]);
        // Zero runs are kept as lengths, and still replace what was there.
        let mut o = Overlay::default();
        let mut block = vec![0u8; 4096];
        block[..10].fill(1);
        block[4090..].fill(2);
        o.insert(0, &block);
        assert_eq!(o.bytes(), 128);
        o.insert(4000, &[0; 96]);
        let got = collect(&mut o);
        let mut flat = vec![0u8; 4096];
        for (s, b) in &got {
            flat[*s as usize..*s as usize + b.len()].copy_from_slice(b);
        }
        let mut want = block.clone();
        want[4000..4096].fill(0);
        assert_eq!(flat, want);
        assert!(
            got.iter()
                .all(|(s, b)| b.iter().any(|&x| x != 0) || *s >= 64),
            "zero runs split off: {got:?}"
        );
    }

    /// Replays writes the way a streamed build does and returns the bytes
    /// the stream carries.
    fn stream(recorded: Recorded, writes: &[(u64, Vec<u8>)], size: usize) -> io::Result<Vec<u8>> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1024);
        let mut s = Streamer::new(recorded, tx);
        s.begin_partition();
        for (o, d) in writes {
            s.write(d, *o)?;
        }
        s.finish()?;
        drop(s);
        let mut disk = vec![0u8; size];
        let mut at = 0;
        for (o, d) in rx {
            if o == STREAM_END {
                break;
            }
            let o = o as usize;
            assert!(o >= at, "pieces in order");
            disk[o..o + d.len()].copy_from_slice(&d);
            at = o + d.len();
        }
        Ok(disk)
    }

    #[test]
    fn streams_data_between_recorded_metadata() {
        let mut r = Recorder::new();
        r.write(&[9; 4], 0); // table
        r.begin_partition();
        r.write(&[0; 4], 60); // "extend the target"
        r.write(&[5; 8], 20);
        r.write(&[6; 8], 28);
        r.begin_finish();
        r.write(&[7; 4], 8); // metadata before the data
        r.write(&[8; 4], 40); // and after it
        r.end_partition();
        let rec = r.finish();
        assert_eq!(
            rec.extents,
            vec![(0, 4), (8, 4), (20, 16), (40, 4), (60, 4)]
        );
        let writes = vec![(60, vec![0; 4]), (20, vec![5; 8]), (28, vec![6; 8])];
        let disk = stream(rec, &writes, 64).unwrap();
        let mut want = vec![0u8; 64];
        want[0..4].fill(9);
        want[8..12].fill(7);
        want[20..28].fill(5);
        want[28..36].fill(6);
        want[40..44].fill(8);
        assert_eq!(disk, want);
    }

    #[test]
    fn refuses_out_of_order_and_overlapping_data() {
        let rec = || {
            let mut r = Recorder::new();
            r.begin_partition();
            r.begin_finish();
            r.write(&[7; 4], 8);
            r.end_partition();
            r.finish()
        };
        let e = stream(rec(), &[(20, vec![1; 4]), (12, vec![1; 4])], 32).unwrap_err();
        assert!(e.to_string().contains("came after byte 24"), "{e}");
        let e = stream(rec(), &[(6, vec![1; 4])], 32).unwrap_err();
        assert!(e.to_string().contains("overlaps metadata at 8..12"), "{e}");
    }

    /// A streamer whose dry run recorded one partition with one
    /// metadata write, and the receiving end of its stream.
    fn one_partition() -> (Streamer, std::sync::mpsc::Receiver<Piece>) {
        let mut r = Recorder::new();
        r.begin_partition();
        r.begin_finish();
        r.write(&[7; 4], 8);
        r.end_partition();
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        (Streamer::new(r.finish(), tx), rx)
    }

    #[test]
    fn metadata_must_match_the_dry_run() {
        let (mut s, _rx) = one_partition();
        s.begin_partition();
        s.begin_finish();
        s.write(&[7; 4], 8).unwrap();
        s.end_partition().unwrap();
        s.begin_partition();
        s.begin_finish();
        let e = s.end_partition().unwrap_err();
        assert!(e.to_string().contains("partition 2"), "{e}");

        let (mut s, _rx) = one_partition();
        s.begin_partition();
        s.begin_finish();
        s.write(&[6; 4], 8).unwrap();
        let e = s.end_partition().unwrap_err();
        assert!(e.to_string().contains("different from its dry run"), "{e}");
    }

    #[test]
    fn a_stopped_receiver_is_reported_as_such() {
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        drop(rx);
        let mut s = Streamer::new(Recorder::new().finish(), tx);
        let e = s.write(&[1; 4], 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }
}
