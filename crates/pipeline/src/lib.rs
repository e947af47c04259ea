//! The kiln build pipeline: from a validated board profile and recipe to
//! one partitioned raw disk image.
//!
//! [`build`] plans the whole layout first (sizes, offsets, the data
//! partition sized from what goes in plus headroom) and refuses an image
//! that would not fit the target medium before writing anything. It then
//! creates a sparse temporary file beside the output, writes each
//! partition's filesystem into its window of that file (FAT boot partition
//! with the injected configuration, ext4 root filesystems, the data
//! partition with the swapfile), writes the partition table, syncs, and
//! renames the file into place. On any error the temporary file is
//! removed.
//!
//! [`inspect`] reads an image back: the table, each filesystem's label
//! and identity, the boot partition's files and `config.json` (secrets
//! redacted).
//!
//! ```no_run
//! use kiln_pipeline::{build, BuildRequest, DiskFormat, Seed};
//! use kiln_recipe::{BoardProfile, Recipe};
//! let req = BuildRequest {
//!     profile: BoardProfile::load("board-profiles/nuc.toml".as_ref())?,
//!     recipe: Recipe::load("recipes/bob-onprem.toml".as_ref())?,
//!     medium: None,
//!     output: "nuc.img".into(),
//!     overrides: vec!["hostname=bob-1".into()],
//!     timestamp: 1_700_000_000,
//!     seed: Seed::new("bob-onprem"),
//!     env: &|_| None,
//!     formats: vec![DiskFormat::Raw, DiskFormat::Qcow2],
//!     compress: None,
//!     threads: 2,
//!     base: None,
//!     force: false,
//!     signer: None,
//! };
//! let report = build(&req, &mut |line| eprintln!("{line}"))?;
//! println!("{} bytes", report.disk_bytes);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Errors
//! [`Error`] tags every failure with its stage and partition: recipe or
//! input problems, filesystem writer errors, the medium being too small,
//! output I/O.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod base;
mod bootedit;
mod build;
mod content;
mod convert;
mod deliver;
mod error;
mod inspect;
mod inspect_data;
mod manifest;
mod mkfs;
mod outpath;
mod plan;
mod seed;
mod signed;
mod sink;
mod stamp;
mod stream;
mod swap;
mod verify;
mod work;

pub use bootedit::{edit_boot_partition, merge_json, BootEditReport, BootEdits};
pub use build::{build, BuildReport, BuildRequest, PartitionReport};
pub use convert::{convert, ConvertReport};
pub use deliver::{temporary_paths, Delivered, Delivery, DiskFormat};
pub use error::Error;
pub use inspect::{inspect, inspect_disk, BootFile, FsInfo, InspectReport, InspectedPartition};
pub use inspect_data::{
    AppService, BaseInfo, DataInfo, DataSpace, RolePartition, StoredImage, SwapInfo,
};
pub use mkfs::{mkfs_ext4, MkfsReport, MkfsRequest, MkfsSize};
pub use outpath::remove_temporaries;
pub use plan::{Placed, Plan};
pub use seed::Seed;
pub use signed::{
    sign_dir, signature_temporary, temporary_key_paths, trusted_comment, write_key_pair,
    SIGNATURE_FILE,
};
pub use stamp::{
    partial_dir as stamp_partial_dir, read_devices, redact_secrets, stamp, Device, StampFormat,
    StampReport, StampRequest, StampedDevice, StaticIp, BOOT_LABELS,
};
pub use swap::{swap_header, SWAP_PAGE_SIZE};
pub use verify::{verify, Finding, Level, VerifyReport};
