//! Normalised relative paths inside a filesystem tree.

use crate::Error;
use std::fmt;

/// Longest name of one path component, in bytes (ext4 and FAT both stop
/// at 255).
pub const NAME_MAX: usize = 255;

/// A normalised path relative to the root of a tree: a list of non-empty
/// components, none of them `.` or `..`, none containing `/` or NUL.
/// Components are raw bytes (names need not be UTF-8). The empty path is
/// the root directory.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TreePath(Vec<Vec<u8>>);

impl TreePath {
    /// The root directory.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// Parses a slash-separated path as archives and directories give it.
    /// A leading `./` and repeated or trailing slashes are dropped; an
    /// absolute path, a `..` component, a NUL byte or a component longer
    /// than 255 bytes is refused, which is what keeps a hostile archive
    /// inside its tree.
    pub fn parse(raw: &[u8]) -> Result<Self, Error> {
        if raw.first() == Some(&b'/') {
            return Err(Error::HostilePath {
                path: lossy(raw),
                reason: "absolute path",
            });
        }
        if raw.contains(&0) {
            return Err(Error::HostilePath {
                path: lossy(raw),
                reason: "NUL byte in name",
            });
        }
        let mut out = Vec::new();
        for comp in raw.split(|&b| b == b'/') {
            match comp {
                b"" | b"." => continue,
                b".." => {
                    return Err(Error::HostilePath {
                        path: lossy(raw),
                        reason: "`..` component",
                    })
                }
                c if c.len() > NAME_MAX => {
                    return Err(Error::NameTooLong {
                        path: lossy(raw),
                        len: c.len(),
                    })
                }
                c => out.push(c.to_vec()),
            }
        }
        Ok(Self(out))
    }

    /// The components, outermost first.
    pub fn components(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.0.iter().map(Vec::as_slice)
    }

    /// Number of components (0 for the root).
    pub fn depth(&self) -> usize {
        self.0.len()
    }

    /// Whether this is the root directory.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The last component, or `None` for the root.
    pub fn file_name(&self) -> Option<&[u8]> {
        self.0.last().map(Vec::as_slice)
    }

    /// The parent directory, or `None` for the root.
    pub fn parent(&self) -> Option<TreePath> {
        let (_, head) = self.0.split_last()?;
        Some(Self(head.to_vec()))
    }

    /// This path with one more component appended; the name is checked
    /// like a component of [`TreePath::parse`].
    pub fn join(&self, name: &[u8]) -> Result<TreePath, Error> {
        let child = Self::parse(name)?;
        if child.0.len() != 1 {
            return Err(Error::HostilePath {
                path: lossy(name),
                reason: "not a single path component",
            });
        }
        let mut v = self.0.clone();
        v.extend(child.0);
        Ok(Self(v))
    }

    /// `prefix` followed by this path.
    pub fn prefixed(&self, prefix: &TreePath) -> TreePath {
        let mut v = prefix.0.clone();
        v.extend(self.0.iter().cloned());
        Self(v)
    }

    /// Whether `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &TreePath) -> bool {
        self.0.starts_with(&other.0)
    }

    /// The slash-joined bytes, without a leading slash (empty for root).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.join(&b'/')
    }
}

pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl fmt::Display for TreePath {
    /// `/a/b` with invalid UTF-8 replaced, for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("/");
        }
        for c in &self.0 {
            write!(f, "/{}", String::from_utf8_lossy(c))?;
        }
        Ok(())
    }
}

impl fmt::Debug for TreePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TreePath({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let ok: &[(&[u8], &str)] = &[
            (b"", "/"),
            (b".", "/"),
            (b"./", "/"),
            (b"./etc//passwd", "/etc/passwd"),
            (b"usr/bin/", "/usr/bin"),
            (b"a/./b", "/a/b"),
            (b"..foo/bar..", "/..foo/bar.."),
        ];
        for (raw, want) in ok {
            assert_eq!(TreePath::parse(raw).unwrap().to_string(), *want);
        }
        let bad: &[&[u8]] = &[b"/etc", b"../x", b"a/../../b", b"a/..", b"a\0b"];
        for raw in bad {
            assert!(TreePath::parse(raw).is_err(), "{raw:?}");
        }
        let long = vec![b'x'; 256];
        assert!(matches!(
            TreePath::parse(&long),
            Err(Error::NameTooLong { len: 256, .. })
        ));
    }

    #[test]
    fn parent_join() {
        let p = TreePath::parse(b"a/b/c").unwrap();
        assert_eq!(p.parent().unwrap().to_string(), "/a/b");
        assert_eq!(p.file_name(), Some(&b"c"[..]));
        assert_eq!(TreePath::root().parent(), None);
        assert_eq!(p.join(b"d").unwrap().to_string(), "/a/b/c/d");
        assert!(p.join(b"d/e").is_err());
        assert!(p.join(b"..").is_err());
        let q = p.prefixed(&TreePath::parse(b"docker").unwrap());
        assert_eq!(q.to_bytes(), b"docker/a/b/c");
        assert!(q.starts_with(&TreePath::parse(b"docker/a").unwrap()));
    }
}
