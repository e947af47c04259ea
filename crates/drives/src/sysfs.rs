//! Reading one block device's attributes from a sysfs tree
//! (Documentation/ABI/stable/sysfs-block and
//! Documentation/ABI/testing/sysfs-block-* in the Linux sources).
//!
//! | path under `<sys>/block/<name>/` | content | used for |
//! |---|---|---|
//! | (the symlink itself) | `../devices/.../usb1/.../block/sdb` | transport (bus path) |
//! | `dev` | `8:16` | device number |
//! | `size` | `15633408` | capacity, in 512-byte sectors (always, whatever the logical sector size) |
//! | `removable` | `1` | removable medium |
//! | `ro` | `0` | read-only |
//! | `device/vendor`, `device/model` | `SanDisk `, `Cruzer Blade` | SCSI/USB identity |
//! | `device/name`, `device/type`, `device/serial` | `SL16G`, `MMC` / `SD`, `0x1234abcd` | MMC/SD card identity |
//! | `device/serial` | `S4EVNX0N123456` | NVMe serial |
//! | `loop/backing_file` | `/var/tmp/t.img` | a loop device's file |
//! | `<name>N/partition`, `<name>N/dev`, `<name>N/size` | `1`, `8:17`, `81920` | its partitions |
//! | `holders/`, `<name>N/holders/` | `dm-0` | devices stacked on it (dm, md) |

use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// What sysfs says about one whole block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SysDisk {
    pub(crate) name: String,
    /// The text of the `<sys>/block/<name>` link (the device's bus path).
    pub(crate) bus_path: String,
    pub(crate) dev: (u32, u32),
    pub(crate) size_bytes: u64,
    pub(crate) removable: bool,
    pub(crate) read_only: bool,
    pub(crate) vendor: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) serial: Option<String>,
    /// `device/type` of an MMC/SD card (`MMC`, `SD`, `SDIO`).
    pub(crate) mmc_type: Option<String>,
    pub(crate) backing_file: Option<PathBuf>,
    pub(crate) partitions: Vec<SysPartition>,
    /// Device numbers of the holders of the disk and of its partitions.
    pub(crate) holders: Vec<(u32, u32)>,
}

/// What sysfs says about one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SysPartition {
    pub(crate) name: String,
    pub(crate) dev: (u32, u32),
    pub(crate) size_bytes: u64,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// A trimmed attribute, `None` if absent or empty.
fn attr(path: &Path) -> Result<Option<String>> {
    match std::fs::read(path) {
        Ok(b) => {
            let s = String::from_utf8_lossy(&b).trim().to_owned();
            Ok((!s.is_empty()).then_some(s))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_at(path)(e)),
    }
}

fn bad(path: &Path, content: &str) -> Error {
    Error::Attribute {
        path: path.to_owned(),
        content: content.chars().take(64).collect(),
    }
}

/// A `MAJOR:MINOR` attribute.
fn dev_attr(path: &Path) -> Result<(u32, u32)> {
    let s = attr(path)?.unwrap_or_default();
    s.split_once(':')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or_else(|| bad(path, &s))
}

/// A `size` attribute (512-byte sectors), in bytes.
fn size_attr(path: &Path) -> Result<u64> {
    let s = attr(path)?.unwrap_or_default();
    s.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(512))
        .ok_or_else(|| bad(path, &s))
}

fn flag_attr(path: &Path) -> Result<bool> {
    Ok(attr(path)?.as_deref() == Some("1"))
}

/// Device numbers listed in a `holders/` directory.
fn holders_of(dir: &Path, out: &mut Vec<(u32, u32)>) -> Result<()> {
    let h = dir.join("holders");
    let rd = match std::fs::read_dir(&h) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_at(&h)(e)),
    };
    for entry in rd {
        let entry = entry.map_err(io_at(&h))?;
        // A holder that vanished meanwhile no longer holds anything.
        let dev = entry.path().join("dev");
        if dev.exists() {
            out.push(dev_attr(&dev)?);
        }
    }
    Ok(())
}

/// Names under `<sys>/block`, sorted.
pub(crate) fn block_names(sys: &Path) -> Result<Vec<String>> {
    let dir = sys.join("block");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io_at(&dir))? {
        let entry = entry.map_err(io_at(&dir))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Reads `<sys>/block/<name>`; `None` if it vanished meanwhile (a stick
/// pulled during the scan).
pub(crate) fn read_disk(sys: &Path, name: &str) -> Result<Option<SysDisk>> {
    let dir = sys.join("block").join(name);
    let bus_path = match std::fs::read_link(&dir) {
        Ok(p) => p.to_string_lossy().into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // Not a link (an old sysfs layout): the name is all there is.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => String::new(),
        Err(e) => return Err(io_at(&dir)(e)),
    };
    let dev_file = dir.join("dev");
    if !dev_file.exists() {
        return Ok(None);
    }
    let mut disk = SysDisk {
        name: name.to_owned(),
        bus_path,
        dev: dev_attr(&dev_file)?,
        size_bytes: size_attr(&dir.join("size"))?,
        removable: flag_attr(&dir.join("removable"))?,
        read_only: flag_attr(&dir.join("ro"))?,
        vendor: attr(&dir.join("device/vendor"))?,
        model: attr(&dir.join("device/model"))?.or(attr(&dir.join("device/name"))?),
        serial: attr(&dir.join("device/serial"))?,
        mmc_type: attr(&dir.join("device/type"))?,
        backing_file: attr(&dir.join("loop/backing_file"))?.map(PathBuf::from),
        partitions: Vec::new(),
        holders: Vec::new(),
    };
    holders_of(&dir, &mut disk.holders)?;
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io_at(&dir))? {
        let p = entry.map_err(io_at(&dir))?.path();
        if !p.join("partition").exists() {
            continue;
        }
        holders_of(&p, &mut disk.holders)?;
        parts.push(SysPartition {
            name: p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            dev: dev_attr(&p.join("dev"))?,
            size_bytes: size_attr(&p.join("size"))?,
        });
    }
    parts.sort_by_key(|p| p.dev);
    disk.partitions = parts;
    Ok(Some(disk))
}
