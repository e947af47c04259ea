//! Where a qcow2 overlay's backing file may be, and opening it safely.
//!
//! The backing file name comes from the overlay (untrusted input): QEMU
//! resolves a relative name against the overlay's directory and follows
//! an absolute one anywhere, which turns `kiln convert` of a downloaded
//! overlay into a copy of any host file (`/etc/shadow`, `../../..`). kiln
//! takes only a regular file inside the overlay's directory unless the
//! caller allows more ([`BackingOptions::allow_outside`]), and never a
//! FIFO, device or directory (those block or never end).

use std::fs::File;
use std::path::{Component, Path};

use crate::error::{Error, Result};

/// How an overlay's backing file is looked up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackingOptions {
    allow_outside: bool,
}

impl BackingOptions {
    /// Backing files must be inside the overlay's directory (the default).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a backing file outside the overlay's directory (an absolute
    /// name, `..` leaving it, or a symlink pointing out of it) is followed.
    /// It must still be a regular file.
    pub fn allow_outside(mut self, allow: bool) -> Self {
        self.allow_outside = allow;
        self
    }
}

/// Whether `name` stays inside the directory it is joined to, by its
/// components alone.
fn stays_inside(name: &Path) -> bool {
    let mut depth = 0usize;
    for c in name.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    depth > 0
}

/// Opens the backing file `name` of an overlay in `dir` under `opts`.
pub(crate) fn open_backing(dir: &Path, name: &str, opts: BackingOptions) -> Result<File> {
    let path = dir.join(name);
    let io = |source| Error::Backing {
        path: path.clone(),
        source,
    };
    let outside = || Error::BackingOutside {
        path: path.clone(),
        dir: dir.to_path_buf(),
    };
    if !opts.allow_outside {
        // Refused by name first: no lookup of a path outside at all.
        if !stays_inside(Path::new(name)) {
            return Err(outside());
        }
        // Then where the name really leads (symlinks included).
        let real_dir = std::fs::canonicalize(dir).map_err(io)?;
        let real = std::fs::canonicalize(&path).map_err(io)?;
        if !real.starts_with(&real_dir) || real == real_dir {
            return Err(outside());
        }
    }
    // The type is checked before opening: opening a FIFO blocks.
    let md = std::fs::metadata(&path).map_err(io)?;
    let not_regular = |ft| Error::BackingNotRegular {
        path: path.clone(),
        kind: kiln_units::FileKind::of(ft).name(),
    };
    if !md.is_file() {
        return Err(not_regular(md.file_type()));
    }
    let file = File::open(&path).map_err(io)?;
    let md = file.metadata().map_err(io)?;
    if !md.is_file() {
        return Err(not_regular(md.file_type()));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_inside_and_out() {
        for (name, inside) in [
            ("base.raw", true),
            ("./sub/base.raw", true),
            ("sub/../base.raw", true),
            ("..", false),
            ("../base.raw", false),
            ("sub/../../x", false),
            ("/etc/shadow", false),
            (".", false),
            ("", false),
        ] {
            assert_eq!(stays_inside(Path::new(name)), inside, "{name}");
        }
    }
}
