//! A deterministic bump allocator over the blocks left free by the fixed
//! metadata. Blocks are handed out in increasing order, so file data lands
//! contiguously in the order it streams in and the record of allocations
//! stays sorted (the block bitmaps are swept from it at the end).

/// Hands out free blocks in increasing order.
#[derive(Debug)]
pub(crate) struct Allocator {
    free: Vec<(u64, u64)>,
    idx: usize,
    pos: u64,
    remaining: u64,
    /// Sorted, merged record of everything handed out.
    pub(crate) allocated: Vec<(u64, u64)>,
}

impl Allocator {
    /// Free space is `[0, blocks)` minus `metadata` (sorted, merged).
    pub(crate) fn new(blocks: u64, metadata: &[(u64, u64)]) -> Self {
        let mut free = Vec::new();
        let mut at = 0;
        for &(s, l) in metadata {
            if s > at {
                free.push((at, s - at));
            }
            at = at.max(s + l);
        }
        if at < blocks {
            free.push((at, blocks - at));
        }
        let remaining = free.iter().map(|r| r.1).sum();
        let pos = free.first().map_or(0, |r| r.0);
        Self {
            free,
            idx: 0,
            pos,
            remaining,
            allocated: Vec::new(),
        }
    }

    /// Blocks still free.
    pub(crate) fn remaining(&self) -> u64 {
        self.remaining
    }

    /// One contiguous run of at most `max` blocks, `None` when full.
    pub(crate) fn run(&mut self, max: u64) -> Option<(u64, u64)> {
        if max == 0 {
            return None;
        }
        loop {
            let &(s, l) = self.free.get(self.idx)?;
            let end = s + l;
            if self.pos < end {
                let n = (end - self.pos).min(max);
                let start = self.pos;
                self.pos += n;
                self.remaining -= n;
                match self.allocated.last_mut() {
                    Some(last) if last.0 + last.1 == start => last.1 += n,
                    _ => self.allocated.push((start, n)),
                }
                return Some((start, n));
            }
            self.idx += 1;
            if let Some(&(s, _)) = self.free.get(self.idx) {
                self.pos = s;
            }
        }
    }

    /// One block.
    pub(crate) fn one(&mut self) -> Option<u64> {
        self.run(1).map(|r| r.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_metadata() {
        let mut a = Allocator::new(100, &[(0, 10), (20, 5)]);
        assert_eq!(a.remaining(), 85);
        assert_eq!(a.run(8), Some((10, 8)));
        assert_eq!(a.run(8), Some((18, 2)));
        assert_eq!(a.run(3), Some((25, 3)));
        assert_eq!(a.allocated, vec![(10, 10), (25, 3)]);
        assert_eq!(a.run(1000), Some((28, 72)));
        assert_eq!(a.run(1), None);
        assert_eq!(a.remaining(), 0);
    }
}
