//! The `kiln` command line: a thin layer over `kiln-pipeline`. It gathers
//! what libraries must not read themselves (the clock, the environment,
//! randomness), prints progress and maps errors to exit codes.

/// `println!` that returns the write error instead of panicking when
/// stdout is closed early (`kiln boards | head -1`); [`main`] ends such a
/// run quietly.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod exit;
mod flash;
mod stamp;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use kiln_pipeline::{BuildRequest, Seed};
use kiln_recipe::{BoardProfile, Recipe};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

const AFTER_HELP: &str = "\
Examples:
  kiln build --board nuc --recipe bob-onprem -o nuc.img
  kiln build --board fin-cm3plus --recipe bob-onprem --media 64GB --set hostname=bob-17 -o fin.img
  kiln inspect fin.img --json
  kiln flash fin.img.xz /dev/sdX
  kiln convert fin.img fin.qcow2 --format qcow2
  kiln stamp nuc.img --devices fleet.csv -o fleet/ [--format qcow2-overlay]
  kiln mkfs ext4 --source rootfs.tar.gz --size min --label rootfs rootfs.ext4
  kiln boards
  kiln recipes

Exit codes:
  0  success
  1  internal error
  2  bad input: usage, unknown board/recipe/format, profile, recipe, input files, a corrupt
     --base, layout, sizes, image too big for the medium, devices file, refused flash target
  3  output error: cannot create or write the output (permissions, disk full)
  130/143  interrupted (SIGINT/SIGTERM)

Environment:
  SOURCE_DATE_EPOCH  build time for every timestamp; with it (or build.source-date-epoch in the
                     recipe) the build is reproducible: same inputs give identical bytes
  KILN_PROFILES_DIR, KILN_RECIPES_DIR  where --board / --recipe names are looked up";

#[derive(Parser)]
#[command(name = "kiln", version, about = "Build ready-to-flash disk images for airgapped on-premises installs, rootless", after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// No progress output.
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Build a partitioned disk image for a board from a recipe.
    Build {
        /// Board profile name (see `kiln boards`) or path to a profile TOML.
        #[arg(long)]
        board: String,
        /// Recipe name (see `kiln recipes`) or path to a recipe TOML.
        #[arg(long)]
        recipe: String,
        /// Output image file.
        #[arg(long, short)]
        output: PathBuf,
        /// Target medium the image must fit (e.g. 8GB, 64GB); default: any of the board's media.
        #[arg(long)]
        media: Option<String>,
        /// Override a config.json key: --set hostname=bob-17 --set os.network.wifi=false.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Output formats (raw, qcow2, vmdk, vhd, vhd-dynamic); repeat or comma-separate. Default: the recipe's output section.
        #[arg(long = "format", value_delimiter = ',')]
        formats: Vec<String>,
        /// Compress the raw image: xz, gz, zst or none. Default: the recipe's output section.
        #[arg(long)]
        compress: Option<String>,
        /// Compression level (xz 0-9, gz 1-9, zst 1-19).
        #[arg(long)]
        level: Option<u32>,
        /// Print the build report as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Preload into this existing OS image (raw, .xz, .gz, .zst, .zip, qcow2, vmdk, vhd) instead of building the OS partitions; overrides the recipe's `[base] image`.
        #[arg(long, value_name = "IMAGE")]
        base: Option<PathBuf>,
        /// With --base: preload even if the base's device type or architecture does not match the board.
        #[arg(long)]
        force: bool,
    },
    /// Show partitions, filesystems, boot files and config.json of an image.
    Inspect {
        /// The image: raw, qcow2, vmdk, vhd (read in place), or .xz/.gz/.zst/.zip (expanded into a temporary file first).
        image: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Follow a qcow2 overlay's backing file outside the overlay's directory (an absolute name, `..`, or a symlink leaving it); by default it is refused. It must be a regular file either way.
        #[arg(long)]
        allow_backing_outside: bool,
    },
    /// Write an image (raw, qcow2, vmdk, vhd, or raw .xz/.gz/.zst) to a disk, skipping holes (bmap), then verify it.
    Flash {
        /// The image.
        image: PathBuf,
        /// Block device (or, with --force, a regular file).
        target: PathBuf,
        /// The block map (default: IMAGE.bmap, or the uncompressed name's .bmap).
        #[arg(long)]
        bmap: Option<PathBuf>,
        /// Allow a regular file as the target, or a partition table made for another sector size than the device's (e.g. a 512-byte-sector image on a 4Kn disk).
        #[arg(long)]
        force: bool,
        /// Skip the read-back verification.
        #[arg(long)]
        no_verify: bool,
        /// What to do with the image's holes on the target: skip, zero or discard (zeroing discard; zeros are written where the device cannot).
        #[arg(long, default_value = "skip")]
        holes: String,
        /// Only verify the target against the bmap (e.g. a medium flashed earlier); write nothing.
        #[arg(long)]
        verify_only: bool,
        /// Follow a qcow2 overlay's backing file outside the overlay's directory (an absolute name, `..`, or a symlink leaving it); by default it is refused. It must be a regular file either way.
        #[arg(long)]
        allow_backing_outside: bool,
    },
    /// Convert an image between raw, qcow2, vmdk and vhd (input may also be raw .xz/.gz/.zst).
    Convert {
        /// Input image.
        input: PathBuf,
        /// Output file.
        output: PathBuf,
        /// Output format: raw, qcow2, vmdk, vhd, vhd-dynamic.
        #[arg(long)]
        format: String,
        /// Follow a qcow2 overlay's backing file outside the overlay's directory (an absolute name, `..`, or a symlink leaving it); by default it is refused. It must be a regular file either way.
        #[arg(long)]
        allow_backing_outside: bool,
    },
    /// Cut one image per device from a built image, rewriting only the boot partition's config.
    Stamp {
        /// The built raw image (balenaOS layout: a FAT boot partition labelled resin-boot/balena-boot/flash-boot).
        image: PathBuf,
        /// Devices file: CSV (header row; uuid and hostname columns required; dotted columns nest) or JSON array.
        #[arg(long)]
        devices: PathBuf,
        /// Output directory (must not exist or be empty): NAME.img or NAME.qcow2, NAME.manifest.json, SHA256SUMS.
        #[arg(long, short)]
        output: PathBuf,
        /// raw (a full sparse image per device) or qcow2-overlay (small overlays backed by IMAGE).
        #[arg(long, default_value = "raw")]
        format: String,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List the board profiles.
    Boards,
    /// List the recipes.
    Recipes,
    /// Make a single filesystem (rootless replacement for mke2fs -d).
    Mkfs {
        #[command(subcommand)]
        fs: MkfsCommand,
    },
}

#[derive(Subcommand)]
enum MkfsCommand {
    /// ext4 from a directory or tar archive.
    Ext4 {
        /// Directory or tar archive (plain, .gz, .xz, .zst).
        #[arg(long)]
        source: PathBuf,
        /// Filesystem size (e.g. 512MiB), or `min` for the smallest that fits plus --headroom.
        #[arg(long)]
        size: String,
        /// Free space to leave with --size min.
        #[arg(long, default_value = "0")]
        headroom: String,
        /// Volume label.
        #[arg(long, default_value = "")]
        label: String,
        /// Filesystem UUID (default: derived from the label and SOURCE_DATE_EPOCH, or random).
        #[arg(long)]
        uuid: Option<String>,
        /// Bytes per inode (mke2fs -i).
        #[arg(long)]
        inode_ratio: Option<u64>,
        /// Make every entry owned by root (for trees prepared by an unprivileged user).
        #[arg(long)]
        root_owner: bool,
        /// Write into an existing image at this byte offset.
        #[arg(long)]
        offset: Option<u64>,
        /// Output file.
        output: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = on_interrupt(&cli.command) {
        eprintln!("kiln: error: cannot install the interrupt handler: {e}");
        std::process::exit(1);
    }
    let code = match run(cli) {
        Ok(()) => 0,
        // The reader of stdout went away (`| head`): nothing to report.
        Err(e) if broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("kiln: error: {e:#}");
            exit::code(&e)
        }
    };
    std::process::exit(code);
}

fn repo_dir(kind: &str) -> Vec<PathBuf> {
    let env = match kind {
        "board-profiles" => std::env::var_os("KILN_PROFILES_DIR"),
        _ => std::env::var_os("KILN_RECIPES_DIR"),
    };
    let mut dirs: Vec<PathBuf> = env.map(PathBuf::from).into_iter().collect();
    dirs.push(PathBuf::from(kind));
    if let Ok(exe) = std::env::current_exe() {
        if let Some(prefix) = exe.parent().and_then(Path::parent) {
            dirs.push(prefix.join("share/kiln").join(kind));
            // A binary in the repository's target/<profile>/.
            if let Some(repo) = prefix.parent() {
                dirs.push(repo.join(kind));
            }
        }
    }
    dirs
}

/// Finds `name` (a path, or a name looked up in the profile/recipe dirs).
fn locate(name: &str, kind: &str) -> Result<PathBuf> {
    if name.contains('/') || name.ends_with(".toml") {
        return Ok(PathBuf::from(name));
    }
    for d in repo_dir(kind) {
        let p = d.join(format!("{name}.toml"));
        if p.is_file() {
            return Ok(p);
        }
    }
    let known = list_dir(kind)
        .into_iter()
        .map(|(n, _)| n)
        .collect::<Vec<_>>()
        .join(", ");
    Err(exit::input(anyhow::anyhow!(
        "no {} named {name:?} (known: {known})",
        kind.trim_end_matches('s').replace('-', " ")
    )))
}

fn list_dir(kind: &str) -> Vec<(String, PathBuf)> {
    for d in repo_dir(kind) {
        if let Ok(rd) = std::fs::read_dir(&d) {
            let mut v: Vec<(String, PathBuf)> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .filter_map(|p| Some((p.file_stem()?.to_string_lossy().into_owned(), p)))
                .collect();
            v.sort();
            if !v.is_empty() {
                return v;
            }
        }
    }
    Vec::new()
}

fn source_date_epoch(recipe_value: Option<i64>) -> Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => Ok(Some(v.trim().parse().map_err(|e| {
            exit::input(
                anyhow::Error::new(e).context(format!("SOURCE_DATE_EPOCH={v:?} is not an integer")),
            )
        })?)),
        Err(_) => Ok(recipe_value),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn random_bytes() -> Result<Vec<u8>> {
    use std::io::Read;
    let mut b = vec![0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom for fresh identities")?;
    Ok(b)
}

struct Progress {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            b
        });
        Self { bar, quiet }
    }
    fn line(&self, msg: &str) {
        match &self.bar {
            Some(b) => {
                b.println(format!("kiln: {msg}"));
                b.set_message(msg.to_string());
            }
            None if !self.quiet => eprintln!("kiln: {msg}"),
            None => {}
        }
    }
    fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// On SIGINT or SIGTERM: removes the temporary files and directories
/// `command` may be writing (never a finished output: those are renamed
/// into place only when every one succeeded) and exits 130 or 143, as a
/// shell reports a process killed by that signal. After SIGKILL or a
/// power loss only hidden `.kiln-partial`/`.partial` names can remain;
/// the next run over the same outputs removes them.
fn on_interrupt(command: &Command) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let (files, dirs) = match command {
        Command::Build { output, .. }
        | Command::Convert { output, .. }
        | Command::Mkfs {
            fs: MkfsCommand::Ext4 { output, .. },
        } => (kiln_pipeline::temporary_paths(output), Vec::new()),
        Command::Stamp { output, .. } => {
            (Vec::new(), vec![kiln_pipeline::stamp_partial_dir(output)])
        }
        _ => (Vec::new(), Vec::new()),
    };
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            kiln_pipeline::remove_temporaries(&files);
            for d in &dirs {
                if d.is_dir() {
                    // Nothing to report on failure: the next run removes it.
                    std::fs::remove_dir_all(d).ok();
                }
            }
            eprintln!("kiln: interrupted; temporary files removed");
            std::process::exit(128 + sig);
        }
    });
    Ok(())
}

/// Whether `e` is stdout's reader having closed the pipe.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Build {
            board,
            recipe,
            output,
            media,
            set,
            formats,
            compress,
            level,
            json,
            base,
            force,
        } => {
            let formats = formats
                .iter()
                .map(|f| {
                    kiln_pipeline::DiskFormat::parse(f).ok_or_else(|| {
                        exit::input(anyhow::anyhow!(
                            "--format {f:?}: use raw, qcow2, vmdk, vhd or vhd-dynamic"
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let threads = std::thread::available_parallelism()
                .map(|n| u32::try_from(n.get()).unwrap_or(1))
                .unwrap_or(1);
            let profile = BoardProfile::load(&locate(&board, "board-profiles")?)?;
            let recipe = Recipe::load(&locate(&recipe, "recipes")?)?;
            let sde = source_date_epoch(recipe.build.source_date_epoch)?;
            let seed = match (&recipe.build.seed, sde) {
                (Some(s), _) => Seed::new(s.as_bytes()),
                (None, Some(t)) => Seed::new(format!("{}:{t}", recipe.name)),
                (None, None) => Seed::new(random_bytes()?),
            };
            let env = |k: &str| std::env::var(k).ok();
            let req = BuildRequest {
                profile,
                recipe,
                medium: media,
                output,
                overrides: set,
                timestamp: sde.unwrap_or_else(now),
                seed,
                env: &env,
                formats,
                compress: compress.map(|c| (c, level)),
                threads,
                base,
                force,
            };
            let progress = Progress::new(cli.quiet);
            let started = std::time::Instant::now();
            let report = kiln_pipeline::build(&req, &mut |l| progress.line(l));
            progress.done();
            let report = report?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&report)?);
            } else if !cli.quiet {
                // The disk itself; the files it was delivered as follow
                // (a raw image file only when raw is among them).
                eprintln!(
                    "kiln: built a {}-byte disk in {:.1}s; fits {}",
                    report.disk_bytes,
                    started.elapsed().as_secs_f64(),
                    if report.fits.is_empty() {
                        "no listed medium".to_string()
                    } else {
                        report.fits.join(", ")
                    }
                );
                if let Some(app) = &report.app {
                    eprintln!("kiln: preloaded images:\n{}", app.trim_end());
                }
                for p in &report.partitions {
                    eprintln!(
                        "  p{:<2} {:<12} {:>6} start {:>12} size {:>12} used {:>12} id {}",
                        p.number, p.label, p.fs, p.start, p.size, p.used_bytes, p.fs_id
                    );
                }
                eprintln!("kiln: image sha256 {}", report.image_sha256);
                for a in &report.artifacts {
                    eprintln!(
                        "  {:<12} {:>12} bytes  {}  {}",
                        a.format,
                        a.size_bytes,
                        &a.sha256[..16],
                        a.path.display()
                    );
                }
            }
            Ok(())
        }
        Command::Inspect {
            image,
            json,
            allow_backing_outside,
        } => {
            // A compressed image is expanded into an unnamed file in the
            // temporary directory (gone when kiln exits, however it
            // exits).
            let compressed = matches!(
                kiln_base::sniff(&image),
                Ok(f) if f.is_packed()
            );
            let scratch = if compressed {
                eprintln!(
                    "kiln: expanding {} into a temporary file to inspect it",
                    image.display()
                );
                Some(tempfile::tempfile().context("cannot create a temporary file")?)
            } else {
                None
            };
            let r = kiln_pipeline::inspect(
                &image,
                scratch.as_ref(),
                kiln_vdisk::BackingOptions::new().allow_outside(allow_backing_outside),
            )?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            outln!("image     {} ({} bytes)", image.display(), r.disk_bytes);
            outln!("table     {} (disk id {})", r.table, r.disk_id);
            outln!("partitions:");
            for p in &r.partitions {
                let fs = match &p.fs {
                    kiln_pipeline::FsInfo::Fat { variant, label, id } => {
                        format!(
                            "{variant} label={} id={id}",
                            label.as_deref().unwrap_or("-")
                        )
                    }
                    kiln_pipeline::FsInfo::Ext4 { label, uuid, size } => {
                        format!("ext4 label={label} uuid={uuid} size={size}")
                    }
                    kiln_pipeline::FsInfo::Unknown => "unknown".into(),
                };
                outln!(
                    "  p{:<2} start {:>12} size {:>12} type {}{}{}  {fs}",
                    p.number,
                    p.start,
                    p.size,
                    p.type_id,
                    if p.bootable { " boot" } else { "" },
                    p.name
                        .as_ref()
                        .map(|n| format!(" name={n}"))
                        .unwrap_or_default(),
                );
            }
            if !r.boot_files.is_empty() {
                outln!("boot files:");
                for f in &r.boot_files {
                    match f.size {
                        Some(s) => outln!("  {:>10}  {}", s, f.path),
                        None => outln!("  {:>10}  {}/", "dir", f.path),
                    }
                }
            }
            if let Some(c) = &r.config {
                outln!("config.json (secrets redacted):");
                outln!("{}", serde_json::to_string_pretty(c)?);
            }
            if let Some(d) = &r.data {
                if !d.images.is_empty() {
                    outln!("preloaded images (docker/):");
                    for i in &d.images {
                        outln!(
                            "  {} {} layers  {}",
                            &i.id[..19.min(i.id.len())],
                            i.layers,
                            i.references.join(" ")
                        );
                    }
                }
                if !d.services.is_empty() {
                    outln!("apps.json services:");
                    for s in &d.services {
                        outln!(
                            "  {}/{} {} {}",
                            s.app,
                            s.service,
                            s.image,
                            if s.preloaded {
                                "(preloaded)"
                            } else {
                                "(NOT in the store: the device would pull it)"
                            }
                        );
                    }
                }
                if let Some(sw) = &d.swap {
                    outln!(
                        "swapfile  {} {} bytes label={} uuid={}",
                        sw.path,
                        sw.size,
                        sw.label,
                        sw.uuid
                    );
                }
            }
            for line in r.base_lines() {
                outln!("{line}");
            }
            Ok(())
        }
        Command::Flash {
            image,
            target,
            bmap,
            force,
            no_verify,
            holes,
            verify_only,
            allow_backing_outside,
        } => flash::run(flash::FlashArgs {
            image,
            target,
            bmap,
            force,
            no_verify,
            holes,
            verify_only,
            allow_backing_outside,
            quiet: cli.quiet,
        }),
        Command::Convert {
            input,
            output,
            format,
            allow_backing_outside,
        } => {
            let f = kiln_pipeline::DiskFormat::parse(&format).ok_or_else(|| {
                exit::input(anyhow::anyhow!(
                    "--format {format:?}: use raw, qcow2, vmdk, vhd or vhd-dynamic"
                ))
            })?;
            let sde = source_date_epoch(None)?;
            let seed = match sde {
                Some(t) => Seed::new(format!("convert:{t}")),
                None => Seed::new(random_bytes()?),
            };
            let r = kiln_pipeline::convert(
                &input,
                &output,
                f,
                seed.bytes16("vdisk"),
                sde.unwrap_or_else(now),
                kiln_vdisk::BackingOptions::new().allow_outside(allow_backing_outside),
            )?;
            if !cli.quiet {
                eprintln!(
                    "kiln: wrote {} ({} bytes, virtual size {})",
                    output.display(),
                    r.file_size,
                    r.virtual_size
                );
            }
            Ok(())
        }
        Command::Stamp {
            image,
            devices,
            output,
            format,
            json,
        } => stamp::run(stamp::Args {
            image,
            devices,
            output,
            format,
            json,
            quiet: cli.quiet,
            timestamp: source_date_epoch(None)?.unwrap_or_else(now),
        }),
        Command::Boards => {
            for (name, path) in list_dir("board-profiles") {
                match BoardProfile::load(&path) {
                    Ok(p) => outln!(
                        "{name:<14} {:<6} {:<4} media {:<28} {}",
                        p.arch.as_str(),
                        format!("{:?}", p.table).to_lowercase(),
                        p.media
                            .iter()
                            .map(|m| m.name.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                        p.description
                    ),
                    Err(e) => outln!("{name:<14} (invalid: {e})"),
                }
            }
            Ok(())
        }
        Command::Recipes => {
            for (name, path) in list_dir("recipes") {
                match Recipe::load(&path) {
                    Ok(r) => outln!(
                        "{name:<14} arch {:<12} {}",
                        r.os.keys()
                            .map(|a| a.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                        r.description
                    ),
                    Err(e) => outln!("{name:<14} (invalid: {e})"),
                }
            }
            Ok(())
        }
        Command::Mkfs {
            fs:
                MkfsCommand::Ext4 {
                    source,
                    size,
                    headroom,
                    label,
                    uuid,
                    inode_ratio,
                    root_owner,
                    offset,
                    output,
                },
        } => {
            let headroom: kiln_units::ByteSize = headroom
                .parse()
                .map_err(|e| exit::input(anyhow::Error::new(e).context("--headroom")))?;
            let size = if size == "min" {
                kiln_pipeline::MkfsSize::Min {
                    headroom: headroom.bytes(),
                }
            } else {
                kiln_pipeline::MkfsSize::Bytes(
                    size.parse::<kiln_units::ByteSize>()
                        .map_err(|e| exit::input(anyhow::Error::new(e).context("--size")))?
                        .bytes(),
                )
            };
            let sde = source_date_epoch(None)?;
            let seed = match sde {
                Some(t) => Seed::new(format!("mkfs:{label}:{t}")),
                None => Seed::new(random_bytes()?),
            };
            let uuid = match uuid {
                Some(u) => u
                    .parse::<kiln_units::Guid>()
                    .map_err(|e| exit::input(anyhow::Error::new(e).context("--uuid")))?
                    .to_rfc_bytes(),
                None => seed.uuid("uuid").to_rfc_bytes(),
            };
            let req = kiln_pipeline::MkfsRequest {
                source,
                size,
                label,
                uuid,
                hash_seed: seed.bytes16("hash"),
                inode_ratio,
                timestamp: sde.unwrap_or_else(now),
                force_owner: root_owner.then_some((0, 0)),
                output,
                offset,
            };
            let r = kiln_pipeline::mkfs_ext4(&req)?;
            if !cli.quiet {
                eprintln!(
                    "kiln: ext4 {} bytes, {} inodes and {} blocks used",
                    r.size_bytes, r.inodes_used, r.blocks_used
                );
            }
            Ok(())
        }
    }
}
