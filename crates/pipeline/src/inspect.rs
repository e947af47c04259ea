//! Reading an image back: partition table, filesystems, boot files,
//! `config.json`. Works on images made by kiln and by standard tools, raw
//! or qcow2/VMDK/VHD (read through kiln-vdisk, nothing converted; a qcow2
//! overlay through its backing file), or
//! compressed/zipped (expanded into a scratch file the caller gives).
//!
//! Base images (a vendor's balenaOS image, see kiln-base) are understood
//! too: the partitions' roles by label, the device type from the boot
//! partition, the OS release from rootA, the data partition's engine
//! store, `apps.json` and free space (ext4 superblock free blocks × block
//! size), and a flasher's inner image.

use crate::error::chain;
use crate::Error;
use kiln_fat::{FatEntryKind, FatReader, ListLimits};
use kiln_part::{read_table, PartitionType, Scheme};
use kiln_units::{ReadAt, SubRegion};
use serde::Serialize;
use std::path::Path;

/// ext4 superblock facts (kernel Documentation/filesystems/ext4/super.rst:
/// the superblock is at byte 1024; `s_magic` at +0x38, `s_uuid` at +0x68,
/// `s_volume_name` at +0x78, `s_blocks_count_lo` +0x4, `s_log_block_size`
/// +0x18, `s_blocks_count_hi` +0x150). Only these fields are read, to
/// label partitions; the ext4 crate owns everything else.
const EXT4_SB: u64 = 1024;
const EXT4_MAGIC: u16 = 0xEF53;

/// A filesystem found in a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FsInfo {
    /// FAT12/16/32.
    Fat {
        /// `fat16` or `fat32`.
        variant: String,
        /// Volume label (from the root directory entry or the boot sector).
        label: Option<String>,
        /// Volume id as `XXXX-XXXX`.
        id: String,
    },
    /// ext2/3/4.
    Ext4 {
        /// Volume label.
        label: String,
        /// Filesystem UUID.
        uuid: String,
        /// Filesystem size in bytes.
        size: u64,
    },
    /// Nothing recognised.
    Unknown,
}

/// One partition of an inspected image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InspectedPartition {
    /// Linux partition number.
    pub number: u32,
    /// Start in bytes.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
    /// `0x0c`-style MBR type or GPT type GUID.
    pub type_id: String,
    /// GPT name.
    pub name: Option<String>,
    /// GPT partition GUID.
    pub guid: Option<String>,
    /// Active / legacy-bootable.
    pub bootable: bool,
    /// Logical partition inside the extended one.
    pub logical: bool,
    /// The filesystem in it.
    pub fs: FsInfo,
}

/// A file of the boot partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootFile {
    /// Path from the partition root.
    pub path: String,
    /// Size in bytes; `None` for directories.
    pub size: Option<u64>,
}

/// What `kiln inspect` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InspectReport {
    /// Image size in bytes.
    pub disk_bytes: u64,
    /// `mbr` or `gpt`.
    pub table: String,
    /// MBR disk signature (`0x...`) or GPT disk GUID.
    pub disk_id: String,
    /// Partitions (the MBR extended container is left out).
    pub partitions: Vec<InspectedPartition>,
    /// Files of the boot partition (the first FAT partition).
    pub boot_files: Vec<BootFile>,
    /// Its `config.json`, secrets redacted.
    pub config: Option<serde_json::Value>,
    /// The data partition (label `resin-data`/`balena-data`): preloaded
    /// images, apps, swapfile.
    pub data: Option<crate::inspect_data::DataInfo>,
    /// The balenaOS view of the image, when its layout is one.
    pub base: Option<crate::inspect_data::BaseInfo>,
}

impl InspectReport {
    /// Human-readable lines for the balenaOS view (`kiln inspect` prints
    /// them after the data partition); empty without one.
    pub fn base_lines(&self) -> Vec<String> {
        self.base
            .as_ref()
            .map(crate::inspect_data::BaseInfo::lines)
            .unwrap_or_default()
    }
}

/// Largest config.json read (bytes).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Inspects the image at `path`: raw, qcow2, VMDK or VHD (sniffed by
/// magic), read in place. A compressed or zipped image has no random
/// access: it is expanded (sparse) into `scratch`, an empty file the
/// caller made (and removes), or refused when there is none. A qcow2
/// overlay's backing file is looked up under `backing`.
pub fn inspect(
    path: &Path,
    scratch: Option<&std::fs::File>,
    backing: kiln_vdisk::BackingOptions,
) -> Result<InspectReport, Error> {
    use kiln_base::BaseFormat;
    let file = std::fs::File::open(path).map_err(|source| Error::Output {
        path: path.to_path_buf(),
        op: "cannot open image",
        source,
    })?;
    let format = kiln_base::sniff(path).map_err(|e| Error::Image {
        path: path.to_path_buf(),
        reason: chain(&e),
    })?;
    match format {
        BaseFormat::Raw => inspect_disk(std::rc::Rc::new(file), path),
        BaseFormat::Qcow2 | BaseFormat::Vmdk | BaseFormat::Vhd | BaseFormat::Vhdx => {
            let img = kiln_vdisk::open_with_backing(file, kiln_units::parent_dir(path), backing)
                .map_err(|e| Error::Image {
                    path: path.to_path_buf(),
                    reason: format!("bad {format} image: {}", chain(&e)),
                })?;
            inspect_disk(std::rc::Rc::new(img), path)
        }
        BaseFormat::Xz | BaseFormat::Gz | BaseFormat::Zst | BaseFormat::Zip => {
            let Some(scratch) = scratch else {
                return Err(Error::Image {
                    path: path.to_path_buf(),
                    reason: format!(
                        "{format} input cannot be inspected in place: decompress it first (xz -dk, gunzip -k, zstd -d, unzip)"
                    ),
                });
            };
            kiln_base::materialize(path, scratch).map_err(|e| Error::Image {
                path: path.to_path_buf(),
                reason: chain(&e),
            })?;
            let disk = scratch.try_clone().map_err(|source| Error::Output {
                path: path.to_path_buf(),
                op: "cannot reopen the scratch file",
                source,
            })?;
            inspect_disk(std::rc::Rc::new(disk), path)
        }
    }
}

/// Inspects any disk readable at offsets; `name` labels errors.
pub fn inspect_disk<R: ReadAt + 'static>(
    disk: std::rc::Rc<R>,
    name: &Path,
) -> Result<InspectReport, Error> {
    let mut report = inspect_table(&*disk, name)?;
    let data_start = report
        .partitions
        .iter()
        .find(|p| {
            matches!(&p.fs, FsInfo::Ext4 { label, .. }
                if kiln_base::Role::from_label(label) == Some(kiln_base::Role::Data))
        })
        .map(|p| p.start);
    report.data = data_start
        .and_then(|start| crate::inspect_data::inspect_data(disk.clone(), start, "docker"));
    report.base = crate::inspect_data::inspect_base(&disk);
    Ok(report)
}

fn inspect_table<R: ReadAt>(disk: &R, name: &Path) -> Result<InspectReport, Error> {
    let bad = |reason: String| Error::Image {
        path: name.to_path_buf(),
        reason,
    };
    let disk_bytes = disk
        .size()
        .map_err(|e| bad(format!("cannot read size: {e}")))?;
    let table =
        read_table(disk).map_err(|e| bad(format!("no usable partition table: {}", chain(&e))))?;
    let (kind, disk_id) = match &table.scheme {
        Scheme::Mbr { disk_signature } => ("mbr", format!("0x{disk_signature:08x}")),
        Scheme::Gpt { disk_guid, .. } => ("gpt", disk_guid.to_string()),
    };
    let mut partitions = Vec::new();
    let mut boot_files = Vec::new();
    let mut config = None;
    for p in table.partitions.iter().filter(|p| !p.is_extended()) {
        let region = SubRegion::new(disk, p.start_bytes, p.size_bytes);
        let mut fs = probe_ext4(&region).unwrap_or(FsInfo::Unknown);
        if fs == FsInfo::Unknown {
            if let Ok(fat) = FatReader::open(SubRegion::new(disk, p.start_bytes, p.size_bytes)) {
                let variant = match fat.fat_type() {
                    Some(kiln_fat::FatType::Fat32) => "fat32",
                    Some(kiln_fat::FatType::Fat16) => "fat16",
                    _ => "fat",
                };
                let id = fat.volume_id();
                fs = FsInfo::Fat {
                    variant: variant.into(),
                    label: fat.volume_label().ok().flatten(),
                    id: format!("{:04X}-{:04X}", id >> 16, id & 0xffff),
                };
                if boot_files.is_empty() {
                    let list = fat
                        .list(ListLimits::default())
                        .map_err(|e| bad(format!("partition {}: {}", p.number, chain(&e))))?;
                    boot_files = list
                        .iter()
                        .map(|e| BootFile {
                            path: e.path.clone(),
                            size: (e.kind == FatEntryKind::File).then_some(e.size_bytes),
                        })
                        .collect();
                    if list.iter().any(|e| e.path == "config.json") {
                        let bytes = fat
                            .read_file("config.json", MAX_CONFIG_BYTES)
                            .map_err(|e| bad(format!("config.json: {}", chain(&e))))?;
                        let v: serde_json::Value = serde_json::from_slice(&bytes)
                            .map_err(|e| bad(format!("config.json is not JSON: {e}")))?;
                        config = Some(redact(v));
                    }
                }
            }
        }
        partitions.push(InspectedPartition {
            number: p.number,
            start: p.start_bytes,
            size: p.size_bytes,
            type_id: match p.partition_type {
                PartitionType::Mbr(t) => format!("0x{:02x}", t.0),
                PartitionType::Gpt(g) => g.to_string(),
            },
            name: p.name.clone(),
            guid: p.guid.map(|g| g.to_string()),
            bootable: p.bootable,
            logical: p.logical,
            fs,
        });
    }
    Ok(InspectReport {
        disk_bytes,
        table: kind.into(),
        disk_id,
        partitions,
        boot_files,
        config,
        data: None,
        base: None,
    })
}

fn probe_ext4<R: ReadAt>(r: &R) -> Option<FsInfo> {
    let mut sb = [0u8; 1024];
    r.read_exact_at(&mut sb, EXT4_SB).ok()?;
    let u16_at = |o: usize| u16::from_le_bytes([sb[o], sb[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]);
    if u16_at(0x38) != EXT4_MAGIC {
        return None;
    }
    let label_raw = &sb[0x78..0x88];
    let end = label_raw.iter().position(|&b| b == 0).unwrap_or(16);
    let label = String::from_utf8_lossy(&label_raw[..end]).into_owned();
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&sb[0x68..0x78]);
    let blocks = u64::from(u32_at(0x4)) | (u64::from(u32_at(0x150)) << 32);
    let block_size = 1024u64.checked_shl(u32_at(0x18)).unwrap_or(0);
    Some(FsInfo::Ext4 {
        label,
        uuid: kiln_units::Guid::from_rfc_bytes(uuid).to_string(),
        size: blocks.saturating_mul(block_size),
    })
}

/// Redacts credentials in a config.json read from an image.
fn redact(mut v: serde_json::Value) -> serde_json::Value {
    kiln_recipe::redact_known(&mut v);
    v
}
