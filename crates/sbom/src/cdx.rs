//! CycloneDX 1.5 JSON.
//!
//! Spec: CycloneDX 1.5 JSON schema (`schema/bom-1.5.schema.json` of
//! CycloneDX/specification, <https://cyclonedx.org/docs/1.5/json/>).
//! Containment is expressed by nesting (`components` inside a component,
//! the spec's "assemblies"):
//!
//! | component | `type` | `bom-ref` | nested |
//! |---|---|---|---|
//! | the disk image (`metadata.component`) | `firmware` | `image` | — |
//! | root filesystem | `operating-system` | `os` | its packages (`library`, purl, `os/j`) |
//! | base image (base mode) | `firmware` | `base` | — |
//! | application | `application` | `app` | its container images |
//! | container image *i* | `container` | `container/i` | its packages (`container/i/j`) |
//! | config/boot file *i* | `file` | `file/i` | — |
//!
//! Container images carry their `pkg:oci` purl, manifest digest (SHA-256
//! hash) and `kiln:platform`, `kiln:image-id`, `kiln:tag`, `kiln:layer`
//! properties. The serial number is derived from the image digest.

use crate::util::{oci_purl, package_purl, rfc3339, uuid_from_hex};
use crate::{ContainerImage, Facts, FileRole, PackageSet};
use serde_json::{json, Value};

/// One line about an image's platform and layers (SPDX comment).
pub(crate) fn image_note(img: &ContainerImage) -> String {
    format!(
        "platform {}; image id {}; tags {}; layers (diff IDs, base first) {}",
        img.platform,
        img.image_id,
        if img.tags.is_empty() {
            "none".into()
        } else {
            img.tags.join(" ")
        },
        img.layers.join(" ")
    )
}

fn hashes(hex: &str) -> Value {
    json!([{"alg": "SHA-256", "content": hex}])
}

fn prop(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

fn libraries(set: &PackageSet, parent: &str) -> Vec<Value> {
    set.packages
        .iter()
        .enumerate()
        .map(|(j, p)| {
            let mut c = json!({
                "type": "library",
                "bom-ref": format!("{parent}/{j}"),
                "name": p.name,
                "version": p.version,
                "purl": package_purl(p, set.distro.as_deref()),
            });
            if let Some(l) = &p.license {
                c["licenses"] = json!([{"license": {"name": l}}]);
            }
            c
        })
        .collect()
}

fn container(i: usize, img: &ContainerImage) -> Value {
    let r = format!("container/{i}");
    let name = img
        .names
        .first()
        .cloned()
        .unwrap_or_else(|| img.image_id.clone());
    let mut props = vec![
        prop("kiln:platform", &img.platform),
        prop("kiln:image-id", &img.image_id),
    ];
    props.extend(img.tags.iter().map(|t| prop("kiln:tag", t)));
    props.extend(img.layers.iter().map(|l| prop("kiln:layer", l)));
    if let Some(d) = &img.packages.distro {
        props.push(prop("kiln:distro", d));
    }
    let mut c = json!({
        "type": "container",
        "bom-ref": r,
        "name": name,
        "version": img.manifest_digest,
        "hashes": hashes(img.manifest_digest.trim_start_matches("sha256:")),
        "purl": oci_purl(&name, &img.manifest_digest, &img.platform),
        "properties": props,
    });
    let libs = libraries(&img.packages, &r);
    if !libs.is_empty() {
        c["components"] = Value::Array(libs);
    }
    c
}

/// The CycloneDX 1.5 JSON BOM of `f` (pretty, ends with a newline).
pub fn cyclonedx_json(f: &Facts) -> Vec<u8> {
    let mut components = Vec::new();
    if let Some(os) = &f.os {
        let mut c = json!({
            "type": "operating-system",
            "bom-ref": "os",
            "name": os.pretty_name.as_deref().unwrap_or("root filesystem"),
        });
        if let Some(v) = &os.version {
            c["version"] = json!(v);
        }
        if let Some(d) = &os.distro {
            c["properties"] = json!([prop("kiln:distro", d)]);
        }
        let libs = libraries(os, "os");
        if !libs.is_empty() {
            c["components"] = Value::Array(libs);
        }
        components.push(c);
    }
    if let Some(base) = &f.base {
        components.push(json!({
            "type": "firmware", "bom-ref": "base", "name": base, "description": crate::BASE_NOTE,
        }));
    }
    let containers: Vec<Value> = f
        .images
        .iter()
        .enumerate()
        .map(|(i, img)| container(i, img))
        .collect();
    match &f.app {
        Some(app) => components.push(json!({
            "type": "application", "bom-ref": "app", "name": app, "components": containers,
        })),
        None => components.extend(containers),
    }
    for (i, file) in f.files.iter().enumerate() {
        let mut c = json!({"type": "file", "bom-ref": format!("file/{i}"), "name": file.path});
        let role = match file.role {
            FileRole::Config => "config",
            FileRole::Boot => "boot",
        };
        c["properties"] = json!([prop("kiln:role", role)]);
        match &file.sha256 {
            Some(h) => c["hashes"] = hashes(h),
            None => c["description"] = json!(crate::SECRET_NOTE),
        }
        components.push(c);
    }
    let doc = json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{}", uuid_from_hex(&f.image_sha256)),
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(f.timestamp),
            "tools": {"components": [{"type": "application", "name": "kiln", "version": f.tool_version}]},
            "component": {"type": "firmware", "bom-ref": "image", "name": f.name, "hashes": hashes(&f.image_sha256)},
        },
        "components": components,
    });
    let mut out = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    out.push(b'\n');
    out
}
