//! The working disk of a base-image build: the vendor's image, read-only,
//! with kiln's edits on top ([`Cow`]), so a base build needs no writable
//! raw copy of the base and can deliver a VMDK, a qcow2 or a compressed
//! image without ever writing a raw image file.
//!
//! The edits (the partition table resized, the backup GPT moved, the boot
//! partition's FAT rebuilt) go to a sparse scratch file at their disk
//! offsets; memory holds only the list of edited byte ranges. Reads take
//! each byte from the edits where edited, else from the base up to where
//! the disk was last cut ([`Workspace::set_len`] to a shorter length),
//! else zeros, as a sparse file that was truncated and grown would.

use kiln_units::{ReadAt, WriteAt};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// A disk that is read and edited through a shared reference, as a
/// `&File` is: the boot-partition editor reads the old FAT while it
/// writes the new one beyond the disk's end.
pub(crate) trait Workspace {
    /// Fills `buf` from `offset`; bytes past the end read as zeros.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes `buf` at `offset`, growing the disk when it ends beyond.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// The disk's length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Cuts or grows the disk; what a cut removes reads as zeros after a
    /// later growth.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

impl Workspace for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let len = self.metadata()?.len();
        let inside = usize::try_from(len.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        FileExt::read_exact_at(self, &mut buf[..inside], offset)?;
        buf[inside..].fill(0);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

/// A [`Workspace`] as a positional reader and writer.
#[derive(Debug)]
pub(crate) struct At<'a, D: ?Sized>(pub(crate) &'a D);

impl<D: Workspace + ?Sized> ReadAt for At<'_, D> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.0.len().unwrap_or(0)) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read of {} bytes at {offset} past the disk's end",
                    buf.len()
                ),
            ));
        }
        self.0.read_at(buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        self.0.len()
    }
}

impl<D: Workspace + ?Sized> WriteAt for At<'_, D> {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_at(buf, offset)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

/// The base image with kiln's edits on top ([module docs](self)).
#[derive(Debug)]
pub(crate) struct Cow {
    base: File,
    /// Bytes of `base` that are still visible (the base's length, or
    /// less once the disk was cut).
    visible: Cell<u64>,
    len: Cell<u64>,
    edits: File,
    /// Edited ranges, `start -> end`, disjoint and not touching.
    edited: RefCell<BTreeMap<u64, u64>>,
}

impl Cow {
    /// The disk `base` (read-only) with edits kept in `edits` (an empty
    /// scratch file).
    pub(crate) fn new(base: File, edits: File) -> io::Result<Self> {
        let len = base.metadata()?.len();
        edits.set_len(0)?;
        Ok(Self {
            base,
            visible: Cell::new(len),
            len: Cell::new(len),
            edits,
            edited: RefCell::new(BTreeMap::new()),
        })
    }

    /// The unedited base image.
    pub(crate) fn base(&self) -> &File {
        &self.base
    }

    /// The edited ranges within `[from, to)`, clipped to it, in order.
    pub(crate) fn edited_in(&self, from: u64, to: u64) -> Vec<(u64, u64)> {
        let map = self.edited.borrow();
        let before = map
            .range(..from)
            .next_back()
            .filter(|&(_, &e)| e > from)
            .map(|(&s, &e)| (s, e));
        before
            .into_iter()
            .chain(map.range(from..to).map(|(&s, &e)| (s, e)))
            .map(|(s, e)| (s.max(from), e.min(to)))
            .filter(|(s, e)| s < e)
            .collect()
    }

    /// Reads `buf` at `offset` where nothing is edited: the base where it
    /// is visible, zeros beyond.
    fn read_base(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let inside = usize::try_from(self.visible.get().saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        FileExt::read_exact_at(&self.base, &mut buf[..inside], offset)?;
        buf[inside..].fill(0);
        Ok(())
    }

    /// Marks `[start, end)` edited, merging with the ranges it touches.
    fn mark(&self, mut start: u64, mut end: u64) {
        let mut map = self.edited.borrow_mut();
        let touching: Vec<(u64, u64)> = map
            .range(..=end)
            .rev()
            .take_while(|&(_, &e)| e >= start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            map.remove(&s);
            start = start.min(s);
            end = end.max(e);
        }
        map.insert(start, end);
    }
}

impl Workspace for Cow {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let end = offset + buf.len() as u64;
        let map = self.edited.borrow();
        // The edited range that may start before `offset`, then the rest.
        let first = map
            .range(..=offset)
            .next_back()
            .filter(|&(_, &e)| e > offset)
            .map(|(&s, &e)| (s, e));
        let mut at = offset;
        for (s, e) in first
            .into_iter()
            .chain(map.range(offset + 1..end).map(|(&s, &e)| (s, e)))
        {
            let (s, e) = (s.max(offset), e.min(end));
            if s > at {
                let (a, b) = ((at - offset) as usize, (s - offset) as usize);
                self.read_base(&mut buf[a..b], at)?;
            }
            let (a, b) = ((s - offset) as usize, (e - offset) as usize);
            FileExt::read_exact_at(&self.edits, &mut buf[a..b], s)?;
            at = e;
        }
        if at < end {
            let a = (at - offset) as usize;
            self.read_base(&mut buf[a..], at)?;
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        FileExt::write_all_at(&self.edits, buf, offset)?;
        let end = offset + buf.len() as u64;
        self.mark(offset, end);
        self.len.set(self.len.get().max(end));
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.len.get())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if len < self.len.get() {
            self.visible.set(self.visible.get().min(len));
            let mut map = self.edited.borrow_mut();
            let beyond: Vec<u64> = map.range(len..).map(|(&s, _)| s).collect();
            for s in beyond {
                map.remove(&s);
            }
            if let Some((_, e)) = map.range_mut(..len).next_back() {
                *e = (*e).min(len);
            }
            drop(map);
            if self.edits.metadata()?.len() > len {
                self.edits.set_len(len)?;
            }
        }
        self.len.set(len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(bytes: &[u8]) -> File {
        let f = tempfile::tempfile().unwrap();
        FileExt::write_all_at(&f, bytes, 0).unwrap();
        f
    }

    fn read(c: &Cow, offset: u64, n: usize) -> Vec<u8> {
        let mut v = vec![0xEE; n];
        c.read_at(&mut v, offset).unwrap();
        v
    }

    #[test]
    fn edits_lie_over_the_base_which_stays_untouched() {
        let b: Vec<u8> = (0..100u8).collect();
        let c = Cow::new(base(&b), tempfile::tempfile().unwrap()).unwrap();
        c.write_at(&[0xAA; 10], 20).unwrap();
        c.write_at(&[0xBB; 5], 28).unwrap();
        c.write_at(&[0xCC; 2], 33).unwrap();
        let mut want = b.clone();
        want[20..30].fill(0xAA);
        want[28..33].fill(0xBB);
        want[33..35].fill(0xCC);
        assert_eq!(read(&c, 0, 100), want);
        assert_eq!(read(&c, 25, 10), want[25..35]);
        assert_eq!(read(&c, 34, 3), want[34..37]);
        // Touching ranges merged into one.
        assert_eq!(c.edited.borrow().len(), 1);
        assert_eq!(c.edited_in(0, 100), [(20, 35)]);
        assert_eq!(c.edited_in(25, 30), [(25, 30)]);
        assert!(c.edited_in(35, 100).is_empty());
        c.write_at(&[0xDD; 5], 50).unwrap();
        assert_eq!(c.edited_in(30, 52), [(30, 35), (50, 52)]);
        let mut orig = vec![0; 100];
        FileExt::read_exact_at(c.base(), &mut orig, 0).unwrap();
        assert_eq!(orig, b);
    }

    #[test]
    fn a_cut_zeroes_the_base_and_the_edits_beyond_it() {
        let b = vec![7u8; 100];
        let c = Cow::new(base(&b), tempfile::tempfile().unwrap()).unwrap();
        c.write_at(&[1; 20], 40).unwrap();
        c.write_at(&[2; 10], 80).unwrap();
        c.set_len(50).unwrap();
        assert_eq!(c.len().unwrap(), 50);
        c.set_len(120).unwrap();
        let got = read(&c, 0, 120);
        assert_eq!(got[..40], [7; 40]);
        assert_eq!(got[40..50], [1; 10]);
        assert!(got[50..].iter().all(|&x| x == 0));
        // Writes past the end grow the disk.
        c.write_at(&[3; 4], 130).unwrap();
        assert_eq!(c.len().unwrap(), 134);
        assert_eq!(read(&c, 118, 16)[12..], [3; 4]);
    }

    /// Random writes, cuts and growths against a plain byte vector that
    /// models the disk (a fixed-seed generator: the same run every time).
    #[test]
    fn matches_a_byte_vector_model() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let orig: Vec<u8> = (0..4096u32).map(|i| (i % 251 + 1) as u8).collect();
        let c = Cow::new(base(&orig), tempfile::tempfile().unwrap()).unwrap();
        let mut model = orig.clone();
        for step in 0..20_000 {
            match next(10) {
                0 => {
                    let len = next(6000);
                    c.set_len(len).unwrap();
                    model.resize(len as usize, 0);
                }
                1..=6 => {
                    let (at, n) = (next(5000), 1 + next(300));
                    let fill = if next(3) == 0 { 0 } else { next(256) as u8 };
                    c.write_at(&vec![fill; n as usize], at).unwrap();
                    let end = (at + n) as usize;
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                    model[at as usize..end].fill(fill);
                }
                _ => {
                    let len = model.len() as u64;
                    assert_eq!(c.len().unwrap(), len, "step {step}");
                    let at = next(len + 1);
                    let n = next(len - at + 1);
                    assert_eq!(
                        read(&c, at, n as usize),
                        model[at as usize..(at + n) as usize],
                        "step {step}: {n} bytes at {at}"
                    );
                    // What is not edited reads as the base or zeros.
                    let edited = c.edited_in(0, len);
                    for w in edited.windows(2) {
                        assert!(w[0].1 < w[1].0, "disjoint, not touching: {edited:?}");
                    }
                }
            }
        }
        assert_eq!(read(&c, 0, model.len()), model);
    }

    #[test]
    fn at_refuses_reads_past_the_end() {
        let c = Cow::new(base(&[1; 10]), tempfile::tempfile().unwrap()).unwrap();
        let mut buf = [0; 4];
        assert!(At(&c).read_exact_at(&mut buf, 8).is_err());
        At(&c).read_exact_at(&mut buf, 6).unwrap();
        assert_eq!(buf, [1; 4]);
    }
}
