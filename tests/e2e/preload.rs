//! The preloaded app in a built image is accepted by a real engine: the
//! data partition is loop-mounted read-only (the kernel's ext4 driver is
//! the first validator), its store copied out, and a private dockerd
//! started on the copy lists every image apps.json names and runs each
//! service offline with its health endpoint answering.

use kiln_e2e::engine::{Engine, DEMO_SERVICES};
use kiln_e2e::*;
use std::process::Command;

#[test]
fn dockerd_runs_the_preloaded_app_offline() {
    demo_inputs();
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let img = d.path().join("nuc.img");
    ok(kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args([
            "build",
            "-q",
            "--board",
            "nuc",
            "--recipe",
            "bob-onprem",
            "-o",
        ])
        .arg(&img));
    let (_, parts) = sfdisk(&img);
    let data = parts.iter().find(|p| p.number == 6).unwrap();
    let lo = Loop::new(&img, data);
    let mnt = d.path().join("mnt");
    let m = Mount::ext4_ro(&lo, &mnt);
    // swapfile: mode, size, header readable by util-linux.
    let st = std::fs::metadata(mnt.join("swapfile")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&st.permissions()) & 0o7777,
        0o600
    );
    assert_eq!(st.len(), 1 << 30);
    let lab = ok(Command::new("swaplabel").arg(mnt.join("swapfile")));
    assert!(lab.contains("LABEL: bob-swap"), "{lab}");
    let apps: serde_json::Value =
        serde_json::from_slice(&std::fs::read(mnt.join("apps.json")).unwrap()).unwrap();
    assert!(mnt.join("resin-data").is_dir() && mnt.join("remove_me_to_reset").is_file());
    // Copy the store out (dockerd needs a writable data root); cp -a keeps
    // owners, modes, xattrs (trusted.overlay.*), devices and hardlinks.
    let root = d.path().join("data-root");
    ok(Command::new("cp")
        .arg("-a")
        .arg(mnt.join("docker"))
        .arg(&root));
    drop(m);
    drop(lo);

    let mut engine = Engine::start(&d.path().join("engine"), &root);
    let app = apps["apps"].as_object().unwrap().values().next().unwrap();
    let release = app["releases"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    let services = release["services"].as_object().unwrap();
    assert_eq!(services.len(), 3);
    for (svc, port, cmd) in DEMO_SERVICES {
        let image = services[svc]["image"].as_str().unwrap();
        let (found, out) =
            engine.docker_status(&["image", "inspect", "--format", "{{.Id}}", image]);
        assert!(found, "engine does not know {image}: {out}");
        assert_eq!(engine.health(image, port, cmd), "ok", "{svc}");
    }
    engine.stop_clean();
}
