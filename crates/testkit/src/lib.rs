//! What every kiln test suite needs to drive the real validators
//! (`e2fsck`, `fsck.fat`, `sgdisk`, `qemu-img`, `bmaptool`, ...): a missing
//! tool fails the test with the Debian package to install (never a silent
//! skip; `make test` installs them), and commands run with their output
//! captured and, with [`ok`], their success asserted.
//!
//! A dev-dependency only: library code never runs external tools.
//!
//! ```no_run
//! use std::process::Command;
//! kiln_testkit::require("sgdisk", "gdisk");
//! let out = kiln_testkit::ok(Command::new("sgdisk").args(["-v", "disk.img"]));
//! assert!(out.contains("No problems found"));
//! ```
//!
//! # Errors
//! None: these are test helpers and panic with a message naming the tool
//! (and its package) or the failed command.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Directories searched besides `PATH` (root's tools such as `e2fsck` and
/// `mkfs.fat` live in `sbin`, which a user's `PATH` may lack).
const SBIN: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// Where `tool` is, if it is installed.
pub fn find(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN.iter().map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// The path of `tool`; fails (never skips) when it is missing, naming the
/// Debian `package` that provides it.
pub fn require(tool: &str, package: &str) -> PathBuf {
    find(tool).unwrap_or_else(|| {
        panic!(
            "validator `{tool}` not found: install the Debian package `{package}` \
             (apt-get install -y {package}; make test does)"
        )
    })
}

/// A command for `tool` (required, see [`require`]) with the C locale, so
/// the tools' messages are the ones tests match.
pub fn command(tool: &str, package: &str) -> Command {
    let mut c = Command::new(require(tool, package));
    c.env("LC_ALL", "C.UTF-8");
    c
}

/// Runs `cmd`, returning its output whatever its status.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd` and asserts it succeeded; returns its stdout as text.
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stdout and stderr of `o` as text.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `path` as `&str` (test paths are UTF-8).
pub fn s(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_tool_and_runs_it() {
        let sh = require("sh", "dash");
        assert!(sh.is_file());
        assert_eq!(ok(Command::new(&sh).args(["-c", "echo hi"])), "hi\n");
        assert!(!run(Command::new(&sh).args(["-c", "exit 3"]))
            .status
            .success());
    }

    #[test]
    #[should_panic(expected = "install the Debian package `no-such-package`")]
    fn a_missing_tool_fails_naming_its_package() {
        require("kiln-no-such-tool", "no-such-package");
    }
}
