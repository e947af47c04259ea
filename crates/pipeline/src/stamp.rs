//! Fleet stamping: one built image, many per-device images that differ
//! only in the boot partition's configuration (`kiln stamp`).
//!
//! The devices file ([`read_devices`]) is CSV or JSON, one device per row:
//!
//! * CSV: a header row, then one row per device (RFC 4180 quoting,
//!   `#` comment lines and blank lines skipped). A column is a
//!   `config.json` key; dots nest (`os.network.connectivity.uri`). Cells
//!   `true`/`false` become booleans, every other cell a string, except in
//!   columns whose header ends in `:json`, whose cells are JSON values
//!   (`os.sshKeys:json` = `["ssh-ed25519 …"]`). Empty cells are left out.
//!   Column `name` is the device's output name (default: its hostname);
//!   columns `network.address` (`192.168.1.50/24`), `network.gateway`,
//!   `network.dns` (`;`-separated), `network.interface` and
//!   `network.name` (profile file name, default `static-ip`) describe a
//!   static IPv4 profile.
//! * JSON: an array of objects; `name` and `network` (an object with the
//!   keys above, `dns` a string or an array) as in CSV, every other key
//!   is merged into `config.json` as it is.
//!
//! Every device needs `uuid` (32–62 hex digits) and `hostname`; names and
//! uuids must be unique. The whole file is validated before anything is
//! written, and errors name `file:line`.
//!
//! [`stamp`] writes, into a new output directory (built as a hidden
//! sibling `.<dir>.partial` and renamed into place at the end, removed on
//! error):
//!
//! | file                   | content                                      |
//! |------------------------|----------------------------------------------|
//! | `<name>.img`           | sparse copy of the image, boot partition edited |
//! | `<name>.qcow2`         | (`qcow2-overlay`) qcow2 v3 with the image as raw backing file, holding only the clusters that differ |
//! | `<name>.manifest.json` | source sha256, device name, output sha256, boot partition sha256, changed files, `config.json` with secrets redacted |
//! | `SHA256SUMS`           | `sha256sum -c` lines for every output image   |
//!
//! A device's network profile becomes the NetworkManager keyfile
//! `system-connections/<network.name>` (the same place the recipe's
//! `[network] profiles` go). Secret values (keys containing `key`,
//! `secret`, `token` or `password`, any case, at any depth) never reach
//! the progress lines or the manifests.

use crate::bootedit::{edit_boot_partition, BootEdits};
use crate::Error;
use kiln_fat::FatReader;
use kiln_units::{ReadAt, SubRegion};
use kiln_vdisk::{DiskWriter, Qcow2Options, Qcow2Writer, RawWriter};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

/// Labels that mark a balenaOS boot partition.
pub const BOOT_LABELS: &[&str] = &["resin-boot", "balena-boot", "flash-boot"];

/// What `stamp` writes per device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampFormat {
    /// A full sparse raw image per device.
    Raw,
    /// A qcow2 overlay per device, backed by the source image.
    Qcow2Overlay,
}

impl StampFormat {
    /// `raw` or `qcow2-overlay`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "raw" => Some(Self::Raw),
            "qcow2-overlay" => Some(Self::Qcow2Overlay),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Qcow2Overlay => "qcow2-overlay",
        }
    }
}

/// A static IPv4 NetworkManager profile for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticIp {
    /// Profile (file) name under `system-connections/`.
    pub name: String,
    /// Address with prefix length, e.g. `192.168.1.50/24`.
    pub address: String,
    /// Default gateway.
    pub gateway: Option<String>,
    /// DNS servers.
    pub dns: Vec<String>,
    /// Interface to bind to (`interface-name`), if any.
    pub interface: Option<String>,
}

impl StaticIp {
    /// The NetworkManager keyfile; its connection uuid is derived from
    /// `device_uuid` and the profile name (stable across runs).
    pub fn keyfile(&self, device_uuid: &str) -> Vec<u8> {
        let h = Sha256::digest(format!("kiln-stamp-nm\0{device_uuid}\0{}", self.name));
        let x = hex(&h[..16]);
        let uuid = format!(
            "{}-{}-5{}-a{}-{}",
            &x[..8],
            &x[8..12],
            &x[13..16],
            &x[17..20],
            &x[20..32]
        );
        let mut s = format!(
            "[connection]\nid={}\nuuid={uuid}\ntype=ethernet\nautoconnect=true\n",
            self.name
        );
        if let Some(i) = &self.interface {
            s.push_str(&format!("interface-name={i}\n"));
        }
        s.push_str("\n[ethernet]\n\n[ipv4]\nmethod=manual\n");
        match &self.gateway {
            Some(g) => s.push_str(&format!("address1={},{g}\n", self.address)),
            None => s.push_str(&format!("address1={}\n", self.address)),
        }
        if !self.dns.is_empty() {
            s.push_str(&format!(
                "dns={};\nignore-auto-dns=true\n",
                self.dns.join(";")
            ));
        }
        s.push_str("\n[ipv6]\naddr-gen-mode=stable-privacy\nmethod=auto\n");
        s.into_bytes()
    }
}

/// One row of the devices file.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// Output name (file stem).
    pub name: String,
    /// Line of the devices file the row starts on.
    pub line: usize,
    /// Keys merged into `config.json` (includes `uuid` and `hostname`).
    pub config: Value,
    /// Static IP profile, if any.
    pub network: Option<StaticIp>,
}

/// What [`stamp`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampRequest {
    /// The built raw image (any balenaOS-layout raw image).
    pub image: PathBuf,
    /// The devices file (`.json`: JSON, anything else: CSV).
    pub devices: PathBuf,
    /// Output directory; must not exist or be empty.
    pub out_dir: PathBuf,
    /// Raw images or qcow2 overlays.
    pub format: StampFormat,
    /// Time for new and changed files on the boot partition (Unix seconds).
    pub timestamp: i64,
}

/// One stamped device.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StampedDevice {
    /// Device name.
    pub name: String,
    /// Output image (in the final directory).
    pub output: PathBuf,
    /// sha256 of the output file.
    pub sha256: String,
    /// sha256 of the device's boot partition (as the device will see it).
    pub boot_sha256: String,
    /// The manifest file.
    pub manifest: PathBuf,
    /// Boot partition files created or replaced.
    pub files_changed: Vec<String>,
}

/// What [`stamp`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StampReport {
    /// The output directory.
    pub out_dir: PathBuf,
    /// sha256 of the source image.
    pub source_sha256: String,
    /// The boot partition's number and label.
    pub boot_partition: (u32, String),
    /// Every device, in file order.
    pub devices: Vec<StampedDevice>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn bad_row(file: &Path, line: usize, reason: impl Into<String>) -> Error {
    Error::Image {
        path: PathBuf::from(format!("{}:{line}", file.display())),
        reason: reason.into(),
    }
}

/// Replaces the values of secret-looking keys (names containing `key`,
/// `secret`, `token` or `password`, any case) and kiln's known credential
/// keys at any depth with `<redacted>`.
pub fn redact_secrets(v: &mut Value) {
    kiln_recipe::redact_known(v);
    redact_by_name(v);
}

/// Whether a devices-file column (or nested key) named `k` is secret.
fn secret_name(k: &str) -> bool {
    let l = k.to_ascii_lowercase();
    ["key", "secret", "token", "password"]
        .iter()
        .any(|s| l.contains(s))
}

/// A device's config with its secret keys recorded in it (see
/// [`kiln_recipe::SECRET_RECORD_KEY`]), so that `kiln inspect` of the
/// stamped image redacts them as the stamp manifest does.
fn with_secret_record(config: &Value) -> Value {
    fn walk(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if let Value::Object(o) = v {
            for (k, val) in o {
                at.push(k.clone());
                if secret_name(k) {
                    out.push(at.clone());
                } else {
                    walk(val, at, out);
                }
                at.pop();
            }
        }
    }
    let mut paths = Vec::new();
    walk(config, &mut Vec::new(), &mut paths);
    let mut v = config.clone();
    kiln_recipe::record_secrets(&mut v, &paths);
    v
}

fn redact_by_name(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (k, val) in o.iter_mut() {
                if secret_name(k) {
                    *val = Value::String(kiln_recipe::REDACTED.into());
                } else {
                    redact_by_name(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_by_name),
        _ => {}
    }
}

/// Splits CSV text into records: (line the record starts on, fields).
fn csv_records(text: &str, file: &Path) -> Result<Vec<(usize, Vec<String>)>, Error> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    while chars.peek().is_some() {
        let start = line;
        // Skip blank and comment lines.
        if chars.peek() == Some(&'\n') || chars.peek() == Some(&'\r') {
            if chars.next() == Some('\n') {
                line += 1;
            }
            continue;
        }
        if chars.peek() == Some(&'#') {
            for c in chars.by_ref() {
                if c == '\n' {
                    line += 1;
                    break;
                }
            }
            continue;
        }
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut was_quoted = false;
        loop {
            let Some(c) = chars.next() else {
                if quoted {
                    return Err(bad_row(file, start, "unterminated quoted field"));
                }
                break;
            };
            if quoted {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => quoted = false,
                    '\n' => {
                        line += 1;
                        field.push('\n');
                    }
                    c => field.push(c),
                }
                continue;
            }
            match c {
                '"' if field.is_empty() && !was_quoted => {
                    quoted = true;
                    was_quoted = true;
                }
                '"' => return Err(bad_row(file, line, "stray quote in an unquoted field")),
                ',' => {
                    fields.push(std::mem::take(&mut field));
                    was_quoted = false;
                }
                '\r' if chars.peek() == Some(&'\n') => {}
                '\n' => {
                    line += 1;
                    break;
                }
                c => field.push(c),
            }
        }
        fields.push(field);
        out.push((start, fields));
    }
    Ok(out)
}

/// Sets `path` (dot-separated) in `obj` to `v`.
fn set_path(obj: &mut Map<String, Value>, path: &str, v: Value) -> Result<(), String> {
    let mut parts = path.split('.').peekable();
    let mut cur = obj;
    while let Some(p) = parts.next() {
        if p.is_empty() {
            return Err(format!("column `{path}`: empty key segment"));
        }
        if parts.peek().is_none() {
            if cur.insert(p.to_owned(), v).is_some() {
                return Err(format!("column `{path}` given twice"));
            }
            return Ok(());
        }
        let next = cur
            .entry(p.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        cur = next
            .as_object_mut()
            .ok_or_else(|| format!("column `{path}`: `{p}` is both a value and an object"))?;
    }
    Ok(())
}

fn parse_ipv4(s: &str, what: &str) -> Result<Ipv4Addr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{what} {s:?} is not an IPv4 address"))
}

fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn network_from(fields: &Map<String, Value>) -> Result<StaticIp, String> {
    let get = |k: &str| -> Result<Option<String>, String> {
        match fields.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(_) if k == "dns" => Ok(None),
            Some(_) => Err(format!("network.{k} must be a string")),
        }
    };
    if let Some(k) = fields
        .keys()
        .find(|k| !["address", "gateway", "dns", "interface", "name"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown network key `{k}` (known: address, gateway, dns, interface, name)"
        ));
    }
    let address = get("address")?.ok_or("network needs `address` (e.g. 192.168.1.50/24)")?;
    let (ip, prefix) = address
        .split_once('/')
        .ok_or_else(|| format!("network.address {address:?} needs a prefix length (/24)"))?;
    parse_ipv4(ip, "network.address")?;
    if prefix.parse::<u8>().map_or(true, |p| p > 32) {
        return Err(format!(
            "network.address {address:?}: prefix must be 0..=32"
        ));
    }
    let gateway = get("gateway")?;
    if let Some(g) = &gateway {
        parse_ipv4(g, "network.gateway")?;
    }
    let dns: Vec<String> = match fields.get("dns") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .ok_or("network.dns entries must be strings".to_owned())
            })
            .collect::<Result<_, _>>()?,
        _ => get("dns")?
            .map(|s| {
                s.split([';', ','])
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    };
    for d in &dns {
        parse_ipv4(d, "network.dns")?;
    }
    let interface = get("interface")?;
    if let Some(i) = &interface {
        if !is_safe_name(i) || i.len() > 15 {
            return Err(format!("network.interface {i:?} is not an interface name"));
        }
    }
    let name = get("name")?.unwrap_or_else(|| "static-ip".into());
    if !is_safe_name(&name) {
        return Err(format!(
            "network.name {name:?}: use letters, digits, '.', '_', '-'"
        ));
    }
    Ok(StaticIp {
        name,
        address,
        gateway,
        dns,
        interface,
    })
}

/// Builds a device from its fields (`name`, `network`, config keys).
fn device_from(mut obj: Map<String, Value>, line: usize) -> Result<Device, String> {
    let name = match obj.remove("name") {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err("`name` must be a string".into()),
    };
    let network = match obj.remove("network") {
        None => None,
        Some(Value::Object(n)) => Some(network_from(&n)?),
        Some(_) => return Err("`network` must be an object".into()),
    };
    let uuid = match obj.get("uuid") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("`uuid` must be a string".into()),
        None => return Err("missing `uuid`".into()),
    };
    if !(32..=62).contains(&uuid.len()) || !uuid.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "`uuid` must be 32 to 62 hex digits, got {} characters",
            uuid.len()
        ));
    }
    let hostname = match obj.get("hostname") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("`hostname` must be a string".into()),
        None => return Err("missing `hostname`".into()),
    };
    let ok = !hostname.is_empty()
        && hostname.len() <= 63
        && hostname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !hostname.starts_with('-');
    if !ok {
        return Err(format!("`hostname` {hostname:?} is not a valid host name"));
    }
    let name = name.unwrap_or_else(|| hostname.clone());
    if !is_safe_name(&name) {
        return Err(format!(
            "device name {name:?}: use letters, digits, '.', '_', '-'"
        ));
    }
    Ok(Device {
        name,
        line,
        config: Value::Object(obj),
        network,
    })
}

fn csv_devices(text: &str, file: &Path) -> Result<Vec<Device>, Error> {
    let records = csv_records(text, file)?;
    let Some((hline, header)) = records.first() else {
        return Err(bad_row(file, 1, "empty devices file"));
    };
    let mut cols: Vec<(String, bool)> = Vec::new();
    for h in header {
        let h = h.trim();
        let (key, is_json) = match h.strip_suffix(":json") {
            Some(k) => (k, true),
            None => (h, false),
        };
        if key.is_empty() {
            return Err(bad_row(file, *hline, "empty column name in the header"));
        }
        if cols.iter().any(|(k, _)| k == key) {
            return Err(bad_row(
                file,
                *hline,
                format!("column `{key}` appears twice"),
            ));
        }
        cols.push((key.to_owned(), is_json));
    }
    for need in ["uuid", "hostname"] {
        if !cols.iter().any(|(k, _)| k == need) {
            return Err(bad_row(file, *hline, format!("missing column `{need}`")));
        }
    }
    let mut out = Vec::new();
    for (line, fields) in &records[1..] {
        if fields.len() != cols.len() {
            return Err(bad_row(
                file,
                *line,
                format!("{} fields, the header has {}", fields.len(), cols.len()),
            ));
        }
        let mut obj = Map::new();
        for ((key, is_json), cell) in cols.iter().zip(fields) {
            if cell.is_empty() {
                continue;
            }
            let v = if *is_json {
                serde_json::from_str(cell).map_err(|e| {
                    bad_row(
                        file,
                        *line,
                        format!("column `{key}:json`: invalid JSON: {e}"),
                    )
                })?
            } else {
                match cell.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    s => Value::String(s.to_owned()),
                }
            };
            set_path(&mut obj, key, v).map_err(|r| bad_row(file, *line, r))?;
        }
        out.push(device_from(obj, *line).map_err(|r| bad_row(file, *line, r))?);
    }
    Ok(out)
}

/// Lines on which the top-level array's elements start.
fn element_lines(text: &str) -> Vec<usize> {
    let (mut line, mut depth, mut in_str, mut esc) = (1usize, 0i32, false, false);
    let mut out = Vec::new();
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '[' | '{' => {
                if depth == 1 {
                    out.push(line);
                }
                depth += 1;
            }
            ']' | '}' => depth -= 1,
            _ => {}
        }
    }
    out
}

fn json_devices(text: &str, file: &Path) -> Result<Vec<Device>, Error> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| bad_row(file, e.line(), format!("invalid JSON: {e}")))?;
    let Value::Array(items) = v else {
        return Err(bad_row(file, 1, "expected a JSON array of device objects"));
    };
    let lines = element_lines(text);
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let line = lines.get(i).copied().unwrap_or(1);
        let Value::Object(obj) = item else {
            return Err(bad_row(
                file,
                line,
                format!("device {} is not an object", i + 1),
            ));
        };
        out.push(device_from(obj, line).map_err(|r| bad_row(file, line, r))?);
    }
    Ok(out)
}

/// Reads and validates the devices file (see the module doc).
///
/// # Errors
/// [`Error::Image`] whose path is `file:line` for the first problem:
/// syntax, a missing `uuid`/`hostname` column or value, invalid values,
/// duplicate device names or uuids, no devices at all.
pub fn read_devices(path: &Path) -> Result<Vec<Device>, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Output {
        path: path.to_path_buf(),
        op: "reading the devices file",
        source,
    })?;
    let text = devices_text(&bytes, path)?;
    let devices = if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        json_devices(text, path)?
    } else {
        csv_devices(text, path)?
    };
    if devices.is_empty() {
        return Err(bad_row(path, 1, "no devices"));
    }
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut uuids: BTreeMap<String, usize> = BTreeMap::new();
    for d in &devices {
        if let Some(first) = names.insert(d.name.to_ascii_lowercase(), d.line) {
            return Err(bad_row(
                path,
                d.line,
                format!("duplicate device name {:?} (first on line {first})", d.name),
            ));
        }
        let u = d.config["uuid"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if let Some(first) = uuids.insert(u, d.line) {
            return Err(bad_row(
                path,
                d.line,
                format!("duplicate uuid (first on line {first})"),
            ));
        }
    }
    Ok(devices)
}

/// The devices file as text: UTF-8 (bad input otherwise, naming the line
/// of the first invalid byte), without the byte order mark spreadsheet
/// programs put first ("CSV UTF-8" in Excel and LibreOffice).
fn devices_text<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a str, Error> {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(body).map_err(|e| {
        let valid = body.get(..e.valid_up_to()).unwrap_or_default();
        let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
        bad_row(
            path,
            line,
            format!(
                "not UTF-8 text (invalid byte at offset {}); save it as UTF-8",
                e.valid_up_to() + (bytes.len() - body.len())
            ),
        )
    })
}

/// The boot partition: (number, label, start, size).
fn find_boot(image: &File, path: &Path) -> Result<(u32, String, u64, u64), Error> {
    let table = kiln_part::read_table(image).map_err(Error::Table)?;
    for p in &table.partitions {
        let region = SubRegion::new(image, p.start_bytes, p.size_bytes);
        let Ok(r) = FatReader::open(region) else {
            continue;
        };
        if let Ok(Some(label)) = r.volume_label() {
            if BOOT_LABELS.contains(&label.as_str()) {
                return Ok((p.number, label, p.start_bytes, p.size_bytes));
            }
        }
    }
    Err(Error::Image {
        path: path.to_path_buf(),
        reason: format!(
            "no boot partition: no FAT partition labelled {}",
            BOOT_LABELS.join(", ")
        ),
    })
}

fn out_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Output {
        path: path.to_path_buf(),
        op,
        source,
    }
}

fn vdisk_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(kiln_vdisk::Error) -> Error + 'a {
    move |e| Error::Output {
        path: path.to_path_buf(),
        op,
        source: io::Error::from(e),
    }
}

/// sha256 of `len` bytes at `start` of `r`, 1 MiB at a time.
fn sha256_region<R: ReadAt + ?Sized>(r: &R, start: u64, len: u64) -> io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let n = usize::try_from((len - done).min(buf.len() as u64)).unwrap_or(buf.len());
        r.read_exact_at(&mut buf[..n], start + done)?;
        h.update(&buf[..n]);
        done += n as u64;
    }
    Ok(hex(&h.finalize()))
}

/// sha256 of a whole (sparse) file: data regions are read, holes are
/// hashed as zeros without reading them.
fn sha256_sparse(f: &File) -> io::Result<String> {
    use kiln_vdisk::DataRegions;
    static ZEROS: [u8; 1 << 16] = [0; 1 << 16];
    let len = f.metadata()?.len();
    let mut h = Sha256::new();
    let zeros = |h: &mut Sha256, mut n: u64| {
        while n > 0 {
            let k = n.min(ZEROS.len() as u64);
            h.update(&ZEROS[..usize::try_from(k).unwrap_or(0)]);
            n -= k;
        }
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < len {
        let Some(ext) = f.next_data(pos)? else {
            break;
        };
        zeros(&mut h, ext.offset.saturating_sub(pos));
        let end = ext.offset.saturating_add(ext.len).min(len);
        let mut at = ext.offset;
        while at < end {
            let n = usize::try_from((end - at).min(buf.len() as u64)).unwrap_or(buf.len());
            FileExt::read_exact_at(f, &mut buf[..n], at)?;
            h.update(&buf[..n]);
            at += n as u64;
        }
        pos = end.max(pos);
    }
    zeros(&mut h, len.saturating_sub(pos));
    Ok(hex(&h.finalize()))
}

/// `target` relative to directory `base` (both absolute, canonical).
fn relative(base: &Path, target: &Path) -> PathBuf {
    let b: Vec<Component> = base.components().collect();
    let t: Vec<Component> = target.components().collect();
    let common = b.iter().zip(&t).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

/// The hidden directory `kiln stamp -o DIR` writes into before it is
/// renamed to `DIR` (`.DIR.partial` beside it): what an interrupted stamp
/// leaves, removed by the next stamp into `DIR` or on SIGINT/SIGTERM.
pub fn partial_dir(out_dir: &Path) -> PathBuf {
    let name = out_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out_dir.with_file_name(format!(".{name}.partial"))
}

/// Stamps every device of `req.devices` from `req.image` into
/// `req.out_dir` (see the module doc). `progress` gets one line per
/// device, without secret values.
///
/// # Errors
/// Devices file problems ([`read_devices`]), an image without a boot
/// partition or partition table, boot partition edits that do not fit,
/// an output directory that exists and is not empty, I/O. Nothing is left
/// behind on error.
pub fn stamp(req: &StampRequest, progress: &mut dyn FnMut(&str)) -> Result<StampReport, Error> {
    let devices = read_devices(&req.devices)?;
    let image = File::open(&req.image).map_err(out_err(&req.image, "opening the image"))?;
    let size = image.metadata().map_err(out_err(&req.image, "stat"))?.len();
    let (number, label, start, psize) = find_boot(&image, &req.image)?;
    crate::outpath::check_dir_target(&req.out_dir)?;
    if req.out_dir.exists() {
        let empty = std::fs::read_dir(&req.out_dir)
            .map_err(out_err(&req.out_dir, "reading the output directory"))?
            .next()
            .is_none();
        if !empty {
            return Err(Error::Image {
                path: req.out_dir.clone(),
                reason: "output directory exists and is not empty".into(),
            });
        }
    }
    let dir_name = req.out_dir.file_name().ok_or_else(|| Error::Image {
        path: req.out_dir.clone(),
        reason: "output directory needs a name".into(),
    })?;
    let parent = match req.out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let parent = parent
        .canonicalize()
        .map_err(out_err(&parent, "resolving the output directory's parent"))?;
    let final_dir = parent.join(dir_name);
    let partial = partial_dir(&final_dir);
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .map_err(out_err(&partial, "removing a stale partial directory"))?;
    }
    std::fs::create_dir(&partial).map_err(out_err(&partial, "creating"))?;
    let r = stamp_into(
        req,
        &devices,
        &image,
        size,
        (number, &label, start, psize),
        &partial,
        &final_dir,
        progress,
    );
    match r {
        Ok(mut report) => {
            if req.out_dir.exists() {
                std::fs::remove_dir(&req.out_dir).map_err(out_err(
                    &req.out_dir,
                    "replacing the empty output directory",
                ))?;
            }
            std::fs::rename(&partial, &final_dir)
                .map_err(out_err(&final_dir, "renaming into place"))?;
            report.out_dir = final_dir;
            Ok(report)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            Err(e)
        }
    }
}

const OVERLAY_CLUSTER: u64 = 64 * 1024;

#[allow(clippy::too_many_arguments)]
fn stamp_into(
    req: &StampRequest,
    devices: &[Device],
    image: &File,
    size: u64,
    boot: (u32, &str, u64, u64),
    partial: &Path,
    final_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<StampReport, Error> {
    let (number, label, start, psize) = boot;
    progress(&format!(
        "source {}: boot partition {number} ({label}), {} devices",
        req.image.display(),
        devices.len()
    ));
    let source_sha256 = sha256_sparse(image).map_err(out_err(&req.image, "hashing the image"))?;
    let image_abs = req
        .image
        .canonicalize()
        .map_err(out_err(&req.image, "resolving the image path"))?;
    let backing = relative(final_dir, &image_abs);
    let mut sums = String::new();
    let mut out = Vec::new();
    for d in devices {
        let mut files = Vec::new();
        if let Some(n) = &d.network {
            let uuid = d.config["uuid"].as_str().unwrap_or_default();
            files.push((format!("system-connections/{}", n.name), n.keyfile(uuid)));
        }
        let edits = BootEdits {
            config_merge: Some(with_secret_record(&d.config)),
            files,
            remove: Vec::new(),
        };
        let (file_name, rep, boot_sha256) = match req.format {
            StampFormat::Raw => {
                let file_name = format!("{}.img", d.name);
                let path = partial.join(&file_name);
                let f = File::options()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(out_err(&path, "creating"))?;
                let mut w = RawWriter::new(f.try_clone().map_err(out_err(&path, "opening"))?, size);
                kiln_vdisk::feed_sparse_file(image, &mut w)
                    .map_err(vdisk_err(&path, "copying the image"))?;
                w.finish().map_err(vdisk_err(&path, "copying the image"))?;
                let rep = edit_boot_partition(&f, start, psize, &edits, req.timestamp)?;
                let boot_sha =
                    sha256_region(&f, start, psize).map_err(out_err(&path, "hashing"))?;
                (file_name, rep, boot_sha)
            }
            StampFormat::Qcow2Overlay => {
                let file_name = format!("{}.qcow2", d.name);
                let path = partial.join(&file_name);
                let scratch_path = partial.join(format!(".{}.scratch", d.name));
                let scratch = File::options()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&scratch_path)
                    .map_err(out_err(&scratch_path, "creating"))?;
                let r = overlay(
                    image,
                    &scratch,
                    size,
                    (start, psize),
                    &edits,
                    req.timestamp,
                    &path,
                    &backing,
                );
                drop(scratch);
                let _ = std::fs::remove_file(&scratch_path);
                let (rep, boot_sha) = r?;
                (file_name, rep, boot_sha)
            }
        };
        let path = partial.join(&file_name);
        let f = File::open(&path).map_err(out_err(&path, "opening"))?;
        let sha = sha256_sparse(&f).map_err(out_err(&path, "hashing"))?;
        sums.push_str(&format!("{sha}  {file_name}\n"));
        let mut config = rep.config.clone();
        redact_secrets(&mut config);
        let mut output = json!({
            "file": file_name,
            "format": req.format.name(),
            "sha256": sha,
        });
        if req.format == StampFormat::Qcow2Overlay {
            output["backing_file"] = json!(backing.to_string_lossy());
            output["backing_format"] = json!("raw");
        }
        let manifest = json!({
            "kiln_stamp_manifest": 1,
            "device": d.name,
            "source_image": {
                "path": req.image.to_string_lossy(),
                "sha256": source_sha256,
            },
            "output": output,
            "boot_partition": {
                "number": number,
                "label": label,
                "start_bytes": start,
                "size_bytes": psize,
                "fs": rep.fs,
                "fs_id": rep.fs_id,
                "sha256": boot_sha256,
            },
            "files_changed": rep.files_changed,
            "network_profile": d.network.as_ref().map(|n| n.name.clone()),
            "config": config,
        });
        let manifest_name = format!("{}.manifest.json", d.name);
        let mpath = partial.join(&manifest_name);
        let mut bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Image {
            path: mpath.clone(),
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        std::fs::write(&mpath, bytes).map_err(out_err(&mpath, "writing"))?;
        progress(&format!(
            "{}: {} ({} boot files changed, sha256 {})",
            d.name,
            file_name,
            rep.files_changed.len(),
            &sha[..16]
        ));
        out.push(StampedDevice {
            name: d.name.clone(),
            output: final_dir.join(&file_name),
            sha256: sha,
            boot_sha256,
            manifest: final_dir.join(manifest_name),
            files_changed: rep.files_changed,
        });
    }
    let sums_path = partial.join("SHA256SUMS");
    std::fs::write(&sums_path, sums).map_err(out_err(&sums_path, "writing"))?;
    Ok(StampReport {
        out_dir: final_dir.to_path_buf(),
        source_sha256,
        boot_partition: (number, label.to_owned()),
        devices: out,
    })
}

/// Edits the boot partition on a sparse scratch copy of its cluster
/// window, then writes the clusters that differ from the image as a qcow2
/// overlay backed by it. Returns the edit report and the boot sha256.
#[allow(clippy::too_many_arguments)]
fn overlay(
    image: &File,
    scratch: &File,
    size: u64,
    (start, psize): (u64, u64),
    edits: &BootEdits,
    time: i64,
    path: &Path,
    backing: &Path,
) -> Result<(crate::BootEditReport, String), Error> {
    scratch
        .set_len(size)
        .map_err(out_err(path, "sizing the scratch file"))?;
    let ws = start / OVERLAY_CLUSTER * OVERLAY_CLUSTER;
    let we = (start + psize)
        .div_ceil(OVERLAY_CLUSTER)
        .saturating_mul(OVERLAY_CLUSTER)
        .min(size);
    let mut a = vec![0u8; OVERLAY_CLUSTER as usize];
    let mut b = vec![0u8; OVERLAY_CLUSTER as usize];
    let mut off = ws;
    while off < we {
        let n = usize::try_from((we - off).min(OVERLAY_CLUSTER)).unwrap_or(a.len());
        FileExt::read_exact_at(image, &mut a[..n], off)
            .map_err(out_err(path, "reading the image"))?;
        if a[..n].iter().any(|&x| x != 0) {
            FileExt::write_all_at(scratch, &a[..n], off)
                .map_err(out_err(path, "writing the scratch file"))?;
        }
        off += n as u64;
    }
    let rep = edit_boot_partition(scratch, start, psize, edits, time)?;
    let boot_sha = sha256_region(scratch, start, psize).map_err(out_err(path, "hashing"))?;
    let f = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(out_err(path, "creating"))?;
    let name = backing.to_string_lossy();
    let opts = Qcow2Options::new().backing_file(&name, "raw");
    let mut w = Qcow2Writer::new(f, size, &opts).map_err(vdisk_err(path, "writing the overlay"))?;
    let mut off = ws;
    while off < we {
        let n = usize::try_from((we - off).min(OVERLAY_CLUSTER)).unwrap_or(a.len());
        FileExt::read_exact_at(image, &mut a[..n], off)
            .map_err(out_err(path, "reading the image"))?;
        FileExt::read_exact_at(scratch, &mut b[..n], off)
            .map_err(out_err(path, "reading the scratch file"))?;
        if a[..n] != b[..n] {
            w.write_extent(off, &b[..n])
                .map_err(vdisk_err(path, "writing the overlay"))?;
        }
        off += n as u64;
    }
    w.finish().map_err(vdisk_err(path, "writing the overlay"))?;
    Ok((rep, boot_sha))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(name);
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    const U1: &str = "0123456789abcdef0123456789abcdef";
    const U2: &str = "fedcba9876543210fedcba9876543210";

    /// Issue 16 finding 16: spreadsheet programs save "CSV UTF-8" with a
    /// byte order mark; non-UTF-8 is bad input (exit 2), not an I/O error.
    #[test]
    fn csv_with_bom_reads_and_non_utf8_is_bad_input() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("devices.csv");
        let mut bytes = b"\xEF\xBB\xBFuuid,hostname\n".to_vec();
        bytes.extend_from_slice(format!("{U1},host-1\n").as_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let devs = read_devices(&p).unwrap();
        assert_eq!(devs[0].config["hostname"], json!("host-1"));
        let mut latin1 = format!("uuid,hostname\n{U1},h\n").into_bytes();
        latin1.extend_from_slice(b"x\xE9");
        std::fs::write(&p, &latin1).unwrap();
        let e = read_devices(&p).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("devices.csv:3") && msg.contains("offset 50"),
            "{msg}"
        );
    }

    #[test]
    fn csv_nesting_types_quotes_and_network() {
        let text = format!(
            "# fleet\nname,uuid,hostname,deviceApiKey,os.network.wifi,os.sshKeys:json,note,network.address,network.gateway,network.dns\n\
             dev-1,{U1},host-1,s3cret,false,\"[\"\"ssh-ed25519 AAA\"\"]\",\"a, \"\"quoted\"\"\nnote\",10.0.0.5/24,10.0.0.1,1.1.1.1;8.8.8.8\n\r\n\
             ,{U2},host-2,,,,,,,\n"
        );
        let (_d, p) = write("devices.csv", &text);
        let devs = read_devices(&p).unwrap();
        assert_eq!(devs.len(), 2);
        let a = &devs[0];
        assert_eq!((a.name.as_str(), a.line), ("dev-1", 3));
        assert_eq!(a.config["os"]["network"]["wifi"], json!(false));
        assert_eq!(a.config["os"]["sshKeys"], json!(["ssh-ed25519 AAA"]));
        assert_eq!(a.config["note"], json!("a, \"quoted\"\nnote"));
        let n = a.network.as_ref().unwrap();
        assert_eq!(n.dns, vec!["1.1.1.1", "8.8.8.8"]);
        let kf = String::from_utf8(n.keyfile(U1)).unwrap();
        assert!(kf.contains("address1=10.0.0.5/24,10.0.0.1\n"), "{kf}");
        assert!(kf.contains("dns=1.1.1.1;8.8.8.8;\n"), "{kf}");
        assert_eq!(n.keyfile(U1), n.keyfile(U1));
        let b = &devs[1];
        assert_eq!((b.name.as_str(), b.line), ("host-2", 6));
        assert!(b.network.is_none());
        assert_eq!(b.config, json!({"uuid": U2, "hostname": "host-2"}));
    }

    #[test]
    fn json_devices_with_lines() {
        let text = format!(
            "[\n  {{\"uuid\": \"{U1}\", \"hostname\": \"a\", \"supervisor\": {{\"x\": 1}}}},\n  {{\"uuid\": \"{U2}\",\n   \"hostname\": \"b\", \"network\": {{\"address\": \"192.168.0.9/16\", \"dns\": [\"9.9.9.9\"]}}}}\n]\n"
        );
        let (_d, p) = write("devices.json", &text);
        let devs = read_devices(&p).unwrap();
        assert_eq!(devs[0].line, 2);
        assert_eq!(devs[1].line, 3);
        assert_eq!(devs[0].config["supervisor"]["x"], json!(1));
        assert_eq!(devs[1].network.as_ref().unwrap().dns, vec!["9.9.9.9"]);
    }

    fn err(name: &str, text: &str) -> String {
        let (_d, p) = write(name, text);
        let e = read_devices(&p).unwrap_err().to_string();
        e.replace(&p.display().to_string(), name)
    }

    #[test]
    fn bad_devices_name_file_and_line() {
        assert!(err("d.csv", "hostname\nx\n").starts_with("d.csv:1: missing column `uuid`"));
        assert!(err("d.csv", &format!("uuid\n{U1}\n"))
            .starts_with("d.csv:1: missing column `hostname`"));
        let e = err("d.csv", &format!("uuid,hostname\n{U1},a\n{U2},a\n"));
        assert!(e.starts_with("d.csv:3: duplicate device name"), "{e}");
        let e = err("d.csv", &format!("uuid,hostname\n{U1},a\n{U1},b\n"));
        assert!(e.starts_with("d.csv:3: duplicate uuid"), "{e}");
        let e = err("d.csv", &format!("uuid,hostname,x:json\n{U1},a,{{bad\n"));
        assert!(
            e.starts_with("d.csv:2: column `x:json`: invalid JSON"),
            "{e}"
        );
        let e = err("d.csv", &format!("uuid,hostname\n{U1},a,extra\n"));
        assert!(e.starts_with("d.csv:2: 3 fields"), "{e}");
        let e = err("d.csv", "uuid,hostname\nxyz,a\n");
        assert!(e.starts_with("d.csv:2: `uuid` must be"), "{e}");
        let e = err(
            "d.csv",
            &format!("uuid,hostname,network.address\n{U1},a,10.0.0.1\n"),
        );
        assert!(e.contains("prefix length"), "{e}");
        let e = err("d.json", "[{\"uuid\": 1}");
        assert!(e.starts_with("d.json:1: invalid JSON"), "{e}");
        let e = err("d.json", &format!("[\n{{\"uuid\": \"{U1}\"}}\n]"));
        assert!(e.starts_with("d.json:2: missing `hostname`"), "{e}");
        assert!(err("d.csv", "uuid,hostname\n").contains("no devices"));
    }

    #[test]
    fn sparse_hash_equals_plain_hash() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(9 << 20).unwrap();
        FileExt::write_all_at(&f, &[7u8; 5000], 3 << 20).unwrap();
        FileExt::write_all_at(&f, b"end", (9 << 20) - 3).unwrap();
        let mut all = vec![0u8; 9 << 20];
        FileExt::read_exact_at(&f, &mut all, 0).unwrap();
        assert_eq!(sha256_sparse(&f).unwrap(), hex(&Sha256::digest(&all)));
        f.set_len(10 << 20).unwrap(); // trailing hole
        all.resize(10 << 20, 0);
        assert_eq!(sha256_sparse(&f).unwrap(), hex(&Sha256::digest(&all)));
        assert_eq!(
            sha256_region(&f, 0, 10 << 20).unwrap(),
            hex(&Sha256::digest(&all))
        );
    }

    #[test]
    fn redaction_and_relative_paths() {
        let mut v = json!({"apiKey": "a", "os": {"sshKeys": ["k"], "x": 1}, "registryToken": "t", "list": [{"password": "p"}], "uuid": "u"});
        redact_secrets(&mut v);
        let s = v.to_string();
        for secret in ["\"a\"", "\"k\"", "\"t\"", "\"p\""] {
            assert!(!s.contains(secret), "{s}");
        }
        assert_eq!(v["uuid"], json!("u"));
        assert_eq!(
            relative(Path::new("/a/b/out"), Path::new("/a/img.raw")),
            PathBuf::from("../../img.raw")
        );
        assert_eq!(
            relative(Path::new("/a"), Path::new("/a/x/i")),
            PathBuf::from("x/i")
        );
    }
}
