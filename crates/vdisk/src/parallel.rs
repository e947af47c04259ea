//! Order-preserving parallel compression of clusters/grains.
//!
//! Writers that deflate each unit independently (VMDK grains, qcow2
//! compressed clusters) collect up to `16 x threads` units, compress them
//! on scoped threads, and then place the results strictly in arrival
//! order, so the output is byte-identical whatever the thread count.
//! Memory: the batch's inputs and outputs (about 2 x 16 x threads x 64 KiB).

use crate::error::Result;

/// Units per thread in one batch.
const PER_THREAD: usize = 16;

#[derive(Debug)]
pub(crate) struct Batch {
    threads: usize,
    items: Vec<(u64, Vec<u8>)>,
}

impl Batch {
    pub(crate) fn new(threads: usize) -> Self {
        Self {
            threads: threads.max(1),
            items: Vec::new(),
        }
    }

    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Queues a copy of unit `idx`; returns true when the batch is full.
    pub(crate) fn push(&mut self, idx: u64, data: &[u8]) -> bool {
        self.items.push((idx, data.to_vec()));
        self.items.len() >= self.threads * PER_THREAD
    }

    /// Compresses every queued unit with `f` (each thread gets its own
    /// state from `make`, e.g. a reusable compressor) and hands `(idx,
    /// input, output)` to `emit` in queue order; empties the batch.
    pub(crate) fn drain<S, M, F, E>(&mut self, make: M, f: F, mut emit: E) -> Result<()>
    where
        M: Fn() -> S + Sync,
        F: Fn(&mut S, u64, &[u8]) -> Result<Vec<u8>> + Sync,
        E: FnMut(u64, &[u8], Vec<u8>) -> Result<()>,
    {
        let items = std::mem::take(&mut self.items);
        if items.is_empty() {
            return Ok(());
        }
        let per = items.len().div_ceil(self.threads);
        let (f, make) = (&f, &make);
        let outputs: Vec<Result<Vec<u8>>> = std::thread::scope(|s| {
            let handles: Vec<_> = items
                .chunks(per)
                .map(|chunk| {
                    s.spawn(move || {
                        let mut state = make();
                        chunk
                            .iter()
                            .map(|(i, d)| f(&mut state, *i, d))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| match h.join() {
                    Ok(v) => v,
                    // A panicking compressor is a bug in this crate, not
                    // input-derived; re-raise it on the caller's thread.
                    Err(p) => std::panic::resume_unwind(p),
                })
                .collect()
        });
        for ((idx, input), out) in items.iter().zip(outputs) {
            emit(*idx, input, out?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_across_threads() {
        let mut b = Batch::new(3);
        let mut full = false;
        for i in 0..48u64 {
            full = b.push(i, &[i as u8; 4]);
        }
        assert!(full);
        let mut seen = Vec::new();
        b.drain(
            || (),
            |_, i, d| Ok(vec![d[0], i as u8]),
            |i, _, out| {
                seen.push((i, out));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen.len(), 48);
        assert!(seen
            .iter()
            .enumerate()
            .all(|(k, (i, o))| *i == k as u64 && o == &vec![k as u8, k as u8]));
    }
}
