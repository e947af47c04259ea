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
/// --sign`): writes `dir/SHA256SUMS.minisig` over `dir/SHA256SUMS` with
/// `comment`, replacing an earlier signature. The caller checks the
/// listed files first when they may have changed since they were
/// written (verification without a key). Returns the
/// signature's path.
///
/// # Errors
/// [`Error::Image`] when `SHA256SUMS` is missing or not a kiln checksum
/// list; [`Error::Output`]/[`Error::NotRegular`] when the signature
/// cannot be written.
pub fn sign_dir(dir: &Path, key: &SecretKey, comment: &str) -> Result<PathBuf, Error> {
    let sums = dir.join("SHA256SUMS");
    let text = std::fs::read(&sums).map_err(|e| Error::Image {
        path: sums.clone(),
        reason: format!("cannot read the checksum list to sign: {e}"),
    })?;
    kiln_artifact::sums::Sha256Sums::parse(&String::from_utf8_lossy(&text)).map_err(|e| {
        Error::Image {
            path: sums.clone(),
            reason: format!("not a SHA256SUMS file: {e}"),
        }
    })?;
    let dest = dir.join(SIGNATURE_FILE);
    let sig = sign_bytes(key, &text, comment, &dest)?;
    let (tmp, mut f) = crate::outpath::create_partial(&dest)?;
    let done = f
        .write_all(sig.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|source| Error::Output {
            path: dest.clone(),
            op: "cannot write the signature",
            source,
        })
        .and_then(|()| crate::outpath::check_replaceable(&dest))
        .and_then(|()| {
            std::fs::rename(&tmp, &dest).map_err(|source| Error::Output {
                path: dest.clone(),
                op: "cannot move the signature into place",
                source,
            })
        });
    if done.is_err() {
        crate::outpath::remove_partial(&tmp);
    }
    done.map(|()| dest)
}

/// The temporary file [`sign_dir`] writes in `dir` (for removal on
/// SIGINT/SIGTERM).
pub fn signature_temporary(dir: &Path) -> PathBuf {
    crate::outpath::partial_path(&dir.join(SIGNATURE_FILE))
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
