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

pub(crate) mod disk;
mod fanout;
mod format;
mod hash;
mod paths;
mod temps;

use self::fanout::{
    close_fanout, finish_fixed_vhd, open_fanout, Closed, Fanout, Reader, VdiskDigest, VdiskFile,
};
pub(crate) use self::fanout::{plan_outputs, Planned};
pub(crate) use self::format::{format_path, vhd_options};
pub use self::format::{Delivery, DiskFormat};
use self::hash::{hash_pieces, sha256_of, sparse_sha256};
pub(crate) use self::hash::{hash_prefix, PrefixHash};
use self::paths::every_output_path;
pub use self::paths::temporary_paths;
pub(crate) use self::paths::{bmap_path, check_outputs, manifest_path};
pub use self::temps::Delivered;
pub(crate) use self::temps::Temps;
use self::temps::{artifact_err, out_err, vdisk_err};

use crate::stream::{Piece, STREAM_END};
use crate::Error;
use kiln_artifact::bmap::{BlockRange, Bmap, BmapStreamHasher};
use kiln_artifact::compress::CompressOptions;
use kiln_artifact::digest::Sha256Digest;
use kiln_artifact::sums::Sha256Sums;
use kiln_vdisk::DiskWriter;
use std::fs::File;
use std::path::{Path, PathBuf};

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
                DiskFormat::Vhdx => "vhdx",
                DiskFormat::VmdkSparse => "vmdk-sparse",
                DiskFormat::Ova => "ova",
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
    use std::io::Write;

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
