//! Small shared pieces: purls, RFC 3339 times, ids, `os-release`.
//!
//! purl: <https://github.com/package-url/purl-spec> (PURL-SPECIFICATION.rst:
//! `pkg:type/namespace/name@version?qualifiers`, components
//! percent-encoded; types `deb`, `apk`, `oci`, `generic`).

use crate::{Package, PackageKind, PackageSet};

/// Percent-encodes everything but the purl-safe unreserved characters.
pub(crate) fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The purl of an OS package; `distro` is the `os-release` ID.
pub(crate) fn package_purl(p: &Package, distro: Option<&str>) -> String {
    let (ty, default_ns) = match p.kind {
        PackageKind::Deb => ("deb", "debian"),
        PackageKind::Apk => ("apk", "alpine"),
        PackageKind::Opkg => ("generic", "opkg"),
    };
    let ns = pct(&distro.unwrap_or(default_ns).to_ascii_lowercase());
    let mut s = format!("pkg:{ty}/{ns}/{}@{}", pct(&p.name), pct(&p.version));
    if !p.arch.is_empty() {
        s.push_str(&format!("?arch={}", pct(&p.arch)));
    }
    s
}

/// The `pkg:oci` purl of an image stored under `name` with `digest`.
pub(crate) fn oci_purl(name: &str, digest: &str, platform: &str) -> String {
    let (repo_url, last) = match name.rsplit_once('/') {
        Some((_, last)) => (name, last),
        None => (name, name),
    };
    let arch = platform.split('/').nth(1).unwrap_or_default();
    format!(
        "pkg:oci/{}@{}?arch={}&repository_url={}",
        pct(&last.to_ascii_lowercase()),
        pct(digest),
        pct(arch),
        pct(repo_url)
    )
}

/// `YYYY-MM-DDThh:mm:ssZ` of a Unix time (proleptic Gregorian, UTC;
/// days-from-civil inverse of H. Hinnant's algorithm).
pub(crate) fn rfc3339(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A version-5-shaped UUID (RFC 4122 layout) from the first 32 hex digits
/// of a digest: unique per image, no randomness.
pub(crate) fn uuid_from_hex(hex: &str) -> String {
    let mut h: Vec<char> = hex
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .chain(std::iter::repeat('0'))
        .take(32)
        .collect();
    h[12] = '5';
    let variant = h[16].to_digit(16).unwrap_or(0) & 0x3 | 0x8;
    h[16] = char::from_digit(variant, 16).unwrap_or('8');
    let s: String = h.into_iter().collect();
    format!(
        "{}-{}-{}-{}-{}",
        &s[0..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..32]
    )
}

impl PackageSet {
    /// Sets the distribution from `os-release` bytes (os-release(5):
    /// `KEY=value` lines, values optionally quoted).
    pub fn with_os_release(mut self, bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes);
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
            match k.trim() {
                "ID" => self.distro = Some(v),
                "VERSION_ID" => self.version = Some(v),
                "PRETTY_NAME" => self.pretty_name = Some(v),
                _ => {}
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn purls() {
        let p = Package {
            name: "libc6".into(),
            version: "1:2.36-9+deb12u4".into(),
            arch: "amd64".into(),
            kind: PackageKind::Deb,
            license: None,
        };
        assert_eq!(
            package_purl(&p, Some("debian")),
            "pkg:deb/debian/libc6@1%3A2.36-9%2Bdeb12u4?arch=amd64"
        );
        assert_eq!(
            oci_purl("bob/api", "sha256:ab", "linux/amd64"),
            "pkg:oci/api@sha256%3Aab?arch=amd64&repository_url=bob%2Fapi"
        );
    }

    #[test]
    fn uuid_shape() {
        let u = uuid_from_hex(&"f".repeat(64));
        assert_eq!(u, "ffffffff-ffff-5fff-bfff-ffffffffffff");
    }

    #[test]
    fn os_release() {
        let s = PackageSet::default().with_os_release(
            b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
        );
        assert_eq!(s.distro.as_deref(), Some("debian"));
        assert_eq!(s.version.as_deref(), Some("12"));
    }
}
