//! CMS (PKCS #7) detached signatures with an X.509 certificate, for
//! customers who verify with their PKI: `openssl cms -verify -binary
//! -inform DER -in SHA256SUMS.p7s -content SHA256SUMS -CAfile ca.pem`.
//!
//! Format: RFC 5652 (Cryptographic Message Syntax) §5 SignedData, DER:
//!
//! | field | value |
//! |---|---|
//! | ContentInfo.contentType | id-signedData (1.2.840.113549.1.7.2) |
//! | SignedData.version | 1 |
//! | digestAlgorithms | { id-sha256 } |
//! | encapContentInfo | id-data, no eContent (detached) |
//! | certificates | the signer's certificate |
//! | signerInfos[0].sid | issuerAndSerialNumber of the certificate |
//! | signedAttrs | contentType, messageDigest (SHA-256 of the content); no signingTime |
//! | signatureAlgorithm | ecdsa-with-SHA256 (RFC 5758 §3.2), DER `Ecdsa-Sig-Value` |
//!
//! Keys: ECDSA P-256 in unencrypted PKCS #8 PEM (`openssl genpkey
//! -algorithm EC -pkeyopt ec_paramgen_curve:P-256`). ECDSA nonces are
//! derived from the key and the message (RFC 6979) and no signing time is
//! recorded, so the signature is deterministic: two builds give the same
//! bytes.

use crate::Error;
use cms::builder::{SignedDataBuilder, SignerInfoBuilder};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::signed_data::{EncapsulatedContentInfo, SignerIdentifier};
use der::{DecodePem, Encode};
use p256::pkcs8::DecodePrivateKey;
use sha2::Digest;
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use zeroize::Zeroizing;

/// A certificate and its ECDSA P-256 private key.
pub struct X509Signer {
    cert: Certificate,
    key: p256::ecdsa::SigningKey,
}

fn bad(what: &'static str, reason: impl ToString) -> Error {
    Error::X509 {
        what,
        reason: reason.to_string(),
    }
}

impl X509Signer {
    /// Loads a PEM certificate and the PEM PKCS #8 private key of its
    /// public key.
    ///
    /// # Errors
    /// [`Error::X509`]: a certificate or key that does not parse, a key
    /// that is not ECDSA P-256, or a key that is not the certificate's.
    pub fn from_pem(cert_pem: &[u8], key_pem: &Zeroizing<String>) -> Result<Self, Error> {
        let cert = Certificate::from_pem(cert_pem).map_err(|e| bad("certificate", e))?;
        let key = p256::ecdsa::SigningKey::from_pkcs8_pem(key_pem).map_err(|_| {
            bad(
                "private key",
                "not an unencrypted PKCS #8 PEM ECDSA P-256 key",
            )
        })?;
        let public = key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        let in_cert = cert
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        if public != in_cert {
            return Err(bad(
                "private key",
                "does not match the certificate's public key",
            ));
        }
        Ok(Self { cert, key })
    }

    /// The DER CMS SignedData over `content`, detached.
    ///
    /// # Errors
    /// [`Error::X509`] when the structure cannot be built.
    pub fn sign_detached(&self, content: &[u8]) -> Result<Vec<u8>, Error> {
        let digest = sha2::Sha256::digest(content);
        let eci = EncapsulatedContentInfo {
            econtent_type: const_oid::db::rfc5911::ID_DATA,
            econtent: None,
        };
        let sha256 = AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::ID_SHA_256,
            parameters: None,
        };
        let sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: self.cert.tbs_certificate.issuer.clone(),
            serial_number: self.cert.tbs_certificate.serial_number.clone(),
        });
        let cms_err = |e: cms::builder::Error| bad("signature", e);
        let signer = SignerInfoBuilder::new(&self.key, sid, sha256.clone(), &eci, Some(&digest))
            .map_err(cms_err)?;
        let mut builder = SignedDataBuilder::new(&eci);
        builder
            .add_digest_algorithm(sha256)
            .map_err(cms_err)?
            .add_certificate(CertificateChoices::Certificate(self.cert.clone()))
            .map_err(cms_err)?
            .add_signer_info::<p256::ecdsa::SigningKey, p256::ecdsa::DerSignature>(signer)
            .map_err(cms_err)?
            .build()
            .map_err(cms_err)?
            .to_der()
            .map_err(|e| bad("signature", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_certificate_or_key() {
        let key = Zeroizing::new(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_string(),
        );
        let e = X509Signer::from_pem(b"not pem", &key)
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("not a valid X.509 certificate"), "{e}");
    }
}
