//! The consumer side of the tree model.

use crate::{Content, Entry, Timestamp, TreePath};

/// Something that takes entries one at a time: a filesystem writer, a
/// listing, a test recorder. Parents may arrive after their children
/// (tar archives do that); a sink creates missing parent directories with
/// default metadata and updates them when their own entry arrives.
pub trait TreeSink {
    /// The sink's own error.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Takes one entry and reads its content to the end.
    fn add(&mut self, entry: &Entry, content: Content<'_>) -> Result<(), Self::Error>;
}

impl<S: TreeSink + ?Sized> TreeSink for &mut S {
    type Error = S::Error;
    fn add(&mut self, entry: &Entry, content: Content<'_>) -> Result<(), Self::Error> {
        (**self).add(entry, content)
    }
}

/// A sink shared by several threads: every entry locks the mutex. For
/// sinks that do not care about the order entries arrive in (a size
/// estimator), so several producers can feed one.
#[derive(Debug)]
pub struct LockedSink<'a, S>(pub &'a std::sync::Mutex<S>);

impl<S: TreeSink> TreeSink for LockedSink<'_, S> {
    type Error = S::Error;
    fn add(&mut self, entry: &Entry, content: Content<'_>) -> Result<(), Self::Error> {
        // A panic elsewhere surfaces where that thread is joined; the
        // sink's state is still usable for the remaining entries.
        let mut s = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.add(entry, content)
    }
}

/// Re-roots every entry (and hardlink target) under `prefix`, e.g. an
/// engine store under `docker/` of the data partition.
#[derive(Debug)]
pub struct PrefixSink<S> {
    inner: S,
    prefix: TreePath,
}

impl<S> PrefixSink<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, prefix: TreePath) -> Self {
        Self { inner, prefix }
    }
    /// Gives back the wrapped sink.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: TreeSink> TreeSink for PrefixSink<S> {
    type Error = S::Error;
    fn add(&mut self, entry: &Entry, content: Content<'_>) -> Result<(), Self::Error> {
        let mut e = entry.clone();
        e.path = e.path.prefixed(&self.prefix);
        if let crate::EntryKind::Hardlink { target } = &mut e.kind {
            *target = target.prefixed(&self.prefix);
        }
        self.inner.add(&e, content)
    }
}

/// How a source maps what it reads onto entries.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// Clamp every timestamp to at most this (SOURCE_DATE_EPOCH).
    pub clamp_time: Option<Timestamp>,
    /// Replace every owner with this uid/gid (a directory prepared by an
    /// unprivileged user still becomes root-owned in the image).
    pub force_owner: Option<(u32, u32)>,
    /// Refuse a regular file whose header claims more than this many
    /// bytes (the size of the partition it goes to), before reading its
    /// data: a small archive that claims terabytes (a sparse file's holes)
    /// fails at once instead of being expanded.
    pub max_file_size: Option<u64>,
}

impl SourceOptions {
    pub(crate) fn apply(&self, meta: &mut crate::Metadata) {
        if let Some(t) = self.clamp_time {
            meta.clamp_times(t);
        }
        if let Some((u, g)) = self.force_owner {
            meta.uid = u;
            meta.gid = g;
        }
    }
}
