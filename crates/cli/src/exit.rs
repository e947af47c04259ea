//! Exit codes (`kiln --help`, README): 0 success, 1 internal error, 2 bad
//! input, 3 output error, 130/143 interrupted.
//!
//! The class comes from the error types themselves, never from message
//! text: the first error in the cause chain that knows its class decides.
//! Library errors carry their own (`kiln_pipeline::Error::exit_code`,
//! which delegates to the format crates'), and what the command line
//! itself refuses (an unknown `--board`, `--format iso`, a flash target
//! failing a safety check) is wrapped in [`BadInput`].

use std::fmt;

/// Bad input found by the command line itself: exit 2. Shows as the
/// wrapped error, with the same causes.
#[derive(Debug)]
pub struct BadInput(anyhow::Error);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for BadInput {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Marks `e` as bad input (exit 2).
pub fn input(e: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(BadInput(e.into()))
}

/// The exit code for a failed run.
pub fn code(e: &anyhow::Error) -> i32 {
    for cause in e.chain() {
        if cause.is::<BadInput>() || cause.is::<kiln_recipe::Error>() {
            return 2;
        }
        if let Some(p) = cause.downcast_ref::<kiln_pipeline::Error>() {
            return p.exit_code();
        }
        if let Some(i) = cause.downcast_ref::<kiln_install::Error>() {
            return i.exit_code();
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn class_comes_from_the_first_typed_error() {
        let plain = anyhow::anyhow!("boom");
        assert_eq!(code(&plain), 1);
        let bad = input(anyhow::anyhow!("--format \"iso\": use raw"));
        assert_eq!(code(&bad), 2);
        assert_eq!(format!("{bad:#}"), "--format \"iso\": use raw");
        // Context above it keeps the class; the message keeps its causes.
        let io = std::io::Error::other("disk on fire");
        let wrapped = input(anyhow::Error::new(io).context("reading x")).context("flash");
        assert_eq!(code(&wrapped), 2);
        assert_eq!(format!("{wrapped:#}"), "flash: reading x: disk on fire");
        let out = kiln_pipeline::Error::Output {
            path: "o.img".into(),
            op: "writing",
            source: std::io::Error::other("full"),
        };
        assert_eq!(code(&anyhow::Error::new(out).context("build")), 3);
        let r: anyhow::Result<()> = Err(anyhow::anyhow!("x")).context("y");
        assert_eq!(code(&r.unwrap_err()), 1);
    }
}
