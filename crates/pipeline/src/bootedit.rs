//! Editing the boot partition of an existing image in place: merge keys
//! into `config.json`, put or remove files, keep everything else.
//!
//! The FAT volume is rebuilt with [`kiln_fat::rebuild`] (same geometry,
//! label, serial number and FAT type; untouched files keep their bytes,
//! attributes and times; see that module for the boot-sector fields kept).
//! Reading and writing the same region at once is unsafe, so the new
//! volume is written to a scratch region appended past the end of the
//! disk file (sparse, so it costs no space until written), copied back
//! into the partition in 1 MiB chunks, and the file is cut back to its
//! size, on success and on error alike. Chunks that are zero in the new
//! volume and already zero in the image are not written, so a sparse
//! image stays sparse. Memory: one chunk plus the FAT writer's buffers.
//!
//! `config.json` is parsed, [`merge_json`]'d with the requested keys and
//! written back pretty-printed with a trailing newline (as kiln's builds
//! write it); a boot partition without one gets a new one.

use crate::work::{At, Workspace};
use crate::Error;
use kiln_fat::{FatEdits, FatReader, FatType};
use kiln_tree::Timestamp;
use kiln_units::SubRegion;
use serde_json::Value;
use std::fs::File;
use std::io;
use std::path::PathBuf;

/// The changes to make to a boot partition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BootEdits {
    /// Deep-merged over the existing `config.json` (objects merged key by
    /// key, other values replaced; the file is created if missing).
    /// `None`: `config.json` is left as it is.
    pub config_merge: Option<Value>,
    /// Files to create or replace: slash-separated path from the
    /// partition root (e.g. `system-connections/static-eth0`), content.
    pub files: Vec<(String, Vec<u8>)>,
    /// Files or directories to remove (they must exist).
    pub remove: Vec<String>,
}

/// What [`edit_boot_partition`] did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BootEditReport {
    /// The `config.json` now on the partition, secrets included (redact
    /// before printing or recording it); `Null` if there is none.
    pub config: Value,
    /// Paths created or replaced, sorted.
    pub files_changed: Vec<String>,
    /// Paths removed, sorted.
    pub files_removed: Vec<String>,
    /// `fat16` or `fat32`.
    pub fs: &'static str,
    /// Volume serial number as `XXXX-XXXX` (kept from the source).
    pub fs_id: String,
    /// The volume label (kept from the source).
    pub label: Option<String>,
    /// Bytes of file content on the new volume.
    pub used_bytes: u64,
}

/// Merges `over` into `base`: where both are objects, key by key
/// (recursively); anywhere else `over` replaces `base`.
///
/// ```
/// use serde_json::json;
/// let mut base = json!({"a": 1, "os": {"sshKeys": ["x"], "udevRules": {}}});
/// kiln_pipeline::merge_json(&mut base, &json!({"b": 2, "os": {"sshKeys": ["y"]}}));
/// assert_eq!(base, json!({"a": 1, "b": 2, "os": {"sshKeys": ["y"], "udevRules": {}}}));
/// ```
pub fn merge_json(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) => merge_json(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Copy-back chunk size.
const CHUNK: u64 = 1 << 20;
/// Largest `config.json` read back.
const CONFIG_LIMIT: u64 = 16 << 20;

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Output {
        path: PathBuf::from("<image>"),
        op,
        source,
    }
}

/// Edits the FAT boot partition at `start_bytes`..`+size_bytes` of `disk`
/// (opened for reading and writing) in place. New and replaced files get
/// `time` (Unix seconds); the rest keep their times.
///
/// # Errors
/// [`Error::Fat`] when the partition is not a FAT16/FAT32 volume, a
/// removed path does not exist, or the result does not fit;
/// [`Error::Image`] when merging into an existing `config.json` that is
/// not a JSON object;
/// [`Error::Output`] on I/O errors. The disk file's length is restored in
/// every case; on an error during the copy-back the partition may be
/// partly rewritten.
pub fn edit_boot_partition(
    disk: &File,
    start_bytes: u64,
    size_bytes: u64,
    edits: &BootEdits,
    time: i64,
) -> Result<BootEditReport, Error> {
    edit_boot_in(disk, start_bytes, size_bytes, edits, time)
}

/// [`edit_boot_partition`] on any [`Workspace`] (a base build's
/// copy-on-write disk).
pub(crate) fn edit_boot_in<D: Workspace + ?Sized>(
    disk: &D,
    start_bytes: u64,
    size_bytes: u64,
    edits: &BootEdits,
    time: i64,
) -> Result<BootEditReport, Error> {
    let disk_len = disk.len().map_err(io_err("stat"))?;
    if start_bytes
        .checked_add(size_bytes)
        .is_none_or(|e| e > disk_len)
    {
        return Err(Error::Layout {
            partition: "boot".into(),
            reason: format!(
                "boot partition {start_bytes}+{size_bytes} bytes lies outside the {disk_len}-byte image"
            ),
        });
    }
    let scratch = disk_len.div_ceil(CHUNK) * CHUNK;
    let r = edit_via_scratch(disk, start_bytes, size_bytes, scratch, edits, time);
    // Cut the scratch region off again, whatever happened.
    let cut = disk
        .set_len(disk_len)
        .map_err(io_err("truncating the scratch region"));
    let report = r?;
    cut?;
    Ok(report)
}

fn edit_via_scratch<D: Workspace + ?Sized>(
    disk: &D,
    start: u64,
    size: u64,
    scratch: u64,
    edits: &BootEdits,
    time: i64,
) -> Result<BootEditReport, Error> {
    let src = SubRegion::new(At(disk), start, size);
    let reader = FatReader::open(&src).map_err(fat_err)?;
    let label = reader.volume_label().map_err(fat_err)?;
    let partition = label.clone().unwrap_or_else(|| "boot".into());
    let fat = |source| Error::Fat {
        partition: partition.clone(),
        source,
    };
    let mut fat_edits = FatEdits::new();
    let mut config = match reader.read_file("config.json", CONFIG_LIMIT) {
        // An unparsable config.json only matters when merging into it.
        Ok(bytes) if edits.config_merge.is_some() => Some(parse_config(&bytes, &partition)?),
        Ok(bytes) => parse_config(&bytes, &partition).ok(),
        Err(kiln_fat::Error::NotFound { .. }) => None,
        Err(e) => return Err(fat(e)),
    };
    drop(reader);
    if let Some(over) = &edits.config_merge {
        let mut merged = config
            .take()
            .unwrap_or_else(|| Value::Object(Default::default()));
        // The secret records of the image and of the merged keys add up
        // (a plain merge would let the new list replace the old).
        let recorded = kiln_recipe::recorded_secrets(&merged);
        merge_json(&mut merged, over);
        kiln_recipe::record_secrets(&mut merged, &recorded);
        let mut bytes = serde_json::to_vec_pretty(&merged).map_err(|e| Error::Image {
            path: PathBuf::from(format!("{partition}/config.json")),
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        fat_edits.put("config.json", bytes);
        config = Some(merged);
    }
    for (path, data) in &edits.files {
        fat_edits.put(path, data.clone());
    }
    for path in &edits.remove {
        fat_edits.remove(path);
    }
    let dst = SubRegion::new(At(disk), scratch, size);
    let rep = kiln_fat::rebuild(&src, dst, &fat_edits, Timestamp::new(time, 0)).map_err(fat)?;
    copy_back(disk, scratch, start, size)?;
    let params = kiln_fat::volume_params(&src).map_err(fat)?;
    let mut files_changed: Vec<String> = rep.replaced.iter().chain(&rep.added).cloned().collect();
    files_changed.sort();
    let mut files_removed = rep.removed.clone();
    files_removed.sort();
    Ok(BootEditReport {
        config: config.unwrap_or(Value::Null),
        files_changed,
        files_removed,
        fs: match rep.fat.fat_type {
            FatType::Fat32 => "fat32",
            _ => "fat16",
        },
        fs_id: format!(
            "{:04X}-{:04X}",
            params.volume_id >> 16,
            params.volume_id & 0xffff
        ),
        label,
        used_bytes: rep.fat.file_bytes,
    })
}

fn fat_err(source: kiln_fat::Error) -> Error {
    Error::Fat {
        partition: "boot".into(),
        source,
    }
}

fn parse_config(bytes: &[u8], partition: &str) -> Result<Value, Error> {
    let bad = |reason: String| Error::Image {
        path: PathBuf::from(format!("{partition}/config.json")),
        reason,
    };
    let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    if !v.is_object() {
        return Err(bad("not a JSON object".into()));
    }
    Ok(v)
}

/// Copies `size` bytes from `from` to `to` inside `disk`, skipping chunks
/// that are zero on both sides.
fn copy_back<D: Workspace + ?Sized>(disk: &D, from: u64, to: u64, size: u64) -> Result<(), Error> {
    let mut buf = vec![0u8; CHUNK as usize];
    let mut old = vec![0u8; CHUNK as usize];
    let mut done = 0u64;
    while done < size {
        let n = usize::try_from((size - done).min(CHUNK)).unwrap_or(buf.len());
        let (new, cur) = (&mut buf[..n], &mut old[..n]);
        disk.read_at(new, from + done)
            .map_err(io_err("reading the new boot partition"))?;
        if new.iter().all(|&b| b == 0) {
            disk.read_at(cur, to + done)
                .map_err(io_err("reading the old boot partition"))?;
            if cur.iter().all(|&b| b == 0) {
                done += n as u64;
                continue;
            }
        }
        disk.write_at(new, to + done)
            .map_err(io_err("writing the boot partition"))?;
        done += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_fat::{FatOptions, FatWriter};
    use kiln_tree::{Content, Entry, EntryKind, Metadata, TreePath, TreeSink};
    use serde_json::json;
    use std::os::unix::fs::FileExt;

    /// A 1 MiB gap, a 16 MiB FAT16 boot partition, 1 MiB after it.
    fn disk(config: Option<&[u8]>) -> File {
        let f = tempfile::tempfile().unwrap();
        f.set_len(18 << 20).unwrap();
        let t = Timestamp::new(1_600_000_000, 0);
        let mut img = Vec::new();
        let mut w = FatWriter::new(
            &mut img,
            16 << 20,
            FatOptions::new(0xABCD_0123, t).volume_label("resin-boot"),
        )
        .unwrap();
        let m = Metadata::new(0o644, t);
        if let Some(c) = config {
            w.add(
                &Entry::new(
                    TreePath::parse(b"config.json").unwrap(),
                    EntryKind::File,
                    m.clone(),
                ),
                Content::bytes(c),
            )
            .unwrap();
        }
        w.add(
            &Entry::new(TreePath::parse(b"kernel.img").unwrap(), EntryKind::File, m),
            Content::bytes(&[9u8; 70000]),
        )
        .unwrap();
        w.finish().unwrap();
        FileExt::write_all_at(&f, &img, 1 << 20).unwrap();
        FileExt::write_all_at(&f, b"TAIL", 17 << 20).unwrap();
        f
    }

    fn read(f: &File, path: &str) -> Vec<u8> {
        let r = FatReader::open(SubRegion::new(At(f), 1 << 20, 16 << 20)).unwrap();
        r.read_file(path, 1 << 20).unwrap()
    }

    #[test]
    fn merges_config_and_puts_files_in_place() {
        let f = disk(Some(
            br#"{"deviceType":"nuc","os":{"sshKeys":["a"],"x":1}}"#,
        ));
        let edits = BootEdits {
            config_merge: Some(json!({"uuid": "ab", "os": {"sshKeys": ["b"]}})),
            files: vec![("system-connections/eth0".into(), b"[connection]\n".to_vec())],
            remove: vec![],
        };
        let rep = edit_boot_partition(&f, 1 << 20, 16 << 20, &edits, 1_700_000_000).unwrap();
        let want = json!({"deviceType":"nuc","uuid":"ab","os":{"sshKeys":["b"],"x":1}});
        assert_eq!(rep.config, want);
        assert_eq!(
            rep.files_changed,
            vec!["config.json", "system-connections/eth0"]
        );
        assert_eq!(rep.fs, "fat16");
        assert_eq!(rep.fs_id, "ABCD-0123");
        assert_eq!(rep.label.as_deref(), Some("resin-boot"));
        let got: Value = serde_json::from_slice(&read(&f, "config.json")).unwrap();
        assert_eq!(got, want);
        assert_eq!(read(&f, "kernel.img"), vec![9u8; 70000]);
        assert_eq!(read(&f, "system-connections/eth0"), b"[connection]\n");
        // Size restored; bytes outside the partition untouched.
        assert_eq!(f.metadata().unwrap().len(), 18 << 20);
        let mut tail = [0u8; 4];
        FileExt::read_exact_at(&f, &mut tail, 17 << 20).unwrap();
        assert_eq!(&tail, b"TAIL");
    }

    #[test]
    fn creates_config_and_refuses_bad_ones() {
        let f = disk(None);
        let edits = BootEdits {
            config_merge: Some(json!({"hostname": "h"})),
            ..Default::default()
        };
        let rep = edit_boot_partition(&f, 1 << 20, 16 << 20, &edits, 0).unwrap();
        assert_eq!(rep.config, json!({"hostname": "h"}));
        assert_eq!(read(&f, "config.json"), b"{\n  \"hostname\": \"h\"\n}\n");

        let f = disk(Some(b"[1,2]"));
        assert!(matches!(
            edit_boot_partition(&f, 1 << 20, 16 << 20, &edits, 0),
            Err(Error::Image { .. })
        ));
        let f = disk(Some(b"{nope"));
        assert!(matches!(
            edit_boot_partition(&f, 1 << 20, 16 << 20, &edits, 0),
            Err(Error::Image { .. })
        ));
        assert_eq!(f.metadata().unwrap().len(), 18 << 20);
        // Not FAT at all; outside the disk.
        assert!(matches!(
            edit_boot_partition(&f, 0, 1 << 20, &edits, 0),
            Err(Error::Fat { .. })
        ));
        assert!(matches!(
            edit_boot_partition(&f, 1 << 20, 32 << 20, &edits, 0),
            Err(Error::Layout { .. })
        ));
        let f = disk(Some(b"{}"));
        let gone = BootEdits {
            remove: vec!["nope".into()],
            ..Default::default()
        };
        assert!(matches!(
            edit_boot_partition(&f, 1 << 20, 16 << 20, &gone, 0),
            Err(Error::Fat { .. })
        ));
        assert_eq!(f.metadata().unwrap().len(), 18 << 20);
    }

    #[test]
    fn deterministic() {
        let edits = BootEdits {
            config_merge: Some(json!({"uuid": "0011"})),
            ..Default::default()
        };
        let a = disk(Some(b"{}"));
        let b = disk(Some(b"{}"));
        edit_boot_partition(&a, 1 << 20, 16 << 20, &edits, 5).unwrap();
        edit_boot_partition(&b, 1 << 20, 16 << 20, &edits, 5).unwrap();
        let mut x = vec![0u8; 18 << 20];
        let mut y = vec![0u8; 18 << 20];
        FileExt::read_exact_at(&a, &mut x, 0).unwrap();
        FileExt::read_exact_at(&b, &mut y, 0).unwrap();
        assert!(x == y);
    }
}
