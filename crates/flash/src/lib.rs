//! The flash engine behind `kiln flash IMAGE TARGET`: safety checks
//! ([`safety`], from facts the caller gathers, e.g. [`mountinfo`]),
//! bmap-aware copy with large aligned writes, fsync, read-back
//! verification of every mapped range against its sha256, progress
//! reporting, and moving the backup GPT to the end of a larger target
//! (through `kiln-part`, the crate that parses GPT).
//!
//! The caller opens the image (raw, compressed, qcow2, ...) and the
//! target and gathers the facts for [`safety::check_target`]; this crate
//! only does I/O on what it is given.
//!
//! Main entry points: [`flash`], [`flash_many`] (one image to several
//! targets at once, read once), [`verify_target`],
//! [`safety::check_target`], [`mountinfo::parse_mountinfo`].
//!
//! # Algorithm
//!
//! 0. Clear the partition-table windows of the target (its first MiB, the
//!    last MiB of the image and of the target) and flush; the image's
//!    bytes for them are held in memory until step 5 (the `guard`
//!    module: an interrupted flash leaves no partition table).
//! 1. Plan the ranges: the bmap's mapped ranges (with their sha256), or,
//!    without a bmap, the whole image cut into 64 MiB segments whose digests
//!    are computed while writing.
//! 2. Copy each range in chunks of `chunk_bytes` whose ends are aligned to
//!    multiples of `chunk_bytes` in the image (so writes are large and
//!    aligned; bmap ranges start on 4 KiB blocks). Holes between ranges are
//!    skipped, zeroed or discarded ([`HoleMode`]). A stream source is read
//!    in order, holes included (they are read and dropped).
//! 3. Verify: every range is read back from the target with its page
//!    cache dropped first (`posix_fadvise(DONTNEED)`, so the read hits the
//!    device) and re-hashed ([`Error::VerifyFailed`] names the first range
//!    that differs). When the target offers a second handle
//!    ([`FlashTarget::read_back`]: files and block devices), this runs on a
//!    second thread *behind* the writer: every 16 MiB written it flushes
//!    (`fdatasync`), drops and re-reads what was written, so writing,
//!    writeback and read-back overlap. Then the image's own bytes need not
//!    be hashed while writing: a range that fails verification is re-read
//!    from a random-access image to tell a bad image
//!    ([`Error::SourceMismatch`]) from a bad medium. Otherwise (a stream,
//!    no bmap, or no second handle) image data is hashed while writing and
//!    checked against the bmap, and the read-back runs after the `fsync`.
//! 4. If the target is larger than the image and holds a GPT, move the
//!    backup GPT to the target's end ([`kiln_part::move_backup_gpt`]) and
//!    `fsync` again (in the held windows).
//! 5. Commit the windows: tail first, flush, then the head (MBR, primary
//!    GPT), flush, and read them back with their page cache dropped.
//!    Until then, the target shows no MBR signature and no GPT header at
//!    either end; the fan-out ([`flash_many`]) runs this same engine per
//!    target.
//!
//! ```
//! use kiln_artifact::bmap::{nonzero_ranges, Bmap};
//! use kiln_flash::{flash, FlashOptions, ImageSource};
//!
//! let mut image = vec![0u8; 1 << 20];
//! image[..5].copy_from_slice(b"kiln!");
//! let ranges = nonzero_ranges(&image, 4096)?;
//! let bmap = Bmap::from_image(&image, image.len() as u64, 4096, &ranges)?;
//! let mut target = Vec::new();
//! let report = flash(
//!     ImageSource::Random(&image),
//!     Some(&bmap),
//!     &mut target,
//!     &FlashOptions::new(),
//!     &mut |_| {},
//! )?;
//! assert_eq!(target, image);
//! assert_eq!(report.written_bytes, 4096);
//! assert_eq!(report.verified_bytes, 4096);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Errors
//! Every fallible function returns [`Error`]: I/O failures carry the
//! operation and byte offset, an image that does not match its bmap names
//! the blocks ([`Error::SourceMismatch`]), verify failures name the block
//! and byte range, a GPT that cannot be moved wraps `kiln-part`'s error,
//! malformed mountinfo text names the line, and refused targets carry a
//! [`Refusal`].
//!
//! This library never runs external tools, reads the clock, environment or
//! randomness, and never buffers a whole image.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![deny(missing_docs)]

mod copy;
mod engine;
mod error;
mod fanout;
mod guard;
pub mod mountinfo;
mod options;
pub mod safety;
mod segment;
mod target;
mod verify;

pub use engine::flash;
pub use error::{Error, Refusal, Result};
pub use fanout::{flash_many, ManyReport, QUEUE_CHUNKS};
pub use kiln_part::GptRelocation;
pub use options::{FlashOptions, FlashReport, HoleMode, ImageSource, Phase, Progress};
pub use segment::{DEFAULT_BLOCK_BYTES, UNMAPPED_SEGMENT_BYTES};
pub use target::{FlashTarget, ReadBack};
pub use verify::verify_target;
