//! A written disk delivered: positionally into one file (the raw image,
//! or a qcow2/VHD written in place) that every output is made from, or
//! streamed into the sequential outputs with no image file; then the
//! manifest and the checksums. Decided once, from the [`Delivery`].

use crate::app::App;
use crate::deliver::format::Route;
use crate::deliver::{deliver, write_sums, Delivered, Delivery, DiskFormat, Source, Temps};
use crate::manifest::BaseFacts;
use crate::report::{BuildReport, PartitionReport};
use crate::request::BuildRequest;
use crate::sink::Sink;
use crate::Error;
use kiln_artifact::digest::Sha256Digest;
use std::fs::File;
use std::path::{Path, PathBuf};

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

/// The source of a disk, writing it whole into a [`Sink`]: a fresh
/// disk's partition table and partitions, or a base build's edited base
/// around its rebuilt partition. The same for delivery either way.
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
    pub(crate) base: Option<&'a BaseFacts>,
    /// What the SBOMs list, gathered while writing (`None`: base mode).
    pub(crate) sbom: Option<&'a crate::sbom::Collector>,
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
    let in_place = match Route::of(delivery) {
        Route::Streamed => return build_streamed(to, disk, report, progress),
        Route::Positional(in_place) => in_place,
    };
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
    finish(to, tmp, report(partitions), feed_report.as_ref(), progress)
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
    let route = Route::of(delivery);
    let raw = route.raw_file();
    let in_place = match route {
        Route::Streamed => None,
        Route::Positional(f) => f,
    };
    if raw {
        image_file(req, in_place).map(Some)
    } else {
        Ok(None)
    }
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
    let outputs = Outputs {
        artifacts,
        image_digest,
        inputs,
        temps,
    };
    report.artifacts = conclude(to, &mut report, outputs, feed_report.as_ref())?;
    Ok(report)
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

/// Delivery, the manifest and the checksums of a written raw image in
/// `tmp`, then every output renamed into place (`report` is completed with
/// the image digest and the artifacts).
fn finish(
    to: &Deliver<'_>,
    mut tmp: TempImage,
    mut report: BuildReport,
    feed: Option<&kiln_oci::FeedReport>,
    progress: &mut dyn FnMut(&str),
) -> Result<BuildReport, Error> {
    let (req, base, app) = (to.req, to.base, to.app.zip(feed));
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
    let delivery = to.delivery;
    progress(&delivering(delivery));
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
        let delivered = deliver(source, out, delivery, &mut temps, prefix);
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
    let outputs = Outputs {
        artifacts,
        image_digest,
        inputs,
        temps,
    };
    let artifacts = conclude(to, &mut report, outputs, feed)?;
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

/// What a delivery produced, before the manifest and the checksums.
struct Outputs {
    /// Every delivered file so far.
    artifacts: Vec<Delivered>,
    /// sha256 of the whole raw image.
    image_digest: Sha256Digest,
    /// The manifest's input digests.
    inputs: Vec<kiln_artifact::manifest::Input>,
    /// The temporary outputs, renamed into place at the end.
    temps: Temps,
}

/// The manifest and `SHA256SUMS` of a delivered build, then every
/// temporary output renamed into place; returns all delivered files.
fn conclude(
    to: &Deliver<'_>,
    report: &mut BuildReport,
    outputs: Outputs,
    feed: Option<&kiln_oci::FeedReport>,
) -> Result<Vec<Delivered>, Error> {
    let Outputs {
        mut artifacts,
        image_digest,
        inputs,
        mut temps,
    } = outputs;
    let req = to.req;
    let out = &req.output;
    let dir = kiln_units::parent_dir(out);
    report.image_sha256 = image_digest.to_hex();
    let base = req
        .base
        .clone()
        .or_else(|| req.recipe.base.as_ref().map(|b| b.image.path.clone()));
    let d = crate::sbom::Delivering {
        recipe: &req.recipe,
        profile: &req.profile,
        output: out,
        timestamp: req.timestamp,
        base: base.as_deref(),
        store: to.app.zip(feed).map(|a| &a.0.store),
        image: &image_digest,
        config: &report.config,
    };
    for (path, bytes, format, kind) in crate::sbom::documents(&d, to.sbom)? {
        temps.write(&path, &bytes, "cannot write the SBOM")?;
        let mut a = Delivered::file(path, kind, &bytes);
        a.artifact_format = Some(format);
        artifacts.push(a);
    }
    let manifest = crate::manifest::manifest_json(&crate::manifest::ManifestFacts {
        profile: &req.profile,
        recipe: &req.recipe,
        source_date_epoch: req.timestamp,
        report,
        image_sha256: image_digest,
        disk_id: to.disk_id.clone(),
        app: to.app.zip(feed),
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
