//! `kiln build --installer`: a USB installer image in the balenaOS
//! flasher layout, carrying the disk a normal build writes.
//!
//! Layout (what `kiln-base` recognises as a flasher, and what its
//! base-image mode rebuilds: `flash-rootA` last):
//!
//! | partition | label | content |
//! |---|---|---|
//! | p1 | `flash-boot` | the board's boot partition, as a normal build writes it (boot files, config.json, network profiles, ...) |
//! | p2 | `flash-rootA` | the recipe's root filesystem plus the files below, sized to fit them |
//!
//! Files added to `flash-rootA`:
//!
//! | path | what |
//! |---|---|
//! | `/opt/kiln-<board>.img` | the inner image: byte for byte the raw disk `kiln build` writes for the same recipe (same sha256) |
//! | `/opt/kiln-<board>.img.bmap` | its block map (bmaptool format 2.0) |
//! | `/opt/kiln/installer.json` | the installer settings ([`kiln_install::Settings`], from `[installer]`) |
//! | `/usr/bin/kiln` | the kiln binary that builds the image (the CLI passes its own) |
//! | `/etc/systemd/system/kiln-install.service` | runs `kiln install` at boot, on the console; enabled in `multi-user.target.wants/` |
//!
//! The inner image is stored as a **sparse file** in the ext4
//! filesystem, not xz-compressed: kiln's ext4 writer leaves all-zero
//! blocks as holes, so it costs only its mapped blocks on the stick; its
//! blocks are directly readable at random (the flash engine writes the
//! bmap's ranges in place and re-reads them to tell a bad medium from a
//! bad image, which a compressed stream cannot do without decompressing
//! again); and it is what balenaOS flashers and kiln's own base-image
//! mode expect (`/opt/*.img`, a raw disk image). Compressing the whole
//! installer image (`--compress xz`) still shrinks the stick image for
//! download.

use crate::content::{add_dir, feed_generated, feed_input, tp, Generated, Skip};
use crate::deliver::disk::{deliver_disk, Deliver, DiskWriter, Run, Written};
use crate::deliver::DiskFormat;
use crate::fresh::{ext4_err, write_bios_boot, write_boot, write_ext4, write_table};
use crate::plan::Plan;
use crate::report::{fs_name, human, BuildReport};
use crate::request::{boot_config, delivery_for, ext4_options, BuildRequest};
use crate::sink::Sink;
use crate::Error;
use kiln_ext4::Ext4Estimator;
use kiln_recipe::{BoardProfile, PartSize, ResolvedConfig, Role, TableKind};
use kiln_tree::{
    Content, Entry, EntryKind, Metadata, SourceError, SourceOptions, Timestamp, TreePath, TreeSink,
};
use kiln_units::{ReadAt, SubRegion};
use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Free space left in `flash-rootA` beyond what it holds (bytes).
const ROOT_HEADROOM: u64 = 64 << 20;

/// Builds the installer image for `req` (its output, formats and
/// compression), carrying the kiln binary at `kiln_binary`.
///
/// # Errors
/// As [`crate::build`]; [`Error::Image`] when the binary cannot be read
/// or the recipe names a base image (an installer is built from `[os]`).
pub fn build_installer(
    req: &BuildRequest<'_>,
    kiln_binary: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<BuildReport, Error> {
    let delivery = delivery_for(req)?;
    crate::deliver::check_outputs(&req.output, &delivery)?;
    if let Some(base) = req
        .base
        .clone()
        .or_else(|| req.recipe.base.as_ref().map(|b| b.image.path.clone()))
    {
        return Err(Error::Image {
            path: base,
            reason: "an installer is built from the recipe's [os], not from a base image".into(),
        });
    }
    let binary = File::open(kiln_binary).map_err(|e| Error::Image {
        path: kiln_binary.to_path_buf(),
        reason: format!("cannot read the kiln binary to carry: {e}"),
    })?;
    let binary_bytes = binary.size().map_err(|e| Error::Image {
        path: kiln_binary.to_path_buf(),
        reason: format!("cannot size the kiln binary: {e}"),
    })?;

    let scratch = ScratchDir::create(crate::outpath::scratch_path(&req.output, "installer"))?;
    let inner = build_inner(req, &scratch.path, progress)?;

    let os = req.recipe.os_for(req.profile.arch)?;
    let rootfs = os.rootfs.as_ref().ok_or_else(|| Error::Layout {
        partition: "flash-rootA".into(),
        reason: format!(
            "os.{}.rootfs: no root filesystem given",
            req.profile.arch.as_str()
        ),
    })?;
    let config = boot_config(req, progress)?;
    let time = Timestamp::new(req.timestamp, 0);
    let extras = Extras {
        inner: &inner,
        binary: &binary,
        binary_bytes,
        time,
    };
    let profile = installer_profile(&req.profile)?;
    progress("planning the installer layout");
    let root_bytes = root_size(req, rootfs, &extras)?;
    let plan = Plan::compute(&profile, root_bytes)?;
    let sbom = crate::sbom::Collector::default();
    let disk = InstallerDisk {
        req,
        profile: &profile,
        plan: &plan,
        os,
        rootfs,
        config: &config,
        extras: &extras,
        sbom: &sbom,
    };
    let report = |partitions| BuildReport {
        image: req.output.clone(),
        disk_bytes: plan.disk_bytes,
        medium: None,
        fits: crate::sizing::fits(&req.profile, plan.disk_bytes),
        partitions,
        config: config.redacted(),
        swap_bytes: 0,
        app: None,
        swap_uuid: None,
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
        app: None,
        base: None,
        sbom: Some(&sbom),
    };
    let built = deliver_disk(&to, &disk, None, report, progress);
    drop(scratch);
    built
}

/// The inner image, built into the scratch directory.
struct Inner {
    /// Its file name (`kiln-<board>.img`), under `/opt` in the installer.
    name: String,
    /// The raw image.
    file: File,
    /// Its size in bytes.
    bytes: u64,
    /// Its bmap (XML).
    bmap: Vec<u8>,
    /// Bytes its bmap maps (what it costs in the installer's ext4).
    mapped_bytes: u64,
    /// Number of mapped ranges.
    ranges: u64,
    /// The settings file.
    settings: Vec<u8>,
}

/// Runs a normal build of the same recipe (raw, uncompressed, unsigned)
/// into `dir`: the inner image is that build's disk, byte for byte.
fn build_inner(
    req: &BuildRequest<'_>,
    dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Inner, Error> {
    let name = format!("kiln-{}.img", req.profile.name);
    let out = dir.join(&name);
    let inner_req = BuildRequest {
        profile: req.profile.clone(),
        recipe: req.recipe.clone(),
        medium: req.medium.clone(),
        output: out.clone(),
        overrides: req.overrides.clone(),
        timestamp: req.timestamp,
        seed: req.seed.clone(),
        env: req.env,
        formats: vec![DiskFormat::Raw],
        compress: Some(("none".into(), None)),
        threads: req.threads,
        base: None,
        force: req.force,
        signer: None,
        on_bytes: req.on_bytes,
    };
    progress("building the inner image");
    let built = crate::fresh::build_fresh(&inner_req, progress)?;
    let scratch_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Output {
            path,
            op: "cannot read the inner image",
            source,
        }
    };
    let file = File::open(&out).map_err(scratch_err(&out))?;
    let bmap_path = dir.join(format!("{name}.bmap"));
    let bmap = std::fs::read(&bmap_path).map_err(scratch_err(&bmap_path))?;
    let parsed = kiln_artifact::bmap::Bmap::parse(&bmap).map_err(|e| Error::Image {
        path: bmap_path.clone(),
        reason: e.to_string(),
    })?;
    let settings = kiln_install::Settings::new(
        &req.recipe.installer,
        &format!("/opt/{name}"),
        built.disk_bytes,
        &built.image_sha256,
    );
    Ok(Inner {
        name,
        file,
        bytes: built.disk_bytes,
        bmap,
        mapped_bytes: parsed.mapped_bytes(),
        ranges: parsed.ranges().len() as u64,
        settings: settings.to_json(),
    })
}

/// The board's profile reduced to the flasher layout: its boot partition
/// as `flash-boot`, then its rootA as `flash-rootA`, sized to fit.
fn installer_profile(board: &BoardProfile) -> Result<BoardProfile, Error> {
    let find = |role: Role| {
        board
            .partitions
            .iter()
            .find(|p| p.role == role)
            .cloned()
            .ok_or_else(|| Error::Layout {
                partition: format!("{role:?}"),
                reason: format!("board {} has no such partition", board.name),
            })
    };
    let mut boot = find(Role::Boot)?;
    boot.label = "flash-boot".into();
    boot.logical = false;
    let mut root = find(Role::RootA)?;
    root.label = "flash-rootA".into();
    root.size = PartSize::Auto;
    root.logical = false;
    let mut p = board.clone();
    p.partitions = vec![boot, root];
    Ok(p)
}

/// What the installer adds to its root filesystem.
struct Extras<'a> {
    inner: &'a Inner,
    binary: &'a File,
    binary_bytes: u64,
    time: Timestamp,
}

impl Extras<'_> {
    /// The paths added (what the root filesystem input may not carry).
    fn paths(&self) -> BTreeSet<TreePath> {
        [
            format!("opt/{}", self.inner.name),
            format!("opt/{}.bmap", self.inner.name),
            "opt/kiln".into(),
            kiln_install::BINARY_PATH.into(),
            format!("etc/systemd/system/{}", kiln_install::UNIT_NAME),
            format!(
                "etc/systemd/system/multi-user.target.wants/{}",
                kiln_install::UNIT_NAME
            ),
        ]
        .iter()
        .map(|p| tp(p))
        .collect()
    }

    /// The small generated files.
    fn generated(&self) -> Vec<Generated> {
        vec![
            Generated {
                path: tp(&format!("opt/{}.bmap", self.inner.name)),
                mode: 0o644,
                data: self.inner.bmap.clone(),
            },
            Generated {
                path: tp(kiln_install::SETTINGS_PATH),
                mode: 0o644,
                data: self.inner.settings.clone(),
            },
            Generated {
                path: tp(&format!("etc/systemd/system/{}", kiln_install::UNIT_NAME)),
                mode: 0o644,
                data: UNIT.as_bytes().to_vec(),
            },
        ]
    }

    /// Adds every extra to `sink`, streaming the binary and the inner
    /// image from their files.
    fn feed<S: TreeSink>(&self, sink: &mut S) -> Result<(), S::Error> {
        let t = self.time;
        add_dir(sink, &tp("opt"), 0o755, t)?;
        add_dir(sink, &tp("opt/kiln"), 0o755, t)?;
        feed_generated(&self.generated(), t, sink)?;
        let unit = kiln_install::UNIT_NAME;
        let link = Entry::new(
            tp(&format!(
                "etc/systemd/system/multi-user.target.wants/{unit}"
            )),
            EntryKind::Symlink {
                target: format!("../{unit}").into_bytes(),
            },
            Metadata::new(0o777, t),
        );
        sink.add(&link, Content::None)?;
        let mut r = PosReader::new(self.binary, self.binary_bytes);
        let e = Entry::new(
            tp(kiln_install::BINARY_PATH),
            EntryKind::File,
            Metadata::new(0o755, t),
        );
        sink.add(
            &e,
            Content::Stream {
                size: self.binary_bytes,
                reader: &mut r,
            },
        )?;
        let mut r = PosReader::new(&self.inner.file, self.inner.bytes);
        sink.add(
            &self.inner_entry(),
            Content::Stream {
                size: self.inner.bytes,
                reader: &mut r,
            },
        )
    }

    fn inner_entry(&self) -> Entry {
        Entry::new(
            tp(&format!("opt/{}", self.inner.name)),
            EntryKind::File,
            Metadata::new(0o644, self.time),
        )
    }
}

/// The unit that runs `kiln install` on the console at boot.
const UNIT: &str = "# Written by kiln: installs the OS this installer carries.\n\
[Unit]\n\
Description=kiln installer: install the OS onto this machine's internal disk\n\
After=local-fs.target systemd-udev-settle.service\n\
Wants=systemd-udev-settle.service\n\
ConditionPathExists=/opt/kiln/installer.json\n\n\
[Service]\n\
Type=oneshot\n\
ExecStart=/usr/bin/kiln install\n\
StandardInput=tty\n\
StandardOutput=tty\n\
StandardError=tty\n\
TTYPath=/dev/console\n\
TTYReset=yes\n\n\
[Install]\n\
WantedBy=multi-user.target\n";

/// Sequential reads of the first `len` bytes of a file, by position (so
/// the file can be streamed again on another pass).
struct PosReader<'a> {
    file: &'a File,
    pos: u64,
    len: u64,
}

impl<'a> PosReader<'a> {
    fn new(file: &'a File, len: u64) -> Self {
        Self { file, pos: 0, len }
    }
}

impl Read for PosReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let Some(buf) = buf.get_mut(..n) else {
            return Ok(0);
        };
        let got = std::os::unix::fs::FileExt::read_at(self.file, buf, self.pos)?;
        self.pos = self.pos.saturating_add(got as u64);
        Ok(got)
    }
}

/// `flash-rootA`'s size: the root filesystem, the extras (the inner image
/// counted by its mapped bytes, plus a block per range for its extent
/// tree) and [`ROOT_HEADROOM`], aligned; at least the board's rootA.
fn root_size(
    req: &BuildRequest<'_>,
    rootfs: &kiln_recipe::InputPath,
    extras: &Extras<'_>,
) -> Result<u64, Error> {
    let label = "flash-rootA";
    let time = extras.time;
    let mut est = Ext4Estimator::new();
    let skip = extras.paths();
    let opts = SourceOptions {
        clamp_time: Some(time),
        force_owner: None,
        max_file_size: None,
    };
    feed_input(
        rootfs,
        &opts,
        &mut Skip {
            inner: &mut est,
            skip: &skip,
        },
    )
    .map_err(|e| source_err(label, rootfs, e))?;
    let t = time;
    add_dir(&mut est, &tp("opt"), 0o755, t).map_err(|e| ext4_err(label, e))?;
    add_dir(&mut est, &tp("opt/kiln"), 0o755, t).map_err(|e| ext4_err(label, e))?;
    feed_generated(&extras.generated(), t, &mut est).map_err(|e| ext4_err(label, e))?;
    let bin = Entry::new(
        tp(kiln_install::BINARY_PATH),
        EntryKind::File,
        Metadata::new(0o755, t),
    );
    est.add_entry(&bin, extras.binary_bytes);
    let inner = extras.inner;
    est.add_entry(&extras.inner_entry(), inner.mapped_bytes);
    let headroom = ROOT_HEADROOM.saturating_add(inner.ranges.saturating_mul(2 * 4096));
    let min = est
        .min_size_bytes(&ext4_options(req, label, Role::RootA, 0, time), headroom)
        .map_err(|e| ext4_err(label, e))?;
    let board_root = req
        .profile
        .partitions
        .iter()
        .find(|p| p.role == Role::RootA)
        .and_then(|p| match p.size {
            PartSize::Fixed(b) => Some(b.bytes()),
            PartSize::Auto => None,
        })
        .unwrap_or(0);
    let align = req.profile.alignment;
    let min = min.max(board_root);
    Ok(kiln_units::align_up(min, align).unwrap_or(min))
}

fn source_err(
    label: &str,
    input: &kiln_recipe::InputPath,
    e: SourceError<kiln_ext4::Error>,
) -> Error {
    match e {
        SourceError::Source(source) => Error::Source {
            partition: label.to_string(),
            input: input.path.display().to_string(),
            source,
        },
        SourceError::Sink(source) => ext4_err(label, source),
    }
}

/// The installer disk's partition writers.
struct InstallerDisk<'a> {
    req: &'a BuildRequest<'a>,
    profile: &'a BoardProfile,
    plan: &'a Plan,
    os: &'a kiln_recipe::OsSpec,
    rootfs: &'a kiln_recipe::InputPath,
    config: &'a ResolvedConfig,
    extras: &'a Extras<'a>,
    sbom: &'a crate::sbom::Collector,
}

impl DiskWriter for InstallerDisk<'_> {
    fn disk_bytes(&self) -> u64 {
        self.plan.disk_bytes
    }

    fn write(
        &self,
        sink: &mut Sink<'_>,
        run: Run,
        final_before: &mut dyn FnMut(u64),
        progress: &mut dyn FnMut(&str),
    ) -> Result<Written, Error> {
        let (req, plan, os) = (self.req, self.plan, self.os);
        let time = self.extras.time;
        if run != Run::Rerun {
            progress("writing the partition table");
            let boot_code = match &os.bios_boot {
                Some(input) => Some(write_bios_boot(&req.profile, plan, input, sink)?),
                None => None,
            };
            write_table(req, plan, boot_code, sink)?;
        }
        let mut reports = Vec::new();
        for (i, placed) in plan.partitions.iter().enumerate() {
            if i + 1 == plan.partitions.len() {
                final_before(placed.start);
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
                Role::Boot => {
                    let boot = (self.config, os.boot.as_ref(), self.sbom);
                    write_boot(req, placed, region, boot, time)?
                }
                _ => write_ext4(req, placed, region, time, |sink| {
                    let label = &placed.spec.label;
                    let opts = SourceOptions {
                        clamp_time: Some(time),
                        force_owner: None,
                        max_file_size: Some(placed.size),
                    };
                    let skip = self.extras.paths();
                    let mut skipping = Skip {
                        inner: sink,
                        skip: &skip,
                    };
                    let mut tap =
                        crate::sbom::Tap::new(&mut skipping, self.sbom, crate::sbom::At::Rootfs);
                    feed_input(self.rootfs, &opts, &mut tap)
                        .map_err(|e| source_err(label, self.rootfs, e))?;
                    self.extras.feed(sink).map_err(|e| ext4_err(label, e))
                })?,
            };
            sink.end_partition().map_err(|source| Error::Output {
                path: req.output.clone(),
                op: "cannot stream the disk",
                source,
            })?;
            reports.push(report);
        }
        if self.profile.table == TableKind::Gpt {
            for r in &mut reports {
                r.part_guid = Some(crate::request::gpt_part_guid(req, &r.label).to_string());
            }
        }
        Ok((reports, None))
    }
}

/// The scratch directory the inner build writes into (beside the
/// output, `.NAME.kiln-installer`), removed with everything in it when
/// dropped.
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn create(path: PathBuf) -> Result<Self, Error> {
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                std::fs::remove_dir_all(&path).map_err(|source| Error::Output {
                    path: path.clone(),
                    op: "cannot remove the scratch directory of an earlier run",
                    source,
                })?
            }
            Ok(m) => {
                return Err(Error::NotRegular {
                    path,
                    what: if m.file_type().is_symlink() {
                        "a symbolic link"
                    } else {
                        "a non-directory"
                    },
                })
            }
            Err(_) => {}
        }
        std::fs::create_dir(&path).map_err(|source| Error::Output {
            path: path.clone(),
            op: "cannot create the scratch directory",
            source,
        })?;
        Ok(Self { path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Best effort: an interrupted run's leftovers are removed by the
        // next run over the same output (ScratchDir::create).
        if std::fs::remove_dir_all(&self.path).is_err() {
            tracing::warn!(path = %self.path.display(), "cannot remove the scratch directory");
        }
    }
}
