//! Errors of profile and recipe loading.

use std::fmt;
use std::path::PathBuf;

/// A place in a TOML file (line and column are 1-based; 0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, 0 if unknown.
    pub line: usize,
    /// 1-based column, 0 if unknown.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
        }
    }
}

/// Why a profile or recipe was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read.
    #[error("{path}: cannot read")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax error or a value of the wrong type.
    #[error("{at}: {message}")]
    Syntax {
        /// Where.
        at: Location,
        /// The parser's message (one line).
        message: String,
    },
    /// A key that is not part of the schema.
    #[error("{at}: unknown key `{key}`{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownKey {
        /// Where.
        at: Location,
        /// The key as written.
        key: String,
        /// The closest valid key.
        suggestion: Option<String>,
    },
    /// A value that parses but is not acceptable.
    #[error("{at}: `{key}`: {reason}")]
    Invalid {
        /// Where.
        at: Location,
        /// The key (dotted path).
        key: String,
        /// Why.
        reason: String,
    },
    /// A file named by the recipe could not be read.
    #[error("{at}: `{key}`: cannot read {}", path.display())]
    InputFile {
        /// Where it is named.
        at: Location,
        /// The key naming it.
        key: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file named by the recipe that is neither a directory nor a
    /// regular file.
    #[error("{at}: `{key}`: {} is a {kind}, not a file or directory", path.display())]
    InputNotRegular {
        /// Where it is named.
        at: Location,
        /// The key naming it.
        key: String,
        /// The file.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// An environment variable named by the recipe is not set.
    #[error("{at}: `{key}`: environment variable {var} is not set")]
    MissingEnv {
        /// Where it is named.
        at: Location,
        /// The key.
        key: String,
        /// The variable.
        var: String,
    },
    /// A `--set key=value` override that cannot be applied.
    #[error("--set {arg}: {reason}")]
    Override {
        /// The argument as given.
        arg: String,
        /// Why.
        reason: String,
    },
}
