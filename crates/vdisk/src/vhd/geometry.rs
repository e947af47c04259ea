//! CHS geometry from the disk size (spec appendix "CHS Calculation").

/// Cylinders, heads and sectors per track as the VHD footer stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChsGeometry {
    /// Cylinders.
    pub cylinders: u16,
    /// Heads.
    pub heads: u8,
    /// Sectors per track.
    pub sectors_per_track: u8,
}

impl ChsGeometry {
    /// The spec's algorithm for a disk of `total_sectors` 512-byte sectors
    /// (capped at 65535 x 16 x 255).
    pub fn from_sectors(total_sectors: u64) -> Self {
        let ts = total_sectors.min(65535 * 16 * 255);
        let (spt, heads, cth): (u64, u64, u64);
        if ts >= 65535 * 16 * 63 {
            spt = 255;
            heads = 16;
            cth = ts / spt;
        } else {
            let mut s = 17u64;
            let mut c = ts / s;
            let mut h = c.div_ceil(1024).max(4);
            if c >= h * 1024 || h > 16 {
                s = 31;
                h = 16;
                c = ts / s;
            }
            if c >= h * 1024 {
                s = 63;
                h = 16;
                c = ts / s;
            }
            spt = s;
            heads = h;
            cth = c;
        }
        ChsGeometry {
            cylinders: u16::try_from(cth / heads).unwrap_or(u16::MAX),
            heads: u8::try_from(heads).unwrap_or(16),
            sectors_per_track: u8::try_from(spt).unwrap_or(255),
        }
    }

    /// Sectors the geometry addresses.
    pub fn sectors(&self) -> u64 {
        u64::from(self.cylinders) * u64::from(self.heads) * u64::from(self.sectors_per_track)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // 256 MiB: 17 spt gives 31 heads > 16, 31 spt still too many
        // cylinders, so 63 spt: 524288 / 63 = 8322, / 16 = 520.
        assert_eq!(
            ChsGeometry::from_sectors(524_288),
            ChsGeometry {
                cylinders: 520,
                heads: 16,
                sectors_per_track: 63
            }
        );
        // 10 MiB: 20480 / 17 = 1204 -> 2 heads -> 4 heads, 301 cylinders.
        assert_eq!(
            ChsGeometry::from_sectors(20_480),
            ChsGeometry {
                cylinders: 301,
                heads: 4,
                sectors_per_track: 17
            }
        );
        // Huge disks saturate at 65535/16/255.
        assert_eq!(
            ChsGeometry::from_sectors(u64::MAX),
            ChsGeometry {
                cylinders: 65535,
                heads: 16,
                sectors_per_track: 255
            }
        );
    }
}
