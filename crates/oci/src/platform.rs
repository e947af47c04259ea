//! Platforms (`os/architecture[/variant]`) and how an image index entry
//! is matched against the board's platform.
//!
//! Matching follows the engine: `linux/arm/v7` accepts `v7`, then `v6`,
//! then `v5` (a newer ARM core runs older code); `linux/arm64` accepts an
//! empty variant or `v8`; other architectures ignore the variant.

use crate::Error;
use std::fmt;

/// A target platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// Architecture in GOARCH spelling, e.g. `amd64`, `arm`, `arm64`.
    pub architecture: String,
    /// CPU variant, e.g. `v7`, or `None`.
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`, e.g. `linux/arm/v7`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let bad = |reason| Error::BadReference {
            reference: s.to_string(),
            reason,
        };
        let mut it = s.split('/');
        let os = it.next().filter(|x| !x.is_empty()).ok_or(bad("empty os"))?;
        let arch = it
            .next()
            .filter(|x| !x.is_empty())
            .ok_or(bad("platform needs os/architecture"))?;
        let variant = it.next().filter(|x| !x.is_empty()).map(str::to_string);
        if it.next().is_some() {
            return Err(bad("platform has more than three parts"));
        }
        Ok(Self {
            os: os.to_string(),
            architecture: normalize_arch(arch).to_string(),
            variant,
        })
    }

    /// How well `other` (an index entry or config) runs on this platform:
    /// `Some(0)` is an exact match, higher is a worse fallback, `None`
    /// does not run.
    pub fn rank(&self, os: &str, arch: &str, variant: Option<&str>) -> Option<u32> {
        if os != self.os || normalize_arch(arch) != self.architecture {
            return None;
        }
        let variant = variant.filter(|v| !v.is_empty());
        match self.architecture.as_str() {
            "arm" => {
                let want = arm_level(self.variant.as_deref().unwrap_or("v7"))?;
                // An index entry without variant is taken as the lowest.
                let have = match variant {
                    None => 5,
                    Some(v) => arm_level(v)?,
                };
                if have > want {
                    None
                } else {
                    Some(want - have)
                }
            }
            "arm64" => match variant {
                None | Some("v8") => Some(0),
                Some(v) if Some(v) == self.variant.as_deref() => Some(0),
                _ => None,
            },
            _ => Some(0),
        }
    }
}

fn arm_level(v: &str) -> Option<u32> {
    v.strip_prefix('v')?.parse().ok()
}

fn normalize_arch(a: &str) -> &str {
    match a {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "armhf" | "armel" => "arm",
        other => other,
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_table() {
        let v7 = Platform::parse("linux/arm/v7").unwrap();
        let amd = Platform::parse("linux/amd64").unwrap();
        type Case<'a> = (&'a Platform, &'a str, &'a str, Option<&'a str>, Option<u32>);
        let cases: &[Case<'_>] = &[
            (&v7, "linux", "arm", Some("v7"), Some(0)),
            (&v7, "linux", "arm", Some("v6"), Some(1)),
            (&v7, "linux", "arm", Some("v8"), None),
            (&v7, "linux", "arm64", None, None),
            (&v7, "linux", "amd64", None, None),
            (&amd, "linux", "amd64", None, Some(0)),
            (&amd, "linux", "x86_64", None, Some(0)),
            (&amd, "windows", "amd64", None, None),
            (&amd, "linux", "arm", Some("v7"), None),
        ];
        for (p, os, arch, var, want) in cases {
            assert_eq!(p.rank(os, arch, *var), *want, "{p} vs {os}/{arch}/{var:?}");
        }
        assert_eq!(v7.to_string(), "linux/arm/v7");
        assert!(Platform::parse("linux").is_err());
    }
}
