//! Shared building blocks of kiln: byte sizes, sector addresses, GUIDs and
//! positional I/O.
//!
//! This crate is deliberately tiny (see STYLE.md rule 3): only newtypes and
//! traits that several format crates need to agree on live here.
//!
//! ```
//! use kiln_units::{ByteSize, MIB};
//! let s: ByteSize = "40MiB".parse().unwrap();
//! assert_eq!(s.bytes(), 40 * MIB);
//! assert_eq!(s.align_up(4 * MIB).bytes(), 40 * MIB);
//! ```
//!
//! # Errors
//! [`ParseSizeError`] for malformed sizes, [`ParseGuidError`] for malformed
//! GUIDs; positional I/O returns [`std::io::Error`].

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod file_kind;
mod guid;
mod io;
mod size;

pub use file_kind::FileKind;
pub use guid::{Guid, ParseGuidError};
pub use io::{ReadAt, SubRegion, WriteAt};
pub use size::{align_up, ByteSize, Lba, ParseSizeError, SectorSize, GIB, KIB, MIB, TIB};

/// The directory holding `path`: its parent, or `.` for a bare file name
/// (where kiln puts temporary siblings, and what a qcow2 overlay's
/// relative backing file name is resolved against).
#[must_use]
pub fn parent_dir(path: &std::path::Path) -> &std::path::Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
}
