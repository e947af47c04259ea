//! Recipes (`recipes/*.toml`): what goes into the partitions, for any
//! board.
//!
//! ```toml
//! name = "bob-onprem"
//! [os.amd64]
//! rootfs = "../.cache/demo/rootfs-amd64.tar.gz"   # directory or tar[.gz|.xz|.zst]
//! boot = "../.cache/demo/boot-amd64"              # directory or tar
//! [config]                                        # config.json
//! hostname = "bob"
//! deviceApiKey = { from-env = "BOB_API_KEY", secret = true }
//! [network]
//! profiles = ["network/ethernet"]                 # -> system-connections/
//! [ca]
//! certificates = ["certs/ca.pem"]                 # -> balenaRootCA
//! [ssh]
//! authorized-keys = ["ssh-ed25519 AAAA... ops"]   # -> os.sshKeys
//! [data]
//! headroom = "256MiB"
//! [swap]
//! size = "1GiB"
//! ```
//! Relative paths are resolved against the recipe's directory.

use crate::config::{self, ConfigValue, EnvLookup, ResolvedConfig};
use crate::profile::{parse_toml, read_file};
use crate::span::locate;
use crate::{Arch, Error, Location};
use base64::Engine as _;
use kiln_units::ByteSize;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A file or directory the recipe names, with where it is named, so a
/// missing input is reported against the recipe line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputPath {
    /// Resolved path.
    pub path: PathBuf,
    /// The recipe key naming it (e.g. `os.amd64.rootfs`).
    pub key: String,
    /// Where in the recipe.
    pub at: Location,
}

impl InputPath {
    /// Fails with a located error unless the path exists and (symlinks
    /// followed) is a directory or a regular file: a device, FIFO or
    /// socket (`/dev/zero`, a named pipe) would never end or would block.
    pub fn check_exists(&self) -> Result<(), Error> {
        std::fs::symlink_metadata(&self.path).map_err(|source| Error::InputFile {
            at: self.at.clone(),
            key: self.key.clone(),
            path: self.path.clone(),
            source,
        })?;
        match std::fs::metadata(&self.path) {
            Ok(md) if !md.is_dir() && !md.is_file() => Err(Error::InputNotRegular {
                at: self.at.clone(),
                key: self.key.clone(),
                path: self.path.clone(),
                kind: kiln_units::FileKind::of(md.file_type()).name(),
            }),
            _ => Ok(()),
        }
    }
    /// Reads the whole file (small inputs only: certificates, profiles).
    pub fn read(&self) -> Result<Vec<u8>, Error> {
        std::fs::read(&self.path).map_err(|source| Error::InputFile {
            at: self.at.clone(),
            key: self.key.clone(),
            path: self.path.clone(),
            source,
        })
    }
    /// A located validation error about this input.
    pub fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::Invalid {
            at: self.at.clone(),
            key: self.key.clone(),
            reason: reason.into(),
        }
    }
}

/// The OS for one architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsSpec {
    /// Root filesystem: directory or tar (plain, gz, xz, zst).
    pub rootfs: Option<InputPath>,
    /// Boot partition files: directory or tar.
    pub boot: Option<InputPath>,
    /// MBR boards, BIOS boot: GRUB's `boot.img` (512 bytes, of which the
    /// first 440 become the MBR boot code) followed by `core.img`, which
    /// is written from LBA 1 up to the first partition.
    pub bios_boot: Option<InputPath>,
}

/// An extra file for the boot partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootExtra {
    /// Source file.
    pub src: InputPath,
    /// Destination path inside the boot partition.
    pub dest: String,
}

/// Data partition size policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataSize {
    /// What goes in, plus headroom (the device grows it on first boot).
    Auto,
    /// Up to the end of the chosen medium.
    Fill,
    /// Exactly this size.
    Fixed(ByteSize),
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSpec {
    /// Free space left in the data filesystem beyond its content.
    pub headroom: ByteSize,
    /// Size policy.
    pub size: DataSize,
}

/// `[app]`: the preloaded multi-container application.
#[derive(Debug, Clone, PartialEq)]
pub struct AppSpec {
    /// The compose file.
    pub compose: InputPath,
    /// Images: OCI layouts (directory or tar) or `docker save` archives.
    pub images: Vec<AppImage>,
    /// App name in apps.json.
    pub name: String,
    /// App uuid (32 hex); derived from the build seed when absent.
    pub uuid: Option<String>,
    /// Numeric app id.
    pub app_id: u64,
    /// Release commit (hex); derived from the inputs when absent.
    pub commit: Option<String>,
    /// Numeric release id.
    pub release_id: u64,
    /// Where the engine store goes, relative to the data partition root.
    pub store_path: String,
    /// `pinDevice` in apps.json.
    pub pin_device: bool,
    /// `config` vars in apps.json.
    pub config: serde_json::Value,
}

/// One image input of `[app]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppImage {
    /// OCI layout (directory or tar) or `docker save` archive.
    pub input: InputPath,
    /// Repository name (`demo/api`) for layouts that name images by tag
    /// only.
    pub name: Option<String>,
}

/// How the swapfile is switched on on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SwapActivation {
    /// A systemd `.swap` unit in the root filesystem kiln builds.
    SystemdUnit,
    /// A privileged `swap` service added to the app (read-only roots).
    AppService,
    /// Not activated by kiln.
    None,
}

/// `[swap]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapSpec {
    /// Size in bytes; 0 disables.
    pub size: ByteSize,
    /// Path on the data partition (`/swapfile`).
    pub path: String,
    /// Swap label (at most 15 bytes).
    pub label: String,
    /// Activation.
    pub activation: SwapActivation,
    /// `activation = "app-service"`: the app image (one of `[app]
    /// images`, by reference) whose busybox runs `mount` and `swapon` in
    /// the privileged swap service.
    pub service_image: Option<String>,
}

/// `[build]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSpec {
    /// Seed for every UUID, GUID and disk signature. Without one, a build
    /// with a SOURCE_DATE_EPOCH derives it from the recipe name and that
    /// time (reproducible), any other build gets fresh identities.
    pub seed: Option<String>,
    /// Timestamp for every file and filesystem time, unless the
    /// environment's SOURCE_DATE_EPOCH is given to the build.
    pub source_date_epoch: Option<i64>,
}

/// `[output]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    /// Formats to write (`raw`, `qcow2`, `vmdk`, `vhd`).
    pub formats: Vec<String>,
    /// Compression (`none`, `xz`, `gz`, `zst`).
    pub compress: String,
    /// Whether the SBOMs (`NAME.spdx.json`, `NAME.cdx.json`) are written
    /// (default true).
    pub sbom: bool,
}

/// `[base]`: the OS vendor's released image to preload into.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseSpec {
    /// The image (raw, `.xz`, `.gz`, `.zst`, `.zip` with one image, qcow2,
    /// vmdk, vhd; the format is sniffed from its first bytes).
    pub image: InputPath,
}

/// A validated recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    /// Recipe name.
    pub name: String,
    /// One line for `kiln recipes`.
    pub description: String,
    /// OS inputs per architecture.
    pub os: BTreeMap<Arch, OsSpec>,
    config: Vec<(String, ConfigValue, Location)>,
    /// NetworkManager keyfiles for `system-connections/`.
    pub network_profiles: Vec<InputPath>,
    /// Extra CA certificates (PEM), for `balenaRootCA`.
    pub ca_certificates: Vec<InputPath>,
    /// SSH public keys, literal.
    pub ssh_keys: Vec<String>,
    /// SSH public key files.
    pub ssh_key_files: Vec<InputPath>,
    /// Extra boot partition files.
    pub boot_extra: Vec<BootExtra>,
    /// Data partition.
    pub data: DataSpec,
    /// Preloaded application.
    pub app: Option<AppSpec>,
    /// Swapfile.
    pub swap: SwapSpec,
    /// Build parameters.
    pub build: BuildSpec,
    /// Outputs.
    pub output: OutputSpec,
    /// `[vm]`: the virtual machine an OVA declares.
    pub vm: crate::VmSpec,
    /// `[installer]`: how `kiln build --installer`'s image installs.
    pub installer: crate::InstallerSpec,
    /// Base-image mode: preload into this existing OS image instead of
    /// building the partitions from `[os]` (`[base] image`).
    pub base: Option<BaseSpec>,
    /// `[sign]`: the key `kiln build` signs with (`--sign` overrides).
    pub sign: Option<crate::SignSpec>,
    /// The file it was read from.
    pub source: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WireRecipe {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    os: BTreeMap<String, Spanned<WireOs>>,
    #[serde(default)]
    config: toml::Table,
    #[serde(default)]
    network: Option<WireNetwork>,
    #[serde(default)]
    ca: Option<WireCa>,
    #[serde(default)]
    ssh: Option<WireSsh>,
    #[serde(default)]
    boot: Option<WireBoot>,
    #[serde(default)]
    data: Option<WireData>,
    #[serde(default)]
    app: Option<Spanned<WireApp>>,
    #[serde(default)]
    swap: Option<WireSwap>,
    #[serde(default)]
    build: Option<WireBuild>,
    #[serde(default)]
    output: Option<WireOutput>,
    #[serde(default)]
    vm: Option<crate::vm::WireVm>,
    #[serde(default)]
    installer: Option<Spanned<crate::installer::WireInstaller>>,
    #[serde(default)]
    base: Option<WireBase>,
    #[serde(default)]
    sign: Option<crate::sign::WireSign>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WireBase {
    image: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WireOs {
    rootfs: Option<Spanned<String>>,
    boot: Option<Spanned<String>>,
    bios_boot: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WireNetwork {
    #[serde(default)]
    profiles: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WireCa {
    #[serde(default)]
    certificates: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WireSsh {
    #[serde(default)]
    authorized_keys: Vec<Spanned<String>>,
    #[serde(default)]
    authorized_key_files: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WireBoot {
    #[serde(default)]
    files: Vec<WireBootFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WireBootFile {
    src: Spanned<String>,
    dest: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WireData {
    #[serde(default)]
    headroom: Option<ByteSize>,
    #[serde(default)]
    size: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WireApp {
    compose: Spanned<String>,
    #[serde(default)]
    images: Vec<WireImage>,
    name: Spanned<String>,
    #[serde(default)]
    uuid: Option<Spanned<String>>,
    #[serde(default)]
    app_id: Option<u64>,
    #[serde(default)]
    commit: Option<Spanned<String>>,
    #[serde(default)]
    release_id: Option<u64>,
    #[serde(default)]
    store_path: Option<Spanned<String>>,
    #[serde(default)]
    pin_device: bool,
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WireImage {
    path: Spanned<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WireSwap {
    #[serde(default)]
    size: Option<ByteSize>,
    #[serde(default)]
    path: Option<Spanned<String>>,
    #[serde(default)]
    label: Option<Spanned<String>>,
    #[serde(default)]
    activation: Option<SwapActivation>,
    #[serde(default)]
    service_image: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WireBuild {
    #[serde(default)]
    seed: Option<String>,
    #[serde(default)]
    source_date_epoch: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WireOutput {
    #[serde(default)]
    formats: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    compress: Option<Spanned<String>>,
    #[serde(default)]
    sbom: Option<bool>,
}

const FORMATS: &[&str] = &[
    "raw",
    "qcow2",
    "vmdk",
    "vhd",
    "vhd-dynamic",
    "vhdx",
    "vmdk-sparse",
    "ova",
];
const COMPRESS: &[&str] = &["none", "xz", "gz", "zst"];

impl Recipe {
    /// Reads and validates a recipe file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let src = read_file(path)?;
        Self::from_toml_str(&src, path)
    }

    /// Validates recipe TOML; `file` labels errors and its directory
    /// anchors relative paths.
    pub fn from_toml_str(src: &str, file: &Path) -> Result<Self, Error> {
        let w: WireRecipe = parse_toml(src, file)?;
        let cx = Cx {
            file,
            src,
            base: file.parent().unwrap_or(Path::new(".")),
            empty_path: std::cell::RefCell::new(None),
        };
        let os = cx.os(&w.os)?;
        let mut config = Vec::new();
        for (k, v) in &w.config {
            let loc = config::key_location(file, src, k);
            config.push((k.clone(), config::from_toml(v, cx.base, k, &loc)?, loc));
        }
        let network_profiles = w
            .network
            .map(|n| {
                n.profiles
                    .iter()
                    .map(|p| cx.input(p, "network.profiles".into()))
                    .collect()
            })
            .unwrap_or_default();
        let ca_certificates =
            w.ca.map(|c| {
                c.certificates
                    .iter()
                    .map(|p| cx.input(p, "ca.certificates".into()))
                    .collect()
            })
            .unwrap_or_default();
        let (ssh_keys, ssh_key_files) = cx.ssh(w.ssh)?;
        let boot_extra = cx.boot_files(w.boot.map(|b| b.files).unwrap_or_default())?;
        let data = cx.data(w.data)?;
        let app = w.app.map(|a| cx.app(a)).transpose()?;
        let swap = cx.swap(w.swap, app.as_ref())?;
        let build = BuildSpec {
            seed: w.build.as_ref().and_then(|b| b.seed.clone()),
            source_date_epoch: w.build.as_ref().and_then(|b| b.source_date_epoch),
        };
        let output = cx.output(w.output)?;
        let vm = crate::vm::vm_spec(w.vm, &|span, key, reason| cx.invalid(span, key, reason))?;
        let installer = crate::installer::installer_spec(w.installer, &|span, key, reason| {
            cx.invalid(span, key, reason)
        })?;
        let base = w.base.map(|b| BaseSpec {
            image: cx.input(&b.image, "base.image".into()),
        });
        let sign = crate::sign::sign_spec(w.sign, cx.base, &|span| cx.at(span))?;
        // An empty path would name the recipe's own directory (and pack
        // it, the image being built included): the first one found is
        // reported once every input has been read.
        if let Some(e) = cx.empty_path.into_inner() {
            return Err(e);
        }

        Ok(Self {
            name: w.name.into_inner(),
            description: w.description,
            os,
            config,
            network_profiles,
            ca_certificates,
            ssh_keys,
            ssh_key_files,
            boot_extra,
            data,
            app,
            swap,
            build,
            output,
            vm,
            installer,
            base,
            sign,
            source: file.to_path_buf(),
        })
    }

    /// The OS inputs for `arch`, or a located error if the recipe has
    /// none.
    pub fn os_for(&self, arch: Arch) -> Result<&OsSpec, Error> {
        self.os.get(&arch).ok_or_else(|| Error::Invalid {
            at: Location {
                file: self.source.clone(),
                line: 0,
                column: 0,
            },
            key: format!("os.{}", arch.as_str()),
            reason: format!(
                "the recipe has no OS for this board's architecture (it has: {})",
                self.os
                    .keys()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }

    /// Resolves `config.json`: recipe values, files and environment
    /// values, `hostname`, SSH keys (`os.sshKeys`), CA certificates
    /// (`balenaRootCA`, base64 of the concatenated PEM bundle), and
    /// `deviceType` (from the board) when not set. Apply `--set`
    /// overrides afterwards with [`ResolvedConfig::set`].
    pub fn resolve_config(
        &self,
        device_type: &str,
        env: EnvLookup<'_>,
    ) -> Result<ResolvedConfig, Error> {
        let mut cfg = config::resolve(&self.config, env)?;
        cfg.set_default("deviceType", device_type.into());
        let mut keys: Vec<String> = self.ssh_keys.clone();
        for f in &self.ssh_key_files {
            let text = String::from_utf8(f.read()?).map_err(|_| f.invalid("not UTF-8 text"))?;
            for line in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                if !looks_like_ssh_key(line) {
                    return Err(f.invalid(format!("not an OpenSSH public key line: {:.40}", line)));
                }
                keys.push(line.to_string());
            }
        }
        if !keys.is_empty() {
            let mut os = cfg
                .value()
                .get("os")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({}));
            if let Some(o) = os.as_object_mut() {
                o.insert("sshKeys".into(), serde_json::json!(keys));
            }
            cfg.insert("os", os);
        }
        if !self.ca_certificates.is_empty() {
            let mut bundle = Vec::new();
            for c in &self.ca_certificates {
                let pem = c.read()?;
                let text = String::from_utf8_lossy(&pem);
                if !text.contains("-----BEGIN CERTIFICATE-----")
                    || !text.contains("-----END CERTIFICATE-----")
                {
                    return Err(c.invalid("not a PEM certificate (no BEGIN/END CERTIFICATE block)"));
                }
                bundle.extend_from_slice(&pem);
                if !bundle.ends_with(b"\n") {
                    bundle.push(b'\n');
                }
            }
            cfg.insert(
                "balenaRootCA",
                base64::engine::general_purpose::STANDARD
                    .encode(&bundle)
                    .into(),
            );
        }
        Ok(cfg)
    }
}

fn looks_like_ssh_key(s: &str) -> bool {
    let mut parts = s.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return false;
    };
    (kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-"))
        && blob.len() > 16
        && blob
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
}

/// The top-level names kiln itself writes on the data partition
/// (balenaOS's layout, DESIGN "Device-side facts"), with what they are.
const DATA_ROOT_NAMES: [(&str, &str); 4] = [
    ("apps.json", "/apps.json (the device's target state)"),
    ("resin-data", "/resin-data (the apps' persistent data)"),
    (
        "remove_me_to_reset",
        "/remove_me_to_reset (the reset marker)",
    ),
    ("lost+found", "/lost+found (the filesystem's own)"),
];

/// What kiln writes at the first component of `rel` (a path relative to
/// the data partition's root), or at the engine store `store` or its
/// parents, if anything: a recipe path there would collide with it.
fn data_root_owner(rel: &str, store: Option<&str>) -> Option<String> {
    let first = rel.split('/').next().unwrap_or(rel);
    if let Some((_, what)) = DATA_ROOT_NAMES.iter().find(|(n, _)| *n == first) {
        return Some((*what).to_string());
    }
    let store = store?;
    let under = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
    (under(rel, store) || under(store, rel))
        .then(|| format!("/{store} (the container engine's store)"))
}

/// What converting a recipe's sections needs: the file (for locations),
/// its text, the directory relative paths are anchored at, and the first
/// empty input path met.
struct Cx<'a> {
    file: &'a Path,
    src: &'a str,
    base: &'a Path,
    empty_path: std::cell::RefCell<Option<Error>>,
}

impl Cx<'_> {
    fn at(&self, span: std::ops::Range<usize>) -> Location {
        locate(self.file, self.src, Some(span))
    }

    fn invalid(&self, span: std::ops::Range<usize>, key: &str, reason: String) -> Error {
        Error::Invalid {
            at: self.at(span),
            key: key.to_string(),
            reason,
        }
    }

    /// An input path, anchored at the recipe's directory; an empty one is
    /// remembered (see `empty_path`).
    fn input(&self, s: &Spanned<String>, key: String) -> InputPath {
        if s.get_ref().trim().is_empty() {
            self.empty_path
                .borrow_mut()
                .get_or_insert_with(|| Error::Invalid {
                    at: self.at(s.span()),
                    key: key.clone(),
                    reason: "is empty: name a file or directory".into(),
                });
        }
        InputPath {
            path: self.base.join(s.get_ref()),
            key,
            at: self.at(s.span()),
        }
    }

    /// `[os.ARCH]`.
    fn os(
        &self,
        wire: &BTreeMap<String, Spanned<WireOs>>,
    ) -> Result<BTreeMap<Arch, OsSpec>, Error> {
        let mut os = BTreeMap::new();
        for (arch_name, spec) in wire {
            let arch = match arch_name.as_str() {
                "amd64" => Arch::Amd64,
                "armhf" => Arch::Armhf,
                "arm64" => Arch::Arm64,
                other => {
                    let hint = crate::span::closest(other, ["amd64", "armhf", "arm64"])
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    return Err(self.invalid(
                        spec.span(),
                        &format!("os.{other}"),
                        format!("unknown architecture{hint}; use amd64, armhf or arm64"),
                    ));
                }
            };
            let s = spec.get_ref();
            os.insert(
                arch,
                OsSpec {
                    rootfs: s
                        .rootfs
                        .as_ref()
                        .map(|p| self.input(p, format!("os.{arch_name}.rootfs"))),
                    boot: s
                        .boot
                        .as_ref()
                        .map(|p| self.input(p, format!("os.{arch_name}.boot"))),
                    bios_boot: s
                        .bios_boot
                        .as_ref()
                        .map(|p| self.input(p, format!("os.{arch_name}.bios-boot"))),
                },
            );
        }

        Ok(os)
    }

    /// `[ssh]`: inline keys (checked) and key files.
    fn ssh(&self, ssh: Option<WireSsh>) -> Result<(Vec<String>, Vec<InputPath>), Error> {
        let (mut ssh_keys, mut ssh_key_files) = (Vec::new(), Vec::new());
        if let Some(ssh) = ssh {
            for k in &ssh.authorized_keys {
                let key = k.get_ref().trim();
                if !looks_like_ssh_key(key) {
                    return Err(self.invalid(
                        k.span(),
                        "ssh.authorized-keys",
                        "not an OpenSSH public key (expected e.g. \"ssh-ed25519 AAAA... comment\")"
                            .into(),
                    ));
                }
                ssh_keys.push(key.to_string());
            }
            for f in &ssh.authorized_key_files {
                ssh_key_files.push(self.input(f, "ssh.authorized-key-files".into()));
            }
        }
        Ok((ssh_keys, ssh_key_files))
    }

    /// `[[boot.files]]`: extra files for the boot partition.
    fn boot_files(&self, files: Vec<WireBootFile>) -> Result<Vec<BootExtra>, Error> {
        let mut boot_extra = Vec::new();
        for f in files {
            let dest = f.dest.get_ref().trim_start_matches('/').to_string();
            if dest.is_empty() || dest.split('/').any(|c| c == ".." || c.is_empty()) {
                return Err(self.invalid(
                    f.dest.span(),
                    "boot.files.dest",
                    "must be a relative path without `..`".into(),
                ));
            }
            // File names on the boot partition are at most 255 bytes (the
            // tree's and FAT's long-name limit); checked here so the error
            // names `dest`, not the source file.
            if let Some(c) = dest.split('/').find(|c| c.len() > 255 || c.contains('\0')) {
                return Err(self.invalid(
                    f.dest.span(),
                    "boot.files.dest",
                    if c.contains('\0') {
                        "a path component contains a NUL byte".to_string()
                    } else {
                        format!(
                            "a path component of {} bytes (at most 255 bytes each)",
                            c.len()
                        )
                    },
                ));
            }
            boot_extra.push(BootExtra {
                src: self.input(&f.src, "boot.files.src".into()),
                dest,
            });
        }

        Ok(boot_extra)
    }

    /// `[data]`.
    fn data(&self, data: Option<WireData>) -> Result<DataSpec, Error> {
        Ok(match data {
            None => DataSpec {
                headroom: ByteSize::mib(256),
                size: DataSize::Auto,
            },
            Some(d) => DataSpec {
                headroom: d.headroom.unwrap_or(ByteSize::mib(256)),
                size: match d.size {
                    None => DataSize::Auto,
                    Some(s) => match s.get_ref().as_str() {
                        "auto" => DataSize::Auto,
                        "fill" => DataSize::Fill,
                        v => DataSize::Fixed(v.parse().map_err(|e| {
                            self.invalid(
                                s.span(),
                                "data.size",
                                format!("{e}; or \"auto\" or \"fill\""),
                            )
                        })?),
                    },
                },
            },
        })
    }

    /// `[app]`.
    fn app(&self, a: Spanned<WireApp>) -> Result<AppSpec, Error> {
        let span = a.span();
        let a = a.into_inner();
        if a.images.is_empty() {
            return Err(self.invalid(
                span,
                "app.images",
                "list at least one image archive or OCI layout".into(),
            ));
        }
        let name = a.name.get_ref().clone();
        if name.is_empty() {
            return Err(self.invalid(a.name.span(), "app.name", "must not be empty".into()));
        }
        if let Some(u) = &a.uuid {
            let s = u.get_ref();
            if s.len() != 32 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(self.invalid(u.span(), "app.uuid", "must be 32 hex digits".into()));
            }
        }
        if let Some(c) = &a.commit {
            let s = c.get_ref();
            if s.len() != 32 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(self.invalid(c.span(), "app.commit", "must be 32 hex digits".into()));
            }
        }
        let store_path = match &a.store_path {
            None => "docker".to_string(),
            Some(p) => {
                let s = p.get_ref().trim_end_matches('/').to_string();
                if s.is_empty()
                    || s.starts_with('/')
                    || s.split('/').any(|c| c == ".." || c.is_empty() || c == ".")
                {
                    return Err(self.invalid(
                        p.span(),
                        "app.store-path",
                        "must be a relative path on the data partition without `..`, e.g. \"docker\"".into(),
                    ));
                }
                if let Some(owner) = data_root_owner(&s, None) {
                    return Err(self.invalid(
                        p.span(),
                        "app.store-path",
                        format!("collides with {owner} on the data partition"),
                    ));
                }
                s
            }
        };
        let cfg = serde_json::to_value(&a.config)
            .map_err(|e| self.invalid(span.clone(), "app.config", e.to_string()))?;
        Ok(AppSpec {
            compose: self.input(&a.compose, "app.compose".into()),
            images: a
                .images
                .iter()
                .map(|i| AppImage {
                    input: self.input(&i.path, "app.images.path".into()),
                    name: i.name.clone(),
                })
                .collect(),
            name,
            uuid: a.uuid.map(|u| u.into_inner().to_ascii_lowercase()),
            app_id: a.app_id.unwrap_or(1),
            commit: a.commit.map(|c| c.into_inner().to_ascii_lowercase()),
            release_id: a.release_id.unwrap_or(1),
            store_path,
            pin_device: a.pin_device,
            config: cfg,
        })
    }

    /// `[swap]`; `app` for the store path it must not collide with.
    fn swap(&self, s: Option<WireSwap>, app: Option<&AppSpec>) -> Result<SwapSpec, Error> {
        let size = s.as_ref().and_then(|s| s.size).unwrap_or_default();
        let path = match s.as_ref().and_then(|s| s.path.as_ref()) {
            None => "/swapfile".to_string(),
            Some(p) => {
                let v = p.get_ref();
                if !v.starts_with('/')
                    || v.len() < 2
                    || v.split('/')
                        .skip(1)
                        .any(|c| c.is_empty() || c == ".." || c == ".")
                {
                    return Err(self.invalid(
                        p.span(),
                        "swap.path",
                        "must be an absolute path on the data partition, e.g. /swapfile".into(),
                    ));
                }
                let store = app.map(|a| a.store_path.as_str());
                if let Some(owner) = data_root_owner(&v[1..], store) {
                    return Err(self.invalid(
                    p.span(),
                    "swap.path",
                    format!("collides with {owner}, which kiln writes on the data partition; pick another path, e.g. /swapfile"),
                ));
                }
                v.clone()
            }
        };
        let label = match s.as_ref().and_then(|s| s.label.as_ref()) {
            None => "kiln-swap".to_string(),
            Some(l) if l.get_ref().len() > 15 => {
                return Err(self.invalid(
                    l.span(),
                    "swap.label",
                    "at most 15 bytes (mkswap's limit)".into(),
                ))
            }
            Some(l) => l.get_ref().clone(),
        };
        if size.bytes() % 4096 != 0 || (size.bytes() != 0 && size.bytes() < 40 * 1024) {
            return Err(Error::Invalid {
                at: self.at(0..0),
                key: "swap.size".into(),
                reason: format!("{size} must be 0 or a multiple of 4 KiB of at least 40 KiB"),
            });
        }
        let activation = s
            .as_ref()
            .and_then(|s| s.activation)
            .unwrap_or(SwapActivation::SystemdUnit);
        let service_image = s.as_ref().and_then(|s| s.service_image.as_ref());
        match (activation, service_image) {
        (SwapActivation::AppService, None) if size.bytes() > 0 => {
            return Err(Error::Invalid {
                at: self.at(0..0),
                key: "swap.service-image".into(),
                reason: "activation = \"app-service\" needs service-image: an image of [app] with busybox (mount, swapon), e.g. \"demo/api:1.0\"".into(),
            })
        }
        (SwapActivation::AppService, _) if app.is_none() && size.bytes() > 0 => {
            return Err(Error::Invalid {
                at: self.at(0..0),
                key: "swap.activation".into(),
                reason: "\"app-service\" adds a service to the app: the recipe needs an [app]".into(),
            })
        }
        (a, Some(img)) if a != SwapActivation::AppService => {
            return Err(self.invalid(
                img.span(),
                "swap.service-image",
                "only used with activation = \"app-service\"".into(),
            ))
        }
        _ => {}
    }
        Ok(SwapSpec {
            size,
            path,
            label,
            activation,
            service_image: service_image.map(|i| i.get_ref().clone()),
        })
    }

    /// `[output]`.
    fn output(&self, o: Option<WireOutput>) -> Result<OutputSpec, Error> {
        let mut formats = Vec::new();
        for f in o
            .as_ref()
            .and_then(|o| o.formats.clone())
            .unwrap_or_default()
        {
            if !FORMATS.contains(&f.get_ref().as_str()) {
                return Err(self.invalid(
                    f.span(),
                    "output.formats",
                    format!("unknown format; use {}", FORMATS.join(", ")),
                ));
            }
            formats.push(f.into_inner());
        }
        if formats.is_empty() {
            formats.push("raw".into());
        }
        let sbom = o.as_ref().and_then(|o| o.sbom).unwrap_or(true);
        let compress = match o.and_then(|o| o.compress) {
            None => "none".to_string(),
            Some(c) if COMPRESS.contains(&c.get_ref().as_str()) => c.into_inner(),
            Some(c) => {
                return Err(self.invalid(
                    c.span(),
                    "output.compress",
                    format!("use {}", COMPRESS.join(", ")),
                ))
            }
        };
        Ok(OutputSpec {
            formats,
            compress,
            sbom,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rootfs = "/dev/zero"` or a FIFO: refused, not read forever.
    #[test]
    fn special_files_are_not_inputs() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo (Debian package coreutils) is needed");
        assert!(st.success());
        let input = |path: PathBuf| InputPath {
            path,
            key: "os.amd64.rootfs".into(),
            at: Location {
                file: "r.toml".into(),
                line: 3,
                column: 1,
            },
        };
        for (path, kind) in [
            (PathBuf::from("/dev/zero"), "character device"),
            (fifo, "FIFO"),
        ] {
            match input(path.clone()).check_exists() {
                Err(e @ Error::InputNotRegular { .. }) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains(kind) && msg.contains("os.amd64.rootfs"),
                        "{msg}"
                    );
                }
                other => panic!("{}: {other:?}", path.display()),
            }
        }
        input(d.path().to_path_buf()).check_exists().unwrap();
        std::fs::write(d.path().join("f"), b"x").unwrap();
        input(d.path().join("f")).check_exists().unwrap();
    }

    const R: &str = r#"
name = "bob-onprem"
description = "BoB"

[os.amd64]
rootfs = "rootfs.tar"
boot = "boot"

[config]
hostname = "bob"
persistentLogging = true
deviceApiKey = { from-env = "KEY", secret = true }

[config.os.network]
connectivity = { uri = "http://localhost" }

[ssh]
authorized-keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKiln ops@kiln"]

[data]
headroom = "128MiB"

[swap]
size = "1GiB"
"#;

    #[test]
    fn parses_and_resolves() {
        let r = Recipe::from_toml_str(R, Path::new("/r/bob.toml")).unwrap();
        let os = r.os_for(Arch::Amd64).unwrap();
        assert_eq!(os.rootfs.as_ref().unwrap().path, Path::new("/r/rootfs.tar"));
        assert_eq!(os.rootfs.as_ref().unwrap().at.line, 6);
        assert!(r.os_for(Arch::Armhf).is_err());
        assert_eq!(r.swap.size, ByteSize::new(1 << 30));
        assert_eq!(r.data.headroom, ByteSize::mib(128));
        let env = |v: &str| (v == "KEY").then(|| "k".to_string());
        let c = r.resolve_config("intel-nuc", &env).unwrap();
        let v = c.value();
        assert_eq!(v["deviceType"], "intel-nuc");
        assert_eq!(
            v["os"]["sshKeys"][0],
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKiln ops@kiln"
        );
        assert_eq!(
            v["os"]["network"]["connectivity"]["uri"],
            "http://localhost"
        );
        assert_eq!(c.redacted()["deviceApiKey"], crate::REDACTED);
        assert!(r.base.is_none());
    }

    /// Issue 16 finding 17: an over-long `boot.files.dest` is reported as
    /// `dest`, at its own span, not as the source file.
    #[test]
    fn long_boot_file_dest_names_dest() {
        let long = "x".repeat(256);
        let src = format!("{R}\n[boot]\nfiles = [{{ src = \"a.txt\", dest = \"dir/{long}\" }}]\n");
        let e = Recipe::from_toml_str(&src, Path::new("/r/bob.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`boot.files.dest`") && e.contains("256 bytes"),
            "{e}"
        );
        assert!(!e.contains("boot.files.src"), "{e}");
        let ok = src.replace(&long, &"x".repeat(255));
        Recipe::from_toml_str(&ok, Path::new("/r/bob.toml")).unwrap();
    }

    /// Issue 16 findings 7 and 17: a config value the device refuses is
    /// reported at its own line (not the first `[config]` key's) and its
    /// value, possibly a secret, is not echoed.
    #[test]
    fn config_validation_names_the_line_and_hides_the_value() {
        let src = R.replace("hostname = \"bob\"\n", "").replace(
            "deviceApiKey = { from-env = \"KEY\", secret = true }\n",
            "deviceApiKey = { from-env = \"KEY\", secret = true }\nhostname = { from-env = \"HOST\", secret = true }\n",
        );
        assert_eq!(
            src.lines().nth(11),
            Some("hostname = { from-env = \"HOST\", secret = true }")
        );
        let r = Recipe::from_toml_str(&src, Path::new("/r/bob.toml")).unwrap();
        let env = |v: &str| match v {
            "KEY" => Some("k".to_string()),
            "HOST" => Some("Sekrit_Host".to_string()),
            _ => None,
        };
        let e = r.resolve_config("intel-nuc", &env).unwrap_err().to_string();
        assert!(e.starts_with("/r/bob.toml:12:"), "{e}");
        assert!(
            e.contains("config.hostname") && e.contains("character 7"),
            "{e}"
        );
        assert!(!e.contains("Sekrit"), "{e}");
    }

    #[test]
    fn swap_service_image() {
        let app = "[app]\nname = \"a\"\ncompose = \"c.yml\"\nimages = [{ path = \"i.oci\" }]\n";
        let r = |swap: &str| {
            Recipe::from_toml_str(
                &format!("name = \"b\"\n{app}[swap]\nsize = \"1GiB\"\n{swap}"),
                Path::new("/r/b.toml"),
            )
        };
        let ok = r("activation = \"app-service\"\nservice-image = \"demo/api:1.0\"\n").unwrap();
        assert_eq!(ok.swap.activation, SwapActivation::AppService);
        assert_eq!(ok.swap.service_image.as_deref(), Some("demo/api:1.0"));
        let e = r("activation = \"app-service\"\n").unwrap_err().to_string();
        assert!(e.contains("swap.service-image"), "{e}");
        let e = r("service-image = \"demo/api:1.0\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/r/b.toml:8:17") && e.contains("app-service"),
            "{e}"
        );
    }

    #[test]
    fn swap_and_store_paths_must_not_collide_with_what_kiln_writes() {
        let app = |store: &str| {
            format!("[app]\nname = \"a\"\ncompose = \"c.yml\"\nimages = [{{ path = \"i.oci\" }}]\n{store}")
        };
        let r = |app: &str, swap: &str| {
            Recipe::from_toml_str(
                &format!("name = \"b\"\n{app}[swap]\nsize = \"1GiB\"\npath = \"{swap}\"\n"),
                Path::new("/r/b.toml"),
            )
        };
        let with_app = app("");
        for (swap, owner) in [
            ("/docker", "/docker (the container engine's store)"),
            ("/docker/image", "/docker (the container engine's store)"),
            ("/apps.json", "/apps.json"),
            ("/resin-data", "/resin-data"),
            ("/resin-data/swap", "/resin-data"),
            ("/remove_me_to_reset", "/remove_me_to_reset"),
            ("/lost+found", "/lost+found"),
        ] {
            let e = r(&with_app, swap).unwrap_err().to_string();
            assert!(
                e.contains("swap.path") && e.contains(owner) && e.contains("/r/b.toml:8:8"),
                "{swap}: {e}"
            );
        }
        // Allowed: elsewhere, and /docker when nothing is preloaded.
        assert_eq!(r(&with_app, "/swap/file").unwrap().swap.path, "/swap/file");
        assert_eq!(
            r(&with_app, "/dockerfile").unwrap().swap.path,
            "/dockerfile"
        );
        assert_eq!(r("", "/docker").unwrap().swap.path, "/docker");
        // A custom store path is what collides then; its parents too.
        let custom = app("store-path = \"engine/store\"\n");
        let e = r(&custom, "/engine").unwrap_err().to_string();
        assert!(
            e.contains("/engine/store (the container engine's store)"),
            "{e}"
        );
        assert!(r(&custom, "/docker").is_ok());
        // store-path: relative, and not over kiln's own names.
        for (store, want) in [
            ("/etc", "must be a relative path"),
            ("a/../b", "must be a relative path"),
            ("apps.json", "collides with /apps.json"),
            ("resin-data/docker", "collides with /resin-data"),
        ] {
            let e = r(&app(&format!("store-path = \"{store}\"\n")), "/swapfile")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("app.store-path") && e.contains(want),
                "{store}: {e}"
            );
        }
    }

    #[test]
    fn empty_input_paths_are_refused() {
        for (toml, key) in [
            ("[os.amd64]\nrootfs = \"\"\n", "os.amd64.rootfs"),
            (
                "[os.amd64]\nrootfs = \"r.tar\"\nboot = \" \"\n",
                "os.amd64.boot",
            ),
            ("[base]\nimage = \"\"\n", "base.image"),
        ] {
            let e = Recipe::from_toml_str(&format!("name = \"b\"\n{toml}"), Path::new("/r/b.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(key) && e.contains("is empty") && e.contains("/r/b.toml:"),
                "{e}"
            );
        }
    }

    #[test]
    fn base_image_key() {
        let r = Recipe::from_toml_str(
            "name = \"b\"\n[base]\nimage = \"balena.img.xz\"\n",
            Path::new("/r/b.toml"),
        )
        .unwrap();
        let b = r.base.unwrap();
        assert_eq!(b.image.path, Path::new("/r/balena.img.xz"));
        assert_eq!(b.image.key, "base.image");
        assert_eq!(b.image.at.line, 3);
        let e = Recipe::from_toml_str(
            "name = \"b\"\n[base]\nimgae = \"x\"\n",
            Path::new("/r/b.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("/r/b.toml:3") && e.contains("image"), "{e}");
    }

    #[test]
    fn errors() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "[data]\nheadroom",
                "[data]\nhedroom",
                "bob.toml:21:1: unknown key `hedroom` (did you mean `headroom`?)",
            ),
            (
                "[os.amd64]",
                "[os.amd46]",
                "unknown architecture (did you mean `amd64`?)",
            ),
            ("size = \"1GiB\"", "size = \"1GiX\"", "bob.toml:24:8"),
            ("size = \"1GiB\"", "size = true", "invalid type"),
            ("headroom = \"128MiB\"", "headroom = 5.5", "bob.toml:21:12"),
            (
                "ops@kiln\"]",
                "ops@kiln\", \"nonsense\"]",
                "not an OpenSSH public key",
            ),
            (
                "[swap]",
                "[swapp]",
                "unknown key `swapp` (did you mean `swap`?)",
            ),
            (
                "name = \"bob-onprem\"",
                "name = \"bob-onprem\"\nname = \"x\"",
                "duplicate key",
            ),
        ];
        for (from, to, want) in cases {
            let src = R.replacen(from, to, 1);
            assert_ne!(src, R, "{from}");
            let e = Recipe::from_toml_str(&src, Path::new("bob.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{to}: got {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }
}
