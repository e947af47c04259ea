//! Memory stays bounded: a layer holding a 256 MiB file is streamed, not
//! buffered (peak RSS grows by far less than the file).
#![allow(missing_docs)]

use kiln_oci::{ImageInput, Platform, Store, StoreOptions};
use kiln_tree::{Content, Entry, Timestamp, TreeSink};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};

const BIG: u64 = 256 << 20;

fn vm_hwm_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

struct Tee<W: Write>(W, Sha256);
impl<W: Write> Write for Tee<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(b)?;
        self.1.update(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn blob(dir: &std::path::Path, data: &[u8]) -> (String, usize) {
    let d = hex::encode(Sha256::digest(data));
    std::fs::write(dir.join("blobs/sha256").join(&d), data).unwrap();
    (format!("sha256:{d}"), data.len())
}

struct Counting(u64);
impl TreeSink for Counting {
    type Error = std::io::Error;
    fn add(&mut self, _e: &Entry, c: Content<'_>) -> Result<(), Self::Error> {
        if let Content::Stream { reader, .. } = c {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                self.0 += n as u64;
            }
        }
        Ok(())
    }
}

#[test]
fn a_large_layer_streams_in_bounded_memory() {
    let d = tempfile::tempdir().unwrap();
    let l = d.path().join("big.oci");
    std::fs::create_dir_all(l.join("blobs/sha256")).unwrap();
    // The layer: tar -> tee(sha256 = diff id) -> gzip -> file, streamed.
    let tmp = l.join("layer.tmp");
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&tmp).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tee = Tee(gz, Sha256::new());
    {
        let mut b = tar::Builder::new(&mut tee);
        let mut h = tar::Header::new_gnu();
        h.set_size(BIG);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, "big", std::io::repeat(0x5a).take(BIG))
            .unwrap();
        b.finish().unwrap();
    }
    let diff_id = format!("sha256:{}", hex::encode(tee.1.finalize()));
    tee.0.finish().unwrap();
    let mut f = std::fs::File::open(&tmp).unwrap();
    let mut h = Sha256::new();
    let size = std::io::copy(&mut f, &mut h).unwrap();
    let ld = hex::encode(h.finalize());
    std::fs::rename(&tmp, l.join("blobs/sha256").join(&ld)).unwrap();
    let cfg = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}});
    let (cd, cs) = blob(&l, &serde_json::to_vec(&cfg).unwrap());
    let m = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{ld}"), "size": size}]});
    let (md, ms) = blob(&l, &serde_json::to_vec(&m).unwrap());
    std::fs::write(l.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let idx = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "big:1"}}]});
    std::fs::write(l.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();

    let store = Store::open(
        &[ImageInput::new(&l)],
        StoreOptions {
            platform: Platform::parse("linux/amd64").unwrap(),
            time: Timestamp::new(0, 0),
        },
    )
    .unwrap();
    let before = vm_hwm_kib();
    let mut sink = Counting(0);
    let rep = store.feed(&mut sink).unwrap();
    let grown = vm_hwm_kib().saturating_sub(before);
    println!("peak RSS growth while streaming {BIG} bytes: {grown} KiB");
    assert_eq!(sink.0, BIG);
    assert_eq!(rep.layers[0].size, BIG);
    assert!(
        grown < 32 * 1024,
        "peak RSS grew by {grown} KiB while streaming a {BIG}-byte layer"
    );
}
