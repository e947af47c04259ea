//! `kiln flash IMAGE TARGET...`: gathers the facts the library's safety
//! checks need for every target (what it is, its size, whether it or a
//! partition of it is mounted or holds `/`, from `/proc/self/mountinfo`
//! and sysfs), opens the image (raw, qcow2, VMDK, VHD, or raw compressed
//! with xz/gz/zst), finds its bmap, and runs the flash engine on all
//! targets at once (the image read once), with a progress line per
//! target, a result per target and, at the end, the digest that was
//! verified: with a bmap, the image's sha256 listed in the `SHA256SUMS`
//! beside it (when that file also lists the bmap with the bmap's own
//! digest) or the bmap's digest, and the number of mapped ranges verified
//! on the medium; the whole image is hashed only without a bmap or with
//! `--sha256`.

use anyhow::{Context, Result};
use kiln_artifact::bmap::Bmap;
use kiln_artifact::compress::{Compression, Decoder};
use kiln_artifact::digest::Sha256Digest;
use kiln_artifact::sums::Sha256Sums;
use kiln_flash::{self as flash, mountinfo, safety, FlashOptions, HoleMode, ImageSource, Phase};
use kiln_units::SectorSize;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `kiln flash`.
#[derive(clap::Args)]
pub struct Args {
    /// The image.
    image: PathBuf,
    /// Block devices (or, with --force, regular files), written at the same time; the image is read once.
    #[arg(required = true, value_name = "TARGET")]
    targets: Vec<PathBuf>,
    /// The block map (default: IMAGE.bmap, or the uncompressed name's .bmap).
    #[arg(long)]
    bmap: Option<PathBuf>,
    /// Allow a regular file as the target, or a partition table made for another sector size than the device's (e.g. a 512-byte-sector image on a 4Kn disk).
    #[arg(long)]
    force: bool,
    /// Skip the read-back verification.
    #[arg(long)]
    no_verify: bool,
    /// Also compute the sha256 of the whole image and print it last (always done without a bmap; with one, the bmap's per-range digests are what is verified on the medium, and the digest printed comes from SHA256SUMS).
    #[arg(long)]
    sha256: bool,
    /// What to do with the image's holes on the target: skip, zero or discard (zeroing discard; zeros are written where the device cannot).
    #[arg(long, default_value = "skip", value_parser = parse_holes)]
    holes: HoleMode,
    /// Only verify the target against the bmap (e.g. a medium flashed earlier); write nothing.
    #[arg(long)]
    verify_only: bool,
    /// Follow a qcow2 overlay's backing file outside the overlay's directory (an absolute name, `..`, or a symlink leaving it); by default it is refused. It must be a regular file either way.
    #[arg(long)]
    allow_backing_outside: bool,
    /// Verify the image against its directory's signed SHA256SUMS with this public key first (as `kiln verify IMAGE`); refuse to write on any failure.
    #[arg(long, value_name = "PUB")]
    key: Option<PathBuf>,
    /// No progress output (the global `--quiet`).
    #[arg(skip)]
    quiet: bool,
}

fn split_dev(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (
        u32::try_from(major).unwrap_or(u32::MAX),
        u32::try_from(minor).unwrap_or(u32::MAX),
    )
}

/// The device and its partitions (and holders stacked on them) by number.
fn devices_of(dev: (u32, u32)) -> Vec<(u32, u32)> {
    let mut out = vec![dev];
    let sys = PathBuf::from(format!("/sys/dev/block/{}:{}", dev.0, dev.1));
    let Ok(canon) = std::fs::canonicalize(&sys) else {
        return out;
    };
    let mut dirs = vec![canon.clone()];
    if let Ok(rd) = std::fs::read_dir(&canon) {
        dirs.extend(
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.join("partition").exists()),
        );
    }
    for d in &dirs {
        let mut add = |p: &Path| {
            if let Ok(s) = std::fs::read_to_string(p.join("dev")) {
                if let Some((a, b)) = s.trim().split_once(':') {
                    if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                        if !out.contains(&(a, b)) {
                            out.push((a, b));
                        }
                    }
                }
            }
        };
        add(d);
        if let Ok(holders) = std::fs::read_dir(d.join("holders")) {
            for h in holders.flatten() {
                add(&h.path());
            }
        }
    }
    out
}

fn find_bmap(image: &Path) -> Option<PathBuf> {
    let s = image.to_string_lossy();
    let mut candidates = vec![PathBuf::from(format!("{s}.bmap"))];
    for ext in [".xz", ".gz", ".zst"] {
        if let Some(base) = s.strip_suffix(ext) {
            candidates.push(PathBuf::from(format!("{base}.bmap")));
        }
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// The size in bytes of the image at `path` (its bmap's, else the disk
/// image's virtual size); `None` for a compressed image without a bmap.
pub(crate) fn image_bytes(path: &Path) -> Result<Option<u64>> {
    let bmap = load_bmap(find_bmap(path).as_deref())?.map(|(b, _)| b);
    let image = FlashImage::open(path, bmap.as_ref(), kiln_vdisk::BackingOptions::new())?;
    Ok((image.bytes > 0).then_some(image.bytes))
}

/// `kiln flash`: with `--verify-only`, checks the targets against the
/// bmap; otherwise opens the image, gathers the facts of every target,
/// lets the library judge each (any refusal stops everything before a
/// byte is written), flashes them all at once and reports.
pub fn run(mut a: Args, quiet: bool) -> Result<()> {
    a.quiet = quiet;
    if let Some(key) = &a.key {
        crate::verify::before_flash(&a.image, key, a.bmap.as_deref(), quiet)?;
    }
    let bmap_path = a.bmap.clone().or_else(|| find_bmap(&a.image));
    let (bmap, bmap_sha256) = load_bmap(bmap_path.as_deref())?.unzip();
    if a.verify_only {
        return verify_only(&a, bmap);
    }
    let listed = match (&bmap_path, bmap_sha256) {
        (Some(p), Some(d)) => listed_digest(&a.image, p, d)?,
        _ => None,
    };
    let backing = kiln_vdisk::BackingOptions::new().allow_outside(a.allow_backing_outside);
    let image = FlashImage::open(&a.image, bmap.as_ref(), backing)?;
    let image_facts = image.facts()?;
    let mut seen = Vec::new();
    let mut jobs = Vec::with_capacity(a.targets.len());
    for t in &a.targets {
        let info = TargetInfo::gather(t)?;
        // A refused target is bad input (exit 2): nothing has been written.
        safety::check_target(&info.facts, &image_facts, a.force).map_err(|e| {
            crate::exit::input(anyhow::Error::new(e).context(format!("{}", t.display())))
        })?;
        let id = std::fs::metadata(t)
            .ok()
            .map(|m| (m.dev(), m.ino(), m.rdev()));
        if (id.is_some() && seen.contains(&id)) || a.targets.iter().filter(|x| *x == t).count() > 1
        {
            return Err(crate::exit::input(anyhow::anyhow!(
                "{}: given twice as a target",
                t.display()
            )));
        }
        seen.push(id);
        jobs.push((t.as_path(), info));
    }
    let mut files = Vec::with_capacity(jobs.len());
    for (t, info) in &jobs {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(info.facts.kind == safety::TargetKind::RegularFile)
            .truncate(false)
            .open(t)
            .with_context(|| format!("{}: cannot open for writing", t.display()))?;
        // The backup GPT is looked for at the target's sector size first.
        let sector = match info.facts.logical_sector.or(image_facts.table_sector) {
            Some(4096) => SectorSize::S4096,
            _ => SectorSize::S512,
        };
        files.push((file, sector));
    }
    let opts = FlashOptions::new()
        .holes(a.holes)
        .verify(!a.no_verify)
        .image_sha256(a.sha256 || bmap.is_none());
    let started = Instant::now();
    let names = if a.targets.len() > 1 {
        a.targets
            .iter()
            .map(|t| format!("{}: ", t.display()))
            .collect()
    } else {
        vec![String::new()]
    };
    let bars = crate::progress::Bars::new(names, a.quiet);
    let progress = |i: usize, p: flash::Progress| {
        let phase = match p.phase {
            Phase::Write => "writing",
            Phase::Verify => "verifying",
        };
        bars.report(i, phase, p.done_bytes, p.total_bytes);
    };
    let targets = files
        .iter_mut()
        .map(|(f, s)| (f as &mut (dyn flash::FlashTarget + Send), *s))
        .collect();
    let report = match &image.disk {
        Some(d) => flash::flash_many(
            ImageSource::Random(d),
            bmap.as_ref(),
            targets,
            &opts,
            &progress,
        )
        .map_err(anyhow::Error::new),
        None => (|| {
            let mut dec = Decoder::new(File::open(&a.image)?)?;
            let report = flash::flash_many(
                ImageSource::Stream(&mut dec),
                bmap.as_ref(),
                targets,
                &opts,
                &progress,
            )?;
            // With a bmap the stream stops at the image size, before the
            // compressed trailer: read it, so that its checksum (gzip
            // CRC-32 and length, xz check, zstd frame checksum) is verified
            // as well and trailing garbage is refused.
            std::io::copy(&mut dec, &mut std::io::sink())
                .with_context(|| format!("{}: corrupt compressed data", a.image.display()))?;
            Ok(report)
        })(),
    };
    bars.done();
    let report = report?;
    let digest = match (report.image_sha256, listed, bmap_sha256) {
        (Some(d), ..) => Verified::Image(d),
        (None, Some(d), _) => Verified::Listed(d),
        (None, None, Some(d)) => Verified::Bmap(d),
        // Not reached: the whole image is hashed when there is no bmap.
        (None, None, None) => return Err(anyhow::anyhow!("no digest of the image")),
    };
    let ranges = bmap.as_ref().map(|b| b.ranges().len());
    summary(&a, report, Final { digest, ranges }, started)
}

/// The digest printed on the final line.
enum Verified {
    /// The whole image's, computed while reading it.
    Image(Sha256Digest),
    /// The image's as listed in the `SHA256SUMS` that also lists its bmap
    /// with the bmap's digest.
    Listed(Sha256Digest),
    /// The bmap file's (no `SHA256SUMS` lists both).
    Bmap(Sha256Digest),
}

/// What the final line says: the digest and, with a bmap, the number of
/// mapped ranges each target was verified against.
struct Final {
    digest: Verified,
    ranges: Option<usize>,
}

/// The image's sha256 from the `SHA256SUMS` in the image's directory,
/// when it lists both the image and its bmap (under their names relative
/// to that directory) and the bmap's digest matches `bmap_sha256`; a
/// listed bmap whose digest differs is refused (exit 2) before anything
/// is written.
fn listed_digest(
    image: &Path,
    bmap: &Path,
    bmap_sha256: Sha256Digest,
) -> Result<Option<Sha256Digest>> {
    let dir = kiln_units::parent_dir(image);
    let sums_path = dir.join("SHA256SUMS");
    let text = match std::fs::read_to_string(&sums_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(crate::exit::input(
                anyhow::Error::new(e).context(format!("{}: cannot read", sums_path.display())),
            ))
        }
    };
    let sums = Sha256Sums::parse(&text).map_err(|e| {
        crate::exit::input(anyhow::Error::new(e).context(format!("{}", sums_path.display())))
    })?;
    let name = |p: &Path| {
        (kiln_units::parent_dir(p) == dir)
            .then(|| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .flatten()
    };
    let Some(listed_bmap) = name(bmap).and_then(|n| sums.get(&n).copied()) else {
        return Ok(None);
    };
    if listed_bmap != bmap_sha256 {
        return Err(crate::exit::input(anyhow::anyhow!(
            "{}: sha256 {bmap_sha256} differs from {} ({listed_bmap}); refusing to flash",
            bmap.display(),
            sums_path.display()
        )));
    }
    Ok(name(image).and_then(|n| sums.get(&n).copied()))
}

/// clap's parser for `--holes`.
fn parse_holes(holes: &str) -> Result<HoleMode, String> {
    match holes {
        "skip" => Ok(HoleMode::Skip),
        "zero" => Ok(HoleMode::Zero),
        "discard" => Ok(HoleMode::Discard),
        other => Err(format!("--holes {other:?}: use skip, zero or discard")),
    }
}

/// The bmap at `path` and the sha256 of its file.
fn load_bmap(path: Option<&Path>) -> Result<Option<(Bmap, Sha256Digest)>> {
    let Some(p) = path else {
        return Ok(None);
    };
    let f = File::open(p).with_context(|| format!("{}: cannot open bmap", p.display()))?;
    let mut bytes = Vec::new();
    f.take(kiln_artifact::bmap::BMAP_MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{}: cannot read bmap", p.display()))?;
    let bmap = Bmap::read_from(bytes.as_slice(), kiln_artifact::bmap::BMAP_MAX_FILE_BYTES)
        .with_context(|| format!("{}: invalid bmap", p.display()))?;
    Ok(Some((bmap, Sha256Digest::of(&bytes))))
}

/// `--verify-only`: reads every target back against the bmap.
fn verify_only(a: &Args, bmap: Option<Bmap>) -> Result<()> {
    let bmap = bmap.ok_or_else(|| {
        crate::exit::input(anyhow::anyhow!(
            "--verify-only needs a bmap for {} (--bmap)",
            a.image.display()
        ))
    })?;
    for t in &a.targets {
        let target = File::open(t).with_context(|| format!("{}: cannot open", t.display()))?;
        let n = flash::verify_target(&target, &bmap, &mut |_| {})
            .with_context(|| format!("{} does not match {}", t.display(), a.image.display()))?;
        if !a.quiet {
            eprintln!(
                "kiln: verified {n} mapped bytes of {} against the bmap",
                t.display()
            );
        }
    }
    Ok(())
}

/// The image to flash: a disk image read at random (raw, qcow2, VMDK,
/// VHD), or a compressed raw image read as a stream (`disk` is `None`).
struct FlashImage<'a> {
    path: &'a Path,
    disk: Option<kiln_vdisk::Image<File>>,
    /// Size in bytes (the bmap's, else the disk's; 0 for a stream
    /// without a bmap).
    bytes: u64,
}

impl<'a> FlashImage<'a> {
    fn open(
        path: &'a Path,
        bmap: Option<&Bmap>,
        backing: kiln_vdisk::BackingOptions,
    ) -> Result<Self> {
        let file =
            File::open(path).with_context(|| format!("{}: cannot open image", path.display()))?;
        let mut head = [0u8; 8];
        let n = (&file)
            .read(&mut head)
            .with_context(|| format!("{}: cannot read image", path.display()))?;
        let disk = if Compression::detect(&head[..n]) == Compression::None {
            Some(
                kiln_vdisk::open_with_backing(file, kiln_units::parent_dir(path), backing)
                    .with_context(|| format!("{}: not a readable image", path.display()))?,
            )
        } else {
            None
        };
        let bytes = match (bmap, &disk) {
            (Some(b), _) => b.image_size(),
            (None, Some(d)) => kiln_vdisk::VirtualDisk::virtual_size(d),
            (None, None) => 0,
        };
        Ok(Self { path, disk, bytes })
    }

    /// Its size and the sector size of its partition table, from its
    /// first bytes.
    fn facts(&self) -> Result<safety::ImageFacts> {
        let mut head = Vec::with_capacity(safety::TABLE_HEAD_BYTES);
        match &self.disk {
            Some(d) => {
                let n = self.bytes.min(safety::TABLE_HEAD_BYTES as u64) as usize;
                head.resize(n, 0);
                kiln_units::ReadAt::read_exact_at(d, &mut head, 0)
            }
            None => Decoder::new(File::open(self.path)?)?
                .take(safety::TABLE_HEAD_BYTES as u64)
                .read_to_end(&mut head)
                .map(drop),
        }
        .with_context(|| format!("{}: cannot read image", self.path.display()))?;
        Ok(safety::ImageFacts {
            bytes: self.bytes,
            table_sector: safety::table_sector_size(&head, self.bytes),
        })
    }
}

/// Facts about the target, gathered here (stat, sysfs, mountinfo,
/// `BLKSSZGET`), judged by the library.
struct TargetInfo {
    facts: safety::TargetFacts,
}

impl TargetInfo {
    fn gather(target: &Path) -> Result<Self> {
        let md = std::fs::metadata(target);
        let (kind, size, devs, sector) = match &md {
            Ok(m) if m.file_type().is_block_device() => {
                let mut f = File::open(target)
                    .with_context(|| format!("{}: cannot open", target.display()))?;
                let size = std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0))?;
                let sector = rustix::fs::ioctl_blksszget(&f).with_context(|| {
                    format!("{}: cannot read the logical sector size", target.display())
                })?;
                (
                    safety::TargetKind::BlockDevice,
                    size,
                    devices_of(split_dev(m.rdev())),
                    Some(sector),
                )
            }
            Ok(m) if m.is_file() => (safety::TargetKind::RegularFile, m.len(), vec![], None),
            Ok(_) => (safety::TargetKind::Other, 0, vec![], None),
            Err(_) => (safety::TargetKind::RegularFile, 0, vec![], None),
        };
        let mounts = mountinfo::parse_mountinfo(
            &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
        )?;
        Ok(Self {
            facts: safety::TargetFacts {
                logical_sector: sector,
                ..safety::TargetFacts::from_mountinfo(kind, size, &devs, &mounts)
            },
        })
    }
}

/// The closing lines: per target, a discard it could not do and what was
/// written and verified, or why it failed; then which targets succeeded
/// and, last, the digest verified ([`Final`]). With one target its error
/// is returned as it is; with several, an error naming the failed ones.
fn summary(a: &Args, report: flash::ManyReport, last: Final, started: Instant) -> Result<()> {
    let with_bmap = last.ranges.is_some();
    let secs = started.elapsed().as_secs_f64();
    let mut failed = Vec::new();
    let single = a.targets.len() == 1;
    for (t, r) in a.targets.iter().zip(report.results) {
        let report = match r {
            Ok(r) => r,
            Err(e) if single => return Err(e.into()),
            Err(e) => {
                eprintln!("kiln: {}: FAILED: {:#}", t.display(), anyhow::Error::new(e));
                failed.push(t.display().to_string());
                continue;
            }
        };
        if report.discard_unsupported {
            eprintln!(
                "kiln: {} cannot discard with zeros; its holes were written with zeros",
                t.display()
            );
        }
        if !a.quiet {
            eprintln!(
                "kiln: {}: flashed {} bytes ({} mapped written, {} verified{}) in {secs:.1}s{}",
                t.display(),
                report.image_bytes,
                report.written_bytes,
                report.verified_bytes,
                if with_bmap { ", bmap" } else { "" },
                if report.gpt.is_some() {
                    "; backup GPT moved to the end of the target"
                } else {
                    ""
                }
            );
        }
    }
    let ok: Vec<String> = a
        .targets
        .iter()
        .map(|t| t.display().to_string())
        .filter(|t| !failed.contains(t))
        .collect();
    if !a.quiet && !ok.is_empty() {
        let on = if single {
            "the target".to_owned()
        } else if failed.is_empty() {
            format!("{} targets", ok.len())
        } else {
            ok.join(", ")
        };
        let digest = match last.digest {
            Verified::Image(d) => format!("image sha256 {d}"),
            Verified::Listed(d) => {
                format!("image sha256 {d} (from SHA256SUMS, which lists its bmap)")
            }
            Verified::Bmap(d) => format!("bmap sha256 {d}"),
        };
        let what = match (last.ranges, a.no_verify) {
            (_, true) => "written, not verified, on".to_owned(),
            (Some(n), false) => format!("written and {n} mapped ranges verified on"),
            (None, false) => "written and verified on".to_owned(),
        };
        eprintln!("kiln: {digest} ({} bytes) {what} {on}", report.image_bytes);
    }
    if !failed.is_empty() {
        return Err(anyhow::anyhow!(
            "{} of {} targets failed ({}); succeeded: {}",
            failed.len(),
            a.targets.len(),
            failed.join(", "),
            if ok.is_empty() {
                "none".to_owned()
            } else {
                ok.join(", ")
            }
        ));
    }
    Ok(())
}
