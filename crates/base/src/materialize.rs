//! Turning a base-image file of any supported [`BaseFormat`] into a raw,
//! sparse disk file.
//!
//! Every path streams: compressed and zipped inputs are decoded through a
//! 1 MiB buffer, virtual disks are read extent by extent, raw files are
//! read front to back. All-zero 4 KiB blocks are not written, so the
//! output keeps holes where the disk is zero. The SHA-256 of the input
//! file is computed on the way (one extra sequential pass for formats that
//! are not read front to back).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use kiln_units::ReadAt;
use kiln_vdisk::VirtualDisk;
use sha2::{Digest, Sha256};

use crate::format::{container_magic, sniff_file};
use crate::{BaseFormat, Error};

/// Read buffer size in bytes (a multiple of [`ZERO_BLOCK`]).
pub(crate) const BUFFER: usize = 1 << 20;
/// Granularity in bytes at which zeros are left as holes.
const ZERO_BLOCK: usize = 4096;
/// Sector size every disk must be a multiple of.
const SECTOR: u64 = 512;
/// At most this many zip member names are kept for an error message.
const MAX_LISTED_MEMBERS: usize = 64;

/// What [`materialize`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Materialized {
    /// The detected input format.
    pub format: BaseFormat,
    /// Size of the disk written, in bytes.
    pub disk_bytes: u64,
    /// SHA-256 of the input file as given (compressed, zipped or not).
    pub input_sha256: [u8; 32],
    /// The zip member that was extracted.
    pub inner_name: Option<String>,
}

/// Writes non-zero blocks at their offset into a file.
pub(crate) struct SparseOut<'a> {
    pub(crate) out: &'a File,
}

impl SparseOut<'_> {
    /// Writes `data` (which sits at disk byte `offset`, a multiple of
    /// [`ZERO_BLOCK`]) leaving all-zero blocks unwritten.
    pub(crate) fn put(&self, offset: u64, data: &[u8]) -> Result<(), Error> {
        let mut run: Option<usize> = None;
        let mut pos = 0usize;
        for block in data.chunks(ZERO_BLOCK) {
            let zero = block.iter().all(|&b| b == 0);
            match (zero, run) {
                (false, None) => run = Some(pos),
                (true, Some(s)) => {
                    self.write(offset, data.get(s..pos).unwrap_or_default(), s)?;
                    run = None;
                }
                _ => {}
            }
            pos = pos.saturating_add(block.len());
        }
        if let Some(s) = run {
            self.write(offset, data.get(s..).unwrap_or_default(), s)?;
        }
        Ok(())
    }

    fn write(&self, base: u64, bytes: &[u8], rel: usize) -> Result<(), Error> {
        let at = base.saturating_add(rel as u64);
        self.out
            .write_all_at(bytes, at)
            .map_err(|source| Error::Write { offset: at, source })
    }

    pub(crate) fn finish(&self, len: u64) -> Result<(), Error> {
        self.out.set_len(len).map_err(|source| Error::Write {
            offset: len,
            source,
        })
    }
}

/// Fills `buf` from `r` as far as possible; returns the bytes read (less
/// than `buf.len()` only at the end of the stream).
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(buf.get_mut(got..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => got = got.saturating_add(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Copies a decoded stream into `out`; returns the disk size.
fn copy_stream(
    path: &Path,
    format: BaseFormat,
    r: &mut dyn Read,
    out: &File,
) -> Result<u64, Error> {
    let sink = SparseOut { out };
    let mut buf = vec![0u8; BUFFER];
    let mut total = 0u64;
    loop {
        let n = fill(r, &mut buf).map_err(|source| Error::Corrupt {
            path: path.to_path_buf(),
            format,
            disk_offset: total,
            source,
        })?;
        let data = buf.get(..n).unwrap_or_default();
        if total == 0 && format != BaseFormat::Raw {
            if let Some(inner) = container_magic(data) {
                return Err(Error::NestedContainer {
                    path: path.to_path_buf(),
                    outer: format,
                    inner,
                });
            }
        }
        sink.put(total, data)?;
        total = total.saturating_add(n as u64);
        if n < buf.len() {
            break;
        }
    }
    check_size(path, total)?;
    sink.finish(total)?;
    Ok(total)
}

fn check_size(path: &Path, disk_bytes: u64) -> Result<(), Error> {
    if disk_bytes < SECTOR || disk_bytes % SECTOR != 0 {
        return Err(Error::BadDiskSize {
            path: path.to_path_buf(),
            disk_bytes,
        });
    }
    Ok(())
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

fn sha256_of(path: &Path, mut file: &File) -> Result<[u8; 32], Error> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(0)).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        op: "rewind the base image",
        source,
    })?;
    let mut h = Sha256::new();
    let mut r = BufReader::with_capacity(BUFFER, file);
    let mut reader: &mut dyn Read = &mut r;
    io::copy(&mut reader, &mut h).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        op: "read the base image",
        source,
    })?;
    Ok(h.finalize().into())
}

/// The base image at `path`, opened for reading, with its size, when it
/// is a raw disk image: it can be read in place, there is nothing to
/// expand. `None` for every other format ([`materialize`] expands those).
///
/// # Errors
/// [`Error::Io`] for the input; [`Error::BadDiskSize`] for a raw file
/// that is not a whole number of 512-byte sectors.
pub fn open_raw(path: &Path) -> Result<Option<(File, u64)>, Error> {
    let io = |op| Error::io(path, op);
    let file = File::open(path).map_err(io("open the base image"))?;
    if sniff_file(&file).map_err(io("read the base image"))? != BaseFormat::Raw {
        return Ok(None);
    }
    let size = file.size().map_err(io("read the base image"))?;
    check_size(path, size)?;
    Ok(Some((file, size)))
}

/// Writes the disk held by the base image at `path` into `out` (a fresh,
/// empty file the caller created), leaving all-zero 4 KiB blocks as holes.
///
/// Raw, xz, gzip, zstd and zip (exactly one `*.img`/`*.raw` member, stored
/// or deflate) are streamed; qcow2, VMDK and VHD are read through their
/// allocation maps. Memory: a 1 MiB buffer plus the decoder's state.
///
/// # Errors
/// [`Error::Io`] for the input, [`Error::Write`] for `out`;
/// [`Error::Corrupt`] for a truncated or corrupt compressed/zip input;
/// [`Error::VirtualDisk`] for a bad qcow2/VMDK/VHD; [`Error::ZipMembers`]
/// unless the zip holds exactly one image; [`Error::NestedContainer`] for
/// a compressed qcow2/VMDK/VHD; [`Error::BadDiskSize`] when the disk is
/// not a whole number of 512-byte sectors (a short raw file).
pub fn materialize(path: &Path, out: &File) -> Result<Materialized, Error> {
    let io = |op| Error::io(path, op);
    let file = File::open(path).map_err(io("open the base image"))?;
    let format = sniff_file(&file).map_err(io("read the base image"))?;
    // Holes must read as zeros: start from an empty file whatever `out`
    // held before.
    out.set_len(0)
        .map_err(|source| Error::Write { offset: 0, source })?;
    let mut inner_name = None;
    let (disk_bytes, input_sha256) = match format {
        BaseFormat::Raw => {
            let size = file.size().map_err(io("read the base image"))?;
            check_size(path, size)?;
            let mut r = Hashing {
                inner: BufReader::with_capacity(BUFFER, &file),
                hash: Sha256::new(),
            };
            let n = copy_stream(path, format, &mut r, out)?;
            (n, r.hash.finalize().into())
        }
        BaseFormat::Xz | BaseFormat::Gz | BaseFormat::Zst => {
            let mut r = Hashing {
                inner: BufReader::with_capacity(BUFFER, &file),
                hash: Sha256::new(),
            };
            let n = {
                let mut dec = kiln_artifact::compress::Decoder::new(&mut r).map_err(|source| {
                    Error::Codec {
                        path: path.to_path_buf(),
                        format,
                        source: Box::new(source),
                    }
                })?;
                copy_stream(path, format, &mut dec, out)?
            };
            // Hash whatever the decoder did not need (trailing padding).
            io::copy(&mut r, &mut io::sink()).map_err(io("read the base image"))?;
            (n, r.hash.finalize().into())
        }
        BaseFormat::Zip => {
            let mut archive =
                zip::ZipArchive::new(BufReader::new(&file)).map_err(|source| Error::Zip {
                    path: path.to_path_buf(),
                    source,
                })?;
            let names: Vec<String> = archive.file_names().map(str::to_owned).collect();
            let images: Vec<&String> = names
                .iter()
                .filter(|n| {
                    let l = n.to_ascii_lowercase();
                    !l.ends_with('/') && (l.ends_with(".img") || l.ends_with(".raw"))
                })
                .collect();
            let [name] = images.as_slice() else {
                let mut members = names.clone();
                members.sort();
                members.truncate(MAX_LISTED_MEMBERS);
                return Err(Error::ZipMembers {
                    path: path.to_path_buf(),
                    members,
                });
            };
            let name = (*name).clone();
            let n = {
                let mut member = archive.by_name(&name).map_err(|source| Error::Zip {
                    path: path.to_path_buf(),
                    source,
                })?;
                copy_stream(path, format, &mut member, out)?
            };
            inner_name = Some(name);
            (n, sha256_of(path, &file)?)
        }
        BaseFormat::Qcow2 | BaseFormat::Vmdk | BaseFormat::Vhd | BaseFormat::Vhdx => {
            let vd = |source| Error::VirtualDisk {
                path: path.to_path_buf(),
                format,
                source,
            };
            let img = kiln_vdisk::open(&file).map_err(vd)?;
            let size = img.virtual_size();
            check_size(path, size)?;
            copy_virtual(&img, size, out).map_err(|e| match e {
                CopyError::Read(source) => vd(source),
                CopyError::Write(e) => e,
            })?;
            (size, sha256_of(path, &file)?)
        }
    };
    Ok(Materialized {
        format,
        disk_bytes,
        input_sha256,
        inner_name,
    })
}

enum CopyError {
    Read(kiln_vdisk::Error),
    Write(Error),
}

fn copy_virtual<D: VirtualDisk>(img: &D, size: u64, out: &File) -> Result<(), CopyError> {
    let sink = SparseOut { out };
    let mut buf = vec![0u8; BUFFER];
    for ext in kiln_vdisk::allocated_extents(img) {
        let ext = ext.map_err(CopyError::Read)?;
        let end = ext.end().min(size);
        // Start on a zero-block boundary so `put` sees aligned blocks.
        let mut off = ext.offset - ext.offset % ZERO_BLOCK as u64;
        while off < end {
            let chunk_end = off.saturating_add(BUFFER as u64).min(end).max(off);
            let n = usize::try_from(chunk_end - off).unwrap_or(BUFFER);
            let b = buf.get_mut(..n).unwrap_or_default();
            img.read_virtual(b, off).map_err(CopyError::Read)?;
            sink.put(off, b).map_err(CopyError::Write)?;
            off = chunk_end;
        }
    }
    sink.finish(size).map_err(CopyError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn disk() -> Vec<u8> {
        let mut d = vec![0u8; 3 << 20];
        d[0] = 0xeb;
        d[510] = 0x55;
        d[511] = 0xaa;
        d[(2 << 20) + 5] = 7;
        d
    }

    fn run(input: &[u8]) -> Result<(Materialized, Vec<u8>, u64), Error> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in");
        std::fs::write(&p, input).unwrap();
        let o = dir.path().join("out");
        let out = File::create(&o).unwrap();
        let m = materialize(&p, &out)?;
        drop(out);
        let blocks = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(&o).unwrap().blocks()
        };
        Ok((m, std::fs::read(&o).unwrap(), blocks))
    }

    #[test]
    fn raw_is_copied_sparse_and_hashed() {
        let d = disk();
        let (m, out, blocks) = run(&d).unwrap();
        assert_eq!(m.format, BaseFormat::Raw);
        assert_eq!(m.disk_bytes, d.len() as u64);
        assert_eq!(out, d);
        let want: [u8; 32] = Sha256::digest(&d).into();
        assert_eq!(m.input_sha256, want);
        // Two non-zero 4 KiB blocks, not 3 MiB.
        assert!(blocks * 512 <= 64 << 10, "{blocks} blocks allocated");
    }

    #[test]
    fn gzip_and_zstd_decode() {
        let d = disk();
        let mut gz = flate_gz(&d);
        let (m, out, _) = run(&gz).unwrap();
        assert_eq!((m.format, out == d), (BaseFormat::Gz, true));
        let want: [u8; 32] = Sha256::digest(&gz).into();
        assert_eq!(m.input_sha256, want);
        gz.truncate(gz.len() / 2);
        let e = run(&gz).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Corrupt {
                    format: BaseFormat::Gz,
                    ..
                }
            ),
            "{e}"
        );
    }

    fn flate_gz(d: &[u8]) -> Vec<u8> {
        let opts = kiln_artifact::compress::CompressOptions::new(
            kiln_artifact::compress::Compression::Gzip,
        );
        let mut enc = kiln_artifact::compress::Encoder::new(Vec::new(), &opts).unwrap();
        enc.write_all(d).unwrap();
        enc.finish().unwrap()
    }

    /// Every integrity check of the compressed formats is verified: a
    /// zeroed gzip CRC-32, a flipped xz check or zstd frame checksum, and
    /// bytes after the last stream are refused.
    #[test]
    fn compressed_base_checksums_are_verified() {
        use kiln_artifact::compress::{CompressOptions, Compression, Encoder};
        let d = disk();
        for (c, format) in [
            (Compression::Gzip, BaseFormat::Gz),
            (Compression::Xz, BaseFormat::Xz),
            (Compression::Zstd, BaseFormat::Zst),
        ] {
            let mut enc = Encoder::new(Vec::new(), &CompressOptions::new(c).threads(1)).unwrap();
            enc.write_all(&d).unwrap();
            let good = enc.finish().unwrap();
            assert!(run(&good).is_ok(), "{c}");
            let n = good.len();
            let mut bad_sum = good.clone();
            match c {
                // CRC-32 before ISIZE.
                Compression::Gzip => bad_sum[n - 8] ^= 1,
                // The last block's check sits before the index and the
                // 12-byte stream footer; flip the byte before the index.
                Compression::Xz => {
                    let backward = u32::from_le_bytes(good[n - 8..n - 4].try_into().unwrap());
                    let index = (backward as usize + 1) * 4;
                    bad_sum[n - 12 - index - 1] ^= 1;
                }
                // The XXH64 checksum ends the frame, if kiln writes one.
                _ => bad_sum[n - 1] ^= 1,
            }
            let mut junk = good.clone();
            junk.extend_from_slice(b"trailing junk");
            for (case, b) in [("checksum", bad_sum), ("junk", junk)] {
                match run(&b) {
                    Err(Error::Corrupt { format: f, .. }) => assert_eq!(f, format, "{c} {case}"),
                    Err(e) => panic!("{c} {case}: {e}"),
                    Ok(_) => panic!("{c} {case}: accepted"),
                }
            }
        }
    }

    #[test]
    fn short_raw_is_refused() {
        for len in [0usize, 100, 1000] {
            let e = run(&vec![1u8; len]).unwrap_err();
            assert!(
                matches!(e, Error::BadDiskSize { disk_bytes, .. } if disk_bytes == len as u64),
                "{e}"
            );
        }
    }

    #[test]
    fn compressed_qcow2_is_refused() {
        let mut d = disk();
        d[..4].copy_from_slice(b"QFI\xfb");
        let e = run(&flate_gz(&d)).unwrap_err();
        assert!(
            matches!(e, Error::NestedContainer { inner: "qcow2", .. }),
            "{e}"
        );
    }
}
