//! Delivery: every requested artifact from the finished raw image in one
//! sequential read of its data regions.
//!
//! The raw image is written first (sparse, positional: the filesystem
//! writers place metadata and data in any order), then read once, data
//! regions only (SEEK_DATA/SEEK_HOLE; all-zero blocks skipped), and the
//! extent stream fans out to: the bmap hasher (bmaptool 2.0 ranges, and
//! the sha256 of the whole image with holes as zeros), the virtual-disk
//! writers (qcow2, VMDK streamOptimized, VHD fixed/dynamic, each straight
//! to its own file) and the compressor of the raw stream (xz/gz/zst).
//! When `raw` is not requested and no compression asks for it, the raw
//! file is removed at the end. Every artifact goes to a temporary name
//! and is renamed into place only when all of them succeeded.
//!
//! Deviation from a strict single pass over the partition data: the raw
//! image itself is the intermediate (the ext4 writer fills inode tables
//! and bitmaps at the end, so the disk cannot be streamed in order while
//! it is built); the second pass reads only allocated data.

use crate::Error;
use kiln_artifact::bmap::{BlockRange, Bmap, BmapStreamHasher};
use kiln_artifact::compress::{CompressOptions, Encoder};
use kiln_artifact::digest::{HashingWriter, Sha256Digest, Sha256Hasher};
use kiln_artifact::sums::Sha256Sums;
use kiln_vdisk::{DataRegions, DiskWriter, Format, OutputFormat, WriteSummary};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// An image format to deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DiskFormat {
    /// Sparse raw image (the output path as given).
    Raw,
    /// qcow2 v3 (`.qcow2`).
    Qcow2,
    /// VMDK streamOptimized (`.vmdk`).
    Vmdk,
    /// VHD fixed (`.vhd`).
    Vhd,
    /// VHD dynamic (`.dyn.vhd`).
    VhdDynamic,
}

impl DiskFormat {
    /// Parses `raw`, `qcow2`, `vmdk`, `vhd`, `vhd-dynamic`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "raw" => Self::Raw,
            "qcow2" => Self::Qcow2,
            "vmdk" => Self::Vmdk,
            "vhd" => Self::Vhd,
            "vhd-dynamic" => Self::VhdDynamic,
            _ => return None,
        })
    }
    fn suffix(self) -> &'static str {
        match self {
            Self::Raw => "",
            Self::Qcow2 => ".qcow2",
            Self::Vmdk => ".vmdk",
            Self::Vhd => ".vhd",
            Self::VhdDynamic => ".dyn.vhd",
        }
    }
    fn manifest_format(self) -> kiln_artifact::manifest::ArtifactFormat {
        use kiln_artifact::manifest::ArtifactFormat as A;
        match self {
            Self::Raw => A::Raw,
            Self::Qcow2 => A::Qcow2,
            Self::Vmdk => A::Vmdk,
            Self::Vhd => A::VhdFixed,
            Self::VhdDynamic => A::VhdDynamic,
        }
    }
}

/// What to deliver.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Image formats.
    pub formats: Vec<DiskFormat>,
    /// Compress the raw image (`.img.xz` etc. instead of the sparse file).
    pub compress: Option<CompressOptions>,
    /// Seed for format-level identities (VHD UUID, VMDK CID).
    pub seed: [u8; 16],
    /// Timestamp for format headers (VHD).
    pub timestamp: i64,
}

/// One delivered file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Delivered {
    /// Path.
    pub path: PathBuf,
    /// Content format (`raw`, `qcow2`, ..., `bmap`).
    pub format: &'static str,
    /// Size of the file in bytes.
    pub size_bytes: u64,
    /// sha256 of the file as written.
    pub sha256: String,
    #[serde(skip)]
    pub(crate) digest: Option<Sha256Digest>,
    #[serde(skip)]
    pub(crate) artifact_format: Option<kiln_artifact::manifest::ArtifactFormat>,
    #[serde(skip)]
    pub(crate) compression: kiln_artifact::compress::Compression,
}

impl Delivered {
    /// A small generated file (manifest, checksums) with its digest.
    pub(crate) fn file(path: PathBuf, format: &'static str, bytes: &[u8]) -> Self {
        let digest = Sha256Digest::of(bytes);
        Self {
            path,
            format,
            size_bytes: bytes.len() as u64,
            sha256: digest.to_hex(),
            digest: Some(digest),
            artifact_format: None,
            compression: kiln_artifact::compress::Compression::None,
        }
    }
}

/// Temporary files removed unless committed.
pub(crate) struct Temps(Vec<(PathBuf, PathBuf)>);

impl Temps {
    pub(crate) fn new() -> Self {
        Self(Vec::new())
    }
    /// A temporary path for `dest`, registered for cleanup.
    pub(crate) fn add(&mut self, dest: &Path) -> PathBuf {
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dest.with_file_name(format!(".{name}.kiln-partial"));
        self.0.push((tmp.clone(), dest.to_path_buf()));
        tmp
    }
    /// Renames every temporary file into place.
    pub(crate) fn commit(mut self) -> Result<(), Error> {
        for (tmp, dest) in std::mem::take(&mut self.0) {
            std::fs::rename(&tmp, &dest).map_err(|source| Error::Output {
                path: dest.clone(),
                op: "cannot move the finished file into place",
                source,
            })?;
        }
        Ok(())
    }
}

impl Drop for Temps {
    fn drop(&mut self) {
        for (tmp, _) in &self.0 {
            if tmp.exists() {
                if let Err(e) = std::fs::remove_file(tmp) {
                    tracing::warn!("could not remove {}: {e}", tmp.display());
                }
            }
        }
    }
}

fn out_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Output {
        path: path.to_path_buf(),
        op,
        source,
    }
}

fn vdisk_err(path: &Path) -> impl FnOnce(kiln_vdisk::Error) -> Error + '_ {
    move |e| Error::Output {
        path: path.to_path_buf(),
        op: "cannot write the disk image format",
        source: std::io::Error::other(e.to_string()),
    }
}

fn artifact_err(path: &Path) -> impl FnOnce(kiln_artifact::Error) -> Error + '_ {
    move |e| Error::Output {
        path: path.to_path_buf(),
        op: "cannot write the artifact",
        source: std::io::Error::other(e.to_string()),
    }
}

/// Zero bytes fed in chunks (holes into a compressor).
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// The extent stream's fan-out.
struct Fanout<'a> {
    size: u64,
    pos: u64,
    bmap: BmapStreamHasher,
    writers: Vec<(PathBuf, Box<dyn DiskWriter + 'a>)>,
    compressed: Option<(PathBuf, Encoder<HashingWriter<BufWriter<File>>>)>,
}

impl Fanout<'_> {
    fn zeros(&mut self, mut len: u64) -> Result<(), Error> {
        self.bmap.update_zeros(len);
        if let Some((path, enc)) = &mut self.compressed {
            while len > 0 {
                let n = usize::try_from(len.min(ZEROS.len() as u64)).unwrap_or(ZEROS.len());
                enc.write_all(&ZEROS[..n])
                    .map_err(out_err(path, "cannot write the compressed image"))?;
                len -= n as u64;
            }
        }
        Ok(())
    }
}

/// Carries a pipeline error through the vdisk writer interface.
fn wrap(e: Error) -> kiln_vdisk::Error {
    kiln_vdisk::Error::Io {
        offset: 0,
        source: std::io::Error::other(e.to_string()),
    }
}

impl DiskWriter for Fanout<'_> {
    fn format(&self) -> Format {
        Format::Raw
    }
    fn virtual_size(&self) -> u64 {
        self.size
    }
    fn write_extent(&mut self, offset: u64, data: &[u8]) -> kiln_vdisk::Result<()> {
        let gap = offset.saturating_sub(self.pos);
        self.zeros(gap).map_err(wrap)?;
        self.bmap.update(data);
        if let Some((path, enc)) = &mut self.compressed {
            enc.write_all(data)
                .map_err(out_err(path, "cannot write the compressed image"))
                .map_err(wrap)?;
        }
        for (_, w) in &mut self.writers {
            w.write_extent(offset, data)?;
        }
        self.pos = offset + data.len() as u64;
        Ok(())
    }
    fn finish(&mut self) -> kiln_vdisk::Result<WriteSummary> {
        let gap = self.size.saturating_sub(self.pos);
        self.zeros(gap).map_err(wrap)?;
        self.pos = self.size;
        Ok(WriteSummary {
            virtual_size: self.size,
            file_size: self.size,
            allocated_bytes: 0,
        })
    }
}

fn sha256_of(path: &Path) -> Result<(Sha256Digest, u64), Error> {
    let mut f = File::open(path).map_err(out_err(path, "cannot read back the artifact"))?;
    let mut h = Sha256Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(out_err(path, "cannot read back the artifact"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let len = h.bytes();
    Ok((h.finish(), len))
}

/// sha256 of the sparse image `raw`: its data `extents` read back, the
/// holes between them hashed as zeros.
fn sparse_sha256(raw: &File, extents: &[(u64, u64)], size: u64) -> std::io::Result<Sha256Digest> {
    use std::os::unix::fs::FileExt;
    let mut h = Sha256Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    for &(off, len) in extents {
        let end = (off + len).min(size);
        h.update_zeros(off.saturating_sub(pos));
        let mut at = off.max(pos);
        while at < end {
            let n = usize::try_from((end - at).min(buf.len() as u64)).unwrap_or(buf.len());
            let chunk = buf.get_mut(..n).unwrap_or_default();
            raw.read_exact_at(chunk, at)?;
            h.update(chunk);
            at += n as u64;
        }
        pos = pos.max(end);
    }
    h.update_zeros(size.saturating_sub(pos));
    Ok(h.finish())
}

/// Compressed stream of [`Fanout`]: its path and encoder.
type Compressed = Option<(PathBuf, Encoder<HashingWriter<BufWriter<File>>>)>;

/// Feeds `raw` through `fan` (bmap ranges, virtual disks, compressor),
/// finishes the virtual disks and hashes them.
#[allow(clippy::type_complexity)]
fn fan_out(
    raw: &File,
    mut fan: Fanout<'_>,
    vdisk_files: Vec<(DiskFormat, PathBuf, PathBuf)>,
    out: &Path,
) -> Result<
    (
        Bmap,
        Compressed,
        Vec<(DiskFormat, PathBuf, Sha256Digest, u64)>,
    ),
    Error,
> {
    kiln_vdisk::feed_sparse_file(raw, &mut fan).map_err(vdisk_err(out))?;
    fan.finish().map_err(vdisk_err(out))?;
    let Fanout {
        bmap,
        writers,
        compressed,
        ..
    } = fan;
    for (path, mut w) in writers {
        w.finish().map_err(vdisk_err(&path))?;
    }
    let mut vdisk_digests = Vec::new();
    for (f, dest, tmp) in vdisk_files {
        let (digest, len) = sha256_of(&tmp)?;
        vdisk_digests.push((f, dest, digest, len));
    }
    let bmap = bmap.finish_ranges().map_err(artifact_err(out))?;
    Ok((bmap, compressed, vdisk_digests))
}

/// Delivers the finished raw image `raw` (at temporary path `raw_tmp`,
/// final path `out`). Returns the delivered files and the bmap; the raw
/// file's own rename is the caller's (it is `raw_keep`).
pub(crate) fn deliver(
    raw: &File,
    out: &Path,
    d: &Delivery,
    temps: &mut Temps,
) -> Result<(Vec<Delivered>, Sha256Digest, bool), Error> {
    let size = raw
        .metadata()
        .map_err(out_err(out, "cannot stat the image"))?
        .len();
    // Mapped ranges for the bmap: the data regions of the sparse file.
    let mut extents = Vec::new();
    let mut from = 0;
    while let Some(e) = raw
        .next_data(from)
        .map_err(out_err(out, "cannot map the image"))?
    {
        extents.push((e.offset, e.len));
        from = e.offset + e.len;
        if from >= size {
            break;
        }
    }
    // Without a raw image delivered there is no bmap to hash ranges for
    // (the whole-image digest is still computed).
    let mapped = if d.formats.contains(&DiskFormat::Raw) {
        BlockRange::cover_extents(&extents, 4096).map_err(artifact_err(out))?
    } else {
        Vec::new()
    };
    // The whole-image digest is computed on a second thread reading the
    // image itself (holes hashed as zeros), so it never waits for, or
    // holds up, the fan-out below; the bmap ranges are hashed here.
    let bmap = BmapStreamHasher::ranges_only(size, 4096, mapped).map_err(artifact_err(out))?;

    let stem = {
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = name
            .strip_suffix(".img")
            .or_else(|| name.strip_suffix(".raw"))
            .unwrap_or(&name)
            .to_string();
        out.with_file_name(stem)
    };
    let with_suffix = |s: &str| PathBuf::from(format!("{}{s}", stem.display()));

    let mut writers: Vec<(PathBuf, Box<dyn DiskWriter>)> = Vec::new();
    let mut vdisk_files = Vec::new();
    for f in &d.formats {
        let opts = match f {
            DiskFormat::Raw => continue,
            DiskFormat::Qcow2 => OutputFormat::Qcow2(kiln_vdisk::Qcow2Options::new()),
            DiskFormat::Vmdk => {
                OutputFormat::Vmdk(kiln_vdisk::VmdkOptions::new().cid(u32::from_le_bytes([
                    d.seed[0], d.seed[1], d.seed[2], d.seed[3],
                ])))
            }
            DiskFormat::Vhd | DiskFormat::VhdDynamic => OutputFormat::Vhd(
                kiln_vdisk::VhdOptions::new()
                    .kind(if *f == DiskFormat::Vhd {
                        kiln_vdisk::VhdKind::Fixed
                    } else {
                        kiln_vdisk::VhdKind::Dynamic
                    })
                    .unique_id(kiln_units::Guid::v4_from_seed(d.seed))
                    .timestamp_unix(u64::try_from(d.timestamp).unwrap_or(0)),
            ),
        };
        let dest = with_suffix(f.suffix());
        let tmp = temps.add(&dest);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(out_err(&dest, "cannot create the output file"))?;
        let w = opts.create_writer(file, size).map_err(vdisk_err(&dest))?;
        writers.push((dest.clone(), w));
        vdisk_files.push((*f, dest, tmp));
    }
    let compressed = match &d.compress {
        Some(c) => {
            let ext = c.compression().extension().unwrap_or("");
            let dest = PathBuf::from(format!("{}.{ext}", out.display()));
            let tmp = temps.add(&dest);
            let f = File::create(&tmp).map_err(out_err(&dest, "cannot create the output file"))?;
            let enc = Encoder::new(HashingWriter::new(BufWriter::with_capacity(1 << 20, f)), c)
                .map_err(artifact_err(&dest))?;
            Some((dest, tmp, enc))
        }
        None => None,
    };
    let (compressed_paths, compressed) = match compressed {
        Some((dest, tmp, enc)) => (Some((dest.clone(), tmp)), Some((dest, enc))),
        None => (None, None),
    };

    let fan = Fanout {
        size,
        pos: 0,
        bmap,
        writers,
        compressed,
    };
    let (fanned, whole) = std::thread::scope(|scope| {
        let whole = std::thread::Builder::new()
            .name("sha256".into())
            .spawn_scoped(scope, || sparse_sha256(raw, &extents, size));
        let fanned = fan_out(raw, fan, vdisk_files, out);
        let whole = match whole {
            Ok(h) => h
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the hashing thread panicked"))),
            Err(e) => Err(e),
        };
        (fanned, whole)
    });
    let (bmap, compressed, vdisk_digests) = fanned?;
    let image_digest = whole.map_err(out_err(out, "cannot read back the image"))?;

    let mut delivered = Vec::new();
    let keep_raw = d.formats.contains(&DiskFormat::Raw) && d.compress.is_none();
    if keep_raw {
        delivered.push(Delivered {
            path: out.to_path_buf(),
            format: "raw",
            size_bytes: size,
            sha256: image_digest.to_hex(),
            digest: Some(image_digest),
            artifact_format: Some(kiln_artifact::manifest::ArtifactFormat::Raw),
            compression: kiln_artifact::compress::Compression::None,
        });
    }
    if let (Some((dest, enc)), Some((_, tmp))) = (compressed, compressed_paths) {
        let hw = enc.finish().map_err(artifact_err(&dest))?;
        let (mut bw, digest, len) = hw.finish();
        bw.flush()
            .map_err(out_err(&dest, "cannot write the compressed image"))?;
        let f = bw.into_inner().map_err(|e| Error::Output {
            path: dest.clone(),
            op: "cannot write the compressed image",
            source: e.into_error(),
        })?;
        f.sync_all()
            .map_err(out_err(&dest, "cannot flush the compressed image"))?;
        drop(tmp);
        delivered.push(Delivered {
            path: dest,
            format: "raw",
            size_bytes: len,
            sha256: digest.to_hex(),
            digest: Some(digest),
            artifact_format: Some(kiln_artifact::manifest::ArtifactFormat::Raw),
            compression: d
                .compress
                .as_ref()
                .map(CompressOptions::compression)
                .unwrap_or(kiln_artifact::compress::Compression::None),
        });
    }
    for (f, dest, digest, len) in vdisk_digests {
        delivered.push(Delivered {
            path: dest,
            format: match f {
                DiskFormat::Raw => "raw",
                DiskFormat::Qcow2 => "qcow2",
                DiskFormat::Vmdk => "vmdk",
                DiskFormat::Vhd => "vhd",
                DiskFormat::VhdDynamic => "vhd-dynamic",
            },
            size_bytes: len,
            sha256: digest.to_hex(),
            digest: Some(digest),
            artifact_format: Some(f.manifest_format()),
            compression: kiln_artifact::compress::Compression::None,
        });
    }
    // The block map describes the raw image (also when only its
    // compressed form is delivered: bmaptool decompresses on the fly).
    if d.formats.contains(&DiskFormat::Raw) {
        let dest = PathBuf::from(format!("{}.bmap", out.display()));
        let tmp = temps.add(&dest);
        let mut f = File::create(&tmp).map_err(out_err(&dest, "cannot create the output file"))?;
        bmap.write_to(&mut f).map_err(artifact_err(&dest))?;
        f.sync_all()
            .map_err(out_err(&dest, "cannot flush the bmap"))?;
        let (digest, len) = sha256_of(&tmp)?;
        delivered.push(Delivered {
            path: dest,
            format: "bmap",
            size_bytes: len,
            sha256: digest.to_hex(),
            digest: Some(digest),
            artifact_format: Some(kiln_artifact::manifest::ArtifactFormat::Bmap),
            compression: kiln_artifact::compress::Compression::None,
        });
    }
    Ok((delivered, image_digest, keep_raw))
}

/// Writes `SHA256SUMS` (sha256sum -c format) for `files` into `dir`.
pub(crate) fn write_sums(
    dir: &Path,
    files: &[Delivered],
    temps: &mut Temps,
) -> Result<Delivered, Error> {
    let mut sums = Sha256Sums::new();
    for f in files {
        let name = f
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(d) = f.digest {
            sums.insert(&name, d).map_err(artifact_err(&f.path))?;
        }
    }
    let dest = dir.join("SHA256SUMS");
    let tmp = temps.add(&dest);
    let text = sums.render();
    std::fs::write(&tmp, &text).map_err(out_err(&dest, "cannot write SHA256SUMS"))?;
    Ok(Delivered::file(dest, "sha256sums", text.as_bytes()))
}
