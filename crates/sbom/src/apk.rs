//! Alpine's installed-package database, `lib/apk/db/installed`.
//!
//! Format (Alpine wiki, "Apk spec", section "Installed Database V2"):
//! one record per package separated by a blank line, each line a one-letter
//! key, a colon and the value: `P` name, `V` version, `A` architecture,
//! `L` license; `F`/`R`/`Z`/... describe files and are ignored.
//! `apk info -v` prints `P-V` for each record.

use crate::{Error, Package, PackageKind};

/// The packages of an apk `installed` file, sorted.
pub fn parse_apk_installed(bytes: &[u8]) -> Result<Vec<Package>, Error> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    let mut cur: Option<(usize, [Option<String>; 4])> = None;
    let mut finish = |cur: Option<(usize, [Option<String>; 4])>| -> Result<(), Error> {
        let Some((line, [p, v, a, l])) = cur else {
            return Ok(());
        };
        let missing = |f: &str| Error::Database {
            db: "apk installed",
            line,
            reason: format!("package record without `{f}:`"),
        };
        out.push(Package {
            name: p.ok_or_else(|| missing("P"))?,
            version: v.ok_or_else(|| missing("V"))?,
            arch: a.unwrap_or_default(),
            kind: PackageKind::Apk,
            license: l,
        });
        Ok(())
    };
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            finish(cur.take())?;
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(Error::Database {
                db: "apk installed",
                line: i + 1,
                reason: format!(
                    "expected `K:value`, found {:?}",
                    line.chars().take(60).collect::<String>()
                ),
            });
        };
        let rec = &mut cur.get_or_insert_with(|| (i + 1, Default::default())).1;
        let slot = match k {
            "P" => 0,
            "V" => 1,
            "A" => 2,
            "L" => 3,
            _ => continue,
        };
        rec[slot] = Some(v.to_string());
    }
    finish(cur)?;
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        let db = b"C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nS:383152\nL:MIT\nF:lib\nR:ld-musl-x86_64.so.1\n\nP:busybox\nV:1.36.1-r5\nA:x86_64\nL:GPL-2.0-only\n\n";
        let p = parse_apk_installed(db).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            (
                p[0].name.as_str(),
                p[0].version.as_str(),
                p[0].arch.as_str()
            ),
            ("busybox", "1.36.1-r5", "x86_64")
        );
        assert_eq!(p[1].license.as_deref(), Some("MIT"));
    }

    #[test]
    fn bad_records() {
        let e = parse_apk_installed(b"P:a\nnonsense\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "apk installed line 2: expected `K:value`, found \"nonsense\""
        );
        let e = parse_apk_installed(b"\nP:a\nA:x\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "apk installed line 2: package record without `V:`"
        );
    }
}
