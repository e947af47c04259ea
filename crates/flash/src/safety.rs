//! Safety checks before flashing, as pure functions of facts the CLI
//! gathers (from `/proc/self/mountinfo`, sysfs and `stat`): nothing here
//! touches the system, so every refusal is testable.

use std::path::PathBuf;

use crate::error::{Error, Refusal, Result};
use crate::mountinfo::{mount_points_on, root_device, MountEntry};

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
    /// Logical sector size of a block device (`BLKSSZGET`); `None` for
    /// files or when unknown.
    pub logical_sector: Option<u32>,
}

/// Facts about the image to flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageFacts {
    /// Size in bytes.
    pub bytes: u64,
    /// Sector size its partition table was written for, when it can be
    /// told ([`table_sector_size`]).
    pub table_sector: Option<u32>,
}

/// Bytes of the image's head [`table_sector_size`] looks at.
pub const TABLE_HEAD_BYTES: usize = 8192;

/// The logical sector size an image's partition table was written for,
/// from its first [`TABLE_HEAD_BYTES`] bytes and its size:
/// - GPT (UEFI 2.10 section 5.3.1): the header is at LBA 1, so
///   `EFI PART` at byte 512 means 512-byte sectors, at byte 4096 means
///   4096-byte sectors.
/// - MBR (0x55AA at 510) without a GPT: partition entries count sectors
///   of an unstated size; 512 is answered only when the partitions'
///   furthest end fits in the image in 512-byte units but not in
///   4096-byte ones (a table written for 4Kn that happens to fit both
///   ways is not judged).
/// - Anything else (a bare filesystem image): `None`.
pub fn table_sector_size(head: &[u8], image_bytes: u64) -> Option<u32> {
    let at = |off: usize, sig: &[u8]| head.get(off..off + sig.len()) == Some(sig);
    if at(512, b"EFI PART") {
        return Some(512);
    }
    if at(4096, b"EFI PART") {
        return Some(4096);
    }
    if !at(510, &[0x55, 0xAA]) {
        return None;
    }
    let mut end = 0u64;
    for i in 0..4 {
        let e = head.get(446 + 16 * i..446 + 16 * (i + 1))?;
        let le = |b: &[u8]| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let (start, len) = (le(&e[8..12]), le(&e[12..16]));
        if e[4] != 0 && len != 0 {
            end = end.max(start + len);
        }
    }
    (end > 0 && end * 512 <= image_bytes && end * 4096 > image_bytes).then_some(512)
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
            logical_sector: None,
        }
    }
}

/// Decides whether the image may be flashed onto the target. The system
/// disk, mounted targets and too small devices are refused even with
/// `force`; `force` allows regular files (which grow as needed, so no
/// size check) and a partition table for another sector size than the
/// device's.
///
/// # Errors
/// [`Error::Refused`] with the first failing [`Refusal`] in this order:
/// holds `/`, mounted, not a block device/file, regular file without
/// force, too small, sector size mismatch without force.
pub fn check_target(facts: &TargetFacts, image: &ImageFacts, force: bool) -> Result<()> {
    let image_bytes = image.bytes;
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
    if let (Some(image_sector), Some(target_sector)) = (image.table_sector, facts.logical_sector) {
        if image_sector != target_sector && !force {
            return Err(Error::Refused(Refusal::SectorSizeMismatch {
                image_sector,
                target_sector,
            }));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mountinfo::parse_mountinfo;

    fn facts(kind: TargetKind, size: u64) -> TargetFacts {
        TargetFacts {
            kind,
            size_bytes: size,
            mounted_at: vec![],
            holds_root: false,
            logical_sector: None,
        }
    }

    fn mbr(parts: &[(u32, u32)]) -> Vec<u8> {
        let mut h = vec![0u8; TABLE_HEAD_BYTES];
        for (i, (start, len)) in parts.iter().enumerate() {
            let e = 446 + 16 * i;
            h[e + 4] = 0x83;
            h[e + 8..e + 12].copy_from_slice(&start.to_le_bytes());
            h[e + 12..e + 16].copy_from_slice(&len.to_le_bytes());
        }
        h[510] = 0x55;
        h[511] = 0xAA;
        h
    }

    #[test]
    fn table_sector_sizes() {
        let mib = 1u64 << 20;
        // MBR whose last partition ends at the image's end in 512-byte
        // sectors: only 512 fits.
        let h = mbr(&[(8192, 8192), (16384, 2048 * 64 - 16384)]);
        assert_eq!(table_sector_size(&h, 64 * mib), Some(512));
        // The same table read as 4096-byte sectors would need 512 MiB;
        // in a 512 MiB image both fit, so no judgement.
        assert_eq!(table_sector_size(&h, 512 * mib), None);
        // Empty MBR, no signature, bare data.
        assert_eq!(table_sector_size(&mbr(&[]), 64 * mib), None);
        assert_eq!(table_sector_size(&[0u8; TABLE_HEAD_BYTES], 64 * mib), None);
        // GPT headers at LBA 1 of either size (protective MBR beside them).
        let mut g = mbr(&[(1, u32::MAX)]);
        g[512..520].copy_from_slice(b"EFI PART");
        assert_eq!(table_sector_size(&g, 64 * mib), Some(512));
        let mut g = mbr(&[(1, u32::MAX)]);
        g[4096..4104].copy_from_slice(b"EFI PART");
        assert_eq!(table_sector_size(&g, 64 * mib), Some(4096));
        // A short head is not an error.
        assert_eq!(table_sector_size(&g[..100], 64 * mib), None);
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
                    ..sdc.clone()
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
            (
                TargetFacts {
                    logical_sector: Some(4096),
                    ..sdc.clone()
                },
                false,
                Some(Refusal::SectorSizeMismatch {
                    image_sector: 512,
                    target_sector: 4096,
                }),
            ),
            (
                TargetFacts {
                    logical_sector: Some(4096),
                    ..sdc.clone()
                },
                true,
                None,
            ),
            (
                TargetFacts {
                    logical_sector: Some(512),
                    ..sdc
                },
                false,
                None,
            ),
        ];
        let image = ImageFacts {
            bytes: 1 << 20,
            table_sector: Some(512),
        };
        for (f, force, want) in cases {
            let got = check_target(&f, &image, force);
            match (got, want) {
                (Ok(()), None) => {}
                (Err(Error::Refused(r)), Some(w)) => assert_eq!(r, w),
                (g, w) => panic!("{f:?}: got {g:?}, want {w:?}"),
            }
        }
    }
}
