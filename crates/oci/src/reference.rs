//! Image references (`[registry/]name[:tag][@sha256:...]`) in the engine's
//! "familiar" form, the spelling `repositories.json` stores: the default
//! registry `docker.io/` and the `library/` namespace are dropped, a
//! reference without tag or digest means `:latest`.

use crate::{Digest, Error};
use std::fmt;

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    /// Familiar repository name, e.g. `busybox`, `demo/api`,
    /// `registry.local:5000/x/y`.
    pub name: String,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The manifest digest, if any.
    pub digest: Option<Digest>,
}

impl ImageRef {
    /// Parses and normalises a reference; without tag or digest, the tag
    /// is `latest`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let bad = |reason| Error::BadReference {
            reference: s.to_string(),
            reason,
        };
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d).ok_or(bad("bad digest"))?)),
            None => (s, None),
        };
        // A ':' after the last '/' separates the tag (a ':' before it is a
        // registry port).
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest.get(slash..).and_then(|t| t.find(':')) {
            Some(i) => {
                let at = slash + i;
                (
                    rest.get(..at).unwrap_or_default(),
                    Some(rest.get(at + 1..).unwrap_or_default().to_string()),
                )
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(bad("empty name"));
        }
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && !t.starts_with(['.', '-'])
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                return Err(bad("bad tag"));
            }
        }
        let mut comps: Vec<&str> = name.split('/').collect();
        let has_domain = comps.len() > 1
            && comps
                .first()
                .is_some_and(|c| c.contains(['.', ':']) || *c == "localhost");
        let path_start = usize::from(has_domain);
        for c in comps.iter().skip(path_start) {
            let ok = !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
            if !ok {
                return Err(bad("bad repository name component"));
            }
        }
        if comps.first() == Some(&"docker.io") || comps.first() == Some(&"index.docker.io") {
            comps.remove(0);
            if comps.len() == 2 && comps.first() == Some(&"library") {
                comps.remove(0);
            }
        } else if comps.len() == 2 && comps.first() == Some(&"library") {
            comps.remove(0);
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(Self {
            name: comps.join("/"),
            tag,
            digest,
        })
    }

    /// `name:tag`, if there is a tag.
    pub fn tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name))
    }

    /// `name@sha256:...`, if there is a digest.
    pub fn digested(&self) -> Option<String> {
        self.digest.map(|d| format!("{}@{d}", self.name))
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        let cases = [
            ("busybox", "busybox:latest"),
            ("docker.io/library/busybox:1.36", "busybox:1.36"),
            ("library/busybox", "busybox:latest"),
            ("docker.io/demo/api:1", "demo/api:1"),
            ("localhost:5000/x/y", "localhost:5000/x/y:latest"),
            ("registry.local:5000/x:v2", "registry.local:5000/x:v2"),
        ];
        for (input, want) in cases {
            assert_eq!(ImageRef::parse(input).unwrap().to_string(), want, "{input}");
        }
        let d = Digest::of(b"x");
        let r = ImageRef::parse(&format!("demo/api@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digested().unwrap(), format!("demo/api@{d}"));
        for bad in ["", "Upper/case", "x:", "x:-bad", "a//b", "x@sha256:zz"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }
}
