//! A tar archive (plain, gzip, xz or zstd) as a tree source.
//!
//! Formats: POSIX ustar, GNU (long names, long links) and PAX (`path`,
//! `linkpath`, `uid`, `gid`, `mtime`/`atime`/`ctime` with fractions,
//! `SCHILY.xattr.*` extended attributes), as read by the `tar` crate.
//! Compression is detected from the magic bytes, not the file name.
//! Members stream straight into the sink; nothing is extracted.
//!
//! Hostile archives are refused: absolute paths and `..` components
//! ([`TreePath::parse`]) and hardlinks to members not seen before.

use crate::path::lossy;
use crate::pax_sparse::PaxSparse;
use crate::{
    Content, Entry, EntryKind, Error, Metadata, SourceError, SourceOptions, Timestamp, TreePath,
    TreeSink, Xattr,
};
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Compression of a tar stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// xz (LZMA2).
    Xz,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// Detects compression from the first bytes of a stream.
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Self::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else {
            Self::None
        }
    }
}

/// Wraps `reader` in the decompressor its first bytes call for.
pub fn decompress<'a, R: BufRead + 'a>(mut reader: R) -> std::io::Result<Box<dyn Read + 'a>> {
    let head = reader.fill_buf()?;
    Ok(match Compression::sniff(head) {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
    })
}

/// A tar archive file as a tree source.
#[derive(Debug, Clone)]
pub struct TarSource {
    path: PathBuf,
    opts: SourceOptions,
}

impl TarSource {
    /// A source for the archive at `path`.
    pub fn new(path: impl Into<PathBuf>, opts: SourceOptions) -> Self {
        Self {
            path: path.into(),
            opts,
        }
    }

    /// Feeds every member to `sink`.
    ///
    /// The archive must be a regular file (a device or FIFO would never
    /// end or would block), and a compressed one must be intact to its
    /// end: gzip CRC-32 and length, xz checks and zstd frame checksums are
    /// all verified, and bytes after the last stream are refused.
    pub fn feed<S: TreeSink>(&self, sink: &mut S) -> Result<(), SourceError<S::Error>> {
        let f = open_regular(&self.path)?;
        let r = decompress(BufReader::with_capacity(256 * 1024, f)).map_err(|source| {
            Error::MalformedArchive {
                archive: self.path.clone(),
                source,
            }
        })?;
        feed_tar(r, &self.path, &self.opts, sink)
    }
}

/// The tar reader's error, without the bytes it quotes from a header
/// when those are not text (a file that is not a tar archive would
/// otherwise put binary junk on the terminal): only the part before the
/// first quote is kept.
fn without_junk(e: std::io::Error) -> std::io::Error {
    let msg = e.to_string();
    let junk = |c: char| c.is_control() || c == char::REPLACEMENT_CHARACTER;
    if !msg.chars().any(junk) {
        return e;
    }
    let head = msg.split(':').next().unwrap_or_default().trim();
    std::io::Error::new(
        e.kind(),
        format!("{head} (binary data where a tar header field was expected)"),
    )
}

/// A tar member type for errors: its name and typeflag byte (the tar
/// crate's `Debug` shows unknown ones as `__Nonexhaustive(90)`).
fn type_name(t: tar::EntryType) -> String {
    let b = t.as_byte();
    let name = match b {
        b'7' => "contiguous file",
        b'S' => "GNU sparse file",
        b'V' => "GNU volume header",
        b'M' => "GNU multi-volume continuation",
        b'D' => "GNU dumpdir",
        b'K' | b'L' => "GNU long name",
        b'x' | b'g' => "PAX header",
        _ => "unknown",
    };
    if b.is_ascii_graphic() {
        format!("{name} (typeflag '{}')", char::from(b))
    } else {
        format!("{name} (typeflag 0x{b:02x})")
    }
}

/// Opens `path` for reading if it is a regular file (after following
/// symlinks). The type is checked before opening, as opening a FIFO
/// blocks until a writer appears, and again on the opened file.
pub fn open_regular(path: &Path) -> Result<File, Error> {
    let io = |op| {
        move |source| Error::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    };
    let not_regular = |ft| Error::NotRegularFile {
        path: path.to_path_buf(),
        kind: kiln_units::FileKind::of(ft).name(),
    };
    let md = std::fs::metadata(path).map_err(io("cannot open archive"))?;
    if !md.is_file() {
        return Err(not_regular(md.file_type()));
    }
    let f = File::open(path).map_err(io("cannot open archive"))?;
    let md = f.metadata().map_err(io("cannot open archive"))?;
    if !md.is_file() {
        return Err(not_regular(md.file_type()));
    }
    Ok(f)
}

/// Feeds the members of an (uncompressed) tar stream to `sink`; `name`
/// labels errors. After the end-of-archive blocks the rest of `reader`
/// is read to its end, so a decompressing reader reaches (and checks) its
/// trailer: an error there is [`Error::CorruptCompression`].
pub fn feed_tar<R: Read, S: TreeSink>(
    reader: R,
    name: &Path,
    opts: &SourceOptions,
    sink: &mut S,
) -> Result<(), SourceError<S::Error>> {
    let malformed = |source| Error::MalformedArchive {
        archive: name.to_path_buf(),
        source: without_junk(source),
    };
    let mut archive = tar::Archive::new(reader);
    let mut seen: HashSet<TreePath> = HashSet::new();
    for member in archive.entries().map_err(malformed)? {
        let mut member = member.map_err(malformed)?;
        let Some((entry, sparse)) = convert(&mut member, opts)? else {
            continue;
        };
        if let EntryKind::Hardlink { target } = &entry.kind {
            if !seen.contains(target) {
                return Err(Error::DanglingHardlink {
                    path: entry.path.to_string(),
                    target: target.to_string(),
                }
                .into());
            }
        }
        if entry.kind != EntryKind::Dir {
            seen.insert(entry.path.clone());
        }
        if entry.kind == EntryKind::File {
            feed_file(&mut member, &entry, sparse, name, opts, sink)?;
        } else {
            sink.add(&entry, Content::None).map_err(SourceError::Sink)?;
        }
    }
    // The tar reader stops at the end-of-archive blocks; what follows
    // (padding, then the compressed stream's trailer with its checksum)
    // must still be read for the decoder to verify it.
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(|source| Error::CorruptCompression {
        archive: name.to_path_buf(),
        source,
    })?;
    Ok(())
}

/// Feeds one regular file, its size first checked against the caller's
/// bound; a PAX sparse member is expanded from its map.
fn feed_file<R: Read, S: TreeSink>(
    member: &mut tar::Entry<'_, R>,
    entry: &Entry,
    sparse: Option<PaxSparse>,
    name: &Path,
    opts: &SourceOptions,
    sink: &mut S,
) -> Result<(), SourceError<S::Error>> {
    let path = entry.path.to_string();
    let size = match &sparse {
        Some(s) => s.real_size(&path)?,
        None => member.size(),
    };
    if let Some(limit) = opts.max_file_size {
        if size > limit {
            return Err(Error::FileTooLarge { path, size, limit }.into());
        }
    }
    let stored = member.size();
    let mut expanded;
    let data: &mut dyn Read = match &sparse {
        Some(s) => {
            expanded = s.expand(&mut *member, stored, &path)?;
            &mut expanded
        }
        None => member,
    };
    let mut counted = Strict { inner: data, name };
    sink.add(
        entry,
        Content::Stream {
            size,
            reader: &mut counted,
        },
    )
    .map_err(SourceError::Sink)
}

/// Turns a truncated member into a clear error instead of short data.
struct Strict<'a, R> {
    inner: R,
    name: &'a Path,
}

impl<R: Read> Read for Strict<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("{}: malformed tar archive: {e}", self.name.display()),
            )
        })
    }
}

/// Converts one tar member's header (and PAX records) to an [`Entry`].
/// Returns `None` for members that carry no tree entry (global PAX
/// headers). Used by the tar source and by layer readers that need their
/// own loop (e.g. to keep raw headers). A GNU sparse file stored in a PAX
/// archive is refused here ([`Error::UnsupportedEntry`]): only
/// [`feed_tar`] expands those.
pub fn convert_member<R: Read>(
    member: &mut tar::Entry<'_, R>,
    opts: &SourceOptions,
) -> Result<Option<Entry>, Error> {
    match convert(member, opts)? {
        None => Ok(None),
        Some((entry, Some(_))) => Err(Error::UnsupportedEntry {
            path: entry.path.to_string(),
            kind: "GNU sparse file in a PAX archive".to_string(),
        }),
        Some((entry, None)) => Ok(Some(entry)),
    }
}

/// The PAX records of one member that kiln uses.
#[derive(Default)]
struct Pax {
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<Timestamp>,
    atime: Option<Timestamp>,
    ctime: Option<Timestamp>,
    xattrs: Vec<Xattr>,
    sparse: PaxSparse,
}

fn read_pax<R: Read>(member: &mut tar::Entry<'_, R>, name: &str) -> Result<Pax, Error> {
    let mut pax = Pax::default();
    let Ok(Some(exts)) = member.pax_extensions() else {
        return Ok(pax);
    };
    for ext in exts {
        let ext = ext.map_err(|source| Error::Io {
            path: PathBuf::from(name),
            op: "malformed PAX header",
            source,
        })?;
        let key = ext.key_bytes();
        let val = ext.value_bytes();
        if let Some(xname) = key.strip_prefix(b"SCHILY.xattr.") {
            pax.xattrs.push(Xattr {
                name: xname.to_vec(),
                value: val.to_vec(),
            });
            continue;
        }
        if pax.sparse.record(key, val, name)? {
            continue;
        }
        match key {
            b"uid" => pax.uid = Some(parse_num(val, "uid", name)?),
            b"gid" => pax.gid = Some(parse_num(val, "gid", name)?),
            b"mtime" => pax.mtime = parse_time(val),
            b"atime" => pax.atime = parse_time(val),
            b"ctime" => pax.ctime = parse_time(val),
            _ => {}
        }
    }
    Ok(pax)
}

/// An owner id as Linux holds it: refused above 32 bits (GNU tar refuses
/// too), not wrapped or replaced by root.
fn owner_id(value: u64, field: &'static str, path: &TreePath) -> Result<u32, Error> {
    u32::try_from(value).map_err(|_| Error::IdOutOfRange {
        path: path.to_string(),
        field,
        value,
    })
}

/// [`convert_member`], keeping a PAX sparse member's records for
/// [`feed_tar`] to expand its data.
fn convert<R: Read>(
    member: &mut tar::Entry<'_, R>,
    opts: &SourceOptions,
) -> Result<Option<(Entry, Option<PaxSparse>)>, Error> {
    use tar::EntryType as T;
    let mut raw_path = member.path_bytes().into_owned();
    let pax = read_pax(member, &lossy(&raw_path))?;
    if let Some(real) = pax.sparse.name.as_ref().filter(|_| pax.sparse.is_sparse()) {
        raw_path.clone_from(real);
    }
    let path = TreePath::parse(&raw_path)?;
    let header = member.header();
    let et = header.entry_type();
    let bad = |what: &str| Error::UnsupportedEntry {
        path: lossy(&raw_path),
        kind: what.to_string(),
    };
    let dev = |h: &tar::Header| -> Result<(u32, u32), Error> {
        let major = h.device_major().ok().flatten().unwrap_or(0);
        let minor = h.device_minor().ok().flatten().unwrap_or(0);
        Ok((major, minor))
    };
    let kind = match et {
        T::Regular | T::Continuous | T::GNUSparse => EntryKind::File,
        T::Directory => EntryKind::Dir,
        T::Symlink => EntryKind::Symlink {
            target: member
                .link_name_bytes()
                .ok_or_else(|| bad("symlink without target"))?
                .into_owned(),
        },
        T::Link => {
            let t = member
                .link_name_bytes()
                .ok_or_else(|| bad("hardlink without target"))?;
            EntryKind::Hardlink {
                target: TreePath::parse(&t)?,
            }
        }
        T::Char => {
            let (major, minor) = dev(header)?;
            EntryKind::CharDev { major, minor }
        }
        T::Block => {
            let (major, minor) = dev(header)?;
            EntryKind::BlockDev { major, minor }
        }
        T::Fifo => EntryKind::Fifo,
        T::XGlobalHeader => return Ok(None),
        other => return Err(bad(&type_name(other))),
    };
    if path.is_root() && kind != EntryKind::Dir {
        return Err(Error::HostilePath {
            path: lossy(&raw_path),
            reason: "the root must be a directory",
        });
    }
    if pax.sparse.is_sparse() && kind != EntryKind::File {
        return Err(bad("GNU sparse records on a member that is not a file"));
    }
    let mode = header.mode().unwrap_or(0o644) & 0o7777;
    let uid = owner_id(pax.uid.unwrap_or(header.uid().unwrap_or(0)), "uid", &path)?;
    let gid = owner_id(pax.gid.unwrap_or(header.gid().unwrap_or(0)), "gid", &path)?;
    let mtime0 = Timestamp::new(i64::try_from(header.mtime().unwrap_or(0)).unwrap_or(0), 0);
    let mtime = pax.mtime.unwrap_or(mtime0);
    let mut xattrs = pax.xattrs;
    xattrs.sort();
    let mut meta = Metadata {
        mode,
        uid,
        gid,
        atime: pax.atime.unwrap_or(mtime),
        mtime,
        ctime: pax.ctime.unwrap_or(mtime),
        crtime: mtime,
        xattrs,
    };
    opts.apply(&mut meta);
    let sparse = pax.sparse.is_sparse().then_some(pax.sparse);
    Ok(Some((Entry::new(path, kind, meta), sparse)))
}

/// A numeric PAX record (`uid`, `gid`): a malformed one is an error, not
/// ignored in favour of the header's (possibly truncated) field.
fn parse_num(v: &[u8], field: &'static str, path: &str) -> Result<u64, Error> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| Error::InvalidPaxNumber {
            path: path.to_string(),
            field,
            value: lossy(v),
        })
}

/// Parses a PAX time such as `1700000000.123456789` (or negative).
fn parse_time(v: &[u8]) -> Option<Timestamp> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let nanos = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    Some(Timestamp::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Rec(Vec<(String, EntryKind, Metadata, Vec<u8>)>);
    impl TreeSink for Rec {
        type Error = std::io::Error;
        fn add(&mut self, e: &Entry, c: Content<'_>) -> Result<(), Self::Error> {
            let mut data = Vec::new();
            if let Content::Stream { reader, .. } = c {
                reader.read_to_end(&mut data)?;
            }
            self.0
                .push((e.path.to_string(), e.kind.clone(), e.meta.clone(), data));
            Ok(())
        }
    }

    /// Issue 16 finding 17: a file that is not a tar archive is named,
    /// and the bytes of its "header" are not echoed.
    #[test]
    fn binary_junk_is_not_echoed() {
        let junk: Vec<u8> = (0..2048u32).map(|i| (i * 131 % 256) as u8 | 0x80).collect();
        let e = feed_tar(
            &junk[..],
            Path::new("junk.tar"),
            &SourceOptions::default(),
            &mut Rec::default(),
        )
        .unwrap_err();
        let mut msg = e.to_string();
        let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(&e);
        while let Some(c) = cause {
            msg.push_str(&format!(": {c}"));
            cause = c.source();
        }
        assert!(
            msg.starts_with("junk.tar: malformed tar archive: "),
            "{msg}"
        );
        assert!(
            !msg.chars()
                .any(|c| c.is_control() || c == char::REPLACEMENT_CHARACTER),
            "{msg:?}"
        );
    }

    /// Issue 16 finding 17: an unknown member type is named by its
    /// typeflag, not as the tar crate's `__Nonexhaustive(90)`.
    #[test]
    fn unknown_member_type_is_named_by_typeflag() {
        let mut b = tar::Builder::new(Vec::new());
        let h = header("odd", tar::EntryType::new(b'Z'), 0);
        b.append(&h, &[][..]).unwrap();
        let tar = b.into_inner().unwrap();
        let e = feed_tar(
            &tar[..],
            Path::new("t.tar"),
            &SourceOptions::default(),
            &mut Rec::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown (typeflag 'Z')"), "{e}");
        assert!(!e.contains("Nonexhaustive"), "{e}");
    }

    fn header(path: &str, et: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(et);
        h.set_size(size);
        h.set_mode(0o4755);
        h.set_uid(1000);
        h.set_gid(100);
        h.set_mtime(1_700_000_000);
        // set_path refuses `..`; write the raw name field for hostile cases.
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        h
    }

    fn tar_of(members: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, et, data, link) in members {
            let mut h = header(p, *et, data.len() as u64);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
                h.set_cksum();
            }
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn feed(bytes: &[u8]) -> Result<Rec, SourceError<std::io::Error>> {
        let mut rec = Rec::default();
        feed_tar(
            bytes,
            Path::new("t.tar"),
            &SourceOptions::default(),
            &mut rec,
        )?;
        Ok(rec)
    }

    #[test]
    fn reads_members() {
        use tar::EntryType as T;
        let t = tar_of(&[
            ("./etc/", T::Directory, b"", None),
            ("./etc/passwd", T::Regular, b"root:x:0:0\n", None),
            ("./etc/pw2", T::Link, b"", Some("etc/passwd")),
            ("./bin/sh", T::Symlink, b"", Some("/bin/busybox")),
            ("dev/null", T::Char, b"", None),
        ]);
        let rec = feed(&t).unwrap();
        assert_eq!(rec.0.len(), 5);
        assert_eq!(rec.0[1].0, "/etc/passwd");
        assert_eq!(rec.0[1].3, b"root:x:0:0\n");
        assert_eq!(rec.0[1].2.mode, 0o4755);
        assert_eq!(rec.0[1].2.uid, 1000);
        assert_eq!(rec.0[1].2.mtime, Timestamp::new(1_700_000_000, 0));
        assert!(matches!(rec.0[2].1, EntryKind::Hardlink { .. }));
        assert_eq!(
            rec.0[3].1,
            EntryKind::Symlink {
                target: b"/bin/busybox".to_vec()
            }
        );
    }

    #[test]
    fn refuses_hostile() {
        use tar::EntryType as T;
        let cases: Vec<Vec<u8>> = vec![
            tar_of(&[("../evil", T::Regular, b"x", None)]),
            tar_of(&[("/etc/shadow", T::Regular, b"x", None)]),
            tar_of(&[("a/../../b", T::Regular, b"x", None)]),
            tar_of(&[("x", T::Link, b"", Some("../../etc/shadow"))]),
            tar_of(&[("x", T::Link, b"", Some("never/seen"))]),
        ];
        for (i, t) in cases.iter().enumerate() {
            let e = feed(t).err().unwrap_or_else(|| panic!("case {i} accepted"));
            assert!(
                matches!(
                    e,
                    SourceError::Source(Error::HostilePath { .. } | Error::DanglingHardlink { .. })
                ),
                "case {i}: {e}"
            );
        }
    }

    #[test]
    fn pax_xattrs_and_times() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([
            ("SCHILY.xattr.security.capability", &b"\x01\x00\x00\x02"[..]),
            ("mtime", b"1700000000.5"),
        ])
        .unwrap();
        let mut h = header("ping", tar::EntryType::Regular, 1);
        h.set_cksum();
        b.append(&h, &b"p"[..]).unwrap();
        let t = b.into_inner().unwrap();
        let rec = feed(&t).unwrap();
        let m = &rec.0[0].2;
        assert_eq!(m.xattrs[0].name, b"security.capability");
        assert_eq!(m.mtime, Timestamp::new(1_700_000_000, 500_000_000));
    }

    #[test]
    fn truncated_is_an_error() {
        let t = tar_of(&[("f", tar::EntryType::Regular, &[7u8; 4000], None)]);
        assert!(feed(&t[..2048]).is_err());
    }

    /// A tar of one 64 KiB file of varied bytes, for the compressed cases.
    fn sample_tar() -> Vec<u8> {
        let data: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
        tar_of(&[("data.bin", tar::EntryType::Regular, &data, None)])
    }

    fn feed_file(bytes: &[u8], file_name: &str) -> Result<Rec, SourceError<std::io::Error>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name);
        std::fs::write(&path, bytes).unwrap();
        let mut rec = Rec::default();
        TarSource::new(&path, SourceOptions::default()).feed(&mut rec)?;
        Ok(rec)
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// One line naming the file, whatever the cause.
    fn assert_names_file(e: &SourceError<std::io::Error>, file: &str, case: &str) {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        assert!(msg.contains(file) && !msg.contains('\n'), "{case}: {msg}");
    }

    #[test]
    fn corrupt_gzip_is_refused() {
        let good = gz(&sample_tar());
        let rec = feed_file(&good, "root.tar.gz").unwrap();
        assert_eq!(rec.0[0].3.len(), 65536);
        let n = good.len();
        let mut zero_crc = good.clone();
        zero_crc[n - 8..n - 4].fill(0);
        let mut bad_len = good.clone();
        bad_len[n - 1] ^= 1;
        let mut garbage = good.clone();
        garbage.extend_from_slice(b"trailing junk");
        let mut flipped = good.clone();
        flipped[n / 2] ^= 0x10;
        for (case, bytes) in [
            ("zeroed CRC", zero_crc),
            ("wrong ISIZE", bad_len),
            ("trailing garbage", garbage),
            ("flipped data byte", flipped),
        ] {
            let e = feed_file(&bytes, "root.tar.gz")
                .err()
                .unwrap_or_else(|| panic!("{case} accepted"));
            assert_names_file(&e, "root.tar.gz", case);
        }
    }

    #[test]
    fn corrupt_xz_and_zstd_are_refused() {
        use std::io::Write;
        let tar = sample_tar();
        let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
        e.write_all(&tar).unwrap();
        let xz = e.finish().unwrap();
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.include_checksum(true).unwrap();
        e.write_all(&tar).unwrap();
        let zst = e.finish().unwrap();
        assert!(feed_file(&xz, "r.tar.xz").is_ok());
        assert!(feed_file(&zst, "r.tar.zst").is_ok());
        // xz: the block's CRC-64 check sits right before the index; the
        // last 4 bytes of a zstd frame are its XXH64 checksum.
        let mut bad_xz = xz.clone();
        let check_at = xz.len() - 12 - 12 - 8;
        bad_xz[check_at] ^= 1;
        let mut bad_zst = zst.clone();
        let last = zst.len() - 1;
        bad_zst[last] ^= 1;
        let mut xz_junk = xz.clone();
        xz_junk.extend_from_slice(b"junk");
        for (case, bytes, file) in [
            ("xz check", bad_xz, "r.tar.xz"),
            ("xz trailing garbage", xz_junk, "r.tar.xz"),
            ("zstd checksum", bad_zst, "r.tar.zst"),
        ] {
            let e = feed_file(&bytes, file)
                .err()
                .unwrap_or_else(|| panic!("{case} accepted"));
            assert_names_file(&e, file, case);
        }
    }

    #[test]
    fn owner_ids_above_32_bits_are_refused() {
        // A GNU header holds a large uid in base-256.
        let mut h = header("f", tar::EntryType::Regular, 0);
        h.set_uid(1 << 32);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &b""[..]).unwrap();
        let big_header = b.into_inner().unwrap();
        let pax = |key: &str, val: &str| {
            let mut b = tar::Builder::new(Vec::new());
            b.append_pax_extensions([(key, val.as_bytes())]).unwrap();
            b.append(&header("f", tar::EntryType::Regular, 0), &b""[..])
                .unwrap();
            b.into_inner().unwrap()
        };
        for (case, t) in [
            ("header uid", big_header),
            ("PAX uid", pax("uid", "4294967296")),
            ("PAX gid", pax("gid", "18446744073709551615")),
        ] {
            let e = feed(&t).err().unwrap_or_else(|| panic!("{case} accepted"));
            assert!(
                matches!(e, SourceError::Source(Error::IdOutOfRange { ref path, .. }) if path == "/f"),
                "{case}: {e}"
            );
        }
        let e = feed(&pax("uid", "12x")).err().unwrap();
        assert!(
            matches!(e, SourceError::Source(Error::InvalidPaxNumber { .. })),
            "{e}"
        );
        // The largest id still fits.
        let rec = feed(&pax("uid", "4294967295")).unwrap();
        assert_eq!(rec.0[0].2.uid, u32::MAX);
    }

    /// An old-format GNU sparse member claiming `real` bytes with one
    /// 512-byte data segment at its end.
    fn gnu_sparse(real: u64) -> Vec<u8> {
        let mut h = header("big", tar::EntryType::GNUSparse, 512);
        let g = h.as_gnu_mut().unwrap();
        g.set_real_size(real);
        g.sparse[0].set_offset(real - 512);
        g.sparse[0].set_length(512);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &[9u8; 512][..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn claimed_size_is_checked_before_reading() {
        let t = gnu_sparse(4 << 40);
        let opts = SourceOptions {
            max_file_size: Some(1 << 30),
            ..SourceOptions::default()
        };
        let start = std::time::Instant::now();
        let mut rec = Rec::default();
        let e = feed_tar(&t[..], Path::new("t.tar"), &opts, &mut rec).unwrap_err();
        assert!(
            matches!(e, SourceError::Source(Error::FileTooLarge { size, limit, .. }) if size == 4 << 40 && limit == 1 << 30),
            "{e}"
        );
        assert!(rec.0.is_empty() && start.elapsed().as_secs() < 2);
        // Within the bound: expanded, holes as zeros.
        let rec = feed(&gnu_sparse(4096)).unwrap();
        assert_eq!(rec.0[0].3.len(), 4096);
        assert!(rec.0[0].3[..3584].iter().all(|&b| b == 0));
        assert!(rec.0[0].3[3584..].iter().all(|&b| b == 9));
    }

    #[test]
    fn special_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = Rec::default();
        for (path, kind) in [
            (PathBuf::from("/dev/zero"), "character device"),
            (dir.path().to_path_buf(), "directory"),
        ] {
            let e = TarSource::new(&path, SourceOptions::default())
                .feed(&mut rec)
                .unwrap_err();
            assert!(
                matches!(e, SourceError::Source(Error::NotRegularFile { kind: k, .. }) if k == kind),
                "{e}"
            );
        }
    }

    /// `tar --format=posix --sparse` in each PAX sparse version: the real
    /// name and the expanded bytes come out.
    #[test]
    fn pax_sparse_from_gnu_tar() {
        use std::io::{Seek, Write};
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let size = 3 << 20;
        let mut f = File::create(src.join("holes.img")).unwrap();
        f.set_len(size).unwrap();
        f.seek(std::io::SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(b"middle").unwrap();
        f.seek(std::io::SeekFrom::Start(size - 5)).unwrap();
        f.write_all(b"tail!").unwrap();
        drop(f);
        let want = std::fs::read(src.join("holes.img")).unwrap();
        for version in ["0.0", "0.1", "1.0"] {
            let out = dir.path().join(format!("s{version}.tar"));
            let st = std::process::Command::new("tar")
                .arg("--format=posix")
                .arg("--sparse")
                .arg(format!("--sparse-version={version}"))
                .arg("-C")
                .arg(&src)
                .arg("-cf")
                .arg(&out)
                .arg("holes.img")
                .status()
                .expect("GNU tar is needed for this test (Debian package `tar`)");
            assert!(st.success(), "tar {version}");
            let bytes = std::fs::read(&out).unwrap();
            let rec = feed(&bytes).unwrap_or_else(|e| panic!("{version}: {e}"));
            assert_eq!(rec.0.len(), 1, "{version}");
            assert_eq!(rec.0[0].0, "/holes.img", "{version}");
            assert!(rec.0[0].3 == want, "{version}: contents differ");
            // The bound applies to the real size, not the stored one.
            let opts = SourceOptions {
                max_file_size: Some(1 << 20),
                ..SourceOptions::default()
            };
            let e = feed_tar(&bytes[..], Path::new("s.tar"), &opts, &mut Rec::default());
            assert!(
                matches!(e, Err(SourceError::Source(Error::FileTooLarge { .. }))),
                "{version}"
            );
        }
    }

    #[test]
    fn sniffing() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(Compression::sniff(b"\xfd7zXZ\0"), Compression::Xz);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"ustar"), Compression::None);
    }
}
