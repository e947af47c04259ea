//! Flasher (installer) images: the real OS image sits at
//! `/opt/<name>.img` in the `flash-rootA` ext4 partition (as balenaOS
//! flasher images ship it); this finds it and copies it out sparse.

use std::fs::File;
use std::rc::Rc;

use kiln_units::ReadAt;

use crate::ext4::Ext4Part;
use crate::materialize::{SparseOut, BUFFER};
use crate::{Error, Layout, Role};

/// Directory of rootA that holds the inner image.
const INNER_DIR: &str = "/opt";

/// The OS image inside a flasher.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InnerImage {
    /// Its path in the flasher's rootA (`/opt/<name>.img`).
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Finds the `*.img` regular file under `/opt` of a flasher's rootA;
/// `Ok(None)` when there is none.
///
/// # Errors
/// [`Error::NotFlasher`] for a non-flasher layout; [`Error::MissingLabel`]
/// without rootA; [`Error::Ext4`]; [`Error::AmbiguousInner`] when several
/// images are there.
pub fn flasher_inner<R: ReadAt + ?Sized + 'static>(
    disk: &Rc<R>,
    layout: &Layout,
) -> Result<Option<InnerImage>, Error> {
    if !layout.flasher {
        return Err(Error::NotFlasher);
    }
    let root = layout.require(Role::RootA)?;
    let fs = Ext4Part::open(disk, root)?;
    if !fs.exists(INNER_DIR)? {
        return Ok(None);
    }
    let mut found = Vec::new();
    for entry in fs.fs.read_dir(INNER_DIR).map_err(fs.err(INNER_DIR))? {
        let entry = entry.map_err(fs.err(INNER_DIR))?;
        let Ok(name) = entry.file_name().as_str().map(str::to_owned) else {
            continue;
        };
        if !name.to_ascii_lowercase().ends_with(".img") {
            continue;
        }
        let path = format!("{INNER_DIR}/{name}");
        let md = entry.metadata().map_err(fs.err(&path))?;
        if md.file_type().is_regular_file() {
            found.push(InnerImage {
                path,
                size: md.len(),
            });
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    if found.len() > 1 {
        return Err(Error::AmbiguousInner {
            partition: root.number,
            label: root.display_label(),
            found: found.into_iter().map(|i| i.path).collect(),
        });
    }
    Ok(found.pop())
}

/// Copies the flasher's inner image into `out` (a fresh empty file),
/// leaving all-zero 4 KiB blocks as holes; memory: a 1 MiB buffer.
///
/// # Errors
/// [`Error::Ext4`] reading it, [`Error::Write`] writing `out`.
pub fn extract_inner<R: ReadAt + ?Sized + 'static>(
    disk: &Rc<R>,
    layout: &Layout,
    inner: &InnerImage,
    out: &File,
) -> Result<(), Error> {
    let root = layout.require(Role::RootA)?;
    let fs = Ext4Part::open(disk, root)?;
    let mut file = fs
        .fs
        .open(inner.path.as_str())
        .map_err(fs.err(&inner.path))?;
    let size = file.metadata().len();
    let sink = SparseOut { out };
    let mut buf = vec![0u8; BUFFER];
    let mut pos = 0u64;
    while pos < size {
        // Fill the whole buffer so writes stay 4 KiB-aligned.
        let mut got = 0usize;
        while got < buf.len() {
            let n = file
                .read_bytes(buf.get_mut(got..).unwrap_or_default())
                .map_err(fs.err(&inner.path))?;
            if n == 0 {
                break;
            }
            got = got.saturating_add(n);
        }
        if got == 0 {
            break;
        }
        sink.put(pos, buf.get(..got).unwrap_or_default())?;
        pos = pos.saturating_add(got as u64);
    }
    sink.finish(pos)
}
