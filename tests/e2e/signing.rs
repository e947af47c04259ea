//! Signing and verification (issue 18), against the stock `minisign`
//! tool (Debian `minisign` 0.11): kiln's signatures verify with
//! `minisign -V`, minisign signs with kiln's keys and kiln reads
//! minisign's; `kiln verify` names the file for every kind of tampering;
//! `kiln flash --key` leaves a target untouched when the image does not
//! verify; secrets never reach outputs or kiln's output; signed builds
//! are reproducible.

use kiln_e2e::*;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const EPOCH: &str = "1700000000";
const PASS: &str = "kiln-e2e-passphrase-5f1c9a";

/// Builds the demo recipe (64 MiB swapfile) for fin-cm3 into `dir/fin.img`
/// with `extra` arguments; returns kiln's output.
fn build(dir: &Path, extra: &[&str]) -> Output {
    std::fs::create_dir_all(dir).unwrap();
    let recipe = recipe_copy(dir, |s| s.replace("size = \"1GiB\"", "size = \"64MiB\""));
    let out = run(kiln()
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .args(["build", "--board", "fin-cm3", "--recipe"])
        .arg(&recipe)
        .arg("-o")
        .arg(dir.join("fin.img"))
        .args(extra));
    assert!(out.status.success(), "build: {}", text(&out.stderr));
    std::fs::remove_file(recipe).unwrap();
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `kiln keygen -o dir/NAME.key` (unencrypted, or with [`PASS`]).
fn keygen(dir: &Path, name: &str, encrypted: bool) -> (PathBuf, PathBuf, Output) {
    let key = dir.join(format!("{name}.key"));
    let mut c = kiln();
    c.arg("keygen").arg("-o").arg(&key);
    if encrypted {
        c.env("KILN_PASSPHRASE", PASS);
    } else {
        c.arg("--unencrypted");
    }
    let out = run(&mut c);
    assert!(out.status.success(), "keygen: {}", text(&out.stderr));
    (key, dir.join(format!("{name}.pub")), out)
}

fn verify(target: &Path, key: &Path) -> Output {
    run(kiln().arg("verify").arg(target).arg("--key").arg(key))
}

/// `minisign -Vm SHA256SUMS -p KEY` in `dir`; returns its stdout.
fn minisign_verifies(dir: &Path, key: &Path) -> String {
    ok(Command::new("minisign")
        .current_dir(dir)
        .args(["-Vm", "SHA256SUMS", "-p"])
        .arg(key))
}

/// Copies the directory `from` to `to` (sparse files stay sparse).
fn copy_dir(from: &Path, to: &Path) {
    ok(Command::new("cp")
        .args(["-a", "--sparse=always"])
        .arg(from)
        .arg(to));
}

fn flip_byte(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
}

/// Asserts `out` failed with exit 2 on one stderr line naming `file`, and
/// a FAIL line for it on stdout.
fn fails_naming(out: &Output, file: &str, what: &str) {
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{what}: {so}\n{se}");
    assert_eq!(se.trim().lines().count(), 1, "{what}: one line: {se}");
    assert!(se.contains(file), "{what}: stderr names {file}: {se}");
    assert!(
        so.lines().any(|l| l.starts_with(&format!("FAIL {file}:"))),
        "{what}: a FAIL line for {file}: {so}"
    );
}

#[test]
fn signed_build_verifies_with_minisign_and_kiln_and_every_tamper_is_named() {
    require("minisign", "minisign");
    let t = tempfile::tempdir_in("/var/tmp").unwrap();
    let (key, public, _) = keygen(t.path(), "release", false);
    let raw = t.path().join("raw");
    let xz = t.path().join("xz");
    build(
        &raw,
        &["--format", "raw,qcow2", "--sign", key.to_str().unwrap()],
    );
    build(
        &xz,
        &[
            "--compress",
            "xz",
            "--level",
            "0",
            "--sign",
            key.to_str().unwrap(),
        ],
    );

    // The stock tool verifies kiln's signature and its trusted comment.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(raw.join("fin.manifest.json")).unwrap()).unwrap();
    let said = minisign_verifies(&raw, &public);
    let digest = manifest["image"]["sha256"].as_str().unwrap();
    assert!(
        said.contains("recipe bob-onprem") && said.contains(digest) && said.contains("kiln "),
        "{said}"
    );
    minisign_verifies(&xz, &public);
    // The manifest records the key id minisign shows.
    let pub_text = std::fs::read_to_string(&public).unwrap();
    let id = manifest["signing_key_id"].as_str().unwrap();
    assert!(pub_text.lines().next().unwrap().ends_with(id), "{pub_text}");
    // SHA256SUMS lists every artifact, the bmap and the manifest.
    let sums = std::fs::read_to_string(raw.join("SHA256SUMS")).unwrap();
    for f in ["fin.img", "fin.qcow2", "fin.img.bmap", "fin.manifest.json"] {
        assert!(sums.contains(&format!("  {f}\n")), "{f}: {sums}");
    }

    // Fresh builds pass, as directories and as images.
    for target in [
        raw.clone(),
        xz.clone(),
        raw.join("fin.img"),
        xz.join("fin.img.xz"),
    ] {
        let out = verify(&target, &public);
        assert!(
            out.status.success(),
            "{}: {}",
            target.display(),
            text(&out.stderr)
        );
    }
    let so = text(&verify(&raw, &public).stdout);
    assert!(
        so.contains("ok   fin.img: every range matches fin.img.bmap"),
        "{so}"
    );
    let so = text(&verify(&xz, &public).stdout);
    assert!(
        so.contains("ok   fin.img.xz: every range matches fin.img.bmap"),
        "{so}"
    );

    // One flipped byte in each file is named. Offsets: the MBR's
    // partition table (mapped by the bmap), the middle of each file.
    let cases: [(&Path, &str, Option<u64>); 6] = [
        (&raw, "fin.img", Some(446)),
        (&xz, "fin.img.xz", None),
        (&raw, "fin.qcow2", None),
        (&raw, "fin.img.bmap", None),
        (&raw, "fin.manifest.json", None),
        (&raw, "SHA256SUMS", None),
    ];
    for (i, (src, file, at)) in cases.iter().enumerate() {
        let copy = t.path().join(format!("tamper{i}"));
        copy_dir(src, &copy);
        let p = copy.join(file);
        let at = at.unwrap_or_else(|| std::fs::metadata(&p).unwrap().len() / 2);
        flip_byte(&p, at);
        fails_naming(
            &verify(&copy, &public),
            file,
            &format!("flipped byte in {file}"),
        );
        std::fs::remove_dir_all(&copy).unwrap();
    }
    // The raw image's changed range is reported against its bmap too.
    let copy = t.path().join("tamper-range");
    copy_dir(&raw, &copy);
    flip_byte(&copy.join("fin.img"), 446);
    let so = text(&verify(&copy, &public).stdout);
    assert!(so.contains("FAIL fin.img: bmap range of blocks 0-"), "{so}");

    // A missing file; an extra file is reported but does not fail.
    std::fs::remove_file(copy.join("fin.img")).unwrap();
    let out = verify(&copy, &public);
    fails_naming(&out, "fin.img", "missing file");
    assert!(text(&out.stdout).contains("FAIL fin.img: missing"));
    std::fs::remove_dir_all(&copy).unwrap();
    copy_dir(&raw, &copy);
    std::fs::write(copy.join("notes.txt"), b"added later").unwrap();
    let out = verify(&copy, &public);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("note notes.txt: not listed in SHA256SUMS"),
        "{}",
        text(&out.stdout)
    );

    // A signature by another key (`kiln sign` with it) fails, naming the
    // signature and both key ids; an unsigned directory fails too.
    let (other, other_pub, _) = keygen(t.path(), "other", false);
    ok(kiln()
        .args(["sign", "-q"])
        .arg(&copy)
        .arg("--key")
        .arg(&other));
    minisign_verifies(&copy, &other_pub);
    let out = verify(&copy, &public);
    fails_naming(&out, "SHA256SUMS.minisig", "another key");
    assert!(
        text(&out.stderr).contains("signed by key"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_file(copy.join("SHA256SUMS.minisig")).unwrap();
    fails_naming(&verify(&copy, &public), "SHA256SUMS.minisig", "unsigned");
    // `kiln sign` refuses a directory whose files no longer match.
    flip_byte(&copy.join("fin.qcow2"), 1000);
    let out = run(kiln().arg("sign").arg(&copy).arg("--key").arg(&key));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("fin.qcow2"),
        "{}",
        text(&out.stderr)
    );
    assert!(!copy.join("SHA256SUMS.minisig").exists());
}

/// `minisign -S` with a kiln key verifies with kiln; kiln signs with a
/// `minisign -G` key (both encrypted) and minisign verifies; bad keys and
/// passphrases are one-line errors.
#[test]
fn interop_both_ways_with_encrypted_keys_and_key_errors() {
    require("minisign", "minisign");
    let t = tempfile::tempdir_in("/var/tmp").unwrap();
    let dir = t.path().join("out");
    build(&dir, &[]);
    // A kiln key, encrypted; minisign reads the passphrase from stdin.
    let (key, public, _) = keygen(t.path(), "kiln", true);
    let mut ms = Command::new("minisign")
        .current_dir(&dir)
        .args(["-S", "-m", "SHA256SUMS", "-s"])
        .arg(&key)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    ms.stdin
        .take()
        .unwrap()
        .write_all(format!("{PASS}\n").as_bytes())
        .unwrap();
    assert!(ms.wait().unwrap().success(), "minisign -S with a kiln key");
    let out = verify(&dir, &public);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("timestamp:"),
        "minisign's own comment"
    );

    // A minisign key, encrypted, signs through kiln.
    let ms_key = t.path().join("ms.key");
    let ms_pub = t.path().join("ms.pub");
    let mut g = Command::new("minisign")
        .args(["-G", "-s"])
        .arg(&ms_key)
        .arg("-p")
        .arg(&ms_pub)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    g.stdin
        .take()
        .unwrap()
        .write_all(format!("{PASS}\n{PASS}\n").as_bytes())
        .unwrap();
    assert!(g.wait().unwrap().success(), "minisign -G");
    let pass_file = t.path().join("pass");
    std::fs::write(&pass_file, format!("{PASS}\n")).unwrap();
    ok(kiln()
        .args(["sign", "-q"])
        .arg(&dir)
        .arg("--key")
        .arg(&ms_key)
        .arg("--passphrase-file")
        .arg(&pass_file));
    minisign_verifies(&dir, &ms_pub);
    assert!(verify(&dir, &ms_pub).status.success());
    // The kiln public key does not match that signature.
    fails_naming(
        &verify(&dir, &public),
        "SHA256SUMS.minisig",
        "mismatching public key",
    );

    // Wrong passphrase, corrupt key, corrupt public key: one line, exit 2.
    let wrong = run(kiln()
        .arg("sign")
        .arg(&dir)
        .arg("--key")
        .arg(&key)
        .env("KILN_PASSPHRASE", "not-the-passphrase"));
    let corrupt = t.path().join("corrupt.key");
    let k = std::fs::read_to_string(&key).unwrap();
    let mut lines: Vec<String> = k.lines().map(String::from).collect();
    lines[1] = lines[1][..lines[1].len() - 8].to_string();
    std::fs::write(&corrupt, lines.join("\n")).unwrap();
    let bad_key = run(kiln().arg("sign").arg(&dir).arg("--key").arg(&corrupt));
    let bad_pub = t.path().join("bad.pub");
    std::fs::write(&bad_pub, "untrusted comment: x\nRWQnot-base64!\n").unwrap();
    let bad_public = verify(&dir, &bad_pub);
    for (out, name, says) in [
        (&wrong, "kiln.key", "wrong passphrase"),
        (&bad_key, "corrupt.key", "not a valid minisign secret key"),
        (&bad_public, "bad.pub", "not a valid minisign public key"),
    ] {
        let se = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{se}");
        assert_eq!(se.trim().lines().count(), 1, "{se}");
        assert!(se.contains(name) && se.contains(says), "{se}");
        assert!(
            !se.contains("not-the-passphrase") && !se.contains(PASS),
            "{se}"
        );
    }
    // The failed runs left the good signature alone.
    assert!(verify(&dir, &ms_pub).status.success());
}

/// Whether `hay` contains `needle`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let mut at = 0;
    while let Some(i) = hay[at..].iter().position(|&b| b == first) {
        let start = at + i + 1;
        if hay[start..].starts_with(rest) {
            return true;
        }
        at = start;
    }
    false
}

/// Two signed builds are byte-identical, signature included; the secret
/// key (raw, hex, base64, its file line) and the passphrase appear in no
/// output file and in none of kiln's output; `kiln stamp --sign` signs
/// its directory.
#[test]
fn signed_builds_are_reproducible_and_leak_no_secret() {
    require("minisign", "minisign");
    use base64::Engine as _;
    let t = tempfile::tempdir_in("/var/tmp").unwrap();
    let mut said: Vec<u8> = Vec::new();
    let (key, public, out) = keygen(t.path(), "release", false);
    said.extend(out.stdout.iter().chain(&out.stderr));
    let (enc, enc_pub, out) = keygen(t.path(), "enc", true);
    said.extend(out.stdout.iter().chain(&out.stderr));
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    for d in [&a, &b] {
        let out = build(
            d,
            &[
                "--format",
                "raw,qcow2",
                "--sign",
                key.to_str().unwrap(),
                "--json",
            ],
        );
        said.extend(out.stdout.iter().chain(&out.stderr));
    }
    let names = outputs_in(&a, "");
    assert!(names.iter().any(|n| n == "SHA256SUMS.minisig"), "{names:?}");
    for n in &names {
        let (x, y) = (
            std::fs::read(a.join(n)).unwrap(),
            std::fs::read(b.join(n)).unwrap(),
        );
        assert!(x == y, "{n} differs between two signed builds");
    }
    // The passphrase of an encrypted key: the build decrypts it first.
    let out = run(kiln()
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .arg("sign")
        .arg(&b)
        .arg("--key")
        .arg(&enc)
        .env("KILN_PASSPHRASE", PASS));
    assert!(out.status.success(), "{}", text(&out.stderr));
    said.extend(out.stdout.iter().chain(&out.stderr));
    minisign_verifies(&b, &enc_pub);
    let out = verify(&b, &enc_pub);
    said.extend(out.stdout.iter().chain(&out.stderr));

    // `kiln stamp --sign`: its directory verifies with minisign and kiln.
    let devices = t.path().join("devices.csv");
    std::fs::write(
        &devices,
        "uuid,hostname\n0123456789abcdef0123456789abcdef,bob-1\n",
    )
    .unwrap();
    let st = t.path().join("stamped");
    let out = run(kiln()
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .arg("stamp")
        .arg(a.join("fin.img"))
        .arg("--devices")
        .arg(&devices)
        .arg("-o")
        .arg(&st)
        .arg("--sign")
        .arg(&key));
    assert!(out.status.success(), "{}", text(&out.stderr));
    said.extend(out.stdout.iter().chain(&out.stderr));
    let comment = minisign_verifies(&st, &public);
    assert!(comment.contains("stamp of image sha256"), "{comment}");
    let out = verify(&st, &public);
    assert!(out.status.success(), "{}", text(&out.stdout));
    said.extend(out.stdout.iter().chain(&out.stderr));

    // The secret bytes, in every form, and the passphrase: nowhere.
    let line = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .to_string()
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let raw = b64.decode(line(&key)).unwrap();
    let seed = &raw[62..94];
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("seed", seed.to_vec()),
        ("seed hex", hex.clone().into_bytes()),
        ("seed HEX", hex.to_uppercase().into_bytes()),
        ("seed base64", b64.encode(seed).into_bytes()),
        ("key file line", line(&key).into_bytes()),
        ("encrypted key file line", line(&enc).into_bytes()),
        ("passphrase", PASS.as_bytes().to_vec()),
    ];
    for (what, n) in &needles {
        assert!(!contains(&said, n), "{what} in kiln's output");
    }
    for d in [&a, &b, &st] {
        for n in outputs_in(d, "") {
            let bytes = std::fs::read(d.join(&n)).unwrap();
            for (what, needle) in &needles {
                assert!(
                    !contains(&bytes, needle),
                    "{what} in {}",
                    d.join(&n).display()
                );
            }
        }
    }
}

/// `kiln flash --key`: a good image flashes; a tampered or unsigned one
/// is refused before the target is opened (its sha256 unchanged).
#[test]
fn flash_with_key_refuses_a_tampered_image_and_leaves_the_target_alone() {
    let t = tempfile::tempdir_in("/var/tmp").unwrap();
    let (key, public, _) = keygen(t.path(), "release", false);
    let dir = t.path().join("out");
    build(&dir, &["--sign", key.to_str().unwrap()]);
    let img = dir.join("fin.img");
    let target = t.path().join("target.img");
    std::fs::write(&target, vec![0x5a; 1 << 20]).unwrap();
    let flash = |image: &Path| {
        run(kiln()
            .args(["flash", "-q", "--force", "--key"])
            .arg(&public)
            .arg(image)
            .arg(&target))
    };
    let before = sha256_file(&target);
    flip_byte(&img, 446);
    let out = flash(&img);
    let se = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{se}");
    assert!(
        se.contains("refusing to flash") && se.contains("fin.img"),
        "{se}"
    );
    assert_eq!(se.trim().lines().count(), 1, "{se}");
    assert_eq!(sha256_file(&target), before, "the target changed");
    flip_byte(&img, 446);
    std::fs::rename(dir.join("SHA256SUMS.minisig"), t.path().join("sig")).unwrap();
    let out = flash(&img);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("SHA256SUMS.minisig"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(sha256_file(&target), before, "the target changed");
    std::fs::rename(t.path().join("sig"), dir.join("SHA256SUMS.minisig")).unwrap();
    let out = flash(&img);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Written (and read back by flash): holes are skipped, so the MBR is
    // compared, not the whole file.
    ok(Command::new("cmp")
        .args(["-n", "512"])
        .arg(&img)
        .arg(&target));
    assert_ne!(sha256_file(&target), before);

    // `--bmap` naming another bmap than the signed list's is refused
    // (a still valid bmap, one byte more); an identical copy is not.
    let bmap_text = std::fs::read_to_string(dir.join("fin.img.bmap")).unwrap();
    let other = t.path().join("other.bmap");
    std::fs::write(&other, format!("{bmap_text}\n")).unwrap();
    let with_bmap = |bmap: &Path| {
        run(kiln()
            .args(["flash", "-q", "--force", "--key"])
            .arg(&public)
            .arg("--bmap")
            .arg(bmap)
            .arg(&img)
            .arg(&target))
    };
    std::fs::write(&target, vec![0x5a; 1 << 20]).unwrap();
    let out = with_bmap(&other);
    let se = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{se}");
    assert_eq!(se.trim().lines().count(), 1, "{se}");
    assert!(
        se.contains("refusing to flash")
            && se.contains("other.bmap")
            && se.contains("fin.img.bmap"),
        "{se}"
    );
    assert_eq!(sha256_file(&target), before, "the target changed");
    let copy = t.path().join("copy.bmap");
    std::fs::write(&copy, &bmap_text).unwrap();
    let out = with_bmap(&copy);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_ne!(sha256_file(&target), before);
}

/// A signature is only ever renamed into place: a directory standing at
/// its name is refused (exit 3) and no temporary file is left.
#[test]
fn signing_leaves_no_partial_signature() {
    let t = tempfile::tempdir_in("/var/tmp").unwrap();
    let (key, _, _) = keygen(t.path(), "release", false);
    let dir = t.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a.bin"), b"data").unwrap();
    std::fs::write(
        dir.join("SHA256SUMS"),
        format!("{}  a.bin\n", sha256_file(&dir.join("a.bin"))),
    )
    .unwrap();
    std::fs::create_dir(dir.join("SHA256SUMS.minisig")).unwrap();
    let out = run(kiln().arg("sign").arg(&dir).arg("--key").arg(&key));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Builds like [`build`] with `section` appended to the recipe and `envs`
/// set; returns kiln's output whatever it is.
fn build_recipe(dir: &Path, section: &str, envs: &[(&str, &str)], extra: &[&str]) -> Output {
    std::fs::create_dir_all(dir).unwrap();
    let recipe = recipe_copy(dir, |s| {
        s.replace("size = \"1GiB\"", "size = \"64MiB\"") + "\n" + section
    });
    let mut c = kiln();
    c.env("SOURCE_DATE_EPOCH", EPOCH)
        .args(["build", "--board", "fin-cm3", "--recipe"])
        .arg(&recipe)
        .arg("-o")
        .arg(dir.join("fin.img"))
        .args(extra);
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = run(&mut c);
    std::fs::remove_file(recipe).unwrap();
    out
}

/// The recipe's `[sign]`: a key file (relative to the recipe) or an
/// encrypted key's text from the environment with its passphrase from
/// the environment; the build signs (minisign verifies), `--sign`
/// overrides it, neither secret reaches kiln's output or any output
/// file, and a key file that cannot be read is a one-line error naming
/// `sign.key` (exit 2, nothing written).
#[test]
fn recipe_sign_section_signs_the_build_and_leaks_no_secret() {
    require("minisign", "minisign");
    let t = tempfile::tempdir_in("/var/tmp").unwrap();
    let (key, public, _) = keygen(t.path(), "release", false);
    let (enc, enc_pub, _) = keygen(t.path(), "enc", true);
    let mut said: Vec<u8> = Vec::new();

    let a = t.path().join("a");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::copy(&key, a.join("release.key")).unwrap();
    let out = build_recipe(
        &a,
        "[sign]\nkey = { from-file = \"release.key\" }\n",
        &[],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::remove_file(a.join("release.key")).unwrap();
    minisign_verifies(&a, &public);
    assert!(verify(&a, &public).status.success());

    let b = t.path().join("b");
    let enc_text = std::fs::read_to_string(&enc).unwrap();
    let section = "[sign]\nkey = { from-env = \"KILN_E2E_KEY\", secret = true }\n\
                   passphrase = { from-env = \"KILN_E2E_PASS\", secret = true }\n";
    let envs = [("KILN_E2E_KEY", enc_text.as_str()), ("KILN_E2E_PASS", PASS)];
    let out = build_recipe(&b, section, &envs, &["--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    said.extend(out.stdout.iter().chain(&out.stderr));
    let said_comment = minisign_verifies(&b, &enc_pub);
    assert!(said_comment.contains("recipe bob-onprem"), "{said_comment}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("fin.manifest.json")).unwrap()).unwrap();
    let id = manifest["signing_key_id"].as_str().unwrap();
    let pub_text = std::fs::read_to_string(&enc_pub).unwrap();
    assert!(pub_text.lines().next().unwrap().ends_with(id), "{pub_text}");

    // `--sign` overrides `[sign]` (whose variables are not even set).
    let c = t.path().join("c");
    let out = build_recipe(&c, section, &[], &["--sign", key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    minisign_verifies(&c, &public);
    // An encrypted key with a wrong passphrase: one line naming the key.
    let wrong = [
        ("KILN_E2E_KEY", enc_text.as_str()),
        ("KILN_E2E_PASS", "nope-not-it"),
    ];
    let out = build_recipe(&t.path().join("w"), section, &wrong, &[]);
    let se = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{se}");
    assert_eq!(se.trim().lines().count(), 1, "{se}");
    assert!(
        se.contains("`sign.key`") && se.contains("wrong passphrase"),
        "{se}"
    );
    said.extend(out.stdout.iter().chain(&out.stderr));

    // A key file that cannot be read.
    let d = t.path().join("d");
    let out = build_recipe(
        &d,
        "[sign]\nkey = { from-file = \"missing.key\" }\n",
        &[],
        &[],
    );
    let se = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{se}");
    assert_eq!(se.trim().lines().count(), 1, "{se}");
    assert!(
        se.contains("`sign.key`") && se.contains("missing.key"),
        "{se}"
    );
    assert!(
        outputs_in(&d, "fin").is_empty(),
        "{:?}",
        outputs_in(&d, "fin")
    );

    // The key's text and the passphrase: nowhere.
    let line = enc_text.lines().nth(1).unwrap().to_string();
    for (what, needle) in [
        ("key line", line.as_bytes()),
        ("passphrase", PASS.as_bytes()),
    ] {
        assert!(!contains(&said, needle), "{what} in kiln's output");
        for n in outputs_in(&b, "") {
            let bytes = std::fs::read(b.join(&n)).unwrap();
            assert!(!contains(&bytes, needle), "{what} in {n}");
        }
    }
}

/// `kiln sign DIR` records the key id in the build manifest, lists the
/// manifest's new digest in `SHA256SUMS` (`sha256sum -c` agrees) and
/// signs that; a `kiln stamp --sign` directory lists every file it
/// holds, per-device manifests included, records the key id in them,
/// verifies, and a changed per-device manifest is named.
#[test]
fn signing_a_directory_records_the_key_id_and_stamp_lists_every_file() {
    require("minisign", "minisign");
    let t = tempfile::tempdir_in("/var/tmp").unwrap();
    let (key, public, _) = keygen(t.path(), "release", false);
    let dir = t.path().join("out");
    build(&dir, &[]);
    let read_manifest = |p: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    assert!(read_manifest(&dir.join("fin.manifest.json"))["signing_key_id"].is_null());
    ok(kiln().args(["sign", "-q"]).arg(&dir).arg("--key").arg(&key));
    let pub_text = std::fs::read_to_string(&public).unwrap();
    let id_line = pub_text.lines().next().unwrap().to_string();
    let id = read_manifest(&dir.join("fin.manifest.json"))["signing_key_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(id_line.ends_with(&id), "{id_line} / {id}");
    ok(Command::new("sha256sum")
        .current_dir(&dir)
        .args(["-c", "--quiet", "SHA256SUMS"]));
    minisign_verifies(&dir, &public);
    let out = verify(&dir, &public);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(!text(&out.stdout).contains("records signing key"));

    // Stamp, signed: every file listed, each manifest records the key.
    let devices = t.path().join("devices.csv");
    std::fs::write(
        &devices,
        "uuid,hostname\n0123456789abcdef0123456789abcdef,bob-1\n\
         fedcba9876543210fedcba9876543210,bob-2\n",
    )
    .unwrap();
    let st = t.path().join("stamped");
    ok(kiln()
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .args(["stamp", "-q"])
        .arg(dir.join("fin.img"))
        .arg("--devices")
        .arg(&devices)
        .arg("-o")
        .arg(&st)
        .arg("--sign")
        .arg(&key));
    let sums = std::fs::read_to_string(st.join("SHA256SUMS")).unwrap();
    let mut listed: Vec<&str> = sums.lines().map(|l| &l[66..]).collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "bob-1.img",
            "bob-1.manifest.json",
            "bob-2.img",
            "bob-2.manifest.json"
        ]
    );
    for n in ["bob-1", "bob-2"] {
        let m = read_manifest(&st.join(format!("{n}.manifest.json")));
        assert_eq!(m["signing_key_id"], id.as_str(), "{n}");
    }
    ok(Command::new("sha256sum")
        .current_dir(&st)
        .args(["-c", "--quiet", "SHA256SUMS"]));
    minisign_verifies(&st, &public);
    let out = verify(&st, &public);
    let so = text(&out.stdout);
    assert!(out.status.success(), "{so}");
    assert!(
        so.contains("ok   bob-2.img: sha256 matches bob-2.manifest.json"),
        "{so}"
    );
    let m = st.join("bob-2.manifest.json");
    let edited = std::fs::read_to_string(&m)
        .unwrap()
        .replace("bob-2", "bob-9");
    std::fs::write(&m, edited).unwrap();
    fails_naming(
        &verify(&st, &public),
        "bob-2.manifest.json",
        "edited manifest",
    );
}
