//! The kiln build pipeline: from a validated board profile and recipe to
//! one partitioned raw disk image.
//!
//! [`build`] runs one build through these stages, each a module that
//! depends only on the ones below it:
//!
//! ```text
//!  build (entry) ---------> base (a base image's build)
//!    |  \_______________      |
//!    |                  \     |
//!    |              fresh     base/{source,merge,rebuilt,preload}
//!    |                  \     /      the disk source: a fresh disk or
//!    |                   \   /       a rebuilt base, one DiskWriter trait
//!    |              sizing, plan      one sizing policy, one medium check
//!    |                     |
//!    +------------> deliver/disk      positional or streamed, decided once
//!                          |           (deliver::format::Route)
//!        deliver/{fanout,hash,temps,paths,format}, sink, stream, manifest
//!                          |
//!        request, app, datatree, content     the request resolved once
//!                          |
//!             report, error, outpath, seed    leaves
//! ```
//!
//! The layout is planned first (sizes, offsets, the data partition sized
//! from what goes in plus headroom), and an image that would not fit the
//! target medium is refused before anything is written. The disk is then
//! written into a sparse temporary file beside the output (or streamed
//! into the sequential outputs), the partition table included, synced,
//! and every output renamed into place. On any error the temporary files
//! are removed. No module imports one above it: the entry modules
//! (`build`, `stamp`, `inspect`, `convert`, `mkfs`) are imported by no
//! other, and `base` only by `build`, which hands it a base image's build.
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
//!     on_bytes: None,
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

mod app;
mod base;
mod bootedit;
mod build;
mod content;
mod convert;
mod datatree;
mod deliver;
mod error;
mod fresh;
mod inspect;
mod inspect_data;
mod installer;
mod manifest;
mod mkfs;
mod outpath;
mod plan;
mod progress;
mod report;
mod request;
mod sbom;
mod seed;
mod signed;
mod sink;
mod sizing;
mod stamp;
mod stream;
mod swap;
mod verify;
mod vm_options;
mod work;

pub use bootedit::{edit_boot_partition, merge_json, BootEditReport, BootEdits};
pub use build::build;
pub use convert::{convert, ConvertReport};
pub use deliver::{temporary_paths, Delivered, Delivery, DiskFormat};
pub use error::Error;
pub use inspect::{inspect, inspect_disk, BootFile, FsInfo, InspectReport, InspectedPartition};
pub use inspect_data::{
    AppService, BaseInfo, DataInfo, DataSpace, RolePartition, StoredImage, SwapInfo,
};
pub use installer::build_installer;
pub use mkfs::{mkfs_ext4, MkfsReport, MkfsRequest, MkfsSize};
pub use outpath::remove_temporaries;
pub use plan::{Placed, Plan};
pub use progress::{OnBytes, StepBytes};
pub use report::{BuildReport, PartitionReport};
pub use request::BuildRequest;
pub use sbom::sbom_summary;
pub use seed::Seed;
pub use signed::{
    sign_dir, sign_dir_x509, signing_temporaries, temporary_key_paths, trusted_comment,
    write_key_pair, CMS_SIGNATURE_FILE, SIGNATURE_FILE,
};
pub use stamp::{
    partial_dir as stamp_partial_dir, read_devices, redact_secrets, stamp, Device, StampFormat,
    StampReport, StampRequest, StampedDevice, StaticIp, BOOT_LABELS,
};
pub use swap::{swap_header, SWAP_PAGE_SIZE};
pub use verify::{check_listed_bmap, verify, Finding, Level, VerifyReport};
