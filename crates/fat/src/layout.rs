//! Where everything goes: sector counts of the reserved area, FATs, root
//! directory and data area (fatgen103 §3.5 "Determination of FAT type
//! when mounting the volume", §3.6 "FAT Type Determination" and the
//! `FATSz` computation).
//!
//! The sizing follows `mkfs.fat` 4.2 (dosfstools) so kiln's volumes look
//! like the ones the balenaOS build makes: 512-byte sectors; FAT32 from
//! 512 MiB unless asked; FAT32 cluster size by the Microsoft table
//! (≤ 260 MiB: 512 B, ≤ 8 GiB: 4 KiB, ≤ 16 GiB: 8 KiB, ≤ 32 GiB: 16 KiB,
//! else 32 KiB); FAT16 starts at 2 KiB clusters and doubles until the
//! count fits; the reserved area, each FAT and the FAT16 root directory
//! are rounded up to whole clusters so clusters are aligned to the
//! partition start (above 8192 sectors); the total is rounded down to a
//! whole number of tracks. For 40 MiB this gives FAT16: 2 KiB clusters,
//! 20431 clusters, 80-sector FATs, 4 reserved sectors; FAT32: 512-byte
//! clusters, 80628 clusters, 630-sector FATs, 32 reserved sectors —
//! exactly what `mkfs.fat -F 16|32` makes. Where mkfs.fat gives up on a
//! small FAT16 volume, kiln also tries 1 KiB and 512-byte clusters.
//!
//! ```text
//! sector 0                 boot sector (+ FSInfo at 1, backups at 6/7 on FAT32)
//! reserved_sectors         FAT #1 (fat_sectors)
//! + fat_sectors            FAT #2
//! + 2*fat_sectors          FAT16 root directory (root_dir_sectors; 0 on FAT32)
//! first_data_sector        cluster 2, 3, ... (sectors_per_cluster each)
//! ```

use crate::raw::BPB_BYTS_PER_SEC;
use crate::{Error, FatOptions, FatType};

/// Fewest clusters of a FAT16 volume (mkfs.fat keeps 2 above fatgen103's
/// 4085 so no driver mistakes it for FAT12).
pub const FAT16_MIN_CLUSTERS: u32 = 4087;
/// Most clusters of a FAT16 volume (fatgen103 §3.5: fewer than 65525).
pub const FAT16_MAX_CLUSTERS: u32 = 65524;
/// Fewest clusters of a FAT32 volume (fatgen103 §3.5).
pub const FAT32_MIN_CLUSTERS: u32 = 65525;
/// Most clusters of a FAT32 volume (cluster numbers below 0x0FFFFFF7).
pub const FAT32_MAX_CLUSTERS: u32 = 0x0FFF_FFF4;
/// Number of FATs kiln writes.
pub const NUM_FATS: u32 = 2;

/// The computed geometry of a volume, all counts in 512-byte sectors
/// unless named otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FatLayout {
    /// FAT16 or FAT32.
    pub fat_type: FatType,
    /// Sectors the filesystem uses (`BPB_TotSec*`), ≤ the region.
    pub total_sectors: u32,
    /// Sectors per cluster.
    pub sectors_per_cluster: u32,
    /// Reserved sectors before the first FAT.
    pub reserved_sectors: u32,
    /// Sectors of one FAT.
    pub fat_sectors: u32,
    /// Slots in the fixed FAT16 root directory (0 for FAT32).
    pub root_entries: u32,
    /// Sectors of the fixed root directory (0 for FAT32).
    pub root_dir_sectors: u32,
    /// First sector of cluster 2.
    pub first_data_sector: u32,
    /// Number of data clusters (cluster numbers 2..cluster_count+2).
    pub cluster_count: u32,
    /// `BPB_SecPerTrk`.
    pub sectors_per_track: u16,
    /// `BPB_NumHeads`.
    pub heads: u16,
}

/// mkfs.fat's default geometry for a disk of `sectors` 512-byte sectors
/// (SD card part 2 recommendation below 256 MiB, LBA-assist above).
fn default_geometry(sectors: u64) -> (u16, u16) {
    if sectors <= 524_288 {
        let heads = match sectors {
            0..=32_768 => 2,
            32_769..=65_536 => 4,
            65_537..=262_144 => 8,
            _ => 16,
        };
        (if sectors <= 4096 { 16 } else { 32 }, heads)
    } else {
        let heads = match sectors {
            s if s <= 16 * 63 * 1024 => 16,
            s if s <= 32 * 63 * 1024 => 32,
            s if s <= 64 * 63 * 1024 => 64,
            s if s <= 128 * 63 * 1024 => 128,
            _ => 255,
        };
        (63, heads)
    }
}

fn align(v: u64, to: u64, on: bool) -> u64 {
    if on {
        v.div_ceil(to) * to
    } else {
        v
    }
}

impl FatLayout {
    /// Computes the layout of a `size_bytes` volume.
    pub fn compute(size_bytes: u64, opts: &FatOptions) -> Result<FatLayout, Error> {
        opts.check()?;
        let sec = u64::from(BPB_BYTS_PER_SEC);
        let region_sectors = size_bytes / sec;
        let fat_type = opts.fat_type.unwrap_or(if size_bytes >= 512 << 20 {
            FatType::Fat32
        } else {
            FatType::Fat16
        });
        let max_sectors = u64::from(u32::MAX);
        if region_sectors > max_sectors {
            return Err(Error::VolumeTooLarge {
                size_bytes,
                fat_type,
                max_bytes: max_sectors * sec,
            });
        }
        let (spt, heads) = opts
            .geometry
            .unwrap_or_else(|| default_geometry(region_sectors));
        let aligned = region_sectors > 8192;
        let total = if aligned {
            region_sectors / u64::from(spt) * u64::from(spt)
        } else {
            region_sectors
        };
        let candidates: Vec<u32> = match (opts.cluster_size_bytes, fat_type) {
            (Some(bytes), _) => vec![bytes / BPB_BYTS_PER_SEC],
            (None, FatType::Fat32) => {
                let start = match region_sectors {
                    s if s > 32 * 1024 * 1024 * 2 => 64,
                    s if s > 16 * 1024 * 1024 * 2 => 32,
                    s if s > 8 * 1024 * 1024 * 2 => 16,
                    s if s > 260 * 1024 * 2 => 8,
                    _ => 1,
                };
                [1u32, 2, 4, 8, 16, 32, 64, 128]
                    .into_iter()
                    .filter(|&c| c >= start)
                    .collect()
            }
            (None, FatType::Fat16) => vec![4, 8, 16, 32, 64, 128, 2, 1],
        };
        let mut too_small = false;
        for spc in candidates {
            match Self::try_with(fat_type, total, spc, aligned, opts.root_entries) {
                Ok(mut l) => {
                    l.sectors_per_track = spt;
                    l.heads = heads;
                    return Ok(l);
                }
                Err(small) => too_small |= small,
            }
        }
        let (min_clusters, max_clusters, max_spc) = match fat_type {
            FatType::Fat16 => (FAT16_MIN_CLUSTERS, FAT16_MAX_CLUSTERS, 128u64),
            FatType::Fat32 => (FAT32_MIN_CLUSTERS, FAT32_MAX_CLUSTERS, 128u64),
        };
        if too_small {
            // Lower bound: the clusters, their FAT entries twice, the
            // reserved sectors and root directory, one track of rounding.
            let bpe: u64 = if fat_type == FatType::Fat16 { 2 } else { 4 };
            let min_spc = match (opts.cluster_size_bytes, fat_type) {
                (Some(b), _) => u64::from(b) / sec,
                (None, _) => 1,
            };
            let fat = (u64::from(min_clusters) + 2) * bpe;
            let rsv = if fat_type == FatType::Fat16 { 1 } else { 32 };
            let root = u64::from(opts.root_entries) * 32;
            let min_bytes = u64::from(min_clusters) * min_spc * sec
                + 2 * fat.div_ceil(sec) * sec
                + rsv * sec
                + if fat_type == FatType::Fat16 { root } else { 0 }
                + u64::from(spt) * sec;
            Err(Error::VolumeTooSmall {
                size_bytes,
                fat_type,
                min_bytes,
            })
        } else {
            Err(Error::VolumeTooLarge {
                size_bytes,
                fat_type,
                max_bytes: u64::from(max_clusters) * max_spc * sec,
            })
        }
    }

    /// The layout for one cluster size; `Err(true)` if the volume has too
    /// few clusters, `Err(false)` if too many.
    fn try_with(
        fat_type: FatType,
        total: u64,
        spc: u32,
        aligned: bool,
        root_entries: u16,
    ) -> Result<FatLayout, bool> {
        let sec = u64::from(BPB_BYTS_PER_SEC);
        let c = u64::from(spc);
        let (base_reserved, bpe, root_secs_raw) = match fat_type {
            FatType::Fat16 => (1u64, 2u64, (u64::from(root_entries) * 32).div_ceil(sec)),
            FatType::Fat32 => (32, 4, 0),
        };
        let reserved = align(base_reserved, c, aligned);
        let root_secs = align(root_secs_raw, c, aligned);
        let fatdata = total.checked_sub(reserved + root_secs).ok_or(true)?;
        // First guess of the cluster count, then the FAT size for it, then
        // the count that really fits next to two FATs of that size.
        let guess = (fatdata * sec + NUM_FATS as u64 * bpe * 2) / (c * sec + NUM_FATS as u64 * bpe);
        let fat_secs = align(((guess + 2) * bpe).div_ceil(sec), c, aligned);
        let data = fatdata
            .checked_sub(NUM_FATS as u64 * fat_secs)
            .ok_or(true)?;
        let mut clusters = data / c;
        let capacity = (fat_secs * sec / bpe).saturating_sub(2);
        clusters = clusters.min(capacity);
        let (lo, hi) = match fat_type {
            FatType::Fat16 => (FAT16_MIN_CLUSTERS, FAT16_MAX_CLUSTERS),
            FatType::Fat32 => (FAT32_MIN_CLUSTERS, FAT32_MAX_CLUSTERS),
        };
        if clusters < u64::from(lo) {
            return Err(true);
        }
        if clusters > u64::from(hi) {
            return Err(false);
        }
        let u = |v: u64| u32::try_from(v).map_err(|_| false);
        Ok(FatLayout {
            fat_type,
            total_sectors: u(total)?,
            sectors_per_cluster: spc,
            reserved_sectors: u(reserved)?,
            fat_sectors: u(fat_secs)?,
            root_entries: u(root_secs * sec / 32)?,
            root_dir_sectors: u(root_secs)?,
            first_data_sector: u(reserved + NUM_FATS as u64 * fat_secs + root_secs)?,
            cluster_count: u(clusters)?,
            sectors_per_track: 0,
            heads: 0,
        })
    }

    /// Bytes per cluster.
    pub fn cluster_bytes(&self) -> u32 {
        self.sectors_per_cluster * BPB_BYTS_PER_SEC
    }

    /// Byte offset of cluster `n` (≥ 2) inside the volume.
    pub fn cluster_offset(&self, n: u32) -> u64 {
        (u64::from(self.first_data_sector)
            + u64::from(n.saturating_sub(2)) * u64::from(self.sectors_per_cluster))
            * u64::from(BPB_BYTS_PER_SEC)
    }

    /// Byte offset of FAT number `i` (0 or 1).
    pub fn fat_offset(&self, i: u32) -> u64 {
        (u64::from(self.reserved_sectors) + u64::from(i) * u64::from(self.fat_sectors))
            * u64::from(BPB_BYTS_PER_SEC)
    }

    /// Byte offset of the FAT16 root directory.
    pub fn root_dir_offset(&self) -> u64 {
        (u64::from(self.reserved_sectors) + u64::from(NUM_FATS * self.fat_sectors))
            * u64::from(BPB_BYTS_PER_SEC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_tree::Timestamp;

    fn opts() -> FatOptions {
        FatOptions::new(1, Timestamp::new(0, 0))
    }

    #[test]
    fn matches_mkfs_fat_for_40_mib() {
        // Reference: `mkfs.fat -F 16` / `-F 32` of a 40 MiB file, read
        // with `fsck.fat -vn` (dosfstools 4.2).
        let l = FatLayout::compute(40 << 20, &opts().fat_type(FatType::Fat16)).unwrap();
        assert_eq!(
            (
                l.sectors_per_cluster,
                l.reserved_sectors,
                l.fat_sectors,
                l.root_entries
            ),
            (4, 4, 80, 512)
        );
        assert_eq!((l.first_data_sector, l.cluster_count), (196, 20431));
        assert_eq!(
            (l.sectors_per_track, l.heads, l.total_sectors),
            (32, 8, 81920)
        );
        let l = FatLayout::compute(40 << 20, &opts().fat_type(FatType::Fat32)).unwrap();
        assert_eq!(
            (l.sectors_per_cluster, l.reserved_sectors, l.fat_sectors),
            (1, 32, 630)
        );
        assert_eq!((l.first_data_sector, l.cluster_count), (1292, 80628));
        // Auto picks FAT16 below 512 MiB.
        assert_eq!(
            FatLayout::compute(40 << 20, &opts()).unwrap().fat_type,
            FatType::Fat16
        );
        assert_eq!(
            FatLayout::compute(1 << 30, &opts()).unwrap().fat_type,
            FatType::Fat32
        );
    }

    #[test]
    fn bounds() {
        assert!(matches!(
            FatLayout::compute(20 << 20, &opts().fat_type(FatType::Fat32)),
            Err(Error::VolumeTooSmall { .. })
        ));
        assert!(matches!(
            FatLayout::compute(1 << 20, &opts()),
            Err(Error::VolumeTooSmall { .. })
        ));
        assert!(matches!(
            FatLayout::compute(8 << 30, &opts().fat_type(FatType::Fat16)),
            Err(Error::VolumeTooLarge { .. })
        ));
        assert!(matches!(
            FatLayout::compute(3 << 40, &opts()),
            Err(Error::VolumeTooLarge { .. })
        ));
        // Small FAT16 volumes fall back to smaller clusters.
        let l = FatLayout::compute(3 << 20, &opts()).unwrap();
        assert!(l.sectors_per_cluster < 4);
        // Every layout stays inside the volume and keeps its counts.
        for mib in [3u64, 5, 16, 33, 40, 100, 300, 511, 600, 2048] {
            for t in [FatType::Fat16, FatType::Fat32] {
                let Ok(l) = FatLayout::compute(mib << 20, &opts().fat_type(t)) else {
                    continue;
                };
                let end = u64::from(l.first_data_sector)
                    + u64::from(l.cluster_count) * u64::from(l.sectors_per_cluster);
                assert!(end <= u64::from(l.total_sectors), "{mib} {t:?}");
                assert!(u64::from(l.total_sectors) * 512 <= mib << 20);
                let bpe = if t == FatType::Fat16 { 2 } else { 4 };
                assert!((u64::from(l.cluster_count) + 2) * bpe <= u64::from(l.fat_sectors) * 512);
            }
        }
    }
}
