//! The harness catches what it claims to: a panic, an execution over the
//! hang limit and an allocation past the bound each fail the run (exit
//! status not 0) and leave the input in the artifact directory.

use std::path::PathBuf;
use std::process::Command;

fn artifacts(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("artifacts")
        .join(target)
}

/// Runs `target` with an empty corpus and returns (success, stdout+stderr,
/// artifact file names).
fn run(target: &str, seconds: &str) -> (bool, String, Vec<String>) {
    let dir = artifacts(target);
    let _ = std::fs::remove_dir_all(&dir);
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln-fuzz"))
        .args(["run", target, "--seconds", seconds, "--corpus"])
        .arg(empty.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let saved: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect();
    assert!(saved.iter().all(|d| d.first() == Some(&b'!')), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
    (out.status.success(), text, files)
}

#[test]
fn a_panic_is_a_crash_with_its_input_saved() {
    let (ok, text, files) = run("selftest-panic", "2");
    assert!(!ok, "{text}");
    assert!(
        text.contains("CRASH") && text.contains("selftest panic"),
        "{text}"
    );
    assert!(files.iter().any(|f| f.starts_with("crash-")), "{files:?}");
}

#[test]
fn a_slow_execution_is_a_hang_with_its_input_saved() {
    let (ok, text, files) = run("selftest-hang", "20");
    assert!(!ok, "{text}");
    assert!(text.contains("HANG"), "{text}");
    assert!(files.iter().any(|f| f.starts_with("hang-")), "{files:?}");
}

#[test]
fn an_allocation_past_the_bound_fails_with_its_input_saved() {
    let (ok, text, files) = run("selftest-alloc", "5");
    assert!(!ok, "{text}");
    assert!(text.contains("over the bound"), "{text}");
    assert!(files.iter().any(|f| f.starts_with("oom-")), "{files:?}");
}

#[test]
fn a_clean_target_passes_over_its_corpus() {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln-fuzz"))
        .args(["run", "profile", "--seconds", "1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("| profile |"), "{text}");
}
