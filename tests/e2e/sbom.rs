//! SBOMs (issue 18): every build writes `NAME.spdx.json` and
//! `NAME.cdx.json`, listed in `SHA256SUMS` and the manifest. The real
//! validators check them (`pyspdxtools`, cyclonedx-python-lib's JSON
//! schema validator, both in the venv `make sbom-validators` makes), and
//! their content is checked against the ground truth: `dpkg-query` on the
//! root filesystem's database as the image holds it, and a real dockerd
//! (offline) on the preloaded store for each image's digests and packages
//! (`dpkg-query -W` run inside the image).

use kiln_e2e::engine::Engine;
use kiln_e2e::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const SECRET: &str = "sbom-secret-Vb91-do-not-print";

/// The validators' venv (`make sbom-validators`).
fn venv_bin(tool: &str) -> PathBuf {
    let p = repo().join("target/sbom-venv/bin").join(tool);
    assert!(
        p.exists(),
        "{} missing: run `make sbom-validators`",
        p.display()
    );
    p
}

/// The inputs `tests/sbom/make-fixtures.sh` makes (once; the tests of
/// this file share them).
fn fixtures() -> PathBuf {
    static MADE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = MADE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    demo_inputs();
    for (t, pkg) in [
        ("umoci", "umoci"),
        ("dpkg-deb", "dpkg"),
        ("dpkg-query", "dpkg"),
    ] {
        require(t, pkg);
    }
    let out = repo().join("target/sbom-fixtures");
    ok(Command::new("bash")
        .arg(repo().join("tests/sbom/make-fixtures.sh"))
        .arg(&out));
    out
}

/// The recipe: the default one with the fixtures' root filesystem and
/// images, and a secret config value.
fn recipe(dir: &Path, fx: &Path, sbom: bool) -> PathBuf {
    recipe_copy(dir, |s| {
        let mut out = String::new();
        let mut skip = false;
        for line in s.lines() {
            if line.starts_with("images = [") {
                skip = true;
                out.push_str(&format!(
                    "images = [\n  {{ path = \"{0}/deb.oci\", name = \"sbom/deb\" }},\n  {{ path = \"{0}/gone.oci\", name = \"sbom/gone\" }},\n]\n",
                    fx.display()
                ));
                continue;
            }
            if skip {
                skip = !line.starts_with(']');
                continue;
            }
            let line = if line.starts_with("rootfs = ") && line.contains("amd64") {
                format!("rootfs = \"{}/rootfs.tar.gz\"", fx.display())
            } else if line.starts_with("compose = ") {
                format!("compose = \"{}/compose.yml\"", fx.display())
            } else if line.starts_with("size = \"1GiB\"") {
                "size = \"16MiB\"".to_string()
            } else if line.starts_with("developmentMode") {
                format!(
                    "{line}\ndeviceApiKey = {{ from-env = \"KILN_T_SBOM_KEY\", secret = true }}"
                )
            } else if line.starts_with("compress = ") && !sbom {
                format!("{line}\nsbom = false")
            } else {
                line.to_string()
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    })
}

/// Builds `dir/nuc.img`; returns kiln's stdout and stderr.
fn build(dir: &Path, recipe: &Path) -> String {
    let out = run(kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("KILN_T_SBOM_KEY", SECRET)
        .args(["build", "--board", "nuc", "--recipe"])
        .arg(recipe)
        .arg("-o")
        .arg(dir.join("nuc.img")));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

/// `name version arch` of each package the CycloneDX component lists
/// (the architecture from its purl).
fn listed(component: &Value) -> BTreeSet<String> {
    component["components"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let purl = p["purl"].as_str().unwrap();
            let arch = purl.split("?arch=").nth(1).unwrap_or_default();
            format!(
                "{} {} {arch}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect()
}

/// `dpkg-query`'s listing of installed packages (`config-files` and
/// `not-installed` ones are not installed software).
fn dpkg_installed(out: &str) -> BTreeSet<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix("installed "))
        .map(str::to_string)
        .collect()
}

const DPKG_FORMAT: &str = "${db:Status-Status} ${Package} ${Version} ${Architecture}\n";

fn validate(dir: &Path) {
    ok(Command::new(venv_bin("pyspdxtools"))
        .arg("-i")
        .arg(dir.join("nuc.spdx.json")));
    let check = "import sys\nfrom cyclonedx.schema import SchemaVersion\nfrom cyclonedx.validation.json import JsonStrictValidator\ne = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())\nsys.exit(str(e) if e else 0)\n";
    ok(Command::new(venv_bin("python"))
        .args(["-c", check])
        .arg(dir.join("nuc.cdx.json")));
}

/// The root filesystem's packages equal `dpkg-query --admindir` on the
/// database as the image holds it.
fn check_rootfs(d: &Path, img: &Path, cdx: &Value) {
    let (_, parts) = sfdisk(img);
    let root = d.join("rootA.ext4");
    extract(img, &parts[1], &root);
    let admin = d.join("admindir");
    std::fs::create_dir_all(admin.join("info")).unwrap();
    std::fs::create_dir_all(admin.join("updates")).unwrap();
    debugfs(
        &root,
        &format!(
            "dump /var/lib/dpkg/status {}",
            admin.join("status").display()
        ),
    );
    let q = ok(Command::new("dpkg-query")
        .arg(format!("--admindir={}", admin.display()))
        .args(["-W", "-f", DPKG_FORMAT]));
    let want = dpkg_installed(&q);
    let os = &cdx["components"][0];
    assert_eq!(os["type"], "operating-system");
    assert!(want.len() > 50, "the fixture database is too small: {q}");
    assert_eq!(listed(os), want);
    // Licenses from the machine-readable copyright files.
    let libs = os["components"].as_array().unwrap();
    assert!(
        libs.iter().any(|p| p["licenses"].is_array()),
        "no license found"
    );
}

/// Each image's digests are what dockerd shows and its packages what
/// `dpkg-query -W` shows inside it.
fn check_images(d: &Path, img: &Path, cdx: &Value) {
    let (_, parts) = sfdisk(img);
    let data = parts.iter().find(|p| p.number == 6).unwrap();
    let lo = Loop::new(img, data);
    let mnt = d.join("mnt");
    let m = Mount::ext4_ro(&lo, &mnt);
    let root = d.join("data-root");
    ok(Command::new("cp")
        .arg("-a")
        .arg(mnt.join("docker"))
        .arg(&root));
    drop(m);
    drop(lo);
    let app = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "application")
        .unwrap();
    let images = app["components"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    let mut engine = Engine::start(&d.join("engine"), &root);
    for c in images {
        let name = c["name"].as_str().unwrap();
        let prop = |k: &str| -> Vec<String> {
            c["properties"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["name"] == k)
                .map(|p| p["value"].as_str().unwrap().to_string())
                .collect()
        };
        let tag = &prop("kiln:tag")[0];
        let id = engine.docker(&["image", "inspect", "--format", "{{.Id}}", tag]);
        assert_eq!(id.trim(), prop("kiln:image-id")[0], "{name}");
        let digests =
            engine.docker(&["image", "inspect", "--format", "{{json .RepoDigests}}", tag]);
        let digest = c["version"].as_str().unwrap();
        assert!(
            digests.contains(&format!("{name}@{digest}")),
            "{name}: {digests}"
        );
        let layers = engine.docker(&[
            "image",
            "inspect",
            "--format",
            "{{json .RootFS.Layers}}",
            tag,
        ]);
        let layers: Vec<String> = serde_json::from_str(layers.trim()).unwrap();
        assert_eq!(layers, prop("kiln:layer"), "{name}");
        let platform = engine.docker(&[
            "image",
            "inspect",
            "--format",
            "{{.Os}}/{{.Architecture}}",
            tag,
        ]);
        assert_eq!(platform.trim(), prop("kiln:platform")[0]);
        let run = |cmd: &[&str]| {
            let mut a = vec!["run", "--rm", "--network", "none", tag.as_str()];
            a.extend_from_slice(cmd);
            engine.docker_status(&a)
        };
        match name {
            "sbom/deb" => {
                let (ran, out) = run(&["/usr/bin/dpkg-query", "-W", "-f", DPKG_FORMAT]);
                assert!(ran, "{out}");
                let want = dpkg_installed(&out);
                // The second layer rewrote the database: 30 of 40 left.
                assert_eq!(want.len(), 30, "{out}");
                assert_eq!(listed(c), want);
            }
            "sbom/gone" => {
                // The second layer deleted /var/lib/dpkg (a whiteout).
                let (ran, out) = run(&["/bin/sh", "-c", "test ! -e /var/lib/dpkg"]);
                assert!(ran, "{out}");
                assert!(listed(c).is_empty(), "{c}");
            }
            other => panic!("unexpected image {other}"),
        }
    }
    engine.stop_clean();
}

#[test]
fn sboms_validate_and_list_exactly_what_the_image_holds() {
    let fx = fixtures();
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let r = recipe(d.path(), &fx, true);
    let said = build(&a, &r) + &build(&b, &r);

    // Reproducible: byte-identical SBOMs.
    for f in ["nuc.spdx.json", "nuc.cdx.json"] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs between two builds"
        );
    }
    validate(&a);
    // Listed in SHA256SUMS (checked) and the manifest, with digests.
    let manifest = sums_ok_and_manifest(&a, "nuc");
    let sums = std::fs::read_to_string(a.join("SHA256SUMS")).unwrap();
    for (f, format) in [
        ("nuc.spdx.json", "spdx-json"),
        ("nuc.cdx.json", "cyclonedx-json"),
    ] {
        assert!(
            sums.contains(&format!("{}  {f}", sha256_file(&a.join(f)))),
            "{sums}"
        );
        let art = manifest["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["file"] == f)
            .unwrap_or_else(|| panic!("{f} not in the manifest"));
        assert_eq!(art["format"], format);
        assert_eq!(art["sha256"], sha256_file(&a.join(f)));
    }
    // Secrets: not in any output file but the image, nor in kiln's output.
    assert!(!said.contains(SECRET));
    for e in std::fs::read_dir(&a).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "img") {
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(SECRET),
            "{} holds the secret",
            p.display()
        );
    }
    let cdx: Value =
        serde_json::from_slice(&std::fs::read(a.join("nuc.cdx.json")).unwrap()).unwrap();
    // config.json holds a secret: listed without its digest.
    let files: Vec<&Value> = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "file")
        .collect();
    let config = files
        .iter()
        .find(|f| f["name"] == "resin-boot/config.json")
        .unwrap();
    assert!(config.get("hashes").is_none(), "{config}");
    // A boot file's digest is the file's.
    let (_, parts) = sfdisk(&a.join("nuc.img"));
    let grub = files
        .iter()
        .find(|f| f["name"] == "resin-boot/grub/grub.cfg")
        .unwrap();
    let bytes = mtype(&a.join("nuc.img"), &parts[0], "grub/grub.cfg");
    let want = {
        use sha2::Digest;
        hex_of(&sha2::Sha256::digest(&bytes))
    };
    assert_eq!(grub["hashes"][0]["content"], want.as_str());

    check_rootfs(d.path(), &a.join("nuc.img"), &cdx);
    check_images(d.path(), &a.join("nuc.img"), &cdx);

    // `kiln inspect --sbom` summarizes it, from any output's name.
    let s = ok(kiln().args(["inspect", "--sbom"]).arg(a.join("nuc.img")));
    let os_count = cdx["components"][0]["components"].as_array().unwrap().len();
    assert!(s.contains(&format!(": {os_count} packages")), "{s}");
    assert!(
        s.contains("image sbom/deb@sha256:") && s.contains("2 layers, 30 packages"),
        "{s}"
    );
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn sbom_false_writes_none_and_removes_earlier_ones() {
    let fx = fixtures();
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let with = recipe(d.path(), &fx, true);
    build(d.path(), &with);
    assert!(d.path().join("nuc.cdx.json").exists());
    let without = recipe(d.path(), &fx, false);
    build(d.path(), &without);
    let left = outputs_in(d.path(), "nuc");
    assert_eq!(
        left,
        ["SHA256SUMS", "nuc.img", "nuc.img.bmap", "nuc.manifest.json"]
    );
    let sums = std::fs::read_to_string(d.path().join("SHA256SUMS")).unwrap();
    assert!(
        !sums.contains("nuc.cdx.json") && !sums.contains("nuc.spdx.json"),
        "{sums}"
    );
    // inspect --sbom says there is none, on one line, exit 2.
    let out = run(kiln()
        .args(["inspect", "--sbom"])
        .arg(d.path().join("nuc.img")));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("nuc.cdx.json") && err.contains("sbom = false"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// The packages of each preloaded image component of `cdx`, by name.
fn image_packages(cdx: &Value) -> Vec<(String, BTreeSet<String>)> {
    let app = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "application")
        .unwrap();
    let mut v: Vec<_> = app["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), listed(c)))
        .collect();
    v.sort();
    v
}

/// Base-image mode (`--base`): the SBOMs list the base's OS packages,
/// read from its root filesystem's dpkg database (equal to
/// `dpkg-query --admindir` on that database), and the images kiln
/// preloaded with their packages (as a fresh build lists them, which the
/// test above checks against dockerd); both validators accept them.
#[test]
fn base_mode_sboms_list_the_base_packages_and_the_preload() {
    let fx = fixtures();
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let r = recipe(d.path(), &fx, true);
    build(&a, &r);
    // The same recipe, in base-image mode (no systemd unit into a base).
    let text = std::fs::read_to_string(&r)
        .unwrap()
        .replace("activation = \"systemd-unit\"", "activation = \"none\"");
    let rb = d.path().join("base.toml");
    std::fs::write(&rb, text).unwrap();
    let out = run(kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("KILN_T_SBOM_KEY", SECRET)
        .args(["build", "-q", "--board", "nuc", "--recipe"])
        .arg(&rb)
        .arg("--base")
        .arg(a.join("nuc.img"))
        .arg("-o")
        .arg(b.join("nuc.img")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    validate(&b);
    let cdx: Value =
        serde_json::from_slice(&std::fs::read(b.join("nuc.cdx.json")).unwrap()).unwrap();
    let fresh: Value =
        serde_json::from_slice(&std::fs::read(a.join("nuc.cdx.json")).unwrap()).unwrap();
    let chk = d.path().join("chk");
    std::fs::create_dir_all(&chk).unwrap();
    check_rootfs(&chk, &b.join("nuc.img"), &cdx);
    let images = image_packages(&cdx);
    assert_eq!(images.len(), 2, "{images:?}");
    assert!(images.iter().any(|(_, p)| !p.is_empty()), "{images:?}");
    assert_eq!(images, image_packages(&fresh));
    let text = std::fs::read_to_string(b.join("nuc.spdx.json")).unwrap();
    assert!(!text.contains(SECRET));
}
