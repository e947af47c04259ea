//! A short summary of a CycloneDX BOM kiln wrote (`kiln inspect --sbom`).

use crate::Error;
use serde_json::Value;

/// What a BOM lists, in numbers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// The image the BOM describes.
    pub image: String,
    /// The root filesystem's name and package count.
    pub os: Option<(String, usize)>,
    /// Base-image mode: the base image.
    pub base: Option<String>,
    /// Each container image: name, manifest digest, platform, layer count,
    /// package count.
    pub images: Vec<(String, String, String, usize, usize)>,
    /// Configuration files listed.
    pub config_files: usize,
    /// Boot and firmware files listed.
    pub boot_files: usize,
}

fn s(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn nested(v: &Value) -> &[Value] {
    v.get("components")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn props<'a>(v: &'a Value, name: &'a str) -> impl Iterator<Item = String> + 'a {
    v.get("properties")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |p| p.get("name").and_then(Value::as_str) == Some(name))
        .map(|p| s(p, "value"))
}

/// Summarizes CycloneDX JSON bytes.
pub fn summarize(bytes: &[u8]) -> Result<Summary, Error> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| Error::NotSbom {
        reason: e.to_string(),
    })?;
    if v.get("bomFormat").and_then(Value::as_str) != Some("CycloneDX") {
        return Err(Error::NotSbom {
            reason: "no `bomFormat: CycloneDX`".into(),
        });
    }
    let mut sum = Summary {
        image: s(&v["metadata"]["component"], "name"),
        os: None,
        base: None,
        images: Vec::new(),
        config_files: 0,
        boot_files: 0,
    };
    let mut containers = Vec::new();
    for c in nested(&v) {
        match c.get("type").and_then(Value::as_str).unwrap_or_default() {
            "operating-system" => sum.os = Some((s(c, "name"), nested(c).len())),
            "firmware" => sum.base = Some(s(c, "name")),
            "application" => containers.extend(nested(c)),
            "container" => containers.push(c),
            "file" => match props(c, "kiln:role").next().as_deref() {
                Some("config") => sum.config_files += 1,
                _ => sum.boot_files += 1,
            },
            _ => {}
        }
    }
    for c in containers {
        sum.images.push((
            s(c, "name"),
            s(c, "version"),
            props(c, "kiln:platform").next().unwrap_or_default(),
            props(c, "kiln:layer").count(),
            nested(c).len(),
        ));
    }
    Ok(sum)
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "sbom of {}", self.image)?;
        match &self.os {
            Some((name, n)) => writeln!(f, "  os: {name}: {n} packages")?,
            None => writeln!(f, "  os: not listed")?,
        }
        if let Some(b) = &self.base {
            writeln!(f, "  base image: {b} (its contents not listed)")?;
        }
        for (name, digest, platform, layers, packages) in &self.images {
            writeln!(
                f,
                "  image {name}@{digest}: {platform}, {layers} layers, {packages} packages"
            )?;
        }
        write!(
            f,
            "  files: {} config, {} boot",
            self.config_files, self.boot_files
        )
    }
}
