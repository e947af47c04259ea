//! The new data partition's tree: the swapfile, the old filesystem's
//! tree (kiln-ext4's reader) minus what kiln replaces, the new app merged
//! onto the old engine store; and a tree with one file's content
//! replaced (a flasher's inner image).

use super::ctx::{OldFs, MAX_JSON};
use crate::app::App;
use crate::content::{add_dir, feed_generated, tp, Generated};
use crate::datatree::Pass;
use crate::Error;
use kiln_ext4::Visit;
use kiln_tree::{Content, Entry, EntryKind, Metadata, Timestamp, TreePath, TreeSink};
use kiln_units::ReadAt;
use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;

/// What a [`kiln_oci::StoreView`] gives back on failure.
pub(super) type ViewError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The old data filesystem, read back through kiln-ext4, as a view for
/// kiln-oci's store merge (paths relative to the store root).
pub(super) struct OldStore<'a> {
    pub(super) fs: &'a OldFs<'a>,
    pub(super) prefix: TreePath,
}

impl OldStore<'_> {
    pub(super) fn path(&self, p: &str) -> Result<TreePath, ViewError> {
        let mut out = self.prefix.clone();
        for c in p.split('/').filter(|c| !c.is_empty()) {
            out = out.join(c.as_bytes())?;
        }
        Ok(out)
    }
}

impl kiln_oci::StoreView for OldStore<'_> {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, ViewError> {
        Ok(self.fs.read_file(&self.path(path)?, MAX_JSON)?)
    }
    fn list(&self, path: &str) -> Result<Option<Vec<String>>, ViewError> {
        Ok(self.fs.list_dir(&self.path(path)?)?.map(|v| {
            v.into_iter()
                .map(|e| String::from_utf8_lossy(&e.name).into_owned())
                .collect()
        }))
    }
}

/// What goes into the new data partition: the swapfile first (one
/// contiguous run), the old tree minus what kiln replaces, then the new
/// app merged onto the old store and `apps.json`.
pub(super) struct MergedData<'a> {
    pub(super) swap: Option<(TreePath, u64, [u8; 4096])>,
    pub(super) old: &'a OldFs<'a>,
    pub(super) drop: BTreeSet<TreePath>,
    pub(super) app: Option<(&'a App, &'a kiln_oci::ExistingStore)>,
    /// Directories kiln adds that the old tree lacks.
    pub(super) new_dirs: Vec<(TreePath, u32)>,
    pub(super) time: Timestamp,
}

/// A failure while feeding the merged data partition.
pub(super) enum MergeError<E> {
    /// Reading the old tree (or the sink refusing one of its entries).
    Old(kiln_ext4::Error),
    /// The sink refused a new entry.
    Sink(E),
    /// The preload.
    App(kiln_oci::Error),
}

impl MergedData<'_> {
    pub(super) fn feed<S>(
        &self,
        sink: &mut S,
        pass: Pass,
    ) -> Result<Option<kiln_oci::FeedReport>, MergeError<S::Error>>
    where
        S: TreeSink,
        S::Error: std::error::Error + Send + Sync + 'static,
    {
        let t = self.time;
        if let Some((path, size, header)) = &self.swap {
            let e = Entry::new(path.clone(), EntryKind::File, Metadata::new(0o600, t));
            sink.add(
                &e,
                Content::Preallocated {
                    size: *size,
                    head: header,
                },
            )
            .map_err(MergeError::Sink)?;
        }
        let drop = &self.drop;
        self.old
            .feed(&mut *sink, |p: &TreePath, _| {
                if drop.contains(p) {
                    Visit::Skip
                } else {
                    Visit::Keep
                }
            })
            .map_err(MergeError::Old)?;
        for (d, mode) in &self.new_dirs {
            add_dir(sink, d, *mode, t).map_err(MergeError::Sink)?;
        }
        let Some((app, existing)) = self.app else {
            return Ok(None);
        };
        feed_generated(
            &[Generated {
                path: tp("apps.json"),
                mode: 0o644,
                data: app.apps_json.clone(),
            }],
            t,
            sink,
        )
        .map_err(MergeError::Sink)?;
        let mut prefixed = kiln_tree::PrefixSink::new(&mut *sink, app.store_path.clone());
        let fed = match pass {
            Pass::Size => app.store.feed_for_sizing(Some(existing), &mut prefixed),
            Pass::Write => app.store.feed_onto(existing, &mut prefixed),
        };
        let report = fed.map_err(|e| match e {
            kiln_oci::FeedError::Input(i) => MergeError::App(i),
            kiln_oci::FeedError::Sink(s) => MergeError::Sink(s),
        })?;
        Ok(Some(report))
    }
}

pub(super) fn merge_err(label: &str, e: MergeError<kiln_ext4::Error>) -> Error {
    match e {
        MergeError::Sink(source) => Error::Ext4 {
            partition: label.to_string(),
            source,
        },
        MergeError::Old(source) => Error::Ext4 {
            partition: format!("{label} (base)"),
            source,
        },
        MergeError::App(source) => Error::App {
            partition: label.to_string(),
            source: Box::new(source),
        },
    }
}

/// Refuses a base whose `apps.json` carries another app than the
/// recipe's (same uuid: the new release replaces the old one).
pub(super) fn check_apps(
    base: &Path,
    old: &OldFs<'_>,
    app: &App,
    data_label: &str,
) -> Result<(), Error> {
    let bytes = old
        .read_file(&tp("apps.json"), MAX_JSON)
        .map_err(|source| Error::Ext4 {
            partition: format!("{data_label} (base)"),
            source,
        })?;
    let Some(bytes) = bytes else {
        return Ok(());
    };
    let old_apps: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::Image {
        path: base.to_path_buf(),
        reason: format!("{data_label}: apps.json is not JSON: {e}"),
    })?;
    let new_apps: serde_json::Value = serde_json::from_slice(&app.apps_json).unwrap_or_default();
    let new = new_apps["apps"].as_object();
    for (id, a) in old_apps["apps"].as_object().into_iter().flatten() {
        if !new.is_some_and(|n| n.contains_key(id)) {
            let theirs = a["name"].as_str().unwrap_or("?");
            let ours = new
                .and_then(|o| o.values().next())
                .and_then(|v| v["name"].as_str())
                .unwrap_or("?");
            return Err(Error::Image {
                path: base.to_path_buf(),
                reason: format!(
                    "{data_label} already holds app {theirs:?} (uuid {id}) in apps.json, which conflicts with the recipe's app {ours:?}; start from an image without it"
                ),
            });
        }
    }
    Ok(())
}

/// A [`std::io::Read`] over a [`ReadAt`] from offset 0.
pub(super) struct ReadFrom<'a, R: ?Sized> {
    pub(super) src: &'a R,
    pub(super) pos: u64,
    pub(super) len: u64,
}

impl<R: ReadAt + ?Sized> std::io::Read for ReadFrom<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = usize::try_from((self.len - self.pos).min(buf.len() as u64)).unwrap_or(0);
        if n == 0 {
            return Ok(0);
        }
        self.src.read_exact_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Passes a tree through, with the content of one file replaced.
pub(super) struct Replace<'a, S> {
    pub(super) inner: S,
    pub(super) path: &'a TreePath,
    pub(super) with: &'a File,
    pub(super) size: u64,
}

impl<S: TreeSink> TreeSink for Replace<'_, S> {
    type Error = S::Error;
    fn add(&mut self, entry: &Entry, content: Content<'_>) -> Result<(), Self::Error> {
        if entry.path != *self.path || entry.kind != EntryKind::File {
            return self.inner.add(entry, content);
        }
        let mut r = ReadFrom {
            src: self.with,
            pos: 0,
            len: self.size,
        };
        self.inner.add(
            entry,
            Content::Stream {
                size: self.size,
                reader: &mut r,
            },
        )
    }
}
