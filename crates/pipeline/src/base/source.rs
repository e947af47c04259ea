//! The base image as the working disk reads it: in place when raw, else
//! expanded (kiln-base) into the raw output or a scratch file; its digest
//! for the manifest, and the check that a raw base did not change.

use super::ctx::{base_err, base_io, out_err, Scratch};
use crate::deliver::disk::TempImage;
use crate::manifest::BaseFacts;
use crate::Error;
use kiln_artifact::digest::Sha256Digest;
use std::fs::File;
use std::path::Path;

/// The base image as the working disk reads it: the file itself when it
/// is a raw image, else the file it was expanded into: the raw output
/// file when delivery writes one, else a scratch file.
pub(super) struct BaseSource {
    pub(super) file: File,
    /// `file` is the output's raw image file.
    pub(super) in_output: bool,
    /// The expanded copy (removed when the build ends).
    pub(super) _expanded: Option<Scratch>,
    /// The input's digest, or the thread computing it (a raw base is
    /// hashed beside the build rather than while being copied).
    pub(super) sha256: std::cell::RefCell<Digesting>,
    /// A raw base's size and modification time when opened: it is read
    /// again while delivering, and must not have changed.
    pub(super) stamp: Option<(u64, Option<std::time::SystemTime>)>,
}

/// [`BaseSource`]'s input digest.
pub(super) enum Digesting {
    Done([u8; 32]),
    Running(std::thread::JoinHandle<Result<(Sha256Digest, u64), Error>>),
    Taken,
}

impl BaseSource {
    /// `output`: the raw output file (and its final name), if delivery
    /// writes one.
    pub(super) fn open(
        base: &Path,
        scratch: &dyn Fn(&str) -> Result<Scratch, Error>,
        output: Option<(&mut TempImage, &Path)>,
    ) -> Result<Self, Error> {
        if let Some((file, _)) = kiln_base::open_raw(base).map_err(base_err(base))? {
            let meta = file.metadata().map_err(base_io(base))?;
            let path = base.to_path_buf();
            let hashing = std::thread::Builder::new()
                .name("base-digest".into())
                .spawn(move || crate::manifest::file_digest(&path))
                .map_err(base_io(base))?;
            return Ok(Self {
                file,
                in_output: false,
                _expanded: None,
                sha256: std::cell::RefCell::new(Digesting::Running(hashing)),
                stamp: Some((meta.len(), meta.modified().ok())),
            });
        }
        if let Some((tmp, name)) = output {
            let f = tmp.file()?;
            let mat = expand(base, f, name)?;
            return Ok(Self {
                file: f
                    .try_clone()
                    .map_err(out_err(name, "cannot reopen the output file"))?,
                in_output: true,
                _expanded: None,
                sha256: std::cell::RefCell::new(Digesting::Done(mat.input_sha256)),
                stamp: None,
            });
        }
        let expanded = scratch("base")?;
        let mat = expand(base, &expanded.file, &expanded.path)?;
        Ok(Self {
            file: expanded
                .file
                .try_clone()
                .map_err(out_err(&expanded.path, "cannot reopen a scratch file"))?,
            in_output: false,
            _expanded: Some(expanded),
            sha256: std::cell::RefCell::new(Digesting::Done(mat.input_sha256)),
            stamp: None,
        })
    }

    /// What the manifest records of the base.
    pub(super) fn facts(&self, base: &Path) -> Result<BaseFacts, Error> {
        let mut d = self.sha256.borrow_mut();
        let sha = match std::mem::replace(&mut *d, Digesting::Taken) {
            Digesting::Done(s) => s,
            Digesting::Running(h) => {
                h.join()
                    .unwrap_or_else(|_| {
                        Err(base_io(base)(std::io::Error::other(
                            "the digest thread panicked",
                        )))
                    })?
                    .0
                     .0
            }
            Digesting::Taken => {
                return Err(base_io(base)(std::io::Error::other(
                    "internal: the base digest was taken twice",
                )))
            }
        };
        *d = Digesting::Done(sha);
        Ok(BaseFacts {
            path: base.to_path_buf(),
            sha256: Sha256Digest(sha),
            size_bytes: std::fs::metadata(base).map(|m| m.len()).unwrap_or(0),
        })
    }

    /// Fails when a raw base read in place changed since it was opened.
    pub(super) fn unchanged(&self, base: &Path) -> Result<(), Error> {
        let Some(then) = self.stamp else {
            return Ok(());
        };
        let meta = self.file.metadata().map_err(base_io(base))?;
        if (meta.len(), meta.modified().ok()) != then {
            return Err(Error::Image {
                path: base.to_path_buf(),
                reason: "the base image changed during the build".into(),
            });
        }
        Ok(())
    }
}

/// Expands the (non-raw) base into `into` (named `name` in errors):
/// a write failure (a full disk) names that file, anything else the base.
pub(super) fn expand(
    base: &Path,
    into: &File,
    name: &Path,
) -> Result<kiln_base::Materialized, Error> {
    kiln_base::materialize(base, into).map_err(|e| match e {
        kiln_base::Error::Write { source, .. } => Error::Output {
            path: name.to_path_buf(),
            op: "cannot expand the base image into it",
            source,
        },
        e => base_err(base)(e),
    })
}
