//! Where an input's files live: a directory, or members of an
//! uncompressed tar archive read in place (the archive is indexed once,
//! then each member is read by seeking to it, so nothing is extracted).

use crate::spec::MAX_JSON_BYTES;
use crate::Error;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Most members an input archive may have (bounds the index).
const MAX_MEMBERS: usize = 1 << 20;

#[derive(Debug)]
pub(crate) enum Container {
    Dir(PathBuf),
    Tar {
        path: PathBuf,
        members: HashMap<String, (u64, u64)>,
    },
}

/// Normalises a relative member path; `None` if it is absolute or has `..`.
pub(crate) fn norm(p: &str) -> Option<String> {
    if p.starts_with('/') {
        return None;
    }
    let mut out = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => out.push(c),
        }
    }
    if out.is_empty() {
        return None;
    }
    Some(out.join("/"))
}

impl Container {
    pub(crate) fn open(path: &Path) -> Result<Self, Error> {
        let io = |op| {
            move |source| Error::Io {
                path: path.to_path_buf(),
                op,
                source,
            }
        };
        let md = std::fs::metadata(path).map_err(io("cannot open image input"))?;
        if md.is_dir() {
            return Ok(Self::Dir(path.to_path_buf()));
        }
        let f = File::open(path).map_err(io("cannot open image input"))?;
        let mut head = [0u8; 6];
        let n = std::os::unix::fs::FileExt::read_at(&f, &mut head, 0)
            .map_err(io("cannot read image input"))?;
        if n >= 2 && (head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&[0x28, 0xb5])) {
            return Err(Error::invalid(
                path,
                "compressed archives cannot be read in place; give the plain .tar (docker save / skopeo oci-archive output) or a directory",
            ));
        }
        let mut archive = tar::Archive::new(f);
        let mut members = HashMap::new();
        let malformed = |source| Error::Io {
            path: path.to_path_buf(),
            op: "malformed tar archive",
            source,
        };
        for m in archive.entries().map_err(malformed)? {
            let m = m.map_err(malformed)?;
            if m.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let name = String::from_utf8_lossy(&m.path_bytes()).into_owned();
            if let Some(n) = norm(&name) {
                members.insert(n, (m.raw_file_position(), m.size()));
            }
            if members.len() > MAX_MEMBERS {
                return Err(Error::invalid(path, "too many archive members"));
            }
        }
        Ok(Self::Tar {
            path: path.to_path_buf(),
            members,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        match self {
            Self::Dir(p) => p,
            Self::Tar { path, .. } => path,
        }
    }

    pub(crate) fn exists(&self, rel: &str) -> bool {
        match self {
            Self::Dir(d) => norm(rel).is_some_and(|r| d.join(r).is_file()),
            Self::Tar { members, .. } => norm(rel).is_some_and(|r| members.contains_key(&r)),
        }
    }

    /// Opens the file `rel`; returns its reader and length in bytes.
    /// `label` names the blob in a missing-blob error.
    pub(crate) fn open_file(
        &self,
        rel: &str,
        label: &str,
    ) -> Result<(Box<dyn Read + Send>, u64), Error> {
        let missing = || Error::MissingBlob {
            input: self.path().to_path_buf(),
            digest: label.to_string(),
        };
        let rel = norm(rel)
            .ok_or_else(|| Error::invalid(self.path(), format!("refusing path {rel:?}")))?;
        match self {
            Self::Dir(d) => {
                let p = d.join(&rel);
                let f = match File::open(&p) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
                    Err(source) => {
                        return Err(Error::Io {
                            path: p,
                            op: "cannot open blob",
                            source,
                        })
                    }
                };
                let len = f
                    .metadata()
                    .map_err(|source| Error::Io {
                        path: p.clone(),
                        op: "cannot stat blob",
                        source,
                    })?
                    .len();
                Ok((Box::new(f), len))
            }
            Self::Tar { path, members } => {
                let &(off, len) = members.get(&rel).ok_or_else(missing)?;
                let mut f = File::open(path).map_err(|source| Error::Io {
                    path: path.clone(),
                    op: "cannot open image input",
                    source,
                })?;
                f.seek(SeekFrom::Start(off)).map_err(|source| Error::Io {
                    path: path.clone(),
                    op: "cannot seek in archive",
                    source,
                })?;
                Ok((Box::new(f.take(len)), len))
            }
        }
    }

    /// Reads a small file (JSON) whole, bounded by [`MAX_JSON_BYTES`].
    pub(crate) fn read_small(&self, rel: &str, label: &str) -> Result<Vec<u8>, Error> {
        let (r, len) = self.open_file(rel, label)?;
        if len > MAX_JSON_BYTES {
            return Err(Error::invalid(
                self.path(),
                format!("{label} is {len} bytes, more than the {MAX_JSON_BYTES}-byte limit"),
            ));
        }
        let mut v = Vec::new();
        r.take(MAX_JSON_BYTES)
            .read_to_end(&mut v)
            .map_err(|source| Error::Io {
                path: self.path().to_path_buf(),
                op: "cannot read blob",
                source,
            })?;
        Ok(v)
    }
}
