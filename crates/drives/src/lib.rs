//! Block-device discovery for `kiln drives`: which disks a user may
//! flash, found from a sysfs tree (`/sys` on a live system), udev's
//! database (`/run/udev/data`, optional) and parsed
//! `/proc/self/mountinfo`, all given as parameters so that tests feed
//! recorded trees. Nothing here needs root: sysfs, udev data and
//! mountinfo are world-readable.
//!
//! Each whole disk becomes a [`Drive`] with its transport (USB, SD, MMC,
//! NVMe, ...), model, serial, size, partitions (with their filesystem
//! labels when udev knows them) and mount points. The disk holding `/`,
//! mounted disks, read-only disks, empty card readers and disks smaller
//! than a given image carry an [`Exclusion`] with the reason; `kiln
//! flash` refuses the same targets ([`kiln_flash::safety`]). Removable
//! media (USB, SD, MMC, or the `removable` flag) sort first.
//!
//! Skipped entirely: unattached loop devices and other virtual devices
//! with no capacity (`zram`, `ram`), and the eMMC hardware boot
//! partitions (`mmcblkNbootM`, not user-writable by default).
//!
//! Main entry point: [`scan`].
//!
//! ```
//! use kiln_drives::{scan, Roots};
//! # let dir = tempfile::tempdir()?;
//! # std::fs::create_dir_all(dir.path().join("block"))?;
//! let roots = Roots::new(dir.path(), None, "/dev");
//! let drives = scan(&roots, &[], None)?;
//! assert!(drives.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Errors
//! [`Error::Io`] names a sysfs or udev path that cannot be read,
//! [`Error::Attribute`] an attribute whose content is not what the kernel
//! writes. A device that disappears during the scan is left out, not an
//! error.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![deny(missing_docs)]

mod drive;
mod error;
mod sysfs;
pub mod udev;

pub use drive::{Drive, Exclusion, Partition, Transport};
pub use error::{Error, Result};

use std::path::{Path, PathBuf};

use kiln_flash::mountinfo::MountEntry;

/// Where [`scan`] looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// The sysfs mount (`/sys`).
    pub sys: PathBuf,
    /// udev's database (`/run/udev/data`), if there is one.
    pub udev: Option<PathBuf>,
    /// Where device nodes are (`/dev`), for [`Drive::path`].
    pub dev: PathBuf,
}

impl Roots {
    /// Roots from the three paths.
    pub fn new(sys: impl Into<PathBuf>, udev: Option<&Path>, dev: impl Into<PathBuf>) -> Self {
        Self {
            sys: sys.into(),
            udev: udev.map(Path::to_owned),
            dev: dev.into(),
        }
    }
}

/// Lists the whole disks under `roots.sys`, classified against `mounts`
/// and, when given, the size of the image to flash (`image_bytes`):
/// eligible drives first (removable media before fixed disks), then the
/// excluded ones, each group by name.
///
/// # Errors
/// [`Error::Io`] or [`Error::Attribute`] naming the path.
pub fn scan(roots: &Roots, mounts: &[MountEntry], image_bytes: Option<u64>) -> Result<Vec<Drive>> {
    let mut drives = Vec::new();
    for name in sysfs::block_names(&roots.sys)? {
        if drive::is_boot_area(&name) {
            continue;
        }
        let Some(disk) = sysfs::read_disk(&roots.sys, &name)? else {
            continue;
        };
        if let Some(d) = drive::classify(disk, roots, mounts, image_bytes)? {
            drives.push(d);
        }
    }
    drives.sort_by(|a, b| {
        (a.excluded.is_some(), !a.is_removable_media(), &a.name).cmp(&(
            b.excluded.is_some(),
            !b.is_removable_media(),
            &b.name,
        ))
    });
    Ok(drives)
}
