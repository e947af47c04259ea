//! The facts an SBOM is made from, gathered by the caller.

/// Which package database a package comes from (its purl type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PackageKind {
    /// Debian `var/lib/dpkg/status`.
    Deb,
    /// opkg `status` (OpenEmbedded, balenaOS).
    Opkg,
    /// Alpine `lib/apk/db/installed`.
    Apk,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    /// Package name.
    pub name: String,
    /// Version exactly as the database states it (with a Debian epoch).
    pub version: String,
    /// Architecture (`amd64`, `all`, `x86_64`, ...).
    pub arch: String,
    /// Which database listed it.
    pub kind: PackageKind,
    /// License as the database or the package's copyright file states it
    /// (free text, not necessarily an SPDX expression).
    pub license: Option<String>,
}

/// A set of packages read from one filesystem (sorted by name, version,
/// architecture), with the distribution it belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackageSet {
    /// `ID` of `os-release` (`debian`, `alpine`), the purl namespace.
    pub distro: Option<String>,
    /// `PRETTY_NAME` of `os-release`.
    pub pretty_name: Option<String>,
    /// `VERSION_ID` of `os-release`.
    pub version: Option<String>,
    /// The packages.
    pub packages: Vec<Package>,
}

/// One preloaded container image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerImage {
    /// Repository names the image is stored under (`bob/api`), sorted.
    pub names: Vec<String>,
    /// Tagged references (`bob/api:1.2`), sorted.
    pub tags: Vec<String>,
    /// Manifest digest, `sha256:<hex>`.
    pub manifest_digest: String,
    /// Image ID (config digest), `sha256:<hex>`.
    pub image_id: String,
    /// Platform, `linux/amd64`.
    pub platform: String,
    /// Layer diff IDs, base layer first, `sha256:<hex>`.
    pub layers: Vec<String>,
    /// What the image's merged filesystem holds.
    pub packages: PackageSet,
}

/// What a delivered file is to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileRole {
    /// Configuration kiln injected (`config.json`, network profiles).
    Config,
    /// A boot or firmware file.
    Boot,
}

/// One file on the image listed by digest (never by content).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileFact {
    /// Partition label and path, `resin-boot/config.json`.
    pub path: String,
    /// What it is.
    pub role: FileRole,
    /// sha256 hex; `None` when the file holds secrets (a digest of a
    /// low-entropy secret would let anyone confirm a guess).
    pub sha256: Option<String>,
}

/// Everything one SBOM describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The image's file name (`nuc.img`): the document's name.
    pub name: String,
    /// sha256 hex of the whole raw image: the document's identity.
    pub image_sha256: String,
    /// The build time (SOURCE_DATE_EPOCH), seconds since 1970.
    pub timestamp: i64,
    /// kiln's version.
    pub tool_version: String,
    /// The root filesystem kiln wrote; `None` in base-image mode (kiln
    /// did not write it) or when it has no package database.
    pub os: Option<PackageSet>,
    /// Base-image mode: the base image's file name.
    pub base: Option<String>,
    /// The application's name, when images are preloaded.
    pub app: Option<String>,
    /// The preloaded images, sorted by manifest digest.
    pub images: Vec<ContainerImage>,
    /// Configuration and boot files, sorted by path.
    pub files: Vec<FileFact>,
}
