//! What goes into each partition, as tree entries: inputs named by the
//! recipe (directories or tar archives) and files kiln generates.

use kiln_recipe::InputPath;
use kiln_tree::{
    dir::DirSource, tar_source::TarSource, Content, Entry, EntryKind, Metadata, SourceError,
    SourceOptions, Timestamp, TreePath, TreeSink,
};
use std::collections::BTreeSet;

/// Feeds a directory or a tar archive (any compression) to `sink`.
pub(crate) fn feed_input<S: TreeSink>(
    input: &InputPath,
    opts: &SourceOptions,
    sink: &mut S,
) -> Result<(), SourceError<S::Error>> {
    if input.path.is_dir() {
        DirSource::new(&input.path, opts.clone()).feed(sink)
    } else {
        TarSource::new(&input.path, opts.clone()).feed(sink)
    }
}

/// A generated file.
#[derive(Debug, Clone)]
pub(crate) struct Generated {
    pub path: TreePath,
    pub mode: u32,
    pub data: Vec<u8>,
}

/// Adds generated files (and their parent directories' defaults are left
/// to the sink) with root ownership and the build time.
pub(crate) fn feed_generated<S: TreeSink>(
    files: &[Generated],
    time: Timestamp,
    sink: &mut S,
) -> Result<(), S::Error> {
    for f in files {
        let e = Entry::new(f.path.clone(), EntryKind::File, Metadata::new(f.mode, time));
        sink.add(&e, Content::bytes(&f.data))?;
    }
    Ok(())
}

/// Adds a directory.
pub(crate) fn add_dir<S: TreeSink>(
    sink: &mut S,
    path: &TreePath,
    mode: u32,
    time: Timestamp,
) -> Result<(), S::Error> {
    sink.add(
        &Entry::new(path.clone(), EntryKind::Dir, Metadata::new(mode, time)),
        Content::None,
    )
}

/// Drops entries at or below any of `skip` (generated files replace what
/// an input carries at the same path).
pub(crate) struct Skip<'a, S> {
    pub inner: &'a mut S,
    pub skip: &'a BTreeSet<TreePath>,
}

impl<S: TreeSink> TreeSink for Skip<'_, S> {
    type Error = S::Error;
    fn add(&mut self, entry: &Entry, content: Content<'_>) -> Result<(), Self::Error> {
        // Unread content is fine: the tar reader skips to the next member.
        if self.skip.iter().any(|s| entry.path.starts_with(s)) {
            return Ok(());
        }
        self.inner.add(entry, content)
    }
}

pub(crate) fn tp(s: &str) -> TreePath {
    // OK: only called with constant, valid relative paths.
    TreePath::parse(s.as_bytes()).unwrap_or_default()
}
