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
