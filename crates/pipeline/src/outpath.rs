//! Output paths: kiln only ever creates or replaces **regular files**.
//!
//! Every file a command writes goes first to a hidden temporary name
//! beside its destination (`.NAME.kiln-partial`, same directory, so the
//! final rename is atomic) and is renamed into place only when every
//! output succeeded. This module is the one place that
//! - refuses a destination that exists and is not a regular file (a
//!   device node, a directory, a FIFO, a socket, a symbolic link): a
//!   rename would replace `/dev/sdX` or `/dev/null` with a file, so the
//!   check runs before any work ([`check_all`]) and again right before
//!   each rename ([`check_replaceable`]);
//! - removes a stale temporary file a killed earlier run left behind, and
//!   creates the new one exclusively (`O_CREAT|O_EXCL`: a planted symbolic
//!   link at the temporary name is never followed).
//!
//! Symbolic links are refused as destinations too: replacing the link
//! (what `rename` does) is not what a user who points `-o` at a link to a
//! device expects, and following it would write through to whatever it
//! names.

use crate::Error;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

fn refused(path: &Path, ft: std::fs::FileType) -> Error {
    Error::NotRegular {
        path: path.to_path_buf(),
        what: kind(ft),
    }
}

/// Refuses `path` when something other than a regular file stands there
/// (nothing there is fine: it will be created).
pub(crate) fn check_replaceable(path: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(()),
        Ok(m) => Err(refused(path, m.file_type())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Output {
            path: path.to_path_buf(),
            op: "cannot check the output path",
            source,
        }),
    }
}

/// What stands at a path of type `ft`, for the error text.
fn kind(ft: std::fs::FileType) -> &'static str {
    match kiln_units::FileKind::of(ft) {
        kiln_units::FileKind::Directory => "a directory",
        kiln_units::FileKind::Symlink => "a symbolic link (name the file itself)",
        kiln_units::FileKind::BlockDevice => "a block device (use `kiln flash` to write a device)",
        kiln_units::FileKind::CharDevice => "a character device",
        kiln_units::FileKind::Fifo => "a FIFO",
        kiln_units::FileKind::Socket => "a socket",
        kiln_units::FileKind::Regular => "a regular file",
    }
}

/// Refuses an existing file that is not a regular file where kiln must
/// write *into* an existing file (e.g. `kiln mkfs --offset`).
pub(crate) fn check_existing_regular(path: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(()),
        Ok(m) => Err(refused(path, m.file_type())),
        Err(source) => Err(Error::Output {
            path: path.to_path_buf(),
            op: "cannot open the target image",
            source,
        }),
    }
}

/// Refuses an output *directory* path (`kiln stamp -o DIR`) that exists
/// and is not a directory.
pub(crate) fn check_dir_target(path: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => Ok(()),
        Ok(m) => Err(refused(path, m.file_type())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Output {
            path: path.to_path_buf(),
            op: "cannot check the output directory",
            source,
        }),
    }
}

/// The hidden temporary name of `dest`: `.NAME.kiln-partial` beside it.
pub(crate) fn partial_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.kiln-partial"))
}

/// The scratch files a base build may make beside its output
/// ([`scratch_path`]).
pub(crate) const SCRATCH: [&str; 3] = ["edits", "base", "old"];

/// A scratch file of the build writing `out`: `.NAME.kiln-WHAT` beside it
/// (base-image mode's working files).
pub(crate) fn scratch_path(out: &Path, what: &str) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!(".{name}.kiln-{what}"))
}

/// Removes the temporary file `tmp` an interrupted earlier run left (a
/// regular file or a link; anything else there is refused).
pub(crate) fn remove_stale(tmp: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(tmp) {
        Ok(m) if m.file_type().is_file() || m.file_type().is_symlink() => std::fs::remove_file(tmp)
            .map_err(|source| Error::Output {
                path: tmp.to_path_buf(),
                op: "cannot remove the stale temporary file of an earlier run",
                source,
            }),
        Ok(m) => Err(refused(tmp, m.file_type())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Output {
            path: tmp.to_path_buf(),
            op: "cannot check the temporary output path",
            source,
        }),
    }
}

/// Removes the temporary files `tmps` of a run being interrupted (only
/// regular files: nothing else is ever a kiln temporary). Errors are
/// ignored: the next run over the same outputs removes what is left.
pub fn remove_temporaries(tmps: &[PathBuf]) {
    for t in tmps {
        if std::fs::symlink_metadata(t).is_ok_and(|m| m.file_type().is_file()) {
            remove_partial(t);
        }
    }
}

/// Checks every destination of a command before it does any work, and
/// removes their stale temporary files: an interrupted run leaves only
/// hidden `.kiln-partial` files, and the next run over the same outputs
/// removes them.
pub(crate) fn check_all<'a>(dests: impl IntoIterator<Item = &'a Path>) -> Result<(), Error> {
    for d in dests {
        check_replaceable(d)?;
        remove_stale(&partial_path(d))?;
    }
    Ok(())
}

/// Creates the temporary file of `dest` (read/write, exclusively: a
/// stale one is removed first, a planted link is never followed).
pub(crate) fn create_partial(dest: &Path) -> Result<(PathBuf, File), Error> {
    check_replaceable(dest)?;
    let tmp = partial_path(dest);
    let file = create_exclusive(&tmp, dest)?;
    Ok((tmp, file))
}

/// Creates `tmp` read/write and exclusively (a stale file there is
/// removed first; a planted link is never followed); errors name `dest`,
/// the file the user asked for.
pub(crate) fn create_exclusive(tmp: &Path, dest: &Path) -> Result<File, Error> {
    remove_stale(tmp)?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|source| Error::Output {
            path: dest.to_path_buf(),
            op: "cannot create the output file",
            source,
        })
}

/// Removes a temporary file on a failed or abandoned run (a failure to
/// remove it is logged: the next run over the same output removes it).
pub(crate) fn remove_partial(tmp: &Path) {
    if let Err(e) = std::fs::remove_file(tmp) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("could not remove {}: {e}", tmp.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_and_missing_paths_are_replaceable() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.img");
        check_replaceable(&f).unwrap();
        std::fs::write(&f, b"x").unwrap();
        check_replaceable(&f).unwrap();
    }

    #[test]
    fn directories_links_and_devices_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let e = check_replaceable(d.path()).unwrap_err().to_string();
        assert!(e.contains("directory"), "{e}");
        let link = d.path().join("l");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        let e = check_replaceable(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        let e = check_replaceable(Path::new("/dev/null"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("character device"), "{e}");
    }

    #[test]
    fn a_stale_partial_is_replaced_and_a_planted_link_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        let dest = d.path().join("a.img");
        std::os::unix::fs::symlink(&victim, partial_path(&dest)).unwrap();
        let (tmp, mut f) = create_partial(&dest).unwrap();
        std::io::Write::write_all(&mut f, b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        assert_eq!(std::fs::read(&tmp).unwrap(), b"new");
        assert!(!std::fs::symlink_metadata(&tmp)
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
