//! `[sign]`: the secret key `kiln build` signs `SHA256SUMS` with, and
//! the passphrase of an encrypted one.
//!
//! ```toml
//! [sign]
//! key = { from-file = "release.key" }                        # or
//! key = { from-env = "KILN_SIGNING_KEY", secret = true }     # the key file's text
//! passphrase = { from-env = "KILN_KEY_PASSPHRASE", secret = true }
//! ```
//! The key is minisign's secret key format (`kiln keygen`, `minisign
//! -G`). A passphrase comes only from the environment: the build runs
//! unattended, and a passphrase kept in a file beside the key protects
//! nothing. Both values are secrets: they are never printed, recorded
//! or quoted in an error, so `secret = false` is refused.

use crate::{EnvLookup, Error, Location};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;
use zeroize::Zeroizing;

/// The wire form of a `{ from-file = ".." }` / `{ from-env = ".." }`
/// value in `[sign]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct WireSecret {
    from_file: Option<String>,
    from_env: Option<String>,
    secret: Option<bool>,
}

/// The wire form of `[sign]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct WireSign {
    key: Spanned<WireSecret>,
    passphrase: Option<Spanned<WireSecret>>,
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file (resolved against the recipe's directory).
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

/// One `[sign]` value with the key naming it and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// Where it comes from.
    pub source: SecretSource,
    /// The recipe key (`sign.key`, `sign.passphrase`).
    pub key: String,
    /// Where in the recipe.
    pub at: Location,
}

/// `[sign]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignSpec {
    /// The secret key's text (minisign format).
    pub key: SecretRef,
    /// The passphrase of an encrypted key (environment only).
    pub passphrase: Option<SecretRef>,
}

impl SecretRef {
    /// Reads the value (a file's whole text or a variable's value).
    ///
    /// # Errors
    /// [`Error::InputFile`] when the file cannot be read,
    /// [`Error::MissingEnv`] when the variable is not set; both name the
    /// recipe key, never the value.
    pub fn read(&self, env: EnvLookup<'_>) -> Result<Zeroizing<String>, Error> {
        match &self.source {
            SecretSource::File(path) => {
                std::fs::read_to_string(path)
                    .map(Zeroizing::new)
                    .map_err(|source| Error::InputFile {
                        at: self.at.clone(),
                        key: self.key.clone(),
                        path: path.clone(),
                        source,
                    })
            }
            SecretSource::Env(var) => {
                env(var)
                    .map(Zeroizing::new)
                    .ok_or_else(|| Error::MissingEnv {
                        at: self.at.clone(),
                        key: self.key.clone(),
                        var: var.clone(),
                    })
            }
        }
    }
}

/// Validates `[sign]`; `at(span)` locates a span, `base` anchors a
/// relative `from-file`.
pub(crate) fn sign_spec(
    w: Option<WireSign>,
    base: &Path,
    at: &dyn Fn(std::ops::Range<usize>) -> Location,
) -> Result<Option<SignSpec>, Error> {
    let Some(w) = w else {
        return Ok(None);
    };
    let key = secret_ref(w.key, "sign.key", base, at)?;
    let passphrase = w
        .passphrase
        .map(|p| secret_ref(p, "sign.passphrase", base, at))
        .transpose()?;
    if let Some(p) = &passphrase {
        if let SecretSource::File(_) = p.source {
            return Err(Error::Invalid {
                at: p.at.clone(),
                key: p.key.clone(),
                reason: "use `{ from-env = \"VAR\", secret = true }`: a passphrase stored in a file beside the key protects nothing".into(),
            });
        }
    }
    Ok(Some(SignSpec { key, passphrase }))
}

fn secret_ref(
    w: Spanned<WireSecret>,
    key: &str,
    base: &Path,
    at: &dyn Fn(std::ops::Range<usize>) -> Location,
) -> Result<SecretRef, Error> {
    let loc = at(w.span());
    let invalid = |reason: &str| Error::Invalid {
        at: loc.clone(),
        key: key.to_string(),
        reason: reason.to_string(),
    };
    let w = w.into_inner();
    if w.secret == Some(false) {
        return Err(invalid(
            "`secret = false`: a signing key and its passphrase are always secret",
        ));
    }
    let source = match (w.from_file, w.from_env) {
        (Some(f), None) if !f.trim().is_empty() => SecretSource::File(base.join(f)),
        (None, Some(v)) if !v.trim().is_empty() => SecretSource::Env(v),
        _ => {
            return Err(invalid(
                "give exactly one of from-file or from-env, as a non-empty string",
            ))
        }
    };
    Ok(SecretRef {
        source,
        key: key.to_string(),
        at: loc,
    })
}

#[cfg(test)]
mod tests {
    use crate::Recipe;

    fn recipe(sign: &str) -> Result<Recipe, crate::Error> {
        Recipe::from_toml_str(&format!("name = \"r\"\n{sign}"), "/d/r.toml".as_ref())
    }

    #[test]
    fn key_from_file_or_env_with_a_passphrase_from_env() {
        let r = recipe("[sign]\nkey = { from-file = \"k/release.key\" }\n").unwrap();
        let s = r.sign.unwrap();
        assert_eq!(
            s.key.source,
            super::SecretSource::File("/d/k/release.key".into())
        );
        assert_eq!(s.key.at.line, 3);
        let r = recipe(
            "[sign]\nkey = { from-env = \"K\", secret = true }\npassphrase = { from-env = \"P\", secret = true }\n",
        )
        .unwrap();
        let s = r.sign.unwrap();
        let env = |v: &str| (v == "K").then(|| "text".to_string());
        assert_eq!(*s.key.read(&env).unwrap(), "text");
        let e = s.passphrase.unwrap().read(&env).unwrap_err().to_string();
        assert_eq!(
            e,
            "/d/r.toml:4:14: `sign.passphrase`: environment variable P is not set"
        );
        assert!(recipe("").unwrap().sign.is_none());
    }

    #[test]
    fn bad_sign_sections_are_located() {
        for (toml, says) in [
            ("[sign]\nkye = 1\n", "3:1: unknown key `kye`"),
            (
                "[sign]\nkey = { from-file = \"k\", mode = 1 }\n",
                "unknown key `mode`",
            ),
            (
                "[sign]\nkey = { from-env = \"K\", secret = false }\n",
                "3:7: `sign.key`: `secret = false`",
            ),
            (
                "[sign]\nkey = { from-env = \"K\", from-file = \"f\" }\n",
                "`sign.key`: give exactly one",
            ),
            (
                "[sign]\nkey = { from-env = \"K\" }\npassphrase = { from-file = \"p\" }\n",
                "4:14: `sign.passphrase`: use `{ from-env",
            ),
        ] {
            let e = recipe(toml).unwrap_err().to_string();
            assert!(e.contains(says), "{toml}: {e}");
        }
    }
}
