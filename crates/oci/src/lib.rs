//! Application preload: container images (OCI image layouts, `docker save`
//! archives) turned into the container engine's overlay2 store, plus the
//! `apps.json` target state, as entries of kiln's file-tree model.
//!
//! Main entry points: [`Store::open`] resolves the inputs for a platform
//! (reading only JSON), [`Store::feed`] streams every layer into any
//! [`kiln_tree::TreeSink`] (paths relative to the engine's data root: wrap
//! the sink in a [`kiln_tree::PrefixSink`] for `docker/`), verifying every
//! blob digest and diff ID on the way; [`Compose::parse`] and
//! [`AppsJson`] produce `apps.json`; [`feed_data_extras`] adds
//! `resin-data/`, `remove_me_to_reset` and `apps.json`.
//!
//! ```no_run
//! use kiln_oci::{ImageInput, Platform, Store, StoreOptions};
//! use kiln_tree::{Content, Entry, Timestamp, TreeSink};
//! struct Count(u64);
//! impl TreeSink for Count {
//!     type Error = std::io::Error;
//!     fn add(&mut self, _e: &Entry, c: Content<'_>) -> Result<(), Self::Error> {
//!         if let Content::Stream { reader, .. } = c {
//!             self.0 += std::io::copy(reader, &mut std::io::sink())?;
//!         }
//!         Ok(())
//!     }
//! }
//! let opts = StoreOptions {
//!     platform: Platform::parse("linux/arm/v7")?,
//!     time: Timestamp::new(1_700_000_000, 0),
//! };
//! let store = Store::open(&[ImageInput::new("api.oci").named("demo/api")], opts)?;
//! println!("{}", store.summary());
//! let report = store.feed(&mut Count(0))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Errors
//! [`Error`] separates I/O on an input, corrupt input (digest, size or
//! diff ID mismatch, missing blob, malformed JSON or tar, hostile layer
//! paths), unsupported input (media type, platform absent) and bad
//! requests (compose file naming an image no input provides). Feeding
//! returns [`FeedError`], which keeps the sink's own error apart.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![deny(missing_docs)]

mod apps;
mod compose;
mod container;
mod crc64;
mod digest;
mod error;
mod input;
mod inspect;
mod layer;
mod layout;
pub mod merge;
mod platform;
mod reference;
pub mod spec;
mod store;
mod tarsplit;

pub use apps::{feed_data_extras, AppIds, AppsJson};
pub use compose::{Compose, Service};
pub use digest::Digest;
pub use error::{Error, FeedError};
pub use input::{Image, ImageInput};
pub use inspect::{parse_apps_json, parse_repositories_json, AppSummary};
pub use merge::{DirStoreView, ExistingLayer, ExistingStore, StoreView};
pub use platform::Platform;
pub use reference::ImageRef;
pub use store::{
    cache_id, short_id, FeedReport, ImageSummary, LayerReport, Store, StoreOptions, Summary,
};
