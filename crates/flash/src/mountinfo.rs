#![warn(clippy::arithmetic_side_effects, clippy::as_conversions)]
//! Parsing `/proc/self/mountinfo` text (proc(5), "/proc/pid/mountinfo").
//!
//! # Line format
//!
//! | field | example | meaning |
//! |---|---|---|
//! | 1 | `36` | mount ID |
//! | 2 | `35` | parent ID |
//! | 3 | `98:0` | major:minor of the filesystem's device |
//! | 4 | `/mnt1` | root of the mount within the filesystem |
//! | 5 | `/mnt2` | mount point |
//! | 6 | `rw,noatime` | mount options |
//! | 7.. | `master:1` | optional fields, ended by a single `-` |
//! | next | `ext3` | filesystem type |
//! | next | `/dev/root` | mount source |
//! | next | `rw,errors=continue` | super options |
//!
//! Paths escape space, tab, newline and backslash as `\040`, `\011`,
//! `\012`, `\134`.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Mount ID.
    pub mount_id: u32,
    /// Parent mount ID.
    pub parent_id: u32,
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Root of the mount inside its filesystem.
    pub root: PathBuf,
    /// Mount point.
    pub mount_point: PathBuf,
    /// Filesystem type.
    pub fs_type: String,
    /// Mount source (e.g. `/dev/sda1`).
    pub source: String,
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes.get(i).copied().unwrap_or_default();
        if b == b'\\' {
            if let Some(oct) = bytes.get(i.saturating_add(1)..i.saturating_add(4)) {
                if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                    let v = oct.iter().fold(0u32, |acc, c| {
                        acc.saturating_mul(8)
                            .saturating_add(u32::from(c.saturating_sub(b'0')))
                    });
                    if let Ok(v) = u8::try_from(v) {
                        out.push(v);
                        i = i.saturating_add(4);
                        continue;
                    }
                }
            }
        }
        out.push(b);
        i = i.saturating_add(1);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text; blank lines are skipped.
///
/// # Errors
/// [`Error::Mountinfo`] naming the 1-based line.
pub fn parse_mountinfo(text: &str) -> Result<Vec<MountEntry>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i.saturating_add(1);
        let err = |reason| Error::Mountinfo {
            line: line_no,
            reason,
        };
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(' ').collect();
        let get = |n: usize| fields.get(n).copied().ok_or(err("too few fields"));
        let mount_id = get(0)?.parse().map_err(|_| err("bad mount ID"))?;
        let parent_id = get(1)?.parse().map_err(|_| err("bad parent ID"))?;
        let (maj, min) = get(2)?
            .split_once(':')
            .ok_or(err("device is not major:minor"))?;
        let major = maj.parse().map_err(|_| err("bad major number"))?;
        let minor = min.parse().map_err(|_| err("bad minor number"))?;
        let root = PathBuf::from(unescape(get(3)?));
        let mount_point = PathBuf::from(unescape(get(4)?));
        let sep = fields
            .iter()
            .skip(6)
            .position(|f| *f == "-")
            .ok_or(err("missing '-' separator"))?
            .saturating_add(6);
        let fs_type = get(sep.saturating_add(1))?.to_owned();
        let source = unescape(get(sep.saturating_add(2))?);
        out.push(MountEntry {
            mount_id,
            parent_id,
            major,
            minor,
            root,
            mount_point,
            fs_type,
            source,
        });
    }
    Ok(out)
}

/// The device (major, minor) of the filesystem mounted at `/` (the last
/// mount on `/` wins, as it hides the others).
pub fn root_device(entries: &[MountEntry]) -> Option<(u32, u32)> {
    entries
        .iter()
        .rev()
        .find(|e| e.mount_point.as_os_str() == "/")
        .map(|e| (e.major, e.minor))
}

/// Mount points of filesystems on any of `devices` (the target disk and
/// its partitions, as (major, minor)).
pub fn mount_points_on(entries: &[MountEntry], devices: &[(u32, u32)]) -> Vec<PathBuf> {
    entries
        .iter()
        .filter(|e| devices.contains(&(e.major, e.minor)))
        .map(|e| e.mount_point.clone())
        .collect()
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw
23 22 0:21 / /proc rw,nosuid - proc proc rw
40 22 8:17 / /media/usb\\040stick rw shared:5 master:2 - vfat /dev/sdb1 rw,fmask=0022
";

    #[test]
    fn parses_sample() {
        let e = parse_mountinfo(SAMPLE).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[2].mount_point, PathBuf::from("/media/usb stick"));
        assert_eq!((e[2].major, e[2].minor), (8, 17));
        assert_eq!(e[2].fs_type, "vfat");
        assert_eq!(e[2].source, "/dev/sdb1");
        assert_eq!(root_device(&e), Some((8, 2)));
        assert_eq!(
            mount_points_on(&e, &[(8, 16), (8, 17)]),
            vec![PathBuf::from("/media/usb stick")]
        );
    }

    #[test]
    fn bad_lines() {
        for (bad, line) in [
            ("x 1 8:2 / / rw - ext4 a rw", 1),
            ("22 1 8:2 / / rw shared:1 ext4 /dev/sda2 rw", 1),
            ("22 1 82 / / rw - ext4 a rw", 1),
            ("22 1 8:2 / / rw - ext4 a rw\n22 1", 2),
        ] {
            match parse_mountinfo(bad) {
                Err(Error::Mountinfo { line: l, .. }) => assert_eq!(l, line, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn real_mountinfo_parses() {
        // The machine running the tests has one; it must parse.
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let e = parse_mountinfo(&text).unwrap();
        assert!(root_device(&e).is_some());
    }
}
