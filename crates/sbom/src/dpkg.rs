//! The Debian package database (`var/lib/dpkg/status`), opkg's status
//! file of the same format, and machine-readable `copyright` files.
//!
//! Format: deb822 control paragraphs, deb-status(5) and deb-control(5):
//! `Field: value` lines, continuation lines start with a space or tab,
//! paragraphs are separated by blank lines. `Status:` is
//! `<want> <flag> <state>`. Like `dpkg-query -W`, a package whose state
//! is `not-installed` is not listed; unlike it, neither is one in state
//! `config-files` (only its configuration files remain, no software).
//! Copyright files: <https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/>
//! (`Format:` header paragraph, `Files:` paragraphs with a `License:`
//! field whose first line is the short license name).

use crate::{Error, Package, PackageKind};

/// One deb822 paragraph: its fields in order and its first line.
pub(crate) struct Paragraph<'a> {
    pub(crate) line: usize,
    pub(crate) fields: Vec<(&'a str, String)>,
}

impl Paragraph<'_> {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits deb822 text into paragraphs; `db` names the file in errors.
pub(crate) fn paragraphs<'a>(text: &'a str, db: &'static str) -> Result<Vec<Paragraph<'a>>, Error> {
    let mut out = Vec::new();
    let mut cur: Option<Paragraph<'a>> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            out.extend(cur.take());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let Some((_, v)) = cur.as_mut().and_then(|p| p.fields.last_mut()) else {
                return Err(Error::Database {
                    db,
                    line: n,
                    reason: "continuation line outside a field".into(),
                });
            };
            v.push('\n');
            v.push_str(line.trim());
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(Error::Database {
                db,
                line: n,
                reason: format!("expected `Field: value`, found {:?}", short(line)),
            });
        };
        let p = cur.get_or_insert_with(|| Paragraph {
            line: n,
            fields: Vec::new(),
        });
        p.fields.push((k.trim(), v.trim().to_string()));
    }
    out.extend(cur);
    Ok(out)
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

/// The installed packages of a dpkg `status` file, sorted.
pub fn parse_dpkg_status(bytes: &[u8]) -> Result<Vec<Package>, Error> {
    parse_status(bytes, "dpkg status", PackageKind::Deb)
}

/// The installed packages of an opkg `status` file, sorted.
pub fn parse_opkg_status(bytes: &[u8]) -> Result<Vec<Package>, Error> {
    parse_status(bytes, "opkg status", PackageKind::Opkg)
}

fn parse_status(bytes: &[u8], db: &'static str, kind: PackageKind) -> Result<Vec<Package>, Error> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    for p in paragraphs(&text, db)? {
        let missing = |field: &str| Error::Database {
            db,
            line: p.line,
            reason: format!("package paragraph without `{field}`"),
        };
        let name = p.get("Package").ok_or_else(|| missing("Package"))?;
        let status = p.get("Status").ok_or_else(|| missing("Status"))?;
        let state = status.split_whitespace().last().unwrap_or_default();
        if matches!(state, "not-installed" | "config-files") {
            continue;
        }
        out.push(Package {
            name: name.to_string(),
            version: p
                .get("Version")
                .ok_or_else(|| missing("Version"))?
                .to_string(),
            arch: p.get("Architecture").unwrap_or_default().to_string(),
            kind,
            license: p.get("License").map(str::to_string),
        });
    }
    out.sort();
    Ok(out)
}

/// The licenses a machine-readable Debian `copyright` file states for its
/// files (the short names of the `Files:` paragraphs, in order of first
/// appearance, joined with ` AND `); `None` for a free-form file.
pub fn parse_debian_copyright(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    if !text.starts_with("Format:") {
        return None;
    }
    let paras = paragraphs(&text, "copyright").ok()?;
    let mut names: Vec<String> = Vec::new();
    for p in paras.iter().filter(|p| p.get("Files").is_some()) {
        let Some(l) = p.get("License") else { continue };
        let name = l.lines().next().unwrap_or_default().trim();
        if !name.is_empty() && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    (!names.is_empty()).then(|| names.join(" AND "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9+deb12u4\nDescription: GNU C Library\n multi-line\n .\n more\n\nPackage: old\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: gone\nStatus: purge ok not-installed\n\nPackage: adduser\nStatus: install ok installed\nArchitecture: all\nVersion: 3.134\n";

    #[test]
    fn installed_packages_sorted() {
        let p = parse_dpkg_status(STATUS.as_bytes()).unwrap();
        let got: Vec<_> = p
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str(), p.arch.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("adduser", "3.134", "all"),
                ("libc6", "2.36-9+deb12u4", "amd64")
            ]
        );
    }

    #[test]
    fn malformed_line_named() {
        let e =
            parse_dpkg_status(b"Package: a\nStatus: install ok installed\ngarbage\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "dpkg status line 3: expected `Field: value`, found \"garbage\""
        );
        let e = parse_dpkg_status(b"Package: a\nStatus: install ok installed\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("line 1: package paragraph without `Version`"),
            "{e}"
        );
        assert!(parse_dpkg_status(b" x\n").is_err());
    }

    #[test]
    fn copyright_licenses() {
        let c = b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: x\n\nFiles: *\nCopyright: me\nLicense: GPL-2+\n long text\n\nFiles: debian/*\nLicense: BSD-3-clause\n\nFiles: a/*\nLicense: GPL-2+\n\nLicense: GPL-2+\n text\n";
        assert_eq!(
            parse_debian_copyright(c).as_deref(),
            Some("GPL-2+ AND BSD-3-clause")
        );
        assert_eq!(parse_debian_copyright(b"This is free-form\n"), None);
    }
}
