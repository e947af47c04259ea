//! One build: plan, write every partition into a temporary file beside
//! the output, write the partition table, then rename into place. Any
//! failure removes the temporary file, so no partial image is left.

use crate::content::{add_dir, feed_generated, feed_input, Generated, Skip};
use crate::deliver::{deliver, write_sums, Delivered, Delivery, DiskFormat, Source, Temps};
use crate::plan::{Placed, Plan};
use crate::seed::Seed;
use crate::sink::Sink;
use crate::swap::swap_header;
use crate::Error;
use kiln_artifact::digest::Sha256Digest;
use kiln_ext4::{Ext4Estimator, Ext4Options, Ext4Writer};
use kiln_fat::{FatOptions, FatType, FatWriter};
use kiln_part::{Extended, Gpt, GptPartition, Mbr, MbrPartition, MbrType};
use kiln_recipe::{
    BoardProfile, DataSize, EnvLookup, FsKind, Recipe, ResolvedConfig, Role, SwapActivation,
    TableKind,
};
use kiln_tree::{
    Content, Entry, EntryKind, Metadata, SourceError, SourceOptions, Timestamp, TreePath, TreeSink,
};
use kiln_units::{ByteSize, SubRegion};
use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Everything a build needs; the caller (the CLI) gathers the time, the
/// seed and the environment, the library never reads them itself.
pub struct BuildRequest<'a> {
    /// The board.
    pub profile: BoardProfile,
    /// The recipe.
    pub recipe: Recipe,
    /// `--media`: the medium the image must fit.
    pub medium: Option<String>,
    /// Where the image goes.
    pub output: PathBuf,
    /// `--set key=value` config overrides, in order.
    pub overrides: Vec<String>,
    /// The build time (SOURCE_DATE_EPOCH): every file and filesystem time.
    pub timestamp: i64,
    /// Seed of every UUID, GUID and signature.
    pub seed: Seed,
    /// Environment lookup for `from-env` config values.
    pub env: EnvLookup<'a>,
    /// Image formats to deliver (empty: the recipe's `[output] formats`).
    pub formats: Vec<DiskFormat>,
    /// Compression of the raw image: `xz`, `gz`, `zst` with an optional
    /// level (`None`: the recipe's `[output] compress`).
    pub compress: Option<(String, Option<u32>)>,
    /// Threads for compression.
    pub threads: u32,
    /// Base-image mode: preload into this image (`None`: the recipe's
    /// `[base] image`, if any; see the README).
    pub base: Option<PathBuf>,
    /// Base-image mode: accept a device type or architecture mismatch.
    pub force: bool,
    /// Signs `SHA256SUMS` (`SHA256SUMS.minisig`, committed with the other
    /// outputs) and records the key's id in the manifest.
    pub signer: Option<&'a kiln_sign::SecretKey>,
}

/// One written partition.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionReport {
    /// Linux partition number.
    pub number: u32,
    /// Filesystem label.
    pub label: String,
    /// Start in bytes.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
    /// `fat16`, `fat32` or `ext4`.
    pub fs: &'static str,
    /// Filesystem UUID (ext4) or volume id (FAT, `xxxx-xxxx`).
    pub fs_id: String,
    /// GPT partition GUID.
    pub part_guid: Option<String>,
    /// Bytes in use: allocated ext4 blocks, or FAT file content.
    pub used_bytes: u64,
}

/// What a build wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildReport {
    /// The image.
    pub image: PathBuf,
    /// Image size in bytes.
    pub disk_bytes: u64,
    /// The medium checked against, and its size.
    pub medium: Option<(String, u64)>,
    /// Media of the profile the image fits.
    pub fits: Vec<String>,
    /// Partitions.
    pub partitions: Vec<PartitionReport>,
    /// config.json with secrets redacted.
    pub config: serde_json::Value,
    /// Swapfile size in bytes (0: none).
    pub swap_bytes: u64,
    /// The preloaded images, one line each.
    pub app: Option<String>,
    /// Swap header UUID.
    pub swap_uuid: Option<String>,
    /// sha256 of the whole raw image (holes as zeros).
    pub image_sha256: String,
    /// Every delivered file.
    pub artifacts: Vec<Delivered>,
}

fn data_err(label: &str, e: DataFeedError<kiln_ext4::Error>) -> Error {
    match e {
        DataFeedError::App(source) => Error::App {
            partition: label.to_string(),
            source: Box::new(source),
        },
        DataFeedError::Sink(source) => ext4_err(label, source),
    }
}

fn ext4_err(label: &str, source: kiln_ext4::Error) -> Error {
    Error::Ext4 {
        partition: label.to_string(),
        source,
    }
}

fn src_err(label: &str, input: &kiln_recipe::InputPath, e: SourceError<kiln_ext4::Error>) -> Error {
    match e {
        SourceError::Source(source) => Error::Source {
            partition: label.to_string(),
            input: input.path.display().to_string(),
            source,
        },
        SourceError::Sink(source) => ext4_err(label, source),
    }
}

/// Deletes the temporary image unless the build succeeded.
pub(crate) struct TempImage {
    pub(crate) path: PathBuf,
    file: Option<File>,
    /// The file is this output format written in place (a qcow2 or
    /// dynamic VHD through [`crate::sink`], or a fixed VHD: the raw disk
    /// plus a footer), not the raw image.
    pub(crate) in_place: Option<DiskFormat>,
    /// The digest of the image's first bytes, started while the rest was
    /// written ([`crate::deliver::hash_prefix`]), and where they end.
    pub(crate) prefix: Option<(u64, crate::deliver::PrefixHash)>,
}

impl TempImage {
    /// Creates (truncates) `.<name>.kiln-partial` beside `out`: the same
    /// filesystem, so the final rename is atomic.
    pub(crate) fn create(out: &Path) -> Result<Self, Error> {
        if out.file_name().is_none() {
            return Err(Error::Output {
                path: out.to_path_buf(),
                op: "output path has no file name",
                source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            });
        }
        let (path, file) = crate::outpath::create_partial(out)?;
        Ok(Self {
            path,
            file: Some(file),
            in_place: None,
            prefix: None,
        })
    }

    /// The open file.
    pub(crate) fn file(&mut self) -> Result<&mut File, Error> {
        let path = self.path.clone();
        self.file.as_mut().ok_or_else(|| Error::Output {
            path,
            op: "internal: output closed",
            source: std::io::Error::from(std::io::ErrorKind::Other),
        })
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            crate::outpath::remove_partial(&self.path);
        }
    }
}

fn fs_name(fs: FsKind) -> &'static str {
    match fs {
        FsKind::Fat16 => "fat16",
        FsKind::Fat32 => "fat32",
        FsKind::Ext4 => "ext4",
    }
}

/// The preloaded application: the engine store and its `apps.json`.
pub(crate) struct App {
    pub(crate) store: kiln_oci::Store,
    pub(crate) apps_json: Vec<u8>,
    pub(crate) store_path: TreePath,
    pub(crate) summary: kiln_oci::Summary,
}

/// A failure while feeding the data partition.
enum DataFeedError<E> {
    App(kiln_oci::Error),
    Sink(E),
}

/// Which pass feeds the data partition's tree.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Into the size estimator: layer digests are not checked (the write
    /// pass does), so every layer is hashed once per build.
    Size,
    /// Into the writer: everything checked.
    Write,
}

/// What goes into the data partition: the balenaOS root files, the
/// swapfile (first, so it gets one contiguous run of blocks), `apps.json`
/// and the engine store.
struct DataTree {
    swap: Option<(TreePath, u64, [u8; 4096])>,
    app: Option<App>,
    time: Timestamp,
}

impl DataTree {
    /// Everything but the store's content: the root files, the swapfile,
    /// `apps.json` and the store's directory.
    fn feed_head<S: TreeSink>(&self, sink: &mut S) -> Result<(), DataFeedError<S::Error>> {
        let t = self.time;
        add_dir(sink, &TreePath::root(), 0o755, t).map_err(DataFeedError::Sink)?;
        if let Some((path, size, header)) = &self.swap {
            let e = Entry::new(path.clone(), EntryKind::File, Metadata::new(0o600, t));
            sink.add(
                &e,
                Content::Preallocated {
                    size: *size,
                    head: header,
                },
            )
            .map_err(DataFeedError::Sink)?;
        }
        // What balenaOS expects at the data partition root.
        add_dir(sink, &tp("resin-data"), 0o755, t).map_err(DataFeedError::Sink)?;
        let mut files = vec![Generated {
            path: tp("remove_me_to_reset"),
            mode: 0o644,
            data: Vec::new(),
        }];
        if let Some(app) = &self.app {
            files.push(Generated {
                path: tp("apps.json"),
                mode: 0o644,
                data: app.apps_json.clone(),
            });
        }
        feed_generated(&files, t, sink).map_err(DataFeedError::Sink)?;
        if let Some(app) = &self.app {
            add_dir(sink, &app.store_path, 0o710, t).map_err(DataFeedError::Sink)?;
        }
        Ok(())
    }

    /// Sizes the tree into `est`: the store's layers are decompressed
    /// `workers` at a time into one shared estimator.
    fn size(
        &self,
        est: &mut Ext4Estimator,
        workers: usize,
    ) -> Result<(), DataFeedError<kiln_ext4::Error>> {
        self.feed_head(est)?;
        let Some(app) = &self.app else {
            return Ok(());
        };
        let shared = std::sync::Mutex::new(std::mem::take(est));
        let fed = app.store.feed_for_sizing_parallel(
            || kiln_tree::PrefixSink::new(kiln_tree::LockedSink(&shared), app.store_path.clone()),
            workers,
        );
        *est = shared
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        fed.map_err(|e| match e {
            kiln_oci::FeedError::Input(i) => DataFeedError::App(i),
            kiln_oci::FeedError::Sink(s) => DataFeedError::Sink(s),
            #[allow(unreachable_patterns)]
            _ => DataFeedError::App(kiln_oci::Error::InvalidRequest("unknown feed error")),
        })?;
        Ok(())
    }

    /// Writes the tree into `sink`: everything checked, or, for a
    /// streamed build's dry run (`checked` false), the same entries in the
    /// same order without the layer digests (the real run checks them).
    fn feed<S: TreeSink>(
        &self,
        sink: &mut S,
        checked: bool,
    ) -> Result<Option<kiln_oci::FeedReport>, DataFeedError<S::Error>> {
        self.feed_head(sink)?;
        if let Some(app) = &self.app {
            let mut prefixed = kiln_tree::PrefixSink::new(&mut *sink, app.store_path.clone());
            let fed = if checked {
                app.store.feed(&mut prefixed)
            } else {
                app.store.feed_for_sizing(None, &mut prefixed)
            };
            let report = fed.map_err(|e| match e {
                kiln_oci::FeedError::Input(i) => DataFeedError::App(i),
                kiln_oci::FeedError::Sink(s) => DataFeedError::Sink(s),
                #[allow(unreachable_patterns)]
                _ => DataFeedError::App(kiln_oci::Error::InvalidRequest("unknown feed error")),
            })?;
            return Ok(Some(report));
        }
        Ok(None)
    }
}

/// Resolves the `[app]` inputs for the board's platform and builds
/// `apps.json` (reads only JSON and the compose file; layers stream later).
pub(crate) fn prepare_app(
    req: &BuildRequest<'_>,
    a: &kiln_recipe::AppSpec,
    time: Timestamp,
    label: &str,
) -> Result<App, Error> {
    a.compose.check_exists()?;
    for i in &a.images {
        i.input.check_exists()?;
    }
    let app_err = |source| Error::App {
        partition: label.to_string(),
        source: Box::new(source),
    };
    let platform = req
        .profile
        .arch
        .platforms()
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    let platform = kiln_oci::Platform::parse(&platform).map_err(app_err)?;
    let inputs: Vec<kiln_oci::ImageInput> = a
        .images
        .iter()
        .map(|i| {
            let input = kiln_oci::ImageInput::new(&i.input.path);
            match &i.name {
                Some(n) => input.named(n.clone()),
                None => input,
            }
        })
        .collect();
    let store = kiln_oci::Store::open(&inputs, kiln_oci::StoreOptions { platform, time })
        .map_err(app_err)?;
    let compose = kiln_oci::Compose::read(&a.compose.path).map_err(app_err)?;
    let mut ids = kiln_oci::AppIds::derive(&req.seed.derive("app"), &a.name);
    if let Some(u) = &a.uuid {
        ids.app_uuid = u.clone();
    }
    if let Some(c) = &a.commit {
        ids.release_commit = c.clone();
    }
    ids.app_id = a.app_id;
    ids.release_id = a.release_id;
    let config: std::collections::BTreeMap<String, String> = a
        .config
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let apps = kiln_oci::AppsJson::build(
        &compose,
        &store,
        &ids,
        &config,
        a.pin_device.then_some(true),
    )
    .map_err(app_err)?;
    let mut apps = apps;
    let swap = &req.recipe.swap;
    if swap.size.bytes() > 0 && swap.activation == SwapActivation::AppService {
        let image = swap.service_image.as_deref().unwrap_or_default();
        let (composition, labels) = swap_service(&swap.path, label);
        apps.add_service(&store, &ids, SWAP_SERVICE, image, composition, labels)
            .map_err(app_err)?;
    }
    let store_path = TreePath::parse(a.store_path.as_bytes()).map_err(|e| Error::Layout {
        partition: label.to_string(),
        reason: format!("app.store-path: {e}"),
    })?;
    let summary = store.summary();
    Ok(App {
        store,
        apps_json: apps.to_bytes(),
        store_path,
        summary,
    })
}

/// The service `swap.activation = "app-service"` adds to the app.
pub const SWAP_SERVICE: &str = "kiln-swap";

/// The swap service for read-only roots (balenaOS): privileged, it mounts
/// the data partition by label inside its own mount namespace (the engine
/// offers no bind mount of the host's /mnt/data), runs `swapon` on the
/// swapfile (swap is kernel-wide: it stays on), then sleeps so the
/// supervisor sees it running; its healthcheck is the swapfile in
/// `/proc/swaps`. Only busybox applets are used (`findfs`, `mount`,
/// `swapon`, `grep`, `sleep`).
fn swap_service(
    swap_path: &str,
    data_label: &str,
) -> (
    serde_json::Value,
    std::collections::BTreeMap<String, String>,
) {
    let dir = "/run/kiln-swap";
    let file = format!("{dir}{swap_path}");
    let script = format!(
        "set -e; b=/bin/busybox; $b mkdir -p {dir}; \
         $b grep -q ' {dir} ' /proc/mounts || $b mount -t ext4 \"$($b findfs LABEL={data_label})\" {dir}; \
         $b grep -q '^{file} ' /proc/swaps || $b swapon {file}; \
         exec $b sleep 2147483647"
    );
    let composition = serde_json::json!({
        "command": ["/bin/busybox", "sh", "-c", script],
        "healthcheck": {"test": ["CMD", "/bin/busybox", "grep", "-q", format!("^{file} "), "/proc/swaps"]},
        "network_mode": "none",
        "privileged": true,
        "restart": "on-failure",
    });
    let labels = [(
        "io.kiln.swapfile".to_string(),
        format!("/mnt/data{swap_path}"),
    )]
    .into_iter()
    .collect();
    (composition, labels)
}

pub(crate) fn tp(s: &str) -> TreePath {
    // OK: only called with constant, valid relative paths.
    TreePath::parse(s.as_bytes()).unwrap_or_default()
}

/// Runs a build. `progress` receives one line per stage.
pub fn build(req: &BuildRequest<'_>, progress: &mut dyn FnMut(&str)) -> Result<BuildReport, Error> {
    crate::deliver::check_outputs(&req.output, &delivery_for(req)?)?;
    if let Some(base) = req
        .base
        .clone()
        .or_else(|| req.recipe.base.as_ref().map(|b| b.image.path.clone()))
    {
        return crate::base::build_base(req, &base, progress);
    }
    let profile = &req.profile;
    let recipe = &req.recipe;
    let time = Timestamp::new(req.timestamp, 0);
    let os = recipe.os_for(profile.arch)?;
    let rootfs = os.rootfs.as_ref().ok_or_else(|| {
        recipe_invalid(
            recipe,
            &format!("os.{}.rootfs", profile.arch.as_str()),
            "no root filesystem given",
        )
    })?;
    rootfs.check_exists()?;
    for b in os.boot.iter().chain(&os.bios_boot) {
        b.check_exists()?;
    }
    let config = boot_config(req, progress)?;

    let swap = swapfile(req, "resin-data")?;
    let data_label = profile
        .partitions
        .iter()
        .find(|p| p.role == Role::Data)
        .map_or_else(|| "resin-data".to_string(), |p| p.label.clone());
    let app = match &recipe.app {
        Some(a) => {
            progress("resolving the application images");
            Some(prepare_app(req, a, time, &data_label)?)
        }
        None => None,
    };
    let app_summary = app.as_ref().map(|a| a.summary.to_string());
    let data_tree = DataTree { swap, app, time };

    // Size the data partition.
    progress("planning the layout");
    let data_spec = profile
        .partitions
        .iter()
        .find(|p| p.role == Role::Data)
        .ok_or_else(|| Error::Layout {
            partition: "data".into(),
            reason: "profile has no data partition".into(),
        })?;
    let mut est = Ext4Estimator::new();
    progress("sizing the data partition");
    data_tree
        .size(&mut est, usize::try_from(req.threads.max(1)).unwrap_or(1))
        .map_err(|e| data_err(&data_spec.label, e))?;
    let min_data = est
        .min_size_bytes(
            &ext4_options(req, data_spec.label.as_str(), Role::Data, 0, time),
            recipe.data.headroom.bytes(),
        )
        .map_err(|source| Error::Ext4 {
            partition: data_spec.label.clone(),
            source,
        })?;
    // Its per-directory tables are no longer needed: free them before the
    // write pass and delivery (peak memory is reached there).
    drop(est);
    let min_data = kiln_units::align_up(min_data, profile.alignment).unwrap_or(min_data);
    let medium = match &req.medium {
        Some(m) => Some(profile.medium(m)?.clone()),
        None => None,
    };
    let data_size = match recipe.data.size {
        DataSize::Auto => min_data,
        DataSize::Fixed(b) => {
            if b.bytes() < min_data {
                return Err(Error::Layout {
                    partition: data_spec.label.clone(),
                    reason: format!(
                        "data.size {} is smaller than the {} its content and headroom need",
                        b,
                        ByteSize::new(min_data)
                    ),
                });
            }
            b.bytes()
        }
        DataSize::Fill => {
            let m = medium
                .as_ref()
                .or(profile.media.first())
                .ok_or_else(|| Error::Layout {
                    partition: data_spec.label.clone(),
                    reason: "data.size = \"fill\" needs a medium (--media)".into(),
                })?;
            let fill = Plan::fill_size(profile, m.size.bytes())?;
            fill.max(min_data)
        }
    };
    let plan = Plan::compute(profile, data_size)?;
    let fits: Vec<String> = profile
        .media
        .iter()
        .filter(|m| m.size.bytes() >= plan.disk_bytes)
        .map(|m| m.name.clone())
        .collect();
    let check = medium.clone().or_else(|| profile.media.last().cloned());
    if let Some(m) = &check {
        if plan.disk_bytes > m.size.bytes() {
            return Err(Error::TooBig {
                medium: m.name.clone(),
                need: plan.disk_bytes,
                need_h: human(plan.disk_bytes),
                have: m.size.bytes(),
                have_h: human(m.size.bytes()),
                hint: if fits.is_empty() {
                    format!("no medium of board {} is large enough", profile.name)
                } else {
                    format!("it fits {}", fits.join(", "))
                },
            });
        }
    }

    let out = &req.output;
    let delivery = delivery_for(req)?;
    let disk = Disk {
        req,
        plan: &plan,
        os,
        rootfs,
        config: &config,
        data_tree: &data_tree,
        time,
    };
    let report = |partitions| BuildReport {
        image: out.clone(),
        disk_bytes: plan.disk_bytes,
        medium: medium.clone().map(|m| (m.name, m.size.bytes())),
        fits: fits.clone(),
        partitions,
        config: config.redacted(),
        swap_bytes: recipe.swap.size.bytes(),
        app: app_summary.clone(),
        swap_uuid: (recipe.swap.size.bytes() > 0).then(|| req.seed.uuid("swap").to_string()),
        image_sha256: String::new(),
        artifacts: Vec::new(),
    };
    let disk_id = match profile.table {
        TableKind::Mbr => format!("0x{:08x}", req.seed.u32("mbr-disk-signature")),
        TableKind::Gpt => req.seed.uuid("gpt-disk").to_string(),
    };
    let to = Deliver {
        req,
        delivery: &delivery,
        disk_id,
        app: data_tree.app.as_ref(),
        base: None,
    };
    deliver_disk(&to, &disk, None, report, progress)
}

/// What writes a whole disk into a [`Sink`]: a normal build's partition
/// table and partitions ([`Disk`]), or a base build's edited base around
/// its rebuilt partition (`crate::base`).
pub(crate) trait DiskWriter {
    /// The disk's size in bytes.
    fn disk_bytes(&self) -> u64;

    /// Writes the disk into `sink` in disk order (on a [`Run::Rerun`],
    /// all but what the dry run kept); `final_before(end)` runs once
    /// every byte before `end` is written and will not change (the image
    /// digest can start there while the rest is written). Returns every
    /// partition's report and the engine store's.
    fn write(
        &self,
        sink: &mut Sink<'_>,
        run: Run,
        final_before: &mut dyn FnMut(u64),
        progress: &mut dyn FnMut(&str),
    ) -> Result<Written, Error>;
}

/// What [`DiskWriter::write`] reports.
pub(crate) type Written = (Vec<PartitionReport>, Option<kiln_oci::FeedReport>);

/// Where and how a disk is delivered, besides the disk itself.
pub(crate) struct Deliver<'a> {
    pub(crate) req: &'a BuildRequest<'a>,
    pub(crate) delivery: &'a Delivery,
    /// The disk's MBR signature or GPT GUID (for the manifest).
    pub(crate) disk_id: String,
    pub(crate) app: Option<&'a App>,
    /// The base image of a base build.
    pub(crate) base: Option<&'a crate::manifest::BaseFacts>,
}

/// Writes `disk` and delivers it (every output, the manifest, the
/// checksums). When only sequential outputs are asked for (VMDK, the
/// compressed raw image) the disk is streamed into them and no image file
/// is written ([`crate::stream`]); else it is written into the one file
/// every output is made from: the qcow2, or failing that the fixed VHD
/// (raw data + footer) or the dynamic VHD, written in place when raw is
/// not delivered, else the sparse raw file. `report` makes the build's
/// report from the partitions'.
///
/// `image` is the file [`raw_image_file`] made earlier, if the caller
/// filled it already (a base build expands a compressed base into it).
pub(crate) fn deliver_disk(
    to: &Deliver<'_>,
    disk: &dyn DiskWriter,
    image: Option<TempImage>,
    report: impl FnOnce(Vec<PartitionReport>) -> BuildReport,
    progress: &mut dyn FnMut(&str),
) -> Result<BuildReport, Error> {
    let (req, delivery) = (to.req, to.delivery);
    let in_place = crate::deliver::in_place_format(delivery);
    if in_place.is_none() && !keeps_raw(delivery) {
        return build_streamed(to, disk, report, progress);
    }
    let out = &req.output;
    let disk_bytes = disk.disk_bytes();
    let mut tmp = match image {
        Some(t) => t,
        None => image_file(req, in_place)?,
    };
    let file = tmp.file()?;
    let size_err = |source| Error::Output {
        path: out.clone(),
        op: "cannot size the output file",
        source,
    };
    let vdisk_err = |e: kiln_vdisk::Error| size_err(std::io::Error::other(e.to_string()));
    let mut prefix_reader = None;
    let mut sink = match in_place {
        Some(DiskFormat::Qcow2) => Sink::Qcow2(
            kiln_vdisk::Qcow2RandomWriter::new(&mut *file, disk_bytes).map_err(vdisk_err)?,
        ),
        Some(DiskFormat::VhdDynamic) => Sink::VhdDynamic(
            kiln_vdisk::VhdDynamicRandomWriter::new(
                &mut *file,
                disk_bytes,
                &crate::deliver::vhd_options(delivery, kiln_vdisk::VhdKind::Dynamic),
            )
            .map_err(vdisk_err)?,
        ),
        _ => {
            file.set_len(disk_bytes).map_err(size_err)?;
            prefix_reader = Some(file.try_clone().map_err(size_err)?);
            Sink::Raw(&mut *file)
        }
    };
    let mut prefix = None;
    let (partitions, feed_report) = disk.write(
        &mut sink,
        Run::Only,
        &mut |end| {
            if let Some(reader) = prefix_reader.take() {
                prefix = Some((end, crate::deliver::hash_prefix(reader, end)));
            }
        },
        progress,
    )?;
    sink.finish().map_err(|e| Error::Output {
        path: tmp.path.clone(),
        op: "cannot finish the disk image",
        source: std::io::Error::other(e.to_string()),
    })?;
    tmp.prefix = prefix;
    finish(
        req,
        tmp,
        report(partitions),
        to.disk_id.clone(),
        to.app.zip(feed_report.as_ref()),
        to.base,
        progress,
    )
}

/// The temporary output file beside the target (same filesystem, so the
/// final rename is atomic) that a positional delivery writes the disk
/// into: the raw image, or the `in_place` format's file.
fn image_file(req: &BuildRequest<'_>, in_place: Option<DiskFormat>) -> Result<TempImage, Error> {
    let out = &req.output;
    let mut tmp = TempImage::create(
        &in_place.map_or_else(|| out.clone(), |f| crate::deliver::format_path(out, f)),
    )?;
    tmp.in_place = in_place;
    Ok(tmp)
}

/// The (empty) file a positional delivery writes the raw disk into, when
/// it writes one: raw kept, or a fixed VHD in place (the raw disk, then a
/// footer). `None` when the disk goes into a qcow2 or dynamic VHD in
/// place, or is streamed.
pub(crate) fn raw_image_file(
    req: &BuildRequest<'_>,
    delivery: &Delivery,
) -> Result<Option<TempImage>, Error> {
    let in_place = crate::deliver::in_place_format(delivery);
    let raw = match in_place {
        None => keeps_raw(delivery),
        Some(f) => f == DiskFormat::Vhd,
    };
    if raw {
        image_file(req, in_place).map(Some)
    } else {
        Ok(None)
    }
}

/// Whether delivery keeps the raw image file itself (raw asked for, not
/// compressed).
fn keeps_raw(d: &Delivery) -> bool {
    d.formats.contains(&DiskFormat::Raw) && d.compress.is_none()
}

/// The disk streamed straight into the sequential outputs
/// ([`crate::stream`]): a dry run of every writer for the metadata, then
/// the real run, its pieces delivered on a second thread as they come;
/// then the manifest and checksums. `report` makes the build's report
/// from the partitions'.
fn build_streamed(
    to: &Deliver<'_>,
    disk: &dyn DiskWriter,
    report: impl FnOnce(Vec<PartitionReport>) -> BuildReport,
    progress: &mut dyn FnMut(&str),
) -> Result<BuildReport, Error> {
    let (req, delivery, app, base) = (to.req, to.delivery, to.app, to.base);
    let out = &req.output;
    let size = disk.disk_bytes();
    let stream_err = |source| Error::Output {
        path: out.clone(),
        op: "cannot stream the disk",
        source,
    };
    progress("laying out the disk (the outputs are streamed: a dry run first)");
    let mut rec = crate::stream::Recorder::new();
    disk.write(
        &mut Sink::Record(&mut rec),
        Run::Dry,
        &mut |_| {},
        &mut |m| {
            progress(&format!("dry run: {m}"));
        },
    )?;
    let recorded = rec.finish();
    tracing::debug!(
        "dry run: {} bytes of metadata kept, {} written extents",
        recorded.kept.bytes(),
        recorded.extents.len()
    );
    let mut temps = Temps::new();
    progress(&delivering(delivery));
    let planned = crate::deliver::plan_outputs(delivery, &mut temps, out, None)?;
    let bmap = crate::deliver::bmap_hasher(delivery, &recorded.extents, size, out)?;
    // A few pieces in flight (the writers' are at most 1 MiB each).
    let (tx, rx) = std::sync::mpsc::sync_channel(4);
    let (written, produced, inputs) = std::thread::scope(|scope| {
        let delivering = std::thread::Builder::new()
            .name("deliver".into())
            .spawn_scoped(scope, move || {
                crate::deliver::deliver_stream(planned, rx, size, bmap, out, delivery)
            });
        let (profile, recipe, with_app) = (&req.profile, &req.recipe, app.is_some());
        let inputs = scope.spawn(move || crate::manifest::inputs(profile, recipe, base, with_app));
        let mut streamer = crate::stream::Streamer::new(recorded, tx);
        let written = disk
            .write(
                &mut Sink::Stream(&mut streamer),
                Run::Rerun,
                &mut |_| {},
                progress,
            )
            .and_then(|w| {
                streamer.finish().map_err(stream_err)?;
                Ok(w)
            });
        // Closes the stream (cut short if the writers failed).
        drop(streamer);
        let produced = match delivering {
            Ok(h) => h.join().unwrap_or_else(|_| {
                Err(stream_err(std::io::Error::other(
                    "the delivery thread panicked",
                )))
            }),
            Err(e) => Err(stream_err(e)),
        };
        (written, produced, inputs.join())
    });
    // When delivery fails (disk full, say) the writers only saw the stream
    // close: its error is the one to report. When the writers fail, the
    // stream was cut short and theirs is.
    let produced = match (produced?, written) {
        (Some(p), Ok(w)) => (p, w),
        (_, Err(e)) => return Err(e),
        (None, Ok(_)) => {
            return Err(stream_err(std::io::Error::other(
                "the disk stream ended early",
            )))
        }
    };
    let (p, (partitions, feed_report)) = produced;
    let inputs = joined_inputs(inputs, out)?;
    let image_digest = p.image_digest;
    let artifacts = crate::deliver::assemble(p, out, delivery, &mut temps)?;
    let mut report = report(partitions);
    report.artifacts = conclude(
        req,
        &mut report,
        artifacts,
        image_digest,
        inputs,
        to.disk_id.clone(),
        app.zip(feed_report.as_ref()),
        temps,
    )?;
    Ok(report)
}

/// What the partition writers of a normal build read.
struct Disk<'a> {
    req: &'a BuildRequest<'a>,
    plan: &'a Plan,
    os: &'a kiln_recipe::OsSpec,
    rootfs: &'a kiln_recipe::InputPath,
    config: &'a ResolvedConfig,
    data_tree: &'a DataTree,
    time: Timestamp,
}

/// Which run of the partition writers [`DiskWriter::write`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Run {
    /// The one run of a positional build.
    Only,
    /// A streamed build's dry run ([`crate::stream`]): layer digests are
    /// left to the rerun.
    Dry,
    /// A streamed build's real run: the partition table is already in
    /// the dry run's record.
    Rerun,
}

impl DiskWriter for Disk<'_> {
    fn disk_bytes(&self) -> u64 {
        self.plan.disk_bytes
    }

    /// The partition table (but on a [`Run::Rerun`]) and every partition,
    /// in disk order (the reports carry the GPT partition GUIDs); with the
    /// table written first, everything before the last partition is final
    /// once that partition starts.
    fn write(
        &self,
        sink: &mut Sink<'_>,
        run: Run,
        final_before: &mut dyn FnMut(u64),
        progress: &mut dyn FnMut(&str),
    ) -> Result<Written, Error> {
        let (req, plan, os, rootfs, time) = (self.req, self.plan, self.os, self.rootfs, self.time);
        let recipe = &req.recipe;
        if run != Run::Rerun {
            // The partition table (and BIOS boot code) first: it depends
            // on the plan alone.
            progress("writing the partition table");
            let boot_code = match &os.bios_boot {
                Some(input) => Some(write_bios_boot(&req.profile, plan, input, sink)?),
                None => None,
            };
            write_table(req, plan, boot_code, sink)?;
        }
        let mut reports = Vec::new();
        let mut feed_report = None;
        for (i, placed) in plan.partitions.iter().enumerate() {
            if i + 1 == plan.partitions.len() {
                final_before(placed.ebr.unwrap_or(placed.start));
            }
            progress(&format!(
                "writing p{} {} ({}, {})",
                placed.number,
                placed.spec.label,
                fs_name(placed.spec.fs),
                human(placed.size)
            ));
            sink.begin_partition();
            let region = SubRegion::new(&mut *sink, placed.start, placed.size);
            let report = match placed.spec.role {
                Role::Boot => write_boot(req, placed, region, self.config, time, os.boot.as_ref())?,
                Role::RootA => write_ext4(req, placed, region, time, |sink| {
                    let label = &placed.spec.label;
                    let opts = SourceOptions {
                        clamp_time: Some(time),
                        force_owner: None,
                        max_file_size: Some(placed.size),
                    };
                    feed_input(rootfs, &opts, sink).map_err(|e| src_err(label, rootfs, e))?;
                    if recipe.swap.size.bytes() > 0
                        && recipe.swap.activation == SwapActivation::SystemdUnit
                    {
                        add_swap_unit(sink, &recipe.swap.path, time)
                            .map_err(|source| ext4_err(label, source))?;
                    }
                    Ok(())
                })?,
                Role::RootB | Role::State => write_ext4(req, placed, region, time, |_| Ok(()))?,
                Role::Data => write_ext4(req, placed, region, time, |sink| {
                    feed_report = self
                        .data_tree
                        .feed(sink, run != Run::Dry)
                        .map_err(|e| data_err(&placed.spec.label, e))?;
                    Ok(())
                })?,
            };
            sink.end_partition().map_err(|source| Error::Output {
                path: req.output.clone(),
                op: "cannot stream the disk",
                source,
            })?;
            reports.push(report);
        }
        if req.profile.table == TableKind::Gpt {
            for r in &mut reports {
                r.part_guid = Some(gpt_part_guid(req, &r.label).to_string());
            }
        }
        Ok((reports, feed_report))
    }
}

/// Delivery, the manifest and the checksums of a written raw image in
/// `tmp`, then every output renamed into place (`report` is completed with
/// the image digest and the artifacts).
pub(crate) fn finish(
    req: &BuildRequest<'_>,
    mut tmp: TempImage,
    mut report: BuildReport,
    disk_id: String,
    app: Option<(&App, &kiln_oci::FeedReport)>,
    base: Option<&crate::manifest::BaseFacts>,
    progress: &mut dyn FnMut(&str),
) -> Result<BuildReport, Error> {
    let out = &req.output;
    let (in_place, image_tmp, prefix) = (tmp.in_place, tmp.path.clone(), tmp.prefix.take());
    let file = tmp.file()?;
    // The image goes to disk (fsync, before the rename makes it visible)
    // on a second thread while delivery reads it back from the page cache.
    let flush_err = |source| Error::Output {
        path: out.clone(),
        op: "cannot flush the output file",
        source,
    };
    let syncing = file.try_clone().map_err(flush_err)?;

    // Delivery: formats, compression, bmap, checksums, manifest.
    let delivery = delivery_for(req)?;
    progress(&delivering(&delivery));
    let mut temps = Temps::new();
    let (delivered, synced, inputs) = std::thread::scope(|scope| {
        let sync = scope.spawn(move || syncing.sync_all());
        // The manifest's input digests read every input again: beside
        // delivery rather than after it.
        let (profile, recipe, with_app) = (&req.profile, &req.recipe, app.is_some());
        let inputs = scope.spawn(move || crate::manifest::inputs(profile, recipe, base, with_app));
        let source = match in_place {
            Some(format) => Source::InPlace {
                file,
                tmp: &image_tmp,
                format,
                disk_bytes: report.disk_bytes,
            },
            None => Source::Raw(file),
        };
        let delivered = deliver(source, out, &delivery, &mut temps, prefix);
        (delivered, sync.join(), inputs.join())
    });
    let (artifacts, image_digest, keep) = delivered?;
    let inputs = joined_inputs(inputs, out)?;
    synced
        .unwrap_or_else(|_| Err(std::io::Error::other("the flushing thread panicked")))
        .map_err(flush_err)?;
    // The image is committed with the other outputs, in the order
    // [`Temps`] documents (before the bmap and SHA256SUMS).
    let keeps_image = keep.is_some();
    if let Some(dest) = keep {
        temps.adopt(tmp.path.clone(), dest);
    }
    let artifacts = conclude(
        req,
        &mut report,
        artifacts,
        image_digest,
        inputs,
        disk_id,
        app,
        temps,
    )?;
    if keeps_image {
        // Renamed: nothing left to clean up.
        tmp.file = None;
    }
    report.artifacts = artifacts;
    Ok(report)
}

/// The manifest's input digests from their thread.
fn joined_inputs(
    joined: std::thread::Result<Result<Vec<kiln_artifact::manifest::Input>, Error>>,
    out: &Path,
) -> Result<Vec<kiln_artifact::manifest::Input>, Error> {
    joined.unwrap_or_else(|_| {
        Err(Error::Output {
            path: out.to_path_buf(),
            op: "cannot digest the inputs",
            source: std::io::Error::other("the digest thread panicked"),
        })
    })
}

/// The progress line of a delivery.
fn delivering(delivery: &Delivery) -> String {
    format!(
        "delivering {}{}",
        delivery
            .formats
            .iter()
            .map(|f| format!("{f:?}").to_lowercase())
            .collect::<Vec<_>>()
            .join(", "),
        delivery
            .compress
            .as_ref()
            .map(|c| format!(" ({:?})", c.compression()).to_lowercase())
            .unwrap_or_default()
    )
}

/// The manifest and `SHA256SUMS` of a delivered build, then every
/// temporary output renamed into place; returns all delivered files.
#[allow(clippy::too_many_arguments)]
fn conclude(
    req: &BuildRequest<'_>,
    report: &mut BuildReport,
    mut artifacts: Vec<Delivered>,
    image_digest: Sha256Digest,
    inputs: Vec<kiln_artifact::manifest::Input>,
    disk_id: String,
    app: Option<(&App, &kiln_oci::FeedReport)>,
    mut temps: Temps,
) -> Result<Vec<Delivered>, Error> {
    let out = &req.output;
    let dir = kiln_units::parent_dir(out);
    report.image_sha256 = image_digest.to_hex();
    let manifest = crate::manifest::manifest_json(&crate::manifest::ManifestFacts {
        profile: &req.profile,
        recipe: &req.recipe,
        source_date_epoch: req.timestamp,
        report,
        image_sha256: image_digest,
        disk_id,
        app,
        artifacts: &artifacts,
        inputs,
        signing_key_id: req.signer.map(|k| k.id().to_string()),
    })?;
    let manifest_path = crate::deliver::manifest_path(out);
    temps.write(
        &manifest_path,
        manifest.as_bytes(),
        "cannot write the manifest",
    )?;
    artifacts.push(Delivered::file(
        manifest_path,
        "manifest",
        manifest.as_bytes(),
    ));
    let sums = write_sums(dir, out, &artifacts, &mut temps)?;
    crate::signed::sign_build(req, &report.image_sha256, &sums.path, &mut temps)?;
    artifacts.push(sums);
    temps.commit()?;
    Ok(artifacts)
}

/// The delivery the request (or, failing that, the recipe) asks for.
pub(crate) fn delivery_for(req: &BuildRequest<'_>) -> Result<Delivery, Error> {
    let out = &req.recipe.output;
    let formats = if req.formats.is_empty() {
        out.formats
            .iter()
            .map(|f| {
                DiskFormat::parse(f).ok_or_else(|| Error::Layout {
                    partition: "output".into(),
                    reason: format!("unknown format {f:?}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        req.formats.clone()
    };
    let (kind, level) = match &req.compress {
        Some((k, l)) => (k.clone(), *l),
        None => (out.compress.clone(), None),
    };
    let compression = match kind.as_str() {
        "none" | "" => None,
        "xz" => Some(kiln_artifact::compress::Compression::Xz),
        "gz" | "gzip" => Some(kiln_artifact::compress::Compression::Gzip),
        "zst" | "zstd" => Some(kiln_artifact::compress::Compression::Zstd),
        other => {
            return Err(Error::Layout {
                partition: "output".into(),
                reason: format!("unknown compression {other:?} (use xz, gz, zst or none)"),
            })
        }
    };
    let compress = match compression {
        None => None,
        Some(c) => {
            let mut o =
                kiln_artifact::compress::CompressOptions::new(c).threads(req.threads.max(1));
            if let Some(l) = level {
                let (lo, hi) = c.level_range();
                if !(lo..=hi).contains(&l) {
                    return Err(Error::Layout {
                        partition: "output".into(),
                        reason: format!("compression level {l} is outside {lo}..={hi}"),
                    });
                }
                o = o.level(l);
            }
            Some(o)
        }
    };
    Ok(Delivery {
        formats,
        compress,
        seed: req.seed.bytes16("vdisk"),
        timestamp: req.timestamp,
    })
}

pub(crate) fn recipe_invalid(recipe: &Recipe, key: &str, reason: &str) -> kiln_recipe::Error {
    kiln_recipe::Error::Invalid {
        at: kiln_recipe::Location {
            file: recipe.source.clone(),
            line: 0,
            column: 0,
        },
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

/// `1.5GiB`-style sizes for messages.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// The ext4 parameters of a partition: identities from the seed, the
/// build time, and for the data partition mke2fs's `-i 8192` density (an
/// engine store is tens of thousands of small files).
pub(crate) fn ext4_options(
    req: &BuildRequest<'_>,
    label: &str,
    role: Role,
    size: u64,
    time: Timestamp,
) -> Ext4Options {
    let opts = Ext4Options::new(size)
        .label(label)
        .uuid(req.seed.uuid(&format!("fs:{label}")).to_rfc_bytes())
        .hash_seed(req.seed.bytes16(&format!("hash:{label}")))
        .timestamp(time);
    if role == Role::Data {
        opts.inode_ratio(8192)
    } else {
        opts
    }
}

/// Adds a systemd swap unit for the swapfile on the data partition
/// (mounted by the OS at /mnt/data) and enables it the way `systemctl
/// enable` does: the unit in `/etc/systemd/system/` and a *symlink* to it
/// in `swap.target.wants/` (systemd ignores regular files there).
fn add_swap_unit<S: TreeSink>(
    sink: &mut S,
    swap_path: &str,
    time: Timestamp,
) -> Result<(), S::Error> {
    let what = format!("/mnt/data{swap_path}");
    // systemd unit names escape "-" as \x2d and "/" as "-" (systemd-escape --path).
    let unit = format!(
        "{}.swap",
        what.trim_start_matches('/')
            .replace('-', "\\x2d")
            .replace('/', "-")
    );
    let text = format!(
        "# Written by kiln: activates the swapfile provisioned on the data partition.\n\
         [Unit]\nDescription=kiln swapfile on the data partition\n\
         RequiresMountsFor=/mnt/data\n\n\
         [Swap]\nWhat={what}\n\n[Install]\nWantedBy=swap.target\n"
    );
    feed_generated(
        &[Generated {
            path: tp(&format!("etc/systemd/system/{unit}")),
            mode: 0o644,
            data: text.into_bytes(),
        }],
        time,
        sink,
    )?;
    let link = Entry::new(
        tp(&format!("etc/systemd/system/swap.target.wants/{unit}")),
        EntryKind::Symlink {
            target: format!("../{unit}").into_bytes(),
        },
        Metadata::new(0o777, time),
    );
    sink.add(&link, Content::None)
}

fn write_ext4<F>(
    req: &BuildRequest<'_>,
    placed: &Placed,
    region: SubRegion<&mut Sink<'_>>,
    time: Timestamp,
    feed: F,
) -> Result<PartitionReport, Error>
where
    F: FnOnce(&mut Ext4Writer<SubRegion<&mut Sink<'_>>>) -> Result<(), Error>,
{
    let label = placed.spec.label.clone();
    let opts = ext4_options(req, &label, placed.spec.role, placed.size, time);
    let uuid = req.seed.uuid(&format!("fs:{label}"));
    let mut w = Ext4Writer::new(region, opts).map_err(|e| ext4_err(&label, e))?;
    feed(&mut w)?;
    w.get_mut().get_mut().begin_finish();
    let report = w.finish().map_err(|e| ext4_err(&label, e))?;
    Ok(PartitionReport {
        number: placed.number,
        label: label.clone(),
        start: placed.start,
        size: placed.size,
        fs: "ext4",
        fs_id: uuid.to_string(),
        part_guid: None,
        used_bytes: (report.blocks_count - report.free_blocks) * 4096,
    })
}

fn write_boot(
    req: &BuildRequest<'_>,
    placed: &Placed,
    region: SubRegion<&mut Sink<'_>>,
    config: &ResolvedConfig,
    time: Timestamp,
    boot_src: Option<&kiln_recipe::InputPath>,
) -> Result<PartitionReport, Error> {
    let label = placed.spec.label.clone();
    let fat_err = |source| Error::Fat {
        partition: label.clone(),
        source,
    };
    let vol_id = req.seed.u32(&format!("fat:{label}"));
    let fat_type = if placed.spec.fs == FsKind::Fat32 {
        FatType::Fat32
    } else {
        FatType::Fat16
    };
    let opts = FatOptions::new(vol_id, time)
        .fat_type(fat_type)
        .volume_label(&label)
        .hidden_sectors(u32::try_from(placed.start / 512).unwrap_or(u32::MAX));
    let mut w = FatWriter::new(region, placed.size, opts).map_err(fat_err)?;

    // Generated files replace what the boot files carry at those paths.
    let generated = boot_generated(&req.recipe, config)?;
    let skip: BTreeSet<TreePath> = generated.iter().map(|g| g.path.clone()).collect();
    if let Some(src) = boot_src {
        let mut filtered = Skip {
            inner: &mut w,
            skip: &skip,
        };
        feed_input(
            src,
            &SourceOptions {
                clamp_time: Some(time),
                force_owner: None,
                max_file_size: Some(placed.size),
            },
            &mut filtered,
        )
        .map_err(|e| match e {
            SourceError::Source(source) => Error::Source {
                partition: label.clone(),
                input: src.path.display().to_string(),
                source,
            },
            SourceError::Sink(source) => Error::Fat {
                partition: label.clone(),
                source,
            },
        })?;
    }
    feed_generated(&generated, time, &mut w).map_err(fat_err)?;
    w.get_mut().get_mut().begin_finish();
    let report = w.finish().map_err(fat_err)?;
    Ok(PartitionReport {
        number: placed.number,
        label: label.clone(),
        start: placed.start,
        size: placed.size,
        fs: fs_name(placed.spec.fs),
        fs_id: format!("{:04X}-{:04X}", vol_id >> 16, vol_id & 0xffff),
        part_guid: None,
        used_bytes: report.file_bytes,
    })
}

/// The swapfile of the recipe, if any: its path on the data partition
/// (`label`, for errors), size and header page.
pub(crate) fn swapfile(
    req: &BuildRequest<'_>,
    label: &str,
) -> Result<Option<(TreePath, u64, [u8; 4096])>, Error> {
    let swap = &req.recipe.swap;
    if swap.size.bytes() == 0 {
        return Ok(None);
    }
    let path = TreePath::parse(swap.path.trim_start_matches('/').as_bytes()).map_err(|e| {
        Error::Layout {
            partition: label.to_string(),
            reason: format!("swap.path: {e}"),
        }
    })?;
    let header = swap_header(swap.size.bytes(), req.seed.uuid("swap"), &swap.label);
    Ok(Some((path, swap.size.bytes(), header)))
}

/// Checks the boot partition's inputs exist and resolves config.json
/// (the recipe's `[config]`, then the `--set` overrides).
pub(crate) fn boot_config(
    req: &BuildRequest<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<ResolvedConfig, Error> {
    let recipe = &req.recipe;
    for i in recipe
        .network_profiles
        .iter()
        .chain(&recipe.ca_certificates)
        .chain(recipe.boot_extra.iter().map(|b| &b.src))
    {
        i.check_exists()?;
    }
    progress("resolving config.json");
    let mut config = recipe.resolve_config(&req.profile.device_type, req.env)?;
    for o in &req.overrides {
        config.set(o)?;
    }
    Ok(config)
}

/// The files kiln generates on the boot partition: `config.json`, the
/// NetworkManager profiles under `system-connections/` and the recipe's
/// `[boot] files`.
pub(crate) fn boot_generated(
    recipe: &Recipe,
    config: &ResolvedConfig,
) -> Result<Vec<Generated>, Error> {
    let mut generated = vec![Generated {
        path: tp("config.json"),
        mode: 0o644,
        data: config.to_pretty_bytes(),
    }];
    for p in &recipe.network_profiles {
        let name = p
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = TreePath::root()
            .join(b"system-connections")
            .and_then(|d| d.join(name.as_bytes()))
            .map_err(|e| p.invalid(e.to_string()))?;
        generated.push(Generated {
            path,
            mode: 0o600,
            data: p.read()?,
        });
    }
    for x in &recipe.boot_extra {
        let path = TreePath::parse(x.dest.as_bytes()).map_err(|e| x.src.invalid(e.to_string()))?;
        generated.push(Generated {
            path,
            mode: 0o644,
            data: x.src.read()?,
        });
    }
    Ok(generated)
}

/// BIOS boot (GRUB's boot.img + core.img, as balenaOS and grub-install
/// lay it out on MBR disks): returns the 440 bytes of MBR boot code and
/// writes core.img from LBA 1 up to (not into) the first partition.
fn write_bios_boot(
    profile: &BoardProfile,
    plan: &Plan,
    input: &kiln_recipe::InputPath,
    file: &mut Sink<'_>,
) -> Result<[u8; 440], Error> {
    if profile.table != TableKind::Mbr {
        return Err(input
            .invalid("BIOS boot code needs an MBR board; GPT boards boot through UEFI")
            .into());
    }
    let bytes = input.read()?;
    let first = plan
        .partitions
        .iter()
        .map(|p| p.ebr.unwrap_or(p.start))
        .min()
        .unwrap_or(0);
    if bytes.len() < 1024 || bytes.len() as u64 > first {
        return Err(input
            .invalid(format!(
                "expected boot.img (512 bytes) followed by core.img, at most {first} bytes in all before the first partition; got {} bytes",
                bytes.len()
            ))
            .into());
    }
    let mut code = [0u8; 440];
    code.copy_from_slice(&bytes[..440]);
    kiln_units::WriteAt::write_all_at(file, &bytes[512..], 512).map_err(|source| {
        Error::Output {
            path: input.path.clone(),
            op: "cannot write core.img before the first partition",
            source,
        }
    })?;
    Ok(code)
}

/// The GPT partition GUID of the partition labelled `label`.
fn gpt_part_guid(req: &BuildRequest<'_>, label: &str) -> kiln_units::Guid {
    req.seed.uuid(&format!("gpt-part:{label}"))
}

fn write_table(
    req: &BuildRequest<'_>,
    plan: &Plan,
    boot_code: Option<[u8; 440]>,
    file: &mut Sink<'_>,
) -> Result<(), Error> {
    let profile = &req.profile;
    match profile.table {
        TableKind::Mbr => {
            let mut mbr = Mbr::new(req.seed.u32("mbr-disk-signature"));
            mbr = mbr.align(profile.alignment);
            if let Some(code) = boot_code {
                mbr = mbr.boot_code(kiln_part::BootCode::Code(Box::new(code)));
            }
            let mut ext = plan
                .extended
                .map(|(s, l)| Extended::new(s, l, profile.ebr_gap));
            for p in &plan.partitions {
                let part = MbrPartition::new(
                    p.spec.label.clone(),
                    MbrType(p.spec.mbr_type),
                    p.start,
                    p.size,
                )
                .bootable(p.spec.bootable);
                if p.spec.logical {
                    if let Some(e) = ext.take() {
                        ext = Some(e.logical(part));
                    }
                } else {
                    mbr.push_primary(part);
                }
            }
            if let Some(e) = ext {
                mbr.push_extended(e);
            }
            mbr.write_to(file, plan.disk_bytes).map_err(Error::Table)
        }
        TableKind::Gpt => {
            let mut gpt = Gpt::new(req.seed.uuid("gpt-disk")).align(profile.alignment);
            for p in &plan.partitions {
                let guid = gpt_part_guid(req, &p.spec.label);
                // Attribute bit 2: legacy BIOS bootable (UEFI 2.10 table 5-8).
                let attrs = if p.spec.bootable { 1 << 2 } else { 0 };
                gpt.push(
                    GptPartition::new(p.spec.label.clone(), p.spec.gpt_type, guid, p.start, p.size)
                        .attributes(attrs),
                );
            }
            gpt.write_to(file, plan.disk_bytes).map_err(Error::Table)
        }
    }
}
