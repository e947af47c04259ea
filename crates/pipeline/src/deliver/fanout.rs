//! The fan-out of one ordered disk stream into every output: the bmap
//! hasher, the virtual-disk writers, the compressor of the raw image.

use super::format::{format_path, vhd_options, Delivery, DiskFormat};
use super::hash::{data_extents, sha256_of};
use super::paths::compressed_path;
use super::temps::{artifact_err, out_err, vdisk_err, Temps};
use crate::Error;
use kiln_artifact::bmap::BmapStreamHasher;
use kiln_artifact::compress::Encoder;
use kiln_artifact::digest::{HashingWriter, Sha256Digest, Sha256Hasher};
use kiln_units::ReadAt;
use kiln_vdisk::{DiskWriter, Format, OutputFormat, VirtualDisk, WriteSummary};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Zero bytes fed in chunks (holes into a compressor).
pub(super) static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// The extent stream's fan-out.
pub(super) struct Fanout<'a> {
    pub(super) size: u64,
    pub(super) pos: u64,
    pub(super) bmap: BmapStreamHasher,
    pub(super) writers: Vec<(PathBuf, Box<dyn DiskWriter + 'a>)>,
    pub(super) compressed: Option<(PathBuf, Encoder<HashingWriter<BufWriter<File>>>)>,
    /// The first output that failed, named (the [`DiskWriter`] interface
    /// carries no path).
    pub(super) failed: Option<Error>,
}

impl Fanout<'_> {
    /// Keeps `e` to report and turns it into the interface's error.
    pub(super) fn fail(&mut self, e: Error) -> kiln_vdisk::Error {
        let err = wrap(&e);
        self.failed.get_or_insert(e);
        err
    }

    /// The error to report for `e` from feeding this fan-out: the named
    /// output's, if one failed.
    pub(super) fn error(&mut self, e: kiln_vdisk::Error, out: &Path) -> Error {
        self.failed.take().unwrap_or_else(|| vdisk_err(out)(e))
    }

    pub(super) fn zeros(&mut self, mut len: u64) -> Result<(), Error> {
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
pub(super) fn wrap(e: &Error) -> kiln_vdisk::Error {
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

/// The written image as delivery reads it.
pub(super) enum Reader<'a> {
    /// The sparse raw file (holes by SEEK_DATA/SEEK_HOLE).
    Raw(&'a File),
    /// A virtual disk written in place (qcow2, dynamic VHD), read through
    /// kiln-vdisk, and the size of the disk in it (a VHD's virtual size is
    /// rounded up to 1 MiB).
    Disk(kiln_vdisk::Image<&'a File>, u64),
}

impl Reader<'_> {
    /// The virtual size and the data extents `(offset, len)`.
    pub(super) fn map(&self, out: &Path) -> Result<(u64, Vec<(u64, u64)>), Error> {
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

    pub(super) fn read_at(&self) -> &(dyn ReadAt + Sync) {
        match self {
            Self::Raw(f) => *f,
            Self::Disk(img, _) => img,
        }
    }
}

/// A virtual-disk output made from the disk stream: format, final path,
/// temporary path.
pub(super) type VdiskFile = (DiskFormat, PathBuf, PathBuf);

/// A finished output: format, final path, digest, length.
pub(super) type VdiskDigest = (DiskFormat, PathBuf, Sha256Digest, u64);

/// A closed fan-out: the bmap hasher (ranges complete), the compressed
/// image (path, digest, length) and the virtual disks.
pub(super) type Closed = (
    BmapStreamHasher,
    Option<(PathBuf, Sha256Digest, u64)>,
    Vec<VdiskDigest>,
);

/// The output files a delivery writes from the disk stream, created (at
/// their temporary names, registered in [`Temps`]) but not yet started.
pub(crate) struct Planned {
    pub(super) vdisks: Vec<(VdiskFile, File, OutputFormat)>,
    pub(super) compressed: Option<(PathBuf, File)>,
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
            DiskFormat::Vhdx => OutputFormat::Vhdx(crate::vm_options::vhdx_options(d.seed)),
            DiskFormat::VmdkSparse => OutputFormat::VmdkSparse(
                kiln_vdisk::VmdkOptions::new()
                    .cid(u32::from_le_bytes([
                        d.seed[0], d.seed[1], d.seed[2], d.seed[3],
                    ]))
                    .extent_file_name(&crate::vm_options::file_name(&format_path(out, *f))),
            ),
            DiskFormat::Ova => OutputFormat::Ova(d.ova.clone()),
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

/// Starts the writers of `planned` behind one [`Fanout`] for a disk of
/// `size` bytes, with `bmap` hashing the block map's ranges.
pub(super) fn open_fanout(
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
pub(super) fn close_fanout(
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
pub(super) fn finish_compressed(
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

/// Turns the raw disk of `size` bytes in `file` into a fixed VHD (pads it
/// to 1 MiB and appends the footer, as [`kiln_vdisk::VhdWriter`] does) and
/// returns the file's digest and length: `image` (the hasher after the
/// disk) continued over the padding and the footer.
pub(super) fn finish_fixed_vhd(
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
