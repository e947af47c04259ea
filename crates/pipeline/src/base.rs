//! Base-image mode (`kiln build --base IMAGE`, recipe `[base] image`):
//! preload into the OS vendor's released image instead of building the OS
//! partitions, rootless, without mounting anything.
//!
//! 1. The base image is read in place when it is raw; any other kind
//!    (xz/gz/zst, a zip holding one image, qcow2, vmdk, vhd: sniffed by
//!    kiln-base) is expanded, sparse, into the raw output file when
//!    delivery writes one (then only the edits and the new partition are
//!    written over it, the old partition set aside first), else into a
//!    scratch file beside the output. kiln's edits lie over the base in a
//!    copy-on-write working disk ([`crate::work`]), so no raw copy of the
//!    disk is made for the outputs.
//! 2. Its layout is detected (MBR with extended/logical partitions, or
//!    GPT) and the partitions identified by filesystem label; the device
//!    type on the boot partition must match the board (`--force`
//!    overrides).
//! 3. Everything before the data partition stays as it is: the boot code
//!    in the MBR and the gap before p1, rootA, rootB, state (compared
//!    byte for byte by the tests).
//! 4. The data partition is rebuilt: its old contents are read as a tree
//!    from the base (or the copy set aside; kiln-ext4's reader) and fed, after the swapfile,
//!    into a new ext4 together with the new app's layers merged into the
//!    existing engine store (kiln-oci: existing layers and image configs
//!    are kept, `repositories.json` merged) and `apps.json`. The new
//!    filesystem keeps the old label and UUID. The data partition must be
//!    the last one; the image grows when the result (plus headroom) needs
//!    more room than the old partition had, with the (extended and) data
//!    partition resized and, on GPT, the backup header written at the new
//!    end.
//! 5. The boot partition is rebuilt with `config.json` merged (the
//!    recipe's keys over the base's), the recipe's NetworkManager profiles
//!    and boot files; every other file keeps its bytes.
//! 6. The disk is written as a normal build's is
//!    ([`crate::build::deliver_disk`]): the working disk before the data
//!    partition, then the new data partition, into the raw image, a qcow2
//!    or VHD written in place, or streamed into a VMDK or compressed image
//!    with no image file at all (a dry run of the data partition's writer
//!    first, [`crate::stream`]); then checksums, bmap and a manifest
//!    naming the base image and its digest. A raw base read in place must
//!    not change during the build (its size and modification time are
//!    checked once the disk is written).
//!
//! A base that already carries an app in `apps.json` with another uuid is
//! refused (two apps fighting over one device); the same app is replaced
//! by the new release.
//!
//! Flasher (installer) images (boot label `flash-boot`): steps 3 to 5 run
//! on the OS image the flasher carries at `/opt/<name>.img` in
//! `flash-rootA` (copied out to a scratch file, and the preloaded result
//! written to another: it is file content), then `flash-rootA` is rebuilt
//! with the grown inner image in place of the old one and every other
//! file kept, and grown; `flash-boot`'s config.json is merged too, since
//! the installer copies it onto the device.
//!
//! Swap: the root filesystem stays as the vendor built it, so kiln cannot
//! add a systemd unit there; `swap.activation` must be `"app-service"`
//! (the privileged `kiln-swap` service added to the app runs `swapon`, as
//! balenaOS needs) or `"none"` (the OS activates the swapfile itself).
//!
//! Scratch space beside the output: the expanded base (unless it is raw
//! or expanded into the raw output; then the old partition set aside),
//! the edits (the partition tables and the rebuilt boot partition, in a
//! sparse file), a flasher's inner image before and after; memory stays
//! at a few MiB of buffers plus the writers' per-inode tables (and, for a
//! streamed output, the data partition's metadata from the dry run).

use crate::build::{
    prepare_app, App, BuildReport, BuildRequest, DiskWriter, PartitionReport, Pass, Run, Written,
};
use crate::content::{add_dir, feed_generated, Generated};
use crate::manifest::BaseFacts;
use crate::sink::Sink;
use crate::work::{At, Cow, Workspace};
use crate::Error;
use kiln_artifact::digest::Sha256Digest;
use kiln_base::{BasePartition, Layout, Role as BaseRole};
use kiln_ext4::{Ext4Estimator, Ext4Reader, Ext4Writer, Visit};
use kiln_recipe::{BoardProfile, DataSize, Role, SwapActivation};
use kiln_tree::{Content, Entry, EntryKind, Metadata, Timestamp, TreePath, TreeSink};
use kiln_units::{ByteSize, ReadAt, SubRegion, WriteAt};
use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

/// A partition of the base read back as a filesystem.
type OldFs<'a> = Ext4Reader<SubRegion<&'a File>>;

/// What a [`kiln_oci::StoreView`] gives back on failure.
type ViewError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Largest JSON file read from the base (bytes).
const MAX_JSON: u64 = 16 << 20;

fn base_err(path: &Path) -> impl FnOnce(kiln_base::Error) -> Error + '_ {
    move |e| {
        // kiln-base names the file in some messages already.
        let msg = e.to_string();
        let named = format!("{}: ", path.display());
        Error::Image {
            path: path.to_path_buf(),
            reason: msg.strip_prefix(&named).unwrap_or(&msg).to_string(),
        }
    }
}

fn out_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Output {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// A scratch file removed when dropped.
struct Scratch {
    path: PathBuf,
    file: File,
}

impl Scratch {
    fn create(path: PathBuf) -> Result<Self, Error> {
        let file = crate::outpath::create_exclusive(&path, &path)?;
        Ok(Self { path, file })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!("could not remove {}: {e}", self.path.display());
        }
    }
}

/// The architectures balena's `device-type.json` names for a board arch.
fn arch_matches(profile: &BoardProfile, arch: &str) -> bool {
    let names: &[&str] = match profile.arch {
        kiln_recipe::Arch::Amd64 => &["amd64", "x86_64", "x86-64"],
        kiln_recipe::Arch::Armhf => &["armv7hf", "armhf", "rpi", "armv7"],
        kiln_recipe::Arch::Arm64 => &["aarch64", "arm64"],
    };
    names.contains(&arch)
}

/// Checks the base against the board: device type and architecture.
fn check_device(
    req: &BuildRequest<'_>,
    base: &Path,
    info: &kiln_base::DeviceInfo,
    force: bool,
) -> Result<(), Error> {
    let mut problems = Vec::new();
    if let Some(slug) = &info.slug {
        if slug != &req.profile.device_type {
            problems.push(format!(
                "device type {slug:?} (from {}) is not board {}'s {:?}",
                info.source, req.profile.name, req.profile.device_type
            ));
        }
    }
    if let Some(arch) = &info.arch {
        if !arch_matches(&req.profile, arch) {
            problems.push(format!(
                "architecture {arch:?} (from {}) is not the board's {}",
                info.source,
                req.profile.arch.as_str()
            ));
        }
    }
    if problems.is_empty() || force {
        for p in &problems {
            tracing::warn!("{}: {p} (--force)", base.display());
        }
        return Ok(());
    }
    Err(Error::Image {
        path: base.to_path_buf(),
        reason: format!("{}; use --force to preload anyway", problems.join("; ")),
    })
}

/// The old data filesystem, read back through kiln-ext4, as a view for
/// kiln-oci's store merge (paths relative to the store root).
struct OldStore<'a> {
    fs: &'a OldFs<'a>,
    prefix: TreePath,
}

impl OldStore<'_> {
    fn path(&self, p: &str) -> Result<TreePath, ViewError> {
        let mut out = self.prefix.clone();
        for c in p.split('/').filter(|c| !c.is_empty()) {
            out = out.join(c.as_bytes())?;
        }
        Ok(out)
    }
}

impl kiln_oci::StoreView for OldStore<'_> {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, ViewError> {
        Ok(self.fs.read_file(&self.path(path)?, MAX_JSON)?)
    }
    fn list(&self, path: &str) -> Result<Option<Vec<String>>, ViewError> {
        Ok(self.fs.list_dir(&self.path(path)?)?.map(|v| {
            v.into_iter()
                .map(|e| String::from_utf8_lossy(&e.name).into_owned())
                .collect()
        }))
    }
}

/// What goes into the new data partition: the swapfile first (one
/// contiguous run), the old tree minus what kiln replaces, then the new
/// app merged onto the old store and `apps.json`.
struct MergedData<'a> {
    swap: Option<(TreePath, u64, [u8; 4096])>,
    old: &'a OldFs<'a>,
    drop: BTreeSet<TreePath>,
    app: Option<(&'a App, &'a kiln_oci::ExistingStore)>,
    /// Directories kiln adds that the old tree lacks.
    new_dirs: Vec<(TreePath, u32)>,
    time: Timestamp,
}

/// A failure while feeding the merged data partition.
enum MergeError<E> {
    /// Reading the old tree (or the sink refusing one of its entries).
    Old(kiln_ext4::Error),
    /// The sink refused a new entry.
    Sink(E),
    /// The preload.
    App(kiln_oci::Error),
}

impl MergedData<'_> {
    fn feed<S>(
        &self,
        sink: &mut S,
        pass: Pass,
    ) -> Result<Option<kiln_oci::FeedReport>, MergeError<S::Error>>
    where
        S: TreeSink,
        S::Error: std::error::Error + Send + Sync + 'static,
    {
        let t = self.time;
        if let Some((path, size, header)) = &self.swap {
            let e = Entry::new(path.clone(), EntryKind::File, Metadata::new(0o600, t));
            sink.add(
                &e,
                Content::Preallocated {
                    size: *size,
                    head: header,
                },
            )
            .map_err(MergeError::Sink)?;
        }
        let drop = &self.drop;
        self.old
            .feed(&mut *sink, |p: &TreePath, _| {
                if drop.contains(p) {
                    Visit::Skip
                } else {
                    Visit::Keep
                }
            })
            .map_err(MergeError::Old)?;
        for (d, mode) in &self.new_dirs {
            add_dir(sink, d, *mode, t).map_err(MergeError::Sink)?;
        }
        let Some((app, existing)) = self.app else {
            return Ok(None);
        };
        feed_generated(
            &[Generated {
                path: crate::build::tp("apps.json"),
                mode: 0o644,
                data: app.apps_json.clone(),
            }],
            t,
            sink,
        )
        .map_err(MergeError::Sink)?;
        let mut prefixed = kiln_tree::PrefixSink::new(&mut *sink, app.store_path.clone());
        let fed = match pass {
            Pass::Size => app.store.feed_for_sizing(Some(existing), &mut prefixed),
            Pass::Write => app.store.feed_onto(existing, &mut prefixed),
        };
        let report = fed.map_err(|e| match e {
            kiln_oci::FeedError::Input(i) => MergeError::App(i),
            kiln_oci::FeedError::Sink(s) => MergeError::Sink(s),
            #[allow(unreachable_patterns)]
            _ => MergeError::App(kiln_oci::Error::InvalidRequest("unknown feed error")),
        })?;
        Ok(Some(report))
    }
}

fn merge_err(label: &str, e: MergeError<kiln_ext4::Error>) -> Error {
    match e {
        MergeError::Sink(source) => Error::Ext4 {
            partition: label.to_string(),
            source,
        },
        MergeError::Old(source) => Error::Ext4 {
            partition: format!("{label} (base)"),
            source,
        },
        MergeError::App(source) => Error::App {
            partition: label.to_string(),
            source: Box::new(source),
        },
    }
}

/// Refuses a base whose `apps.json` carries another app than the
/// recipe's (same uuid: the new release replaces the old one).
fn check_apps(base: &Path, old: &OldFs<'_>, app: &App, data_label: &str) -> Result<(), Error> {
    let bytes = old
        .read_file(&crate::build::tp("apps.json"), MAX_JSON)
        .map_err(|source| Error::Ext4 {
            partition: format!("{data_label} (base)"),
            source,
        })?;
    let Some(bytes) = bytes else {
        return Ok(());
    };
    let old_apps: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::Image {
        path: base.to_path_buf(),
        reason: format!("{data_label}: apps.json is not JSON: {e}"),
    })?;
    let new_apps: serde_json::Value = serde_json::from_slice(&app.apps_json).unwrap_or_default();
    let new = new_apps["apps"].as_object();
    for (id, a) in old_apps["apps"].as_object().into_iter().flatten() {
        if !new.is_some_and(|n| n.contains_key(id)) {
            let theirs = a["name"].as_str().unwrap_or("?");
            let ours = new
                .and_then(|o| o.values().next())
                .and_then(|v| v["name"].as_str())
                .unwrap_or("?");
            return Err(Error::Image {
                path: base.to_path_buf(),
                reason: format!(
                    "{data_label} already holds app {theirs:?} (uuid {id}) in apps.json, which conflicts with the recipe's app {ours:?}; start from an image without it"
                ),
            });
        }
    }
    Ok(())
}

fn role<'a>(layout: &'a Layout, role: BaseRole, base: &Path) -> Result<&'a BasePartition, Error> {
    layout.role(role).ok_or_else(|| Error::Image {
        path: base.to_path_buf(),
        reason: format!("no {role:?} partition found by its label"),
    })
}

fn old_err(label: &str) -> impl FnOnce(kiln_ext4::Error) -> Error + '_ {
    move |source| Error::Ext4 {
        partition: format!("{label} (base)"),
        source,
    }
}

fn ext4_err(label: &str) -> impl FnOnce(kiln_ext4::Error) -> Error + '_ {
    move |source| Error::Ext4 {
        partition: label.to_string(),
        source,
    }
}

/// The data partition's new size: what the content needs plus headroom,
/// never less than the base had; `fixed` and `fill` as in a normal build.
fn data_size(
    req: &BuildRequest<'_>,
    label: &str,
    min: u64,
    old: &BasePartition,
    gpt: bool,
    align: u64,
) -> Result<u64, Error> {
    let profile = &req.profile;
    Ok(match req.recipe.data.size {
        DataSize::Auto => min.max(old.size_bytes),
        DataSize::Fixed(b) if b.bytes() >= min => b.bytes().max(old.size_bytes),
        DataSize::Fixed(b) => {
            return Err(Error::Layout {
                partition: label.to_string(),
                reason: format!(
                    "data.size {b} is smaller than the {} its content and headroom need",
                    ByteSize::new(min)
                ),
            })
        }
        DataSize::Fill => {
            let m = match &req.medium {
                Some(m) => profile.medium(m)?.clone(),
                None => profile
                    .media
                    .first()
                    .cloned()
                    .ok_or_else(|| Error::Layout {
                        partition: label.to_string(),
                        reason: "data.size = \"fill\" needs a medium (--media)".into(),
                    })?,
            };
            let tail = if gpt { align.max(33 * 512) } else { 0 };
            (m.size.bytes().saturating_sub(old.start_bytes + tail) / align * align)
                .max(min)
                .max(old.size_bytes)
        }
    })
}

/// Runs a base-image build (see the module doc).
pub(crate) fn build_base(
    req: &BuildRequest<'_>,
    base: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<BuildReport, Error> {
    let profile = &req.profile;
    let recipe = &req.recipe;
    let time = Timestamp::new(req.timestamp, 0);
    if !base.is_file() {
        return Err(Error::Image {
            path: base.to_path_buf(),
            reason: "base image not found (or not a file)".into(),
        });
    }
    let config = crate::build::boot_config(req, progress)?;
    if recipe.swap.size.bytes() > 0 && recipe.swap.activation == SwapActivation::SystemdUnit {
        return Err(crate::build::recipe_invalid(
            recipe,
            "swap.activation",
            "a base image keeps its root filesystem as it is, so kiln cannot add a systemd unit there: use \"app-service\" (a privileged swap service in the app) or \"none\" in base-image mode",
        )
        .into());
    }
    // Checked before the slow part, as a normal build checks its plan.
    let delivery = crate::build::delivery_for(req)?;
    let out = &req.output;
    let scratch = |what: &str| Scratch::create(crate::outpath::scratch_path(out, what));

    // 1. The base, read in place or expanded, under the edits.
    progress(&format!("reading the base image {}", base.display()));
    // The raw output file, when delivery writes one: a compressed base
    // is expanded straight into it, and only kiln's edits and the new
    // partition are written over it.
    let mut image = crate::build::raw_image_file(req, &delivery)?;
    let source = BaseSource::open(base, &scratch, image.as_mut().map(|t| (t, out.as_path())))?;
    let edits = scratch("edits")?;
    let work = Cow::new(
        source.file.try_clone().map_err(base_io(base))?,
        edits
            .file
            .try_clone()
            .map_err(out_err(&edits.path, "cannot reopen a scratch file"))?,
    )
    .map_err(out_err(&edits.path, "cannot start the working disk"))?;

    // 2. Layout and device type.
    let layout = kiln_base::detect(&At(&work)).map_err(base_err(base))?;
    let info = kiln_base::device_info(&At(&work), &layout).map_err(base_err(base))?;
    check_device(req, base, &info, req.force)?;
    // The app, once the data partition's label is known (the swap
    // service finds the partition by it; a flasher's inner image is
    // assumed to use balenaOS's resin-data).
    let data_label = layout
        .role(BaseRole::Data)
        .and_then(|p| p.label.clone())
        .unwrap_or_else(|| "resin-data".into());
    let app = match &recipe.app {
        Some(a) => {
            progress("resolving the application images");
            Some(prepare_app(req, a, time, &data_label)?)
        }
        None => None,
    };
    let unchanged = || source.unchanged(base);
    let ctx = Ctx {
        req,
        base,
        config: &config,
        app: app.as_ref(),
        time,
        unchanged: &unchanged,
        in_output: source.in_output,
    };
    let medium = match &req.medium {
        Some(m) => Some(profile.medium(m)?.clone()),
        None => None,
    };
    let mut deliver = |disk: &Rebuilt<'_>, progress: &mut dyn FnMut(&str)| {
        let disk_bytes = disk.disk_bytes;
        if let Some(m) = &medium {
            if disk_bytes > m.size.bytes() {
                return Err(Error::TooBig {
                    medium: m.name.clone(),
                    need: disk_bytes,
                    need_h: crate::build::human(disk_bytes),
                    have: m.size.bytes(),
                    have_h: crate::build::human(m.size.bytes()),
                    hint: "the base image and the preload do not fit it".into(),
                });
            }
        }
        let report = |partitions| BuildReport {
            image: out.clone(),
            disk_bytes,
            medium: medium.clone().map(|m| (m.name, m.size.bytes())),
            fits: profile
                .media
                .iter()
                .filter(|m| m.size.bytes() >= disk_bytes)
                .map(|m| m.name.clone())
                .collect(),
            partitions,
            config: redacted(&disk.config, &config),
            swap_bytes: recipe.swap.size.bytes(),
            app: app.as_ref().map(|a| a.summary.to_string()),
            swap_uuid: (recipe.swap.size.bytes() > 0).then(|| req.seed.uuid("swap").to_string()),
            image_sha256: String::new(),
            artifacts: Vec::new(),
        };
        let facts = source.facts(base)?;
        let to = crate::build::Deliver {
            req,
            delivery: &delivery,
            disk_id: disk.disk_id.clone(),
            app: app.as_ref(),
            base: Some(&facts),
            sbom: None,
        };
        crate::build::deliver_disk(&to, disk, image.take(), report, progress)
    };
    if layout.flasher {
        preload_flasher(&ctx, &work, &layout, &scratch, progress, &mut deliver)
    } else {
        preload_disk(&ctx, &work, &layout, &scratch, progress, &mut deliver)
    }
}

/// The base image as the working disk reads it: the file itself when it
/// is a raw image, else the file it was expanded into: the raw output
/// file when delivery writes one, else a scratch file.
struct BaseSource {
    file: File,
    /// `file` is the output's raw image file.
    in_output: bool,
    /// The expanded copy (removed when the build ends).
    _expanded: Option<Scratch>,
    /// The input's digest, or the thread computing it (a raw base is
    /// hashed beside the build rather than while being copied).
    sha256: std::cell::RefCell<Digesting>,
    /// A raw base's size and modification time when opened: it is read
    /// again while delivering, and must not have changed.
    stamp: Option<(u64, Option<std::time::SystemTime>)>,
}

/// [`BaseSource`]'s input digest.
enum Digesting {
    Done([u8; 32]),
    Running(std::thread::JoinHandle<Result<(Sha256Digest, u64), Error>>),
    Taken,
}

impl BaseSource {
    /// `output`: the raw output file (and its final name), if delivery
    /// writes one.
    fn open(
        base: &Path,
        scratch: &dyn Fn(&str) -> Result<Scratch, Error>,
        output: Option<(&mut crate::build::TempImage, &Path)>,
    ) -> Result<Self, Error> {
        if let Some((file, _)) = kiln_base::open_raw(base).map_err(base_err(base))? {
            let meta = file.metadata().map_err(base_io(base))?;
            let path = base.to_path_buf();
            let hashing = std::thread::Builder::new()
                .name("base-digest".into())
                .spawn(move || crate::manifest::file_digest(&path))
                .map_err(base_io(base))?;
            return Ok(Self {
                file,
                in_output: false,
                _expanded: None,
                sha256: std::cell::RefCell::new(Digesting::Running(hashing)),
                stamp: Some((meta.len(), meta.modified().ok())),
            });
        }
        if let Some((tmp, name)) = output {
            let f = tmp.file()?;
            let mat = expand(base, f, name)?;
            return Ok(Self {
                file: f
                    .try_clone()
                    .map_err(out_err(name, "cannot reopen the output file"))?,
                in_output: true,
                _expanded: None,
                sha256: std::cell::RefCell::new(Digesting::Done(mat.input_sha256)),
                stamp: None,
            });
        }
        let expanded = scratch("base")?;
        let mat = expand(base, &expanded.file, &expanded.path)?;
        Ok(Self {
            file: expanded
                .file
                .try_clone()
                .map_err(out_err(&expanded.path, "cannot reopen a scratch file"))?,
            in_output: false,
            _expanded: Some(expanded),
            sha256: std::cell::RefCell::new(Digesting::Done(mat.input_sha256)),
            stamp: None,
        })
    }

    /// What the manifest records of the base.
    fn facts(&self, base: &Path) -> Result<BaseFacts, Error> {
        let mut d = self.sha256.borrow_mut();
        let sha = match std::mem::replace(&mut *d, Digesting::Taken) {
            Digesting::Done(s) => s,
            Digesting::Running(h) => {
                h.join()
                    .unwrap_or_else(|_| {
                        Err(base_io(base)(std::io::Error::other(
                            "the digest thread panicked",
                        )))
                    })?
                    .0
                     .0
            }
            Digesting::Taken => {
                return Err(base_io(base)(std::io::Error::other(
                    "internal: the base digest was taken twice",
                )))
            }
        };
        *d = Digesting::Done(sha);
        Ok(BaseFacts {
            path: base.to_path_buf(),
            sha256: Sha256Digest(sha),
            size_bytes: std::fs::metadata(base).map(|m| m.len()).unwrap_or(0),
        })
    }

    /// Fails when a raw base read in place changed since it was opened.
    fn unchanged(&self, base: &Path) -> Result<(), Error> {
        let Some(then) = self.stamp else {
            return Ok(());
        };
        let meta = self.file.metadata().map_err(base_io(base))?;
        if (meta.len(), meta.modified().ok()) != then {
            return Err(Error::Image {
                path: base.to_path_buf(),
                reason: "the base image changed during the build".into(),
            });
        }
        Ok(())
    }
}

/// Expands the (non-raw) base into `into` (named `name` in errors):
/// a write failure (a full disk) names that file, anything else the base.
fn expand(base: &Path, into: &File, name: &Path) -> Result<kiln_base::Materialized, Error> {
    kiln_base::materialize(base, into).map_err(|e| match e {
        kiln_base::Error::Write { source, .. } => Error::Output {
            path: name.to_path_buf(),
            op: "cannot expand the base image into it",
            source,
        },
        e => base_err(base)(e),
    })
}

fn base_io(base: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Image {
        path: base.to_path_buf(),
        reason: e.to_string(),
    }
}

/// What a build of a base carries to every step.
struct Ctx<'a> {
    req: &'a BuildRequest<'a>,
    base: &'a Path,
    config: &'a kiln_recipe::ResolvedConfig,
    app: Option<&'a App>,
    time: Timestamp,
    /// Fails when the base changed during the build.
    unchanged: &'a dyn Fn() -> Result<(), Error>,
    /// The working disk's base is the raw output file itself (a
    /// compressed base expanded into it): the partition to rebuild is
    /// read from a copy set aside, and only the edits are written over.
    in_output: bool,
}

/// Writes the rebuilt partition into its region of the output, on the
/// given run; returns the writer's report and the preload's.
type WritePart<'a> = dyn Fn(
        SubRegion<&mut Sink<'_>>,
        Run,
    ) -> Result<(kiln_ext4::Ext4Report, Option<kiln_oci::FeedReport>), Error>
    + 'a;

/// Writes a [`Rebuilt`] disk wherever it goes (with the progress
/// callback), returning what the caller needs of it.
type Deliver<'a, T> = dyn FnMut(&Rebuilt<'_>, &mut dyn FnMut(&str)) -> Result<T, Error> + 'a;

/// A base disk ready to be written: the working disk (table resized,
/// boot partition merged) and its last partition, rebuilt by
/// `write_part` wherever the disk goes.
struct Rebuilt<'a> {
    /// The output (named by write errors).
    out: &'a Path,
    work: &'a Cow,
    layout: &'a Layout,
    table: kiln_part::PartitionTable,
    disk_id: String,
    disk_bytes: u64,
    part: NewPart<'a>,
    boot: (u32, crate::bootedit::BootEditReport),
    /// The merged config.json reported (the inner image's, on a
    /// flasher).
    config: serde_json::Value,
    /// Checked once the disk is written: a raw base read in place must
    /// not have changed meanwhile.
    unchanged: &'a dyn Fn() -> Result<(), Error>,
    /// The base lies in the (raw) output already: only the edits are
    /// written before the rebuilt partition.
    in_output: bool,
}

/// The (last) partition a base build rebuilds.
struct NewPart<'a> {
    /// As the base has it.
    old: &'a BasePartition,
    label: &'a str,
    /// Its filesystem UUID (kept from the base).
    uuid: [u8; 16],
    /// Its new size in bytes.
    size: u64,
    write: &'a WritePart<'a>,
}

impl DiskWriter for Rebuilt<'_> {
    fn disk_bytes(&self) -> u64 {
        self.disk_bytes
    }

    /// Everything after the rebuilt partition (the backup GPT; kept by a
    /// dry run), then everything before it (final from then on), then
    /// the partition itself.
    fn write(
        &self,
        sink: &mut Sink<'_>,
        run: Run,
        final_before: &mut dyn FnMut(u64),
        progress: &mut dyn FnMut(&str),
    ) -> Result<Written, Error> {
        let out = &self.out;
        let part = &self.part;
        let (start, size) = (part.old.start_bytes, part.size);
        let end = start + size;
        let write_err = out_err(out, "cannot write the disk");
        if self.in_output && !matches!(sink, Sink::Raw(_)) {
            return Err(write_err(std::io::Error::other(
                "internal: the base lies in the raw output, but the disk goes elsewhere",
            )));
        }
        if run != Run::Rerun {
            copy_nonzero(&At(self.work), end, sink, end, self.disk_bytes - end)
                .map_err(out_err(out, "cannot write the disk"))?;
        }
        progress(&format!("copying the base's disk up to {}", part.label));
        sink.begin_partition();
        if self.in_output {
            copy_edits(self.work, 0, start, sink)
        } else {
            copy_nonzero(&At(self.work), 0, sink, 0, start)
        }
        .map_err(write_err)?;
        sink.begin_finish();
        sink.end_partition()
            .map_err(out_err(out, "cannot stream the disk"))?;
        final_before(start);
        progress(&format!(
            "writing {} ({})",
            part.label,
            crate::build::human(size)
        ));
        sink.begin_partition();
        let (wr, feed) = (part.write)(SubRegion::new(&mut *sink, start, size), run)?;
        sink.end_partition()
            .map_err(out_err(out, "cannot stream the disk"))?;
        (self.unchanged)()?;
        let (boot_number, boot) = &self.boot;
        let partitions = reports(
            &self.table,
            self.layout,
            &[
                Rewritten {
                    number: part.old.number,
                    fs: "ext4",
                    fs_id: kiln_units::Guid::from_rfc_bytes(part.uuid).to_string(),
                    used: (wr.blocks_count - wr.free_blocks) * 4096,
                },
                Rewritten {
                    number: *boot_number,
                    fs: boot.fs,
                    fs_id: boot.fs_id.clone(),
                    used: boot.used_bytes,
                },
            ],
        );
        Ok((partitions, feed))
    }
}

/// Writes the non-zero 4 KiB blocks of `src`'s bytes `from..from+len`
/// into `dst` at `to..` (zeros are what a fresh output, a scratch file and
/// a streamed gap hold already), 1 MiB at a time, each run of non-zero
/// blocks as one write.
fn copy_nonzero<R: ReadAt + ?Sized, W: WriteAt + ?Sized>(
    src: &R,
    from: u64,
    dst: &mut W,
    to: u64,
    len: u64,
) -> std::io::Result<()> {
    const CHUNK: usize = 1 << 20;
    const BLOCK: usize = 4096;
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < len {
        let n = usize::try_from((len - done).min(CHUNK as u64)).unwrap_or(CHUNK);
        src.read_exact_at(&mut buf[..n], from + done)?;
        let at = to + done;
        let mut run: Option<usize> = None;
        for i in (0..n).step_by(BLOCK) {
            let nonzero = buf[i..(i + BLOCK).min(n)].iter().any(|&b| b != 0);
            match (nonzero, run) {
                (true, None) => run = Some(i),
                (false, Some(s)) => {
                    dst.write_all_at(&buf[s..i], at + s as u64)?;
                    run = None;
                }
                _ => {}
            }
        }
        if let Some(s) = run {
            dst.write_all_at(&buf[s..n], at + s as u64)?;
        }
        done += n as u64;
    }
    Ok(())
}

/// Writes `work`'s edited bytes within `from..to` into `sink`, zeros
/// included: the sink holds the base there already, and an edit may
/// clear what the base had.
fn copy_edits(work: &Cow, from: u64, to: u64, sink: &mut Sink<'_>) -> std::io::Result<()> {
    const CHUNK: u64 = 1 << 20;
    let mut buf = Vec::new();
    for (s, e) in work.edited_in(from, to) {
        let mut at = s;
        while at < e {
            let n = (e - at).min(CHUNK);
            buf.resize(usize::try_from(n).unwrap_or(0), 0);
            work.read_at(&mut buf, at)?;
            sink.write_all_at(&buf, at)?;
            at += n;
        }
    }
    Ok(())
}

/// Where the old content of `part` (the partition to rebuild) is read
/// from: the base itself (`None`), or, when the base lies in the output
/// file that the new partition overwrites, a copy set aside.
fn set_aside(
    ctx: &Ctx<'_>,
    work: &Cow,
    part: &BasePartition,
    scratch: &dyn Fn(&str) -> Result<Scratch, Error>,
) -> Result<Option<Scratch>, Error> {
    if !ctx.in_output {
        return Ok(None);
    }
    let to = scratch("old")?;
    let mut dst = to
        .file
        .try_clone()
        .map_err(out_err(&to.path, "cannot reopen a scratch file"))?;
    dst.set_len(part.size_bytes)
        .and_then(|()| copy_nonzero(work.base(), part.start_bytes, &mut dst, 0, part.size_bytes))
        .map_err(out_err(&to.path, "cannot copy a partition aside"))?;
    Ok(Some(to))
}

/// Steps 3 to 5 of the module doc on the disk `work`: the data
/// partition's new content sized, the table resized, the boot
/// partition's config merged; then `deliver` writes the disk, with the
/// data partition rebuilt into wherever it goes.
fn preload_disk<T>(
    ctx: &Ctx<'_>,
    work: &Cow,
    layout: &Layout,
    scratch: &dyn Fn(&str) -> Result<Scratch, Error>,
    progress: &mut dyn FnMut(&str),
    deliver: &mut Deliver<'_, T>,
) -> Result<T, Error> {
    let (req, base, app, time) = (ctx.req, ctx.base, ctx.app, ctx.time);
    let recipe = &req.recipe;
    let profile = &req.profile;
    role(layout, BaseRole::Boot, base)?;
    let data = role(layout, BaseRole::Data, base)?.clone();
    let data_label = data.label.clone().unwrap_or_else(|| "resin-data".into());
    let gpt = matches!(layout.scheme, kiln_part::Scheme::Gpt { .. });
    require_last(layout, &data, base, &data_label)?;

    // 3. The old data filesystem, read from the base.
    progress(&format!("reading {data_label} of the base"));
    let aside = set_aside(ctx, work, &data, scratch)?;
    let (from, at) = aside
        .as_ref()
        .map_or((work.base(), data.start_bytes), |s| (&s.file, 0));
    let old = Ext4Reader::open(SubRegion::new(from, at, data.size_bytes))
        .map_err(old_err(&data_label))?;
    let store_path = app
        .as_ref()
        .map_or_else(|| crate::build::tp("docker"), |a| a.store_path.clone());
    let existing = match app {
        Some(a) => {
            check_apps(base, &old, a, &data_label)?;
            let view = OldStore {
                fs: &old,
                prefix: store_path.clone(),
            };
            Some(
                kiln_oci::ExistingStore::scan(&view).map_err(|source| Error::App {
                    partition: format!("{data_label} (base)"),
                    source: Box::new(source),
                })?,
            )
        }
        None => None,
    };
    let swap = crate::build::swapfile(req, &data_label)?;
    // What kiln replaces: the swapfile, apps.json, repositories.json;
    // lost+found is the new filesystem's own.
    let mut drop: BTreeSet<TreePath> = BTreeSet::new();
    drop.insert(crate::build::tp("lost+found"));
    if let Some((p, _, _)) = &swap {
        drop.insert(p.clone());
    }
    let mut new_dirs = Vec::new();
    if app.is_some() {
        drop.insert(crate::build::tp("apps.json"));
        for skip in kiln_oci::ExistingStore::SKIP_PATHS {
            let mut p = store_path.clone();
            for c in skip.split('/') {
                p = p.join(c.as_bytes()).map_err(|e| Error::Layout {
                    partition: data_label.clone(),
                    reason: e.to_string(),
                })?;
            }
            drop.insert(p);
        }
        for (d, mode) in [
            (crate::build::tp("resin-data"), 0o755),
            (store_path.clone(), 0o710),
        ] {
            if old.lookup(&d).map_err(old_err(&data_label))?.is_none() {
                new_dirs.push((d, mode));
            }
        }
    }
    let merged = MergedData {
        swap,
        old: &old,
        drop,
        app: app.zip(existing.as_ref()),
        new_dirs,
        time,
    };

    // 4. Size the new data filesystem.
    progress(&format!("sizing {data_label}"));
    let data_uuid = old.info().uuid;
    let opts =
        |size| crate::build::ext4_options(req, &data_label, Role::Data, size, time).uuid(data_uuid);
    let mut est = Ext4Estimator::new();
    merged
        .feed(&mut est, Pass::Size)
        .map_err(|e| merge_err(&data_label, e))?;
    let min = est
        .min_size_bytes(&opts(0), recipe.data.headroom.bytes())
        .map_err(ext4_err(&data_label))?;
    let align = profile.alignment.max(4096);
    let min = kiln_units::align_up(min, align).unwrap_or(min);
    let new_size = data_size(req, &data_label, min, &data, gpt, align)?;
    let write = |region: SubRegion<&mut Sink<'_>>, run: Run| {
        let mut w = Ext4Writer::new(region, opts(new_size)).map_err(ext4_err(&data_label))?;
        // A streamed build's dry run leaves the layer digests to the
        // rerun.
        let pass = if run == Run::Dry {
            Pass::Size
        } else {
            Pass::Write
        };
        let feed = merged
            .feed(&mut w, pass)
            .map_err(|e| merge_err(&data_label, e))?;
        w.get_mut().get_mut().begin_finish();
        let wr = w.finish().map_err(ext4_err(&data_label))?;
        Ok((wr, feed))
    };
    let part = NewPart {
        old: &data,
        label: &data_label,
        uuid: data_uuid,
        size: new_size,
        write: &write,
    };
    rebuild(ctx, work, layout, part, None, progress, deliver)
}

/// Step 5 of the module doc and the delivery: the working disk cut
/// before `part` and regrown for its new size (table resized), the boot
/// partition merged, then `deliver` writes the disk. `config` is the
/// merged config.json to report (`None`: the boot partition's).
fn rebuild<T>(
    ctx: &Ctx<'_>,
    work: &Cow,
    layout: &Layout,
    part: NewPart<'_>,
    config: Option<serde_json::Value>,
    progress: &mut dyn FnMut(&str),
    deliver: &mut Deliver<'_, T>,
) -> Result<T, Error> {
    progress(&format!(
        "resizing {} ({} -> {})",
        part.label,
        crate::build::human(part.old.size_bytes),
        crate::build::human(part.size)
    ));
    let align = ctx.req.profile.alignment.max(4096);
    let disk_bytes = regrow(work, layout, part.old, part.size, align)?;
    if ctx.in_output {
        // The old partition and what followed it leave the output file
        // too (it was set aside): the new one is written over zeros.
        work.base()
            .set_len(part.old.start_bytes)
            .map_err(out_err(&ctx.req.output, "cannot cut the output file"))?;
    }
    let boot = role(layout, BaseRole::Boot, ctx.base)?;
    let boot_report = edit_boot(ctx, work, boot, progress)?;
    let table = kiln_part::read_table(&At(work)).map_err(Error::Table)?;
    deliver(
        &Rebuilt {
            out: &ctx.req.output,
            work,
            layout,
            disk_id: disk_id(&table),
            table,
            disk_bytes,
            part,
            config: config.unwrap_or_else(|| boot_report.config.clone()),
            boot: (boot.number, boot_report),
            unchanged: ctx.unchanged,
            in_output: ctx.in_output,
        },
        progress,
    )
}

/// Refuses to rewrite `part` unless it is the last partition (growing it
/// must not move another one).
fn require_last(
    layout: &Layout,
    part: &BasePartition,
    base: &Path,
    label: &str,
) -> Result<(), Error> {
    let last_end = layout
        .partitions
        .iter()
        .map(BasePartition::end_bytes)
        .max()
        .unwrap_or(0);
    if part.end_bytes() == last_end {
        return Ok(());
    }
    Err(Error::Image {
        path: base.to_path_buf(),
        reason: format!(
            "{label} (p{}) is not the last partition; kiln rewrites and grows a trailing partition only (growing it would move the partitions after it)",
            part.number
        ),
    })
}

/// Cuts the working disk at the start of the (last) partition `part`,
/// so its region reads zeros (it is rebuilt elsewhere), grows the disk
/// for a partition of `new_size` bytes (plus the backup GPT), writes the
/// backup GPT at the new end and resizes the partition (and an extended
/// container). Returns the new disk size.
fn regrow(
    work: &Cow,
    layout: &Layout,
    part: &BasePartition,
    new_size: u64,
    align: u64,
) -> Result<u64, Error> {
    let gpt = matches!(layout.scheme, kiln_part::Scheme::Gpt { .. });
    let gpt_tail = if gpt {
        kiln_units::align_up(33 * 512, align).unwrap_or(1 << 20)
    } else {
        0
    };
    let disk_bytes = (part.start_bytes + new_size + gpt_tail).max(layout.disk_bytes);
    let cut_err = |source| Error::Output {
        path: PathBuf::from("the working disk"),
        op: "cannot resize",
        source,
    };
    // A damaged primary GPT (the backup intact, as the layout was read)
    // is restored first: the cut below removes the backup.
    if gpt && kiln_part::restore_primary_gpt(&mut At(work)).map_err(Error::Table)? {
        tracing::info!("the base's primary GPT was damaged: restored from its backup");
    }
    work.set_len(part.start_bytes)
        .and_then(|()| work.set_len(disk_bytes))
        .map_err(cut_err)?;
    // The cut removed the backup GPT: written again at the (new) end.
    if gpt {
        kiln_part::relocate_gpt_backup(&mut At(work), disk_bytes).map_err(Error::Table)?;
    }
    if new_size != part.size_bytes {
        kiln_part::resize_partition(&mut At(work), part.number, new_size).map_err(Error::Table)?;
    }
    Ok(disk_bytes)
}

/// A partition kiln rewrote: filesystem name, id and bytes used.
struct Rewritten {
    number: u32,
    fs: &'static str,
    fs_id: String,
    used: u64,
}

/// The report of every partition, from the table as it is now.
fn reports(
    table: &kiln_part::PartitionTable,
    layout: &Layout,
    rewritten: &[Rewritten],
) -> Vec<PartitionReport> {
    layout
        .partitions
        .iter()
        .map(|p| {
            let now = table.partition(p.number);
            let (fs, fs_id, used) = match rewritten.iter().find(|r| r.number == p.number) {
                Some(r) => (r.fs, r.fs_id.clone(), r.used),
                None => (fs_kind(p), String::new(), 0),
            };
            PartitionReport {
                number: p.number,
                label: p.label.clone().unwrap_or_default(),
                start: p.start_bytes,
                size: now.map_or(p.size_bytes, |n| n.size_bytes),
                fs,
                fs_id,
                part_guid: now.and_then(|n| n.guid.map(|g| g.to_string())),
                used_bytes: used,
            }
        })
        .collect()
}

/// A [`std::io::Read`] over a [`ReadAt`] from offset 0.
struct ReadFrom<'a, R: ?Sized> {
    src: &'a R,
    pos: u64,
    len: u64,
}

impl<R: ReadAt + ?Sized> std::io::Read for ReadFrom<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = usize::try_from((self.len - self.pos).min(buf.len() as u64)).unwrap_or(0);
        if n == 0 {
            return Ok(0);
        }
        self.src.read_exact_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Passes a tree through, with the content of one file replaced.
struct Replace<'a, S> {
    inner: S,
    path: &'a TreePath,
    with: &'a File,
    size: u64,
}

impl<S: TreeSink> TreeSink for Replace<'_, S> {
    type Error = S::Error;
    fn add(&mut self, entry: &Entry, content: Content<'_>) -> Result<(), Self::Error> {
        if entry.path != *self.path || entry.kind != EntryKind::File {
            return self.inner.add(entry, content);
        }
        let mut r = ReadFrom {
            src: self.with,
            pos: 0,
            len: self.size,
        };
        self.inner.add(
            entry,
            Content::Stream {
                size: self.size,
                reader: &mut r,
            },
        )
    }
}

/// Headroom left in a flasher's root filesystem after the inner image
/// grew.
const FLASHER_ROOT_HEADROOM: u64 = 16 << 20;

/// A flasher (installer) image: the OS image it carries at
/// `/opt/<name>.img` in `flash-rootA` gets the preload (steps 3 to 5 on a
/// scratch copy of it, written out to another scratch file: the new
/// inner image is file content), then `flash-rootA` is rebuilt with the
/// new inner image (every other file kept) and grown, and `flash-boot`'s
/// config.json is merged as well (the installer copies it onto the
/// device). `flash-rootA` must be the last partition.
fn preload_flasher<T>(
    ctx: &Ctx<'_>,
    work: &Cow,
    layout: &Layout,
    scratch: &dyn Fn(&str) -> Result<Scratch, Error>,
    progress: &mut dyn FnMut(&str),
    deliver: &mut Deliver<'_, T>,
) -> Result<T, Error> {
    let (req, base, time) = (ctx.req, ctx.base, ctx.time);
    let shared = std::rc::Rc::new(work.base().try_clone().map_err(base_io(base))?);
    let inner = kiln_base::flasher_inner(&shared, layout)
        .map_err(base_err(base))?
        .ok_or_else(|| Error::Image {
            path: base.to_path_buf(),
            reason: "a flasher image without an OS image (*.img) under /opt of its root partition"
                .into(),
        })?;
    progress(&format!("extracting {} from the flasher", inner.path));
    let inner_copy = scratch("flasher-inner")?;
    kiln_base::extract_inner(&shared, layout, &inner, &inner_copy.file).map_err(base_err(base))?;
    drop(shared);
    let inner_name = PathBuf::from(format!("{}:{}", base.display(), inner.path));
    let reopen = |s: &Scratch| {
        s.file
            .try_clone()
            .map_err(out_err(&s.path, "cannot reopen a scratch file"))
    };
    let inner_edits = scratch("flasher-inner-edits")?;
    let inner_work = Cow::new(reopen(&inner_copy)?, reopen(&inner_edits)?)
        .map_err(out_err(&inner_edits.path, "cannot start the working disk"))?;
    let inner_layout = kiln_base::detect(&At(&inner_work)).map_err(base_err(&inner_name))?;
    if inner_layout.flasher {
        return Err(Error::Image {
            path: inner_name,
            reason: "a flasher inside a flasher".into(),
        });
    }
    let inner_ctx = Ctx {
        base: &inner_name,
        in_output: false,
        ..*ctx
    };
    // The preloaded inner image, written out whole: it is file content.
    let new_inner = scratch("flasher-inner-new")?;
    let (inner_size, inner_feed, inner_config) = preload_disk(
        &inner_ctx,
        &inner_work,
        &inner_layout,
        scratch,
        progress,
        &mut |disk, progress| {
            let mut f = reopen(&new_inner)?;
            f.set_len(disk.disk_bytes)
                .map_err(out_err(&new_inner.path, "cannot size a scratch file"))?;
            let (_, feed) = disk.write(&mut Sink::Raw(&mut f), Run::Only, &mut |_| {}, progress)?;
            Ok((disk.disk_bytes, feed, disk.config.clone()))
        },
    )?;
    drop(inner_work);
    drop(inner_edits);
    drop(inner_copy);

    // flash-rootA, rebuilt around the new inner image.
    let root = role(layout, BaseRole::RootA, base)?.clone();
    let label = root.label.clone().unwrap_or_else(|| "flash-rootA".into());
    require_last(layout, &root, base, &label)?;
    let inner_path =
        TreePath::parse(inner.path.trim_start_matches('/').as_bytes()).map_err(|e| {
            Error::Image {
                path: base.to_path_buf(),
                reason: format!("{}: {e}", inner.path),
            }
        })?;
    let aside = set_aside(ctx, work, &root, scratch)?;
    let (from, at) = aside
        .as_ref()
        .map_or((work.base(), root.start_bytes), |s| (&s.file, 0));
    let old =
        Ext4Reader::open(SubRegion::new(from, at, root.size_bytes)).map_err(old_err(&label))?;
    let uuid = old.info().uuid;
    let opts = |size| crate::build::ext4_options(req, &label, Role::RootA, size, time).uuid(uuid);
    let mut est = Replace {
        inner: Ext4Estimator::new(),
        path: &inner_path,
        with: &new_inner.file,
        size: inner_size,
    };
    old.feed(&mut est, |_, _| Visit::Keep)
        .map_err(old_err(&label))?;
    let min = est
        .inner
        .min_size_bytes(&opts(0), FLASHER_ROOT_HEADROOM)
        .map_err(ext4_err(&label))?;
    let align = req.profile.alignment.max(4096);
    let new_size = kiln_units::align_up(min, align)
        .unwrap_or(min)
        .max(root.size_bytes);
    let write = |region: SubRegion<&mut Sink<'_>>, _run: Run| {
        let mut w = Replace {
            inner: Ext4Writer::new(region, opts(new_size)).map_err(ext4_err(&label))?,
            path: &inner_path,
            with: &new_inner.file,
            size: inner_size,
        };
        old.feed(&mut w, |_, _| Visit::Keep)
            .map_err(old_err(&label))?;
        w.inner.get_mut().get_mut().begin_finish();
        let wr = w.inner.finish().map_err(ext4_err(&label))?;
        Ok((wr, inner_feed.clone()))
    };
    let part = NewPart {
        old: &root,
        label: &label,
        uuid,
        size: new_size,
        write: &write,
    };
    rebuild(
        ctx,
        work,
        layout,
        part,
        Some(inner_config),
        progress,
        deliver,
    )
}

/// Merges the recipe's config.json over the boot partition's and adds
/// the recipe's NetworkManager profiles and boot files.
fn edit_boot(
    ctx: &Ctx<'_>,
    work: &Cow,
    boot: &BasePartition,
    progress: &mut dyn FnMut(&str),
) -> Result<crate::bootedit::BootEditReport, Error> {
    progress(&format!(
        "merging config.json into {}",
        boot.label.as_deref().unwrap_or("the boot partition")
    ));
    let generated = crate::build::boot_generated(&ctx.req.recipe, ctx.config)?;
    let config_path = crate::build::tp("config.json");
    let edits = crate::bootedit::BootEdits {
        config_merge: Some(ctx.config.value().clone()),
        files: generated
            .iter()
            .filter(|g| g.path != config_path)
            .map(|g| {
                (
                    String::from_utf8_lossy(&g.path.to_bytes()).into_owned(),
                    g.data.clone(),
                )
            })
            .collect(),
        remove: Vec::new(),
    };
    crate::bootedit::edit_boot_in(
        work,
        boot.start_bytes,
        boot.size_bytes,
        &edits,
        ctx.req.timestamp,
    )
}

fn disk_id(table: &kiln_part::PartitionTable) -> String {
    match &table.scheme {
        kiln_part::Scheme::Mbr { disk_signature } => format!("0x{disk_signature:08x}"),
        kiln_part::Scheme::Gpt { disk_guid, .. } => disk_guid.to_string(),
    }
}

fn fs_kind(p: &BasePartition) -> &'static str {
    match p.fs {
        kiln_base::FsType::Fat => "fat",
        kiln_base::FsType::Ext4 => "ext4",
        _ => "other",
    }
}

/// The merged `config.json` with secrets redacted: the well-known secret
/// keys and every key the recipe marks secret.
fn redacted(merged: &serde_json::Value, config: &kiln_recipe::ResolvedConfig) -> serde_json::Value {
    let mut v = merged.clone();
    kiln_recipe::redact_known(&mut v);
    if let (Some(o), Some(r)) = (v.as_object_mut(), config.redacted().as_object()) {
        for (k, val) in r {
            if val.as_str() == Some(kiln_recipe::REDACTED) {
                o.insert(k.clone(), val.clone());
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A raw base read in place is checked for changes before the outputs
    /// are committed: a longer file (or a newer mtime) fails the build.
    #[test]
    fn a_raw_base_that_changes_during_the_build_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.img");
        std::fs::write(&base, vec![0x55u8; 4096]).unwrap();
        let scratch = |what: &str| Scratch::create(dir.path().join(format!(".s-{what}")));
        let source = BaseSource::open(&base, &scratch, None).unwrap();
        assert!(source._expanded.is_none(), "a raw base is read in place");
        source.unchanged(&base).unwrap();
        let facts = source.facts(&base).unwrap();
        assert_eq!(
            facts.sha256.to_hex(),
            Sha256Digest::of(&[0x55u8; 4096]).to_hex(),
            "the digest thread hashed the base"
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(&base)
            .unwrap()
            .write_all(&[0; 512])
            .unwrap();
        let err = source.unchanged(&base).unwrap_err().to_string();
        assert!(err.contains("changed during the build"), "{err}");
    }
}
