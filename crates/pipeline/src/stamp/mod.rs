//! Fleet stamping: one built image, many per-device images that differ
//! only in the boot partition's configuration (`kiln stamp`).
//!
//! The devices file ([`read_devices`]) is CSV or JSON, one device per row:
//!
//! * CSV: a header row, then one row per device (RFC 4180 quoting,
//!   `#` comment lines and blank lines skipped). A column is a
//!   `config.json` key; dots nest (`os.network.connectivity.uri`). Cells
//!   `true`/`false` become booleans, every other cell a string, except in
//!   columns whose header ends in `:json`, whose cells are JSON values
//!   (`os.sshKeys:json` = `["ssh-ed25519 …"]`). Empty cells are left out.
//!   Column `name` is the device's output name (default: its hostname);
//!   columns `network.address` (`192.168.1.50/24`), `network.gateway`,
//!   `network.dns` (`;`-separated), `network.interface` and
//!   `network.name` (profile file name, default `static-ip`) describe a
//!   static IPv4 profile.
//! * JSON: an array of objects; `name` and `network` (an object with the
//!   keys above, `dns` a string or an array) as in CSV, every other key
//!   is merged into `config.json` as it is.
//!
//! Every device needs `uuid` (32–62 hex digits) and `hostname`; names and
//! uuids must be unique. The whole file is validated before anything is
//! written, and errors name `file:line`.
//!
//! [`stamp`] writes, into a new output directory (built as a hidden
//! sibling `.<dir>.partial` and renamed into place at the end, removed on
//! error):
//!
//! | file                   | content                                      |
//! |------------------------|----------------------------------------------|
//! | `<name>.img`           | sparse copy of the image, boot partition edited |
//! | `<name>.qcow2`         | (`qcow2-overlay`) qcow2 v3 with the image as raw backing file, holding only the clusters that differ |
//! | `<name>.manifest.json` | source sha256, device name, output sha256, boot partition sha256, changed files, `config.json` with secrets redacted |
//! | `SHA256SUMS`           | `sha256sum -c` lines for every output image and manifest |
//!
//! A device's network profile becomes the NetworkManager keyfile
//! `system-connections/<network.name>` (the same place the recipe's
//! `[network] profiles` go). Secret values (keys containing `key`,
//! `secret`, `token` or `password`, any case, at any depth) never reach
//! the progress lines or the manifests.

mod devices;

use self::devices::{hex, with_secret_record};
pub use self::devices::{read_devices, redact_secrets, Device, StaticIp};
use crate::bootedit::{edit_boot_partition, BootEdits};
use crate::error::out_err;
use crate::Error;
use kiln_fat::FatReader;
use kiln_units::{ReadAt, SubRegion};
use kiln_vdisk::{DiskWriter, Qcow2Options, Qcow2Writer, RawWriter};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

/// The key marking a per-device manifest (its value: the format version).
pub(crate) const STAMP_MANIFEST_KEY: &str = "kiln_stamp_manifest";

/// Labels that mark a balenaOS boot partition.
pub const BOOT_LABELS: &[&str] = &["resin-boot", "balena-boot", "flash-boot"];

/// What `stamp` writes per device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampFormat {
    /// A full sparse raw image per device.
    Raw,
    /// A qcow2 overlay per device, backed by the source image.
    Qcow2Overlay,
}

impl StampFormat {
    /// `raw` or `qcow2-overlay`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "raw" => Some(Self::Raw),
            "qcow2-overlay" => Some(Self::Qcow2Overlay),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Qcow2Overlay => "qcow2-overlay",
        }
    }
}

/// What [`stamp`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampRequest {
    /// The built raw image (any balenaOS-layout raw image).
    pub image: PathBuf,
    /// The devices file (`.json`: JSON, anything else: CSV).
    pub devices: PathBuf,
    /// Output directory; must not exist or be empty.
    pub out_dir: PathBuf,
    /// Raw images or qcow2 overlays.
    pub format: StampFormat,
    /// Time for new and changed files on the boot partition (Unix seconds).
    pub timestamp: i64,
}

/// One stamped device.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StampedDevice {
    /// Device name.
    pub name: String,
    /// Output image (in the final directory).
    pub output: PathBuf,
    /// sha256 of the output file.
    pub sha256: String,
    /// sha256 of the device's boot partition (as the device will see it).
    pub boot_sha256: String,
    /// The manifest file.
    pub manifest: PathBuf,
    /// Boot partition files created or replaced.
    pub files_changed: Vec<String>,
}

/// What [`stamp`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StampReport {
    /// The output directory.
    pub out_dir: PathBuf,
    /// sha256 of the source image.
    pub source_sha256: String,
    /// The boot partition's number and label.
    pub boot_partition: (u32, String),
    /// Every device, in file order.
    pub devices: Vec<StampedDevice>,
}

/// The boot partition: (number, label, start, size).
fn find_boot(image: &File, path: &Path) -> Result<(u32, String, u64, u64), Error> {
    let table = kiln_part::read_table(image).map_err(Error::Table)?;
    for p in &table.partitions {
        let region = SubRegion::new(image, p.start_bytes, p.size_bytes);
        let Ok(r) = FatReader::open(region) else {
            continue;
        };
        if let Ok(Some(label)) = r.volume_label() {
            if BOOT_LABELS.contains(&label.as_str()) {
                return Ok((p.number, label, p.start_bytes, p.size_bytes));
            }
        }
    }
    Err(Error::Image {
        path: path.to_path_buf(),
        reason: format!(
            "no boot partition: no FAT partition labelled {}",
            BOOT_LABELS.join(", ")
        ),
    })
}

fn vdisk_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(kiln_vdisk::Error) -> Error + 'a {
    move |e| Error::Output {
        path: path.to_path_buf(),
        op,
        source: io::Error::from(e),
    }
}

/// sha256 of `len` bytes at `start` of `r`, 1 MiB at a time.
fn sha256_region<R: ReadAt + ?Sized>(r: &R, start: u64, len: u64) -> io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let n = usize::try_from((len - done).min(buf.len() as u64)).unwrap_or(buf.len());
        r.read_exact_at(&mut buf[..n], start + done)?;
        h.update(&buf[..n]);
        done += n as u64;
    }
    Ok(hex(&h.finalize()))
}

/// sha256 of a whole (sparse) file: data regions are read, holes are
/// hashed as zeros without reading them.
fn sha256_sparse(f: &File) -> io::Result<String> {
    use kiln_vdisk::DataRegions;
    static ZEROS: [u8; 1 << 16] = [0; 1 << 16];
    let len = f.metadata()?.len();
    let mut h = Sha256::new();
    let zeros = |h: &mut Sha256, mut n: u64| {
        while n > 0 {
            let k = n.min(ZEROS.len() as u64);
            h.update(&ZEROS[..usize::try_from(k).unwrap_or(0)]);
            n -= k;
        }
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < len {
        let Some(ext) = f.next_data(pos)? else {
            break;
        };
        zeros(&mut h, ext.offset.saturating_sub(pos));
        let end = ext.offset.saturating_add(ext.len).min(len);
        let mut at = ext.offset;
        while at < end {
            let n = usize::try_from((end - at).min(buf.len() as u64)).unwrap_or(buf.len());
            FileExt::read_exact_at(f, &mut buf[..n], at)?;
            h.update(&buf[..n]);
            at += n as u64;
        }
        pos = end.max(pos);
    }
    zeros(&mut h, len.saturating_sub(pos));
    Ok(hex(&h.finalize()))
}

/// `target` relative to directory `base` (both absolute, canonical).
fn relative(base: &Path, target: &Path) -> PathBuf {
    let b: Vec<Component> = base.components().collect();
    let t: Vec<Component> = target.components().collect();
    let common = b.iter().zip(&t).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

/// The hidden directory `kiln stamp -o DIR` writes into before it is
/// renamed to `DIR` (`.DIR.partial` beside it): what an interrupted stamp
/// leaves, removed by the next stamp into `DIR` or on SIGINT/SIGTERM.
pub fn partial_dir(out_dir: &Path) -> PathBuf {
    let name = out_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out_dir.with_file_name(format!(".{name}.partial"))
}

/// Stamps every device of `req.devices` from `req.image` into
/// `req.out_dir` (see the module doc). `progress` gets one line per
/// device, without secret values.
///
/// # Errors
/// Devices file problems ([`read_devices`]), an image without a boot
/// partition or partition table, boot partition edits that do not fit,
/// an output directory that exists and is not empty, I/O. Nothing is left
/// behind on error.
pub fn stamp(req: &StampRequest, progress: &mut dyn FnMut(&str)) -> Result<StampReport, Error> {
    let devices = read_devices(&req.devices)?;
    let image = File::open(&req.image).map_err(out_err(&req.image, "opening the image"))?;
    let size = image.metadata().map_err(out_err(&req.image, "stat"))?.len();
    let (number, label, start, psize) = find_boot(&image, &req.image)?;
    crate::outpath::check_dir_target(&req.out_dir)?;
    if req.out_dir.exists() {
        let empty = std::fs::read_dir(&req.out_dir)
            .map_err(out_err(&req.out_dir, "reading the output directory"))?
            .next()
            .is_none();
        if !empty {
            return Err(Error::Image {
                path: req.out_dir.clone(),
                reason: "output directory exists and is not empty".into(),
            });
        }
    }
    let dir_name = req.out_dir.file_name().ok_or_else(|| Error::Image {
        path: req.out_dir.clone(),
        reason: "output directory needs a name".into(),
    })?;
    let parent = match req.out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let parent = parent
        .canonicalize()
        .map_err(out_err(&parent, "resolving the output directory's parent"))?;
    let final_dir = parent.join(dir_name);
    let partial = partial_dir(&final_dir);
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .map_err(out_err(&partial, "removing a stale partial directory"))?;
    }
    std::fs::create_dir(&partial).map_err(out_err(&partial, "creating"))?;
    let source = Source {
        image: &image,
        size,
        boot: BootPart {
            number,
            label: &label,
            start,
            size: psize,
        },
    };
    let dirs = Dirs {
        partial: &partial,
        final_dir: &final_dir,
    };
    let r = stamp_into(req, &devices, &source, &dirs, progress);
    match r {
        Ok(mut report) => {
            if req.out_dir.exists() {
                std::fs::remove_dir(&req.out_dir).map_err(out_err(
                    &req.out_dir,
                    "replacing the empty output directory",
                ))?;
            }
            std::fs::rename(&partial, &final_dir)
                .map_err(out_err(&final_dir, "renaming into place"))?;
            report.out_dir = final_dir;
            Ok(report)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            Err(e)
        }
    }
}

const OVERLAY_CLUSTER: u64 = 64 * 1024;

/// The source image of a stamp run and its boot partition.
struct Source<'a> {
    /// The image, open.
    image: &'a File,
    /// Its size in bytes.
    size: u64,
    /// Its boot partition.
    boot: BootPart<'a>,
}

/// The boot partition of the source image.
#[derive(Clone, Copy)]
struct BootPart<'a> {
    /// Linux partition number.
    number: u32,
    /// Filesystem label.
    label: &'a str,
    /// Start in bytes.
    start: u64,
    /// Length in bytes.
    size: u64,
}

/// Where a stamp run writes: the hidden partial directory, renamed to
/// `final_dir` at the end (outputs are named by their final place).
struct Dirs<'a> {
    partial: &'a Path,
    final_dir: &'a Path,
}

/// What every device's output refers to: the source's digest and the
/// backing file path an overlay names (relative to the output directory).
struct Shared {
    source_sha256: String,
    backing: PathBuf,
}

fn stamp_into(
    req: &StampRequest,
    devices: &[Device],
    src: &Source<'_>,
    dirs: &Dirs<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<StampReport, Error> {
    let BootPart { number, label, .. } = src.boot;
    progress(&format!(
        "source {}: boot partition {number} ({label}), {} devices",
        req.image.display(),
        devices.len()
    ));
    let source_sha256 =
        sha256_sparse(src.image).map_err(out_err(&req.image, "hashing the image"))?;
    let image_abs = req
        .image
        .canonicalize()
        .map_err(out_err(&req.image, "resolving the image path"))?;
    let shared = Shared {
        source_sha256,
        backing: relative(dirs.final_dir, &image_abs),
    };
    let mut sums = String::new();
    let mut out = Vec::new();
    for d in devices {
        let (device, sha, manifest_sha) = stamp_device(req, src, dirs, &shared, d)?;
        let name_of = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let file_name = name_of(&device.output);
        sums.push_str(&format!("{sha}  {file_name}\n"));
        sums.push_str(&format!("{manifest_sha}  {}\n", name_of(&device.manifest)));
        progress(&format!(
            "{}: {} ({} boot files changed, sha256 {})",
            d.name,
            file_name,
            device.files_changed.len(),
            &sha[..16]
        ));
        out.push(device);
    }
    let sums_path = dirs.partial.join("SHA256SUMS");
    std::fs::write(&sums_path, sums).map_err(out_err(&sums_path, "writing"))?;
    Ok(StampReport {
        out_dir: dirs.final_dir.to_path_buf(),
        source_sha256: shared.source_sha256,
        boot_partition: (number, label.to_owned()),
        devices: out,
    })
}

/// Writes one device's image (or overlay) and manifest into the partial
/// directory; returns the device's report, its output's sha256 and its
/// manifest's.
fn stamp_device(
    req: &StampRequest,
    src: &Source<'_>,
    dirs: &Dirs<'_>,
    shared: &Shared,
    d: &Device,
) -> Result<(StampedDevice, String, String), Error> {
    let mut files = Vec::new();
    if let Some(n) = &d.network {
        let uuid = d.config["uuid"].as_str().unwrap_or_default();
        files.push((format!("system-connections/{}", n.name), n.keyfile(uuid)));
    }
    let edits = BootEdits {
        config_merge: Some(with_secret_record(&d.config)),
        files,
        remove: Vec::new(),
    };
    let (file_name, rep, boot_sha256) = match req.format {
        StampFormat::Raw => {
            let file_name = format!("{}.img", d.name);
            let path = dirs.partial.join(&file_name);
            let (rep, boot_sha) = stamp_raw(req, src, &edits, &path)?;
            (file_name, rep, boot_sha)
        }
        StampFormat::Qcow2Overlay => {
            let file_name = format!("{}.qcow2", d.name);
            let path = dirs.partial.join(&file_name);
            let scratch_path = dirs.partial.join(format!(".{}.scratch", d.name));
            let scratch = File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&scratch_path)
                .map_err(out_err(&scratch_path, "creating"))?;
            let r = overlay(
                src,
                &Overlay {
                    scratch: &scratch,
                    path: &path,
                    backing: &shared.backing,
                },
                &edits,
                req.timestamp,
            );
            drop(scratch);
            let _ = std::fs::remove_file(&scratch_path);
            let (rep, boot_sha) = r?;
            (file_name, rep, boot_sha)
        }
    };
    let path = dirs.partial.join(&file_name);
    let f = File::open(&path).map_err(out_err(&path, "opening"))?;
    let sha = sha256_sparse(&f).map_err(out_err(&path, "hashing"))?;
    let manifest = device_manifest(req, src, shared, d, (&file_name, &sha), &rep, &boot_sha256);
    let manifest_name = format!("{}.manifest.json", d.name);
    let mpath = dirs.partial.join(&manifest_name);
    let mut bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Image {
        path: mpath.clone(),
        reason: e.to_string(),
    })?;
    bytes.push(b'\n');
    let manifest_sha = hex(&Sha256::digest(&bytes));
    std::fs::write(&mpath, bytes).map_err(out_err(&mpath, "writing"))?;
    let device = StampedDevice {
        name: d.name.clone(),
        output: dirs.final_dir.join(&file_name),
        sha256: sha.clone(),
        boot_sha256,
        manifest: dirs.final_dir.join(manifest_name),
        files_changed: rep.files_changed,
    };
    Ok((device, sha, manifest_sha))
}

/// A sparse copy of the source at `path` with its boot partition edited;
/// returns the edit report and the boot partition's sha256.
fn stamp_raw(
    req: &StampRequest,
    src: &Source<'_>,
    edits: &BootEdits,
    path: &Path,
) -> Result<(crate::BootEditReport, String), Error> {
    let f = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(out_err(path, "creating"))?;
    let mut w = RawWriter::new(f.try_clone().map_err(out_err(path, "opening"))?, src.size);
    kiln_vdisk::feed_sparse_file(src.image, &mut w)
        .map_err(vdisk_err(path, "copying the image"))?;
    w.finish().map_err(vdisk_err(path, "copying the image"))?;
    let BootPart { start, size, .. } = src.boot;
    let rep = edit_boot_partition(&f, start, size, edits, req.timestamp)?;
    let boot_sha = sha256_region(&f, start, size).map_err(out_err(path, "hashing"))?;
    Ok((rep, boot_sha))
}

/// One device's `<name>.manifest.json`; `output` is the output file's
/// name and sha256.
fn device_manifest(
    req: &StampRequest,
    src: &Source<'_>,
    shared: &Shared,
    d: &Device,
    (file_name, sha): (&str, &str),
    rep: &crate::BootEditReport,
    boot_sha256: &str,
) -> Value {
    let mut config = rep.config.clone();
    redact_secrets(&mut config);
    let mut output = json!({
        "file": file_name,
        "format": req.format.name(),
        "sha256": sha,
    });
    if req.format == StampFormat::Qcow2Overlay {
        output["backing_file"] = json!(shared.backing.to_string_lossy());
        output["backing_format"] = json!("raw");
    }
    let b = src.boot;
    json!({
        STAMP_MANIFEST_KEY: 1,
        "device": d.name,
        "source_image": {
            "path": req.image.to_string_lossy(),
            "sha256": shared.source_sha256,
        },
        "output": output,
        "boot_partition": {
            "number": b.number,
            "label": b.label,
            "start_bytes": b.start,
            "size_bytes": b.size,
            "fs": rep.fs,
            "fs_id": rep.fs_id,
            "sha256": boot_sha256,
        },
        "files_changed": rep.files_changed,
        "network_profile": d.network.as_ref().map(|n| n.name.clone()),
        "config": config,
    })
}

/// Where a qcow2 overlay is made: a sparse scratch copy of the boot
/// partition's cluster window, the overlay's path and its backing file.
struct Overlay<'a> {
    scratch: &'a File,
    path: &'a Path,
    backing: &'a Path,
}

/// Edits the boot partition on a sparse scratch copy of its cluster
/// window, then writes the clusters that differ from the image as a qcow2
/// overlay backed by it. Returns the edit report and the boot sha256.
fn overlay(
    src: &Source<'_>,
    to: &Overlay<'_>,
    edits: &BootEdits,
    time: i64,
) -> Result<(crate::BootEditReport, String), Error> {
    let (image, size) = (src.image, src.size);
    let (start, psize) = (src.boot.start, src.boot.size);
    let (scratch, path, backing) = (to.scratch, to.path, to.backing);
    scratch
        .set_len(size)
        .map_err(out_err(path, "sizing the scratch file"))?;
    let ws = start / OVERLAY_CLUSTER * OVERLAY_CLUSTER;
    let we = (start + psize)
        .div_ceil(OVERLAY_CLUSTER)
        .saturating_mul(OVERLAY_CLUSTER)
        .min(size);
    let mut a = vec![0u8; OVERLAY_CLUSTER as usize];
    let mut b = vec![0u8; OVERLAY_CLUSTER as usize];
    let mut off = ws;
    while off < we {
        let n = usize::try_from((we - off).min(OVERLAY_CLUSTER)).unwrap_or(a.len());
        FileExt::read_exact_at(image, &mut a[..n], off)
            .map_err(out_err(path, "reading the image"))?;
        if a[..n].iter().any(|&x| x != 0) {
            FileExt::write_all_at(scratch, &a[..n], off)
                .map_err(out_err(path, "writing the scratch file"))?;
        }
        off += n as u64;
    }
    let rep = edit_boot_partition(scratch, start, psize, edits, time)?;
    let boot_sha = sha256_region(scratch, start, psize).map_err(out_err(path, "hashing"))?;
    let f = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(out_err(path, "creating"))?;
    let name = backing.to_string_lossy();
    let opts = Qcow2Options::new().backing_file(&name, "raw");
    let mut w = Qcow2Writer::new(f, size, &opts).map_err(vdisk_err(path, "writing the overlay"))?;
    let mut off = ws;
    while off < we {
        let n = usize::try_from((we - off).min(OVERLAY_CLUSTER)).unwrap_or(a.len());
        FileExt::read_exact_at(image, &mut a[..n], off)
            .map_err(out_err(path, "reading the image"))?;
        FileExt::read_exact_at(scratch, &mut b[..n], off)
            .map_err(out_err(path, "reading the scratch file"))?;
        if a[..n] != b[..n] {
            w.write_extent(off, &b[..n])
                .map_err(vdisk_err(path, "writing the overlay"))?;
        }
        off += n as u64;
    }
    w.finish().map_err(vdisk_err(path, "writing the overlay"))?;
    Ok((rep, boot_sha))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(name);
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    const U1: &str = "0123456789abcdef0123456789abcdef";
    const U2: &str = "fedcba9876543210fedcba9876543210";

    /// Issue 16 finding 16: spreadsheet programs save "CSV UTF-8" with a
    /// byte order mark; non-UTF-8 is bad input (exit 2), not an I/O error.
    #[test]
    fn csv_with_bom_reads_and_non_utf8_is_bad_input() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("devices.csv");
        let mut bytes = b"\xEF\xBB\xBFuuid,hostname\n".to_vec();
        bytes.extend_from_slice(format!("{U1},host-1\n").as_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let devs = read_devices(&p).unwrap();
        assert_eq!(devs[0].config["hostname"], json!("host-1"));
        let mut latin1 = format!("uuid,hostname\n{U1},h\n").into_bytes();
        latin1.extend_from_slice(b"x\xE9");
        std::fs::write(&p, &latin1).unwrap();
        let e = read_devices(&p).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("devices.csv:3") && msg.contains("offset 50"),
            "{msg}"
        );
    }

    #[test]
    fn csv_nesting_types_quotes_and_network() {
        let text = format!(
            "# fleet\nname,uuid,hostname,deviceApiKey,os.network.wifi,os.sshKeys:json,note,network.address,network.gateway,network.dns\n\
             dev-1,{U1},host-1,s3cret,false,\"[\"\"ssh-ed25519 AAA\"\"]\",\"a, \"\"quoted\"\"\nnote\",10.0.0.5/24,10.0.0.1,1.1.1.1;8.8.8.8\n\r\n\
             ,{U2},host-2,,,,,,,\n"
        );
        let (_d, p) = write("devices.csv", &text);
        let devs = read_devices(&p).unwrap();
        assert_eq!(devs.len(), 2);
        let a = &devs[0];
        assert_eq!((a.name.as_str(), a.line), ("dev-1", 3));
        assert_eq!(a.config["os"]["network"]["wifi"], json!(false));
        assert_eq!(a.config["os"]["sshKeys"], json!(["ssh-ed25519 AAA"]));
        assert_eq!(a.config["note"], json!("a, \"quoted\"\nnote"));
        let n = a.network.as_ref().unwrap();
        assert_eq!(n.dns, vec!["1.1.1.1", "8.8.8.8"]);
        let kf = String::from_utf8(n.keyfile(U1)).unwrap();
        assert!(kf.contains("address1=10.0.0.5/24,10.0.0.1\n"), "{kf}");
        assert!(kf.contains("dns=1.1.1.1;8.8.8.8;\n"), "{kf}");
        assert_eq!(n.keyfile(U1), n.keyfile(U1));
        let b = &devs[1];
        assert_eq!((b.name.as_str(), b.line), ("host-2", 6));
        assert!(b.network.is_none());
        assert_eq!(b.config, json!({"uuid": U2, "hostname": "host-2"}));
    }

    #[test]
    fn json_devices_with_lines() {
        let text = format!(
            "[\n  {{\"uuid\": \"{U1}\", \"hostname\": \"a\", \"supervisor\": {{\"x\": 1}}}},\n  {{\"uuid\": \"{U2}\",\n   \"hostname\": \"b\", \"network\": {{\"address\": \"192.168.0.9/16\", \"dns\": [\"9.9.9.9\"]}}}}\n]\n"
        );
        let (_d, p) = write("devices.json", &text);
        let devs = read_devices(&p).unwrap();
        assert_eq!(devs[0].line, 2);
        assert_eq!(devs[1].line, 3);
        assert_eq!(devs[0].config["supervisor"]["x"], json!(1));
        assert_eq!(devs[1].network.as_ref().unwrap().dns, vec!["9.9.9.9"]);
    }

    fn err(name: &str, text: &str) -> String {
        let (_d, p) = write(name, text);
        let e = read_devices(&p).unwrap_err().to_string();
        e.replace(&p.display().to_string(), name)
    }

    #[test]
    fn bad_devices_name_file_and_line() {
        assert!(err("d.csv", "hostname\nx\n").starts_with("d.csv:1: missing column `uuid`"));
        assert!(err("d.csv", &format!("uuid\n{U1}\n"))
            .starts_with("d.csv:1: missing column `hostname`"));
        let e = err("d.csv", &format!("uuid,hostname\n{U1},a\n{U2},a\n"));
        assert!(e.starts_with("d.csv:3: duplicate device name"), "{e}");
        let e = err("d.csv", &format!("uuid,hostname\n{U1},a\n{U1},b\n"));
        assert!(e.starts_with("d.csv:3: duplicate uuid"), "{e}");
        let e = err("d.csv", &format!("uuid,hostname,x:json\n{U1},a,{{bad\n"));
        assert!(
            e.starts_with("d.csv:2: column `x:json`: invalid JSON"),
            "{e}"
        );
        let e = err("d.csv", &format!("uuid,hostname\n{U1},a,extra\n"));
        assert!(e.starts_with("d.csv:2: 3 fields"), "{e}");
        let e = err("d.csv", "uuid,hostname\nxyz,a\n");
        assert!(e.starts_with("d.csv:2: `uuid` must be"), "{e}");
        let e = err(
            "d.csv",
            &format!("uuid,hostname,network.address\n{U1},a,10.0.0.1\n"),
        );
        assert!(e.contains("prefix length"), "{e}");
        let e = err("d.json", "[{\"uuid\": 1}");
        assert!(e.starts_with("d.json:1: invalid JSON"), "{e}");
        let e = err("d.json", &format!("[\n{{\"uuid\": \"{U1}\"}}\n]"));
        assert!(e.starts_with("d.json:2: missing `hostname`"), "{e}");
        assert!(err("d.csv", "uuid,hostname\n").contains("no devices"));
    }

    #[test]
    fn sparse_hash_equals_plain_hash() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(9 << 20).unwrap();
        FileExt::write_all_at(&f, &[7u8; 5000], 3 << 20).unwrap();
        FileExt::write_all_at(&f, b"end", (9 << 20) - 3).unwrap();
        let mut all = vec![0u8; 9 << 20];
        FileExt::read_exact_at(&f, &mut all, 0).unwrap();
        assert_eq!(sha256_sparse(&f).unwrap(), hex(&Sha256::digest(&all)));
        f.set_len(10 << 20).unwrap(); // trailing hole
        all.resize(10 << 20, 0);
        assert_eq!(sha256_sparse(&f).unwrap(), hex(&Sha256::digest(&all)));
        assert_eq!(
            sha256_region(&f, 0, 10 << 20).unwrap(),
            hex(&Sha256::digest(&all))
        );
    }

    #[test]
    fn redaction_and_relative_paths() {
        let mut v = json!({"apiKey": "a", "os": {"sshKeys": ["k"], "x": 1}, "registryToken": "t", "list": [{"password": "p"}], "uuid": "u"});
        redact_secrets(&mut v);
        let s = v.to_string();
        for secret in ["\"a\"", "\"k\"", "\"t\"", "\"p\""] {
            assert!(!s.contains(secret), "{s}");
        }
        assert_eq!(v["uuid"], json!("u"));
        assert_eq!(
            relative(Path::new("/a/b/out"), Path::new("/a/img.raw")),
            PathBuf::from("../../img.raw")
        );
        assert_eq!(
            relative(Path::new("/a"), Path::new("/a/x/i")),
            PathBuf::from("x/i")
        );
    }
}
