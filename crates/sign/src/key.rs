//! Public and secret keys (see the crate docs for the layouts).

use crate::kdf::KdfLimits;
use crate::{decode_b64, encode_b64, split_file, Error, SIGALG, UNTRUSTED_PREFIX};
use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

/// kdf algorithm id of an scrypt-encrypted secret key.
const KDF_SCRYPT: [u8; 2] = *b"Sc";
/// kdf algorithm id of an unencrypted secret key.
const KDF_NONE: [u8; 2] = [0, 0];
/// Checksum algorithm id (BLAKE2b-256).
const CHK_BLAKE2: [u8; 2] = *b"B2";
/// Decoded size of a public key line.
const PUBLIC_LEN: usize = 42;
/// Decoded size of a secret key line.
const SECRET_LEN: usize = 158;
/// Start of the encrypted part (key id, secret key, checksum).
const ENCRYPTED_AT: usize = 54;

/// A key id: 8 random bytes chosen at key generation, shown (as minisign
/// shows it) as 16 upper-case hex digits of their little-endian value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyId(pub [u8; 8]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

/// A minisign public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// Its id.
    pub id: KeyId,
    key: VerifyingKey,
}

impl PublicKey {
    /// Parses a public key file (or its bare base64 line).
    ///
    /// # Errors
    /// [`Error::Malformed`], [`Error::Unsupported`].
    pub fn parse(text: &str) -> Result<PublicKey, Error> {
        const WHAT: &str = "public key";
        let (line, _) = split_file(text, WHAT)?;
        let raw = decode_b64(line, WHAT)?;
        if raw.len() != PUBLIC_LEN {
            return Err(Error::Malformed {
                what: WHAT,
                reason: format!("{} bytes, expected {PUBLIC_LEN}", raw.len()),
            });
        }
        check_alg(&raw[..2], SIGALG, "signature")?;
        let id = KeyId(fixed(&raw[2..10]));
        let key = VerifyingKey::from_bytes(&fixed(&raw[10..42])).map_err(|_| Error::Malformed {
            what: WHAT,
            reason: "not an ed25519 point".into(),
        })?;
        Ok(PublicKey { id, key })
    }

    /// The key file: `untrusted comment: minisign public key <ID>` and the
    /// base64 line, as `minisign -G` writes it.
    pub fn to_text(&self) -> String {
        let mut raw = Vec::with_capacity(PUBLIC_LEN);
        raw.extend_from_slice(&SIGALG);
        raw.extend_from_slice(&self.id.0);
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "{UNTRUSTED_PREFIX}minisign public key {}\n{}\n",
            self.id,
            encode_b64(&raw)
        )
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }
}

/// A minisign secret key (ed25519 seed and key id). Its bytes are wiped
/// from memory when dropped and never shown by `Debug`.
pub struct SecretKey {
    id: KeyId,
    key: SigningKey,
    /// Salt for encrypting the key file.
    salt: [u8; 32],
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.id)
    }
}

impl SecretKey {
    /// How many random bytes [`SecretKey::generate`] takes: 32 for the
    /// ed25519 seed, 8 for the key id, 32 for the scrypt salt.
    pub const RANDOM_BYTES: usize = 72;

    /// A new key from `random` (from the operating system's generator).
    pub fn generate(random: &[u8; Self::RANDOM_BYTES]) -> SecretKey {
        SecretKey {
            key: SigningKey::from_bytes(&fixed(&random[..32])),
            id: KeyId(fixed(&random[32..40])),
            salt: fixed(&random[40..72]),
        }
    }

    /// The key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    pub(crate) fn sign_raw(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    /// Whether the secret key file `text` is encrypted (needs a
    /// passphrase).
    ///
    /// # Errors
    /// [`Error::Malformed`].
    pub fn is_encrypted(text: &str) -> Result<bool, Error> {
        let raw = secret_bytes(text)?;
        Ok(raw[2..4] != KDF_NONE)
    }

    /// Parses a secret key file, decrypting it with `passphrase` when it
    /// is encrypted (ignored otherwise).
    ///
    /// # Errors
    /// [`Error::PassphraseRequired`], [`Error::WrongPassphrase`],
    /// [`Error::CorruptKey`], [`Error::Malformed`], [`Error::Unsupported`],
    /// [`Error::KdfLimits`].
    pub fn parse(text: &str, passphrase: Option<&[u8]>) -> Result<SecretKey, Error> {
        let mut raw = secret_bytes(text)?;
        check_alg(&raw[..2], SIGALG, "signature")?;
        check_alg(&raw[4..6], CHK_BLAKE2, "checksum")?;
        let salt: [u8; 32] = fixed(&raw[6..38]);
        let encrypted = match fixed::<2>(&raw[2..4]) {
            KDF_NONE => false,
            KDF_SCRYPT => true,
            other => check_alg(&other, KDF_SCRYPT, "kdf").map(|()| true)?,
        };
        if encrypted {
            let pass = passphrase.ok_or(Error::PassphraseRequired)?;
            let limits = KdfLimits {
                opslimit: u64::from_le_bytes(fixed(&raw[38..46])),
                memlimit: u64::from_le_bytes(fixed(&raw[46..54])),
            };
            let stream = limits.stream(pass, &salt, SECRET_LEN - ENCRYPTED_AT)?;
            xor(&mut raw[ENCRYPTED_AT..], &stream);
        }
        let id = KeyId(fixed(&raw[54..62]));
        let sk = Zeroizing::new(fixed::<64>(&raw[62..126]));
        let chk: [u8; 32] = fixed(&raw[126..158]);
        // minisign leaves the checksum of an unencrypted key zero.
        let checked = encrypted || chk != [0; 32];
        if checked && chk != checksum(&id, &sk) {
            return Err(if encrypted {
                Error::WrongPassphrase
            } else {
                Error::CorruptKey
            });
        }
        let key = SigningKey::from_bytes(&fixed(&sk[..32]));
        if key.verifying_key().as_bytes()[..] != sk[32..] {
            return Err(Error::CorruptKey);
        }
        Ok(SecretKey { id, key, salt })
    }

    /// The secret key file: encrypted with `(passphrase, limits)` (the
    /// salt comes from [`SecretKey::generate`]'s random bytes), or
    /// unencrypted with `None` (as `minisign -G -W` writes it).
    ///
    /// # Errors
    /// [`Error::KdfLimits`] for limits out of range.
    pub fn to_text(&self, encrypt: Option<(&[u8], KdfLimits)>) -> Result<Zeroizing<String>, Error> {
        let mut raw = Zeroizing::new(Vec::with_capacity(SECRET_LEN));
        raw.extend_from_slice(&SIGALG);
        let sk = Zeroizing::new(self.key.to_keypair_bytes());
        match encrypt {
            Some((_, limits)) => {
                raw.extend_from_slice(&KDF_SCRYPT);
                raw.extend_from_slice(&CHK_BLAKE2);
                raw.extend_from_slice(&self.salt);
                raw.extend_from_slice(&limits.opslimit.to_le_bytes());
                raw.extend_from_slice(&limits.memlimit.to_le_bytes());
            }
            None => {
                raw.extend_from_slice(&KDF_NONE);
                raw.extend_from_slice(&CHK_BLAKE2);
                raw.extend_from_slice(&[0; 48]);
            }
        }
        raw.extend_from_slice(&self.id.0);
        raw.extend_from_slice(&sk[..]);
        match encrypt {
            Some((pass, limits)) => {
                raw.extend_from_slice(&checksum(&self.id, &sk));
                let stream = limits.stream(pass, &self.salt, SECRET_LEN - ENCRYPTED_AT)?;
                xor(&mut raw[ENCRYPTED_AT..], &stream);
            }
            None => raw.extend_from_slice(&[0; 32]),
        }
        let comment = if encrypt.is_some() {
            "minisign encrypted secret key"
        } else {
            "minisign secret key (unencrypted)"
        };
        Ok(Zeroizing::new(format!(
            "{UNTRUSTED_PREFIX}{comment}\n{}\n",
            Zeroizing::new(encode_b64(&raw)).as_str()
        )))
    }
}

/// The decoded base64 line of a secret key file, length-checked.
fn secret_bytes(text: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
    const WHAT: &str = "secret key";
    let (line, _) = split_file(text, WHAT)?;
    let raw = Zeroizing::new(decode_b64(line, WHAT)?);
    if raw.len() != SECRET_LEN {
        return Err(Error::Malformed {
            what: WHAT,
            reason: format!("{} bytes, expected {SECRET_LEN}", raw.len()),
        });
    }
    Ok(raw)
}

/// BLAKE2b-256(`Ed` ‖ key id ‖ secret key).
fn checksum(id: &KeyId, sk: &[u8; 64]) -> [u8; 32] {
    let mut h = Blake2b::<U32>::new();
    h.update(SIGALG);
    h.update(id.0);
    h.update(sk);
    h.finalize().into()
}

fn xor(data: &mut [u8], stream: &[u8]) {
    for (d, s) in data.iter_mut().zip(stream) {
        *d ^= s;
    }
}

/// Refuses an algorithm id other than `want`.
pub(crate) fn check_alg(found: &[u8], want: [u8; 2], what: &'static str) -> Result<(), Error> {
    if found == want {
        Ok(())
    } else {
        Err(Error::Unsupported {
            what,
            found: String::from_utf8_lossy(found).into_owned(),
        })
    }
}

/// `N` bytes of `s` (callers slice exactly `N`).
pub(crate) fn fixed<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&s[..N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        let mut r = [0u8; SecretKey::RANDOM_BYTES];
        for (i, b) in r.iter_mut().enumerate() {
            *b = i as u8;
        }
        SecretKey::generate(&r)
    }

    #[test]
    fn encrypted_key_round_trips_and_refuses_a_wrong_passphrase() {
        let k = key();
        let text = k
            .to_text(Some((b"correct horse", KdfLimits::TEST)))
            .unwrap();
        assert!(SecretKey::is_encrypted(&text).unwrap());
        let back = SecretKey::parse(&text, Some(b"correct horse")).unwrap();
        assert_eq!(back.public(), k.public());
        assert!(matches!(
            SecretKey::parse(&text, Some(b"wrong")),
            Err(Error::WrongPassphrase)
        ));
        assert!(matches!(
            SecretKey::parse(&text, None),
            Err(Error::PassphraseRequired)
        ));
    }

    #[test]
    fn unencrypted_key_round_trips_and_a_flipped_byte_is_corrupt() {
        let k = key();
        let text = k.to_text(None).unwrap();
        assert!(!SecretKey::is_encrypted(&text).unwrap());
        assert_eq!(SecretKey::parse(&text, None).unwrap().public(), k.public());
        // Flip one bit of the embedded public half.
        let line = text.lines().nth(1).unwrap();
        let mut raw = decode_b64(line, "t").unwrap();
        raw[130] ^= 1;
        let bad = format!("{UNTRUSTED_PREFIX}x\n{}\n", encode_b64(&raw));
        assert!(matches!(
            SecretKey::parse(&bad, None),
            Err(Error::CorruptKey)
        ));
    }

    #[test]
    fn public_key_round_trips_and_shows_minisigns_id() {
        let k = key();
        let text = k.public().to_text();
        // Key id bytes 32..40 = 0x20..0x27, shown as a little-endian u64.
        assert!(text.starts_with("untrusted comment: minisign public key 2726252423222120\n"));
        assert_eq!(PublicKey::parse(&text).unwrap(), k.public());
        assert!(PublicKey::parse("untrusted comment: x\nRWQ=\n").is_err());
        assert!(PublicKey::parse("").is_err());
    }

    #[test]
    fn a_minisign_generated_key_loads() {
        // `minisign -G -W` (0.11), unencrypted, with its public key.
        let sk = "untrusted comment: minisign encrypted secret key\nRWQAAEIyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAz4Sv6XZJsS+Bg9w+nS3GXpHjhIdTuTVMzellao0ZjGS8QIzZOZFpob81XFvyCXWXwnGfOI76x262SxBeO2lKeUMpJ4Z9vdkEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let pk = "untrusted comment: minisign public key 2FB14976E9AF84CF\nRWTPhK/pdkmxL781XFvyCXWXwnGfOI76x262SxBeO2lKeUMpJ4Z9vdkE\n";
        let k = SecretKey::parse(sk, None).unwrap();
        assert_eq!(k.public(), PublicKey::parse(pk).unwrap());
        assert_eq!(k.public().to_text(), pk);
    }
}
