//! Board profiles (`board-profiles/*.toml`): hardware and the partition
//! layout the board's OS expects.

use crate::span::{closest, locate, unknown_field};
use crate::{Error, Location};
use kiln_units::{ByteSize, Guid, MIB};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// CPU architecture (Debian naming).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// x86-64.
    Amd64,
    /// 32-bit ARM, hard float (armv7).
    Armhf,
    /// 64-bit ARM.
    Arm64,
}

impl Arch {
    /// The Debian architecture name, also the recipe's `[os.<arch>]` key.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Armhf => "armhf",
            Arch::Arm64 => "arm64",
        }
    }
    /// The OCI platforms to look for in a multi-platform index, in order
    /// of preference.
    pub fn platforms(self) -> Vec<Platform> {
        let p = |arch: &str, variant: Option<&str>| Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
        };
        match self {
            Arch::Amd64 => vec![p("amd64", None)],
            Arch::Armhf => vec![p("arm", Some("v7")), p("arm", Some("v6"))],
            Arch::Arm64 => vec![p("arm64", Some("v8")), p("arm64", None)],
        }
    }
}

/// An OCI platform (`os/architecture[/variant]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// Operating system, `linux`.
    pub os: String,
    /// OCI architecture (`amd64`, `arm`, `arm64`).
    pub architecture: String,
    /// Variant (`v7`), if any.
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Partition table type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TableKind {
    /// MBR with primary partitions and an extended partition holding
    /// logical ones.
    Mbr,
    /// GUID partition table.
    Gpt,
}

/// What a partition is for; decides what the pipeline puts in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Boot files and injected configuration.
    Boot,
    /// The active OS root filesystem.
    RootA,
    /// The inactive OS root (empty filesystem of the same size).
    RootB,
    /// Persistent OS state (empty filesystem).
    State,
    /// Engine store, apps.json, swapfile.
    Data,
}

/// Filesystem written into a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FsKind {
    /// FAT16.
    Fat16,
    /// FAT32.
    Fat32,
    /// ext4.
    Ext4,
}

/// How big a partition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartSize {
    /// Exactly this many bytes.
    Fixed(ByteSize),
    /// Sized from its content (plus the recipe's headroom), or to fill the
    /// medium when the recipe asks; only the last partition may be auto.
    Auto,
}

/// One partition of a board layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    /// Filesystem label, and GPT partition name.
    pub label: String,
    /// What goes in it.
    pub role: Role,
    /// Its filesystem.
    pub fs: FsKind,
    /// Its size.
    pub size: PartSize,
    /// MBR partition type byte.
    pub mbr_type: u8,
    /// GPT partition type GUID.
    pub gpt_type: Guid,
    /// MBR active flag / GPT legacy BIOS bootable attribute.
    pub bootable: bool,
    /// MBR only: a logical partition inside the extended partition.
    pub logical: bool,
}

/// A target medium the image must fit on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// Name used with `--media` (e.g. `8GB`).
    pub name: String,
    /// Usable size in bytes.
    pub size: ByteSize,
}

/// A validated board profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardProfile {
    /// Profile name (`nuc`, `fin-cm3plus`).
    pub name: String,
    /// One line for `kiln boards`.
    pub description: String,
    /// CPU architecture.
    pub arch: Arch,
    /// `deviceType` written to config.json.
    pub device_type: String,
    /// Partition table type.
    pub table: TableKind,
    /// Partition alignment in bytes (4 MiB).
    pub alignment: u64,
    /// Offset of the first partition in bytes (4 MiB).
    pub first_offset: u64,
    /// MBR: gap in bytes between an EBR and its logical partition (4 MiB).
    pub ebr_gap: u64,
    /// Target media, smallest first.
    pub media: Vec<Media>,
    /// RAM of the board, informational (swap sizing).
    pub ram: Option<ByteSize>,
    /// Partitions in table order.
    pub partitions: Vec<PartitionSpec>,
    /// The file it was read from.
    pub source: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WireProfile {
    name: Spanned<String>,
    description: String,
    arch: Arch,
    table: TableKind,
    device_type: String,
    #[serde(default)]
    alignment: Option<Spanned<ByteSize>>,
    #[serde(default)]
    first_partition: Option<Spanned<ByteSize>>,
    #[serde(default)]
    ebr_gap: Option<Spanned<ByteSize>>,
    media: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    ram: Option<ByteSize>,
    #[serde(rename = "partition")]
    partitions: Spanned<Vec<WirePartition>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WirePartition {
    label: Spanned<String>,
    role: Role,
    fs: FsKind,
    size: Spanned<String>,
    #[serde(default)]
    mbr_type: Option<Spanned<u8>>,
    #[serde(default)]
    gpt_type: Option<Spanned<String>>,
    #[serde(default)]
    bootable: bool,
    #[serde(default)]
    logical: bool,
}

/// GPT type GUIDs known by name (UEFI 2.10 table 5.7; Discoverable
/// Partitions Specification).
const GPT_ESP: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
const GPT_LINUX: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";
const GPT_BIOS_BOOT: &str = "21686148-6449-6e6f-744e-656564454649";

/// Parses TOML into `T`, turning toml errors into located kiln errors.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    src: &str,
    file: &Path,
) -> Result<T, Error> {
    toml::from_str(src).map_err(|e| {
        let at = locate(file, src, e.span());
        let msg = e.message().lines().next().unwrap_or_default().to_string();
        match unknown_field(&msg) {
            Some((key, expected)) => Error::UnknownKey {
                at,
                suggestion: closest(&key, expected.iter().map(String::as_str)).map(str::to_string),
                key,
            },
            None => Error::Syntax { at, message: msg },
        }
    })
}

pub(crate) fn read_file(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl BoardProfile {
    /// Reads and validates a profile file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let src = read_file(path)?;
        Self::from_toml_str(&src, path)
    }

    /// Validates profile TOML; `file` labels errors.
    pub fn from_toml_str(src: &str, file: &Path) -> Result<Self, Error> {
        let w: WireProfile = parse_toml(src, file)?;
        let cx = Cx { file, src };
        let invalid = |span, key: &str, reason| cx.invalid(span, key, reason);
        let aligned = |v: &Option<Spanned<ByteSize>>, key: &str| -> Result<u64, Error> {
            match v {
                None => Ok(4 * MIB),
                Some(s) if s.get_ref().bytes() == 0 || !s.get_ref().is_aligned(512) => {
                    Err(invalid(
                        s.span(),
                        key,
                        "must be a non-zero multiple of 512 bytes".into(),
                    ))
                }
                Some(s) => Ok(s.get_ref().bytes()),
            }
        };
        let alignment = aligned(&w.alignment, "alignment")?;
        let first_offset = aligned(&w.first_partition, "first-partition")?;
        let ebr_gap = aligned(&w.ebr_gap, "ebr-gap")?;
        if first_offset % alignment != 0 {
            return Err(invalid(
                w.first_partition.as_ref().map_or(0..0, Spanned::span),
                "first-partition",
                format!(
                    "must be a multiple of the alignment ({})",
                    ByteSize::new(alignment)
                ),
            ));
        }
        let name = w.name.get_ref().clone();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(invalid(
                w.name.span(),
                "name",
                "use letters, digits and `-`".into(),
            ));
        }
        let media = cx.media(&w.media)?;
        let count = w.partitions.get_ref().len();
        if count == 0 {
            return Err(invalid(
                w.partitions.span(),
                "partition",
                "no partitions".into(),
            ));
        }
        let mut partitions: Vec<PartitionSpec> = Vec::new();
        for (i, p) in w.partitions.get_ref().iter().enumerate() {
            let seen_logical = partitions.iter().any(|p| p.logical);
            partitions.push(cx.partition(i, p, count, (alignment, w.table), seen_logical)?);
        }
        cx.check_partition_set(&partitions, w.table, w.partitions.span())?;
        Ok(Self {
            name,
            description: w.description,
            arch: w.arch,
            device_type: w.device_type,
            table: w.table,
            alignment,
            first_offset,
            ebr_gap,
            media,
            ram: w.ram,
            partitions,
            source: file.to_path_buf(),
        })
    }

    /// The medium named `name` (`8GB`, `64GB`), or an error listing the
    /// profile's media.
    pub fn medium(&self, name: &str) -> Result<&Media, Error> {
        let want = name.replace(' ', "");
        self.media
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(&want))
            .ok_or_else(|| Error::Invalid {
                at: Location {
                    file: self.source.clone(),
                    line: 0,
                    column: 0,
                },
                key: "media".into(),
                reason: format!(
                    "no medium {name:?} for board {}; it has {}",
                    self.name,
                    self.media
                        .iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }
}

/// Locates errors in one profile file.
struct Cx<'a> {
    file: &'a Path,
    src: &'a str,
}

impl Cx<'_> {
    fn invalid(&self, span: std::ops::Range<usize>, key: &str, reason: String) -> Error {
        Error::Invalid {
            at: locate(self.file, self.src, Some(span)),
            key: key.to_string(),
            reason,
        }
    }

    /// `media`: the sizes the image must fit, smallest first.
    fn media(&self, w: &Spanned<Vec<Spanned<String>>>) -> Result<Vec<Media>, Error> {
        let mut media = Vec::new();
        for m in w.get_ref() {
            let size: ByteSize = m
                .get_ref()
                .parse()
                .map_err(|e| self.invalid(m.span(), "media", format!("{e}")))?;
            media.push(Media {
                name: m.get_ref().replace(' ', ""),
                size,
            });
        }
        if media.is_empty() {
            return Err(self.invalid(w.span(), "media", "list at least one medium".into()));
        }
        media.sort_by_key(|m| m.size);

        Ok(media)
    }

    /// `[[partition]]` number `i` (0-based) of `count`; `seen_logical`:
    /// an earlier one is logical.
    fn partition(
        &self,
        i: usize,
        p: &WirePartition,
        count: usize,
        (alignment, table): (u64, TableKind),
        seen_logical: bool,
    ) -> Result<PartitionSpec, Error> {
        let key = |k: &str| format!("partition[{}].{k}", i + 1);
        let label = p.label.get_ref().clone();
        let max_label = if p.fs == FsKind::Ext4 { 16 } else { 11 };
        if label.is_empty() || label.len() > max_label || !label.is_ascii() {
            return Err(self.invalid(
                p.label.span(),
                &key("label"),
                format!("must be 1 to {max_label} ASCII characters for {:?}", p.fs),
            ));
        }
        let size = match p.size.get_ref().as_str() {
            "auto" | "rest" => {
                if i + 1 != count {
                    return Err(self.invalid(
                        p.size.span(),
                        &key("size"),
                        "only the last partition can be sized automatically".into(),
                    ));
                }
                PartSize::Auto
            }
            s => {
                let b: ByteSize = s
                    .parse()
                    .map_err(|e| self.invalid(p.size.span(), &key("size"), format!("{e}")))?;
                if b.bytes() == 0 || !b.is_aligned(alignment) {
                    return Err(self.invalid(
                        p.size.span(),
                        &key("size"),
                        format!(
                            "must be a non-zero multiple of the {} alignment",
                            ByteSize::new(alignment)
                        ),
                    ));
                }
                PartSize::Fixed(b)
            }
        };
        let default_mbr = match p.fs {
            FsKind::Fat16 => 0x0e,
            FsKind::Fat32 => 0x0c,
            FsKind::Ext4 => 0x83,
        };
        let mbr_type = p.mbr_type.as_ref().map_or(default_mbr, |s| *s.get_ref());
        if matches!(mbr_type, 0x00 | 0x05 | 0x0f | 0x85 | 0xee) {
            let span = p.mbr_type.as_ref().map_or(0..0, Spanned::span);
            return Err(self.invalid(
                span,
                &key("mbr-type"),
                format!("0x{mbr_type:02x} is reserved for the table itself"),
            ));
        }
        let gpt_type = self.gpt_type(p, &key("gpt-type"))?;
        if p.logical && table == TableKind::Gpt {
            return Err(self.invalid(
                p.label.span(),
                &key("logical"),
                "GPT has no logical partitions".into(),
            ));
        }
        if seen_logical && !p.logical {
            return Err(self.invalid(
                p.label.span(),
                &key("logical"),
                "primary partitions must come before logical ones".into(),
            ));
        }
        if p.fs != FsKind::Ext4 && p.role != Role::Boot {
            return Err(self.invalid(
                p.label.span(),
                &key("fs"),
                "only the boot partition can be FAT".into(),
            ));
        }
        if p.role == Role::Boot && p.fs == FsKind::Ext4 {
            return Err(self.invalid(
                p.label.span(),
                &key("fs"),
                "the boot partition must be FAT16 or FAT32".into(),
            ));
        }
        Ok(PartitionSpec {
            label,
            role: p.role,
            fs: p.fs,
            size,
            mbr_type,
            gpt_type,
            bootable: p.bootable,
            logical: p.logical,
        })
    }

    /// `gpt-type`: a GUID or one of the names esp, linux, bios-boot;
    /// by default ESP for the boot partition, Linux data otherwise.
    fn gpt_type(&self, p: &WirePartition, key: &str) -> Result<Guid, Error> {
        let gpt_type = match p.gpt_type.as_ref() {
            None => (if p.role == Role::Boot {
                GPT_ESP
            } else {
                GPT_LINUX
            })
            .to_string(),
            Some(s) => match s.get_ref().as_str() {
                "esp" => GPT_ESP.to_string(),
                "linux" => GPT_LINUX.to_string(),
                "bios-boot" => GPT_BIOS_BOOT.to_string(),
                other => other.to_string(),
            },
        };
        gpt_type.parse().map_err(|e| {
            let span = p.gpt_type.as_ref().map_or(0..0, Spanned::span);
            self.invalid(span, key, format!("{e}; or one of esp, linux, bios-boot"))
        })
    }

    /// The partitions together: MBR's primary count, one of each role.
    fn check_partition_set(
        &self,
        partitions: &[PartitionSpec],
        table: TableKind,
        span: std::ops::Range<usize>,
    ) -> Result<(), Error> {
        let seen_logical = partitions.iter().any(|p| p.logical);
        let primaries = partitions.iter().filter(|p| !p.logical).count();
        let max_primary = if seen_logical { 3 } else { 4 };
        if table == TableKind::Mbr && primaries > max_primary {
            return Err(self.invalid(
                span.clone(),
                "partition",
                format!("MBR allows {max_primary} primary partitions here, got {primaries}"),
            ));
        }
        for role in [Role::Boot, Role::RootA, Role::Data] {
            let n = partitions.iter().filter(|p| p.role == role).count();
            if n != 1 {
                return Err(self.invalid(
                    span.clone(),
                    "partition",
                    format!("need exactly one partition with role {role:?}, got {n}"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NUC: &str = r#"
name = "nuc"
description = "Intel NUC"
arch = "amd64"
table = "mbr"
device-type = "intel-nuc"
media = ["8GB", "16GB"]

[[partition]]
label = "resin-boot"
role = "boot"
fs = "fat16"
size = "40MiB"
bootable = true

[[partition]]
label = "resin-rootA"
role = "root-a"
fs = "ext4"
size = "1000MiB"

[[partition]]
label = "resin-data"
role = "data"
fs = "ext4"
size = "auto"
logical = true
"#;

    #[test]
    fn parses_nuc() {
        let p = BoardProfile::from_toml_str(NUC, Path::new("nuc.toml")).unwrap();
        assert_eq!(p.partitions[0].mbr_type, 0x0e);
        assert!(p.partitions[0].bootable);
        assert_eq!(p.partitions[1].size, PartSize::Fixed(ByteSize::mib(1000)));
        assert_eq!(p.partitions[2].size, PartSize::Auto);
        assert_eq!(p.media[0].size.bytes(), 8_000_000_000);
        assert_eq!(p.alignment, 4 * MIB);
        assert_eq!(p.medium("16gb").unwrap().size.bytes(), 16_000_000_000);
        assert!(p
            .medium("1TB")
            .unwrap_err()
            .to_string()
            .contains("8GB, 16GB"));
    }

    #[test]
    fn errors_name_line_and_key() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "device-type = \"intel-nuc\"",
                "devcie-type = \"intel-nuc\"",
                "nuc.toml:6:1: unknown key `devcie-type` (did you mean `device-type`?)",
            ),
            (
                "size = \"40MiB\"",
                "size = \"40MiX\"",
                "nuc.toml:13:8: `partition[1].size`: unknown unit",
            ),
            (
                "size = \"40MiB\"",
                "size = \"41MiB\"",
                "must be a non-zero multiple of the 4MiB alignment",
            ),
            (
                "arch = \"amd64\"",
                "arch = \"sparc\"",
                "nuc.toml:4:8: unknown variant `sparc`",
            ),
            (
                "fs = \"fat16\"",
                "fs = \"ext4\"",
                "the boot partition must be FAT16 or FAT32",
            ),
            (
                "media = [\"8GB\", \"16GB\"]",
                "media = \"8GB\"",
                "nuc.toml:7:9: invalid type",
            ),
        ];
        for (from, to, want) in cases {
            let src = NUC.replacen(from, to, 1);
            let e = BoardProfile::from_toml_str(&src, Path::new("nuc.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{to}: got {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }
}
