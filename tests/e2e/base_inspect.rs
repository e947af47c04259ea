//! `kiln inspect` on balenaOS base images made by the real tools
//! (tests/src/base_fixtures.rs): OS version, device type, what the data
//! partition's engine store holds (loaded by a real dockerd), apps.json,
//! and the data partition's free space (checked against dumpe2fs), as text
//! and as JSON; also on qcow2/VMDK/VHD, GPT, and a flasher.

use kiln_e2e::base_fixtures::{
    make_base, make_flasher, pack, BaseSpec, BootFat, Packed, Store, Table,
};
use kiln_e2e::{e2fsck_clean, extract, kiln, ok, require, run, sfdisk};
use std::path::Path;
use std::process::Command;

const SUPERVISOR: &str = "balena/amd64-supervisor:v16.1.0";

fn inspect_json(image: &Path) -> serde_json::Value {
    let out = ok(kiln().arg("inspect").arg(image).arg("--json"));
    serde_json::from_str(&out).expect("inspect --json")
}

/// (free blocks × block size, block count × block size) by dumpe2fs.
fn dumpe2fs_space(fs: &Path) -> (u64, u64) {
    require("dumpe2fs", "e2fsprogs");
    let d = ok(Command::new("dumpe2fs").arg("-h").arg(fs));
    let field = |k: &str| -> u64 {
        d.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("{k} missing in dumpe2fs"))
            .trim()
            .parse()
            .unwrap()
    };
    let bs = field("Block size:");
    (field("Free blocks:") * bs, field("Block count:") * bs)
}

#[test]
fn inspect_base_with_a_docker_loaded_store() {
    let dir = tempfile::tempdir().unwrap();
    let apps = serde_json::json!({
        "config": {},
        "apps": {"a1b2c3": {"id": 1, "name": "fleet-app", "class": "fleet", "releases": {
            "c0ffee": {"id": 7, "services": {
                "supervisor": {"id": 1, "image_id": 1, "image": SUPERVISOR},
                "api": {"id": 2, "image_id": 2, "image": "demo/api:1.0"}
            }}}}}
    });
    let spec = BaseSpec {
        store: Store::Docker(vec![("proxy".into(), SUPERVISOR.into())]),
        data_files: vec![("apps.json".into(), serde_json::to_vec(&apps).unwrap())],
        ..BaseSpec::default()
    };
    let raw = make_base(dir.path(), &spec);

    // The fixture itself is sound: every filesystem checks clean.
    let (_, parts) = sfdisk(&raw);
    let data = parts.iter().find(|p| p.number == 6).expect("p6");
    let data_fs = dir.path().join("data.ext4");
    extract(&raw, data, &data_fs);
    e2fsck_clean(&data_fs);
    let (free, size) = dumpe2fs_space(&data_fs);

    let j = inspect_json(&raw);
    let base = &j["base"];
    assert_eq!(base["flasher"], false);
    assert_eq!(base["os"]["version"], spec.os_version.as_str());
    assert_eq!(base["os"]["pretty_name"], spec.pretty_name().as_str());
    assert_eq!(
        base["os"]["image_version_info"],
        spec.image_version_info().as_str()
    );
    assert_eq!(base["device"]["slug"], "intel-nuc");
    assert_eq!(base["device"]["arch"], "amd64");
    assert_eq!(base["data_space"]["free_bytes"], free);
    assert_eq!(base["data_space"]["size_bytes"], size);
    let roles: Vec<(String, u64)> = base["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["role"].as_str().unwrap().to_string(),
                r["number"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("Boot", 1),
            ("RootA", 2),
            ("RootB", 3),
            ("State", 5),
            ("Data", 6)
        ]
        .map(|(r, n)| (r.to_string(), n))
    );
    // What the real `docker load` stored.
    let images = j["data"]["images"].as_array().expect("images");
    assert_eq!(images.len(), 1, "{images:?}");
    assert!(
        images[0]["references"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == SUPERVISOR),
        "{images:?}"
    );
    assert!(images[0]["layers"].as_u64().unwrap() >= 1);
    let services = j["data"]["services"].as_array().expect("services");
    let pre: Vec<(String, bool)> = services
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap().to_string(),
                s["preloaded"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(pre.contains(&("supervisor".into(), true)), "{pre:?}");
    assert!(pre.contains(&("api".into(), false)), "{pre:?}");

    // Text: OS version, device, preloaded image, free space.
    let text = ok(kiln().arg("inspect").arg(&raw));
    assert!(
        text.contains(&format!(
            "os        balenaOS {} (version {})",
            spec.os_version, spec.os_version
        )),
        "{text}"
    );
    assert!(
        text.contains("device    intel-nuc arch amd64 (from device-type.json)"),
        "{text}"
    );
    assert!(text.contains(SUPERVISOR), "{text}");
    assert!(
        text.contains(&format!("data free {free} bytes of {size}")),
        "{text}"
    );
    assert!(
        text.contains("base      balenaOS layout: boot=p1 resin-boot"),
        "{text}"
    );

    // The same answers through a qcow2 of it.
    let q = pack(&raw, Packed::Qcow2);
    let jq = inspect_json(&q);
    assert_eq!(jq["base"], j["base"]);
    assert_eq!(jq["data"], j["data"]);
}

#[test]
fn inspect_gpt_fat32_base_through_vmdk_and_vhd() {
    let dir = tempfile::tempdir().unwrap();
    let spec = BaseSpec {
        table: Table::Gpt,
        fat: BootFat::Fat32,
        slug: "generic-amd64".into(),
        os_version: "6.1.24".into(),
        ..BaseSpec::default()
    };
    let raw = make_base(dir.path(), &spec);
    let j = inspect_json(&raw);
    assert_eq!(j["table"], "gpt");
    assert_eq!(j["base"]["os"]["version"], "6.1.24");
    assert_eq!(j["base"]["device"]["slug"], "generic-amd64");
    assert_eq!(j["base"]["roles"].as_array().unwrap().len(), 5);
    assert_eq!(j["data"]["images"].as_array().unwrap().len(), 0);
    for kind in [Packed::Vmdk, Packed::Vhd] {
        let p = pack(&raw, kind);
        let jp = inspect_json(&p);
        assert_eq!(jp["base"], j["base"], "{kind:?}");
        assert_eq!(jp["partitions"], j["partitions"], "{kind:?}");
    }
    // Compressed and zipped: expanded into a temporary file, same report.
    for kind in [Packed::Xz, Packed::Zip] {
        let p = pack(&raw, kind);
        let out = run(kiln().args(["inspect", "--json"]).arg(&p));
        assert!(
            out.status.success(),
            "{kind:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let jp: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(jp["base"], j["base"], "{kind:?}");
        assert_eq!(jp["partitions"], j["partitions"], "{kind:?}");
        assert_eq!(jp["data"], j["data"], "{kind:?}");
    }
    // A truncated one: one line naming the file.
    let xz = pack(&raw, Packed::Xz);
    let bytes = std::fs::read(&xz).unwrap();
    let cut = dir.path().join("cut.img.xz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = run(kiln().arg("inspect").arg(&cut));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(last.contains("cut.img.xz"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn inspect_flasher_names_its_inner_image() {
    let dir = tempfile::tempdir().unwrap();
    let raw = make_base(&dir.path().join("inner"), &BaseSpec::default());
    let named = dir.path().join("balena-image-intel-nuc.img");
    std::fs::rename(&raw, &named).unwrap();
    let flasher = make_flasher(dir.path(), &named);
    let j = inspect_json(&flasher);
    assert_eq!(j["base"]["flasher"], true);
    assert_eq!(
        j["base"]["inner_image"]["path"],
        "/opt/balena-image-intel-nuc.img"
    );
    assert_eq!(
        j["base"]["inner_image"]["size"],
        std::fs::metadata(&named).unwrap().len()
    );
    let text = ok(kiln().arg("inspect").arg(&flasher));
    assert!(
        text.contains("balenaOS flasher (installer) image"),
        "{text}"
    );
    assert!(
        text.contains("inner     /opt/balena-image-intel-nuc.img"),
        "{text}"
    );
}
