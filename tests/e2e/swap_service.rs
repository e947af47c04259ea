//! `swap.activation = "app-service"` (read-only roots such as balenaOS):
//! kiln adds a privileged `kiln-swap` service to apps.json, and that
//! service, run by a real dockerd exactly as apps.json describes it,
//! mounts the data partition by label and turns the swapfile on in the
//! build machine's own kernel (`/proc/swaps`), then stays running with a
//! passing healthcheck.

use kiln_e2e::engine::Engine;
use kiln_e2e::*;
use std::process::Command;

/// A read-write loop device over a whole file, detached on drop.
struct RwLoop(String);
impl Drop for RwLoop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

#[test]
fn the_swap_service_turns_the_swapfile_on() {
    demo_inputs();
    require("losetup", "mount");
    require("swapoff", "mount");
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let dir = d.path();
    let recipe = recipe_copy(dir, |s| {
        s.replace("size = \"1GiB\"", "size = \"48MiB\"")
            .replace(
                "activation = \"systemd-unit\"",
                "activation = \"app-service\"\nservice-image = \"demo/api:1.0\"",
            )
            .replace("headroom = \"256MiB\"", "headroom = \"16MiB\"")
    });
    let img = dir.join("nuc.img");
    ok(kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "-q", "--board", "nuc", "--recipe"])
        .arg(&recipe)
        .arg("-o")
        .arg(&img));
    let (_, parts) = sfdisk(&img);
    let data = parts.iter().find(|p| p.number == 6).unwrap();
    let fs = dir.join("data.fs");
    extract(&img, data, &fs);

    // apps.json: the service, pinned to the api image, privileged.
    let apps: serde_json::Value = serde_json::from_str(&debugfs(&fs, "cat /apps.json")).unwrap();
    let app = apps["apps"].as_object().unwrap().values().next().unwrap();
    let release = app["releases"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    let svc = &release["services"]["kiln-swap"];
    assert_eq!(svc["composition"]["privileged"], true, "{svc}");
    let image = svc["image"].as_str().unwrap();
    assert!(image.starts_with("demo/api@sha256:"), "{image}");
    assert_eq!(svc["labels"]["io.kiln.swapfile"], "/mnt/data/swapfile");
    // No systemd unit in rootA for this activation.
    let root = parts.iter().find(|p| p.number == 2).unwrap();
    let rootfs = dir.join("root.fs");
    extract(&img, root, &rootfs);
    let units = debugfs(&rootfs, "ls -l /etc/systemd/system");
    assert!(!units.contains(".swap"), "{units}");

    // The store, for a private engine.
    let lo = Loop::new(&img, data);
    let m = Mount::ext4_ro(&lo, &dir.join("mnt"));
    let store = dir.join("data-root");
    ok(Command::new("cp")
        .arg("-a")
        .arg(m.0.join("docker"))
        .arg(&store));
    drop(m);
    drop(lo);

    // The data partition as a writable block device labelled resin-data
    // (a copy: the service mounts it and swaps on it).
    let dev = ok(Command::new("losetup").args(["-f", "--show"]).arg(&fs));
    let _rw = RwLoop(dev.trim().to_string());
    let mut engine = Engine::start(&dir.join("engine"), &store);
    let c = &svc["composition"];
    let cmd: Vec<&str> = c["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // `--privileged` as apps.json says, except that this sandbox's
    // bounding set lacks CAP_SYS_RESOURCE, which runc then cannot grant:
    // every other capability, no seccomp filter, and the device.
    let device = format!("{}:{}", dev.trim(), dev.trim());
    let mut args = vec![
        "run",
        "-d",
        "--name",
        "kiln-swap",
        "--pull=never",
        "--cap-add",
        "ALL",
        "--cap-drop",
        "SYS_RESOURCE",
        "--security-opt",
        "seccomp=unconfined",
        "--device",
        &device,
        "--network",
        c["network_mode"].as_str().unwrap(),
        image,
    ];
    args.extend(&cmd);
    engine.docker(&args);
    let swapfile = "/run/kiln-swap/swapfile";
    let mut healthy = false;
    for _ in 0..50 {
        let test: Vec<&str> = c["healthcheck"]["test"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .map(|v| v.as_str().unwrap())
            .collect();
        let mut exec = vec!["exec", "kiln-swap"];
        exec.extend(&test);
        if engine.docker_status(&exec).0 {
            healthy = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let logs = engine.docker_status(&["logs", "kiln-swap"]).1;
    let state = engine.docker(&["inspect", "-f", "{{.State.Status}}", "kiln-swap"]);
    // Seen from inside the service: the swapfile is on, 48 MiB.
    let swaps = engine.docker(&["exec", "kiln-swap", "/bin/busybox", "cat", "/proc/swaps"]);
    engine.docker(&["exec", "kiln-swap", "/bin/busybox", "swapoff", swapfile]);
    engine.docker(&["rm", "-f", "kiln-swap"]);
    engine.stop_clean();
    assert!(healthy, "healthcheck never passed: {logs}");
    assert_eq!(state.trim(), "running", "{logs}");
    let line = swaps
        .lines()
        .find(|l| l.starts_with(swapfile))
        .unwrap_or_else(|| panic!("swapfile not active: {swaps}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f[1], "file");
    assert_eq!(f[2].parse::<u64>().unwrap(), 48 * 1024 - 4, "{line}");
}
