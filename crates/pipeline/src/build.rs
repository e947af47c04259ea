//! The `build` entry: the outputs checked, then the disk written by its
//! source (a fresh disk, [`crate::fresh`], or a rebuilt base image,
//! [`crate::base`]) and delivered ([`crate::deliver`]).
//!
//! Either way the disk is written into a temporary file beside the
//! output (or streamed into the outputs), the partition table written,
//! then everything renamed into place. Any failure removes the temporary
//! files, so no partial image is left.

use crate::report::BuildReport;
use crate::request::{delivery_for, BuildRequest};
use crate::Error;

/// Runs a build. `progress` receives one line per stage.
pub fn build(req: &BuildRequest<'_>, progress: &mut dyn FnMut(&str)) -> Result<BuildReport, Error> {
    crate::deliver::check_outputs(&req.output, &delivery_for(req)?)?;
    if let Some(base) = req
        .base
        .clone()
        .or_else(|| req.recipe.base.as_ref().map(|b| b.image.path.clone()))
    {
        return crate::base::build_base(req, &base, progress);
    }
    crate::fresh::build_fresh(req, progress)
}
