//! `[installer]`: how a USB installer image (`kiln build --installer`)
//! installs the OS onto the device's internal disk (`kiln install`).
//!
//! ```toml
//! [installer]
//! unattended = true             # default false: ask on the console
//! target = "largest-internal"   # or "/dev/nvme0n1", or "serial:S4EVNX0N"
//! power-off = true              # default true: power off after success
//! verify = true                 # default true: read back every range
//! allow-data-loss = false       # default false: refuse a partitioned disk
//! ```

use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

use crate::Error;

/// The wire form of `[installer]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct WireInstaller {
    unattended: Option<bool>,
    target: Option<Spanned<String>>,
    power_off: Option<bool>,
    verify: Option<bool>,
    allow_data_loss: Option<bool>,
}

/// Which disk an unattended install writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetRule {
    /// The largest candidate disk (`largest-internal`).
    LargestInternal,
    /// This device node (`/dev/...`).
    Path(PathBuf),
    /// The candidate disk with this serial number (`serial:XYZ`).
    Serial(String),
}

impl TargetRule {
    /// Parses `largest-internal`, `/dev/...` or `serial:XYZ`.
    pub fn parse(s: &str) -> Option<Self> {
        if s == "largest-internal" {
            Some(Self::LargestInternal)
        } else if let Some(serial) = s.strip_prefix("serial:") {
            (!serial.is_empty()).then(|| Self::Serial(serial.to_string()))
        } else if s.starts_with("/dev/") && s.len() > 5 {
            Some(Self::Path(PathBuf::from(s)))
        } else {
            None
        }
    }

    /// The recipe's spelling of the rule.
    pub fn as_string(&self) -> String {
        match self {
            Self::LargestInternal => "largest-internal".into(),
            Self::Path(p) => p.display().to_string(),
            Self::Serial(s) => format!("serial:{s}"),
        }
    }
}

/// `[installer]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallerSpec {
    /// Install without asking (needs `target`).
    pub unattended: bool,
    /// The target disk rule.
    pub target: Option<TargetRule>,
    /// Power off after a successful install (default true).
    pub power_off: bool,
    /// Read back and check every written range (default true).
    pub verify: bool,
    /// Write over a disk that already holds partitions (default false).
    pub allow_data_loss: bool,
}

impl Default for InstallerSpec {
    fn default() -> Self {
        Self {
            unattended: false,
            target: None,
            power_off: true,
            verify: true,
            allow_data_loss: false,
        }
    }
}

/// Validates `[installer]`; `invalid(span, key, reason)` makes the
/// located error.
pub(crate) fn installer_spec(
    w: Option<Spanned<WireInstaller>>,
    invalid: &dyn Fn(std::ops::Range<usize>, &str, String) -> Error,
) -> Result<InstallerSpec, Error> {
    let Some(w) = w else {
        return Ok(InstallerSpec::default());
    };
    let span = w.span();
    let w = w.into_inner();
    let target = match w.target {
        Some(t) => Some(TargetRule::parse(t.get_ref()).ok_or_else(|| {
            invalid(
                t.span(),
                "installer.target",
                format!(
                    "{:?}: use \"largest-internal\", a /dev path or \"serial:XYZ\"",
                    t.get_ref()
                ),
            )
        })?),
        None => None,
    };
    let unattended = w.unattended.unwrap_or(false);
    if unattended && target.is_none() {
        return Err(invalid(
            span,
            "installer.unattended",
            "an unattended install needs installer.target".into(),
        ));
    }
    Ok(InstallerSpec {
        unattended,
        target,
        power_off: w.power_off.unwrap_or(true),
        verify: w.verify.unwrap_or(true),
        allow_data_loss: w.allow_data_loss.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_rules() {
        let table = [
            ("largest-internal", Some(TargetRule::LargestInternal)),
            (
                "/dev/nvme0n1",
                Some(TargetRule::Path("/dev/nvme0n1".into())),
            ),
            ("serial:ABC1", Some(TargetRule::Serial("ABC1".into()))),
            ("serial:", None),
            ("/dev/", None),
            ("sda", None),
            ("largest", None),
        ];
        for (s, want) in table {
            assert_eq!(TargetRule::parse(s), want, "{s}");
            if let Some(r) = want {
                assert_eq!(r.as_string(), s);
            }
        }
    }
}
