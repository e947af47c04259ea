//! The sizing policy of the data partition and the medium check, for a
//! fresh disk and for a rebuilt base disk: `[data] size` (`auto`, a fixed
//! size, `fill`) against the minimum the content and headroom need, and
//! the disk against the medium it must fit (`--media`).

use crate::plan::Plan;
use crate::report::human;
use crate::Error;
use kiln_recipe::{BoardProfile, DataSize, Media};
use kiln_units::ByteSize;

/// The old data partition of a base disk: the rebuilt one never shrinks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OldData {
    /// Its start in bytes.
    pub(crate) start_bytes: u64,
    /// Its size in bytes.
    pub(crate) size_bytes: u64,
}

/// What the data partition is sized from.
pub(crate) struct DataNeed<'a> {
    /// The board.
    pub(crate) profile: &'a BoardProfile,
    /// The recipe's `[data] size`.
    pub(crate) policy: DataSize,
    /// The medium asked for (`--media`), resolved.
    pub(crate) medium: Option<&'a Media>,
    /// The data partition's label (for errors).
    pub(crate) label: &'a str,
    /// Bytes the content plus headroom need.
    pub(crate) min: u64,
}

impl DataNeed<'_> {
    /// The data partition's size on a fresh disk: `auto` is the minimum,
    /// a fixed size must hold it, `fill` takes what the medium (or the
    /// board's smallest) leaves after the fixed partitions.
    pub(crate) fn fresh(&self) -> Result<u64, Error> {
        Ok(match self.policy {
            DataSize::Auto => self.min,
            DataSize::Fixed(b) => self.fixed(b)?,
            DataSize::Fill => {
                let m = self.fill_medium()?;
                Plan::fill_size(self.profile, m.size.bytes())?.max(self.min)
            }
        })
    }

    /// The data partition's size on a rebuilt base disk: as on a fresh
    /// disk, but never less than the base had, and `fill` counted from the
    /// old partition's start (`gpt`: one alignment unit, at least the 33
    /// sectors of the backup table, kept at the end; `align`: bytes).
    pub(crate) fn rebuilt(&self, old: OldData, gpt: bool, align: u64) -> Result<u64, Error> {
        Ok(match self.policy {
            DataSize::Auto => self.min.max(old.size_bytes),
            DataSize::Fixed(b) => self.fixed(b)?.max(old.size_bytes),
            DataSize::Fill => {
                let m = self.fill_medium()?;
                let tail = if gpt { align.max(33 * 512) } else { 0 };
                (m.size.bytes().saturating_sub(old.start_bytes + tail) / align * align)
                    .max(self.min)
                    .max(old.size_bytes)
            }
        })
    }

    /// A fixed size, refused below the minimum.
    fn fixed(&self, b: ByteSize) -> Result<u64, Error> {
        if b.bytes() < self.min {
            return Err(Error::Layout {
                partition: self.label.to_string(),
                reason: format!(
                    "data.size {} is smaller than the {} its content and headroom need",
                    b,
                    ByteSize::new(self.min)
                ),
            });
        }
        Ok(b.bytes())
    }

    /// The medium `fill` fills: the one asked for, else the board's first.
    fn fill_medium(&self) -> Result<&Media, Error> {
        self.medium
            .or(self.profile.media.first())
            .ok_or_else(|| Error::Layout {
                partition: self.label.to_string(),
                reason: "data.size = \"fill\" needs a medium (--media)".into(),
            })
    }
}

/// The medium asked for (`--media`), resolved against the board.
pub(crate) fn medium(profile: &BoardProfile, name: Option<&str>) -> Result<Option<Media>, Error> {
    Ok(match name {
        Some(m) => Some(profile.medium(m)?.clone()),
        None => None,
    })
}

/// The board's media a disk of `disk_bytes` fits, by name.
pub(crate) fn fits(profile: &BoardProfile, disk_bytes: u64) -> Vec<String> {
    profile
        .media
        .iter()
        .filter(|m| m.size.bytes() >= disk_bytes)
        .map(|m| m.name.clone())
        .collect()
}

/// Refuses a disk of `disk_bytes` that does not fit `medium`; `hint`
/// says what to do about it.
pub(crate) fn check_medium(
    medium: &Media,
    disk_bytes: u64,
    hint: impl FnOnce() -> String,
) -> Result<(), Error> {
    if disk_bytes > medium.size.bytes() {
        return Err(Error::TooBig {
            medium: medium.name.clone(),
            need: disk_bytes,
            need_h: human(disk_bytes),
            have: medium.size.bytes(),
            have_h: human(medium.size.bytes()),
            hint: hint(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_units::MIB;
    use std::path::Path;

    fn profile() -> BoardProfile {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../board-profiles/nuc.toml");
        BoardProfile::load(&p).unwrap()
    }

    fn medium(name: &str, bytes: u64) -> Media {
        Media {
            name: name.into(),
            size: ByteSize::new(bytes),
        }
    }

    fn need<'a>(p: &'a BoardProfile, policy: DataSize, m: Option<&'a Media>) -> DataNeed<'a> {
        DataNeed {
            profile: p,
            policy,
            medium: m,
            label: "resin-data",
            min: 100 * MIB,
        }
    }

    /// auto and fixed, on a fresh disk and on a rebuilt one (which never
    /// shrinks the old partition).
    #[test]
    fn auto_and_fixed_sizes() {
        let p = profile();
        let old = |size| OldData {
            start_bytes: 2048 * MIB,
            size_bytes: size,
        };
        let fixed = DataSize::Fixed(ByteSize::new(300 * MIB));
        let cases: [(DataSize, Option<u64>, u64); 5] = [
            (DataSize::Auto, None, 100 * MIB),
            (fixed, None, 300 * MIB),
            (DataSize::Auto, Some(50 * MIB), 100 * MIB),
            (DataSize::Auto, Some(500 * MIB), 500 * MIB),
            (fixed, Some(400 * MIB), 400 * MIB),
        ];
        for (policy, old_size, want) in cases {
            let n = need(&p, policy, None);
            let got = match old_size {
                None => n.fresh().unwrap(),
                Some(s) => n.rebuilt(old(s), false, 4 * MIB).unwrap(),
            };
            assert_eq!(got, want, "{policy:?} old {old_size:?}");
        }
    }

    #[test]
    fn a_fixed_size_below_the_content_is_refused() {
        let p = profile();
        let n = need(&p, DataSize::Fixed(ByteSize::new(10 * MIB)), None);
        for e in [
            n.fresh().unwrap_err(),
            n.rebuilt(
                OldData {
                    start_bytes: 0,
                    size_bytes: 0,
                },
                true,
                4 * MIB,
            )
            .unwrap_err(),
        ] {
            let msg = e.to_string();
            assert!(
                msg.contains("resin-data") && msg.contains("smaller than"),
                "{msg}"
            );
        }
    }

    /// fill takes the medium asked for, else the board's first, and never
    /// less than the content needs; GPT keeps room for the backup table.
    #[test]
    fn fill_sizes() {
        let p = profile();
        let m = medium("8GB", 8_000_000_000);
        let fresh = need(&p, DataSize::Fill, Some(&m)).fresh().unwrap();
        assert_eq!(fresh, Plan::fill_size(&p, 8_000_000_000).unwrap());
        let first = p.media.first().cloned().unwrap();
        let by_default = need(&p, DataSize::Fill, None).fresh().unwrap();
        assert_eq!(by_default, Plan::fill_size(&p, first.size.bytes()).unwrap());
        let tiny = medium("tiny", 1);
        assert!(need(&p, DataSize::Fill, Some(&tiny)).fresh().is_err());

        let old = OldData {
            start_bytes: 100 * MIB,
            size_bytes: 10 * MIB,
        };
        let m = medium("1G", 1024 * MIB);
        let n = need(&p, DataSize::Fill, Some(&m));
        assert_eq!(n.rebuilt(old, false, 4 * MIB).unwrap(), 924 * MIB);
        assert_eq!(n.rebuilt(old, true, 4 * MIB).unwrap(), 920 * MIB);
        let small = medium("small", 120 * MIB);
        let n = need(&p, DataSize::Fill, Some(&small));
        assert_eq!(
            n.rebuilt(old, true, 4 * MIB).unwrap(),
            100 * MIB,
            "the content's minimum wins"
        );
    }

    #[test]
    fn medium_check() {
        let p = profile();
        let m = medium("1G", 1024 * MIB);
        assert!(check_medium(&m, 1024 * MIB, || unreachable!()).is_ok());
        let e = check_medium(&m, 1025 * MIB, || "it fits 2G".into()).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, Error::TooBig { need, have, .. } if need == 1025 * MIB && have == 1024 * MIB)
        );
        assert!(!msg.is_empty());
        let all: Vec<String> = p.media.iter().map(|m| m.name.clone()).collect();
        assert_eq!(fits(&p, 0), all);
        assert!(fits(&p, u64::MAX).is_empty());
        assert!(medium_named(&p, "no-such-medium").is_err());
    }

    fn medium_named(p: &BoardProfile, name: &str) -> Result<Option<Media>, Error> {
        super::medium(p, Some(name))
    }
}
