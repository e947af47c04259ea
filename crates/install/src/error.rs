//! The one public error type of this crate.

use std::io;
use std::path::PathBuf;

/// Errors of `kiln-install`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The installer's settings file is not valid.
    #[error("{}: {reason}", path.display())]
    Settings {
        /// The settings file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An installer file (settings, image, bmap, config.json source)
    /// cannot be read.
    #[error("{}: cannot read", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The inner image's bmap is not valid or does not match the image.
    #[error("{}: bad block map", path.display())]
    Bmap {
        /// The bmap file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: kiln_artifact::Error,
    },
    /// The disks could not be listed.
    #[error("cannot list the disks")]
    Drives(#[from] kiln_drives::Error),
    /// No disk matches the target rule.
    #[error("no installable disk matches the target {rule:?} (see the list above)")]
    NoTarget {
        /// The rule, as written.
        rule: String,
    },
    /// No disk can be installed onto at all.
    #[error("no installable disk found (see the list above)")]
    NoCandidates,
    /// The chosen disk is not a valid target.
    #[error("{}: refused: {reason}", path.display())]
    Refused {
        /// The disk.
        path: PathBuf,
        /// Why.
        reason: crate::Reason,
    },
    /// The console answer was not yes.
    #[error("installation cancelled: nothing was written")]
    Declined,
    /// The console could not be read or written.
    #[error("console I/O failed")]
    Console(#[source] io::Error),
    /// The target cannot be opened, sized or written outside the engine.
    #[error("{}: {op}", path.display())]
    Target {
        /// The disk.
        path: PathBuf,
        /// What failed.
        op: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing or verifying the image failed.
    #[error("{}: writing the image failed", path.display())]
    Flash {
        /// The disk.
        path: PathBuf,
        /// The cause (boxed: it is large).
        #[source]
        source: Box<kiln_flash::Error>,
    },
    /// The installer's config.json could not be read or placed.
    #[error("{}: config.json", what.display())]
    Config {
        /// The FAT volume read or written.
        what: PathBuf,
        /// The cause.
        #[source]
        source: kiln_fat::Error,
    },
    /// The written disk's partition table or boot partition is not what
    /// the image holds.
    #[error("{}: {reason}", path.display())]
    Layout {
        /// The disk or image.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
}

impl Error {
    /// Process exit code: 2 for bad input (settings, bmap, no or refused
    /// target, a "no" answer), 3 for failures writing the target, 1 for
    /// an environment fault (sysfs, the console).
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Settings { .. }
            | Self::Read { .. }
            | Self::Bmap { .. }
            | Self::NoTarget { .. }
            | Self::NoCandidates
            | Self::Refused { .. }
            | Self::Declined
            | Self::Layout { .. } => 2,
            Self::Target { .. } | Self::Flash { .. } | Self::Config { .. } => 3,
            Self::Drives(_) | Self::Console(_) => 1,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
