//! The one public error type of this crate.

use std::io;
use std::path::PathBuf;

/// Errors of `kiln-drives`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A sysfs or udev file or directory could not be read.
    #[error("{}: cannot read", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A sysfs attribute does not hold what the kernel writes there
    /// (`dev` as `MAJOR:MINOR`, `size` as a count of 512-byte sectors).
    #[error("{}: unexpected content {content:?}", path.display())]
    Attribute {
        /// The attribute file.
        path: PathBuf,
        /// What it holds (trimmed, at most 64 bytes).
        content: String,
    },
}

impl Error {
    /// The process exit code for this error: sysfs that cannot be read
    /// or parsed is an environment fault, not bad user input (1).
    pub fn exit_code(&self) -> i32 {
        1
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
