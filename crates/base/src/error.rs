//! The crate's one error type.

use std::path::{Path, PathBuf};

use crate::{BaseFormat, Role};

/// Everything that can go wrong reading a base image. Messages are one
/// line naming the file, partition or label; causes are in `source()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Opening, reading or writing a file failed.
    #[error("{path}: cannot {op}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// A compressed or zipped input stopped decoding: truncated or corrupt.
    #[error("{path}: truncated or corrupt {format} input (decoding failed after {disk_offset} bytes of disk data)")]
    Corrupt {
        /// The input file.
        path: PathBuf,
        /// Its detected format.
        format: BaseFormat,
        /// How many disk bytes were decoded before the failure.
        disk_offset: u64,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },

    /// Setting up a decompressor failed.
    #[error("{path}: cannot decode {format} input")]
    Codec {
        /// The input file.
        path: PathBuf,
        /// Its detected format.
        format: BaseFormat,
        /// The cause.
        #[source]
        source: Box<kiln_artifact::Error>,
    },

    /// A qcow2/VMDK/VHD input is corrupt or unsupported.
    #[error("{path}: bad {format} virtual disk")]
    VirtualDisk {
        /// The input file.
        path: PathBuf,
        /// Its detected format.
        format: BaseFormat,
        /// The reader's error.
        #[source]
        source: kiln_vdisk::Error,
    },

    /// The zip archive cannot be read.
    #[error("{path}: bad zip archive")]
    Zip {
        /// The input file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: zip::result::ZipError,
    },

    /// A zip input must hold exactly one disk image member.
    #[error("{path}: a zip base image must hold exactly one *.img or *.raw member; it holds {members:?}")]
    ZipMembers {
        /// The input file.
        path: PathBuf,
        /// Every member name (up to the first 64).
        members: Vec<String>,
    },

    /// A compressed input holds a virtual-disk container, which needs
    /// random access.
    #[error("{path}: a {outer}-compressed {inner} image is not supported; decompress it first")]
    NestedContainer {
        /// The input file.
        path: PathBuf,
        /// The outer format.
        outer: BaseFormat,
        /// What it holds (`qcow2`, `VMDK`, `VHD`).
        inner: &'static str,
    },

    /// The disk is empty, shorter than one sector, or not a whole number
    /// of 512-byte sectors.
    #[error("{path}: disk data is {disk_bytes} bytes, not a whole number (>= 1) of 512-byte sectors: truncated or not a disk image")]
    BadDiskSize {
        /// The input file.
        path: PathBuf,
        /// The disk size found, in bytes.
        disk_bytes: u64,
    },

    /// Reading the (materialized) disk failed.
    #[error("cannot read the disk at byte {offset}")]
    Disk {
        /// Byte offset on the disk.
        offset: u64,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// Neither an MBR nor a GPT partition table could be read.
    #[error("unknown disk layout: no usable MBR or GPT partition table")]
    UnknownLayout {
        /// Why the table reader gave up.
        #[source]
        source: kiln_part::Error,
    },

    /// A partition the image must have was not found by label.
    #[error("no {role} partition (label {expected}); labels found: {found:?}")]
    MissingLabel {
        /// The role.
        role: Role,
        /// The labels accepted for it, `|`-separated.
        expected: &'static str,
        /// Every label found on the disk.
        found: Vec<String>,
    },

    /// Reading the FAT boot partition failed.
    #[error("partition {partition} ({label}): cannot read {file} from the FAT filesystem")]
    Fat {
        /// Partition number.
        partition: u32,
        /// Its label.
        label: String,
        /// The file being read (`/` for mounting).
        file: String,
        /// The cause.
        #[source]
        source: kiln_fat::Error,
    },

    /// Reading an ext4 partition failed.
    #[error("partition {partition} ({label}): cannot read {file} from the ext4 filesystem")]
    Ext4 {
        /// Partition number.
        partition: u32,
        /// Its label.
        label: String,
        /// The file being read (`/` for mounting).
        file: String,
        /// The cause.
        #[source]
        source: ext4_view::Ext4Error,
    },

    /// A JSON file of the image does not parse.
    #[error("partition {partition} ({label}): {file} is not valid JSON")]
    Json {
        /// Partition number.
        partition: u32,
        /// Its label.
        label: String,
        /// The file.
        file: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },

    /// A file of the image is larger than the reader accepts.
    #[error("partition {partition} ({label}): {file} is {size_bytes} bytes, more than the {limit_bytes} accepted")]
    TooLarge {
        /// Partition number.
        partition: u32,
        /// Its label.
        label: String,
        /// The file.
        file: String,
        /// Its size.
        size_bytes: u64,
        /// The limit.
        limit_bytes: u64,
    },

    /// The boot partition names no device type.
    #[error("partition {partition} ({label}): neither device-type.json nor config.json names the device type")]
    NoDeviceType {
        /// Partition number.
        partition: u32,
        /// Its label.
        label: String,
    },

    /// More than one candidate inner image in a flasher.
    #[error("partition {partition} ({label}): several images under /opt: {found:?}")]
    AmbiguousInner {
        /// Partition number.
        partition: u32,
        /// Its label.
        label: String,
        /// The candidates.
        found: Vec<String>,
    },

    /// A flasher operation on an image that is not a flasher.
    #[error("not a flasher image (no flash-boot partition)")]
    NotFlasher,

    /// Writing the output failed.
    #[error("cannot write the output at byte {offset}")]
    Write {
        /// Byte offset in the output.
        offset: u64,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Maps an I/O error of `op` on the input `path` to [`Error::Io`].
    pub(crate) fn io<'a>(
        path: &'a Path,
        op: &'static str,
    ) -> impl FnOnce(std::io::Error) -> Error + 'a {
        move |source| Error::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }
}
