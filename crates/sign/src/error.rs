//! The one error type of `kiln-sign`.

/// Errors of `kiln-sign`. Every one is bad input (exit 2): a malformed
/// or mismatching key or signature, or a wrong passphrase. None carries
/// secret material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file that is not a minisign key or signature of the expected kind.
    #[error("not a valid minisign {what}: {reason}")]
    Malformed {
        /// `public key`, `secret key` or `signature`.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An algorithm this library does not implement.
    #[error("unsupported minisign {what} algorithm {found:?}")]
    Unsupported {
        /// Which algorithm field.
        what: &'static str,
        /// Its bytes, shown as text.
        found: String,
    },
    /// The secret key is encrypted and no passphrase was given.
    #[error("the secret key is encrypted: a passphrase is needed")]
    PassphraseRequired,
    /// The checksum of the decrypted secret key does not match.
    #[error("wrong passphrase for the secret key (or the key file is corrupt)")]
    WrongPassphrase,
    /// The secret key's embedded public key does not match its seed.
    #[error("corrupt secret key: its public half does not match its private half")]
    CorruptKey,
    /// The scrypt limits of an encrypted key are beyond what is accepted.
    #[error("the secret key's scrypt limits (opslimit {opslimit}, memlimit {memlimit}) are out of range")]
    KdfLimits {
        /// opslimit from the file.
        opslimit: u64,
        /// memlimit from the file.
        memlimit: u64,
    },
    /// The signature was made by another key.
    #[error("signed by key {signed_by}, not by the given public key {expected}")]
    KeyMismatch {
        /// Key id in the signature.
        signed_by: String,
        /// Key id of the public key.
        expected: String,
    },
    /// The signature does not verify for this data.
    #[error("signature verification failed: the signed file was changed")]
    BadSignature,
    /// The trusted comment's (global) signature does not verify.
    #[error("the trusted comment's signature does not verify: the comment was changed")]
    BadTrustedComment,
    /// An X.509 certificate or private key that cannot be used for a CMS
    /// signature (never quotes the key).
    #[error("not a valid X.509 {what}: {reason}")]
    X509 {
        /// `certificate`, `private key` or `signature`.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A trusted comment that cannot be written on one line.
    #[error("a trusted comment must be one line")]
    MultilineComment,
}

impl Error {
    /// The process exit code for this error: always 2 (bad input).
    pub fn exit_code(&self) -> i32 {
        2
    }
}
