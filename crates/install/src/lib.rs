//! `kiln install`: what the USB installer image (`kiln build
//! --installer`) runs at boot to put the OS onto the machine's internal
//! disk, safely.
//!
//! - [`Settings`]: the installer's settings file ([`SETTINGS_PATH`] in
//!   its root filesystem), written by the build, read by the install.
//! - [`candidates`] classifies the disks [`kiln_drives::scan`] lists:
//!   internal NVMe/SATA/virtio disks that are not the installer's own,
//!   not mounted and large enough ([`Reason`] says why a disk is not);
//!   [`choose`] applies a target rule, [`guard_partitions`] the
//!   `allow-data-loss` guard.
//! - [`pick`] shows the disks on a [`Console`] and asks before writing
//!   (unless unattended); [`write()`] writes the inner image with the
//!   `kiln-flash` engine (mapped blocks only, read-back verify) and puts
//!   the installer's config.json into the target's boot partition.
//!
//! Nothing here runs tools, reads the clock or the environment: the
//! console, the sysfs scan, the time and the files are parameters.
//!
//! ```
//! use kiln_install::{Settings, SETTINGS_PATH};
//! let s = Settings::new(&Default::default(), "/opt/kiln-nuc.img", 4096, "00");
//! let back = Settings::parse(&s.to_json(), SETTINGS_PATH.as_ref())?;
//! assert_eq!(back.bmap, "/opt/kiln-nuc.img.bmap");
//! # Ok::<(), kiln_install::Error>(())
//! ```
//!
//! # Errors
//! [`Error`]: bad settings or bmap, no or a refused target, a "no"
//! answer (exit 2); failures writing or verifying the target (exit 3).

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![deny(missing_docs)]

mod error;
mod run;
mod select;
mod settings;

pub use error::{Error, Result};
pub use kiln_tree::Timestamp;
pub use run::{pick, read_config, write, Console, InstallReport, Job};
pub use select::{candidates, choose, guard_partitions, guard_table, Candidate, Reason};
pub use settings::{Settings, BINARY_PATH, MAX_SETTINGS_BYTES, SETTINGS_PATH, UNIT_NAME};
