//! FAT16/FAT32 for kiln's boot partition: a native formatter + streaming
//! writer ([`FatWriter`], a [`kiln_tree::TreeSink`]) and a reader
//! ([`FatReader`]) built on the `fatfs` crate.
//!
//! Specification: *Microsoft Extensible Firmware Initiative FAT32 File
//! System Specification*, version 1.03, December 6, 2000 ("fatgen103").
//! Sections used: §3.1–3.3 boot sector and BPB, §3.5–3.6 FAT type
//! determination and FAT size, §4 FAT entries (EOC, media byte in `FAT[0]`,
//! clean-shutdown bits in `FAT[1]`), §5 FSInfo, §6 directory entries and
//! date/time formats, §7 long-name entries and their checksum, and the
//! short-name basis and numeric-tail algorithms. The byte layouts, with
//! offset tables of the boot sector/BPB (FAT16 and FAT32 variants),
//! FSInfo, directory entry and long-name entry, are the crate-private
//! zerocopy structs of `src/raw.rs` (each size pinned by a const assert,
//! each offset by a unit test); the sizing rules (which match `mkfs.fat`
//! 4.2) are in [`layout`]; name rules in `src/name.rs`; date/time encoding
//! in [`FatTime`].
//!
//! # Why native and not `fatfs`
//! Checked hands-on (scratch program, `fatfs` 0.3.6 `format_volume` +
//! `create_dir`/`create_file` on a 40 MiB FAT16 file, `fsck.fat` 4.2): every
//! subdirectory is rejected — `fsck.fat -n` exits 1 with
//! "/overlays/A. Expected a valid '.' entry in this slot", because 0.3.6
//! writes a long-name entry in front of `.`/`..`; fsck would delete the
//! directories. The fix exists only in unreleased fatfs master. So kiln
//! writes FAT itself; `fatfs` remains an independent reader (its reading
//! side is fine), used by [`FatReader`] and by the tests.
//!
//! # Reading untrusted images
//! [`FatReader`] never writes (its I/O adapter refuses writes), bounds
//! listings ([`ListLimits`]) and file reads (a byte limit per call), gives
//! fatfs a read budget per operation (twice the volume plus 16 MiB) so a
//! cluster-chain loop ends in an error instead of spinning, and turns a
//! panic inside fatfs (0.3.6 multiplies cluster numbers unchecked, which
//! overflows on corrupt entries in debug builds) into [`Error::Read`].
//!
//! # Example
//! ```
//! use kiln_fat::{FatOptions, FatReader, FatType, FatWriter};
//! use kiln_tree::{Content, Entry, EntryKind, Metadata, Timestamp, TreePath, TreeSink};
//! use kiln_units::SubRegion;
//!
//! let t = Timestamp::new(1_700_000_000, 0); // SOURCE_DATE_EPOCH
//! let mut disk = Vec::new();
//! // A 40 MiB FAT32 partition at LBA 8192 of a disk image.
//! let region = SubRegion::new(&mut disk, 8192 * 512, 40 << 20);
//! let opts = FatOptions::new(0x1234_ABCD, t)
//!     .fat_type(FatType::Fat32)
//!     .volume_label("resin-boot")
//!     .hidden_sectors(8192);
//! let mut w = FatWriter::new(region, 40 << 20, opts)?;
//! let meta = Metadata::new(0o644, t);
//! let cfg = Entry::new(TreePath::parse(b"system-connections/My Wifi")?, EntryKind::File, meta);
//! w.add(&cfg, Content::bytes(b"[connection]\n"))?;
//! let report = w.finish()?;
//! assert_eq!(report.cluster_bytes, 512);
//!
//! let r = FatReader::open(SubRegion::new(&disk, 8192 * 512, 40 << 20))?;
//! assert_eq!(r.read_file("system-connections/My Wifi", 4096)?, b"[connection]\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Errors
//! One [`Error`] type: I/O on the target ([`Error::Io`]) or on a file's
//! content ([`Error::ContentIo`], [`Error::ShortContent`]); the tree does
//! not fit ([`Error::NoSpace`] with the shortfall in bytes,
//! [`Error::TooManyRootEntries`], [`Error::TooManyDirEntries`],
//! [`Error::FileTooLarge`]); the volume size does not suit the FAT type
//! ([`Error::VolumeTooSmall`]/[`Error::VolumeTooLarge`]); invalid names,
//! labels, options or paths; entry kinds FAT cannot store
//! ([`Error::Unsupported`]: symlinks, hardlinks, devices, FIFOs, sockets
//! are refused, naming the path); reader failures wrap the `fatfs` error
//! ([`Error::Read`]).
//!
//! # Determinism
//! The bytes written depend only on the options, the volume size and the
//! sequence of entries: times come from [`FatOptions::timestamp`], the
//! serial number from [`FatOptions::new`], short-name tails are
//! sequential, directories are laid out sorted by name. Unused clusters
//! are not touched; everything else in the volume's metadata and every
//! allocated cluster is written in full.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![deny(missing_docs)]

mod edit;
mod error;
mod estimate;
pub mod layout;
mod name;
mod options;
mod raw;
mod reader;
mod time;
mod writer;

pub use edit::{rebuild, volume_params, FatEdits, RebuildReport, VolumeParams};
pub use error::Error;
pub use estimate::SizeEstimator;
pub use layout::FatLayout;
pub use name::lfn_checksum;
pub use options::{FatOptions, FatType};
pub use reader::{FatEntryInfo, FatEntryKind, FatReader, ListLimits};
pub use time::FatTime;
pub use writer::{EntryStamp, FatReport, FatWriter, MAX_DIR_ENTRIES};
