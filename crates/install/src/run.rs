//! The install itself: ask on the console (unless unattended), write the
//! inner image with the `kiln-flash` engine (bmap: mapped blocks only,
//! read-back verify), then put the installer's `config.json` into the
//! target's boot partition.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use kiln_artifact::bmap::Bmap;
use kiln_flash::{FlashOptions, FlashReport, FlashTarget, ImageSource};
use kiln_tree::Timestamp;
use kiln_units::{ReadAt, SubRegion};

use crate::select::{choose, guard_partitions, Candidate};
use crate::{Error, Result, Settings};

/// The console `kiln install` talks to.
pub struct Console<'a> {
    /// Answers typed by the operator.
    pub input: &'a mut dyn BufRead,
    /// What the operator reads.
    pub output: &'a mut dyn Write,
}

impl Console<'_> {
    fn say(&mut self, line: &str) -> Result<()> {
        writeln!(self.output, "{line}")
            .and_then(|()| self.output.flush())
            .map_err(Error::Console)
    }

    fn ask(&mut self, question: &str) -> Result<String> {
        write!(self.output, "{question} ")
            .and_then(|()| self.output.flush())
            .map_err(Error::Console)?;
        let mut line = String::new();
        self.input.read_line(&mut line).map_err(Error::Console)?;
        Ok(line.trim().to_string())
    }
}

/// Lists `cands` on the console and picks the target: by the settings'
/// rule, or by asking; then confirms (unless unattended). Nothing is
/// written here.
///
/// # Errors
/// [`Error::NoCandidates`], [`Error::NoTarget`], [`Error::Refused`]
/// (the partitions guard included), [`Error::Declined`] for any answer
/// but `yes`, [`Error::Console`].
pub fn pick<'a>(
    settings: &Settings,
    cands: &'a [Candidate],
    console: &mut Console<'_>,
) -> Result<&'a Candidate> {
    console.say(&format!(
        "kiln install: {} bytes to write; disks:",
        settings.image_bytes
    ))?;
    for c in cands {
        let state = match &c.excluded {
            None => "ok".to_string(),
            Some(r) => format!("excluded: {r}"),
        };
        console.say(&format!("  {}  [{state}]", c.describe()))?;
    }
    let rule = settings.rule().map_err(|t| Error::Settings {
        path: PathBuf::from(crate::SETTINGS_PATH),
        reason: format!("target {t:?} is not a target rule"),
    })?;
    let chosen = match &rule {
        Some(r) => choose(cands, r)?,
        None => ask_which(cands, console)?,
    };
    if settings.unattended {
        guard_partitions(chosen, settings.allow_data_loss)?;
        console.say(&format!(
            "kiln install: unattended: installing onto {}",
            chosen.drive.path.display()
        ))?;
        return Ok(chosen);
    }
    let warn = if chosen.drive.partitions.is_empty() {
        String::new()
    } else {
        format!(
            " Its {} partition(s) will be DESTROYED.",
            chosen.drive.partitions.len()
        )
    };
    let answer = console.ask(&format!(
        "Install onto {}? Everything on it is erased.{warn} Type yes to continue:",
        chosen.drive.path.display()
    ))?;
    if answer.eq_ignore_ascii_case("yes") {
        Ok(chosen)
    } else {
        Err(Error::Declined)
    }
}

/// Without a rule: the only eligible disk, or the one whose number the
/// operator types.
fn ask_which<'a>(cands: &'a [Candidate], console: &mut Console<'_>) -> Result<&'a Candidate> {
    let ok: Vec<&Candidate> = cands.iter().filter(|c| c.excluded.is_none()).collect();
    match ok.as_slice() {
        [] => Err(Error::NoCandidates),
        [one] => Ok(one),
        many => {
            for (i, c) in many.iter().enumerate() {
                console.say(&format!("  {}) {}", i + 1, c.drive.path.display()))?;
            }
            let answer = console.ask(&format!("Which disk (1-{})?", many.len()))?;
            answer
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| many.get(i).copied())
                .ok_or(Error::Declined)
        }
    }
}

/// What [`write()`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    /// The engine's report.
    pub flash: FlashReport,
    /// Whether the installer's config.json differed from the image's
    /// and was written into the target's boot partition.
    pub config_replaced: bool,
}

/// One write of the inner image onto a target.
pub struct Job<'a> {
    /// The inner image.
    pub image: &'a dyn ReadAt,
    /// Its bmap.
    pub bmap: &'a Bmap,
    /// The target's path (for messages).
    pub target_path: &'a Path,
    /// Read back every written range.
    pub verify: bool,
    /// The installer's config.json, to place on the target.
    pub config: Option<&'a [u8]>,
    /// The time given to a rebuilt boot partition's files.
    pub time: Timestamp,
}

/// Largest config.json read (bytes).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Writes the job's image (described by its bmap) onto `target` with the
/// flash engine, then places the installer's config.json at the root of
/// the target's boot partition (the image's first partition) when it
/// differs from the image's: that FAT volume is rebuilt from the image's
/// with the one file replaced, written over the target's, and read back.
///
/// # Errors
/// [`Error::Flash`] (verify failures included), [`Error::Layout`],
/// [`Error::Config`], [`Error::Target`].
pub fn write<T: FlashTarget>(
    job: &Job<'_>,
    target: &mut T,
    progress: &mut dyn FnMut(kiln_flash::Progress),
) -> Result<InstallReport> {
    let flash = kiln_flash::flash(
        ImageSource::Random(job.image),
        Some(job.bmap),
        target,
        &FlashOptions::new().verify(job.verify),
        progress,
    )
    .map_err(|source| Error::Flash {
        path: job.target_path.to_path_buf(),
        source: Box::new(source),
    })?;
    let config_replaced = match job.config {
        Some(c) => place_config(job, target, c)?,
        None => false,
    };
    Ok(InstallReport {
        flash,
        config_replaced,
    })
}

/// See [`write`]; `Ok(false)` when the image already holds `config`.
fn place_config<T: FlashTarget>(job: &Job<'_>, target: &mut T, config: &[u8]) -> Result<bool> {
    let path = job.target_path;
    let layout = |reason| Error::Layout {
        path: path.to_path_buf(),
        reason,
    };
    let table = kiln_part::read_table(job.image)
        .map_err(|_| layout("the image has no readable partition table"))?;
    let boot = table
        .partitions
        .iter()
        .find(|p| p.number == 1)
        .ok_or_else(|| layout("the image has no first (boot) partition"))?;
    let (start, size) = (boot.start_bytes, boot.size_bytes);
    let fat_err = |source| Error::Config {
        what: path.to_path_buf(),
        source,
    };
    let src = SubRegion::new(job.image, start, size);
    let old = kiln_fat::FatReader::open(&src)
        .and_then(|r| r.read_file("config.json", MAX_CONFIG_BYTES))
        .map_err(fat_err)?;
    if old == config {
        return Ok(false);
    }
    let mut edits = kiln_fat::FatEdits::new();
    edits.put("config.json", config.to_vec());
    let mut volume: Vec<u8> = Vec::new();
    kiln_fat::rebuild(&src, &mut volume, &edits, job.time).map_err(fat_err)?;
    let len = usize::try_from(size).map_err(|_| layout("the boot partition is too large"))?;
    if volume.len() > len {
        return Err(layout("the rebuilt boot partition outgrew its partition"));
    }
    volume.resize(len, 0);
    let io = |op| {
        move |source| Error::Target {
            path: path.to_path_buf(),
            op,
            source,
        }
    };
    target
        .write_all_at(&volume, start)
        .map_err(io("cannot write the boot partition"))?;
    target
        .sync_data()
        .map_err(io("cannot sync the boot partition"))?;
    target
        .drop_cache(start, size)
        .map_err(io("cannot drop the boot partition's cache"))?;
    let back = kiln_fat::FatReader::open(SubRegion::new(&*target, start, size))
        .and_then(|r| r.read_file("config.json", MAX_CONFIG_BYTES))
        .map_err(fat_err)?;
    if back != config {
        return Err(layout("config.json read back differs from the installer's"));
    }
    Ok(true)
}

/// The installer's config.json from `src`: a disk (or disk image) whose
/// first partition is the boot partition, or a FAT volume itself (the
/// `flash-boot` partition's device).
///
/// # Errors
/// [`Error::Config`] when neither holds a readable `config.json`.
pub fn read_config<R: ReadAt>(src: &R, what: &Path) -> Result<Vec<u8>> {
    let from_table = kiln_part::read_table(src).ok().and_then(|t| {
        t.partitions
            .iter()
            .find(|p| p.number == 1)
            .map(|p| (p.start_bytes, p.size_bytes))
    });
    let read = |start, len| {
        kiln_fat::FatReader::open(SubRegion::new(src, start, len))
            .and_then(|r| r.read_file("config.json", MAX_CONFIG_BYTES))
    };
    let whole = || {
        src.size().map_err(|source| Error::Read {
            path: what.to_path_buf(),
            source,
        })
    };
    let got = match from_table {
        Some((start, len)) => read(start, len),
        None => read(0, whole()?),
    };
    got.map_err(|source| Error::Config {
        what: what.to_path_buf(),
        source,
    })
}
