//! `SHA256SUMS` files in the exact format of GNU `sha256sum` (coreutils),
//! so `sha256sum -c SHA256SUMS` checks every artifact.
//!
//! # Line format
//!
//! | bytes | content |
//! |---|---|
//! | 0 (optional) | `\` when the name is escaped |
//! | next 64 | lower-case hex digest |
//! | next 2 | two spaces (`"  "`, text mode; `" *"` is binary mode) |
//! | rest | file name, `\` → `\\` and newline → `\n` when escaped |
//! | end | `\n` |
//!
//! Entries are sorted by name (byte order) so the file is deterministic.

use std::collections::BTreeMap;
use std::io::Write;

use crate::digest::Sha256Digest;
use crate::error::{io_err, Error, Result};

/// A set of `(file name, sha256)` entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sha256Sums {
    entries: BTreeMap<String, Sha256Digest>,
}

impl Sha256Sums {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the digest of `name`, a path relative to the
    /// directory the `SHA256SUMS` file is in.
    ///
    /// # Errors
    /// [`Error::SumsName`] for an empty name, NUL or carriage return.
    pub fn insert(&mut self, name: &str, digest: Sha256Digest) -> Result<()> {
        let bad = |reason| Error::SumsName {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(bad("empty"));
        }
        if name.contains('\0') {
            return Err(bad("contains NUL"));
        }
        if name.contains('\r') {
            // coreutils versions disagree on escaping CR; refuse it.
            return Err(bad("contains a carriage return"));
        }
        self.entries.insert(name.to_owned(), digest);
        Ok(())
    }

    /// The digest listed for `name`.
    pub fn get(&self, name: &str) -> Option<&Sha256Digest> {
        self.entries.get(name)
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Sha256Digest)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The file content.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, digest) in &self.entries {
            if name.contains('\\') || name.contains('\n') {
                out.push('\\');
                out.push_str(&digest.to_hex());
                out.push_str("  ");
                for c in name.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        c => out.push(c),
                    }
                }
            } else {
                out.push_str(&digest.to_hex());
                out.push_str("  ");
                out.push_str(name);
            }
            out.push('\n');
        }
        out
    }

    /// Writes the file content to `w`.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn write_to<W: Write>(&self, mut w: W) -> Result<()> {
        w.write_all(self.render().as_bytes())
            .map_err(io_err("writing SHA256SUMS", 0))
    }

    /// Parses `sha256sum` output (text or binary mode, escaped names).
    ///
    /// # Errors
    /// [`Error::SumsSyntax`] naming the line.
    pub fn parse(text: &str) -> Result<Self> {
        let mut sums = Self::new();
        for (i, line) in text.lines().enumerate() {
            let lineno = i + 1;
            let err = |reason| Error::SumsSyntax {
                line: lineno,
                reason,
            };
            let (escaped, rest) = match line.strip_prefix('\\') {
                Some(r) => (true, r),
                None => (false, line),
            };
            let hexpart = rest.get(..64).ok_or_else(|| err("line too short"))?;
            let digest: Sha256Digest = hexpart.parse().map_err(|_| err("bad digest"))?;
            let sep = rest.get(64..66).ok_or_else(|| err("line too short"))?;
            if sep != "  " && sep != " *" {
                return Err(err(
                    "expected two spaces or space-asterisk after the digest",
                ));
            }
            let raw = rest.get(66..).ok_or_else(|| err("line too short"))?;
            let name = if escaped {
                let mut name = String::new();
                let mut chars = raw.chars();
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        match chars.next() {
                            Some('\\') => name.push('\\'),
                            Some('n') => name.push('\n'),
                            _ => return Err(err("bad escape in file name")),
                        }
                    } else {
                        name.push(c);
                    }
                }
                name
            } else {
                raw.to_owned()
            };
            sums.insert(&name, digest)
                .map_err(|_| err("bad file name"))?;
        }
        Ok(sums)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_sorted_and_escaped() {
        let mut s = Sha256Sums::new();
        s.insert("b.img.xz", Sha256Digest::of(b"b")).unwrap();
        s.insert("a.img", Sha256Digest::of(b"a")).unwrap();
        s.insert("we\\ird\nname", Sha256Digest::of(b"c")).unwrap();
        let text = s.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("{}  a.img", Sha256Digest::of(b"a")));
        assert_eq!(lines[1], format!("{}  b.img.xz", Sha256Digest::of(b"b")));
        assert_eq!(
            lines[2],
            format!("\\{}  we\\\\ird\\nname", Sha256Digest::of(b"c"))
        );
        assert_eq!(Sha256Sums::parse(&text).unwrap(), s);
    }

    #[test]
    fn rejects() {
        let mut s = Sha256Sums::new();
        assert!(s.insert("", Sha256Digest::of(b"")).is_err());
        assert!(s.insert("a\rb", Sha256Digest::of(b"")).is_err());
        assert!(matches!(
            Sha256Sums::parse("abc  x\n"),
            Err(Error::SumsSyntax { line: 1, .. })
        ));
        let good = format!(
            "{}  x\n{} -y\n",
            Sha256Digest::of(b""),
            Sha256Digest::of(b"")
        );
        assert!(matches!(
            Sha256Sums::parse(&good),
            Err(Error::SumsSyntax { line: 2, .. })
        ));
    }
}
