//! Steps 3 to 5 of the base build (see [`super`]): the data partition of
//! a disk preloaded; a flasher's inner image preloaded and its root
//! partition rebuilt around it.

use super::ctx::{base_err, base_io, ext4_err, old_err, out_err, role, Ctx, OldFs, Scratch};
use super::merge::{check_apps, merge_err, MergedData, OldStore, Replace};
use super::rebuilt::{rebuild, require_last, set_aside, Deliver, NewPart};
use crate::content::tp;
use crate::datatree::Pass;
use crate::deliver::disk::{DiskWriter, Run};
use crate::request::{ext4_options, swapfile};
use crate::sink::Sink;
use crate::sizing::{self, DataNeed, OldData};
use crate::work::{At, Cow};
use crate::Error;
use kiln_base::{Layout, Role as BaseRole};
use kiln_ext4::{Ext4Estimator, Ext4Reader, Ext4Writer, Visit};
use kiln_recipe::Role;
use kiln_tree::TreePath;
use kiln_units::SubRegion;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Headroom left in a flasher's root filesystem after the inner image
/// grew.
pub(super) const FLASHER_ROOT_HEADROOM: u64 = 16 << 20;

/// Steps 3 to 5 of the module doc on the disk `work`: the data
/// partition's new content sized, the table resized, the boot
/// partition's config merged; then `deliver` writes the disk, with the
/// data partition rebuilt into wherever it goes.
pub(super) fn preload_disk<T>(
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
        .map_or_else(|| tp("docker"), |a| a.store_path.clone());
    let existing = existing_store(ctx, &old, &store_path, &data_label)?;
    // The SBOM's store tap: how many components down the store is.
    let depth = store_path.depth();
    let merged = merged_data(ctx, &old, existing.as_ref(), store_path, &data_label)?;

    // 4. Size the new data filesystem.
    progress(&format!("sizing {data_label}"));
    let data_uuid = old.info().uuid;
    let opts = |size| ext4_options(req, &data_label, Role::Data, size, time).uuid(data_uuid);
    let mut est = Ext4Estimator::new();
    merged
        .feed(&mut est, Pass::Size)
        .map_err(|e| merge_err(&data_label, e))?;
    let min = est
        .min_size_bytes(&opts(0), recipe.data.headroom.bytes())
        .map_err(ext4_err(&data_label))?;
    let align = profile.alignment.max(4096);
    let min = kiln_units::align_up(min, align).unwrap_or(min);
    let medium = sizing::medium(profile, req.medium.as_deref())?;
    let new_size = DataNeed {
        profile,
        policy: req.recipe.data.size,
        medium: medium.as_ref(),
        label: &data_label,
        min,
    }
    .rebuilt(
        OldData {
            start_bytes: data.start_bytes,
            size_bytes: data.size_bytes,
        },
        gpt,
        align,
    )?;
    let write = |region: SubRegion<&mut Sink<'_>>, run: Run| {
        let mut w = Ext4Writer::new(region, opts(new_size)).map_err(ext4_err(&data_label))?;
        // A streamed build's dry run leaves the layer digests to the
        // rerun.
        let pass = if run == Run::Dry {
            Pass::Size
        } else {
            Pass::Write
        };
        let mut tap = crate::sbom::Tap::new(&mut w, ctx.sbom, crate::sbom::At::Store(depth));
        let feed = merged
            .feed(&mut tap, pass)
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

/// A flasher (installer) image: the OS image it carries at
/// `/opt/<name>.img` in `flash-rootA` gets the preload (steps 3 to 5 on a
/// scratch copy of it, written out to another scratch file: the new
/// inner image is file content), then `flash-rootA` is rebuilt with the
/// new inner image (every other file kept) and grown, and `flash-boot`'s
/// config.json is merged as well (the installer copies it onto the
/// device). `flash-rootA` must be the last partition.
pub(super) fn preload_flasher<T>(
    ctx: &Ctx<'_>,
    work: &Cow,
    layout: &Layout,
    scratch: &dyn Fn(&str) -> Result<Scratch, Error>,
    progress: &mut dyn FnMut(&str),
    deliver: &mut Deliver<'_, T>,
) -> Result<T, Error> {
    let (req, base, time) = (ctx.req, ctx.base, ctx.time);
    let PreloadedInner {
        path: inner_path,
        file: new_inner,
        size: inner_size,
        feed: inner_feed,
        config: inner_config,
    } = preload_inner(ctx, work, layout, scratch, progress)?;

    // flash-rootA, rebuilt around the new inner image.
    let root = role(layout, BaseRole::RootA, base)?.clone();
    let label = root.label.clone().unwrap_or_else(|| "flash-rootA".into());
    require_last(layout, &root, base, &label)?;
    let inner_path =
        TreePath::parse(inner_path.trim_start_matches('/').as_bytes()).map_err(|e| {
            Error::Image {
                path: base.to_path_buf(),
                reason: format!("{inner_path}: {e}"),
            }
        })?;
    let aside = set_aside(ctx, work, &root, scratch)?;
    let (from, at) = aside
        .as_ref()
        .map_or((work.base(), root.start_bytes), |s| (&s.file, 0));
    let old =
        Ext4Reader::open(SubRegion::new(from, at, root.size_bytes)).map_err(old_err(&label))?;
    let uuid = old.info().uuid;
    let opts = |size| ext4_options(req, &label, Role::RootA, size, time).uuid(uuid);
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

/// The engine store the base's data partition `old` holds, scanned for
/// the merge (`None` when the recipe preloads no app).
fn existing_store(
    ctx: &Ctx<'_>,
    old: &OldFs<'_>,
    store_path: &TreePath,
    data_label: &str,
) -> Result<Option<kiln_oci::ExistingStore>, Error> {
    let Some(a) = ctx.app else {
        return Ok(None);
    };
    check_apps(ctx.base, old, a, data_label)?;
    let view = OldStore {
        fs: old,
        prefix: store_path.clone(),
    };
    kiln_oci::ExistingStore::scan(&view)
        .map(Some)
        .map_err(|source| Error::App {
            partition: format!("{data_label} (base)"),
            source: Box::new(source),
        })
}

/// The new data partition's tree over the old one: what kiln replaces
/// (the swapfile, apps.json, the store's merged files; lost+found is the
/// new filesystem's own) dropped from the old tree, and the directories
/// the app needs that the old tree lacks.
fn merged_data<'a>(
    ctx: &Ctx<'a>,
    old: &'a OldFs<'a>,
    existing: Option<&'a kiln_oci::ExistingStore>,
    store_path: TreePath,
    data_label: &str,
) -> Result<MergedData<'a>, Error> {
    let app = ctx.app;
    let swap = swapfile(ctx.req, data_label)?;
    let mut drop: BTreeSet<TreePath> = BTreeSet::new();
    drop.insert(tp("lost+found"));
    if let Some((p, _, _)) = &swap {
        drop.insert(p.clone());
    }
    let mut new_dirs = Vec::new();
    if app.is_some() {
        drop.insert(tp("apps.json"));
        for skip in kiln_oci::ExistingStore::SKIP_PATHS {
            let mut p = store_path.clone();
            for c in skip.split('/') {
                p = p.join(c.as_bytes()).map_err(|e| Error::Layout {
                    partition: data_label.to_string(),
                    reason: e.to_string(),
                })?;
            }
            drop.insert(p);
        }
        for (d, mode) in [(tp("resin-data"), 0o755), (store_path, 0o710)] {
            if old.lookup(&d).map_err(old_err(data_label))?.is_none() {
                new_dirs.push((d, mode));
            }
        }
    }
    Ok(MergedData {
        swap,
        old,
        drop,
        app: app.zip(existing),
        new_dirs,
        time: ctx.time,
    })
}

/// A flasher's inner OS image, preloaded and written out whole to a
/// scratch file.
struct PreloadedInner {
    /// Its path in the flasher's root filesystem.
    path: String,
    /// The preloaded image.
    file: Scratch,
    /// Its size in bytes.
    size: u64,
    /// The preload's report.
    feed: Option<kiln_oci::FeedReport>,
    /// Its merged config.json.
    config: serde_json::Value,
}

/// Extracts the OS image a flasher carries and runs steps 3 to 5 on it
/// (a scratch copy, preloaded into another scratch file).
fn preload_inner(
    ctx: &Ctx<'_>,
    work: &Cow,
    layout: &Layout,
    scratch: &dyn Fn(&str) -> Result<Scratch, Error>,
    progress: &mut dyn FnMut(&str),
) -> Result<PreloadedInner, Error> {
    let base = ctx.base;
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
    Ok(PreloadedInner {
        path: inner.path,
        file: new_inner,
        size: inner_size,
        feed: inner_feed,
        config: inner_config,
    })
}
