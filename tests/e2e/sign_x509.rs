//! CMS/X.509 detached signatures (issue 18): `kiln sign DIR --sign-x509
//! CERT,KEY` writes `SHA256SUMS.p7s`, which `openssl cms -verify` (Debian
//! `openssl`) accepts for the directory's `SHA256SUMS` with the
//! certificate as trust anchor and refuses for a changed one; a key that
//! is not the certificate's is a one-line error.

use kiln_e2e::*;
use std::path::Path;
use std::process::{Command, Output};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An ECDSA P-256 key (PKCS #8 PEM) at `dir/NAME.key` and, when `cert`,
/// a self-signed certificate for it at `dir/NAME.pem`.
fn ec_key(dir: &Path, name: &str, cert: bool) {
    let key = dir.join(format!("{name}.key"));
    ok(Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&key));
    if cert {
        ok(Command::new("openssl")
            .args([
                "req",
                "-new",
                "-x509",
                "-days",
                "30",
                "-subj",
                "/CN=kiln release",
                "-key",
            ])
            .arg(&key)
            .arg("-out")
            .arg(dir.join(format!("{name}.pem"))));
    }
}

fn cms_verify(dir: &Path, ca: &Path) -> Output {
    run(Command::new("openssl")
        .current_dir(dir)
        .args([
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            "SHA256SUMS.p7s",
            "-content",
            "SHA256SUMS",
            "-out",
            "/dev/null",
            "-CAfile",
        ])
        .arg(ca))
}

#[test]
fn sign_x509_verifies_with_openssl_cms_and_is_reproducible() {
    require("openssl", "openssl");
    require("minisign", "minisign");
    let t = tempfile::tempdir_in("/var/tmp").unwrap();
    ec_key(t.path(), "release", true);
    ec_key(t.path(), "other", false);
    let dir = t.path().join("out");
    std::fs::create_dir_all(&dir).unwrap();
    let recipe = recipe_copy(&dir, |s| s.replace("size = \"1GiB\"", "size = \"64MiB\""));
    ok(kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "-q", "--board", "fin-cm3", "--recipe"])
        .arg(&recipe)
        .arg("-o")
        .arg(dir.join("fin.img")));
    std::fs::remove_file(recipe).unwrap();
    let key = t.path().join("mini.key");
    ok(kiln()
        .args(["keygen", "-q", "--unencrypted", "-o"])
        .arg(&key));
    let x509 = format!(
        "{},{}",
        t.path().join("release.pem").display(),
        t.path().join("release.key").display()
    );
    ok(kiln()
        .args(["sign", "-q"])
        .arg(&dir)
        .arg("--key")
        .arg(&key)
        .args(["--sign-x509", &x509]));
    let cert = t.path().join("release.pem");
    let out = cms_verify(&dir, &cert);
    assert!(out.status.success(), "{}", text(&out.stderr));
    ok(Command::new("minisign")
        .current_dir(&dir)
        .args(["-Vm", "SHA256SUMS", "-p"])
        .arg(t.path().join("mini.pub")));
    let out = run(kiln()
        .arg("verify")
        .arg(&dir)
        .arg("--key")
        .arg(t.path().join("mini.pub")));
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(
        !text(&out.stdout).contains("SHA256SUMS.p7s"),
        "{}",
        text(&out.stdout)
    );
    // Deterministic (RFC 6979 nonces, no signing time).
    let first = std::fs::read(dir.join("SHA256SUMS.p7s")).unwrap();
    ok(kiln()
        .args(["sign", "-q"])
        .arg(&dir)
        .args(["--sign-x509", &x509]));
    assert_eq!(first, std::fs::read(dir.join("SHA256SUMS.p7s")).unwrap());

    // A changed SHA256SUMS does not verify.
    let copy = t.path().join("copy");
    ok(Command::new("cp").arg("-a").arg(&dir).arg(&copy));
    let sums = copy.join("SHA256SUMS");
    let mut s = std::fs::read(&sums).unwrap();
    s[0] ^= 1;
    std::fs::write(&sums, s).unwrap();
    assert!(!cms_verify(&copy, &cert).status.success());

    // A key that is not the certificate's: one line, exit 2, no file.
    std::fs::remove_file(copy.join("SHA256SUMS.p7s")).unwrap();
    let wrong = format!(
        "{},{}",
        cert.display(),
        t.path().join("other.key").display()
    );
    let out = run(kiln().arg("sign").arg(&copy).args(["--sign-x509", &wrong]));
    let se = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{se}");
    assert_eq!(se.trim().lines().count(), 1, "{se}");
    assert!(
        se.contains("other.key") && se.contains("does not match"),
        "{se}"
    );
    assert!(!copy.join("SHA256SUMS.p7s").exists());
}
