//! Delivery of kiln images: compression ([`compress`]), digests
//! ([`digest`]), `SHA256SUMS` ([`sums`]), bmaptool 2.0 block maps
//! ([`bmap`]) and the `manifest.json` model ([`manifest`]).
//!
//! Main entry points: [`compress::Encoder`], [`digest::HashingWriter`],
//! [`bmap::Bmap`], [`sums::Sha256Sums`], [`manifest::Manifest`].
//!
//! ```
//! use std::io::Write;
//! use kiln_artifact::compress::{Compression, CompressOptions, Encoder};
//! use kiln_artifact::digest::HashingWriter;
//! use kiln_artifact::sums::Sha256Sums;
//!
//! let opts = CompressOptions::new(Compression::Zstd).level(3).threads(2);
//! // Digest of the artifact as written, and of the uncompressed data.
//! let file = HashingWriter::new(Vec::new());
//! let mut raw = HashingWriter::new(Encoder::new(file, &opts)?);
//! raw.write_all(b"image bytes")?;
//! let (enc, raw_digest, _) = raw.finish();
//! let (artifact, artifact_digest, _) = enc.finish()?.finish();
//! let mut sums = Sha256Sums::new();
//! sums.insert("disk.img.zst", artifact_digest)?;
//! assert!(sums.render().ends_with("  disk.img.zst\n"));
//! # let _ = (artifact, raw_digest);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Errors
//! Every fallible function returns [`Error`]: I/O and codec failures carry
//! the operation and offset, malformed bmap input carries the byte offset
//! or element, malformed `SHA256SUMS` the line.
//!
//! This library never runs external tools, reads the clock, environment or
//! randomness, and never buffers a whole image.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod bmap;
mod codec;
pub mod compress;
pub mod digest;
mod error;
pub mod manifest;
mod sha256;
pub mod sums;

pub use error::{Error, Result};
