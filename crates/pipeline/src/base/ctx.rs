//! What every step of a base build shares: the build's context, scratch
//! files, and the errors naming the base or the output.

use crate::app::App;
use crate::request::BuildRequest;
use crate::Error;
use kiln_base::{BasePartition, Layout, Role as BaseRole};
use kiln_ext4::Ext4Reader;
use kiln_tree::Timestamp;
use kiln_units::SubRegion;
use std::fs::File;
use std::path::{Path, PathBuf};

/// A partition of the base read back as a filesystem.
pub(super) type OldFs<'a> = Ext4Reader<SubRegion<&'a File>>;

/// Largest JSON file read from the base (bytes).
pub(super) const MAX_JSON: u64 = 16 << 20;

pub(super) fn base_err(path: &Path) -> impl FnOnce(kiln_base::Error) -> Error + '_ {
    move |e| {
        // kiln-base names the file in some messages already.
        let msg = e.to_string();
        let named = format!("{}: ", path.display());
        Error::Image {
            path: path.to_path_buf(),
            reason: msg.strip_prefix(&named).unwrap_or(&msg).to_string(),
        }
    }
}

pub(super) use crate::error::out_err;

/// A scratch file removed when dropped.
pub(super) struct Scratch {
    pub(super) path: PathBuf,
    pub(super) file: File,
}

impl Scratch {
    pub(super) fn create(path: PathBuf) -> Result<Self, Error> {
        let file = crate::outpath::create_exclusive(&path, &path)?;
        Ok(Self { path, file })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!("could not remove {}: {e}", self.path.display());
        }
    }
}

pub(super) fn base_io(base: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Image {
        path: base.to_path_buf(),
        reason: e.to_string(),
    }
}

/// What a build of a base carries to every step.
pub(super) struct Ctx<'a> {
    pub(super) req: &'a BuildRequest<'a>,
    pub(super) base: &'a Path,
    pub(super) config: &'a kiln_recipe::ResolvedConfig,
    pub(super) app: Option<&'a App>,
    pub(super) time: Timestamp,
    /// The SBOMs' facts, gathered while the data partition is written.
    pub(super) sbom: &'a crate::sbom::Collector,
    /// Fails when the base changed during the build.
    pub(super) unchanged: &'a dyn Fn() -> Result<(), Error>,
    /// The working disk's base is the raw output file itself (a
    /// compressed base expanded into it): the partition to rebuild is
    /// read from a copy set aside, and only the edits are written over.
    pub(super) in_output: bool,
}

pub(super) fn role<'a>(
    layout: &'a Layout,
    role: BaseRole,
    base: &Path,
) -> Result<&'a BasePartition, Error> {
    layout.role(role).ok_or_else(|| Error::Image {
        path: base.to_path_buf(),
        reason: format!("no {role:?} partition found by its label"),
    })
}

pub(super) fn old_err(label: &str) -> impl FnOnce(kiln_ext4::Error) -> Error + '_ {
    move |source| Error::Ext4 {
        partition: format!("{label} (base)"),
        source,
    }
}

pub(super) fn ext4_err(label: &str) -> impl FnOnce(kiln_ext4::Error) -> Error + '_ {
    move |source| Error::Ext4 {
        partition: label.to_string(),
        source,
    }
}
