//! The installer's settings: a small JSON file in the installer's root
//! filesystem ([`SETTINGS_PATH`]) that `kiln build --installer` writes and
//! `kiln install` reads. Keys are kebab-case, unknown keys are refused:
//!
//! ```json
//! {
//!   "version": 1,
//!   "image": "/opt/kiln-nuc.img",
//!   "bmap": "/opt/kiln-nuc.img.bmap",
//!   "image-bytes": 3602907136,
//!   "image-sha256": "9f2c…",
//!   "unattended": false,
//!   "target": "largest-internal",
//!   "power-off": true,
//!   "verify": true,
//!   "allow-data-loss": false
//! }
//! ```

use kiln_recipe::{InstallerSpec, TargetRule};
use serde::{Deserialize, Serialize};

use crate::Error;

/// Where the settings sit in the installer's root filesystem (relative).
pub const SETTINGS_PATH: &str = "opt/kiln/installer.json";

/// The systemd unit that starts `kiln install` at boot (in
/// `etc/systemd/system/`, enabled in `multi-user.target.wants/`).
pub const UNIT_NAME: &str = "kiln-install.service";

/// Where the installer carries the kiln binary (relative to its root).
pub const BINARY_PATH: &str = "usr/bin/kiln";

/// The format version written and accepted.
const VERSION: u32 = 1;

/// Largest settings file read (bytes).
pub const MAX_SETTINGS_BYTES: u64 = 64 * 1024;

/// The installer's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Format version (1).
    pub version: u32,
    /// The inner image's absolute path in the installer's root.
    pub image: String,
    /// Its bmap's absolute path in the installer's root.
    pub bmap: String,
    /// The inner image's size in bytes.
    pub image_bytes: u64,
    /// The inner image's sha256 (hex).
    pub image_sha256: String,
    /// Install without asking (with `target`).
    pub unattended: bool,
    /// The target rule (`largest-internal`, `/dev/...`, `serial:XYZ`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Power off after a successful install.
    pub power_off: bool,
    /// Read back every written range.
    pub verify: bool,
    /// Write over a disk that already holds partitions.
    pub allow_data_loss: bool,
}

impl Settings {
    /// The settings for an inner image at `image` (absolute path in the
    /// installer's root, its bmap beside it) from the recipe's
    /// `[installer]`.
    pub fn new(spec: &InstallerSpec, image: &str, image_bytes: u64, image_sha256: &str) -> Self {
        Self {
            version: VERSION,
            image: image.to_string(),
            bmap: format!("{image}.bmap"),
            image_bytes,
            image_sha256: image_sha256.to_string(),
            unattended: spec.unattended,
            target: spec.target.as_ref().map(TargetRule::as_string),
            power_off: spec.power_off,
            verify: spec.verify,
            allow_data_loss: spec.allow_data_loss,
        }
    }

    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        // OK to unwrap: a struct of strings, numbers and booleans always serializes.
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Parses and checks settings read from `path` (for messages).
    ///
    /// # Errors
    /// [`Error::Settings`] for bad JSON, an unknown key, another version
    /// or a bad target rule.
    pub fn parse(bytes: &[u8], path: &std::path::Path) -> Result<Self, Error> {
        let bad = |reason: String| Error::Settings {
            path: path.to_path_buf(),
            reason,
        };
        let s: Settings = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if s.version != VERSION {
            return Err(bad(format!(
                "version {} (this kiln reads {VERSION})",
                s.version
            )));
        }
        if s.unattended && s.target.is_none() {
            return Err(bad("unattended without a target".into()));
        }
        s.rule()
            .map_err(|t| bad(format!("target {t:?} is not a target rule")))?;
        Ok(s)
    }

    /// The target rule, parsed.
    ///
    /// # Errors
    /// The rule's text when it does not parse.
    pub fn rule(&self) -> Result<Option<TargetRule>, String> {
        match &self.target {
            None => Ok(None),
            Some(t) => TargetRule::parse(t).map(Some).ok_or_else(|| t.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let spec = InstallerSpec {
            unattended: true,
            target: Some(TargetRule::Serial("S1".into())),
            ..InstallerSpec::default()
        };
        let s = Settings::new(&spec, "/opt/kiln-nuc.img", 4096, "ab");
        let p = std::path::Path::new("installer.json");
        assert_eq!(Settings::parse(&s.to_json(), p).unwrap(), s);
        assert_eq!(s.bmap, "/opt/kiln-nuc.img.bmap");
        let text = String::from_utf8(s.to_json()).unwrap();
        for (from, to, want) in [
            ("\"verify\"", "\"verfy\"", "unknown field"),
            ("\"version\": 1", "\"version\": 2", "version 2"),
            ("serial:S1", "sda", "not a target rule"),
        ] {
            let bad = text.replace(from, to);
            let e = Settings::parse(bad.as_bytes(), p).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("installer.json"), "{e}");
        }
    }
}
