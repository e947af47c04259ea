//! The one public error type of this crate.

/// Errors of `kiln-sbom`: a package database or an SBOM that cannot be
/// read. Every variant is bad input (exit code 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A package database is malformed at this line.
    #[error("{db} line {line}: {reason}")]
    Database {
        /// Which database (`dpkg status`, `apk installed`, ...).
        db: &'static str,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// An SBOM file is not kiln's CycloneDX JSON.
    #[error("not a CycloneDX SBOM: {reason}")]
    NotSbom {
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// The process exit code this error maps to (README "Exit codes"):
    /// always 2, bad input.
    pub fn exit_code(&self) -> i32 {
        2
    }
}
