//! Editing an existing FAT volume by rebuilding it: every entry is read
//! with [`FatReader`] and written again with [`FatWriter`] onto a second
//! region, with the edits ([`FatEdits`]: put a file, remove a path)
//! applied on the way. Entries that are not edited keep their content,
//! attributes and times (fatgen103 §6 directory entry fields); the new
//! volume keeps the source's geometry as read from its boot sector
//! (fatgen103 §3.1–3.3):
//!
//! | offset | size | field            | kept as                          |
//! |-------:|-----:|------------------|----------------------------------|
//! | 3      | 8    | `BS_OEMName`     | [`FatOptions::oem_name`]         |
//! | 11     | 2    | `BPB_BytsPerSec` | must be 512                      |
//! | 13     | 1    | `BPB_SecPerClus` | [`FatOptions::cluster_size`]     |
//! | 17     | 2    | `BPB_RootEntCnt` | [`FatOptions::root_entries`]     |
//! | 19     | 2    | `BPB_TotSec16`   | volume size (with `TotSec32`)    |
//! | 21     | 1    | `BPB_Media`      | [`FatOptions::media`]            |
//! | 24     | 2    | `BPB_SecPerTrk`  | [`FatOptions::geometry`]         |
//! | 26     | 2    | `BPB_NumHeads`   | [`FatOptions::geometry`]         |
//! | 28     | 4    | `BPB_HiddSec`    | [`FatOptions::hidden_sectors`]   |
//! | 32     | 4    | `BPB_TotSec32`   | volume size                      |
//! | 39/67  | 4    | `BS_VolID`       | [`FatOptions::new`]              |
//!
//! plus the FAT type (FAT16/FAT32 as fatfs determines it from the cluster
//! count; FAT12 is refused) and the volume label (root-directory label
//! entry, else `BS_VolLab`). Reserved sectors and FAT size are what
//! kiln's layout computes for these values (mkfs.fat's rules), so the
//! data region may start elsewhere; files are laid out anew, contiguous.
//!
//! Reading and writing the same region at once is unsafe, so the target
//! is a different region (a scratch file or buffer the caller copies back).
//! For byte-identical results the target should read as zeros (free
//! clusters are not written). Memory: one file's I/O buffer at a time plus
//! a few dozen bytes per entry.

use crate::name::fold_key;
use crate::reader::{FatEntryKind, ListLimits};
use crate::{Error, FatOptions, FatReader, FatReport, FatType, FatWriter};
use kiln_tree::{Content, Entry, EntryKind, Metadata, Timestamp, TreePath, TreeSink};
use kiln_units::{ReadAt, WriteAt};
use std::collections::BTreeMap;

/// Changes to apply while rebuilding: files to create or replace, paths
/// (files or whole directories) to remove. Paths are slash-separated from
/// the root and matched case-insensitively, as FAT does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FatEdits {
    puts: Vec<(String, Vec<u8>)>,
    removes: Vec<String>,
}

impl FatEdits {
    /// No edits (a plain rebuild).
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates or replaces the file at `path` with `data`; missing parent
    /// directories are created. A later put of the same path wins.
    pub fn put(&mut self, path: &str, data: Vec<u8>) -> &mut Self {
        self.puts.push((path.to_owned(), data));
        self
    }

    /// Removes the file or directory (with everything below it) at `path`;
    /// it must exist.
    pub fn remove(&mut self, path: &str) -> &mut Self {
        self.removes.push(path.to_owned());
        self
    }

    /// True when there is nothing to change.
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.removes.is_empty()
    }
}

/// What [`rebuild`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RebuildReport {
    /// The new volume.
    pub fat: FatReport,
    /// Existing files whose content was replaced (paths as on the source).
    pub replaced: Vec<String>,
    /// Files created.
    pub added: Vec<String>,
    /// Files and directories removed (directories' contents not listed).
    pub removed: Vec<String>,
}

/// Geometry and identity of an existing volume, as [`rebuild`] keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VolumeParams {
    /// FAT16 or FAT32.
    pub fat_type: FatType,
    /// Volume size in bytes (total sectors × 512).
    pub size_bytes: u64,
    /// Bytes per cluster.
    pub cluster_bytes: u32,
    /// `BS_VolID`.
    pub volume_id: u32,
    /// Volume label, if any.
    pub label: Option<String>,
    /// `BPB_HiddSec`.
    pub hidden_sectors: u32,
    /// `BPB_Media`.
    pub media: u8,
    /// `BS_OEMName`.
    pub oem_name: [u8; 8],
    /// `BPB_SecPerTrk`, `BPB_NumHeads`.
    pub geometry: (u16, u16),
    /// `BPB_RootEntCnt` (0 on FAT32).
    pub root_entries: u16,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads the geometry and identity of the volume at offset 0 of `src`.
///
/// # Errors
/// [`Error::Read`] if it does not mount; [`Error::UnsupportedVolume`] for
/// FAT12, sectors other than 512 bytes, or a size beyond `src`.
pub fn volume_params<R: ReadAt>(src: &R) -> Result<VolumeParams, Error> {
    let reader = FatReader::open(src)?;
    params_of(src, &reader)
}

fn params_of<R: ReadAt>(src: &R, reader: &FatReader<&R>) -> Result<VolumeParams, Error> {
    let mut bs = [0u8; 512];
    src.read_exact_at(&mut bs, 0)
        .map_err(Error::io("reading the boot sector", 0))?;
    let fat_type = reader.fat_type().ok_or(Error::UnsupportedVolume {
        reason: "FAT12 volume",
        value: 12,
    })?;
    let bps = le16(&bs, 11);
    if bps != 512 {
        return Err(Error::UnsupportedVolume {
            reason: "bytes per sector other than 512",
            value: u64::from(bps),
        });
    }
    let total = match le16(&bs, 19) {
        0 => le32(&bs, 32),
        n => u32::from(n),
    };
    let size_bytes = u64::from(total) * 512;
    let region = src.size().map_err(Error::io("sizing the source", 0))?;
    if size_bytes > region {
        return Err(Error::UnsupportedVolume {
            reason: "volume larger than its region",
            value: size_bytes,
        });
    }
    let mut oem_name = [0u8; 8];
    oem_name.copy_from_slice(&bs[3..11]);
    Ok(VolumeParams {
        fat_type,
        size_bytes,
        cluster_bytes: u32::from(bs[13]) * 512,
        volume_id: reader.volume_id(),
        label: reader.volume_label()?,
        hidden_sectors: le32(&bs, 28),
        media: bs[21],
        oem_name,
        geometry: (le16(&bs, 24), le16(&bs, 26)),
        root_entries: le16(&bs, 17),
    })
}

/// The case-folded key of a slash-separated path.
fn key_of(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty())
        .map(fold_key)
        .collect::<Vec<_>>()
        .join("/")
}

fn tree_path(path: &str) -> Result<TreePath, Error> {
    TreePath::parse(path.trim_start_matches('/').as_bytes()).map_err(|_| Error::InvalidName {
        path: path.to_owned(),
        reason: "not a valid relative path",
    })
}

/// Rebuilds the volume at offset 0 of `src` onto offset 0 of `dst` (a
/// different region of at least the volume's size) with `edits` applied.
/// New and replaced files, and directories created for them, get `time`
/// and the archive attribute; everything else keeps its attributes and
/// times. Deterministic: the same source, edits and time give the same
/// bytes on a zeroed target.
///
/// ```
/// use kiln_fat::{rebuild, FatEdits, FatOptions, FatReader, FatWriter};
/// use kiln_tree::{Content, Entry, EntryKind, Metadata, Timestamp, TreePath, TreeSink};
/// let t = Timestamp::new(1_700_000_000, 0);
/// let mut src = Vec::new();
/// let mut w = FatWriter::new(&mut src, 8 << 20, FatOptions::new(7, t).volume_label("resin-boot"))?;
/// let e = Entry::new(TreePath::parse(b"config.json")?, EntryKind::File, Metadata::new(0o644, t));
/// w.add(&e, Content::bytes(b"{}"))?;
/// w.finish()?;
/// let mut edits = FatEdits::new();
/// edits.put("config.json", br#"{"uuid":"abc"}"#.to_vec());
/// let mut dst = Vec::new();
/// let report = kiln_fat::rebuild(&src, &mut dst, &edits, Timestamp::new(1_800_000_000, 0))?;
/// assert_eq!(report.replaced, vec!["config.json".to_owned()]);
/// let r = FatReader::open(&dst)?;
/// assert_eq!(r.read_file("config.json", 100)?, br#"{"uuid":"abc"}"#);
/// assert_eq!(r.volume_label()?.as_deref(), Some("resin-boot"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// Reader errors ([`Error::Read`], [`Error::UnsupportedVolume`]), a removed
/// path that does not exist ([`Error::NotFound`]), a put onto a directory
/// ([`Error::AlreadyExists`]) or through a file ([`Error::NotADirectory`]),
/// and the writer's errors (e.g. [`Error::NoSpace`] when the edits do not
/// fit).
pub fn rebuild<R: ReadAt, W: WriteAt>(
    src: &R,
    dst: W,
    edits: &FatEdits,
    time: Timestamp,
) -> Result<RebuildReport, Error> {
    let reader = FatReader::open(src)?;
    let p = params_of(src, &reader)?;
    let mut opts = FatOptions::new(p.volume_id, time)
        .fat_type(p.fat_type)
        .oem_name(&p.oem_name)
        .media(p.media)
        .hidden_sectors(p.hidden_sectors)
        .cluster_size(p.cluster_bytes);
    if let Some(label) = &p.label {
        opts = opts.volume_label(label);
    }
    if p.geometry.0 != 0 && p.geometry.1 != 0 {
        opts = opts.geometry(p.geometry.0, p.geometry.1);
    }
    if p.fat_type == FatType::Fat16 && p.root_entries != 0 {
        opts = opts.root_entries(p.root_entries);
    }
    let mut writer = FatWriter::new(dst, p.size_bytes, opts)?;

    // Last put of a key wins; BTreeMap keeps the order deterministic.
    let mut puts: BTreeMap<String, (&str, &[u8])> = BTreeMap::new();
    for (path, data) in &edits.puts {
        puts.insert(key_of(path), (path.as_str(), data.as_slice()));
    }
    let mut removes: BTreeMap<String, (&str, bool)> = edits
        .removes
        .iter()
        .map(|r| (key_of(r), (r.as_str(), false)))
        .collect();
    let mut replaced = Vec::new();
    let mut removed = Vec::new();
    let mut done_puts = std::collections::BTreeSet::new();
    let meta = Metadata::new(0o644, time);

    reader.walk(ListLimits::default(), |info, stamp, content| {
        let key = key_of(&info.path);
        // Removed itself, or below a removed directory.
        let mut gone = false;
        for (rk, (_, hit)) in removes.iter_mut() {
            if key == *rk {
                *hit = true;
                removed.push(info.path.clone());
                gone = true;
            } else if key.starts_with(rk.as_str()) && key.as_bytes().get(rk.len()) == Some(&b'/') {
                gone = true;
            }
        }
        if gone {
            return Ok(());
        }
        let path = tree_path(&info.path)?;
        match (info.kind, content) {
            (FatEntryKind::Dir, _) => {
                if puts.contains_key(&key) {
                    return Err(Error::AlreadyExists {
                        path: info.path.clone(),
                    });
                }
                let e = Entry::new(path, EntryKind::Dir, meta.clone());
                writer.add_stamped(&e, Content::None, *stamp)
            }
            (FatEntryKind::File, Some(reader)) => {
                let e = Entry::new(path, EntryKind::File, meta.clone());
                if let Some((_, data)) = puts.get(&key) {
                    done_puts.insert(key);
                    replaced.push(info.path.clone());
                    return writer.add(&e, Content::bytes(data));
                }
                let content = Content::Stream {
                    size: info.size_bytes,
                    reader,
                };
                writer.add_stamped(&e, content, *stamp)
            }
            (FatEntryKind::File, None) => Ok(()),
        }
    })?;
    if let Some((_, (path, _))) = removes.iter().find(|(_, (_, hit))| !hit) {
        return Err(Error::NotFound {
            path: (*path).to_owned(),
        });
    }
    let mut added = Vec::new();
    for (key, (path, data)) in &puts {
        if done_puts.contains(key) {
            continue;
        }
        let e = Entry::new(tree_path(path)?, EntryKind::File, meta.clone());
        writer.add(&e, Content::bytes(data))?;
        added.push(path.trim_start_matches('/').to_owned());
    }
    let fat = writer.finish()?;
    Ok(RebuildReport {
        fat,
        replaced,
        added,
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EntryStamp, FatTime};

    fn t(s: i64) -> Timestamp {
        Timestamp::new(s, 0)
    }

    /// A small FAT16 source with a stamped file, a subdirectory and a
    /// long name.
    fn source() -> Vec<u8> {
        let mut img = Vec::new();
        let opts = FatOptions::new(0xCAFE_F00D, t(1_600_000_000))
            .volume_label("resin-boot")
            .oem_name(b"mkfs.fat")
            .hidden_sectors(8192);
        let mut w = FatWriter::new(&mut img, 16 << 20, opts).unwrap();
        let m = Metadata::new(0o644, t(0));
        let stamp = EntryStamp {
            attributes: 0x01 | 0x20,
            created: FatTime::from_timestamp(t(1_500_000_001)),
            accessed_date: FatTime::from_timestamp(t(1_500_100_000)).date,
            modified: FatTime::from_timestamp(t(1_500_200_000)),
        };
        let e = |p: &str, k| Entry::new(TreePath::parse(p.as_bytes()).unwrap(), k, m.clone());
        w.add_stamped(
            &e("bcm2710-rpi-3-b.dtb", EntryKind::File),
            Content::bytes(&[7u8; 5000]),
            stamp,
        )
        .unwrap();
        w.add(&e("config.json", EntryKind::File), Content::bytes(b"{}"))
            .unwrap();
        w.add(
            &e("overlays/A Long Name.dtbo", EntryKind::File),
            Content::bytes(b"ov"),
        )
        .unwrap();
        w.finish().unwrap();
        img
    }

    #[test]
    fn keeps_geometry_stamps_and_content() {
        let src = source();
        let mut edits = FatEdits::new();
        edits
            .put("CONFIG.JSON", b"{\"a\":1}".to_vec())
            .put("system-connections/eth0", b"[connection]\n".to_vec())
            .remove("overlays");
        let mut dst = Vec::new();
        let rep = rebuild(&src, &mut dst, &edits, t(1_700_000_000)).unwrap();
        assert_eq!(rep.replaced, vec!["config.json"]);
        assert_eq!(rep.added, vec!["system-connections/eth0"]);
        assert_eq!(rep.removed, vec!["overlays"]);
        let a = volume_params(&src).unwrap();
        let b = volume_params(&dst).unwrap();
        assert_eq!(a, b);
        let r = FatReader::open(&dst).unwrap();
        assert_eq!(r.read_file("config.json", 100).unwrap(), b"{\"a\":1}");
        assert_eq!(
            r.read_file("bcm2710-rpi-3-b.dtb", 1 << 20).unwrap(),
            vec![7u8; 5000]
        );
        assert!(matches!(
            r.read_file("overlays/A Long Name.dtbo", 100),
            Err(Error::NotFound { .. })
        ));
        let mut stamps = BTreeMap::new();
        FatReader::open(&src)
            .unwrap()
            .walk(ListLimits::default(), |i, s, _| {
                stamps.insert(i.path.clone(), *s);
                Ok(())
            })
            .unwrap();
        r.walk(ListLimits::default(), |i, s, _| {
            if i.path == "bcm2710-rpi-3-b.dtb" {
                assert_eq!(Some(s), stamps.get(&i.path));
                assert_eq!(s.attributes, 0x21);
            }
            if i.path == "config.json" {
                assert_eq!(s.modified, FatTime::from_timestamp(t(1_700_000_000)));
            }
            Ok(())
        })
        .unwrap();
        // Deterministic.
        let mut again = Vec::new();
        rebuild(&src, &mut again, &edits, t(1_700_000_000)).unwrap();
        assert_eq!(dst, again);
    }

    #[test]
    fn edit_errors() {
        let src = source();
        let mut dst = Vec::new();
        let mut e = FatEdits::new();
        e.remove("nope.txt");
        assert!(
            matches!(rebuild(&src, &mut dst, &e, t(0)), Err(Error::NotFound { path }) if path == "nope.txt")
        );
        let mut e = FatEdits::new();
        e.put("overlays", b"x".to_vec());
        assert!(matches!(
            rebuild(&src, &mut dst, &e, t(0)),
            Err(Error::AlreadyExists { .. })
        ));
        let mut e = FatEdits::new();
        e.put("config.json/x", b"x".to_vec());
        assert!(matches!(
            rebuild(&src, &mut dst, &e, t(0)),
            Err(Error::NotADirectory { .. })
        ));
        let mut e = FatEdits::new();
        e.put("big.bin", vec![1u8; 17 << 20]);
        assert!(matches!(
            rebuild(&src, &mut dst, &e, t(0)),
            Err(Error::NoSpace { .. })
        ));
    }
}
