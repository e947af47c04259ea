//! Tree sources of untrusted archives: tar (kiln-tree: plain, gzip, xz,
//! zstd; ustar, GNU, PAX) and container images (kiln-oci: OCI image
//! layout index/manifest/config JSON, `docker save` manifest.json, their
//! layer tars; the data partition's repositories.json and apps.json).

use std::path::Path;

use kiln_oci::{ImageInput, Platform, Store, StoreOptions};
use kiln_tree::tar_source::{decompress, feed_tar};
use kiln_tree::{SourceOptions, Timestamp};

use super::drain::{drain, HasCounts};
use super::outcome::{bucket, err_sig, mix};
use crate::target::Target;
use crate::template;

fn tar(data: &[u8]) -> u64 {
    let reader = match decompress(data) {
        Ok(r) => r,
        Err(e) => return err_sig(&e),
    };
    let mut sink = drain();
    let r = feed_tar(
        reader,
        Path::new("fuzz.tar"),
        &SourceOptions::default(),
        &mut sink,
    );
    let (n, b) = sink.counts();
    mix(
        r.map_or_else(|e| err_sig(&e), |()| 1),
        bucket(n) ^ bucket(b) << 8,
    )
}

/// Tar source (kiln-tree).
pub const TAR: Target = Target {
    name: "tar",
    invariant: "tar, tar.gz, tar.xz, tar.zst (ustar, GNU long names and sparse, PAX records and \
                xattrs, hardlinks), every member streamed to the end: no panic, no hang, memory \
                bounded; sizes past the partition are refused before reading",
    run: tar,
};

fn oci(data: &[u8]) -> u64 {
    let Ok(dir) = super::scratch::scratch() else {
        return 0;
    };
    let files = match template::materialize(data, &dir) {
        Ok(n) => n,
        Err(e) => return mix(2, err_sig(&e)),
    };
    let Ok(platform) = Platform::parse("linux/amd64") else {
        return 0;
    };
    let opts = StoreOptions {
        platform,
        time: Timestamp::new(1_700_000_000, 0),
    };
    let store = match Store::open(&[ImageInput::new(&dir).named("fuzz/app")], opts) {
        Ok(s) => s,
        Err(e) => return mix(bucket(files), err_sig(&e)),
    };
    let mut h = bucket(store.images().len() as u64);
    for img in store.images() {
        h = mix(h, bucket(img.layer_count() as u64));
        let _ = (img.digest_refs(), img.chain_ids(), img.config_bytes().len());
    }
    let _ = (
        store.references(),
        store.repositories_json(),
        store.summary(),
    );
    let mut sink = drain();
    let fed = store.feed(&mut sink);
    if let (Err(e), Some(_)) = (&fed, std::env::var_os("KILN_FUZZ_DEBUG")) {
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            eprintln!("  caused by: {s}");
            src = s.source();
        }
    }
    h = mix(
        h,
        fed.map_or_else(|e| err_sig(&e), |r| bucket(r.layers.len() as u64)),
    );
    let (n, b) = sink.counts();
    mix(h, bucket(n) ^ bucket(b) << 8)
}

/// OCI image layouts and docker-save archives (kiln-oci).
pub const OCI: Target = Target {
    name: "oci",
    invariant: "OCI index/manifest/config JSON and docker-save manifest.json (digests and sizes \
                kept consistent by the template, see template.rs), layers verified and streamed: no \
                panic, no hang, memory bounded",
    run: oci,
};

fn oci_inspect_json(data: &[u8]) -> u64 {
    let a = kiln_oci::parse_repositories_json(data)
        .map_or_else(|e| err_sig(&e), |m| bucket(m.len() as u64));
    let b =
        kiln_oci::parse_apps_json(data).map_or_else(|e| err_sig(&e), |v| bucket(v.len() as u64));
    mix(a, b)
}

/// The engine's repositories.json and the supervisor's apps.json, as
/// `kiln inspect` reads them from a data partition (kiln-oci).
pub const OCI_INSPECT_JSON: Target = Target {
    name: "oci-inspect-json",
    invariant:
        "repositories.json and apps.json from an image's data partition: no panic, no hang, \
                memory bounded",
    run: oci_inspect_json,
};
