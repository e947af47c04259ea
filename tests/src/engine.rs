//! A private containerd + dockerd on a given data root. Everything they
//! use lives under one scratch directory; they are stopped by pid.

use crate::{ok as run_ok, require};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A private containerd + dockerd.
pub struct Engine {
    /// Scratch directory (logs, sockets, state).
    pub dir: PathBuf,
    /// The dockerd API socket.
    pub sock: PathBuf,
    containerd: Option<Child>,
    dockerd: Option<Child>,
}

impl Engine {
    /// Starts containerd and dockerd (`--data-root data_root`).
    pub fn start(dir: &Path, data_root: &Path) -> Engine {
        require("dockerd", "docker.io");
        require("docker", "docker.io");
        require("containerd", "containerd");
        require("runc", "runc");
        std::fs::create_dir_all(dir.join("ctd")).unwrap();
        let ctd_sock = dir.join("ctd/ctd.sock");
        let cfg = format!(
            "version = 2\nroot = \"{0}/ctd/root\"\nstate = \"{0}/ctd/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{1}\"\n",
            dir.display(),
            ctd_sock.display()
        );
        std::fs::write(dir.join("ctd/config.toml"), cfg).unwrap();
        std::fs::write(dir.join("daemon.json"), "{}").unwrap();
        let log = |n: &str| std::fs::File::create(dir.join(n)).unwrap();
        let containerd = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("ctd/config.toml"))
            .stdout(Stdio::null())
            .stderr(log("containerd.log"))
            .spawn()
            .unwrap();
        let mut e = Engine {
            dir: dir.to_path_buf(),
            sock: dir.join("docker.sock"),
            containerd: Some(containerd),
            dockerd: None,
        };
        for _ in 0..100 {
            if ctd_sock.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let dockerd = Command::new("dockerd")
            .arg("--data-root")
            .arg(data_root)
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", e.sock.display()))
            .arg(format!("--containerd={}", ctd_sock.display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--storage-driver=overlay2",
            ])
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .stdout(Stdio::null())
            .stderr(log("dockerd.log"))
            .spawn()
            .unwrap();
        e.dockerd = Some(dockerd);
        for _ in 0..150 {
            let ok = Command::new("docker")
                .arg("-H")
                .arg(format!("unix://{}", e.sock.display()))
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return e;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("dockerd did not come up: {}", e.log());
    }

    /// Runs a docker CLI command against this engine; asserts success.
    pub fn docker(&self, args: &[&str]) -> String {
        run_ok(
            Command::new("docker")
                .arg("-H")
                .arg(format!("unix://{}", self.sock.display()))
                .args(args),
        )
    }

    /// Runs a docker CLI command; returns (success, stdout+stderr).
    pub fn docker_status(&self, args: &[&str]) -> (bool, String) {
        let o = Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args)
            .output()
            .unwrap();
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }

    /// dockerd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    fn stop_child(c: &mut Child) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Stops dockerd, then containerd (by pid), and returns dockerd's log.
    pub fn stop(&mut self) -> String {
        if let Some(mut d) = self.dockerd.take() {
            Self::stop_child(&mut d);
        }
        if let Some(mut c) = self.containerd.take() {
            Self::stop_child(&mut c);
        }
        self.log()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The demo app's services: name, health port, and the command that
/// starts the service inside its busybox image.
pub const DEMO_SERVICES: [(&str, u16, &str); 3] = [
    ("api", 8080, "/bin/busybox httpd -p 8080 -h /www"),
    ("db", 8081, "DB_DIR=/tmp/db /db.sh &"),
    ("proxy", 8000, "/bin/busybox httpd -p 8000 -h /www"),
];

impl Engine {
    /// Runs `image` offline (no network, never pulling), starts `cmd` in
    /// it and returns what `http://127.0.0.1:<port>/health` answers.
    pub fn health(&self, image: &str, port: u16, cmd: &str) -> String {
        let script = format!(
            "{cmd}\n/bin/busybox sleep 0.5; /bin/busybox wget -q -O- http://127.0.0.1:{port}/health"
        );
        self.docker(&[
            "run",
            "--rm",
            "--pull=never",
            "--network",
            "none",
            image,
            "/bin/busybox",
            "sh",
            "-c",
            &script,
        ])
        .trim()
        .to_string()
    }

    /// Stops the engine and fails on any error or fatal line in its log,
    /// except the one dockerd logs when the containerd it started is shut
    /// down under it during its own shutdown (its event stream closes:
    /// `Failed to get event ... transport is closing`; seen on a loaded
    /// machine, about the stop, not the store).
    pub fn stop_clean(&mut self) {
        let log = self.stop();
        let errors: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("level=error") || l.contains("level=fatal"))
            .filter(|l| {
                !(l.contains("msg=\"Failed to get event\"")
                    && l.contains("transport is closing")
                    && l.contains("module=libcontainerd"))
            })
            .collect();
        assert!(
            errors.is_empty(),
            "dockerd logged errors:\n{}",
            errors.join("\n")
        );
    }
}
