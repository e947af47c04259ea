//! A base disk rebuilt: the working disk cut before its last partition
//! and regrown (table resized, backup GPT moved), the boot partition
//! merged, and the [`DiskWriter`] that writes it with the last partition
//! rebuilt wherever delivery puts it.

use super::ctx::{out_err, role, Ctx, Scratch};
use crate::content::tp;
use crate::deliver::disk::{DiskWriter, Run, Written};
use crate::report::{human, PartitionReport};
use crate::request::boot_generated;
use crate::sink::Sink;
use crate::work::{At, Cow, Workspace};
use crate::Error;
use kiln_base::{BasePartition, Layout, Role as BaseRole};
use kiln_units::{ReadAt, SubRegion, WriteAt};
use std::path::{Path, PathBuf};

/// Writes the rebuilt partition into its region of the output, on the
/// given run; returns the writer's report and the preload's.
pub(super) type WritePart<'a> = dyn Fn(
        SubRegion<&mut Sink<'_>>,
        Run,
    ) -> Result<(kiln_ext4::Ext4Report, Option<kiln_oci::FeedReport>), Error>
    + 'a;

/// Writes a [`Rebuilt`] disk wherever it goes (with the progress
/// callback), returning what the caller needs of it.
pub(super) type Deliver<'a, T> =
    dyn FnMut(&Rebuilt<'_>, &mut dyn FnMut(&str)) -> Result<T, Error> + 'a;

/// A base disk ready to be written: the working disk (table resized,
/// boot partition merged) and its last partition, rebuilt by
/// `write_part` wherever the disk goes.
pub(super) struct Rebuilt<'a> {
    /// The output (named by write errors).
    pub(super) out: &'a Path,
    pub(super) work: &'a Cow,
    pub(super) layout: &'a Layout,
    pub(super) table: kiln_part::PartitionTable,
    pub(super) disk_id: String,
    pub(super) disk_bytes: u64,
    pub(super) part: NewPart<'a>,
    pub(super) boot: (u32, crate::bootedit::BootEditReport),
    /// The merged config.json reported (the inner image's, on a
    /// flasher).
    pub(super) config: serde_json::Value,
    /// Checked once the disk is written: a raw base read in place must
    /// not have changed meanwhile.
    pub(super) unchanged: &'a dyn Fn() -> Result<(), Error>,
    /// The base lies in the (raw) output already: only the edits are
    /// written before the rebuilt partition.
    pub(super) in_output: bool,
}

/// The (last) partition a base build rebuilds.
pub(super) struct NewPart<'a> {
    /// As the base has it.
    pub(super) old: &'a BasePartition,
    pub(super) label: &'a str,
    /// Its filesystem UUID (kept from the base).
    pub(super) uuid: [u8; 16],
    /// Its new size in bytes.
    pub(super) size: u64,
    pub(super) write: &'a WritePart<'a>,
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
        progress(&format!("writing {} ({})", part.label, human(size)));
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
pub(super) fn copy_nonzero<R: ReadAt + ?Sized, W: WriteAt + ?Sized>(
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
pub(super) fn copy_edits(
    work: &Cow,
    from: u64,
    to: u64,
    sink: &mut Sink<'_>,
) -> std::io::Result<()> {
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
pub(super) fn set_aside(
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

/// Step 5 of the module doc and the delivery: the working disk cut
/// before `part` and regrown for its new size (table resized), the boot
/// partition merged, then `deliver` writes the disk. `config` is the
/// merged config.json to report (`None`: the boot partition's).
pub(super) fn rebuild<T>(
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
        human(part.old.size_bytes),
        human(part.size)
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
pub(super) fn require_last(
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
pub(super) fn regrow(
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
pub(super) struct Rewritten {
    pub(super) number: u32,
    pub(super) fs: &'static str,
    pub(super) fs_id: String,
    pub(super) used: u64,
}

/// The report of every partition, from the table as it is now.
pub(super) fn reports(
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

/// Merges the recipe's config.json over the boot partition's and adds
/// the recipe's NetworkManager profiles and boot files.
pub(super) fn edit_boot(
    ctx: &Ctx<'_>,
    work: &Cow,
    boot: &BasePartition,
    progress: &mut dyn FnMut(&str),
) -> Result<crate::bootedit::BootEditReport, Error> {
    progress(&format!(
        "merging config.json into {}",
        boot.label.as_deref().unwrap_or("the boot partition")
    ));
    let generated = boot_generated(&ctx.req.recipe, ctx.config)?;
    let config_path = tp("config.json");
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

pub(super) fn disk_id(table: &kiln_part::PartitionTable) -> String {
    match &table.scheme {
        kiln_part::Scheme::Mbr { disk_signature } => format!("0x{disk_signature:08x}"),
        kiln_part::Scheme::Gpt { disk_guid, .. } => disk_guid.to_string(),
    }
}

pub(super) fn fs_kind(p: &BasePartition) -> &'static str {
    match p.fs {
        kiln_base::FsType::Fat => "fat",
        kiln_base::FsType::Ext4 => "ext4",
        _ => "other",
    }
}
