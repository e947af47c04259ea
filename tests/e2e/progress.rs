//! Progress of a build (the demo recipe for `fin-cm3`): without a
//! terminal, plain lines (no escape codes, no carriage returns) including
//! the byte progress of the layer inflation and of the data partition's
//! write, ending at 100 %; on a pty (`script -qec`), bars redrawn in
//! place; with `--quiet`, nothing on stderr. The image is the same bytes
//! in all three runs (progress never changes the output).

use kiln_e2e::*;
use std::path::Path;
use std::process::{Command, Output};

fn build(dir: &Path, name: &str, extra: &[&str]) -> Output {
    let recipe = recipe_copy(dir, |s| s.replace("size = \"1GiB\"", "size = \"64MiB\""));
    run(kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "--board", "fin-cm3", "--recipe"])
        .arg(&recipe)
        .arg("-o")
        .arg(dir.join(name))
        .args(extra))
}

#[test]
fn build_progress_lines_bar_or_nothing() {
    let t = tempfile::tempdir_in("/var/tmp").unwrap();
    let out = build(t.path(), "a.img", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains('\x1b') && !err.contains('\r'), "{err:?}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("kiln: inflating the application layers ")
                && l.contains(" MiB")),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("kiln: writing resin-data 100.0%")),
        "{err}"
    );
    assert!(err.contains("kiln: writing p6 resin-data"), "{err}");

    let out = build(t.path(), "b.img", &["-q"]);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );

    // On a pty: bars drawn and redrawn in place.
    require("script", "util-linux");
    // The recipe the builds above left there.
    let recipe = t.path().join("r.toml");
    let cmd = format!(
        "'{}' build --board fin-cm3 --recipe '{}' -o '{}'",
        kiln_bin().display(),
        recipe.display(),
        t.path().join("c.img").display()
    );
    let out = run(Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .envs(kiln().get_envs().filter_map(|(k, v)| Some((k, v?)))));
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    // A bar is drawn, and bars are redrawn in place (how often indicatif
    // redraws one bar depends on timing, so not which one).
    assert!(
        tty.contains("kiln: writing resin-data [") && tty.contains("\r\x1b[2Kkiln: "),
        "no bar redrawn in place: {tty:?}"
    );
    for n in ["b.img", "c.img"] {
        assert_eq!(
            sha256_file(&t.path().join("a.img")),
            sha256_file(&t.path().join(n)),
            "{n}"
        );
    }
}
