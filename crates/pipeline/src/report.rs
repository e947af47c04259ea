//! What a build reports: the image, its partitions, the medium checked,
//! the delivered files. A leaf: it depends on nothing but the delivered
//! files' description.

use crate::deliver::Delivered;
use kiln_recipe::FsKind;
use std::path::PathBuf;

/// One written partition.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionReport {
    /// Linux partition number.
    pub number: u32,
    /// Filesystem label.
    pub label: String,
    /// Start in bytes.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
    /// `fat16`, `fat32` or `ext4`.
    pub fs: &'static str,
    /// Filesystem UUID (ext4) or volume id (FAT, `xxxx-xxxx`).
    pub fs_id: String,
    /// GPT partition GUID.
    pub part_guid: Option<String>,
    /// Bytes in use: allocated ext4 blocks, or FAT file content.
    pub used_bytes: u64,
}

/// What a build wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildReport {
    /// The image.
    pub image: PathBuf,
    /// Image size in bytes.
    pub disk_bytes: u64,
    /// The medium checked against, and its size.
    pub medium: Option<(String, u64)>,
    /// Media of the profile the image fits.
    pub fits: Vec<String>,
    /// Partitions.
    pub partitions: Vec<PartitionReport>,
    /// config.json with secrets redacted.
    pub config: serde_json::Value,
    /// Swapfile size in bytes (0: none).
    pub swap_bytes: u64,
    /// The preloaded images, one line each.
    pub app: Option<String>,
    /// Swap header UUID.
    pub swap_uuid: Option<String>,
    /// sha256 of the whole raw image (holes as zeros).
    pub image_sha256: String,
    /// Every delivered file.
    pub artifacts: Vec<Delivered>,
}

pub(crate) fn fs_name(fs: FsKind) -> &'static str {
    match fs {
        FsKind::Fat16 => "fat16",
        FsKind::Fat32 => "fat32",
        FsKind::Ext4 => "ext4",
    }
}

/// `1.5GiB`-style sizes for messages.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}
