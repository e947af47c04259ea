//! Text formats: bmap XML (kiln-artifact), recipe and board profile TOML
//! (kiln-recipe), the stamp devices file, CSV or JSON (kiln-pipeline's
//! public `read_devices`).

use std::io::Write as _;
use std::path::Path;

use kiln_artifact::bmap::Bmap;
use kiln_recipe::{Arch, BoardProfile, Recipe};
use sha2::{Digest as _, Sha256};

use super::outcome::{bucket, err_sig, mix};
use crate::target::Target;

const OPEN: &[u8] = b"<BmapFileChecksum>";
const CLOSE: &[u8] = b"</BmapFileChecksum>";

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Recomputes `<BmapFileChecksum>` when it holds 64 characters, as
/// bmaptool does (the value's first occurrence zeroed, the file hashed),
/// so mutations reach the parser behind the check.
fn fix_checksum(doc: &mut [u8]) {
    let Some(a) = find(doc, OPEN).map(|a| a + OPEN.len()) else {
        return;
    };
    let Some(len) = find(&doc[a..], CLOSE) else {
        return;
    };
    let value = doc[a..a + len].trim_ascii().to_vec();
    if value.len() != 64 {
        return;
    }
    let Some(at) = find(doc, &value) else { return };
    doc[at..at + 64].fill(b'0');
    let hex: String = Sha256::digest(&*doc)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    doc[at..at + 64].copy_from_slice(hex.as_bytes());
}

fn bmap(data: &[u8]) -> u64 {
    let mut doc = data.to_vec();
    fix_checksum(&mut doc);
    match Bmap::parse(&doc) {
        Ok(b) => {
            let mut h = mix(bucket(b.image_size()), u64::from(b.block_size()));
            h = mix(
                h,
                bucket(b.ranges().len() as u64) ^ bucket(b.mapped_bytes()) << 8,
            );
            for r in b.ranges().iter().take(64) {
                let (start, end) = b.byte_range(r.blocks);
                assert!(
                    start <= end && end <= b.image_size(),
                    "range {start}..{end} outside the image"
                );
            }
            let back = Bmap::parse(b.to_xml().as_bytes());
            assert!(
                back.is_ok(),
                "a parsed bmap does not parse back from its own XML: {back:?}"
            );
            h
        }
        Err(e) => err_sig(&e),
    }
}

/// bmap XML reader (kiln-artifact).
pub const BMAP: Target = Target {
    name: "bmap",
    invariant: "bmap XML 1.4/2.0 (the file checksum recomputed so the rest is reached): no panic, \
                no hang, memory bounded; accepted ranges lie inside the image and the bmap written \
                back parses",
    run: bmap,
};

fn recipe(data: &[u8]) -> u64 {
    let Ok(text) = std::str::from_utf8(data) else {
        return 1;
    };
    // A directory that does not exist: relative inputs resolve nowhere.
    match Recipe::from_toml_str(text, Path::new("/nonexistent/kiln-fuzz/recipe.toml")) {
        Ok(r) => [Arch::Amd64, Arch::Armhf, Arch::Arm64]
            .iter()
            .fold(2, |h, &a| {
                mix(h, r.os_for(a).map_or_else(|e| err_sig(&e), |_| 3))
            }),
        Err(e) => err_sig(&e),
    }
}

/// Recipe TOML (kiln-recipe).
pub const RECIPE: Target = Target {
    name: "recipe",
    invariant: "recipe TOML to validated types, errors located by line: no panic, no hang, memory \
                bounded",
    run: recipe,
};

fn profile(data: &[u8]) -> u64 {
    let Ok(text) = std::str::from_utf8(data) else {
        return 1;
    };
    match BoardProfile::from_toml_str(text, Path::new("/nonexistent/kiln-fuzz/board.toml")) {
        Ok(p) => mix(2, bucket(p.partitions.len() as u64)),
        Err(e) => err_sig(&e),
    }
}

/// Board profile TOML (kiln-recipe).
pub const PROFILE: Target = Target {
    name: "profile",
    invariant: "board profile TOML to validated types: no panic, no hang, memory bounded",
    run: profile,
};

fn devices(data: &[u8]) -> u64 {
    let Ok(dir) = super::scratch::scratch() else {
        return 0;
    };
    // JSON when it starts like JSON, else CSV: the parser picks by the
    // file name's extension.
    let json = data
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'[' || b == b'{');
    let path = dir.join(if json { "devices.json" } else { "devices.csv" });
    let written = std::fs::File::create(&path).and_then(|mut f| f.write_all(data));
    if written.is_err() {
        return 0;
    }
    match kiln_pipeline::read_devices(&path) {
        Ok(devs) => devs
            .iter()
            .fold(mix(u64::from(json), bucket(devs.len() as u64)), |h, d| {
                let kf = d
                    .network
                    .as_ref()
                    .map_or(0, |n| bucket(n.keyfile("0123abcd").len() as u64));
                mix(h, kf ^ u64::from(d.config.is_object()) << 8)
            }),
        Err(e) => mix(u64::from(json), err_sig(&e)),
    }
}

/// Stamp devices file (kiln-pipeline `read_devices`).
pub const DEVICES: Target = Target {
    name: "devices",
    invariant:
        "stamp devices file, CSV (quoting, BOM, columns) or JSON: no panic, no hang, memory \
                bounded",
    run: devices,
};
