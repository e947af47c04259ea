//! `kiln verify`: checks an output directory (or one image in it)
//! offline, with nothing but the public key: the minisign signature of
//! `SHA256SUMS` ([`crate::signed`]), then every listed file's sha256, the
//! artifact digests and sizes each build manifest records, and each raw
//! or compressed raw image against the per-range sha256 of its bmap
//! (bmaptool 2.0). Every check is one [`Finding`]; the run passes only
//! when none is a [`Level::Fail`]. Files the directory holds but
//! `SHA256SUMS` does not list are reported as notes: the signature does
//! not cover them.

use crate::signed::SIGNATURE_FILE;
use crate::Error;
use kiln_artifact::bmap::{Bmap, BmapStreamHasher, BMAP_MAX_FILE_BYTES};
use kiln_artifact::digest::{Sha256Digest, Sha256Hasher};
use kiln_artifact::manifest::Manifest;
use kiln_artifact::sums::Sha256Sums;
use kiln_sign::{PublicKey, Signature};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// How a [`Finding`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The check held.
    Ok,
    /// Worth knowing, not a failure (an unlisted file, a file outside the
    /// checked image's set).
    Note,
    /// The check failed.
    Fail,
}

/// One line of the verification.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    /// Pass, note or failure.
    pub level: Level,
    /// The file it is about (a name in the directory).
    pub file: String,
    /// What was found.
    pub message: String,
}

/// Everything [`verify`] found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    /// One per check, in the order made.
    pub findings: Vec<Finding>,
    /// The signature's trusted comment, when it verified.
    pub trusted_comment: Option<String>,
}

impl VerifyReport {
    /// Whether every check held.
    pub fn passed(&self) -> bool {
        !self.findings.iter().any(|f| f.level == Level::Fail)
    }

    fn add(&mut self, level: Level, file: &str, message: impl Into<String>) {
        self.findings.push(Finding {
            level,
            file: file.to_string(),
            message: message.into(),
        });
    }
}

/// What is checked: a whole directory, or the files of one image.
struct Scope<'a> {
    dir: &'a Path,
    /// The image named on the command line, and the stem its set of
    /// files starts with (`nuc` for `nuc.img.xz`).
    image: Option<(String, String)>,
}

impl Scope<'_> {
    fn covers(&self, name: &str) -> bool {
        match &self.image {
            None => true,
            Some((_, stem)) => name
                .strip_prefix(stem.as_str())
                .is_some_and(|rest| rest.starts_with('.')),
        }
    }
}

/// Verifies `target` (an output directory, or an image file inside
/// one) against `key`: with `None`, only the files (what `kiln sign`
/// checks before signing).
///
/// # Errors
/// [`Error::Image`] when `target` cannot be read at all; every problem
/// with the files themselves is a [`Finding`].
pub fn verify(target: &Path, key: Option<&PublicKey>) -> Result<VerifyReport, Error> {
    let meta = std::fs::metadata(target).map_err(|e| Error::Image {
        path: target.to_path_buf(),
        reason: format!("cannot read: {e}"),
    })?;
    let scope = if meta.is_dir() {
        Scope {
            dir: target,
            image: None,
        }
    } else {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = name.split('.').next().unwrap_or_default().to_string();
        Scope {
            dir: kiln_units::parent_dir(target),
            image: Some((name, stem)),
        }
    };
    let mut r = VerifyReport::default();
    let Some(sums) = read_sums(&scope, key, &mut r) else {
        return Ok(r);
    };
    let digests = check_listed(&scope, &sums, &mut r);
    report_unlisted(&scope, &sums, &mut r);
    check_manifests(&scope, &sums, &digests, key, &mut r);
    check_bmaps(&scope, &sums, &digests, &mut r);
    Ok(r)
}

/// `kiln flash IMAGE --key K --bmap B`: checks that `bmap` is the block
/// map `SHA256SUMS` beside `image` lists for it (`IMAGE.bmap`, or the
/// uncompressed name's `.bmap` for a `.xz`/`.gz`/`.zst` image), byte for
/// byte. Call it after [`verify`] passed with the key, so that the list
/// is the signed one: a bmap from elsewhere would steer which blocks are
/// written and checked.
///
/// # Errors
/// [`Error::Image`] naming `bmap` when the list has no bmap for the
/// image, `bmap` cannot be read, or its sha256 differs from the listed one.
pub fn check_listed_bmap(image: &Path, bmap: &Path) -> Result<(), Error> {
    let refuse = |reason: String| Error::Image {
        path: bmap.to_path_buf(),
        reason,
    };
    let dir = kiln_units::parent_dir(image);
    let text = std::fs::read_to_string(dir.join("SHA256SUMS"))
        .map_err(|e| refuse(format!("cannot read the signed SHA256SUMS: {e}")))?;
    let sums = Sha256Sums::parse(&text)
        .map_err(|e| refuse(format!("the signed SHA256SUMS is not a checksum list: {e}")))?;
    let name = image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut candidates = vec![format!("{name}.bmap")];
    for ext in [".xz", ".gz", ".zst"] {
        if let Some(base) = name.strip_suffix(ext) {
            candidates.push(format!("{base}.bmap"));
        }
    }
    let Some((listed, want)) = candidates
        .iter()
        .find_map(|c| sums.get(c).map(|d| (c.as_str(), d)))
    else {
        return Err(refuse(format!(
            "the signed SHA256SUMS lists no bmap for {name}"
        )));
    };
    let (got, _) = hash_file(bmap).map_err(|e| refuse(format!("cannot read: {e}")))?;
    if got != *want {
        return Err(refuse(format!(
            "not the bmap the signed SHA256SUMS lists for {name} ({listed}): its sha256 differs"
        )));
    }
    Ok(())
}

/// `SHA256SUMS`, once its signature verified (or without a key); `None`
/// after a failure that leaves nothing to trust.
fn read_sums(
    scope: &Scope<'_>,
    key: Option<&PublicKey>,
    r: &mut VerifyReport,
) -> Option<Sha256Sums> {
    let bytes = match std::fs::read(scope.dir.join("SHA256SUMS")) {
        Ok(b) => b,
        Err(e) => {
            r.add(Level::Fail, "SHA256SUMS", format!("cannot read: {e}"));
            return None;
        }
    };
    if let Some(key) = key {
        let sig = std::fs::read_to_string(scope.dir.join(SIGNATURE_FILE))
            .map_err(|e| format!("cannot read the signature: {e} (unsigned output?)"))
            .and_then(|t| Signature::parse(&t).map_err(|e| e.to_string()))
            .and_then(|s| {
                s.verify(key, &bytes)
                    .map(|()| s.trusted_comment)
                    .map_err(|e| e.to_string())
            });
        match sig {
            Ok(comment) => {
                r.add(
                    Level::Ok,
                    "SHA256SUMS",
                    format!("signature by key {} verified: {comment}", key.id),
                );
                r.trusted_comment = Some(comment);
            }
            Err(e) => {
                let file = if e.contains("signed file") {
                    "SHA256SUMS"
                } else {
                    SIGNATURE_FILE
                };
                r.add(Level::Fail, file, e);
                return None;
            }
        }
    }
    match Sha256Sums::parse(&String::from_utf8_lossy(&bytes)) {
        Ok(s) => Some(s),
        Err(e) => {
            r.add(
                Level::Fail,
                "SHA256SUMS",
                format!("not a checksum list: {e}"),
            );
            None
        }
    }
}

/// The sha256 and size of a file, streamed.
fn hash_file(path: &Path) -> std::io::Result<(Sha256Digest, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf)? {
            0 => break,
            n => h.update(&buf[..n]),
        }
    }
    let len = h.bytes();
    Ok((h.finish(), len))
}

/// Every listed file in scope against its `SHA256SUMS` digest; returns
/// the digests and sizes of the files that matched.
fn check_listed(
    scope: &Scope<'_>,
    sums: &Sha256Sums,
    r: &mut VerifyReport,
) -> BTreeMap<String, (Sha256Digest, u64)> {
    let mut ok = BTreeMap::new();
    if let Some((image, _)) = &scope.image {
        if sums.get(image).is_none() {
            r.add(
                Level::Fail,
                image,
                "not listed in SHA256SUMS: not covered by the signature",
            );
        }
    }
    for (name, want) in sums.iter().filter(|(n, _)| scope.covers(n)) {
        let path = scope.dir.join(name);
        if !path.exists() && scope.image.is_some() {
            r.add(
                Level::Note,
                name,
                "not present beside the image (not checked)",
            );
            continue;
        }
        match hash_file(&path) {
            Ok((got, len)) if got == *want => {
                r.add(Level::Ok, name, "sha256 matches SHA256SUMS");
                ok.insert(name.to_string(), (got, len));
            }
            Ok(_) => r.add(
                Level::Fail,
                name,
                "sha256 differs from SHA256SUMS: the file was changed",
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                r.add(Level::Fail, name, "missing (listed in SHA256SUMS)")
            }
            Err(e) => r.add(Level::Fail, name, format!("cannot read: {e}")),
        }
    }
    ok
}

/// Regular files in scope that `SHA256SUMS` does not list (kiln's own
/// hidden temporary files aside).
fn report_unlisted(scope: &Scope<'_>, sums: &Sha256Sums, r: &mut VerifyReport) {
    let Ok(entries) = std::fs::read_dir(scope.dir) else {
        return;
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n != "SHA256SUMS"
                && n != SIGNATURE_FILE
                && n != crate::signed::CMS_SIGNATURE_FILE
                && !n.starts_with('.')
        })
        .filter(|n| sums.get(n).is_none() && scope.covers(n))
        .collect();
    names.sort();
    for n in names {
        r.add(
            Level::Note,
            &n,
            "not listed in SHA256SUMS: not covered by the signature",
        );
    }
}

/// Each listed build manifest in scope: the artifacts it records against
/// the files beside it (size and sha256).
fn check_manifests(
    scope: &Scope<'_>,
    sums: &Sha256Sums,
    digests: &BTreeMap<String, (Sha256Digest, u64)>,
    key: Option<&PublicKey>,
    r: &mut VerifyReport,
) {
    for (name, _) in sums.iter().filter(|(n, _)| n.ends_with(".manifest.json")) {
        if !scope.covers(name) || !digests.contains_key(name) {
            continue;
        }
        let text = std::fs::read_to_string(scope.dir.join(name)).unwrap_or_default();
        let Ok(m) = Manifest::from_json(&text) else {
            check_stamp_manifest(scope, name, &text, digests, r);
            continue;
        };
        if let (Some(id), Some(key)) = (&m.signing_key_id, key) {
            if *id != key.id.to_string() {
                r.add(
                    Level::Note,
                    name,
                    format!(
                        "records signing key {id}, the directory is signed by {}",
                        key.id
                    ),
                );
            }
        }
        for a in m.artifacts.iter().filter(|a| scope.covers(&a.file)) {
            let path = scope.dir.join(&a.file);
            let got = match digests.get(&a.file) {
                Some(d) => Ok(*d),
                None if !path.exists() && scope.image.is_some() => continue,
                None => hash_file(&path),
            };
            match got {
                Ok((d, len)) if d == a.sha256 && len == a.size_bytes => {
                    r.add(Level::Ok, &a.file, format!("sha256 and size match {name}"))
                }
                Ok(_) => r.add(
                    Level::Fail,
                    &a.file,
                    format!("sha256 or size differs from {name}"),
                ),
                Err(e) => r.add(
                    Level::Fail,
                    &a.file,
                    format!("recorded in {name} but cannot be read: {e}"),
                ),
            }
        }
    }
}

/// A stamp's per-device manifest (`kiln stamp`): the output it records
/// against the file beside it; any other JSON is noted, not checked.
fn check_stamp_manifest(
    scope: &Scope<'_>,
    name: &str,
    text: &str,
    digests: &BTreeMap<String, (Sha256Digest, u64)>,
    r: &mut VerifyReport,
) {
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let output = v
        .get(crate::stamp::STAMP_MANIFEST_KEY)
        .and(v.get("output"))
        .and_then(|o| Some((o.get("file")?.as_str()?, o.get("sha256")?.as_str()?)));
    let Some((file, sha)) = output else {
        r.add(
            Level::Note,
            name,
            "not a build manifest: its contents are not checked",
        );
        return;
    };
    if !scope.covers(file) {
        return;
    }
    match digests.get(file) {
        Some((d, _)) if d.to_hex() == sha => {
            r.add(Level::Ok, file, format!("sha256 matches {name}"))
        }
        Some(_) => r.add(Level::Fail, file, format!("sha256 differs from {name}")),
        None => r.add(
            Level::Fail,
            file,
            format!("recorded in {name} but not verified against SHA256SUMS"),
        ),
    }
}

/// Each listed bmap in scope against the raw image it maps and its
/// compressed copies (decompressed as a stream).
fn check_bmaps(
    scope: &Scope<'_>,
    sums: &Sha256Sums,
    digests: &BTreeMap<String, (Sha256Digest, u64)>,
    r: &mut VerifyReport,
) {
    for (name, _) in sums.iter().filter(|(n, _)| n.ends_with(".bmap")) {
        if !scope.covers(name) || !digests.contains_key(name) {
            continue;
        }
        let parsed = std::fs::File::open(scope.dir.join(name))
            .map_err(|e| e.to_string())
            .and_then(|f| Bmap::read_from(f, BMAP_MAX_FILE_BYTES).map_err(|e| e.to_string()));
        let bmap = match parsed {
            Ok(b) => b,
            Err(e) => {
                r.add(Level::Fail, name, format!("not a readable bmap: {e}"));
                continue;
            }
        };
        let raw = name.trim_end_matches(".bmap");
        for ext in ["", ".xz", ".gz", ".zst"] {
            let image = format!("{raw}{ext}");
            let path = scope.dir.join(&image);
            if !scope.covers(&image) || !path.is_file() {
                continue;
            }
            match check_ranges(&path, &bmap) {
                Ok(None) => r.add(Level::Ok, &image, format!("every range matches {name}")),
                Ok(Some(bad)) => r.add(Level::Fail, &image, format!("{bad} differs from {name}")),
                Err(e) => r.add(
                    Level::Fail,
                    &image,
                    format!("cannot check against {name}: {e}"),
                ),
            }
        }
    }
}

/// Streams the image at `path` (decompressing it when compressed)
/// through the ranges of `bmap`; the first range whose sha256 differs,
/// if any.
fn check_ranges(path: &Path, bmap: &Bmap) -> Result<Option<String>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut dec = kiln_artifact::compress::Decoder::new(file).map_err(|e| format!("{e:#}"))?;
    let mapped = bmap.ranges().iter().map(|r| r.blocks).collect();
    let mut h = BmapStreamHasher::ranges_only(bmap.image_size(), bmap.block_size(), mapped)
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = dec
            .read(&mut buf)
            .map_err(|e| format!("cannot read: {e}"))?;
        if n == 0 {
            break;
        }
        if h.position() + n as u64 > bmap.image_size() {
            return Err(format!(
                "longer than the {} bytes the bmap maps",
                bmap.image_size()
            ));
        }
        h.update(&buf[..n]);
    }
    let got = h.finish_ranges().map_err(|e| e.to_string())?;
    Ok(got
        .ranges()
        .iter()
        .zip(bmap.ranges())
        .find(|(a, b)| a.sha256 != b.sha256)
        .map(|(_, b)| format!("bmap range of blocks {}-{}", b.blocks.first, b.blocks.last)))
}
