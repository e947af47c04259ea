//! `kiln install`: what the USB installer runs at boot (see `kiln build
//! --installer`). Gathers the facts (settings file, the inner image and
//! its bmap, `/sys`, udev data, mountinfo, the console, the clock) and
//! hands them to `kiln-install`; powers off after a successful install
//! when the settings say so.

use crate::env::now;
use anyhow::{Context, Result};
use kiln_drives::Roots;
use kiln_flash::mountinfo;
use kiln_install::{Console, Job, Settings};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Arguments of `kiln install`.
#[derive(clap::Args)]
pub struct Args {
    /// The installer settings file.
    #[arg(long, default_value = "/opt/kiln/installer.json")]
    settings: PathBuf,
    /// Root the settings' image and bmap paths are under.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// The installer's config.json source: its disk or its flash-boot partition (a device or image file).
    #[arg(
        long,
        value_name = "DISK",
        default_value = "/dev/disk/by-label/flash-boot"
    )]
    config_from: PathBuf,
    /// Target rule overriding the settings': largest-internal, a /dev path, or serial:XYZ.
    #[arg(long, value_name = "RULE")]
    target: Option<String>,
    /// Never power off, whatever the settings say.
    #[arg(long)]
    no_power_off: bool,
    /// The sysfs mount to list disks from.
    #[arg(long, default_value = "/sys", hide = true)]
    sys: PathBuf,
}

fn under(root: &Path, p: &str) -> PathBuf {
    root.join(p.trim_start_matches('/'))
}

/// Runs `kiln install`.
pub fn run(a: Args, quiet: bool) -> Result<()> {
    let typed = |e: kiln_install::Error| anyhow::Error::new(e);
    let mut text = Vec::new();
    std::fs::File::open(&a.settings)
        .and_then(|f| {
            f.take(kiln_install::MAX_SETTINGS_BYTES)
                .read_to_end(&mut text)
        })
        .with_context(|| format!("{}: cannot read", a.settings.display()))
        .map_err(crate::exit::input)?;
    let mut settings = Settings::parse(&text, &a.settings).map_err(typed)?;
    if let Some(t) = a.target {
        settings.target = Some(t);
        settings.rule().map_err(|t| {
            crate::exit::input(anyhow::anyhow!(
                "--target {t:?}: use largest-internal, a /dev path or serial:XYZ"
            ))
        })?;
    }
    let image_path = under(&a.root, &settings.image);
    let image = std::fs::File::open(&image_path)
        .with_context(|| format!("{}: cannot open the image", image_path.display()))
        .map_err(crate::exit::input)?;
    let bmap_path = under(&a.root, &settings.bmap);
    let bmap = std::fs::File::open(&bmap_path)
        .map_err(|source| kiln_install::Error::Read {
            path: bmap_path.clone(),
            source,
        })
        .and_then(|f| {
            kiln_artifact::bmap::Bmap::read_from(f, 16 << 20).map_err(|source| {
                kiln_install::Error::Bmap {
                    path: bmap_path.clone(),
                    source,
                }
            })
        })
        .map_err(typed)?;
    let config = match std::fs::File::open(&a.config_from) {
        Ok(f) => Some(kiln_install::read_config(&f, &a.config_from).map_err(typed)?),
        Err(e) => {
            eprintln!(
                "kiln install: {}: {e}; the image's own config.json stays",
                a.config_from.display()
            );
            None
        }
    };

    let mounts = mountinfo::parse_mountinfo(
        &std::fs::read_to_string("/proc/self/mountinfo")
            .context("/proc/self/mountinfo: cannot read")?,
    )?;
    let udev = Path::new("/run/udev/data");
    let roots = Roots::new(&a.sys, udev.is_dir().then_some(udev), "/dev");
    let drives = kiln_drives::scan(&roots, &mounts, Some(settings.image_bytes))
        .map_err(|e| typed(e.into()))?;
    let cands = kiln_install::candidates(drives);
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut output = std::io::stdout();
    let mut console = Console {
        input: &mut input,
        output: &mut output,
    };
    let chosen = kiln_install::pick(&settings, &cands, &mut console).map_err(typed)?;
    let path = chosen.drive.path.clone();
    if settings.unattended {
        let current = std::fs::File::open(&path).map_err(|source| kiln_install::Error::Target {
            path: path.clone(),
            op: "cannot open the target",
            source,
        });
        kiln_install::guard_table(chosen, &current.map_err(typed)?, settings.allow_data_loss)
            .map_err(typed)?;
    }
    let mut target = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|source| kiln_install::Error::Target {
            path: path.clone(),
            op: "cannot open the target",
            source,
        })
        .map_err(typed)?;
    let job = Job {
        image: &image,
        bmap: &bmap,
        target_path: &path,
        verify: settings.verify,
        config: config.as_deref(),
        time: kiln_install::Timestamp::new(now(), 0),
    };
    let report = kiln_install::write(&job, &mut target, &mut |_| {}).map_err(typed)?;
    drop(target);
    outln!(
        "kiln install: PASS: {} bytes of {} written to {}, {} verified{}",
        report.flash.written_bytes,
        settings.image_sha256.get(..16).unwrap_or_default(),
        path.display(),
        report.flash.verified_bytes,
        if report.config_replaced {
            ", config.json copied"
        } else {
            ""
        }
    );
    if settings.power_off && !a.no_power_off {
        if !quiet {
            eprintln!("kiln install: powering off");
        }
        let status = std::process::Command::new("systemctl")
            .arg("poweroff")
            .status()
            .context("systemctl poweroff")?;
        anyhow::ensure!(status.success(), "systemctl poweroff failed: {status}");
    }
    Ok(())
}
