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

mod build;
mod catalog;
mod completions;
mod convert;
mod drives;
mod env;
mod exit;
mod flash;
mod inspect;
mod install;
mod keygen;
mod mkfs;
mod progress;
mod sign;
mod stamp;
mod verify;

use anyhow::Result;
use clap::{Parser, Subcommand};

const AFTER_HELP: &str = "\
Examples:
  kiln build --board nuc --recipe bob-onprem -o nuc.img
  kiln build --board fin-cm3plus --recipe bob-onprem --media 64GB --set hostname=bob-17 -o fin.img
  kiln inspect fin.img --json
  kiln drives --for fin.img.xz
  kiln flash fin.img.xz /dev/sdX
  kiln convert fin.img fin.qcow2 --format qcow2
  kiln stamp nuc.img --devices fleet.csv -o fleet/ [--format qcow2-overlay]
  kiln mkfs ext4 --source rootfs.tar.gz --size min --label rootfs rootfs.ext4
  kiln keygen -o release.key && kiln build ... --sign release.key
  kiln verify out/ --key release.pub
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
  KILN_PASSPHRASE    passphrase of an encrypted secret key (keygen, build/stamp --sign, sign),
                     when --passphrase-file is not given; otherwise kiln asks on the terminal
  SOURCE_DATE_EPOCH  build time for every timestamp; with it (or build.source-date-epoch in the
                     recipe) the build is reproducible: same inputs give identical bytes
  KILN_PROFILES_DIR, KILN_RECIPES_DIR  where --board / --recipe names are looked up";

/// The command line (also the source of `kiln completions` and `kiln man`).
#[derive(Parser)]
#[command(name = "kiln", version, about = "Build ready-to-flash disk images for airgapped on-premises installs, rootless", after_help = AFTER_HELP)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
    /// No progress output.
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Build a partitioned disk image for a board from a recipe.
    Build(build::Args),
    /// Show partitions, filesystems, boot files and config.json of an image.
    Inspect(inspect::Args),
    /// List the disks that could be flashed (removable media first; the system disk, mounted and too small disks shown as excluded).
    Drives(drives::Args),
    /// Write an image (raw, qcow2, vmdk, vhd, or raw .xz/.gz/.zst) to a disk, skipping holes (bmap), then verify it.
    Flash(flash::Args),
    /// Install the OS a USB installer carries onto this machine's internal disk (what `kiln build --installer`'s image runs at boot).
    Install(install::Args),
    /// Convert an image between raw, qcow2, vmdk and vhd (input may also be raw .xz/.gz/.zst).
    Convert(convert::Args),
    /// Cut one image per device from a built image, rewriting only the boot partition's config.
    Stamp(stamp::Args),
    /// Make a minisign-format signing key pair (NAME.key, NAME.pub).
    Keygen(keygen::Args),
    /// Sign an output directory's SHA256SUMS (SHA256SUMS.minisig).
    Sign(sign::Args),
    /// Check an output directory or image offline: signature, SHA256SUMS, manifest digests, bmap ranges.
    Verify(verify::Args),
    /// List the board profiles.
    Boards,
    /// List the recipes.
    Recipes,
    /// Print a shell completion script (bash, zsh or fish) to stdout.
    Completions(completions::Args),
    /// Print the man page (roff) to stdout: `kiln man > kiln.1; man -l kiln.1`.
    Man,
    /// Make a single filesystem (rootless replacement for mke2fs -d).
    Mkfs {
        #[command(subcommand)]
        fs: mkfs::Command,
    },
}

fn main() {
    let cli = parse_args();
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

/// On SIGINT or SIGTERM: removes the temporary files and directories
/// `command` may be writing (never a finished output: those are renamed
/// into place only when every one succeeded) and exits 130 or 143, as a
/// shell reports a process killed by that signal. After SIGKILL or a
/// power loss only hidden `.kiln-partial`/`.partial` names can remain;
/// the next run over the same outputs removes them.
fn on_interrupt(command: &Command) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let (files, dirs) = match command {
        Command::Build(build::Args { output, .. })
        | Command::Convert(convert::Args { output, .. }) => {
            (kiln_pipeline::temporary_paths(output), Vec::new())
        }
        Command::Mkfs { fs } => (kiln_pipeline::temporary_paths(fs.output()), Vec::new()),
        Command::Stamp(a) => (
            kiln_pipeline::signing_temporaries(&a.output),
            vec![kiln_pipeline::stamp_partial_dir(&a.output)],
        ),
        Command::Sign(a) => (kiln_pipeline::signing_temporaries(a.dir()), Vec::new()),
        Command::Keygen(a) => (
            kiln_pipeline::temporary_key_paths(&a.output, &keygen::public_path(&a.output)),
            Vec::new(),
        ),
        _ => (Vec::new(), Vec::new()),
    };
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            kiln_pipeline::remove_temporaries(&files);
            for d in &dirs {
                // The run goes on writing into it meanwhile: a file it
                // creates during a pass fails that pass, so a few more.
                // Nothing to report on failure: the next run removes it.
                for _ in 0..5 {
                    if !d.is_dir() {
                        break;
                    }
                    std::fs::remove_dir_all(d).ok();
                }
            }
            eprintln!("kiln: interrupted; temporary files removed");
            std::process::exit(128 + sig);
        }
    });
    Ok(())
}

/// The command line, or exit: `--help` and `--version` print as clap
/// prints them; a usage error is one line naming the argument (the README
/// promises one-line errors), exit 2.
fn parse_args() -> Cli {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            let text = e.render().to_string();
            // The message up to clap's usage block, on one line.
            let line = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.is_empty() && !l.starts_with("Usage:"))
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("kiln: {line} (see kiln --help)");
            std::process::exit(2);
        }
    }
}

/// Whether `e` is stdout's reader having closed the pipe.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// One function per subcommand, each in its own module.
fn run(cli: Cli) -> Result<()> {
    let quiet = cli.quiet;
    match cli.command {
        Command::Build(a) => build::run(a, quiet),
        Command::Inspect(a) => inspect::run(a),
        Command::Drives(a) => drives::run(a),
        Command::Flash(a) => flash::run(a, quiet),
        Command::Install(a) => install::run(a, quiet),
        Command::Convert(a) => convert::run(a, quiet),
        Command::Stamp(a) => stamp::run(a, quiet),
        Command::Keygen(a) => keygen::run(a, quiet),
        Command::Sign(a) => sign::run(a, quiet),
        Command::Verify(a) => verify::run(a, quiet),
        Command::Boards => catalog::boards(),
        Command::Recipes => catalog::recipes(),
        Command::Mkfs { fs } => mkfs::run(fs, quiet),
        Command::Completions(a) => completions::run(a),
        Command::Man => completions::man(),
    }
}
