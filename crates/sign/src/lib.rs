//! minisign-format ed25519 keys and signatures for kiln (and, in [`X509Signer`],
//! CMS detached signatures with an X.509 certificate): key generation
//! from given random bytes, secret keys encrypted with scrypt (or
//! unencrypted), prehashed signatures with a trusted comment, and
//! verification. The files are byte-compatible with the stock `minisign`
//! tool (0.11): `minisign -Vm FILE -p KEY.pub` verifies what [`SecretKey::sign`]
//! writes, and keys from `minisign -G` load here.
//!
//! Format: <https://jedisct1.github.io/minisign/> ("Signature format",
//! "Public key format", "Secret key format") and `src/minisign.h` of
//! minisign 0.11. Every file is text lines; binary parts are standard
//! base64 (with padding). Integers are little-endian.
//!
//! Public key (`untrusted comment: minisign public key <ID>` + one base64 line):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | signature algorithm `Ed` |
//! | 2 | 8 | key id |
//! | 10 | 32 | ed25519 public key |
//!
//! Secret key (`untrusted comment: ...` + one base64 line):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | signature algorithm `Ed` |
//! | 2 | 2 | kdf algorithm: `Sc` (scrypt) or two zero bytes (unencrypted) |
//! | 4 | 2 | checksum algorithm `B2` (BLAKE2b-256) |
//! | 6 | 32 | kdf salt |
//! | 38 | 8 | kdf opslimit (u64) |
//! | 46 | 8 | kdf memlimit (u64) |
//! | 54 | 8 | key id (encrypted) |
//! | 62 | 64 | ed25519 secret key: seed then public key (encrypted) |
//! | 126 | 32 | checksum: BLAKE2b-256(`Ed` ‖ key id ‖ secret key) (encrypted) |
//!
//! Encryption XORs bytes 54..158 with scrypt(passphrase, salt) output
//! (N, r, p derived from opslimit/memlimit as libsodium's
//! `crypto_pwhash_scryptsalsa208sha256` does). minisign writes an
//! unencrypted key with a zero salt, zero limits and a zero checksum.
//!
//! Signature (`untrusted comment: ...`, base64 line, `trusted comment: ...`,
//! base64 line):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | `ED` (signs BLAKE2b-512 of the file) or legacy `Ed` (signs the file) |
//! | 2 | 8 | key id |
//! | 10 | 64 | ed25519 signature |
//!
//! and the global signature: ed25519 over (the 64 signature bytes ‖ the
//! trusted comment text), 64 bytes.
//!
//! ```
//! use kiln_sign::{KdfLimits, SecretKey, Signature};
//! let key = SecretKey::generate(&[7; SecretKey::RANDOM_BYTES]);
//! let sig = key.sign(b"data", "kiln test").unwrap();
//! let text = sig.to_text();
//! let parsed = Signature::parse(&text).unwrap();
//! parsed.verify(&key.public(), b"data").unwrap();
//! assert!(parsed.verify(&key.public(), b"other").is_err());
//! // An encrypted key file, read back with its passphrase.
//! let file = key.to_text(Some((b"pw".as_slice(), KdfLimits::TEST))).unwrap();
//! let back = SecretKey::parse(&file, Some(b"pw")).unwrap();
//! assert_eq!(back.public(), key.public());
//! ```
//!
//! This library never reads the clock, the environment or randomness
//! (the caller passes random bytes), and never runs external tools.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod cms;
mod error;
mod kdf;
mod key;
mod signature;

pub use cms::X509Signer;
pub use error::Error;
pub use kdf::KdfLimits;
pub use key::{KeyId, PublicKey, SecretKey};
pub use signature::Signature;

/// The first line prefix of every minisign file.
const UNTRUSTED_PREFIX: &str = "untrusted comment: ";
/// The prefix of a signature's third line.
const TRUSTED_PREFIX: &str = "trusted comment: ";
/// ed25519 signature algorithm id.
const SIGALG: [u8; 2] = *b"Ed";
/// Prehashed (BLAKE2b-512) ed25519 signature algorithm id.
const SIGALG_HASHED: [u8; 2] = *b"ED";

/// Decodes one standard-base64 line; `what` names the file kind in errors.
fn decode_b64(line: &str, what: &'static str) -> Result<Vec<u8>, Error> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(line.trim())
        .map_err(|e| Error::Malformed {
            what,
            reason: format!("bad base64: {e}"),
        })
}

/// Encodes `bytes` as standard base64.
fn encode_b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The base64 payload line after an `untrusted comment:` line (a bare
/// base64 line is accepted too, as minisign's `-P`), and the rest.
fn split_file<'a>(
    text: &'a str,
    what: &'static str,
) -> Result<(&'a str, std::str::Lines<'a>), Error> {
    let mut lines = text.lines();
    let first = lines.next().ok_or(Error::Malformed {
        what,
        reason: "empty file".into(),
    })?;
    if first.starts_with(UNTRUSTED_PREFIX) {
        let b64 = lines.next().ok_or(Error::Malformed {
            what,
            reason: "no line after the untrusted comment".into(),
        })?;
        Ok((b64, lines))
    } else if first.starts_with("untrusted comment") {
        Err(Error::Malformed {
            what,
            reason: "the first line must start with \"untrusted comment: \"".into(),
        })
    } else {
        Ok((first, lines))
    }
}
