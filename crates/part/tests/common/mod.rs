//! Shared helpers for the validator-driven tests: running the real tools
//! (failing with the Debian package name when one is missing), sparse
//! image files, the board layouts of DESIGN.md, and a parser for
//! `sfdisk -d`.
#![allow(dead_code, missing_docs)]

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use kiln_part::{gpt_types, Extended, Gpt, GptPartition, Mbr, MbrPartition, MbrType};
use kiln_units::Guid;

pub const MIB: u64 = 1 << 20;
/// An "8 GB" eMMC / USB stick: 8,000,000,000 bytes = 15,625,000 sectors.
pub const DISK_8GB: u64 = 8_000_000_000;

/// Runs `tool args...`; a missing tool fails the test naming its Debian
/// package. Returns (stdout, stderr, success).
pub fn run(tool: &str, args: &[&str]) -> (String, String, bool) {
    let package = match tool {
        "sfdisk" | "fdisk" => "fdisk",
        "sgdisk" => "gdisk",
        "blkid" | "partx" => "util-linux",
        _ => "?",
    };
    let out = kiln_testkit::run(
        kiln_testkit::command(tool, package)
            .args(args)
            .env("LC_ALL", "C"),
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

/// Like [`run`] but the tool must succeed; returns stdout.
pub fn run_ok(tool: &str, args: &[&str]) -> String {
    let (o, e, ok) = run(tool, args);
    assert!(ok, "{tool} {args:?} failed:\n{o}\n{e}");
    o
}

/// A sparse file of `size` bytes in `dir`.
pub fn sparse(dir: &Path, name: &str, size: u64) -> (PathBuf, File) {
    let path = dir.join(name);
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    f.set_len(size).unwrap();
    (path, f)
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The balenaOS MBR layout of DESIGN.md: boot at 4 MiB (40 MiB, active),
/// rootA/rootB of `root_mib`, extended to the end of the disk, state
/// 20 MiB and data (rest, or `data_mib`) as logical partitions each 4 MiB
/// after its EBR.
pub fn balena_mbr(
    signature: u32,
    boot_type: MbrType,
    root_mib: u64,
    disk: u64,
    data_mib: Option<u64>,
) -> Mbr {
    let boot = 4 * MIB;
    let root_a = boot + 40 * MIB;
    let root_b = root_a + root_mib * MIB;
    let ext = root_b + root_mib * MIB;
    let state = ext + 4 * MIB;
    let data = state + 20 * MIB + 4 * MIB;
    let data_size = data_mib.map_or(disk - data, |m| m * MIB);
    let ext_size = data_mib.map_or(disk - ext, |_| data + data_size - ext);
    let mut mbr = Mbr::new(signature).align(4 * MIB);
    mbr.push_primary(MbrPartition::new("resin-boot", boot_type, boot, 40 * MIB).bootable(true))
        .push_primary(MbrPartition::new(
            "resin-rootA",
            MbrType::LINUX,
            root_a,
            root_mib * MIB,
        ))
        .push_primary(MbrPartition::new(
            "resin-rootB",
            MbrType::LINUX,
            root_b,
            root_mib * MIB,
        ))
        .push_extended(
            Extended::new(ext, ext_size, 4 * MIB)
                .logical(MbrPartition::new(
                    "resin-state",
                    MbrType::LINUX,
                    state,
                    20 * MIB,
                ))
                .logical(MbrPartition::new(
                    "resin-data",
                    MbrType::LINUX,
                    data,
                    data_size,
                )),
        );
    mbr
}

pub fn guid(n: u8) -> Guid {
    Guid::v4_from_seed([n; 16])
}

/// The nuc-gpt layout: ESP 40 MiB at 4 MiB, rootA/rootB 1000 MiB, state
/// 20 MiB (p4), data to the last usable LBA (p5); names = labels.
pub fn nuc_gpt(disk: u64) -> Gpt {
    let last_usable_end = (disk / 512 - 33) * 512;
    let mut gpt = Gpt::new(guid(0xd1)).align(4 * MIB);
    let lf = gpt_types::LINUX_FILESYSTEM;
    gpt.push(GptPartition::new(
        "resin-boot",
        gpt_types::EFI_SYSTEM,
        guid(1),
        4 * MIB,
        40 * MIB,
    ))
    .push(GptPartition::new(
        "resin-rootA",
        lf,
        guid(2),
        44 * MIB,
        1000 * MIB,
    ))
    .push(GptPartition::new(
        "resin-rootB",
        lf,
        guid(3),
        1044 * MIB,
        1000 * MIB,
    ))
    .push(GptPartition::new(
        "resin-state",
        lf,
        guid(4),
        2044 * MIB,
        20 * MIB,
    ))
    .push(GptPartition::new(
        "resin-data",
        lf,
        guid(5),
        2064 * MIB,
        last_usable_end - 2064 * MIB,
    ));
    gpt
}

/// One partition line of `sfdisk -d`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpLine {
    pub number: u32,
    pub start: u64,
    pub size: u64,
    pub fields: BTreeMap<String, String>,
    pub bootable: bool,
}

/// `sfdisk -d` as (header key/values, partition lines).
pub fn sfdisk_dump(img: &Path) -> (BTreeMap<String, String>, Vec<DumpLine>) {
    let out = run_ok("sfdisk", &["-d", s(img)]);
    let mut header = BTreeMap::new();
    let mut parts = Vec::new();
    for line in out.lines() {
        if let Some((dev, rest)) = line.split_once(" : ") {
            let number: u32 = dev
                .trim()
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let mut fields = BTreeMap::new();
            let mut bootable = false;
            for f in split_fields(rest) {
                match f.split_once('=') {
                    Some((k, v)) => {
                        fields.insert(k.trim().to_string(), unescape(v.trim().trim_matches('"')));
                    }
                    None if f.trim() == "bootable" => bootable = true,
                    None => panic!("unexpected field {f:?} in {line:?}"),
                }
            }
            parts.push(DumpLine {
                number,
                start: fields["start"].parse().unwrap(),
                size: fields["size"].parse().unwrap(),
                fields,
                bootable,
            });
        } else if let Some((k, v)) = line.split_once(": ") {
            header.insert(k.to_string(), v.to_string());
        }
    }
    (header, parts)
}

/// Undoes sfdisk's `\xHH` escaping of non-ASCII name bytes.
fn unescape(v: &str) -> String {
    let mut bytes = Vec::new();
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 3 < b.len() {
            bytes.push(u8::from_str_radix(&v[i + 2..i + 4], 16).unwrap());
            i += 4;
        } else {
            bytes.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(bytes).unwrap()
}

/// Splits `a=1, name="x, y", b` at commas outside quotes.
fn split_fields(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c)
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// `partx --show` rows as NR -> (START, SECTORS, UUID, NAME), using
/// key="value" pairs output.
pub fn partx(img: &Path) -> BTreeMap<u32, (u64, u64, String, String)> {
    let out = run_ok(
        "partx",
        &["--pairs", "-o", "NR,START,SECTORS,UUID,NAME", s(img)],
    );
    let mut rows = BTreeMap::new();
    for line in out.lines() {
        let mut kv = BTreeMap::new();
        for f in line.split("\" ") {
            let (k, v) = f.split_once("=\"").unwrap();
            kv.insert(k.to_string(), v.trim_end_matches('"').to_string());
        }
        rows.insert(
            kv["NR"].parse().unwrap(),
            (
                kv["START"].parse().unwrap(),
                kv["SECTORS"].parse().unwrap(),
                kv["UUID"].clone(),
                kv["NAME"].clone(),
            ),
        );
    }
    rows
}

/// `blkid -p` of the whole image as key -> value.
pub fn blkid(img: &Path) -> BTreeMap<String, String> {
    let out = run_ok("blkid", &["-p", "-o", "export", s(img)]);
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
