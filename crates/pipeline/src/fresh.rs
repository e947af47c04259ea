//! A fresh disk: the partition table and every partition written by
//! kiln (FAT boot partition with the generated files, ext4 root
//! filesystems, the data partition with the swapfile and the app), sized
//! by [`crate::sizing`] and delivered by [`crate::deliver`].

use crate::app::prepare_app;
use crate::content::{feed_generated, feed_input, tp, Generated, Skip};
use crate::datatree::{data_err, DataTree};
use crate::deliver::disk::{deliver_disk, Deliver, DiskWriter, Run, Written};
use crate::plan::{Placed, Plan};
use crate::progress::{Counted, Meter};
use crate::report::{fs_name, human, BuildReport, PartitionReport};
use crate::request::{
    boot_config, boot_generated, delivery_for, ext4_options, gpt_part_guid, recipe_invalid,
    swapfile, BuildRequest,
};
use crate::sink::Sink;
use crate::sizing::{self, DataNeed};
use crate::Error;
use kiln_ext4::{Ext4Estimator, Ext4Writer};
use kiln_fat::{FatOptions, FatType, FatWriter};
use kiln_part::{Extended, Gpt, GptPartition, Mbr, MbrPartition, MbrType};
use kiln_recipe::{BoardProfile, FsKind, ResolvedConfig, Role, SwapActivation, TableKind};
use kiln_tree::{
    Content, Entry, EntryKind, Metadata, SourceError, SourceOptions, Timestamp, TreePath, TreeSink,
};
use kiln_units::SubRegion;
use std::collections::BTreeSet;

/// Runs a build of a fresh disk: every partition written by kiln.
pub(crate) fn build_fresh(
    req: &BuildRequest<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<BuildReport, Error> {
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
    let (min_data, data_file_bytes) = min_data_size(req, &data_tree, &data_spec.label, progress)?;
    let medium = sizing::medium(profile, req.medium.as_deref())?;
    let data_size = DataNeed {
        profile,
        policy: recipe.data.size,
        medium: medium.as_ref(),
        label: &data_spec.label,
        min: min_data,
    }
    .fresh()?;
    let plan = Plan::compute(profile, data_size)?;
    let fits = sizing::fits(profile, plan.disk_bytes);
    if let Some(m) = medium.as_ref().or(profile.media.last()) {
        sizing::check_medium(m, plan.disk_bytes, || {
            if fits.is_empty() {
                format!("no medium of board {} is large enough", profile.name)
            } else {
                format!("it fits {}", fits.join(", "))
            }
        })?;
    }

    let out = &req.output;
    let delivery = delivery_for(req)?;
    let sbom = crate::sbom::Collector::default();
    let disk = Disk {
        req,
        plan: &plan,
        os,
        rootfs,
        config: &config,
        data_tree: &data_tree,
        data_file_bytes,
        time,
        sbom: &sbom,
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
        sbom: Some(&sbom),
    };
    deliver_disk(&to, &disk, None, report, progress)
}

/// The smallest data partition (bytes, aligned) that holds `tree` and
/// the recipe's headroom, and the file bytes fed into it (the writing
/// pass's progress total).
fn min_data_size(
    req: &BuildRequest<'_>,
    tree: &DataTree,
    label: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<(u64, u64), Error> {
    let mut est = Ext4Estimator::new();
    progress("sizing the data partition");
    let step = if tree.app.is_some() {
        "inflating the application layers"
    } else {
        "sizing the data partition"
    };
    let meter = Meter::new(step.into(), None, req.on_bytes);
    let workers = usize::try_from(req.threads.max(1)).unwrap_or(1);
    tree.size(&mut est, workers, &meter)
        .map_err(|e| data_err(label, e))?;
    let time = Timestamp::new(req.timestamp, 0);
    let min_data = est
        .min_size_bytes(
            &ext4_options(req, label, Role::Data, 0, time),
            req.recipe.data.headroom.bytes(),
        )
        .map_err(|source| Error::Ext4 {
            partition: label.to_string(),
            source,
        })?;
    // Its per-directory tables are no longer needed: free them before the
    // write pass and delivery (peak memory is reached there).
    drop(est);
    let align = req.profile.alignment;
    let min_data = kiln_units::align_up(min_data, align).unwrap_or(min_data);
    Ok((min_data, meter.done_bytes()))
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

pub(crate) fn ext4_err(label: &str, source: kiln_ext4::Error) -> Error {
    Error::Ext4 {
        partition: label.to_string(),
        source,
    }
}

/// What the partition writers of a normal build read.
struct Disk<'a> {
    req: &'a BuildRequest<'a>,
    plan: &'a Plan,
    os: &'a kiln_recipe::OsSpec,
    rootfs: &'a kiln_recipe::InputPath,
    config: &'a ResolvedConfig,
    data_tree: &'a DataTree,
    /// File bytes of the data partition (its writing progress total).
    data_file_bytes: u64,
    time: Timestamp,
    sbom: &'a crate::sbom::Collector,
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
                Role::Boot => {
                    let boot = (self.config, os.boot.as_ref(), self.sbom);
                    write_boot(req, placed, region, boot, time)?
                }
                Role::RootA => write_ext4(req, placed, region, time, |sink| {
                    let label = &placed.spec.label;
                    let opts = SourceOptions {
                        clamp_time: Some(time),
                        force_owner: None,
                        max_file_size: Some(placed.size),
                    };
                    let mut sink = crate::sbom::Tap::new(sink, self.sbom, crate::sbom::At::Rootfs);
                    let meter = Meter::new(format!("writing {label}"), None, req.on_bytes);
                    feed_input(rootfs, &opts, &mut Counted::new(&mut sink, &meter))
                        .map_err(|e| src_err(label, rootfs, e))?;
                    let sink = sink.into_inner();
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
                    let depth = self
                        .data_tree
                        .app
                        .as_ref()
                        .map_or(0, |a| a.store_path.depth());
                    let at = crate::sbom::At::Store(depth);
                    let meter = Meter::new(
                        format!("writing {}", placed.spec.label),
                        Some(self.data_file_bytes),
                        req.on_bytes,
                    );
                    let tap = crate::sbom::Tap::new(sink, self.sbom, at);
                    feed_report = self
                        .data_tree
                        .feed(&mut Counted::new(tap, &meter), run != Run::Dry)
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

pub(crate) fn write_ext4<F>(
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

/// The boot partition: the boot files, then the generated ones
/// (`boot`: the config, the boot files' input, the SBOM's collector).
pub(crate) fn write_boot(
    req: &BuildRequest<'_>,
    placed: &Placed,
    region: SubRegion<&mut Sink<'_>>,
    boot: (
        &ResolvedConfig,
        Option<&kiln_recipe::InputPath>,
        &crate::sbom::Collector,
    ),
    time: Timestamp,
) -> Result<PartitionReport, Error> {
    let (config, boot_src, sbom) = boot;
    let label = placed.spec.label.clone();
    let tap = |role| crate::sbom::At::Boot(label.clone(), role);
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
        let mut filtered =
            crate::sbom::Tap::new(&mut filtered, sbom, tap(kiln_sbom::FileRole::Boot));
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
    let mut tapped = crate::sbom::Tap::new(&mut w, sbom, tap(kiln_sbom::FileRole::Config));
    feed_generated(&generated, time, &mut tapped).map_err(fat_err)?;
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

/// BIOS boot (GRUB's boot.img + core.img, as balenaOS and grub-install
/// lay it out on MBR disks): returns the 440 bytes of MBR boot code and
/// writes core.img from LBA 1 up to (not into) the first partition.
pub(crate) fn write_bios_boot(
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

pub(crate) fn write_table(
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
