//! A small `kiln flash`: gathers the safety facts (stat, sysfs,
//! /proc/self/mountinfo), flashes with the bmap, verifies, shows progress
//! with speed and ETA.
//!
//! `cargo run --release -p kiln-flash --example flash -- IMAGE TARGET [--bmap F] [--force] [--holes skip|zero|discard] [--no-verify]`

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::Instant;

use kiln_artifact::bmap::{Bmap, BMAP_MAX_FILE_BYTES};
use kiln_artifact::compress::{Compression, Decoder};
use kiln_flash::mountinfo::parse_mountinfo;
use kiln_flash::safety::{check_target, ImageFacts, TargetFacts, TargetKind};
use kiln_flash::{flash, FlashOptions, FlashTarget, HoleMode, ImageSource, Progress};

/// (major, minor) of the target and of its partitions, from sysfs.
fn devices_of(rdev: u64) -> Vec<(u32, u32)> {
    let (maj, min) = (
        ((rdev >> 8) & 0xfff) as u32,
        ((rdev & 0xff) | ((rdev >> 12) & 0xfff00)) as u32,
    );
    let mut out = vec![(maj, min)];
    if let Ok(dir) = std::fs::read_dir(format!("/sys/dev/block/{maj}:{min}")) {
        for e in dir.flatten() {
            if let Ok(dev) = std::fs::read_to_string(e.path().join("dev")) {
                if let Some((a, b)) = dev.trim().split_once(':') {
                    if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                        out.push((a, b));
                    }
                }
            }
        }
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: flash IMAGE TARGET [--bmap F] [--force] [--holes skip|zero|discard] [--no-verify]");
        std::process::exit(2);
    }
    let (image_path, target_path) = (&args[1], &args[2]);
    let mut opts = FlashOptions::new();
    let mut bmap = None;
    let mut force = false;
    let mut i = 3;
    while i < args.len() {
        match args[i].as_str() {
            "--bmap" => {
                i += 1;
                bmap = Some(Bmap::read_from(File::open(&args[i])?, BMAP_MAX_FILE_BYTES)?);
            }
            "--force" => force = true,
            "--no-verify" => opts = opts.verify(false),
            "--holes" => {
                i += 1;
                opts = opts.holes(match args[i].as_str() {
                    "zero" => HoleMode::Zero,
                    "discard" => HoleMode::Discard,
                    _ => HoleMode::Skip,
                });
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
        i += 1;
    }
    let mut target = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(target_path)?;
    let md = target.metadata()?;
    let kind = if md.file_type().is_block_device() {
        TargetKind::BlockDevice
    } else if md.is_file() {
        TargetKind::RegularFile
    } else {
        TargetKind::Other
    };
    let devices = if kind == TargetKind::BlockDevice {
        devices_of(md.rdev())
    } else {
        vec![]
    };
    let mounts = parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo")?)?;
    let facts = TargetFacts::from_mountinfo(kind, target.capacity()?, &devices, &mounts);

    let probe = Decoder::new(File::open(image_path)?)?;
    let raw_file;
    let mut stream;
    let image_size;
    let source = if probe.compression() == Compression::None {
        raw_file = File::open(image_path)?;
        image_size = raw_file.metadata()?.len();
        ImageSource::Random(&raw_file)
    } else {
        image_size = bmap.as_ref().map_or(0, Bmap::image_size);
        stream = probe;
        ImageSource::Stream(&mut stream)
    };
    // The sector-size check needs the device's BLKSSZGET (kiln flash does
    // it); this example leaves it out.
    let image = ImageFacts {
        bytes: image_size,
        table_sector: None,
    };
    check_target(&facts, &image, force)?;

    let start = Instant::now();
    let mut last = Instant::now();
    let mut show = |p: Progress| {
        if last.elapsed().as_millis() < 500 {
            return;
        }
        last = Instant::now();
        let secs = start.elapsed().as_secs_f64();
        let speed = p.done_bytes as f64 / secs;
        let eta = p.total_bytes.map_or(String::from("?"), |t| {
            format!("{:.0} s", (t - p.done_bytes) as f64 / speed)
        });
        eprint!(
            "\r{:?}: {} MB, {:.1} MB/s, ETA {eta}   ",
            p.phase,
            p.done_bytes / 1_000_000,
            speed / 1e6
        );
        let _ = std::io::stderr().flush();
    };
    let report = flash(source, bmap.as_ref(), &mut target, &opts, &mut show)?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!();
    println!(
        "wrote {} bytes, verified {}, {} ranges in {secs:.2} s; gpt relocation: {:?}",
        report.written_bytes, report.verified_bytes, report.ranges, report.gpt
    );
    Ok(())
}
