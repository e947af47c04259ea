//! Delivery: every requested artifact from one ordered stream of the
//! disk's data.
//!
//! The stream fans out to: the bmap hasher (bmaptool 2.0 ranges, and
//! the sha256 of the whole image with holes as zeros), the virtual-disk
//! writers (qcow2, VMDK streamOptimized, VHD fixed/dynamic, each straight
//! to its own file) and the compressor of the raw stream (xz/gz/zst).
//! Every artifact goes to a temporary name and is renamed into place only
//! when all of them succeeded.
//!
//! Two ways in:
//! - streamed ([`deliver_stream`]): when only sequential outputs are asked
//!   for (VMDK, the compressed raw image), the disk arrives in order from
//!   [`crate::stream`] and is fanned out as it comes, with no image file;
//! - positional ([`deliver`]): otherwise the ext4 and FAT writers' output
//!   (metadata last, at lower offsets) is written into one image file,
//!   then read once (allocated data only) for the rest:
//!   - when qcow2 is delivered and raw is not, that file is the qcow2
//!     image itself, written in place ([`crate::sink`]): no raw
//!     intermediate; the other outputs are read from it through
//!     kiln-vdisk's qcow2 reader;
//!   - else, when a fixed VHD is delivered and raw is not, it is the VHD:
//!     the raw disk, read like a raw image, then padded and given its
//!     footer;
//!   - else, for a dynamic VHD without raw, the dynamic VHD, written in
//!     place like the qcow2;
//!   - otherwise it is the sparse raw image, delivered.

use crate::Error;
use kiln_artifact::bmap::{BlockRange, Bmap, BmapStreamHasher};
use kiln_artifact::compress::{CompressOptions, Encoder};
use kiln_artifact::digest::{HashingWriter, Sha256Digest, Sha256Hasher};
use kiln_artifact::sums::Sha256Sums;
use kiln_units::ReadAt;
use kiln_vdisk::{DataRegions, DiskWriter, Format, OutputFormat, VirtualDisk, WriteSummary};
use std::fs::File;
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

/// The output format the build writes in place instead of a raw image,
/// when raw is not delivered: qcow2 (positionally, [`crate::sink`]), else
/// a fixed VHD (the raw disk, then its footer), else a dynamic VHD
/// (positionally); `None` otherwise (VMDK and compressed forms only).
pub(crate) fn in_place_format(d: &Delivery) -> Option<DiskFormat> {
    if d.formats.contains(&DiskFormat::Raw) {
        None
    } else if d.formats.contains(&DiskFormat::Qcow2) {
        Some(DiskFormat::Qcow2)
    } else if d.formats.contains(&DiskFormat::Vhd) {
        Some(DiskFormat::Vhd)
    } else if d.formats.contains(&DiskFormat::VhdDynamic) {
        Some(DiskFormat::VhdDynamic)
    } else {
        None
    }
}

/// The path of format `f`'s file for the raw output path `out`: `out`
/// itself for raw, else its stem (without `.img`/`.raw`) and the format's
/// suffix.
pub(crate) fn format_path(out: &Path, f: DiskFormat) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if f == DiskFormat::Raw {
        return out.to_path_buf();
    }
    let stem = name
        .strip_suffix(".img")
        .or_else(|| name.strip_suffix(".raw"))
        .unwrap_or(&name);
    out.with_file_name(format!("{stem}{}", f.suffix()))
}

/// The written image delivery reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'a> {
    /// The sparse raw image.
    Raw(&'a File),
    /// An output written in place ([`in_place_format`]): the file, its
    /// temporary path and its format. A fixed VHD gets its footer here,
    /// after the disk has been read.
    InPlace {
        file: &'a File,
        tmp: &'a Path,
        format: DiskFormat,
        /// The disk's size (a VHD's virtual size is rounded up to 1 MiB).
        disk_bytes: u64,
    },
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

/// One temporary output waiting for its rename.
struct Pending {
    tmp: PathBuf,
    dest: PathBuf,
    /// A file that describes other outputs (bmap, manifest,
    /// `SHA256SUMS`) rather than holding data.
    index: bool,
}

/// Temporary files removed unless committed, and earlier outputs to
/// remove once they are.
///
/// The commit ([`Temps::commit`]) cannot rename a set of files
/// atomically, so it orders the renames such that an interruption at any
/// point leaves no index that disagrees with the files it describes: the
/// old indexes being replaced (bmap, manifest, `SHA256SUMS`) are removed
/// first, then the data files (disk images, compressed image) are renamed,
/// then the new indexes, `SHA256SUMS` last. Killed in between, each file
/// is wholly old or wholly new, and every bmap, manifest or checksum list
/// present is true of the files beside it (a missing one says the set is
/// incomplete; `kiln flash` never pairs an old bmap with a new image).
pub(crate) struct Temps {
    pending: Vec<Pending>,
    stale: Vec<PathBuf>,
}

impl Temps {
    pub(crate) fn new() -> Self {
        Self {
            pending: Vec::new(),
            stale: Vec::new(),
        }
    }
    /// Removes `stale` (an earlier build's output this one does not
    /// write again) after a successful commit, never before.
    pub(crate) fn remove_on_commit(&mut self, stale: PathBuf) {
        self.stale.push(stale);
    }
    /// Creates the temporary file of the data output `dest`
    /// ([`crate::outpath`]: only a regular file is ever replaced),
    /// registered for cleanup and for the rename into place.
    pub(crate) fn create(&mut self, dest: &Path) -> Result<(PathBuf, File), Error> {
        self.create_as(dest, false)
    }
    /// As [`Temps::create`], for an index over other outputs (the bmap).
    pub(crate) fn create_index(&mut self, dest: &Path) -> Result<(PathBuf, File), Error> {
        self.create_as(dest, true)
    }
    fn create_as(&mut self, dest: &Path, index: bool) -> Result<(PathBuf, File), Error> {
        let (tmp, file) = crate::outpath::create_partial(dest)?;
        self.pending.push(Pending {
            tmp: tmp.clone(),
            dest: dest.to_path_buf(),
            index,
        });
        Ok((tmp, file))
    }
    /// Registers a data output created elsewhere (the disk image written
    /// in place) for the rename into place and for cleanup.
    pub(crate) fn adopt(&mut self, tmp: PathBuf, dest: PathBuf) {
        self.pending.push(Pending {
            tmp,
            dest,
            index: false,
        });
    }
    /// Writes `bytes` as the temporary file of the index `dest` (manifest,
    /// `SHA256SUMS`).
    pub(crate) fn write(
        &mut self,
        dest: &Path,
        bytes: &[u8],
        op: &'static str,
    ) -> Result<(), Error> {
        let (_, mut f) = self.create_index(dest)?;
        f.write_all(bytes).map_err(out_err(dest, op))
    }
    /// Renames every temporary file into place, in the order the type's
    /// doc gives (every destination checked first: still nothing but a
    /// regular file is replaced), then removes the stale outputs.
    pub(crate) fn commit(mut self) -> Result<(), Error> {
        let pending = std::mem::take(&mut self.pending);
        for p in &pending {
            crate::outpath::check_replaceable(&p.dest)?;
        }
        let (indexes, data): (Vec<_>, Vec<_>) = pending.into_iter().partition(|p| p.index);
        for p in &indexes {
            remove_output(&p.dest, "cannot remove the index being replaced")?;
        }
        // Renamed in order; on a failure the ones not yet renamed stay
        // pending, so their temporary files are removed on drop.
        self.pending = data.into_iter().chain(indexes).rev().collect();
        while let Some(p) = self.pending.last() {
            std::fs::rename(&p.tmp, &p.dest).map_err(|source| Error::Output {
                path: p.dest.clone(),
                op: "cannot move the finished file into place",
                source,
            })?;
            self.pending.pop();
        }
        for stale in std::mem::take(&mut self.stale) {
            remove_output(
                &stale,
                "cannot remove this output of an earlier build, which the new one does not write",
            )?;
        }
        Ok(())
    }
}

/// Removes the output `path` if it is a regular file.
fn remove_output(path: &Path, op: &'static str) -> Result<(), Error> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => {
            std::fs::remove_file(path).map_err(|source| Error::Output {
                path: path.to_path_buf(),
                op,
                source,
            })
        }
        _ => Ok(()),
    }
}

impl Drop for Temps {
    fn drop(&mut self) {
        for p in &self.pending {
            crate::outpath::remove_partial(&p.tmp);
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
        source: std::io::Error::other(crate::inspect::chain(&e)),
    }
}

fn artifact_err(path: &Path) -> impl FnOnce(kiln_artifact::Error) -> Error + '_ {
    move |e| Error::Output {
        path: path.to_path_buf(),
        op: "cannot write the artifact",
        source: std::io::Error::other(crate::inspect::chain(&e)),
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
    /// The first output that failed, named (the [`DiskWriter`] interface
    /// carries no path).
    failed: Option<Error>,
}

impl Fanout<'_> {
    /// Keeps `e` to report and turns it into the interface's error.
    fn fail(&mut self, e: Error) -> kiln_vdisk::Error {
        let err = wrap(&e);
        self.failed.get_or_insert(e);
        err
    }

    /// The error to report for `e` from feeding this fan-out: the named
    /// output's, if one failed.
    fn error(&mut self, e: kiln_vdisk::Error, out: &Path) -> Error {
        self.failed.take().unwrap_or_else(|| vdisk_err(out)(e))
    }

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
fn wrap(e: &Error) -> kiln_vdisk::Error {
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
        if let Err(e) = self.zeros(gap) {
            return Err(self.fail(e));
        }
        self.bmap.update(data);
        if let Some((path, enc)) = &mut self.compressed {
            if let Err(e) = enc.write_all(data) {
                let e = out_err(path, "cannot write the compressed image")(e);
                return Err(self.fail(e));
            }
        }
        let mut failed = None;
        for (path, w) in &mut self.writers {
            if let Err(e) = w.write_extent(offset, data) {
                failed = Some(vdisk_err(path)(e));
                break;
            }
        }
        if let Some(e) = failed {
            return Err(self.fail(e));
        }
        self.pos = offset + data.len() as u64;
        Ok(())
    }
    fn finish(&mut self) -> kiln_vdisk::Result<WriteSummary> {
        let gap = self.size.saturating_sub(self.pos);
        if let Err(e) = self.zeros(gap) {
            return Err(self.fail(e));
        }
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
/// holes between them hashed as zeros; `start` is where to begin and the
/// hasher holding everything before (a [`hash_prefix`]).
fn sparse_sha256(
    raw: &(dyn ReadAt + Sync),
    extents: &[(u64, u64)],
    size: u64,
    start: Option<(u64, Sha256Hasher)>,
) -> std::io::Result<Sha256Hasher> {
    let (mut pos, mut h) = start.unwrap_or_default();
    let mut buf = vec![0u8; 1 << 20];
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
    Ok(h)
}

/// The digest of an image's first bytes, computed on its own thread while
/// the rest is written ([`hash_prefix`]).
pub(crate) type PrefixHash = std::thread::JoinHandle<std::io::Result<Sha256Hasher>>;

/// Starts hashing `[0, end)` of the raw image `file` (holes as zeros) on
/// a thread: that range must be final already; the rest may still be
/// written meanwhile.
pub(crate) fn hash_prefix(file: File, end: u64) -> PrefixHash {
    std::thread::spawn(move || {
        let extents = data_extents(&file, end)?;
        sparse_sha256(&file, &extents, end, None)
    })
}

/// The data regions `(offset, len)` of the sparse file `f` before `end`
/// (SEEK_DATA/SEEK_HOLE), clipped to it.
fn data_extents(f: &File, end: u64) -> std::io::Result<Vec<(u64, u64)>> {
    let mut extents = Vec::new();
    let mut from = 0;
    while from < end {
        let Some(e) = f.next_data(from)? else {
            break;
        };
        if e.offset >= end {
            break;
        }
        extents.push((e.offset, e.len.min(end - e.offset)));
        from = e.offset + e.len;
    }
    Ok(extents)
}

/// VHD options of `kind` from the delivery's identities.
pub(crate) fn vhd_options(d: &Delivery, kind: kiln_vdisk::VhdKind) -> kiln_vdisk::VhdOptions {
    kiln_vdisk::VhdOptions::new()
        .kind(kind)
        .unique_id(kiln_units::Guid::v4_from_seed(d.seed))
        .timestamp_unix(u64::try_from(d.timestamp).unwrap_or(0))
}

/// Turns the raw disk of `size` bytes in `file` into a fixed VHD (pads it
/// to 1 MiB and appends the footer, as [`kiln_vdisk::VhdWriter`] does) and
/// returns the file's digest and length: `image` (the hasher after the
/// disk) continued over the padding and the footer.
fn finish_fixed_vhd(
    file: &File,
    size: u64,
    mut image: Sha256Hasher,
    d: &Delivery,
) -> kiln_vdisk::Result<(Sha256Digest, u64)> {
    let io = |offset| move |source| kiln_vdisk::Error::Io { offset, source };
    let out = file.try_clone().map_err(io(size))?;
    let mut w = kiln_vdisk::VhdWriter::new(out, size, &vhd_options(d, kiln_vdisk::VhdKind::Fixed))?;
    let summary = w.finish()?;
    // The footer lands after the image's own fsync may have finished.
    w.into_inner().sync_all().map_err(io(size))?;
    let mut tail = vec![0u8; usize::try_from(summary.file_size - size).unwrap_or(0)];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut tail, size).map_err(io(size))?;
    image.update(&tail);
    Ok((image.finish(), summary.file_size))
}

/// The written image as delivery reads it.
enum Reader<'a> {
    /// The sparse raw file (holes by SEEK_DATA/SEEK_HOLE).
    Raw(&'a File),
    /// A virtual disk written in place (qcow2, dynamic VHD), read through
    /// kiln-vdisk, and the size of the disk in it (a VHD's virtual size is
    /// rounded up to 1 MiB).
    Disk(kiln_vdisk::Image<&'a File>, u64),
}

impl Reader<'_> {
    /// The virtual size and the data extents `(offset, len)`.
    fn map(&self, out: &Path) -> Result<(u64, Vec<(u64, u64)>), Error> {
        match self {
            Self::Raw(f) => {
                let size = f
                    .metadata()
                    .map_err(out_err(out, "cannot stat the image"))?
                    .len();
                let extents =
                    data_extents(f, size).map_err(out_err(out, "cannot map the image"))?;
                Ok((size, extents))
            }
            Self::Disk(img, size) => {
                let size = img.virtual_size().min(*size);
                let mut extents = Vec::new();
                for e in kiln_vdisk::allocated_extents(img) {
                    let e = e.map_err(vdisk_err(out))?;
                    if e.offset >= size {
                        break;
                    }
                    extents.push((e.offset, e.len.min(size - e.offset)));
                }
                Ok((size, extents))
            }
        }
    }

    fn read_at(&self) -> &(dyn ReadAt + Sync) {
        match self {
            Self::Raw(f) => *f,
            Self::Disk(img, _) => img,
        }
    }
}

/// A virtual-disk output made from the disk stream: format, final path,
/// temporary path.
type VdiskFile = (DiskFormat, PathBuf, PathBuf);

/// A finished output: format, final path, digest, length.
type VdiskDigest = (DiskFormat, PathBuf, Sha256Digest, u64);

/// A closed fan-out: the bmap hasher (ranges complete), the compressed
/// image (path, digest, length) and the virtual disks.
type Closed = (
    BmapStreamHasher,
    Option<(PathBuf, Sha256Digest, u64)>,
    Vec<VdiskDigest>,
);

/// The output files a delivery writes from the disk stream, created (at
/// their temporary names, registered in [`Temps`]) but not yet started.
pub(crate) struct Planned {
    vdisks: Vec<(VdiskFile, File, OutputFormat)>,
    compressed: Option<(PathBuf, File)>,
}

/// Creates the outputs `d` asks for that are made from the disk stream:
/// every virtual disk but `skip` (the one written in place) and the
/// compressed raw stream.
pub(crate) fn plan_outputs(
    d: &Delivery,
    temps: &mut Temps,
    out: &Path,
    skip: Option<DiskFormat>,
) -> Result<Planned, Error> {
    let mut vdisks = Vec::new();
    for f in &d.formats {
        let opts = match f {
            DiskFormat::Raw => continue,
            f if skip == Some(*f) => continue,
            DiskFormat::Qcow2 => OutputFormat::Qcow2(kiln_vdisk::Qcow2Options::new()),
            DiskFormat::Vmdk => {
                OutputFormat::Vmdk(kiln_vdisk::VmdkOptions::new().cid(u32::from_le_bytes([
                    d.seed[0], d.seed[1], d.seed[2], d.seed[3],
                ])))
            }
            DiskFormat::Vhd => OutputFormat::Vhd(vhd_options(d, kiln_vdisk::VhdKind::Fixed)),
            DiskFormat::VhdDynamic => {
                OutputFormat::Vhd(vhd_options(d, kiln_vdisk::VhdKind::Dynamic))
            }
        };
        let dest = format_path(out, *f);
        let (tmp, file) = temps.create(&dest)?;
        vdisks.push(((*f, dest, tmp), file, opts));
    }
    let compressed = match &d.compress {
        Some(c) => {
            let dest = compressed_path(out, c);
            let (_, f) = temps.create(&dest)?;
            Some((dest, f))
        }
        None => None,
    };
    Ok(Planned { vdisks, compressed })
}

/// The block map's path for the raw output path `out` (`disk.img.bmap`).
pub(crate) fn bmap_path(out: &Path) -> PathBuf {
    PathBuf::from(format!("{}.bmap", out.display()))
}

/// The manifest's path for the raw output path `out`: its stem (without
/// `.img`) and `.manifest.json`.
pub(crate) fn manifest_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".img").unwrap_or(&name);
    out.with_file_name(format!("{stem}.manifest.json"))
}

/// Every file a build delivering `d` to `out` may create or replace:
/// checked before any work ([`crate::outpath::check_all`]).
pub(crate) fn output_paths(out: &Path, d: &Delivery) -> Vec<PathBuf> {
    let mut paths = vec![out.to_path_buf()];
    paths.extend(d.formats.iter().map(|f| format_path(out, *f)));
    paths.extend(d.compress.as_ref().map(|c| compressed_path(out, c)));
    paths.push(bmap_path(out));
    paths.push(manifest_path(out));
    paths.push(kiln_units::parent_dir(out).join("SHA256SUMS"));
    paths.push(kiln_units::parent_dir(out).join(crate::SIGNATURE_FILE));
    paths
}

/// Checks a build's outputs before any work: the name is UTF-8 (sibling
/// files and `SHA256SUMS` name it), every file `d` writes is a regular
/// file or nothing yet ([`crate::outpath`]), and the stale temporary
/// files of an interrupted earlier run are removed.
pub(crate) fn check_outputs(out: &Path, d: &Delivery) -> Result<(), Error> {
    if out.file_name().and_then(|n| n.to_str()).is_none() {
        return Err(Error::Image {
            path: out.to_path_buf(),
            reason: "the output file name must be valid UTF-8 (the bmap, manifest and SHA256SUMS name it)".into(),
        });
    }
    crate::outpath::check_all(output_paths(out, d).iter().map(PathBuf::as_path))?;
    for tmp in temporary_paths(out) {
        crate::outpath::remove_stale(&tmp)?;
    }
    Ok(())
}

/// Every file a build to `out` writes in any delivery.
fn every_output_path(out: &Path) -> Vec<PathBuf> {
    use kiln_artifact::compress::Compression as C;
    let every = Delivery {
        formats: vec![
            DiskFormat::Raw,
            DiskFormat::Qcow2,
            DiskFormat::Vmdk,
            DiskFormat::Vhd,
            DiskFormat::VhdDynamic,
        ],
        compress: None,
        seed: [0; 16],
        timestamp: 0,
    };
    let mut paths = output_paths(out, &every);
    paths.extend(
        [C::Xz, C::Gzip, C::Zstd]
            .into_iter()
            .map(|c| compressed_path(out, &CompressOptions::new(c))),
    );
    paths
}

/// Every temporary file a build, `kiln convert` or `kiln mkfs` writing
/// `out` may create, in any delivery: the hidden `.kiln-partial` file of
/// each output and base-image mode's scratch files. A build removes the
/// stale ones before it starts (an interrupted build with other formats
/// leaves nothing for long); the CLI removes them on SIGINT/SIGTERM.
pub fn temporary_paths(out: &Path) -> Vec<PathBuf> {
    let mut tmps: Vec<PathBuf> = every_output_path(out)
        .iter()
        .map(|p| crate::outpath::partial_path(p))
        .collect();
    tmps.extend(
        crate::outpath::SCRATCH
            .iter()
            .map(|what| crate::outpath::scratch_path(out, what)),
    );
    tmps
}

/// `out` with the compression's extension (`disk.img.xz`).
fn compressed_path(out: &Path, c: &CompressOptions) -> PathBuf {
    let ext = c.compression().extension().unwrap_or("");
    PathBuf::from(format!("{}.{ext}", out.display()))
}

/// Starts the writers of `planned` behind one [`Fanout`] for a disk of
/// `size` bytes, with `bmap` hashing the block map's ranges.
fn open_fanout(
    planned: Planned,
    size: u64,
    bmap: BmapStreamHasher,
    d: &Delivery,
) -> Result<(Fanout<'static>, Vec<VdiskFile>), Error> {
    let mut writers: Vec<(PathBuf, Box<dyn DiskWriter>)> = Vec::new();
    let mut vdisk_files = Vec::new();
    for (vf, file, opts) in planned.vdisks {
        let w = opts.create_writer(file, size).map_err(vdisk_err(&vf.1))?;
        writers.push((vf.1.clone(), w));
        vdisk_files.push(vf);
    }
    let compressed = match (planned.compressed, &d.compress) {
        (Some((dest, f)), Some(c)) => {
            let enc = Encoder::new(HashingWriter::new(BufWriter::with_capacity(1 << 20, f)), c)
                .map_err(artifact_err(&dest))?;
            Some((dest, enc))
        }
        _ => None,
    };
    let fan = Fanout {
        size,
        pos: 0,
        bmap,
        writers,
        compressed,
        failed: None,
    };
    Ok((fan, vdisk_files))
}

/// Ends the stream through `fan`: finishes and fsyncs the virtual disks
/// and the compressed file and digests them. Gives back the bmap hasher
/// (its ranges complete) for the caller to finish.
fn close_fanout(
    mut fan: Fanout<'_>,
    vdisk_files: Vec<VdiskFile>,
    out: &Path,
) -> Result<Closed, Error> {
    if let Err(e) = fan.finish() {
        return Err(fan.error(e, out));
    }
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
        // On disk before the rename makes it visible, as the image is.
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(out_err(&dest, "cannot flush the output file"))?;
        let (digest, len) = sha256_of(&tmp)?;
        vdisk_digests.push((f, dest, digest, len));
    }
    let compressed = match compressed {
        Some((dest, enc)) => {
            let (digest, len) = finish_compressed(&dest, enc)?;
            Some((dest, digest, len))
        }
        None => None,
    };
    Ok((bmap, compressed, vdisk_digests))
}

/// Flushes and fsyncs the compressed image; its digest and length.
fn finish_compressed(
    dest: &Path,
    enc: Encoder<HashingWriter<BufWriter<File>>>,
) -> Result<(Sha256Digest, u64), Error> {
    let hw = enc.finish().map_err(artifact_err(dest))?;
    let (mut bw, digest, len) = hw.finish();
    bw.flush()
        .map_err(out_err(dest, "cannot write the compressed image"))?;
    let f = bw.into_inner().map_err(|e| Error::Output {
        path: dest.to_path_buf(),
        op: "cannot write the compressed image",
        source: e.into_error(),
    })?;
    f.sync_all()
        .map_err(out_err(dest, "cannot flush the compressed image"))?;
    Ok((digest, len))
}

/// What the fan-out produced, ready to be listed ([`assemble`]).
pub(crate) struct Produced {
    pub(crate) image_digest: Sha256Digest,
    size: u64,
    bmap: Bmap,
    compressed: Option<(PathBuf, Sha256Digest, u64)>,
    vdisks: Vec<VdiskDigest>,
}

/// The delivered files, in manifest order: the raw image (when delivered
/// uncompressed), the compressed image, the virtual disks and the bmap
/// (written here).
pub(crate) fn assemble(
    p: Produced,
    out: &Path,
    d: &Delivery,
    temps: &mut Temps,
) -> Result<Vec<Delivered>, Error> {
    let mut delivered = Vec::new();
    if d.formats.contains(&DiskFormat::Raw) && d.compress.is_none() {
        delivered.push(Delivered {
            path: out.to_path_buf(),
            format: "raw",
            size_bytes: p.size,
            sha256: p.image_digest.to_hex(),
            digest: Some(p.image_digest),
            artifact_format: Some(kiln_artifact::manifest::ArtifactFormat::Raw),
            compression: kiln_artifact::compress::Compression::None,
        });
    }
    if let Some((dest, digest, len)) = p.compressed {
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
    for (f, dest, digest, len) in p.vdisks {
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
        let dest = bmap_path(out);
        let (tmp, mut f) = temps.create_index(&dest)?;
        p.bmap.write_to(&mut f).map_err(artifact_err(&dest))?;
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
    Ok(delivered)
}

/// The bmap ranges to hash for the written `extents` of a disk of `size`
/// bytes: all of them when raw is delivered, none otherwise (no bmap;
/// the whole-image digest is still computed).
pub(crate) fn bmap_hasher(
    d: &Delivery,
    extents: &[(u64, u64)],
    size: u64,
    out: &Path,
) -> Result<BmapStreamHasher, Error> {
    let mapped = if d.formats.contains(&DiskFormat::Raw) {
        BlockRange::cover_extents(extents, 4096).map_err(artifact_err(out))?
    } else {
        Vec::new()
    };
    BmapStreamHasher::ranges_only(size, 4096, mapped).map_err(artifact_err(out))
}

/// One piece of the disk, in order: its offset and bytes (gaps between
/// pieces are zeros), shared with the whole-image hasher.
pub(crate) type Piece = (u64, std::sync::Arc<[u8]>);

/// The offset of the piece that ends a complete stream.
pub(crate) const STREAM_END: u64 = u64::MAX;

/// The sha256 of a disk of `size` bytes arriving on `pieces` (gaps
/// hashed as zeros); `None` if the stream ends without [`STREAM_END`]
/// (cut short: the rest is not hashed for nothing).
fn hash_pieces(pieces: std::sync::mpsc::Receiver<Piece>, size: u64) -> Option<Sha256Digest> {
    let mut h = Sha256Hasher::new();
    let mut pos = 0u64;
    for (offset, data) in pieces {
        if offset == STREAM_END {
            h.update_zeros(size.saturating_sub(pos));
            return Some(h.finish());
        }
        h.update_zeros(offset.saturating_sub(pos));
        h.update(&data);
        pos = offset + data.len() as u64;
    }
    None
}

/// Delivers a disk of `size` bytes that arrives in order on `pieces`
/// ([`crate::stream`]): every output of `planned` and the bmap over the
/// written extents (`bmap`, ranges only) as the pieces pass, and the
/// whole-image digest on a thread of its own (SHA-256 is sequential; it
/// would otherwise hold up the outputs); list them with [`assemble`].
/// `None` when the stream closed without its end marker ([`STREAM_END`]).
pub(crate) fn deliver_stream(
    planned: Planned,
    pieces: std::sync::mpsc::Receiver<Piece>,
    size: u64,
    bmap: BmapStreamHasher,
    out: &Path,
    d: &Delivery,
) -> Result<Option<Produced>, Error> {
    let (mut fan, vdisk_files) = open_fanout(planned, size, bmap, d)?;
    let (to_hash, hash_rx) = std::sync::mpsc::sync_channel::<Piece>(4);
    let (fed, whole) = std::thread::scope(|scope| {
        let hasher = std::thread::Builder::new()
            .name("sha256".into())
            .spawn_scoped(scope, move || hash_pieces(hash_rx, size));
        let fed = (|| {
            for (offset, data) in pieces {
                // A hasher that is gone has panicked: reported below.
                let _ = to_hash.send((offset, data.clone()));
                if offset == STREAM_END {
                    return Ok(true);
                }
                if let Err(e) = fan.write_extent(offset, &data) {
                    return Err(fan.error(e, out));
                }
            }
            // Cut short: the writers failed and report why. Finishing
            // would only compress the rest of the disk as zeros.
            Ok(false)
        })();
        drop(to_hash);
        let whole = match hasher {
            Ok(h) => h.join().ok().flatten(),
            Err(_) => None,
        };
        (fed, whole)
    });
    if !fed? {
        return Ok(None);
    }
    let image_digest = whole.ok_or_else(|| Error::Output {
        path: out.to_path_buf(),
        op: "cannot hash the image",
        source: std::io::Error::other("the hashing thread failed"),
    })?;
    let (bmap, compressed, vdisks) = close_fanout(fan, vdisk_files, out)?;
    let bmap = bmap.finish_ranges().map_err(artifact_err(out))?;
    Ok(Some(Produced {
        image_digest,
        size,
        bmap,
        compressed,
        vdisks,
    }))
}

/// Delivers the finished raw image `raw` (at temporary path `raw_tmp`,
/// final path `out`). Returns the delivered files and the bmap; the raw
/// file's own rename is the caller's (it is `raw_keep`).
pub(crate) fn deliver(
    source: Source<'_>,
    out: &Path,
    d: &Delivery,
    temps: &mut Temps,
    prefix: Option<(u64, PrefixHash)>,
) -> Result<(Vec<Delivered>, Sha256Digest, Option<PathBuf>), Error> {
    let (raw, in_place) = match source {
        Source::Raw(f) => (Reader::Raw(f), None),
        Source::InPlace {
            file, tmp, format, ..
        } if format == DiskFormat::Vhd => (Reader::Raw(file), Some((format, file, tmp))),
        Source::InPlace {
            file,
            tmp,
            format,
            disk_bytes,
        } => (
            Reader::Disk(
                kiln_vdisk::open(file).map_err(vdisk_err(&format_path(out, format)))?,
                disk_bytes,
            ),
            Some((format, file, tmp)),
        ),
    };
    let (size, extents) = raw.map(out)?;
    // The whole-image digest is computed on a second thread reading the
    // image itself (holes hashed as zeros), so it never waits for, or
    // holds up, the fan-out below; the bmap ranges are hashed here.
    let bmap = bmap_hasher(d, &extents, size, out)?;
    let planned = plan_outputs(d, temps, out, in_place.map(|(f, _, _)| f))?;
    let (fan, vdisk_files) = open_fanout(planned, size, bmap, d)?;
    let (fanned, whole, own) = std::thread::scope(|scope| {
        let joined = |h: std::io::Result<std::thread::ScopedJoinHandle<'_, _>>| match h {
            Ok(h) => h
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("a hashing thread panicked"))),
            Err(e) => Err(e),
        };
        let whole = std::thread::Builder::new()
            .name("sha256".into())
            .spawn_scoped(scope, || {
                let start = match prefix {
                    Some((end, h)) => Some((
                        end,
                        h.join().unwrap_or_else(|_| {
                            Err(std::io::Error::other("a hashing thread panicked"))
                        })?,
                    )),
                    None => None,
                };
                sparse_sha256(raw.read_at(), &extents, size, start)
            });
        // The in-place qcow2 or dynamic VHD file's own digest, beside the
        // rest (a fixed VHD's continues the image digest, below).
        let own = in_place
            .filter(|(f, _, _)| *f != DiskFormat::Vhd)
            .map(|(f, _, tmp)| {
                let h = std::thread::Builder::new()
                    .name("sha256-in-place".into())
                    .spawn_scoped(scope, move || sha256_of(tmp));
                (f, h)
            });
        let fanned = fan_out(&raw, fan, vdisk_files, out);
        let own = own.map(|(f, h)| {
            let digest = h
                .map_err(out_err(out, "cannot start a hashing thread"))?
                .join()
                .unwrap_or_else(|_| {
                    Err(Error::Output {
                        path: out.to_path_buf(),
                        op: "cannot read back the artifact",
                        source: std::io::Error::other("a hashing thread panicked"),
                    })
                })?;
            Ok::<_, Error>((f, digest))
        });
        (fanned, joined(whole), own)
    });
    let (bmap, compressed, mut vdisk_digests) = fanned?;
    let bmap = bmap.finish_ranges().map_err(artifact_err(out))?;
    let whole = whole.map_err(out_err(out, "cannot read back the image"))?;
    let image_digest = whole.clone().finish();
    let mut keep = None;
    if let Some(own) = own {
        let (f, (digest, len)) = own?;
        let dest = format_path(out, f);
        vdisk_digests.insert(0, (f, dest.clone(), digest, len));
        keep = Some(dest);
    }
    if let Some((DiskFormat::Vhd, file, _)) = in_place {
        // The fixed VHD: the disk just read, padded to 1 MiB and closed by
        // its footer; its digest continues the image's over that tail.
        let dest = format_path(out, DiskFormat::Vhd);
        let (digest, len) = finish_fixed_vhd(file, size, whole, d).map_err(vdisk_err(&dest))?;
        vdisk_digests.insert(0, (DiskFormat::Vhd, dest.clone(), digest, len));
        keep = Some(dest);
    }
    if d.formats.contains(&DiskFormat::Raw) && d.compress.is_none() {
        keep = Some(out.to_path_buf());
    }
    let delivered = assemble(
        Produced {
            image_digest,
            size,
            bmap,
            compressed,
            vdisks: vdisk_digests,
        },
        out,
        d,
        temps,
    )?;
    Ok((delivered, image_digest, keep))
}

/// Feeds `raw` through `fan` (bmap ranges, virtual disks, compressor),
/// then closes it ([`close_fanout`]).
fn fan_out(
    raw: &Reader<'_>,
    mut fan: Fanout<'_>,
    vdisk_files: Vec<VdiskFile>,
    out: &Path,
) -> Result<Closed, Error> {
    let fed = match raw {
        Reader::Raw(f) => kiln_vdisk::feed_sparse_file(f, &mut fan),
        // Only the disk's own bytes: past it a VHD holds zeros alone,
        // which copy_allocated never sends.
        Reader::Disk(img, _) => kiln_vdisk::copy_allocated(img, &mut fan),
    };
    if let Err(e) = fed {
        return Err(fan.error(e, out));
    }
    close_fanout(fan, vdisk_files, out)
}

/// Writes `SHA256SUMS` (sha256sum -c format) for `files` into `dir`.
///
/// Other builds may share the directory (`-o out/nuc.img`, then `-o
/// out/fin.img`): the entries of an existing `SHA256SUMS` for files this
/// build does not write stay listed while the file is still there, so
/// `sha256sum -c` keeps covering every image in it. Outputs of an earlier
/// build to the same `out` that this one does not write again (a rebuild
/// with fewer formats) would no longer match its manifest: the ones the
/// old list names are removed when this build's files are committed
/// ([`Temps::remove_on_commit`]) and dropped from the list.
pub(crate) fn write_sums(
    dir: &Path,
    out: &Path,
    files: &[Delivered],
    temps: &mut Temps,
) -> Result<Delivered, Error> {
    let dest = dir.join("SHA256SUMS");
    let name_of = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let ours: Vec<String> = files.iter().map(|f| name_of(&f.path)).collect();
    let stale: Vec<String> = every_output_path(out)
        .iter()
        .map(|p| name_of(p))
        .filter(|n| !ours.contains(n))
        .collect();
    let mut sums = Sha256Sums::new();
    for (name, digest) in existing_sums(&dest)?.iter() {
        if ours.iter().any(|n| n == name) {
            continue;
        }
        if stale.iter().any(|n| n == name) {
            temps.remove_on_commit(dir.join(name));
            continue;
        }
        if dir.join(name).is_file() {
            sums.insert(name, *digest).map_err(artifact_err(&dest))?;
        }
    }
    for (f, name) in files.iter().zip(&ours) {
        if let Some(d) = f.digest {
            sums.insert(name, d).map_err(artifact_err(&f.path))?;
        }
    }
    let text = sums.render();
    temps.write(&dest, text.as_bytes(), "cannot write SHA256SUMS")?;
    Ok(Delivered::file(dest, "sha256sums", text.as_bytes()))
}

/// The entries of the `SHA256SUMS` at `path`, if there is one (one that
/// does not parse is replaced, as before: it is not kiln's).
fn existing_sums(path: &Path) -> Result<Sha256Sums, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Sha256Sums::parse(&text).unwrap_or_else(|e| {
            tracing::warn!(
                "{}: not a SHA256SUMS file kiln can extend ({e}); replacing it",
                path.display()
            );
            Sha256Sums::new()
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Sha256Sums::new()),
        // Not UTF-8: not kiln's either.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Ok(Sha256Sums::new()),
        Err(source) => Err(Error::Output {
            path: path.to_path_buf(),
            op: "cannot read the existing SHA256SUMS",
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// An old set: image, bmap, manifest, sums, and a qcow2 the new set
    /// does not write.
    fn old_set(dir: &Path) {
        for n in [
            "a.img",
            "a.img.bmap",
            "a.manifest.json",
            "SHA256SUMS",
            "a.qcow2",
        ] {
            std::fs::write(dir.join(n), b"old").unwrap();
        }
    }

    fn new_set(temps: &mut Temps, dir: &Path, image_tmp: PathBuf) {
        let (_, mut f) = temps.create(&dir.join("a.vmdk")).unwrap();
        f.write_all(b"new").unwrap();
        temps.adopt(image_tmp, dir.join("a.img"));
        let (_, mut f) = temps.create_index(&dir.join("a.img.bmap")).unwrap();
        f.write_all(b"new").unwrap();
        temps
            .write(&dir.join("a.manifest.json"), b"new", "m")
            .unwrap();
        temps.write(&dir.join("SHA256SUMS"), b"new", "s").unwrap();
        temps.remove_on_commit(dir.join("a.qcow2"));
    }

    #[test]
    fn a_commit_replaces_the_set_and_removes_stale_outputs() {
        let d = tempfile::tempdir().unwrap();
        old_set(d.path());
        let image_tmp = crate::outpath::partial_path(&d.path().join("a.img"));
        std::fs::write(&image_tmp, b"new").unwrap();
        let mut temps = Temps::new();
        new_set(&mut temps, d.path(), image_tmp);
        temps.commit().unwrap();
        assert_eq!(
            names(d.path()),
            [
                "SHA256SUMS",
                "a.img",
                "a.img.bmap",
                "a.manifest.json",
                "a.vmdk"
            ]
        );
        for n in names(d.path()) {
            assert_eq!(std::fs::read(d.path().join(&n)).unwrap(), b"new", "{n}");
        }
    }

    #[test]
    fn a_commit_cut_short_leaves_no_index_that_disagrees_with_its_files() {
        let d = tempfile::tempdir().unwrap();
        old_set(d.path());
        // The image's temporary file is gone: its rename fails after the
        // VMDK's, as a kill at that point would stop the commit.
        let image_tmp = crate::outpath::partial_path(&d.path().join("a.img"));
        let mut temps = Temps::new();
        new_set(&mut temps, d.path(), image_tmp);
        assert!(temps.commit().is_err());
        // No bmap, manifest or sums describing either set is left; the
        // image is the old one, whole; the stale qcow2 stays (the commit
        // did not finish); no temporary file is left.
        assert_eq!(names(d.path()), ["a.img", "a.qcow2", "a.vmdk"]);
        assert_eq!(std::fs::read(d.path().join("a.img")).unwrap(), b"old");
        assert_eq!(std::fs::read(d.path().join("a.vmdk")).unwrap(), b"new");
    }
}
