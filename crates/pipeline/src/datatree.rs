//! What goes into a fresh data partition, fed the same way into the size
//! estimator and into the writer.

use crate::app::App;
use crate::content::{add_dir, feed_generated, tp, Generated};
use crate::progress::{Counted, Meter};
use crate::Error;
use kiln_ext4::Ext4Estimator;
use kiln_tree::{Content, Entry, EntryKind, Metadata, Timestamp, TreePath, TreeSink};

/// A failure while feeding the data partition.
pub(crate) enum DataFeedError<E> {
    App(kiln_oci::Error),
    Sink(E),
}

impl<E> From<kiln_oci::FeedError<E>> for DataFeedError<E> {
    fn from(e: kiln_oci::FeedError<E>) -> Self {
        match e {
            kiln_oci::FeedError::Input(i) => Self::App(i),
            kiln_oci::FeedError::Sink(s) => Self::Sink(s),
        }
    }
}

/// Which pass feeds the data partition's tree.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Into the size estimator: layer digests are not checked (the write
    /// pass does), so every layer is hashed once per build.
    Size,
    /// Into the writer: everything checked.
    Write,
}

/// What goes into the data partition: the balenaOS root files, the
/// swapfile (first, so it gets one contiguous run of blocks), `apps.json`
/// and the engine store.
pub(crate) struct DataTree {
    pub(crate) swap: Option<(TreePath, u64, [u8; 4096])>,
    pub(crate) app: Option<App>,
    pub(crate) time: Timestamp,
}

impl DataTree {
    /// Everything but the store's content: the root files, the swapfile,
    /// `apps.json` and the store's directory.
    fn feed_head<S: TreeSink>(&self, sink: &mut S) -> Result<(), DataFeedError<S::Error>> {
        let t = self.time;
        add_dir(sink, &TreePath::root(), 0o755, t).map_err(DataFeedError::Sink)?;
        if let Some((path, size, header)) = &self.swap {
            let e = Entry::new(path.clone(), EntryKind::File, Metadata::new(0o600, t));
            sink.add(
                &e,
                Content::Preallocated {
                    size: *size,
                    head: header,
                },
            )
            .map_err(DataFeedError::Sink)?;
        }
        // What balenaOS expects at the data partition root.
        add_dir(sink, &tp("resin-data"), 0o755, t).map_err(DataFeedError::Sink)?;
        let mut files = vec![Generated {
            path: tp("remove_me_to_reset"),
            mode: 0o644,
            data: Vec::new(),
        }];
        if let Some(app) = &self.app {
            files.push(Generated {
                path: tp("apps.json"),
                mode: 0o644,
                data: app.apps_json.clone(),
            });
        }
        feed_generated(&files, t, sink).map_err(DataFeedError::Sink)?;
        if let Some(app) = &self.app {
            add_dir(sink, &app.store_path, 0o710, t).map_err(DataFeedError::Sink)?;
        }
        Ok(())
    }

    /// Sizes the tree into `est`: the store's layers are decompressed
    /// `workers` at a time into one shared estimator.
    /// Every file byte fed is counted into `meter`.
    pub(crate) fn size(
        &self,
        est: &mut Ext4Estimator,
        workers: usize,
        meter: &Meter<'_>,
    ) -> Result<(), DataFeedError<kiln_ext4::Error>> {
        self.feed_head(&mut Counted::new(&mut *est, meter))?;
        let Some(app) = &self.app else {
            return Ok(());
        };
        let shared = std::sync::Mutex::new(std::mem::take(est));
        let fed = app.store.feed_for_sizing_parallel(
            || {
                let locked = kiln_tree::LockedSink(&shared);
                Counted::new(
                    kiln_tree::PrefixSink::new(locked, app.store_path.clone()),
                    meter,
                )
            },
            workers,
        );
        *est = shared
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        fed.map_err(DataFeedError::from)?;
        Ok(())
    }

    /// Writes the tree into `sink`: everything checked, or, for a
    /// streamed build's dry run (`checked` false), the same entries in the
    /// same order without the layer digests (the real run checks them).
    pub(crate) fn feed<S: TreeSink>(
        &self,
        sink: &mut S,
        checked: bool,
    ) -> Result<Option<kiln_oci::FeedReport>, DataFeedError<S::Error>> {
        self.feed_head(sink)?;
        if let Some(app) = &self.app {
            let mut prefixed = kiln_tree::PrefixSink::new(&mut *sink, app.store_path.clone());
            let fed = if checked {
                app.store.feed(&mut prefixed)
            } else {
                app.store.feed_for_sizing(None, &mut prefixed)
            };
            let report = fed.map_err(DataFeedError::from)?;
            return Ok(Some(report));
        }
        Ok(None)
    }
}

/// The build error of a failed data partition feed.
pub(crate) fn data_err(label: &str, e: DataFeedError<kiln_ext4::Error>) -> Error {
    match e {
        DataFeedError::App(source) => Error::App {
            partition: label.to_string(),
            source: Box::new(source),
        },
        DataFeedError::Sink(source) => Error::Ext4 {
            partition: label.to_string(),
            source,
        },
    }
}
