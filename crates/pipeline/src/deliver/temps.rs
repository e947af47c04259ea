//! Delivered files, and the temporary outputs renamed into place in an
//! order that never leaves an index disagreeing with its files.

use crate::Error;
use kiln_artifact::digest::Sha256Digest;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One delivered file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Delivered {
    /// Path.
    pub path: PathBuf,
    /// Content format (`raw`, `qcow2`, ..., `bmap`).
    pub format: &'static str,
    /// Size of the file in bytes.
    pub size_bytes: u64,
    /// sha256 of the file as written.
    pub sha256: String,
    #[serde(skip)]
    pub(crate) digest: Option<Sha256Digest>,
    #[serde(skip)]
    pub(crate) artifact_format: Option<kiln_artifact::manifest::ArtifactFormat>,
    #[serde(skip)]
    pub(crate) compression: kiln_artifact::compress::Compression,
}

impl Delivered {
    /// A small generated file (manifest, checksums) with its digest.
    pub(crate) fn file(path: PathBuf, format: &'static str, bytes: &[u8]) -> Self {
        let digest = Sha256Digest::of(bytes);
        Self {
            path,
            format,
            size_bytes: bytes.len() as u64,
            sha256: digest.to_hex(),
            digest: Some(digest),
            artifact_format: None,
            compression: kiln_artifact::compress::Compression::None,
        }
    }
}

/// One temporary output waiting for its rename.
pub(super) struct Pending {
    pub(super) tmp: PathBuf,
    pub(super) dest: PathBuf,
    /// A file that describes other outputs (bmap, manifest,
    /// `SHA256SUMS`) rather than holding data.
    pub(super) index: bool,
}

/// Temporary files removed unless committed, and earlier outputs to
/// remove once they are.
///
/// The commit ([`Temps::commit`]) cannot rename a set of files
/// atomically, so it orders the renames such that an interruption at any
/// point leaves no index that disagrees with the files it describes: the
/// old indexes being replaced (bmap, manifest, `SHA256SUMS`) are removed
/// first, then the data files (disk images, compressed image) are renamed,
/// then the new indexes, `SHA256SUMS` last. Killed in between, each file
/// is wholly old or wholly new, and every bmap, manifest or checksum list
/// present is true of the files beside it (a missing one says the set is
/// incomplete; `kiln flash` never pairs an old bmap with a new image).
pub(crate) struct Temps {
    pub(super) pending: Vec<Pending>,
    pub(super) stale: Vec<PathBuf>,
}

impl Temps {
    pub(crate) fn new() -> Self {
        Self {
            pending: Vec::new(),
            stale: Vec::new(),
        }
    }
    /// Removes `stale` (an earlier build's output this one does not
    /// write again) after a successful commit, never before.
    pub(crate) fn remove_on_commit(&mut self, stale: PathBuf) {
        self.stale.push(stale);
    }
    /// Creates the temporary file of the data output `dest`
    /// ([`crate::outpath`]: only a regular file is ever replaced),
    /// registered for cleanup and for the rename into place.
    pub(crate) fn create(&mut self, dest: &Path) -> Result<(PathBuf, File), Error> {
        self.create_as(dest, false)
    }
    /// As [`Temps::create`], for an index over other outputs (the bmap).
    pub(crate) fn create_index(&mut self, dest: &Path) -> Result<(PathBuf, File), Error> {
        self.create_as(dest, true)
    }
    pub(super) fn create_as(&mut self, dest: &Path, index: bool) -> Result<(PathBuf, File), Error> {
        let (tmp, file) = crate::outpath::create_partial(dest)?;
        self.pending.push(Pending {
            tmp: tmp.clone(),
            dest: dest.to_path_buf(),
            index,
        });
        Ok((tmp, file))
    }
    /// Registers a data output created elsewhere (the disk image written
    /// in place) for the rename into place and for cleanup.
    pub(crate) fn adopt(&mut self, tmp: PathBuf, dest: PathBuf) {
        self.pending.push(Pending {
            tmp,
            dest,
            index: false,
        });
    }
    /// Writes `bytes` as the temporary file of the index `dest` (manifest,
    /// `SHA256SUMS`).
    pub(crate) fn write(
        &mut self,
        dest: &Path,
        bytes: &[u8],
        op: &'static str,
    ) -> Result<(), Error> {
        let (_, mut f) = self.create_index(dest)?;
        f.write_all(bytes).map_err(out_err(dest, op))
    }
    /// Renames every temporary file into place, in the order the type's
    /// doc gives (every destination checked first: still nothing but a
    /// regular file is replaced), then removes the stale outputs.
    pub(crate) fn commit(mut self) -> Result<(), Error> {
        let pending = std::mem::take(&mut self.pending);
        for p in &pending {
            crate::outpath::check_replaceable(&p.dest)?;
        }
        let (indexes, data): (Vec<_>, Vec<_>) = pending.into_iter().partition(|p| p.index);
        for p in &indexes {
            remove_output(&p.dest, "cannot remove the index being replaced")?;
        }
        // Renamed in order; on a failure the ones not yet renamed stay
        // pending, so their temporary files are removed on drop.
        self.pending = data.into_iter().chain(indexes).rev().collect();
        while let Some(p) = self.pending.last() {
            std::fs::rename(&p.tmp, &p.dest).map_err(|source| Error::Output {
                path: p.dest.clone(),
                op: "cannot move the finished file into place",
                source,
            })?;
            self.pending.pop();
        }
        for stale in std::mem::take(&mut self.stale) {
            remove_output(
                &stale,
                "cannot remove this output of an earlier build, which the new one does not write",
            )?;
        }
        Ok(())
    }
}

/// Removes the output `path` if it is a regular file.
pub(super) fn remove_output(path: &Path, op: &'static str) -> Result<(), Error> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => {
            std::fs::remove_file(path).map_err(|source| Error::Output {
                path: path.to_path_buf(),
                op,
                source,
            })
        }
        _ => Ok(()),
    }
}

impl Drop for Temps {
    fn drop(&mut self) {
        for p in &self.pending {
            crate::outpath::remove_partial(&p.tmp);
        }
    }
}

pub(super) use crate::error::out_err;

pub(super) fn vdisk_err(path: &Path) -> impl FnOnce(kiln_vdisk::Error) -> Error + '_ {
    move |e| Error::Output {
        path: path.to_path_buf(),
        op: "cannot write the disk image format",
        source: std::io::Error::other(crate::error::chain(&e)),
    }
}

pub(super) fn artifact_err(path: &Path) -> impl FnOnce(kiln_artifact::Error) -> Error + '_ {
    move |e| Error::Output {
        path: path.to_path_buf(),
        op: "cannot write the artifact",
        source: std::io::Error::other(crate::error::chain(&e)),
    }
}
