//! Finding the balenaOS partitions of a base image by filesystem label.
//!
//! The table is read with `kiln-part` (MBR including the extended/logical
//! chain, or GPT). Each partition's filesystem is probed from its first
//! bytes: ext4 by the superblock at byte 1024 (kernel
//! Documentation/filesystems/ext4/super.rst), FAT by mounting it with
//! `kiln-fat`. The label is the filesystem's (FAT volume label, ext4
//! `s_volume_name`), or, without one, the GPT partition name.
//!
//! | role | labels accepted (case-insensitive) |
//! |---|---|
//! | boot | `resin-boot`, `balena-boot`, `flash-boot` |
//! | rootA | `resin-rootA`, `balena-rootA`, `flash-rootA` |
//! | rootB | `resin-rootB`, `balena-rootB`, `flash-rootB` |
//! | state | `resin-state`, `balena-state`, `flash-state` |
//! | data | `resin-data`, `balena-data`, `flash-data` |
//!
//! A `flash-*` boot label marks a flasher (installer) image.

use kiln_fat::FatReader;
use kiln_part::{read_table, PartitionType, Scheme};
use kiln_units::{ReadAt, SubRegion};

use crate::ext4::Ext4Super;
use crate::Error;

/// A filesystem kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    /// FAT12/16/32.
    Fat,
    /// ext2/3/4.
    Ext4,
    /// Anything else (or nothing).
    Other,
}

/// What a partition is for in the balenaOS layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Role {
    /// FAT boot partition (config.json, device-type.json, bootloader).
    Boot,
    /// Root filesystem A.
    RootA,
    /// Root filesystem B.
    RootB,
    /// Persistent state.
    State,
    /// Data partition (`/mnt/data`: the engine store, apps.json).
    Data,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Boot,
        Role::RootA,
        Role::RootB,
        Role::State,
        Role::Data,
    ];

    /// The label suffix after `resin-`/`balena-`/`flash-`.
    fn suffix(self) -> &'static str {
        match self {
            Role::Boot => "boot",
            Role::RootA => "roota",
            Role::RootB => "rootb",
            Role::State => "state",
            Role::Data => "data",
        }
    }

    /// The labels accepted, `|`-separated (for messages).
    pub fn labels(self) -> &'static str {
        match self {
            Role::Boot => "resin-boot|balena-boot|flash-boot",
            Role::RootA => "resin-rootA|balena-rootA|flash-rootA",
            Role::RootB => "resin-rootB|balena-rootB|flash-rootB",
            Role::State => "resin-state|balena-state|flash-state",
            Role::Data => "resin-data|balena-data|flash-data",
        }
    }

    /// The role a label stands for.
    pub fn from_label(label: &str) -> Option<Role> {
        let l = label.trim().to_ascii_lowercase();
        let rest = ["resin-", "balena-", "flash-"]
            .iter()
            .find_map(|p| l.strip_prefix(p))?;
        Role::ALL.into_iter().find(|r| r.suffix() == rest)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Boot => "boot",
            Role::RootA => "rootA",
            Role::RootB => "rootB",
            Role::State => "state",
            Role::Data => "data",
        })
    }
}

/// One partition of the base image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasePartition {
    /// Linux partition number (MBR logical partitions from 5).
    pub number: u32,
    /// First byte on the disk.
    pub start_bytes: u64,
    /// Length in bytes.
    pub size_bytes: u64,
    /// Filesystem label, else the GPT partition name.
    pub label: Option<String>,
    /// The filesystem found.
    pub fs: FsType,
    /// Its role, from the label.
    pub role: Option<Role>,
    /// MBR type byte or GPT type GUID.
    pub partition_type: PartitionType,
    /// Logical partition inside the MBR extended one.
    pub logical: bool,
    /// MBR active flag / GPT legacy-bootable attribute.
    pub bootable: bool,
}

impl BasePartition {
    /// One past the last byte.
    pub fn end_bytes(&self) -> u64 {
        self.start_bytes.saturating_add(self.size_bytes)
    }
    /// The label or `p<number>` (for messages).
    pub fn display_label(&self) -> String {
        self.label
            .clone()
            .unwrap_or_else(|| format!("p{}", self.number))
    }
}

/// A byte range of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start_bytes: u64,
    /// Length in bytes.
    pub size_bytes: u64,
}

/// The layout of a base image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// MBR or GPT and the table-wide fields.
    pub scheme: Scheme,
    /// Disk size in bytes.
    pub disk_bytes: u64,
    /// Partitions in number order, without the MBR extended container.
    pub partitions: Vec<BasePartition>,
    /// The MBR extended container, if any.
    pub extended: Option<Span>,
    /// A flasher (installer) image: the boot label is `flash-boot`.
    pub flasher: bool,
}

impl Layout {
    /// The partition with role `r` (the first, should labels repeat).
    pub fn role(&self, r: Role) -> Option<&BasePartition> {
        self.partitions.iter().find(|p| p.role == Some(r))
    }

    /// Every label found, in partition order.
    pub fn labels(&self) -> Vec<String> {
        self.partitions
            .iter()
            .filter_map(|p| p.label.clone())
            .collect()
    }

    /// The partition with role `r`, or [`Error::MissingLabel`].
    ///
    /// # Errors
    /// [`Error::MissingLabel`].
    pub fn require(&self, r: Role) -> Result<&BasePartition, Error> {
        self.role(r).ok_or_else(|| Error::MissingLabel {
            role: r,
            expected: r.labels(),
            found: self.labels(),
        })
    }
}

/// Reads the partition table of `disk` and labels each partition.
///
/// # Errors
/// [`Error::UnknownLayout`] without a readable MBR or GPT;
/// [`Error::MissingLabel`] when the boot partition is missing, or the data
/// partition (rootA for a flasher, which has no data partition to keep).
pub fn detect<R: ReadAt + ?Sized>(disk: &R) -> Result<Layout, Error> {
    let table = read_table(disk).map_err(|source| match source {
        kiln_part::Error::Io { offset, source } => Error::Disk { offset, source },
        source => Error::UnknownLayout { source },
    })?;
    let mut partitions = Vec::new();
    let mut extended = None;
    for p in &table.partitions {
        if p.is_extended() {
            extended = Some(Span {
                start_bytes: p.start_bytes,
                size_bytes: p.size_bytes,
            });
            continue;
        }
        let region = SubRegion::new(disk, p.start_bytes, p.size_bytes);
        let (fs, fs_label) = probe(&region);
        let label = fs_label.or_else(|| p.name.clone().filter(|n| !n.is_empty()));
        let role = label.as_deref().and_then(Role::from_label);
        partitions.push(BasePartition {
            number: p.number,
            start_bytes: p.start_bytes,
            size_bytes: p.size_bytes,
            label,
            fs,
            role,
            partition_type: p.partition_type,
            logical: p.logical,
            bootable: p.bootable,
        });
    }
    let mut layout = Layout {
        scheme: table.scheme,
        disk_bytes: table.disk_bytes,
        partitions,
        extended,
        flasher: false,
    };
    let boot = layout.require(Role::Boot)?;
    layout.flasher = boot
        .label
        .as_deref()
        .is_some_and(|l| l.to_ascii_lowercase().starts_with("flash-"));
    layout.require(if layout.flasher {
        Role::RootA
    } else {
        Role::Data
    })?;
    Ok(layout)
}

/// The filesystem in `region` and its label.
fn probe<R: ReadAt>(region: &R) -> (FsType, Option<String>) {
    if let Ok(Some(sb)) = Ext4Super::read(region) {
        return (FsType::Ext4, Some(sb.label).filter(|l| !l.is_empty()));
    }
    if let Ok(fat) = FatReader::open(region) {
        let label = fat
            .volume_label()
            .ok()
            .flatten()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty());
        return (FsType::Fat, label);
    }
    (FsType::Other, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_from_labels() {
        let table = [
            ("resin-boot", Some(Role::Boot)),
            ("RESIN-BOOT", Some(Role::Boot)),
            ("balena-boot", Some(Role::Boot)),
            ("flash-boot", Some(Role::Boot)),
            ("resin-rootA", Some(Role::RootA)),
            ("flash-rootA", Some(Role::RootA)),
            ("resin-rootB", Some(Role::RootB)),
            ("resin-state", Some(Role::State)),
            ("balena-data", Some(Role::Data)),
            ("resin-data", Some(Role::Data)),
            ("flash-data", Some(Role::Data)),
            ("resin-rootC", None),
            ("boot", None),
            ("", None),
        ];
        for (l, want) in table {
            assert_eq!(Role::from_label(l), want, "{l}");
        }
    }

    #[test]
    fn no_table_is_unknown_layout() {
        let disk = vec![0u8; 1 << 20];
        let e = detect(&disk).unwrap_err();
        assert!(matches!(e, Error::UnknownLayout { .. }), "{e}");
        assert!(e.to_string().contains("no usable MBR or GPT"), "{e}");
    }
}
