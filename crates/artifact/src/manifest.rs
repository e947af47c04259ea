//! The `manifest.json` model: what went into an image and what came out,
//! with secrets kept out by construction.
//!
//! # Determinism
//!
//! [`Manifest::to_json`] sorts every object's keys (recursively) and the
//! lists whose order carries no meaning (inputs, partitions by number,
//! images, services, artifacts), pretty-prints with two-space indents and
//! ends with a newline, so equal manifests give identical bytes whichever
//! order the pipeline filled them in. Nothing here reads the clock: the
//! build time is `source_date_epoch`, given by the caller.
//!
//! # Secrets
//!
//! Config values that are secrets (API keys, passwords, private keys) are
//! wrapped in [`Secret`] by the recipe layer. A `Secret` has no `Display`,
//! its `Debug` and `Serialize` output is the marker [`REDACTED`], and it
//! only enters the manifest as [`ConfigValue::Redacted`]. As a second
//! fence, [`Manifest::to_json_checked`] refuses to produce JSON in which
//! any given secret value appears (e.g. smuggled into an input's source
//! URL).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compress::Compression;
use crate::digest::Sha256Digest;
use crate::error::{Error, Result};

/// The marker written in place of a secret.
pub const REDACTED: &str = "**redacted**";
/// Version of the manifest layout written by this crate.
pub const MANIFEST_SCHEMA_VERSION: u32 = 1;

/// A secret value: never displayed, debug-printed or serialised.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret.
    pub fn new(value: T) -> Self {
        Self(value)
    }
    /// The secret itself, for the one place that must write it (e.g. the
    /// config.json on the boot partition).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl<T> Serialize for Secret<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

/// A config value as recorded in the manifest.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigValue {
    /// A public value, recorded as is.
    Public(Value),
    /// A secret: only the fact that it was set is recorded.
    Redacted,
}

impl ConfigValue {
    /// A public value.
    pub fn public(v: impl Into<Value>) -> Self {
        Self::Public(v.into())
    }
}

impl<T> From<&Secret<T>> for ConfigValue {
    fn from(_: &Secret<T>) -> Self {
        Self::Redacted
    }
}

impl Serialize for ConfigValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Self::Public(v) => v.serialize(s),
            Self::Redacted => s.serialize_str(REDACTED),
        }
    }
}

impl<'de> Deserialize<'de> for ConfigValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(match v {
            Value::String(s) if s == REDACTED => Self::Redacted,
            v => Self::Public(v),
        })
    }
}

/// A named file with its digest (profile, recipe).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedDigest {
    /// Name (profile name, recipe file name).
    pub name: String,
    /// sha256 of the file's bytes.
    pub sha256: Sha256Digest,
}

/// What an input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputKind {
    /// OS root filesystem (tar, directory, OCI image).
    RootFs,
    /// Boot partition files.
    BootFiles,
    /// A compose file.
    ComposeFile,
    /// An OCI image layout.
    OciLayout,
    /// A `docker save` archive.
    DockerArchive,
    /// A file included into config.json.
    ConfigFile,
    /// A NetworkManager connection profile.
    NetworkProfile,
    /// A CA certificate.
    CaCertificate,
    /// An SSH public key.
    SshKey,
    /// The OS image a base-image build preloads into.
    BaseImage,
    /// Anything else.
    Other,
}

/// One input of the build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Name used in the recipe.
    pub name: String,
    /// What it is.
    pub kind: InputKind,
    /// Where it came from (path or reference, as written in the recipe).
    pub source: String,
    /// sha256 of its bytes (of the tar/archive, or of a canonical
    /// serialisation for directories, as the pipeline documents).
    pub sha256: Sha256Digest,
    /// Size in bytes.
    pub size_bytes: u64,
}

/// The partition table kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartitionTable {
    /// MBR with optional extended/logical partitions.
    Mbr,
    /// GPT.
    Gpt,
}

/// The raw image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageInfo {
    /// Size in bytes.
    pub size_bytes: u64,
    /// Logical sector size in bytes.
    pub sector_size: u32,
    /// Table kind.
    pub table: PartitionTable,
    /// Disk identifier: GPT disk GUID or MBR signature (`0x1234abcd`).
    pub disk_id: String,
    /// sha256 of the uncompressed raw image (holes as zeros).
    pub sha256: Sha256Digest,
}

/// Filesystem of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filesystem {
    /// FAT16.
    Fat16,
    /// FAT32.
    Fat32,
    /// ext4.
    Ext4,
    /// No filesystem (extended partition, raw space).
    None,
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// Partition number as the kernel names it (1-based; logical from 5).
    pub number: u32,
    /// Filesystem label (equals the GPT partition name).
    pub label: String,
    /// Type: MBR type byte (`0x0c`) or GPT type GUID.
    pub type_id: String,
    /// Start in bytes from the beginning of the disk.
    pub start_bytes: u64,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Partition UUID (GPT unique GUID, or MBR `PARTUUID` `sig-NN`).
    pub partition_uuid: Option<String>,
    /// Filesystem.
    pub filesystem: Filesystem,
    /// Filesystem UUID / volume ID.
    pub fs_uuid: Option<String>,
}

/// A container image preloaded into the engine store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreloadedImage {
    /// The name it is stored under (what apps.json refers to).
    pub reference: String,
    /// Image ID: sha256 of the image config.
    pub image_id: Sha256Digest,
    /// Number of layers.
    pub layers: u32,
    /// Sum of uncompressed layer sizes in bytes.
    pub size_bytes: u64,
}

/// A service of the preloaded application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Application name.
    pub app: String,
    /// Service name.
    pub name: String,
    /// Image reference it runs.
    pub image: String,
}

/// The preloaded application.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preload {
    /// Images in the engine store.
    pub images: Vec<PreloadedImage>,
    /// Services in apps.json.
    pub services: Vec<Service>,
}

/// How the swapfile is activated on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SwapActivation {
    /// A systemd `.swap` unit.
    SystemdUnit,
    /// A service of the application.
    AppService,
    /// Not activated by kiln.
    Manual,
}

/// The swapfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Swap {
    /// Path on the device (e.g. `/mnt/data/swapfile`).
    pub path: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Swap label.
    pub label: Option<String>,
    /// Swap UUID.
    pub uuid: Option<String>,
    /// Activation.
    pub activation: SwapActivation,
}

/// Format of an artifact file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactFormat {
    /// Raw disk image.
    Raw,
    /// qcow2 v3.
    Qcow2,
    /// streamOptimized VMDK.
    Vmdk,
    /// Fixed VHD.
    VhdFixed,
    /// Dynamic VHD.
    VhdDynamic,
    /// Dynamic VHDX.
    Vhdx,
    /// monolithicSparse VMDK.
    VmdkSparse,
    /// OVA package.
    Ova,
    /// bmaptool block map.
    Bmap,
    /// SPDX 2.3 JSON SBOM.
    SpdxJson,
    /// CycloneDX JSON SBOM.
    CyclonedxJson,
}

/// One output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// File name, relative to the output directory.
    pub file: String,
    /// Format of the (uncompressed) content.
    pub format: ArtifactFormat,
    /// Compression applied on top.
    pub compression: Compression,
    /// Size of the file in bytes.
    pub size_bytes: u64,
    /// sha256 of the file as written.
    pub sha256: Sha256Digest,
}

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`MANIFEST_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Version of kiln that built the image.
    pub kiln_version: String,
    /// Board profile.
    pub profile: NamedDigest,
    /// Recipe.
    pub recipe: NamedDigest,
    /// `SOURCE_DATE_EPOCH` used for timestamps (seconds).
    pub source_date_epoch: Option<i64>,
    /// Inputs.
    pub inputs: Vec<Input>,
    /// The raw image.
    pub image: ImageInfo,
    /// Partitions.
    pub partitions: Vec<Partition>,
    /// Preloaded application.
    pub preload: Preload,
    /// Swapfile, if any.
    pub swap: Option<Swap>,
    /// Config keys written to config.json (secrets redacted).
    pub config: BTreeMap<String, ConfigValue>,
    /// Output files.
    pub artifacts: Vec<Artifact>,
    /// Id of the minisign key that signs `SHA256SUMS` (16 hex digits, as
    /// minisign shows it); absent for an unsigned build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_id: Option<String>,
}

fn canonical(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.into_iter().map(canonical).collect()),
        v => v,
    }
}

impl Manifest {
    /// Sorts the order-free lists (see the module docs).
    pub fn normalize(&mut self) {
        self.inputs
            .sort_by(|a, b| (a.kind, &a.name, &a.source).cmp(&(b.kind, &b.name, &b.source)));
        self.partitions.sort_by_key(|p| p.number);
        self.preload
            .images
            .sort_by(|a, b| a.reference.cmp(&b.reference));
        self.preload
            .services
            .sort_by(|a, b| (&a.app, &a.name).cmp(&(&b.app, &b.name)));
        self.artifacts.sort_by(|a, b| a.file.cmp(&b.file));
    }

    /// Canonical JSON: normalised lists, sorted keys, two-space indent,
    /// trailing newline.
    ///
    /// # Errors
    /// [`Error::Json`].
    pub fn to_json(&self) -> Result<String> {
        let mut m = self.clone();
        m.normalize();
        let v = canonical(serde_json::to_value(&m)?);
        let mut s = serde_json::to_string_pretty(&v)?;
        s.push('\n');
        Ok(s)
    }

    /// [`Manifest::to_json`], refusing output that contains any of
    /// `secrets` (raw values, compared as substrings of the JSON and of its
    /// JSON-escaped form).
    ///
    /// # Errors
    /// [`Error::SecretInManifest`] naming the secret's index; [`Error::Json`].
    pub fn to_json_checked(&self, secrets: &[&Secret<String>]) -> Result<String> {
        let json = self.to_json()?;
        for (index, s) in secrets.iter().enumerate() {
            let raw = s.expose();
            if raw.is_empty() {
                continue;
            }
            let escaped = serde_json::to_string(raw)?;
            let escaped = escaped.trim_matches('"');
            if json.contains(raw.as_str()) || json.contains(escaped) {
                return Err(Error::SecretInManifest { index });
            }
        }
        Ok(json)
    }

    /// Parses a manifest.
    ///
    /// # Errors
    /// [`Error::Json`] (unknown fields are refused).
    pub fn from_json(text: &str) -> Result<Self> {
        Ok(serde_json::from_str(text)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        let d = Sha256Digest::of;
        let mut config = BTreeMap::new();
        config.insert("hostname".to_owned(), ConfigValue::public("fin-01"));
        let key = Secret::new("s3cr3t-api-key".to_owned());
        config.insert("deviceApiKey".to_owned(), ConfigValue::from(&key));
        Manifest {
            schema_version: MANIFEST_SCHEMA_VERSION,
            kiln_version: "0.1.0".into(),
            profile: NamedDigest {
                name: "fin-cm3".into(),
                sha256: d(b"p"),
            },
            recipe: NamedDigest {
                name: "bob.toml".into(),
                sha256: d(b"r"),
            },
            source_date_epoch: Some(1_700_000_000),
            inputs: vec![
                Input {
                    name: "rootfs".into(),
                    kind: InputKind::RootFs,
                    source: "rootfs.tar.zst".into(),
                    sha256: d(b"i1"),
                    size_bytes: 10,
                },
                Input {
                    name: "api".into(),
                    kind: InputKind::OciLayout,
                    source: "oci/api".into(),
                    sha256: d(b"i2"),
                    size_bytes: 20,
                },
            ],
            image: ImageInfo {
                size_bytes: 1 << 30,
                sector_size: 512,
                table: PartitionTable::Mbr,
                disk_id: "0x1234abcd".into(),
                sha256: d(b"img"),
            },
            partitions: vec![Partition {
                number: 1,
                label: "resin-boot".into(),
                type_id: "0x0c".into(),
                start_bytes: 4 << 20,
                size_bytes: 40 << 20,
                partition_uuid: Some("1234abcd-01".into()),
                filesystem: Filesystem::Fat32,
                fs_uuid: Some("ABCD-1234".into()),
            }],
            preload: Preload {
                images: vec![PreloadedImage {
                    reference: "registry/api:1".into(),
                    image_id: d(b"cfg"),
                    layers: 3,
                    size_bytes: 100,
                }],
                services: vec![Service {
                    app: "bob".into(),
                    name: "api".into(),
                    image: "registry/api:1".into(),
                }],
            },
            swap: Some(Swap {
                path: "/mnt/data/swapfile".into(),
                size_bytes: 1 << 30,
                label: Some("swap".into()),
                uuid: None,
                activation: SwapActivation::SystemdUnit,
            }),
            config,
            artifacts: vec![Artifact {
                file: "bob.img.xz".into(),
                format: ArtifactFormat::Raw,
                compression: Compression::Xz,
                size_bytes: 5,
                sha256: d(b"a"),
            }],
            signing_key_id: None,
        }
    }

    #[test]
    fn deterministic_sorted_and_round_trips() {
        let m = sample();
        let a = m.to_json().unwrap();
        let mut shuffled = m.clone();
        shuffled.inputs.reverse();
        assert_eq!(shuffled.to_json().unwrap(), a);
        // Top-level keys are sorted.
        let keys: Vec<&str> = a
            .lines()
            .filter(|l| l.starts_with("  \""))
            .map(|l| l.trim().split('"').nth(1).unwrap())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted);
        assert!(a.ends_with("}\n"));
        let back = Manifest::from_json(&a).unwrap();
        assert_eq!(back.to_json().unwrap(), a);
        assert_eq!(back.config["deviceApiKey"], ConfigValue::Redacted);
    }

    #[test]
    fn secrets_never_leak() {
        let key = Secret::new("s3cr3t-api-key".to_owned());
        assert_eq!(format!("{key:?}"), "Secret(**redacted**)");
        assert_eq!(serde_json::to_string(&key).unwrap(), "\"**redacted**\"");
        let m = sample();
        let json = m.to_json_checked(&[&key]).unwrap();
        assert!(!json.contains("s3cr3t"));
        assert!(json.contains(REDACTED));
        let mut leaky = m;
        leaky.inputs[0].source = "https://user:s3cr3t-api-key@host/x".into();
        assert!(matches!(
            leaky.to_json_checked(&[&Secret::new(String::new()), &key]),
            Err(Error::SecretInManifest { index: 1 })
        ));
    }

    #[test]
    fn unknown_fields_refused() {
        let mut v: Value = serde_json::from_str(&sample().to_json().unwrap()).unwrap();
        v["extra"] = Value::Bool(true);
        assert!(Manifest::from_json(&v.to_string()).is_err());
    }
}
