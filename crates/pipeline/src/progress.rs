//! Byte progress of a build's long steps (inflating the application's
//! layers while sizing, writing each filesystem partition), reported to
//! the caller through [`BuildRequest::on_bytes`](crate::BuildRequest):
//! the library keeps no clock and draws nothing; the caller rate-limits
//! and draws (the CLI: a bar on a terminal, plain lines otherwise).
//!
//! Progress is counted in file bytes fed to a filesystem (regular files'
//! sizes), the unit both the sizing pass and the writing pass see, so the
//! total the sizing pass counts is the writing pass's 100 %.

use kiln_tree::{Content, Entry, TreeSink};
use std::sync::atomic::{AtomicU64, Ordering};

/// One progress report of a long step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepBytes<'s> {
    /// The step, e.g. `inflating the application layers` or `writing
    /// resin-data`.
    pub step: &'s str,
    /// File bytes done so far in this step.
    pub done_bytes: u64,
    /// File bytes of the whole step, when known (from the sizing pass).
    pub total_bytes: Option<u64>,
}

/// The caller's progress callback; called from worker threads too.
pub type OnBytes<'a> = &'a (dyn Fn(StepBytes<'_>) + Sync);

/// A step's counter, shared by the sinks that feed it.
pub(crate) struct Meter<'a> {
    step: String,
    done: AtomicU64,
    total: Option<u64>,
    on: Option<OnBytes<'a>>,
}

impl<'a> Meter<'a> {
    /// A step counted from 0 towards `total` bytes (if known).
    pub(crate) fn new(step: String, total: Option<u64>, on: Option<OnBytes<'a>>) -> Self {
        Self {
            step,
            done: AtomicU64::new(0),
            total,
            on,
        }
    }

    /// File bytes counted so far.
    pub(crate) fn done_bytes(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

/// A sink that counts the file bytes passing through it into a [`Meter`].
pub(crate) struct Counted<'m, 'a, S> {
    inner: S,
    meter: &'m Meter<'a>,
}

impl<'m, 'a, S> Counted<'m, 'a, S> {
    /// Counts what goes into `inner`.
    pub(crate) fn new(inner: S, meter: &'m Meter<'a>) -> Self {
        Self { inner, meter }
    }
}

impl<S: TreeSink> TreeSink for Counted<'_, '_, S> {
    type Error = S::Error;
    fn add(&mut self, entry: &Entry, content: Content<'_>) -> Result<(), Self::Error> {
        let bytes = match &content {
            Content::Stream { size, .. } => *size,
            Content::Bytes { data } => data.len() as u64,
            _ => 0,
        };
        self.inner.add(entry, content)?;
        if bytes > 0 {
            let done = self.meter.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
            if let Some(on) = self.meter.on {
                on(StepBytes {
                    step: &self.meter.step,
                    done_bytes: done,
                    total_bytes: self.meter.total,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_tree::{EntryKind, Metadata, Timestamp, TreePath};

    struct Nothing;
    impl TreeSink for Nothing {
        type Error = std::io::Error;
        fn add(&mut self, _: &Entry, content: Content<'_>) -> Result<(), Self::Error> {
            if let Content::Stream { reader, .. } = content {
                std::io::copy(reader, &mut std::io::sink())?;
            }
            Ok(())
        }
    }

    #[test]
    fn counts_file_bytes_and_reports_each_file() {
        let seen = std::sync::Mutex::new(Vec::new());
        let on = |s: StepBytes<'_>| {
            seen.lock()
                .unwrap()
                .push((s.step.to_owned(), s.done_bytes, s.total_bytes))
        };
        let meter = Meter::new("writing x".into(), Some(7), Some(&on));
        let mut sink = Counted::new(Nothing, &meter);
        let meta = Metadata::new(0o644, Timestamp::new(0, 0));
        let file = |name: &str| {
            Entry::new(
                TreePath::parse(name.as_bytes()).unwrap(),
                EntryKind::File,
                meta.clone(),
            )
        };
        let mut r: &[u8] = b"abcd";
        sink.add(
            &file("a"),
            Content::Stream {
                size: 4,
                reader: &mut r,
            },
        )
        .unwrap();
        sink.add(&file("b"), Content::None).unwrap();
        sink.add(&file("c"), Content::Bytes { data: b"xyz" })
            .unwrap();
        assert_eq!(meter.done_bytes(), 7);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                ("writing x".into(), 4, Some(7)),
                ("writing x".into(), 7, Some(7))
            ]
        );
    }
}
