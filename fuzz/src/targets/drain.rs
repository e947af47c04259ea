//! A tree sink that reads every streamed file to the end, as a
//! filesystem writer would, without writing anything.

use std::io::Read;

use kiln_tree::{Content, Entry, EntryKind, TreeSink};

/// Reads every streamed file to the end, refusing sizes a real partition
/// could not hold (as the writers do before reading).
struct Drain {
    entries: u64,
    bytes: u64,
}

/// Why the drain refused an entry.
#[derive(Debug)]
enum DrainError {
    /// Larger than the partition it would go to, bytes.
    TooBig(u64),
    /// Reading the content failed.
    Read(std::io::Error),
}

impl std::fmt::Display for DrainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DrainError::TooBig(n) => {
                write!(f, "file of {n} bytes is larger than the fuzz partition")
            }
            DrainError::Read(e) => write!(f, "reading content: {e}"),
        }
    }
}

impl std::error::Error for DrainError {}

/// The partition size the drain pretends to write into, bytes.
const PARTITION: u64 = 256 << 20;

impl TreeSink for Drain {
    type Error = DrainError;
    fn add(&mut self, entry: &Entry, content: Content<'_>) -> Result<(), Self::Error> {
        self.entries += 1;
        let _ = (&entry.path, matches!(entry.kind, EntryKind::File));
        if let Content::Stream { size, reader } = content {
            if size > PARTITION {
                return Err(DrainError::TooBig(size));
            }
            let n = std::io::copy(&mut reader.take(size), &mut std::io::sink())
                .map_err(DrainError::Read)?;
            self.bytes += n;
        }
        Ok(())
    }
}

pub(crate) fn drain() -> impl TreeSink + HasCounts {
    Drain {
        entries: 0,
        bytes: 0,
    }
}

/// What a drain saw.
pub(crate) trait HasCounts {
    /// Entries and content bytes.
    fn counts(&self) -> (u64, u64);
}

impl HasCounts for Drain {
    fn counts(&self) -> (u64, u64) {
        (self.entries, self.bytes)
    }
}
