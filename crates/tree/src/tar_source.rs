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
    pub fn feed<S: TreeSink>(&self, sink: &mut S) -> Result<(), SourceError<S::Error>> {
        let f = File::open(&self.path).map_err(|source| Error::Io {
            path: self.path.clone(),
            op: "cannot open archive",
            source,
        })?;
        let r = decompress(BufReader::with_capacity(256 * 1024, f)).map_err(|source| {
            Error::MalformedArchive {
                archive: self.path.clone(),
                source,
            }
        })?;
        feed_tar(r, &self.path, &self.opts, sink)
    }
}

/// Feeds the members of an (uncompressed) tar stream to `sink`; `name`
/// labels errors.
pub fn feed_tar<R: Read, S: TreeSink>(
    reader: R,
    name: &Path,
    opts: &SourceOptions,
    sink: &mut S,
) -> Result<(), SourceError<S::Error>> {
    let malformed = |source| Error::MalformedArchive {
        archive: name.to_path_buf(),
        source,
    };
    let mut archive = tar::Archive::new(reader);
    let mut seen: HashSet<TreePath> = HashSet::new();
    for member in archive.entries().map_err(malformed)? {
        let mut member = member.map_err(malformed)?;
        let Some(entry) = convert_member(&mut member, opts)? else {
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
        let size = member.size();
        if entry.kind == EntryKind::File {
            let mut counted = Strict {
                inner: &mut member,
                name,
            };
            sink.add(
                &entry,
                Content::Stream {
                    size,
                    reader: &mut counted,
                },
            )
            .map_err(SourceError::Sink)?;
        } else {
            sink.add(&entry, Content::None).map_err(SourceError::Sink)?;
        }
    }
    Ok(())
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
/// own loop (e.g. to keep raw headers).
pub fn convert_member<R: Read>(
    member: &mut tar::Entry<'_, R>,
    opts: &SourceOptions,
) -> Result<Option<Entry>, Error> {
    use tar::EntryType as T;
    let raw_path = member.path_bytes().into_owned();
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
        other => return Err(bad(&format!("{other:?}"))),
    };
    if path.is_root() && kind != EntryKind::Dir {
        return Err(Error::HostilePath {
            path: lossy(&raw_path),
            reason: "the root must be a directory",
        });
    }
    let mode = header.mode().unwrap_or(0o644) & 0o7777;
    let mut uid = u32::try_from(header.uid().unwrap_or(0)).unwrap_or(0);
    let mut gid = u32::try_from(header.gid().unwrap_or(0)).unwrap_or(0);
    let mtime0 = Timestamp::new(i64::try_from(header.mtime().unwrap_or(0)).unwrap_or(0), 0);
    let (mut mtime, mut atime, mut ctime) = (mtime0, None, None);
    let mut xattrs = Vec::new();
    if let Ok(Some(pax)) = member.pax_extensions() {
        for ext in pax {
            let ext = ext.map_err(|source| Error::Io {
                path: PathBuf::from(lossy(&raw_path)),
                op: "malformed PAX header",
                source,
            })?;
            let key = ext.key_bytes();
            let val = ext.value_bytes();
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                xattrs.push(Xattr {
                    name: name.to_vec(),
                    value: val.to_vec(),
                });
                continue;
            }
            match key {
                b"uid" => uid = parse_num(val).unwrap_or(uid),
                b"gid" => gid = parse_num(val).unwrap_or(gid),
                b"mtime" => mtime = parse_time(val).unwrap_or(mtime),
                b"atime" => atime = parse_time(val),
                b"ctime" => ctime = parse_time(val),
                _ => {}
            }
        }
    }
    xattrs.sort();
    let mut meta = Metadata {
        mode,
        uid,
        gid,
        atime: atime.unwrap_or(mtime),
        mtime,
        ctime: ctime.unwrap_or(mtime),
        crtime: mtime,
        xattrs,
    };
    opts.apply(&mut meta);
    Ok(Some(Entry::new(path, kind, meta)))
}

fn parse_num(v: &[u8]) -> Option<u32> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
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
