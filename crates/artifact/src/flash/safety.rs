//! Safety checks before flashing, as pure functions of facts the CLI
//! gathers (from `/proc/self/mountinfo`, sysfs and `stat`): nothing here
//! touches the system, so every refusal is testable.

use std::path::PathBuf;

use super::mountinfo::{mount_points_on, root_device, MountEntry};
use crate::error::{Error, Refusal, Result};

/// What kind of object the target path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A block device (whole disk or partition).
    BlockDevice,
    /// A regular file.
    RegularFile,
    /// Anything else (directory, character device, ...).
    Other,
}

/// Facts about a flash target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetFacts {
    /// The kind of target.
    pub kind: TargetKind,
    /// Capacity in bytes (block device size, or current file length).
    pub size_bytes: u64,
    /// Mount points of filesystems on the target or its partitions.
    pub mounted_at: Vec<PathBuf>,
    /// Whether the target (or a partition of it) holds `/`.
    pub holds_root: bool,
}

impl TargetFacts {
    /// Derives `mounted_at` and `holds_root` from parsed mountinfo, given
    /// the (major, minor) numbers of the target and of its partitions (and
    /// of devices stacked on them, e.g. dm-crypt holders, if known).
    pub fn from_mountinfo(
        kind: TargetKind,
        size_bytes: u64,
        devices: &[(u32, u32)],
        mounts: &[MountEntry],
    ) -> Self {
        Self {
            kind,
            size_bytes,
            mounted_at: mount_points_on(mounts, devices),
            holds_root: root_device(mounts).is_some_and(|d| devices.contains(&d)),
        }
    }
}

/// Decides whether `image_bytes` may be flashed onto the target. The
/// system disk and mounted targets are refused even with `force`; `force`
/// only allows regular files (which grow as needed, so no size check).
///
/// # Errors
/// [`Error::Refused`] with the first failing [`Refusal`] in this order:
/// holds `/`, mounted, not a block device/file, regular file without
/// force, too small.
pub fn check_target(facts: &TargetFacts, image_bytes: u64, force: bool) -> Result<()> {
    if facts.holds_root {
        return Err(Error::Refused(Refusal::HoldsRoot));
    }
    if let Some(mp) = facts.mounted_at.first() {
        return Err(Error::Refused(Refusal::Mounted {
            mount_point: mp.clone(),
        }));
    }
    match facts.kind {
        TargetKind::Other => return Err(Error::Refused(Refusal::NotABlockDevice)),
        TargetKind::RegularFile if !force => {
            return Err(Error::Refused(Refusal::RegularFileWithoutForce))
        }
        TargetKind::RegularFile => return Ok(()),
        TargetKind::BlockDevice => {}
    }
    if facts.size_bytes < image_bytes {
        return Err(Error::Refused(Refusal::TooSmall {
            target_bytes: facts.size_bytes,
            image_bytes,
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::mountinfo::parse_mountinfo;

    fn facts(kind: TargetKind, size: u64) -> TargetFacts {
        TargetFacts {
            kind,
            size_bytes: size,
            mounted_at: vec![],
            holds_root: false,
        }
    }

    #[test]
    fn table() {
        let mi = parse_mountinfo(
            "22 1 8:2 / / rw - ext4 /dev/sda2 rw\n40 22 8:17 / /mnt rw - vfat /dev/sdb1 rw\n",
        )
        .unwrap();
        let sda =
            TargetFacts::from_mountinfo(TargetKind::BlockDevice, 1 << 40, &[(8, 0), (8, 2)], &mi);
        let sdb =
            TargetFacts::from_mountinfo(TargetKind::BlockDevice, 1 << 40, &[(8, 16), (8, 17)], &mi);
        let sdc = TargetFacts::from_mountinfo(TargetKind::BlockDevice, 1 << 30, &[(8, 32)], &mi);
        let cases: Vec<(TargetFacts, bool, Option<Refusal>)> = vec![
            (sda.clone(), true, Some(Refusal::HoldsRoot)),
            (
                sdb,
                true,
                Some(Refusal::Mounted {
                    mount_point: "/mnt".into(),
                }),
            ),
            (sdc.clone(), false, None),
            (
                TargetFacts {
                    size_bytes: 100,
                    ..sdc
                },
                true,
                Some(Refusal::TooSmall {
                    target_bytes: 100,
                    image_bytes: 1 << 20,
                }),
            ),
            (
                facts(TargetKind::RegularFile, 0),
                false,
                Some(Refusal::RegularFileWithoutForce),
            ),
            (facts(TargetKind::RegularFile, 0), true, None),
            (
                facts(TargetKind::Other, 1 << 40),
                true,
                Some(Refusal::NotABlockDevice),
            ),
        ];
        for (f, force, want) in cases {
            let got = check_target(&f, 1 << 20, force);
            match (got, want) {
                (Ok(()), None) => {}
                (Err(Error::Refused(r)), Some(w)) => assert_eq!(r, w),
                (g, w) => panic!("{f:?}: got {g:?}, want {w:?}"),
            }
        }
    }
}
