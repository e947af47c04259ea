//! Software bills of materials for kiln images.
//!
//! A pure generator: the caller (kiln-pipeline) gathers the facts while it
//! writes the image (package database bytes, image digests, file
//! digests) and hands them over as [`Facts`]; this crate parses the
//! package databases and renders two documents, deterministically
//! (sorted inputs, ids by position, the document namespace and serial
//! number derived from the image digest, the time from the build's
//! SOURCE_DATE_EPOCH):
//!
//! - [`spdx_json`]: SPDX 2.3 JSON (module `spdx` has the element table),
//! - [`cyclonedx_json`]: CycloneDX 1.5 JSON (module `cdx`).
//!
//! Parsers (each module cites its format): [`parse_dpkg_status`] and
//! [`parse_opkg_status`] (deb822 status files), [`parse_debian_copyright`]
//! (machine-readable copyright files, for licenses),
//! [`parse_apk_installed`] (Alpine), [`PackageSet::with_os_release`];
//! [`summarize`] reads a CycloneDX BOM back for `kiln inspect --sbom`.
//!
//! ```
//! use kiln_sbom::{parse_dpkg_status, Facts, PackageSet};
//! let status = b"Package: bash\nStatus: install ok installed\nVersion: 5.2-2\nArchitecture: amd64\n";
//! let os = PackageSet { packages: parse_dpkg_status(status)?, ..Default::default() };
//! let facts = Facts {
//!     name: "nuc.img".into(),
//!     image_sha256: "0".repeat(64),
//!     timestamp: 1_700_000_000,
//!     tool_version: "0.1.0".into(),
//!     os: Some(os),
//!     base: None,
//!     app: None,
//!     images: vec![],
//!     files: vec![],
//! };
//! let spdx = kiln_sbom::spdx_json(&facts);
//! assert!(kiln_sbom::summarize(&kiln_sbom::cyclonedx_json(&facts))?.os.is_some());
//! # Ok::<(), kiln_sbom::Error>(())
//! ```
//!
//! # Errors
//! [`Error`]: a malformed package database (named, with its line) or a
//! file that is not a CycloneDX BOM.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod apk;
mod cdx;
mod dpkg;
mod error;
mod model;
mod spdx;
mod summary;
mod util;

pub use apk::parse_apk_installed;
pub use cdx::cyclonedx_json;
pub use dpkg::{parse_debian_copyright, parse_dpkg_status, parse_opkg_status};
pub use error::Error;
pub use model::{ContainerImage, Facts, FileFact, FileRole, Package, PackageKind, PackageSet};
pub use spdx::spdx_json;
pub use summary::{summarize, Summary};

/// What the SBOM says of a base image (base-image mode).
pub(crate) const BASE_NOTE: &str = "the vendor's base image kiln preloaded into; its root filesystem and existing containers are not listed (kiln does not read them)";

/// What the SBOM says of a file whose digest it omits.
pub(crate) const SECRET_NOTE: &str = "holds secret values: digest omitted";
