//! Which disks `kiln install` may write: every whole disk `kiln-drives`
//! lists, minus those it excludes itself (the disk holding `/`, that is
//! the installer's own; mounted, read-only, empty or too-small disks),
//! minus removable media and disks that are not NVMe, SATA or virtio
//! (an installer targets a machine's internal disk). A device path given
//! as the target names its disk explicitly: only the transport rule is
//! waived for it (a SCSI or loop device the operator chose).

use std::fmt;
use std::path::Path;

use kiln_drives::{Drive, Exclusion, Transport};
use kiln_recipe::TargetRule;

use crate::{Error, Result};

/// Why a disk is not offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// `kiln-drives`' own exclusion (root disk, mounted, too small, ...).
    Drive(Exclusion),
    /// Removable media (a USB stick, an SD card: not an internal disk).
    Removable,
    /// Not NVMe, SATA or virtio.
    Transport(Transport),
    /// It holds partitions and `allow-data-loss` is not set.
    HasPartitions {
        /// How many.
        count: usize,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Drive(Exclusion::HoldsRoot) => {
                f.write_str("the disk this installer runs from (holds /)")
            }
            Self::Drive(e) => e.fmt(f),
            Self::Removable => f.write_str("removable media"),
            Self::Transport(t) => write!(
                f,
                "a {} disk (installs go to NVMe, SATA or virtio disks)",
                t.as_str()
            ),
            Self::HasPartitions { count } => write!(
                f,
                "holds {count} partition(s); set allow-data-loss = true in [installer] to erase it"
            ),
        }
    }
}

/// A disk and whether it may be installed onto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The disk.
    pub drive: Drive,
    /// Why not, if not.
    pub excluded: Option<Reason>,
}

impl Candidate {
    /// One line for the console: path, model, serial, size, partitions.
    pub fn describe(&self) -> String {
        let d = &self.drive;
        let parts = if d.partitions.is_empty() {
            "no partitions".to_string()
        } else {
            let names: Vec<String> = d
                .partitions
                .iter()
                .map(|p| {
                    let name = p.path.file_name().map(|n| n.to_string_lossy().into_owned());
                    format!(
                        "{}{}",
                        name.unwrap_or_default(),
                        p.label
                            .as_deref()
                            .map(|l| format!(" ({l})"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            format!("partitions: {}", names.join(", "))
        };
        format!(
            "{} {} model {} serial {} {} bytes ({:.1} GB), {}",
            d.path.display(),
            d.transport.as_str(),
            d.model.as_deref().unwrap_or("?"),
            d.serial.as_deref().unwrap_or("?"),
            d.size_bytes,
            d.size_bytes as f64 / 1e9,
            parts
        )
    }
}

/// Classifies `drives` (from [`kiln_drives::scan`] with the inner
/// image's size) for installing.
pub fn candidates(drives: Vec<Drive>) -> Vec<Candidate> {
    drives
        .into_iter()
        .map(|drive| {
            let excluded = if let Some(e) = &drive.excluded {
                Some(Reason::Drive(e.clone()))
            } else if drive.is_removable_media() {
                Some(Reason::Removable)
            } else if !matches!(
                drive.transport,
                Transport::Nvme | Transport::Sata | Transport::Virtio
            ) {
                Some(Reason::Transport(drive.transport))
            } else {
                None
            };
            Candidate { drive, excluded }
        })
        .collect()
}

/// The disk `rule` names among `cands`.
///
/// # Errors
/// [`Error::NoTarget`] when none matches; [`Error::Refused`] when the
/// disk named by path or serial is excluded (a path is only refused for
/// what [`Reason::Drive`] and [`Reason::Removable`] say).
pub fn choose<'a>(cands: &'a [Candidate], rule: &TargetRule) -> Result<&'a Candidate> {
    let refuse = |c: &'a Candidate, waive_transport: bool| match &c.excluded {
        None => Ok(c),
        Some(Reason::Transport(_)) if waive_transport => Ok(c),
        Some(r) => Err(Error::Refused {
            path: c.drive.path.clone(),
            reason: r.clone(),
        }),
    };
    let found = match rule {
        TargetRule::LargestInternal => {
            return cands
                .iter()
                .filter(|c| c.excluded.is_none())
                .max_by(|a, b| {
                    (a.drive.size_bytes, &b.drive.name).cmp(&(b.drive.size_bytes, &a.drive.name))
                })
                .ok_or_else(|| Error::NoTarget {
                    rule: rule.as_string(),
                });
        }
        TargetRule::Path(p) => cands
            .iter()
            .find(|c| same_disk(&c.drive.path, p))
            .map(|c| refuse(c, true)),
        TargetRule::Serial(s) => cands
            .iter()
            .find(|c| c.drive.serial.as_deref() == Some(s.as_str()))
            .map(|c| refuse(c, false)),
    };
    found.unwrap_or_else(|| {
        Err(Error::NoTarget {
            rule: rule.as_string(),
        })
    })
}

/// `a` and `b` name the same device node (`b` may be a symlink such as
/// `/dev/disk/by-id/...`).
fn same_disk(a: &Path, b: &Path) -> bool {
    a == b
        || std::fs::canonicalize(b)
            .ok()
            .is_some_and(|c| c == a || std::fs::canonicalize(a).ok().as_ref() == Some(&c))
}

/// The partitions guard: a chosen disk holding partitions is refused
/// unless `allow_data_loss`.
///
/// # Errors
/// [`Error::Refused`] with [`Reason::HasPartitions`].
pub fn guard_partitions(c: &Candidate, allow_data_loss: bool) -> Result<()> {
    if c.drive.partitions.is_empty() || allow_data_loss {
        return Ok(());
    }
    Err(Error::Refused {
        path: c.drive.path.clone(),
        reason: Reason::HasPartitions {
            count: c.drive.partitions.len(),
        },
    })
}

/// The partitions guard on the disk's own first sectors, for when the
/// kernel lists none (a loop device without partition scanning, a table
/// written since boot): `disk` is the target opened read-only,
/// `size_bytes` its capacity.
///
/// # Errors
/// [`Error::Refused`] with [`Reason::HasPartitions`].
pub fn guard_table(
    c: &Candidate,
    disk: &dyn kiln_units::ReadAt,
    allow_data_loss: bool,
) -> Result<()> {
    guard_partitions(c, allow_data_loss)?;
    if allow_data_loss {
        return Ok(());
    }
    let sized = Sized {
        inner: disk,
        len: c.drive.size_bytes,
    };
    let count = kiln_part::read_table(&sized)
        .map(|t| t.partitions.len())
        .unwrap_or(0);
    if count == 0 {
        return Ok(());
    }
    Err(Error::Refused {
        path: c.drive.path.clone(),
        reason: Reason::HasPartitions { count },
    })
}

/// A device with its capacity (a block device's metadata says 0 bytes).
struct Sized<'a> {
    inner: &'a dyn kiln_units::ReadAt,
    len: u64,
}

impl kiln_units::ReadAt for Sized<'_> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.len)
    }
}
