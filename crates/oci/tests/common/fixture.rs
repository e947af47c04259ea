//! Builds OCI image layouts with the tar crate, then validates them with
//! skopeo (which checks every blob digest while copying).

use super::run;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const MTIME: u64 = 1_700_000_000;

/// One member of a fixture layer.
#[derive(Clone)]
pub enum M {
    Dir(&'static str, u32),
    File(&'static str, Vec<u8>, u32, (u64, u64)),
    /// A file with PAX `SCHILY.xattr.*` records.
    XFile(&'static str, Vec<u8>, u32, Vec<(&'static str, Vec<u8>)>),
    Link(&'static str, &'static str),
    Sym(&'static str, &'static str),
    Char(&'static str, u32, u32),
    Fifo(&'static str),
    /// A file with a raw (possibly non-UTF-8) name.
    Raw(Vec<u8>, Vec<u8>),
    /// A member whose name is written raw into the header (hostile).
    Hostile(&'static str, tar::EntryType, Option<&'static str>),
}

fn hdr(et: tar::EntryType, size: u64, mode: u32, owner: (u64, u64)) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(et);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(owner.0);
    h.set_gid(owner.1);
    h.set_mtime(MTIME);
    h
}

pub fn layer_tar(members: &[M]) -> Vec<u8> {
    use tar::EntryType as T;
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        match m {
            M::Dir(p, mode) => {
                let mut h = hdr(T::Directory, 0, *mode, (0, 0));
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            M::File(p, data, mode, owner) => {
                let mut h = hdr(T::Regular, data.len() as u64, *mode, *owner);
                b.append_data(&mut h, p, &data[..]).unwrap();
            }
            M::XFile(p, data, mode, xattrs) => {
                let recs: Vec<(String, Vec<u8>)> = xattrs
                    .iter()
                    .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.clone()))
                    .collect();
                b.append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), &v[..])))
                    .unwrap();
                let mut h = hdr(T::Regular, data.len() as u64, *mode, (0, 0));
                b.append_data(&mut h, p, &data[..]).unwrap();
            }
            M::Link(p, t) => {
                let mut h = hdr(T::Link, 0, 0o644, (0, 0));
                b.append_link(&mut h, p, t).unwrap();
            }
            M::Sym(p, t) => {
                let mut h = hdr(T::Symlink, 0, 0o777, (0, 0));
                b.append_link(&mut h, p, t).unwrap();
            }
            M::Char(p, maj, min) => {
                let mut h = hdr(T::Char, 0, 0o666, (0, 0));
                h.set_device_major(*maj).unwrap();
                h.set_device_minor(*min).unwrap();
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            M::Fifo(p) => {
                let mut h = hdr(T::Fifo, 0, 0o644, (0, 0));
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            M::Raw(name, data) => {
                let mut h = hdr(T::Regular, data.len() as u64, 0o644, (0, 0));
                let p = std::ffi::OsStr::from_bytes(name);
                b.append_data(&mut h, p, &data[..]).unwrap();
            }
            M::Hostile(name, et, link) => {
                let mut h = hdr(*et, if *et == T::Regular { 1 } else { 0 }, 0o644, (0, 0));
                let n = &mut h.as_old_mut().name;
                n[..name.len()].copy_from_slice(name.as_bytes());
                if let Some(l) = link {
                    let ln = &mut h.as_old_mut().linkname;
                    ln[..l.len()].copy_from_slice(l.as_bytes());
                }
                h.set_cksum();
                let data: &[u8] = if *et == T::Regular { b"x" } else { b"" };
                b.append(&h, data).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

pub fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub struct Layout {
    pub dir: PathBuf,
    index: Vec<Value>,
}

pub struct Built {
    pub manifest: Value,
    pub config_digest: String,
    pub diff_ids: Vec<String>,
}

impl Layout {
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        Self {
            dir: dir.to_path_buf(),
            index: Vec::new(),
        }
    }

    pub fn blob(&self, data: &[u8]) -> (String, u64) {
        let d = sha(data);
        std::fs::write(self.dir.join("blobs/sha256").join(&d[7..]), data).unwrap();
        (d, data.len() as u64)
    }

    /// Writes layers, config and manifest; returns the manifest descriptor.
    pub fn image(
        &self,
        layers: &[(Vec<u8>, Comp)],
        arch: &str,
        variant: Option<&str>,
        cmd: &[&str],
    ) -> Built {
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        for (tar, comp) in layers {
            diff_ids.push(sha(tar));
            let (mt, data) = match comp {
                Comp::None => ("application/vnd.oci.image.layer.v1.tar", tar.clone()),
                Comp::Gzip => {
                    let mut e =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    e.write_all(tar).unwrap();
                    (
                        "application/vnd.oci.image.layer.v1.tar+gzip",
                        e.finish().unwrap(),
                    )
                }
                Comp::Zstd => (
                    "application/vnd.oci.image.layer.v1.tar+zstd",
                    zstd::encode_all(&tar[..], 3).unwrap(),
                ),
            };
            let (d, size) = self.blob(&data);
            descs.push(json!({"mediaType": mt, "digest": d, "size": size}));
        }
        let mut config = json!({
            "created": "2023-11-14T22:13:20Z",
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": cmd, "Env": ["PATH=/bin"], "Labels": {"kiln.test": "1"}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": layers.iter().map(|_| json!({"created": "2023-11-14T22:13:20Z", "created_by": "kiln test"})).collect::<Vec<_>>(),
        });
        if let Some(v) = variant {
            config["variant"] = json!(v);
        }
        let cbytes = serde_json::to_vec(&config).unwrap();
        let (cd, csize) = self.blob(&cbytes);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": csize},
            "layers": descs,
        });
        let mbytes = serde_json::to_vec(&manifest).unwrap();
        let (md, msize) = self.blob(&mbytes);
        let mut platform = json!({"architecture": arch, "os": "linux"});
        if let Some(v) = variant {
            platform["variant"] = json!(v);
        }
        Built {
            manifest: json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": msize, "platform": platform}),
            config_digest: cd,
            diff_ids,
        }
    }

    /// Adds `desc` to index.json under the tag/name `reference`.
    pub fn add(&mut self, mut desc: Value, reference: &str) {
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": reference});
        self.index.push(desc);
    }

    /// Writes an image index blob of `manifests` and adds it as `reference`.
    pub fn add_index(&mut self, manifests: &[Value], reference: &str) -> String {
        let idx = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
        let bytes = serde_json::to_vec(&idx).unwrap();
        let (d, size) = self.blob(&bytes);
        self.add(json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": size}), reference);
        d
    }

    pub fn finish(&self) {
        std::fs::write(
            self.dir.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let idx = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": self.index});
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&idx).unwrap(),
        )
        .unwrap();
    }
}

/// Validates one reference of a layout with skopeo (copies it, which
/// verifies every blob) and returns the copy directory.
pub fn skopeo_validate(layout: &Path, reference: &str, scratch: &Path, all: bool) {
    super::require_tool("skopeo", "skopeo");
    let out = scratch.join(format!("skopeo-{}", reference.replace([':', '/'], "_")));
    let _ = std::fs::remove_dir_all(&out);
    let mut c = Command::new("skopeo");
    c.arg("copy").arg("--quiet");
    if all {
        c.arg("--all");
    }
    c.arg(format!("oci:{}:{reference}", layout.display()))
        .arg(format!("dir:{}", out.display()));
    run(&mut c);
}

/// A docker-save archive of a layout reference, made by skopeo.
pub fn skopeo_docker_archive(layout: &Path, reference: &str, out: &Path, tag: &str) {
    super::require_tool("skopeo", "skopeo");
    let _ = std::fs::remove_file(out);
    run(Command::new("skopeo")
        .arg("copy")
        .arg("--quiet")
        .arg(format!("oci:{}:{reference}", layout.display()))
        .arg(format!("docker-archive:{}:{tag}", out.display())));
}
