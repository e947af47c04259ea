//! What a base image says about itself: the device type on the boot
//! partition and the OS release on rootA.
//!
//! - `device-type.json` (boot partition root): `{"slug": "...", "arch":
//!   "...", ...}` as balenaOS ships it; else `config.json`'s `deviceType`.
//! - `/etc/os-release` (os-release(5); on balenaOS a symlink to
//!   `../usr/lib/os-release`, followed): `PRETTY_NAME`, `VERSION`
//!   (else `VERSION_ID`).
//! - `/etc/image-version-info` if present: kept as text.

use std::rc::Rc;

use kiln_fat::FatReader;
use kiln_units::{ReadAt, SubRegion};
use serde_json::Value;

use crate::ext4::Ext4Part;
use crate::{Error, Layout, Role};

/// Largest JSON file read from the boot partition, in bytes.
const MAX_JSON_BYTES: u64 = 1 << 20;
/// Largest os-release / image-version-info read, in bytes.
const MAX_TEXT_BYTES: u64 = 64 << 10;

/// The device type a base image is built for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceInfo {
    /// Device-type slug (`intel-nuc`, `fincm3`, ...).
    pub slug: Option<String>,
    /// Architecture (`amd64`, `armv7hf`, `aarch64`, ...).
    pub arch: Option<String>,
    /// Where it was read: `device-type.json` or `config.json`.
    pub source: &'static str,
}

/// The OS release of a base image.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct OsInfo {
    /// `PRETTY_NAME` of os-release.
    pub pretty_name: Option<String>,
    /// `VERSION` (else `VERSION_ID`) of os-release.
    pub version: Option<String>,
    /// `/etc/image-version-info`, trimmed.
    pub image_version_info: Option<String>,
}

fn read_fat_json<R: ReadAt>(
    fat: &FatReader<R>,
    number: u32,
    label: &str,
    file: &str,
) -> Result<Option<Value>, Error> {
    let bytes = match fat.read_file(file, MAX_JSON_BYTES) {
        Ok(b) => b,
        Err(kiln_fat::Error::NotFound { .. }) => return Ok(None),
        Err(source) => {
            return Err(Error::Fat {
                partition: number,
                label: label.into(),
                file: file.into(),
                source,
            })
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| Error::Json {
            partition: number,
            label: label.into(),
            file: file.into(),
            source,
        })
}

fn string(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Reads the device type from the boot partition: `device-type.json`
/// (`slug`, `arch`), else `config.json` (`deviceType`, no arch).
///
/// # Errors
/// [`Error::MissingLabel`] without a boot partition; [`Error::Fat`],
/// [`Error::Json`]; [`Error::NoDeviceType`] when neither file names it.
pub fn device_info<R: ReadAt + ?Sized>(disk: &R, layout: &Layout) -> Result<DeviceInfo, Error> {
    let boot = layout.require(Role::Boot)?;
    let label = boot.display_label();
    let fat = FatReader::open(SubRegion::new(disk, boot.start_bytes, boot.size_bytes)).map_err(
        |source| Error::Fat {
            partition: boot.number,
            label: label.clone(),
            file: "/".into(),
            source,
        },
    )?;
    if let Some(dt) = read_fat_json(&fat, boot.number, &label, "device-type.json")? {
        let slug = string(&dt, "slug");
        if slug.is_some() {
            return Ok(DeviceInfo {
                slug,
                arch: string(&dt, "arch"),
                source: "device-type.json",
            });
        }
    }
    if let Some(cfg) = read_fat_json(&fat, boot.number, &label, "config.json")? {
        if let Some(slug) = string(&cfg, "deviceType") {
            return Ok(DeviceInfo {
                slug: Some(slug),
                arch: None,
                source: "config.json",
            });
        }
    }
    Err(Error::NoDeviceType {
        partition: boot.number,
        label,
    })
}

/// Parses os-release(5) text: `KEY=value` lines, values optionally in
/// double or single quotes with backslash escapes.
pub fn parse_os_release(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let unq = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            let inner = v.get(1..v.len() - 1).unwrap_or_default();
            let mut s = String::new();
            let mut esc = false;
            for c in inner.chars() {
                if esc {
                    s.push(c);
                    esc = false;
                } else if c == '\\' {
                    esc = true;
                } else {
                    s.push(c);
                }
            }
            s
        } else {
            v.to_string()
        };
        out.push((k.trim().to_string(), unq));
    }
    out
}

/// Reads the OS release from rootA: `/etc/os-release` (following its
/// symlink; `/usr/lib/os-release` when `/etc` has none) and
/// `/etc/image-version-info` if present.
///
/// `disk` is shared (`Rc`) because the ext4 reader keeps its source.
///
/// # Errors
/// [`Error::MissingLabel`] without rootA; [`Error::Ext4`] when it cannot
/// be read; [`Error::TooLarge`] for an oversized file.
pub fn os_info<R: ReadAt + ?Sized + 'static>(
    disk: &Rc<R>,
    layout: &Layout,
) -> Result<OsInfo, Error> {
    let root = layout.require(Role::RootA)?;
    let fs = Ext4Part::open(disk, root)?;
    let mut info = OsInfo::default();
    let release = ["/etc/os-release", "/usr/lib/os-release"]
        .into_iter()
        .map(|p| Ok((p, fs.exists(p)?)))
        .collect::<Result<Vec<_>, Error>>()?
        .into_iter()
        .find_map(|(p, e)| e.then_some(p));
    if let Some(p) = release {
        let text = fs.read_small(p, MAX_TEXT_BYTES)?;
        let kv = parse_os_release(&String::from_utf8_lossy(&text));
        let get = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        info.pretty_name = get("PRETTY_NAME");
        info.version = get("VERSION").or_else(|| get("VERSION_ID"));
    }
    let ivi = "/etc/image-version-info";
    if fs.exists(ivi)? {
        let text = fs.read_small(ivi, MAX_TEXT_BYTES)?;
        info.image_version_info = Some(String::from_utf8_lossy(&text).trim().to_string());
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_parsing() {
        let t = "ID=balena-os\nNAME=\"balenaOS\"\n# c\nVERSION='2.115.3'\nPRETTY_NAME=\"balenaOS \\\"2\\\"\"\nBAD\n";
        let kv = parse_os_release(t);
        assert_eq!(
            kv,
            vec![
                ("ID".into(), "balena-os".into()),
                ("NAME".into(), "balenaOS".into()),
                ("VERSION".into(), "2.115.3".into()),
                ("PRETTY_NAME".into(), "balenaOS \"2\"".into()),
            ]
        );
    }
}
