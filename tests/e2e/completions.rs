//! `kiln completions` and `kiln man`: the bash script parses (`bash -n`)
//! and completes every subcommand, the zsh and fish scripts name them
//! too, and the roff page renders with `groff -man -ww` and `man -l`
//! without a warning, with a section per subcommand.

use kiln_e2e::*;
use std::process::Command;

const SUBCOMMANDS: [&str; 10] = [
    "build",
    "inspect",
    "drives",
    "flash",
    "convert",
    "stamp",
    "boards",
    "recipes",
    "completions",
    "mkfs",
];

#[test]
fn completion_scripts_parse_and_the_man_page_renders_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let bash = ok(kiln().args(["completions", "bash"]));
    let script = d.path().join("kiln.bash");
    std::fs::write(&script, &bash).unwrap();
    ok(Command::new("bash").arg("-n").arg(&script));
    // Sourcing it registers the completion function for `kiln`.
    let reg = ok(Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p kiln", script.display())));
    assert!(reg.contains("kiln"), "{reg}");
    for shell in ["bash", "zsh", "fish"] {
        let s = ok(kiln().args(["completions", shell]));
        for sub in SUBCOMMANDS {
            assert!(s.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    assert!(bash.contains("--verify-only") && bash.contains("--for"));

    require("groff", "groff-base");
    require("man", "man-db");
    let page = d.path().join("kiln.1");
    std::fs::write(&page, ok(kiln().arg("man"))).unwrap();
    let out = run(Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&page));
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "groff warns: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(Command::new("man")
        .args(["-l", "--warnings=w"])
        .arg(&page)
        .env("MANWIDTH", "100"));
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "man warns: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without a terminal man still overstrikes bold (`K\bK`): keep the
    // last character of each overstrike.
    let raw = String::from_utf8_lossy(&out.stdout);
    let mut text = String::new();
    for c in raw.chars() {
        if c == '\u{8}' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    for sub in SUBCOMMANDS {
        let heading = format!("KILN {}", sub.to_uppercase());
        assert!(text.contains(&heading), "no section {heading}:\n{text}");
    }
    assert!(text.contains("Exit codes"), "{text}");
}
