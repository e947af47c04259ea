//! The demo app end to end: `demo/app/make-demo-app.sh` builds the
//! images from Debian packages; kiln writes the store and apps.json for
//! amd64 and arm/v7; a real dockerd finds every image apps.json names
//! (so the device would not pull) and the services answer on /health.
#![allow(missing_docs)]

mod common;

use common::engine::{Engine, DEMO_SERVICES};
use common::materialise::DirSink;
use kiln_oci::{AppIds, AppsJson, Compose, ImageInput, Platform, Store, StoreOptions};
use kiln_tree::{PrefixSink, Timestamp, TreePath};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

fn demo_inputs() -> (Vec<ImageInput>, PathBuf) {
    common::require_tool("umoci", "umoci");
    let root = common::repo_root();
    common::run(Command::new("sh").arg(root.join("demo/app/make-demo-app.sh")));
    let out = root.join(".cache/demo-app");
    let inputs = ["api", "db", "proxy"]
        .iter()
        .map(|s| ImageInput::new(out.join(format!("{s}.oci"))))
        .collect();
    (inputs, root.join("demo/app/docker-compose.yml"))
}

fn open(inputs: &[ImageInput], platform: &str) -> Store {
    Store::open(
        inputs,
        StoreOptions {
            platform: Platform::parse(platform).unwrap(),
            time: Timestamp::new(1_700_000_000, 0),
        },
    )
    .unwrap()
}

#[test]
fn demo_app_preloads_and_runs() {
    let (inputs, compose_path) = demo_inputs();
    let compose = Compose::read(&compose_path).unwrap();
    assert!(["api", "db", "proxy"]
        .iter()
        .all(|s| compose.services.contains_key(*s)));
    let ids = AppIds::derive(b"demo", "bob");

    // arm/v7: the armhf busybox is chosen.
    let arm = open(&inputs, "linux/arm/v7");
    assert!(
        arm.images().iter().all(|i| i.platform == "linux/arm"),
        "{:?}",
        arm.summary()
    );
    let dir = PathBuf::from("/var/tmp/kiln-oci-test-demo");
    let _ = std::fs::remove_dir_all(&dir);
    let armdata = dir.join("arm");
    let mut s = DirSink::new(&armdata);
    let rep = arm.feed(&mut s).unwrap();
    s.finish().unwrap();
    let base = armdata
        .join("overlay2")
        .join(&rep.layers[0].cache_id)
        .join("diff/bin/busybox");
    let elf = std::fs::read(base).unwrap();
    assert_eq!(
        u16::from_le_bytes([elf[18], elf[19]]),
        40,
        "armhf busybox expected (EM_ARM)"
    );

    // amd64: written as the data partition would hold it, then run.
    let store = open(&inputs, "linux/amd64");
    let apps = AppsJson::build(&compose, &store, &ids, &BTreeMap::new(), Some(false)).unwrap();
    let part = dir.join("data-partition");
    let mut sink = DirSink::new(&part);
    {
        let mut p = PrefixSink::new(&mut sink, TreePath::parse(b"docker").unwrap());
        store.feed(&mut p).unwrap();
    }
    kiln_oci::feed_data_extras(
        &mut sink,
        &apps.to_bytes(),
        Timestamp::new(1_700_000_000, 0),
    )
    .unwrap();
    sink.finish().unwrap();
    assert!(part.join("resin-data").is_dir() && part.join("remove_me_to_reset").is_file());
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(part.join("apps.json")).unwrap()).unwrap();
    let services = &v["apps"][&ids.app_uuid]["releases"][&ids.release_commit]["services"];
    // What `kiln inspect` reads back: every apps.json image is stored.
    let stored = kiln_oci::parse_repositories_json(
        &std::fs::read(part.join("docker/image/overlay2/repositories.json")).unwrap(),
    )
    .unwrap();
    let summary =
        kiln_oci::parse_apps_json(&std::fs::read(part.join("apps.json")).unwrap()).unwrap();
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].services.len(), 3);
    for (svc, image) in &summary[0].services {
        assert!(
            stored.contains_key(image),
            "{svc}: {image} not in repositories.json"
        );
    }

    let mut engine = Engine::start(&dir.join("engine"), &part.join("docker"));
    for (svc, port, cmd) in DEMO_SERVICES {
        let image = services[svc]["image"].as_str().unwrap();
        // The exact reference apps.json names is known to the engine.
        let id = engine.docker(&["image", "inspect", "--format", "{{.Id}}", image]);
        assert_eq!(id.trim(), store.find(image).unwrap().id.to_string());
        assert_eq!(engine.health(image, port, cmd), "ok", "{svc}");
    }
    engine.stop_clean();
}
