//! Base-image mode (issue 7): `kiln build --base IMAGE` preloads into an
//! existing balenaOS-layout image made here by the real tools
//! (tests/src/base_fixtures.rs), and the result is checked with the real
//! validators: untouched partitions byte-identical to the base, sfdisk /
//! sgdisk, fsck.fat, e2fsck, config.json equal to the merge, the other
//! boot files unchanged, and a real dockerd on the new data partition
//! listing the base's image and the preloaded app and running them
//! offline.

use kiln_e2e::base_fixtures::{
    make_base, make_flasher, pack, zip, BaseSpec, BootFat, Packed, Store, Table,
};
use kiln_e2e::engine::{Engine, DEMO_SERVICES};
use kiln_e2e::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The default recipe with a small swapfile turned on by the app's swap
/// service (a base image keeps its root filesystem, as on balenaOS), a
/// given hostname and headroom.
fn base_recipe(dir: &Path, hostname: &str) -> PathBuf {
    recipe_copy(dir, |s| {
        s.replace("size = \"1GiB\"", "size = \"64MiB\"")
            .replace(
                "activation = \"systemd-unit\"",
                "activation = \"app-service\"\nservice-image = \"demo/api:1.0\"",
            )
            .replace(
                "hostname = \"bob-onprem\"",
                &format!("hostname = \"{hostname}\""),
            )
            .replace("headroom = \"256MiB\"", "headroom = \"16MiB\"")
    })
}

fn build_base(recipe: &Path, base: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    run(kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "-q", "--board"])
        .arg(if extra.contains(&"gpt") {
            "nuc-gpt"
        } else {
            "nuc"
        })
        .arg("--recipe")
        .arg(recipe)
        .arg("--base")
        .arg(base)
        .arg("-o")
        .arg(out)
        .args(extra.iter().filter(|a| **a != "gpt")))
}

fn part(parts: &[SfPart], n: u32) -> &SfPart {
    parts
        .iter()
        .find(|p| p.number == n)
        .unwrap_or_else(|| panic!("no partition {n}"))
}

/// Bytes `[start, start + len)` of an image (512-byte units).
fn bytes(img: &Path, start: u64, len: u64) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(img).unwrap();
    f.seek(SeekFrom::Start(start * 512)).unwrap();
    let mut v = vec![0u8; (len * 512) as usize];
    f.read_exact(&mut v).unwrap();
    v
}

fn same_region(a: &Path, b: &Path, start: u64, len: u64, what: &str) {
    assert!(
        bytes(a, start, len) == bytes(b, start, len),
        "{what} differs from the base"
    );
}

/// The boot partition's files other than config.json are the base's.
fn other_boot_files_unchanged(base: &Path, out: &Path, bp: &SfPart, op: &SfPart) {
    for f in ["device-type.json", "splash/balena-logo.png"] {
        assert_eq!(mtype(base, bp, f), mtype(out, op, f), "{f} changed");
    }
}

/// Objects merged key by key, anything else replaced (what kiln promises
/// for config.json).
fn merge(base: &mut serde_json::Value, over: &serde_json::Value) {
    match (base.as_object_mut(), over.as_object()) {
        (Some(b), Some(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(x) => merge(x, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *base = over.clone(),
    }
}

fn config(img: &Path, p: &SfPart) -> serde_json::Value {
    serde_json::from_slice(&mtype(img, p, "config.json")).unwrap()
}

#[test]
fn preloads_into_an_mbr_base_whose_store_a_real_engine_wrote() {
    demo_inputs();
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let spec = BaseSpec {
        table: Table::Mbr,
        fat: BootFat::Fat16,
        store: Store::Docker(vec![(
            "proxy".into(),
            "balena/amd64-supervisor:v16.1.0".into(),
        )]),
        ..BaseSpec::default()
    };
    let raw = make_base(d.path(), &spec);
    let base = pack(&raw, Packed::Xz);
    let recipe = base_recipe(d.path(), "bob-from-base");
    let out = d.path().join("out.img");
    let o = build_base(&recipe, &base, &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Table: sfdisk is happy; everything but the data partition (and its
    // EBR/extended sizes) is where it was.
    ok(Command::new("sfdisk").arg("-V").arg(&out));
    let (_, bparts) = sfdisk(&raw);
    let (_, oparts) = sfdisk(&out);
    for n in [1, 2, 3, 5, 6] {
        assert_eq!(part(&bparts, n).start, part(&oparts, n).start, "p{n} moved");
    }
    assert_eq!(bytes(&raw, 0, 1)[..440], bytes(&out, 0, 1)[..440]);
    same_region(
        &raw,
        &out,
        1,
        part(&bparts, 1).start - 1,
        "the gap before p1",
    );
    for n in [2, 3, 5] {
        let p = part(&bparts, n);
        same_region(&raw, &out, p.start, p.size, &format!("p{n}"));
    }
    let data = part(&oparts, 6);
    assert!(data.size >= part(&bparts, 6).size);

    // Filesystems.
    let dir = d.path();
    extract(&out, part(&oparts, 1), &dir.join("boot.fs"));
    fsck_fat_clean(&dir.join("boot.fs"));
    extract(&out, data, &dir.join("data.fs"));
    e2fsck_clean(&dir.join("data.fs"));
    let (fstype, label, _) = blkid(&out, data);
    assert_eq!((fstype.as_str(), label.as_str()), ("ext4", "resin-data"));

    // config.json: the base's keys, the recipe's over them.
    let c = config(&out, part(&oparts, 1));
    let b = config(&raw, part(&bparts, 1));
    assert_eq!(c["hostname"], "bob-from-base");
    assert_eq!(c["vpnPort"], b["vpnPort"]);
    assert_eq!(c["registryEndpoint"], b["registryEndpoint"]);
    assert_eq!(c["deviceType"], "intel-nuc");
    assert_eq!(c["persistentLogging"], true, "the recipe's value wins");
    assert!(c["os"]["sshKeys"][0]
        .as_str()
        .unwrap()
        .starts_with("ssh-ed25519"));
    // Exactly the merge: the config.json a normal build of the same recipe
    // writes, deep-merged over the base's.
    let plain = dir.join("plain.img");
    ok(kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "-q", "--board", "nuc", "--recipe"])
        .arg(&recipe)
        .arg("-o")
        .arg(&plain));
    let (_, pparts) = sfdisk(&plain);
    let mut want = b.clone();
    merge(&mut want, &config(&plain, part(&pparts, 1)));
    assert_eq!(c, want, "config.json is not the merge");
    other_boot_files_unchanged(&raw, &out, part(&bparts, 1), part(&oparts, 1));
    // The recipe's NetworkManager profile is there too.
    assert!(!mtype(&out, part(&oparts, 1), "system-connections/bob-ethernet").is_empty());

    // The manifest names the base and its digest.
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("out.manifest.json")).unwrap()).unwrap();
    let inp = m["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "base-image")
        .expect("base-image input");
    assert_eq!(inp["sha256"], sha256_file(&base));

    // A real engine on the new data partition: the base's image and the
    // app's, both run offline.
    let lo = Loop::new(&out, data);
    let mnt = dir.join("mnt");
    let m = Mount::ext4_ro(&lo, &mnt);
    let apps: serde_json::Value =
        serde_json::from_slice(&std::fs::read(mnt.join("apps.json")).unwrap()).unwrap();
    let rel = apps["apps"].as_object().unwrap().values().next().unwrap()["releases"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone();
    assert_eq!(
        rel["services"]["kiln-swap"]["composition"]["privileged"],
        true
    );
    let swap = std::fs::metadata(mnt.join("swapfile")).unwrap();
    assert_eq!(swap.len(), 64 << 20);
    let lab = ok(Command::new("swaplabel").arg(mnt.join("swapfile")));
    assert!(lab.contains("LABEL: bob-swap"), "{lab}");
    let root = dir.join("data-root");
    ok(Command::new("cp")
        .arg("-a")
        .arg(mnt.join("docker"))
        .arg(&root));
    drop(m);
    drop(lo);
    let mut engine = Engine::start(&dir.join("engine"), &root);
    let listed = engine.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    for r in [
        "balena/amd64-supervisor:v16.1.0",
        "demo/api:1.0",
        "demo/db:1.0",
        "demo/proxy:1.0",
    ] {
        assert!(listed.lines().any(|l| l == r), "{r} missing: {listed}");
    }
    assert_eq!(
        engine.health(
            "balena/amd64-supervisor:v16.1.0",
            DEMO_SERVICES[2].1,
            DEMO_SERVICES[2].2
        ),
        "ok",
        "the base's own image still runs"
    );
    for (svc, port, cmd) in DEMO_SERVICES {
        assert_eq!(
            engine.health(&format!("demo/{svc}:1.0"), port, cmd),
            "ok",
            "{svc}"
        );
    }
    engine.stop_clean();
}

/// A GPT base with a FAT32 boot partition and `balena-` labels, its data
/// partition `data_mib` MiB.
fn balena_gpt(data_mib: u64) -> BaseSpec {
    BaseSpec {
        table: Table::Gpt,
        fat: BootFat::Fat32,
        prefix: "balena".into(),
        boot_mib: 64,
        data_mib,
        ..BaseSpec::default()
    }
}

#[test]
fn grows_a_gpt_fat32_balena_labelled_base_reproducibly() {
    demo_inputs();
    require("sgdisk", "gdisk");
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let raw = make_base(d.path(), &balena_gpt(16));
    let base = pack(&raw, Packed::Qcow2);
    let recipe = base_recipe(d.path(), "bob-gpt");
    let out = d.path().join("a.img");
    let o = build_base(&recipe, &base, &out, &["gpt"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = ok(Command::new("sgdisk").arg("-v").arg(&out));
    assert!(v.contains("No problems found"), "{v}");
    let (_, bparts) = sfdisk(&raw);
    let (_, oparts) = sfdisk(&out);
    let bd = part(&bparts, 5);
    let od = part(&oparts, 5);
    assert_eq!(bd.start, od.start);
    assert!(od.size > bd.size, "the data partition grew");
    assert!(std::fs::metadata(&out).unwrap().len() > std::fs::metadata(&raw).unwrap().len());
    for n in [2, 3, 4] {
        let p = part(&bparts, n);
        same_region(&raw, &out, p.start, p.size, &format!("p{n}"));
    }
    extract(&out, part(&oparts, 1), &d.path().join("boot.fs"));
    fsck_fat_clean(&d.path().join("boot.fs"));
    let (fstype, label, _) = blkid(&out, part(&oparts, 1));
    assert_eq!((fstype.as_str(), label.as_str()), ("vfat", "balena-boot"));
    extract(&out, od, &d.path().join("data.fs"));
    e2fsck_clean(&d.path().join("data.fs"));
    let (_, dlabel, _) = blkid(&out, od);
    assert_eq!(dlabel, "balena-data");
    // The swap service looks for the data partition by the base's label.
    let apps = debugfs(&d.path().join("data.fs"), "cat /apps.json");
    assert!(apps.contains("LABEL=balena-data"), "{apps}");
    let ls = debugfs(&d.path().join("data.fs"), "ls -l /");
    assert!(
        ls.contains("apps.json") && ls.contains("swapfile") && ls.contains("docker"),
        "{ls}"
    );
    other_boot_files_unchanged(&raw, &out, part(&bparts, 1), part(&oparts, 1));

    // Same inputs, same bytes.
    let again = d.path().join("b.img");
    let o = build_base(&recipe, &base, &again, &["gpt"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(sha256_file(&out), sha256_file(&again));
}

/// A base build whose outputs are only a VMDK and the compressed image
/// streams the disk into them: the raw base is read in place and no
/// image file is written (the build runs on a tmpfs too small for the
/// raw image's data); a qcow2 alone is written in place from a qcow2
/// base. Every output holds the raw base build's disk, byte for byte.
#[test]
fn base_builds_stream_or_write_in_place_without_a_raw_image() {
    demo_inputs();
    require("qemu-img", "qemu-utils");
    require("xz", "xz-utils");
    require("bmaptool", "bmap-tools");
    require("sgdisk", "gdisk");
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let spec = BaseSpec {
        // Data the raw image must hold that compresses to little.
        data_files: vec![(
            "filler.txt".into(),
            b"kiln streams a base build\n".repeat(32 << 20 >> 5),
        )],
        ..balena_gpt(48)
    };
    let base = make_base(d.path(), &spec);
    let base_sha = sha256_file(&base);
    let recipe = base_recipe(d.path(), "bob-streamed");
    let refdir = d.path().join("ref");
    std::fs::create_dir(&refdir).unwrap();
    let reference = refdir.join("a.img");
    let o = build_base(&recipe, &base, &reference, &["gpt", "--format", "raw,vmdk"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = ok(Command::new("sgdisk").arg("-v").arg(&reference));
    assert!(v.contains("No problems found"), "{v}");
    let ref_sha = sha256_file(&reference);

    let small: u64 = 8 << 20;
    let raw_data =
        std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&reference).unwrap()) * 512;
    assert!(
        raw_data > small,
        "premise: the raw image holds {raw_data} bytes of data, more than the {small}-byte tmpfs"
    );
    let t = Tmpfs::new(&format!("size={small}"));
    let out = t.path().join("a.img");
    let o = build_base(
        &recipe,
        &base,
        &out,
        &["gpt", "--format", "raw,vmdk", "--compress", "xz"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        outputs_in(t.path(), "a"),
        [
            "SHA256SUMS",
            "a.cdx.json",
            "a.img.bmap",
            "a.img.xz",
            "a.manifest.json",
            "a.spdx.json",
            "a.vmdk"
        ]
    );
    for f in ["a.vmdk", "a.img.bmap"] {
        assert!(
            std::fs::read(t.path().join(f)).unwrap() == std::fs::read(refdir.join(f)).unwrap(),
            "{f} differs from the raw build's"
        );
    }
    ok(Command::new("xz").arg("-t").arg(t.path().join("a.img.xz")));
    let m = sums_ok_and_manifest(t.path(), "a");
    assert_eq!(m["image"]["sha256"], ref_sha);
    let input = m["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "base-image")
        .unwrap_or_else(|| panic!("no base-image input: {}", m["inputs"]));
    assert_eq!(input["sha256"], base_sha, "{input}");
    let copy = d.path().join("copy.img");
    ok(Command::new("bmaptool")
        .args(["copy", "--bmap"])
        .arg(t.path().join("a.img.bmap"))
        .arg(t.path().join("a.img.xz"))
        .arg(&copy));
    ok(Command::new("cmp").arg(&copy).arg(&reference));
    let cmp = ok(Command::new("qemu-img")
        .args(["compare", "-f", "vmdk", "-F", "raw"])
        .arg(t.path().join("a.vmdk"))
        .arg(&reference));
    assert!(cmp.contains("Images are identical"), "{cmp}");
    drop(t);

    // A full disk (here while the boot partition is rebuilt into the
    // edits file): one line naming the partition, a non-zero exit,
    // nothing left behind.
    let t = Tmpfs::new("size=1m");
    let o = build_base(
        &recipe,
        &base,
        &t.path().join("a.img"),
        &["gpt", "--format", "vmdk"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a build on a 1 MiB tmpfs succeeded");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        outputs_in(t.path(), "a").is_empty(),
        "left behind: {:?}",
        outputs_in(t.path(), "a")
    );
    // The same while a compressed base is expanded into the raw output:
    // the output is named, not the base.
    let xbase = pack(&base, Packed::Xz);
    let o = build_base(&recipe, &xbase, &t.path().join("a.img"), &["gpt"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("a.img: cannot expand the base image into it")
            && err.contains("No space left on device"),
        "{err}"
    );
    assert!(outputs_in(t.path(), "a").is_empty());
    drop(t);

    // qcow2 alone from a qcow2 base: written in place.
    let qbase = pack(&base, Packed::Qcow2);
    let qdir = d.path().join("q");
    std::fs::create_dir(&qdir).unwrap();
    let o = build_base(
        &recipe,
        &qbase,
        &qdir.join("a.img"),
        &["gpt", "--format", "qcow2"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        outputs_in(&qdir, "a"),
        [
            "SHA256SUMS",
            "a.cdx.json",
            "a.manifest.json",
            "a.qcow2",
            "a.spdx.json"
        ]
    );
    let q = qdir.join("a.qcow2");
    let check = ok(Command::new("qemu-img")
        .args(["check", "-f", "qcow2"])
        .arg(&q));
    assert!(check.contains("No errors"), "{check}");
    let cmp = ok(Command::new("qemu-img")
        .args(["compare", "-f", "qcow2", "-F", "raw"])
        .arg(&q)
        .arg(&reference));
    assert!(cmp.contains("Images are identical"), "{cmp}");
    assert_eq!(sums_ok_and_manifest(&qdir, "a")["image"]["sha256"], ref_sha);
    // A fixed VHD alone from the qcow2 base: expanded into the VHD file,
    // the raw disk there, then the footer.
    let o = build_base(
        &recipe,
        &qbase,
        &qdir.join("v.img"),
        &["gpt", "--format", "vhd"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let vhd = qdir.join("v.vhd");
    let info: serde_json::Value = serde_json::from_str(&ok(Command::new("qemu-img")
        .args(["info", "--output=json", "-f", "vpc"])
        .arg(&vhd)))
    .unwrap();
    assert_eq!(
        std::fs::metadata(&vhd).unwrap().len(),
        info["virtual-size"].as_u64().unwrap() + 512,
        "a fixed VHD: the disk, then the footer"
    );
    let cmp = ok(Command::new("qemu-img")
        .args(["compare", "-f", "vpc", "-F", "raw"])
        .arg(&vhd)
        .arg(&reference));
    assert!(cmp.contains("Images are identical"), "{cmp}");
    // Raw from the qcow2 base (expanded into the output file, the data
    // partition set aside, only the edits written over): the same image
    // as from the raw base read in place.
    let o = build_base(&recipe, &qbase, &qdir.join("r.img"), &["gpt"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(sha256_file(&qdir.join("r.img")), ref_sha);
    // The base was only read.
    assert_eq!(sha256_file(&base), base_sha);
}

#[test]
fn preloads_the_image_inside_a_flasher() {
    demo_inputs();
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let dir = d.path();
    let inner = make_base(&dir.join("inner"), &BaseSpec::default());
    let flasher = make_flasher(dir, &inner);
    let recipe = base_recipe(dir, "bob-flashed");
    let out = dir.join("out.img");
    let o = build_base(&recipe, &flasher, &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ok(Command::new("sfdisk").arg("-V").arg(&out));
    let (_, fparts) = sfdisk(&flasher);
    let (_, oparts) = sfdisk(&out);
    assert!(
        part(&oparts, 2).size > part(&fparts, 2).size,
        "flash-rootA grew"
    );
    // flash-boot got the merged config too (the installer copies it).
    assert_eq!(config(&out, part(&oparts, 1))["hostname"], "bob-flashed");
    assert!(config(&out, part(&oparts, 1))["installer"].is_object());
    extract(&out, part(&oparts, 1), &dir.join("fboot.fs"));
    fsck_fat_clean(&dir.join("fboot.fs"));
    let root = dir.join("froot.fs");
    extract(&out, part(&oparts, 2), &root);
    e2fsck_clean(&root);
    // The inner image: preloaded, valid, its untouched partitions intact.
    let new_inner = dir.join("new-inner.img");
    debugfs(
        &root,
        &format!("dump /opt/base.img {}", new_inner.display()),
    );
    ok(Command::new("sfdisk").arg("-V").arg(&new_inner));
    let (_, iparts) = sfdisk(&inner);
    let (_, nparts) = sfdisk(&new_inner);
    for n in [2, 3, 5] {
        let p = part(&iparts, n);
        same_region(&inner, &new_inner, p.start, p.size, &format!("inner p{n}"));
    }
    assert_eq!(
        config(&new_inner, part(&nparts, 1))["hostname"],
        "bob-flashed"
    );
    let data = dir.join("idata.fs");
    extract(&new_inner, part(&nparts, 6), &data);
    e2fsck_clean(&data);
    let ls = debugfs(&data, "ls -l /docker/image/overlay2/imagedb/content/sha256");
    assert_eq!(
        ls.lines().filter(|l| l.contains(" 100600 ")).count(),
        3,
        "{ls}"
    );
    assert!(debugfs(&data, "ls -l /").contains("apps.json"));

    // From the flasher packed with xz (expanded into the output file,
    // flash-rootA set aside): the same image.
    let xdir = dir.join("from-xz");
    std::fs::create_dir(&xdir).unwrap();
    let o = build_base(
        &recipe,
        &pack(&flasher, Packed::Xz),
        &xdir.join("out.img"),
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(sha256_file(&xdir.join("out.img")), sha256_file(&out));

    // Streamed (no image file): the same disk in the VMDK and the gzip.
    require("qemu-img", "qemu-utils");
    let sdir = dir.join("streamed");
    std::fs::create_dir(&sdir).unwrap();
    let o = build_base(
        &recipe,
        &flasher,
        &sdir.join("out.img"),
        &["--format", "vmdk", "--compress", "gz"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        outputs_in(&sdir, "out"),
        [
            "SHA256SUMS",
            "out.cdx.json",
            "out.img.gz",
            "out.manifest.json",
            "out.spdx.json",
            "out.vmdk"
        ]
    );
    let m = sums_ok_and_manifest(&sdir, "out");
    assert_eq!(m["image"]["sha256"], sha256_file(&out));
    let cmp = ok(Command::new("qemu-img")
        .args(["compare", "-f", "vmdk", "-F", "raw"])
        .arg(sdir.join("out.vmdk"))
        .arg(&out));
    assert!(cmp.contains("Images are identical"), "{cmp}");
}

/// Runs a base build that must fail: non-zero exit, one line naming
/// `needle`, and nothing left in the output directory.
fn refused(d: &Path, base: &Path, needle: &str, extra: &[&str]) {
    let outdir = d.join(format!("out-{}", needle.replace([' ', '/'], "_")));
    std::fs::create_dir_all(&outdir).unwrap();
    let recipe = base_recipe(d, "bob");
    let o = build_base(&recipe, base, &outdir.join("x.img"), extra);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{} was accepted", base.display());
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&outdir).unwrap().collect();
    assert!(left.is_empty(), "output left behind: {left:?}");
}

#[test]
fn bad_bases_are_refused_with_nothing_left_behind() {
    demo_inputs();
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let dir = d.path();
    let good = make_base(&dir.join("good"), &BaseSpec::default());

    // Truncated xz.
    let xz = pack(&good, Packed::Xz);
    let len = std::fs::metadata(&xz).unwrap().len();
    let cut = dir.join("cut.img.xz");
    std::fs::write(&cut, &std::fs::read(&xz).unwrap()[..(len / 2) as usize]).unwrap();
    refused(dir, &cut, "cut.img.xz", &[]);

    // No partition table.
    let blank = dir.join("blank.img");
    std::fs::File::create(&blank)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    refused(dir, &blank, "blank.img", &[]);

    // The data partition's label is missing.
    let nolabel = make_base(
        &dir.join("nolabel"),
        &BaseSpec {
            data_label: Some("userdata".into()),
            ..BaseSpec::default()
        },
    );
    refused(dir, &nolabel, "resin-data", &[]);

    // Another board's image: refused, accepted with --force.
    let pi = make_base(
        &dir.join("pi"),
        &BaseSpec {
            slug: "raspberrypi3".into(),
            arch: "armv7hf".into(),
            ..BaseSpec::default()
        },
    );
    refused(dir, &pi, "--force", &[]);
    let forced = dir.join("forced.img");
    let o = build_base(&base_recipe(dir, "bob"), &pi, &forced, &["--force"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A zip with two images.
    let two = dir.join("two.zip");
    let second = dir.join("second.img");
    std::fs::copy(&pi, &second).unwrap();
    zip(&two, &[&good, &second]);
    refused(dir, &two, "two.zip", &[]);

    // A base already preloaded with another app.
    let other = serde_json::json!({"apps": {"0123456789abcdef0123456789abcdef": {
        "id": 7, "name": "someone-else", "class": "fleet", "releases": {}}}});
    let taken = make_base(
        &dir.join("taken"),
        &BaseSpec {
            data_files: vec![("apps.json".into(), serde_json::to_vec(&other).unwrap())],
            ..BaseSpec::default()
        },
    );
    refused(dir, &taken, "someone-else", &[]);
}
