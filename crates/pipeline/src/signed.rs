//! Signing an output directory: `SHA256SUMS.minisig`, a minisign
//! signature (see `kiln-sign`) of the directory's `SHA256SUMS`, which
//! lists every file kiln wrote there. `minisign -Vm SHA256SUMS -p KEY.pub`
//! verifies it with the stock tool; `kiln verify` checks it and then
//! every listed file.
//!
//! The signature file is written like every other output
//! ([`crate::outpath`]): to a hidden temporary name, renamed into place
//! when complete, so an interrupted run never leaves a partial signature.
//! A build commits it with its other outputs, after `SHA256SUMS`.

use crate::deliver::Temps;
use crate::{BuildRequest, Error};
use kiln_sign::SecretKey;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The signature's file name, beside `SHA256SUMS`.
pub const SIGNATURE_FILE: &str = "SHA256SUMS.minisig";

/// The CMS (X.509) signature's file name, beside `SHA256SUMS`.
pub const CMS_SIGNATURE_FILE: &str = "SHA256SUMS.p7s";

/// The trusted (signed) comment: kiln's version, and when known the
/// recipe and the image's sha256. One line, no time (reproducible).
pub fn trusted_comment(recipe: Option<&str>, image_sha256: Option<&str>) -> String {
    let mut c = format!("kiln {}", env!("CARGO_PKG_VERSION"));
    if let Some(r) = recipe {
        c.push_str(&format!(" recipe {}", r.replace(['\n', '\r'], " ")));
    }
    if let Some(d) = image_sha256 {
        c.push_str(&format!(" image sha256 {d}"));
    }
    c
}

/// During a build's commit: signs the new `SHA256SUMS` (its temporary
/// file, at `sums`' partial path) when the request has a signer;
/// otherwise removes an earlier build's signature on commit, since it
/// no longer matches the `SHA256SUMS` being replaced.
pub(crate) fn sign_build(
    req: &BuildRequest<'_>,
    image_sha256: &str,
    sums: &Path,
    temps: &mut Temps,
) -> Result<(), Error> {
    let dest = sums.with_file_name(SIGNATURE_FILE);
    let Some(key) = req.signer else {
        if std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_file()) {
            temps.remove_on_commit(dest);
        }
        return Ok(());
    };
    let tmp = crate::outpath::partial_path(sums);
    let text = std::fs::read(&tmp).map_err(|source| Error::Output {
        path: sums.to_path_buf(),
        op: "cannot read back SHA256SUMS to sign it",
        source,
    })?;
    let comment = trusted_comment(Some(&req.recipe.name), Some(image_sha256));
    let sig = sign_bytes(key, &text, &comment, &dest)?;
    temps.write(&dest, sig.as_bytes(), "cannot write the signature")
}

/// Signs `bytes` with `comment`; errors name `dest`.
fn sign_bytes(key: &SecretKey, bytes: &[u8], comment: &str, dest: &Path) -> Result<String, Error> {
    key.sign(bytes, comment)
        .map(|s| s.to_text())
        .map_err(|source| Error::Sign {
            path: dest.to_path_buf(),
            source,
        })
}

/// Signs the existing output directory `dir` (`kiln sign`, `kiln stamp
/// --sign`): records the key's id in every manifest `SHA256SUMS` lists
/// (a build's `signing_key_id`, likewise in a stamp's per-device
/// manifests), lists their new digests in `SHA256SUMS`, and writes
/// `dir/SHA256SUMS.minisig` over it with `comment`, replacing an earlier
/// signature. Every changed file is written to a temporary name first
/// and renamed into place once all are complete (manifests, then
/// `SHA256SUMS`, then the signature). The caller checks the listed
/// files first when they may have changed since they were written
/// (verification without a key). Returns the signature's path.
///
/// # Errors
/// [`Error::Image`] when `SHA256SUMS` is missing or not a kiln checksum
/// list, or a listed manifest cannot be read; [`Error::Output`]/
/// [`Error::NotRegular`] when a file cannot be written.
pub fn sign_dir(dir: &Path, key: &SecretKey, comment: &str) -> Result<PathBuf, Error> {
    let sums_path = dir.join("SHA256SUMS");
    let text = std::fs::read(&sums_path).map_err(|e| Error::Image {
        path: sums_path.clone(),
        reason: format!("cannot read the checksum list to sign: {e}"),
    })?;
    let not_sums = |e: kiln_artifact::Error| Error::Image {
        path: sums_path.clone(),
        reason: format!("not a SHA256SUMS file: {e}"),
    };
    let mut sums = kiln_artifact::sums::Sha256Sums::parse(&String::from_utf8_lossy(&text))
        .map_err(not_sums)?;
    let mut files = Vec::new();
    let manifests: Vec<String> = sums
        .iter()
        .map(|(n, _)| n.to_string())
        .filter(|n| n.ends_with(".manifest.json") && !n.contains('/'))
        .collect();
    for name in manifests {
        let path = dir.join(&name);
        let old = std::fs::read_to_string(&path).map_err(|e| Error::Image {
            path: path.clone(),
            reason: format!("cannot read the manifest to record the key id: {e}"),
        })?;
        if let Some(new) = with_key_id(&old, &key.id().to_string()) {
            if new != old {
                let digest = kiln_artifact::digest::Sha256Digest::of(new.as_bytes());
                sums.insert(&name, digest).map_err(not_sums)?;
                files.push((path, new.into_bytes()));
            }
        }
    }
    let text = if files.is_empty() {
        text
    } else {
        let rendered = sums.render().into_bytes();
        files.push((sums_path, rendered.clone()));
        rendered
    };
    let dest = dir.join(SIGNATURE_FILE);
    let sig = sign_bytes(key, &text, comment, &dest)?;
    files.push((dest.clone(), sig.into_bytes()));
    let rewritten = files.len() > 1;
    replace_all(&files)?;
    // A CMS signature of the former SHA256SUMS no longer matches it.
    let cms = dir.join(CMS_SIGNATURE_FILE);
    if rewritten && std::fs::symlink_metadata(&cms).is_ok_and(|m| m.is_file()) {
        std::fs::remove_file(&cms).map_err(|source| Error::Output {
            path: cms,
            op: "cannot remove the CMS signature of the former SHA256SUMS",
            source,
        })?;
    }
    Ok(dest)
}

/// `kiln sign DIR --sign-x509 CERT,KEY`: writes `dir/SHA256SUMS.p7s`, a
/// detached CMS signature of `dir/SHA256SUMS` (see `kiln_sign::X509Signer`),
/// replacing an earlier one. Returns its path.
///
/// # Errors
/// [`Error::Image`] when `SHA256SUMS` is missing or not a checksum list;
/// [`Error::Sign`] when the signature cannot be made;
/// [`Error::Output`]/[`Error::NotRegular`] when it cannot be written.
pub fn sign_dir_x509(dir: &Path, signer: &kiln_sign::X509Signer) -> Result<PathBuf, Error> {
    let sums_path = dir.join("SHA256SUMS");
    let text = std::fs::read(&sums_path).map_err(|e| Error::Image {
        path: sums_path.clone(),
        reason: format!("cannot read the checksum list to sign: {e}"),
    })?;
    kiln_artifact::sums::Sha256Sums::parse(&String::from_utf8_lossy(&text)).map_err(|e| {
        Error::Image {
            path: sums_path.clone(),
            reason: format!("not a SHA256SUMS file: {e}"),
        }
    })?;
    let dest = dir.join(CMS_SIGNATURE_FILE);
    let der = signer.sign_detached(&text).map_err(|source| Error::Sign {
        path: dest.clone(),
        source,
    })?;
    replace_all(&[(dest.clone(), der)])?;
    Ok(dest)
}

/// `text` (a build manifest or a stamp's per-device manifest) recording
/// `id` as its signing key, in the form it is written in; `None` for a
/// file that is neither (left alone).
fn with_key_id(text: &str, id: &str) -> Option<String> {
    if let Ok(mut m) = kiln_artifact::manifest::Manifest::from_json(text) {
        m.signing_key_id = Some(id.to_string());
        return m.to_json().ok();
    }
    let mut v: serde_json::Value = serde_json::from_str(text).ok()?;
    let o = v.as_object_mut()?;
    o.get(crate::stamp::STAMP_MANIFEST_KEY)?;
    o.insert("signing_key_id".into(), id.into());
    let mut out = serde_json::to_string_pretty(&v).ok()?;
    out.push('\n');
    Some(out)
}

/// Writes every `(dest, bytes)` to its temporary name, then renames them
/// into place in order; on failure removes the temporaries.
fn replace_all(files: &[(PathBuf, Vec<u8>)]) -> Result<(), Error> {
    let mut tmps = Vec::new();
    let r = (|| {
        for (dest, bytes) in files {
            let (tmp, mut f) = crate::outpath::create_partial(dest)?;
            tmps.push(tmp);
            f.write_all(bytes)
                .and_then(|()| f.sync_all())
                .map_err(|source| Error::Output {
                    path: dest.clone(),
                    op: "cannot write the file",
                    source,
                })?;
            crate::outpath::check_replaceable(dest)?;
        }
        for (tmp, (dest, _)) in tmps.iter().zip(files) {
            std::fs::rename(tmp, dest).map_err(|source| Error::Output {
                path: dest.clone(),
                op: "cannot move the file into place",
                source,
            })?;
        }
        Ok(())
    })();
    if r.is_err() {
        for t in &tmps {
            crate::outpath::remove_partial(t);
        }
    }
    r
}

/// The temporary files [`sign_dir`] writes in `dir` (for removal on
/// SIGINT/SIGTERM): the signature's, `SHA256SUMS`' and each manifest's
/// present when called.
pub fn signing_temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".manifest.json"))
        .map(|p| crate::outpath::partial_path(&p))
        .collect();
    for f in ["SHA256SUMS", SIGNATURE_FILE, CMS_SIGNATURE_FILE] {
        v.push(crate::outpath::partial_path(&dir.join(f)));
    }
    v
}

/// The temporary files [`write_key_pair`] writes (for removal on
/// SIGINT/SIGTERM).
pub fn temporary_key_paths(secret: &Path, public: &Path) -> Vec<PathBuf> {
    vec![
        crate::outpath::partial_path(secret),
        crate::outpath::partial_path(public),
    ]
}

/// Writes a new key pair (`kiln keygen`): the secret key file readable
/// by its owner only (mode 0600 before any byte is written), then the
/// public key, each through a temporary file renamed into place. Refuses
/// to replace an existing key file.
///
/// # Errors
/// [`Error::Image`] when either file exists; [`Error::Output`] when one
/// cannot be written (neither is left then).
pub fn write_key_pair(secret: (&Path, &[u8]), public: (&Path, &[u8])) -> Result<(), Error> {
    for p in [secret.0, public.0] {
        if std::fs::symlink_metadata(p).is_ok() {
            return Err(Error::Image {
                path: p.to_path_buf(),
                reason: "exists: refusing to replace a key (remove it first)".into(),
            });
        }
    }
    let mut tmps = Vec::new();
    let r = (|| {
        for ((dest, bytes), mode) in [(secret, 0o600), (public, 0o644)] {
            let (tmp, mut f) = crate::outpath::create_partial(dest)?;
            tmps.push(tmp.clone());
            let io = |source| Error::Output {
                path: dest.to_path_buf(),
                op: "cannot write the key file",
                source,
            };
            use std::os::unix::fs::PermissionsExt as _;
            f.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(io)?;
            f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io)?;
        }
        for (tmp, dest) in tmps.iter().zip([secret.0, public.0]) {
            std::fs::rename(tmp, dest).map_err(|source| Error::Output {
                path: dest.to_path_buf(),
                op: "cannot move the key file into place",
                source,
            })?;
        }
        Ok(())
    })();
    if r.is_err() {
        for t in &tmps {
            crate::outpath::remove_partial(t);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_a_directory_atomically_and_minisign_format_verifies() {
        let d = tempfile::tempdir().unwrap();
        let key = SecretKey::generate(&[3; SecretKey::RANDOM_BYTES]);
        let e = sign_dir(d.path(), &key, "c").unwrap_err().to_string();
        assert!(e.contains("SHA256SUMS"), "{e}");
        let sums = format!("{}  a.img\n", "ab".repeat(32));
        std::fs::write(d.path().join("SHA256SUMS"), &sums).unwrap();
        let p = sign_dir(d.path(), &key, &trusted_comment(Some("r"), None)).unwrap();
        let sig = kiln_sign::Signature::parse(&std::fs::read_to_string(&p).unwrap()).unwrap();
        sig.verify(&key.public(), sums.as_bytes()).unwrap();
        assert!(sig.trusted_comment.ends_with(" recipe r"));
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    }
}
