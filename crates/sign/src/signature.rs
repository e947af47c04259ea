//! Signatures (see the crate docs for the layout): kiln writes prehashed
//! (`ED`) signatures, as minisign 0.11 does by default, and reads both
//! kinds.

use crate::key::{check_alg, fixed, KeyId, PublicKey, SecretKey};
use crate::{decode_b64, encode_b64, split_file, Error, SIGALG, SIGALG_HASHED};
use crate::{TRUSTED_PREFIX, UNTRUSTED_PREFIX};
use blake2::{Blake2b512, Digest};
use ed25519_dalek::Verifier;

/// Decoded size of the signature line.
const SIG_LEN: usize = 74;

/// A minisign signature of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Id of the key that made it.
    pub key_id: KeyId,
    /// `true` for `ED` (BLAKE2b-512 prehashed), `false` for legacy `Ed`.
    prehashed: bool,
    signature: [u8; 64],
    /// The trusted (signed) comment.
    pub trusted_comment: String,
    global: [u8; 64],
}

impl SecretKey {
    /// Signs `data` (prehashed), with `trusted_comment` (one line) signed
    /// too. Deterministic: the same key, data and comment give the same
    /// bytes.
    ///
    /// # Errors
    /// [`Error::MultilineComment`].
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> Result<Signature, Error> {
        if trusted_comment.contains(['\n', '\r']) {
            return Err(Error::MultilineComment);
        }
        let signature = self.sign_raw(&Blake2b512::digest(data));
        let mut global_msg = signature.to_vec();
        global_msg.extend_from_slice(trusted_comment.as_bytes());
        Ok(Signature {
            key_id: self.id(),
            prehashed: true,
            signature,
            trusted_comment: trusted_comment.to_string(),
            global: self.sign_raw(&global_msg),
        })
    }
}

impl Signature {
    /// Parses a `.minisig` file.
    ///
    /// # Errors
    /// [`Error::Malformed`], [`Error::Unsupported`].
    pub fn parse(text: &str) -> Result<Signature, Error> {
        const WHAT: &str = "signature";
        let malformed = |reason: &str| Error::Malformed {
            what: WHAT,
            reason: reason.to_string(),
        };
        if !text.starts_with(UNTRUSTED_PREFIX) {
            return Err(malformed("the first line must be an untrusted comment"));
        }
        let (line, mut rest) = split_file(text, WHAT)?;
        let raw = decode_b64(line, WHAT)?;
        if raw.len() != SIG_LEN {
            return Err(malformed(&format!(
                "{} bytes, expected {SIG_LEN}",
                raw.len()
            )));
        }
        let prehashed = match fixed::<2>(&raw[..2]) {
            SIGALG_HASHED => true,
            other => check_alg(&other, SIGALG, "signature").map(|()| false)?,
        };
        let trusted_comment = rest
            .next()
            .and_then(|l| l.strip_prefix(TRUSTED_PREFIX))
            .ok_or_else(|| malformed("the third line must start with \"trusted comment: \""))?
            .to_string();
        let global = decode_b64(
            rest.next()
                .ok_or_else(|| malformed("no global signature line"))?,
            WHAT,
        )?;
        if global.len() != 64 {
            return Err(malformed("the global signature is not 64 bytes"));
        }
        Ok(Signature {
            key_id: KeyId(fixed(&raw[2..10])),
            prehashed,
            signature: fixed(&raw[10..74]),
            trusted_comment,
            global: fixed(&global),
        })
    }

    /// The `.minisig` file text.
    pub fn to_text(&self) -> String {
        let mut raw = Vec::with_capacity(SIG_LEN);
        raw.extend_from_slice(if self.prehashed {
            &SIGALG_HASHED
        } else {
            &SIGALG
        });
        raw.extend_from_slice(&self.key_id.0);
        raw.extend_from_slice(&self.signature);
        format!(
            "{UNTRUSTED_PREFIX}signature from kiln secret key {}\n{}\n{TRUSTED_PREFIX}{}\n{}\n",
            self.key_id,
            encode_b64(&raw),
            self.trusted_comment,
            encode_b64(&self.global)
        )
    }

    /// Checks that `key` made this signature of `data` and signed its
    /// trusted comment.
    ///
    /// # Errors
    /// [`Error::KeyMismatch`], [`Error::BadSignature`],
    /// [`Error::BadTrustedComment`].
    pub fn verify(&self, key: &PublicKey, data: &[u8]) -> Result<(), Error> {
        if self.key_id != key.id {
            return Err(Error::KeyMismatch {
                signed_by: self.key_id.to_string(),
                expected: key.id.to_string(),
            });
        }
        let vk = key.verifying_key();
        let sig = ed25519_dalek::Signature::from_bytes(&self.signature);
        let ok = if self.prehashed {
            vk.verify(&Blake2b512::digest(data), &sig)
        } else {
            vk.verify(data, &sig)
        };
        ok.map_err(|_| Error::BadSignature)?;
        let mut global_msg = self.signature.to_vec();
        global_msg.extend_from_slice(self.trusted_comment.as_bytes());
        vk.verify(
            &global_msg,
            &ed25519_dalek::Signature::from_bytes(&self.global),
        )
        .map_err(|_| Error::BadTrustedComment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SecretKey {
        SecretKey::generate(&[b; SecretKey::RANDOM_BYTES])
    }

    #[test]
    fn signs_deterministically_and_detects_every_change() {
        let k = key(1);
        let s1 = k.sign(b"sums", "kiln 1").unwrap();
        assert_eq!(s1.to_text(), k.sign(b"sums", "kiln 1").unwrap().to_text());
        let parsed = Signature::parse(&s1.to_text()).unwrap();
        parsed.verify(&k.public(), b"sums").unwrap();
        assert!(matches!(
            parsed.verify(&k.public(), b"sumz"),
            Err(Error::BadSignature)
        ));
        let mut forged = parsed.clone();
        forged.trusted_comment = "kiln 2".into();
        assert!(matches!(
            forged.verify(&k.public(), b"sums"),
            Err(Error::BadTrustedComment)
        ));
        assert!(matches!(
            parsed.verify(&key(2).public(), b"sums"),
            Err(Error::KeyMismatch { .. })
        ));
        assert!(k.sign(b"x", "two\nlines").is_err());
    }

    #[test]
    fn a_minisign_signature_verifies() {
        // `minisign -S -s u.key -m g` (0.11) over "hi\n".
        let pk = PublicKey::parse(
            "untrusted comment: minisign public key 2FB14976E9AF84CF\nRWTPhK/pdkmxL781XFvyCXWXwnGfOI76x262SxBeO2lKeUMpJ4Z9vdkE\n",
        )
        .unwrap();
        let sig = Signature::parse(SIG_FROM_MINISIGN).unwrap();
        sig.verify(&pk, b"hi\n").unwrap();
        assert!(sig.verify(&pk, b"hi!\n").is_err());
    }

    const SIG_FROM_MINISIGN: &str = include_str!("../testdata/g.minisig");

    #[test]
    fn malformed_signatures_are_refused() {
        for bad in [
            "",
            "untrusted comment: x\n",
            "untrusted comment: x\nRWQ=\n",
            "nope\n",
        ] {
            assert!(Signature::parse(bad).is_err(), "{bad:?}");
        }
    }
}
