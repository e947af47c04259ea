//! A [`Drive`] as `kiln drives` shows it, and the classifier that turns
//! sysfs facts, udev properties and mounts into one.

use std::io;
use std::path::PathBuf;

use kiln_flash::mountinfo::{mount_points_on, root_device, MountEntry};

use crate::error::{Error, Result};
use crate::sysfs::SysDisk;
use crate::udev::UdevProperties;
use crate::Roots;

/// How a disk is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Transport {
    /// USB mass storage (sticks, USB card readers, the Fin's eMMC
    /// exposed over its programming port by rpiboot).
    Usb,
    /// An SD card in a host's own SD/MMC slot.
    Sd,
    /// eMMC on an MMC bus.
    Mmc,
    /// NVMe.
    Nvme,
    /// SATA/ATA.
    Sata,
    /// Other SCSI (SAS, iSCSI, ...).
    Scsi,
    /// virtio-blk (a VM's disk).
    Virtio,
    /// A loop device.
    Loop,
    /// Another virtual device (device-mapper, md, zram, ...).
    Virtual,
    /// Anything else.
    Other,
}

impl Transport {
    /// Short lowercase name (`usb`, `sd`, `mmc`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Usb => "usb",
            Self::Sd => "sd",
            Self::Mmc => "mmc",
            Self::Nvme => "nvme",
            Self::Sata => "sata",
            Self::Scsi => "scsi",
            Self::Virtio => "virtio",
            Self::Loop => "loop",
            Self::Virtual => "virtual",
            Self::Other => "other",
        }
    }

    /// From the disk's name, its sysfs bus path, its MMC card type and
    /// udev's `ID_BUS`.
    fn detect(name: &str, bus_path: &str, mmc_type: Option<&str>, id_bus: Option<&str>) -> Self {
        if bus_path.contains("/usb") || id_bus == Some("usb") {
            Self::Usb
        } else if name.starts_with("mmcblk") {
            match mmc_type {
                Some("SD") => Self::Sd,
                _ => Self::Mmc,
            }
        } else if name.starts_with("nvme") {
            Self::Nvme
        } else if name.starts_with("loop") {
            Self::Loop
        } else if bus_path.contains("/virtual/") {
            Self::Virtual
        } else if bus_path.contains("/virtio") {
            Self::Virtio
        } else if bus_path.contains("/ata") || id_bus == Some("ata") {
            Self::Sata
        } else if bus_path.contains("/host") {
            Self::Scsi
        } else {
            Self::Other
        }
    }
}

/// Why a drive is not offered for flashing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    /// It (or a partition or a device stacked on it) holds `/`.
    HoldsRoot,
    /// It (or a partition or a device stacked on it) is mounted.
    Mounted {
        /// The first mount point.
        mount_point: PathBuf,
    },
    /// It is read-only (a write-protected card, a read-only loop device).
    ReadOnly,
    /// It reports no capacity (a card reader without a card).
    NoMedium,
    /// It is smaller than the image.
    TooSmall {
        /// Drive capacity in bytes.
        drive_bytes: u64,
        /// Image size in bytes.
        image_bytes: u64,
    },
}

impl std::fmt::Display for Exclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::HoldsRoot => f.write_str("holds the root filesystem of this system"),
            Self::Mounted { mount_point } => write!(f, "mounted at {}", mount_point.display()),
            Self::ReadOnly => f.write_str("read-only"),
            Self::NoMedium => f.write_str("no medium"),
            Self::TooSmall {
                drive_bytes,
                image_bytes,
            } => write!(
                f,
                "too small: {drive_bytes} bytes, the image has {image_bytes}"
            ),
        }
    }
}

/// One partition of a [`Drive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Device node (`/dev/sdb1`).
    pub path: PathBuf,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Filesystem label (udev's `ID_FS_LABEL`), or GPT partition name
    /// (`ID_PART_ENTRY_NAME`), when udev data is available.
    pub label: Option<String>,
    /// Where it is mounted.
    pub mounted_at: Vec<PathBuf>,
}

/// A whole disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drive {
    /// Kernel name (`sdb`, `mmcblk0`).
    pub name: String,
    /// Device node (`/dev/sdb`).
    pub path: PathBuf,
    /// Device number.
    pub dev: (u32, u32),
    /// Vendor and model, as the device reports them.
    pub model: Option<String>,
    /// Serial number (udev's `ID_SERIAL_SHORT`, or sysfs for MMC/NVMe).
    pub serial: Option<String>,
    /// Capacity in bytes.
    pub size_bytes: u64,
    /// How it is attached.
    pub transport: Transport,
    /// The kernel's `removable` flag.
    pub removable: bool,
    /// A loop device's backing file.
    pub backing_file: Option<PathBuf>,
    /// Its partitions, by device number.
    pub partitions: Vec<Partition>,
    /// Where it, its partitions or devices stacked on them are mounted.
    pub mounted_at: Vec<PathBuf>,
    /// Why it is not offered, if it is not.
    pub excluded: Option<Exclusion>,
}

impl Drive {
    /// Removable media: the `removable` flag, or USB, SD or MMC.
    pub fn is_removable_media(&self) -> bool {
        self.removable
            || matches!(
                self.transport,
                Transport::Usb | Transport::Sd | Transport::Mmc
            )
    }
}

/// `mmcblkNbootM`: an eMMC's hardware boot partition.
pub(crate) fn is_boot_area(name: &str) -> bool {
    name.strip_prefix("mmcblk")
        .and_then(|r| r.split_once("boot"))
        .is_some_and(|(a, b)| {
            !a.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && !b.is_empty()
                && b.bytes().all(|c| c.is_ascii_digit())
        })
}

/// udev's record for a device, empty when there is none.
fn udev_of(roots: &Roots, dev: (u32, u32)) -> Result<UdevProperties> {
    let Some(dir) = &roots.udev else {
        return Ok(UdevProperties::default());
    };
    let p = dir.join(format!("b{}:{}", dev.0, dev.1));
    match std::fs::read(&p) {
        Ok(b) => Ok(UdevProperties::parse(&String::from_utf8_lossy(&b))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(UdevProperties::default()),
        Err(source) => Err(Error::Io { path: p, source }),
    }
}

/// `vendor model`, either alone, or `None`. A vendor that is a bare PCI
/// id (`0x1af4`, virtio-blk's `device/vendor`) names no product.
fn join_model(vendor: Option<&str>, model: Option<&str>) -> Option<String> {
    let vendor = vendor.filter(|v| !v.starts_with("0x"));
    match (vendor, model) {
        (Some(v), Some(m)) if !m.starts_with(v) => Some(format!("{v} {m}")),
        (_, Some(m)) => Some(m.to_owned()),
        (Some(v), None) => Some(v.to_owned()),
        (None, None) => None,
    }
}

/// Turns sysfs facts into a [`Drive`]; `None` for a virtual device with
/// no capacity (an unattached loop device, an unused zram).
pub(crate) fn classify(
    disk: SysDisk,
    roots: &Roots,
    mounts: &[MountEntry],
    image_bytes: Option<u64>,
) -> Result<Option<Drive>> {
    let props = udev_of(roots, disk.dev)?;
    let transport = Transport::detect(
        &disk.name,
        &disk.bus_path,
        disk.mmc_type.as_deref(),
        props.get("ID_BUS"),
    );
    if disk.size_bytes == 0 && matches!(transport, Transport::Loop | Transport::Virtual) {
        return Ok(None);
    }
    let mut partitions = Vec::with_capacity(disk.partitions.len());
    for p in &disk.partitions {
        let pp = udev_of(roots, p.dev)?;
        partitions.push(Partition {
            path: roots.dev.join(&p.name),
            size_bytes: p.size_bytes,
            label: pp
                .get("ID_FS_LABEL")
                .or(pp.get("ID_PART_ENTRY_NAME"))
                .map(str::to_owned),
            mounted_at: mount_points_on(mounts, &[p.dev]),
        });
    }
    let mut devs = vec![disk.dev];
    devs.extend(disk.partitions.iter().map(|p| p.dev));
    devs.extend(disk.holders.iter().copied());
    let mounted_at = mount_points_on(mounts, &devs);
    let excluded = if root_device(mounts).is_some_and(|d| devs.contains(&d)) {
        Some(Exclusion::HoldsRoot)
    } else if let Some(mp) = mounted_at.first() {
        Some(Exclusion::Mounted {
            mount_point: mp.clone(),
        })
    } else if disk.size_bytes == 0 {
        Some(Exclusion::NoMedium)
    } else if disk.read_only {
        Some(Exclusion::ReadOnly)
    } else {
        image_bytes
            .filter(|&i| disk.size_bytes < i)
            .map(|i| Exclusion::TooSmall {
                drive_bytes: disk.size_bytes,
                image_bytes: i,
            })
    };
    let model = match props.get("ID_MODEL") {
        Some(m) => join_model(props.get("ID_VENDOR"), Some(&m.replace('_', " "))),
        None => join_model(disk.vendor.as_deref(), disk.model.as_deref()),
    };
    Ok(Some(Drive {
        path: roots.dev.join(&disk.name),
        dev: disk.dev,
        model,
        serial: props
            .get("ID_SERIAL_SHORT")
            .map(str::to_owned)
            .or(disk.serial),
        size_bytes: disk.size_bytes,
        transport,
        removable: disk.removable,
        backing_file: disk.backing_file,
        partitions,
        mounted_at,
        excluded,
        name: disk.name,
    }))
}
