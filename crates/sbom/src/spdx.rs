//! SPDX 2.3 JSON.
//!
//! Spec: SPDX Specification 2.3 (<https://spdx.github.io/spdx-spec/v2.3/>),
//! JSON schema `schemas/spdx-schema.json` of spdx/spdx-spec v2.3. What
//! kiln writes:
//!
//! | element | SPDXID | notes |
//! |---|---|---|
//! | the disk image | `SPDXRef-Image` | purpose `FIRMWARE`, SHA256 of the raw image; the document `DESCRIBES` it |
//! | root filesystem | `SPDXRef-OS` | purpose `OPERATING-SYSTEM`; image `CONTAINS` it |
//! | OS package *j* | `SPDXRef-OS-Pkg-j` | purl external ref; OS `CONTAINS` it |
//! | base image (base mode) | `SPDXRef-Base` | image `CONTAINS` it |
//! | application | `SPDXRef-App` | purpose `APPLICATION`; image `CONTAINS` it |
//! | container image *i* | `SPDXRef-Container-i` | purpose `CONTAINER`, `pkg:oci` purl, SHA256 = manifest digest, platform and layers in `comment`; app `CONTAINS` it |
//! | its package *j* | `SPDXRef-Container-i-Pkg-j` | container `CONTAINS` it |
//! | config/boot file *i* | `SPDXRef-File-i` | a package of purpose `FILE` (SPDX files must carry a SHA1, packages need not), SHA256 |
//!
//! Licenses are stated as the databases give them (free text), so each is
//! a `LicenseRef-` declared in `hasExtractedLicensingInfos`.

use crate::util::{oci_purl, package_purl, pct, rfc3339, uuid_from_hex};
use crate::{Facts, FileRole, PackageSet};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Licenses seen, free text to `LicenseRef-` id, in first-seen order.
#[derive(Default)]
struct Licenses {
    ids: BTreeMap<String, String>,
    order: Vec<(String, String)>,
}

impl Licenses {
    fn id(&mut self, text: &str) -> String {
        if let Some(id) = self.ids.get(text) {
            return id.clone();
        }
        let clean: String = text
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let mut id = format!("LicenseRef-{clean}");
        if self.order.iter().any(|(i, _)| *i == id) {
            id = format!("{id}-{}", self.order.len());
        }
        self.ids.insert(text.to_string(), id.clone());
        self.order.push((id.clone(), text.to_string()));
        id
    }
}

fn package(id: &str, name: &str, version: Option<&str>) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("SPDXID".into(), json!(id));
    m.insert("name".into(), json!(name));
    if let Some(v) = version.filter(|v| !v.is_empty()) {
        m.insert("versionInfo".into(), json!(v));
    }
    m.insert("downloadLocation".into(), json!("NOASSERTION"));
    m.insert("filesAnalyzed".into(), json!(false));
    m
}

fn contains(a: &str, b: &str) -> Value {
    json!({"spdxElementId": a, "relationshipType": "CONTAINS", "relatedSpdxElement": b})
}

/// The packages of `set` under the element `parent` (ids `parent-Pkg-j`).
fn set_packages(
    set: &PackageSet,
    parent: &str,
    lic: &mut Licenses,
    packages: &mut Vec<Value>,
    rels: &mut Vec<Value>,
) {
    for (j, p) in set.packages.iter().enumerate() {
        let id = format!("{parent}-Pkg-{j}");
        let mut m = package(&id, &p.name, Some(&p.version));
        if let Some(l) = &p.license {
            m.insert("licenseDeclared".into(), json!(lic.id(l)));
        }
        m.insert(
            "externalRefs".into(),
            json!([{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": package_purl(p, set.distro.as_deref()),
            }]),
        );
        packages.push(Value::Object(m));
        rels.push(contains(parent, &id));
    }
}

fn sha256(hex: &str) -> Value {
    json!([{"algorithm": "SHA256", "checksumValue": hex}])
}

/// The SPDX 2.3 JSON document of `f` (pretty, ends with a newline).
pub fn spdx_json(f: &Facts) -> Vec<u8> {
    let mut lic = Licenses::default();
    let mut packages = Vec::new();
    let mut rels = vec![
        json!({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-Image"}),
    ];
    let mut image = package("SPDXRef-Image", &f.name, None);
    image.insert("checksums".into(), sha256(&f.image_sha256));
    image.insert("primaryPackagePurpose".into(), json!("FIRMWARE"));
    packages.push(Value::Object(image));
    if let Some(os) = &f.os {
        let name = os.pretty_name.as_deref().unwrap_or("root filesystem");
        let mut m = package("SPDXRef-OS", name, os.version.as_deref());
        m.insert("primaryPackagePurpose".into(), json!("OPERATING-SYSTEM"));
        packages.push(Value::Object(m));
        rels.push(contains("SPDXRef-Image", "SPDXRef-OS"));
        set_packages(os, "SPDXRef-OS", &mut lic, &mut packages, &mut rels);
    }
    if let Some(base) = &f.base {
        let mut m = package("SPDXRef-Base", base, None);
        m.insert("comment".into(), json!(crate::BASE_NOTE));
        packages.push(Value::Object(m));
        rels.push(contains("SPDXRef-Image", "SPDXRef-Base"));
    }
    if let Some(app) = &f.app {
        let mut m = package("SPDXRef-App", app, None);
        m.insert("primaryPackagePurpose".into(), json!("APPLICATION"));
        packages.push(Value::Object(m));
        rels.push(contains("SPDXRef-Image", "SPDXRef-App"));
    }
    for (i, img) in f.images.iter().enumerate() {
        let id = format!("SPDXRef-Container-{i}");
        let name = img
            .names
            .first()
            .cloned()
            .unwrap_or_else(|| img.image_id.clone());
        let mut m = package(&id, &name, Some(&img.manifest_digest));
        let hex = img.manifest_digest.trim_start_matches("sha256:");
        m.insert("checksums".into(), sha256(hex));
        m.insert("primaryPackagePurpose".into(), json!("CONTAINER"));
        m.insert("comment".into(), json!(crate::cdx::image_note(img)));
        let refs: Vec<Value> = img
            .names
            .iter()
            .map(|n| json!({"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": oci_purl(n, &img.manifest_digest, &img.platform)}))
            .collect();
        m.insert("externalRefs".into(), Value::Array(refs));
        packages.push(Value::Object(m));
        rels.push(contains(
            if f.app.is_some() {
                "SPDXRef-App"
            } else {
                "SPDXRef-Image"
            },
            &id,
        ));
        set_packages(&img.packages, &id, &mut lic, &mut packages, &mut rels);
    }
    for (i, file) in f.files.iter().enumerate() {
        let id = format!("SPDXRef-File-{i}");
        let mut m = package(&id, &file.path, None);
        match &file.sha256 {
            Some(h) => {
                m.insert("checksums".into(), sha256(h));
            }
            None => {
                m.insert("comment".into(), json!(crate::SECRET_NOTE));
            }
        }
        m.insert("primaryPackagePurpose".into(), json!("FILE"));
        let role = match file.role {
            FileRole::Config => "configuration injected by kiln",
            FileRole::Boot => "boot or firmware file",
        };
        m.insert("description".into(), json!(role));
        packages.push(Value::Object(m));
        rels.push(contains("SPDXRef-Image", &id));
    }
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f.name,
        "documentNamespace": format!("https://spdx.kiln.invalid/{}-{}", pct(&f.name), uuid_from_hex(&f.image_sha256)),
        "creationInfo": {
            "created": rfc3339(f.timestamp),
            "creators": [format!("Tool: kiln-{}", f.tool_version)],
        },
        "packages": packages,
        "relationships": rels,
    });
    if !lic.order.is_empty() {
        let infos: Vec<Value> = lic
            .order
            .iter()
            .map(|(id, text)| json!({"licenseId": id, "name": text, "extractedText": text}))
            .collect();
        doc["hasExtractedLicensingInfos"] = Value::Array(infos);
    }
    let mut out = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    out.push(b'\n');
    out
}
