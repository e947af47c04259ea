//! Parsing udev's database records (`/run/udev/data/b<MAJOR>:<MINOR>`),
//! as written by systemd-udevd (`src/libsystemd/sd-device/device-private.c`,
//! `device_update_db`): one record per line, a one-letter tag, a colon,
//! the value.
//!
//! | tag | example | meaning |
//! |---|---|---|
//! | `S:` | `disk/by-id/usb-SanDisk_Cruzer-0:0` | a symlink under `/dev` |
//! | `E:` | `ID_FS_LABEL=resin-boot` | a property, `KEY=VALUE` |
//! | `I:`, `L:`, `W:`, `G:`, `Q:`, `V:` | `83473620` | bookkeeping (ignored) |
//!
//! Only `E:` properties are kept. Values are stored raw (udev escapes
//! nothing in the database; `*_ENC` keys carry `\xNN` escapes of their
//! own and are not used here).

use std::collections::BTreeMap;

/// The `E:` properties of one udev record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UdevProperties(BTreeMap<String, String>);

impl UdevProperties {
    /// Parses a record's text; lines that are not `E:KEY=VALUE` are
    /// ignored (other tags, blank lines).
    pub fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter_map(|l| l.strip_prefix("E:"))
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// The value of `key`, if present and not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_properties_only() {
        let p = UdevProperties::parse(
            "S:disk/by-label/resin-boot\nI:123\nE:ID_FS_LABEL=resin-boot\nE:ID_BUS=usb\nE:EMPTY=\nE:A=b=c\nG:systemd\n",
        );
        assert_eq!(p.get("ID_FS_LABEL"), Some("resin-boot"));
        assert_eq!(p.get("ID_BUS"), Some("usb"));
        assert_eq!(p.get("EMPTY"), None);
        assert_eq!(p.get("A"), Some("b=c"));
        assert_eq!(p.get("disk/by-label/resin-boot"), None);
    }
}
