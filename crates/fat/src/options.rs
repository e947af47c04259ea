//! What to format: [`FatOptions`] and its validation.

use crate::Error;
use kiln_tree::Timestamp;

/// The FAT variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FatType {
    /// 16-bit FAT: 4085..=65524 clusters, fixed root directory.
    Fat16,
    /// 32-bit FAT (28 bits used): at least 65525 clusters, root directory
    /// in a cluster chain, FSInfo and backup boot sector.
    Fat32,
}

/// Formatting parameters. Every value that ends up in the image is here
/// or derived from the volume size, so the same options and tree give
/// the same bytes.
///
/// ```
/// use kiln_fat::{FatOptions, FatType};
/// use kiln_tree::Timestamp;
/// let opts = FatOptions::new(0x1234_5678, Timestamp::new(1_700_000_000, 0))
///     .fat_type(FatType::Fat32)
///     .volume_label("resin-boot")
///     .hidden_sectors(8192);
/// # let _ = opts;
/// ```
#[derive(Debug, Clone)]
pub struct FatOptions {
    pub(crate) fat_type: Option<FatType>,
    pub(crate) volume_label: Option<String>,
    pub(crate) volume_id: u32,
    pub(crate) timestamp: Timestamp,
    pub(crate) oem_name: [u8; 8],
    pub(crate) media: u8,
    pub(crate) geometry: Option<(u16, u16)>,
    pub(crate) hidden_sectors: u32,
    pub(crate) cluster_size_bytes: Option<u32>,
    pub(crate) root_entries: u16,
    pub(crate) assume_zeroed: bool,
}

impl FatOptions {
    /// Options with the given volume serial number (`BS_VolID`; derive it
    /// from the build seed) and the time stamped on every directory entry
    /// (`SOURCE_DATE_EPOCH`). Defaults: FAT type by size (FAT32 from
    /// 512 MiB, as mkfs.fat), no label (`NO NAME`), OEM name `KILN`,
    /// media 0xF8, geometry as mkfs.fat picks for the size, 0 hidden
    /// sectors, cluster size as mkfs.fat picks, 512 FAT16 root entries.
    pub fn new(volume_id: u32, timestamp: Timestamp) -> Self {
        Self {
            fat_type: None,
            volume_label: None,
            volume_id,
            timestamp,
            oem_name: *b"KILN    ",
            media: 0xF8,
            geometry: None,
            hidden_sectors: 0,
            cluster_size_bytes: None,
            root_entries: 512,
            assume_zeroed: false,
        }
    }

    /// Forces FAT16 or FAT32 (default: FAT32 from 512 MiB, else FAT16).
    pub fn fat_type(mut self, fat_type: FatType) -> Self {
        self.fat_type = Some(fat_type);
        self
    }

    /// Lets the size pick the FAT type (the default).
    pub fn auto_fat_type(mut self) -> Self {
        self.fat_type = None;
        self
    }

    /// The volume label, at most 11 ASCII characters, none of
    /// `*?.,;:/\|+=<>[]"`, not starting with a space. Case is kept as given,
    /// like `mkfs.fat -n` (Linux finds the balenaOS boot partition by the
    /// case-sensitive label `resin-boot`, so uppercasing it as DOS would
    /// break `/dev/disk/by-label`). Checked when the writer is created.
    pub fn volume_label(mut self, label: &str) -> Self {
        self.volume_label = Some(label.to_owned());
        self
    }

    /// The 8-byte `BS_OEMName`; longer input is cut, shorter is
    /// space-padded.
    pub fn oem_name(mut self, name: &[u8]) -> Self {
        let mut out = [b' '; 8];
        for (o, b) in out.iter_mut().zip(name) {
            *o = *b;
        }
        self.oem_name = out;
        self
    }

    /// The media descriptor (`BPB_Media`, also in `FAT[0]`); 0xF0 or
    /// 0xF8..=0xFF.
    pub fn media(mut self, media: u8) -> Self {
        self.media = media;
        self
    }

    /// INT 13h geometry recorded in the BPB (sectors per track, heads).
    pub fn geometry(mut self, sectors_per_track: u16, heads: u16) -> Self {
        self.geometry = Some((sectors_per_track, heads));
        self
    }

    /// `BPB_HiddSec`: the partition's start LBA (512-byte sectors).
    pub fn hidden_sectors(mut self, start_lba: u32) -> Self {
        self.hidden_sectors = start_lba;
        self
    }

    /// Forces the cluster size in bytes (power of two, 512..=65536).
    pub fn cluster_size(mut self, bytes: u32) -> Self {
        self.cluster_size_bytes = Some(bytes);
        self
    }

    /// Slots of the fixed FAT16 root directory, 1..=32768 (default 512;
    /// rounded up to fill whole clusters). Ignored for FAT32.
    pub fn root_entries(mut self, entries: u16) -> Self {
        self.root_entries = entries;
        self
    }

    /// Promises that the target region already reads as zeros (a fresh
    /// sparse file), so all-zero file chunks and cluster slack are not
    /// written and stay holes. Default `false`: every allocated byte is
    /// written.
    pub fn assume_zeroed_target(mut self, zeroed: bool) -> Self {
        self.assume_zeroed = zeroed;
        self
    }

    /// The timestamp stamped on every entry.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// Checks the label and returns its 11 on-disk bytes (`None`: no label).
    pub(crate) fn label_bytes(&self) -> Result<Option<[u8; 11]>, Error> {
        let Some(label) = &self.volume_label else {
            return Ok(None);
        };
        let bad = |reason| Error::InvalidLabel {
            label: label.clone(),
            reason,
        };
        if !label.is_ascii() {
            return Err(bad("only ASCII characters are allowed"));
        }
        if label.len() > 11 {
            return Err(bad("longer than 11 characters"));
        }
        if label.bytes().any(|b| b < 0x20 || b == 0x7F) {
            return Err(bad("control characters are not allowed"));
        }
        if label.bytes().any(|b| b"*?.,;:/\\|+=<>[]\"".contains(&b)) {
            return Err(bad("characters *?.,;:/\\|+=<>[]\" are not allowed"));
        }
        if label.starts_with(' ') {
            return Err(bad("must not start with a space"));
        }
        if label.trim_end().is_empty() {
            return Ok(None);
        }
        let mut out = [b' '; 11];
        for (o, b) in out.iter_mut().zip(label.bytes()) {
            *o = b;
        }
        Ok(Some(out))
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        if !(self.media == 0xF0 || self.media >= 0xF8) {
            return Err(Error::InvalidOption {
                option: "media",
                reason: "must be 0xF0 or 0xF8..=0xFF",
            });
        }
        if let Some(cs) = self.cluster_size_bytes {
            if !cs.is_power_of_two() || !(512..=65536).contains(&cs) {
                return Err(Error::InvalidOption {
                    option: "cluster_size",
                    reason: "must be a power of two from 512 to 65536 bytes",
                });
            }
        }
        if let Some((spt, heads)) = self.geometry {
            if spt == 0 || heads == 0 {
                return Err(Error::InvalidOption {
                    option: "geometry",
                    reason: "sectors per track and heads must be non-zero",
                });
            }
        }
        // Rounded up to whole clusters the count must still fit the
        // 16-bit BPB_RootEntCnt; 32768 leaves room for any cluster size.
        if self.root_entries == 0 || self.root_entries > 32768 {
            return Err(Error::InvalidOption {
                option: "root_entries",
                reason: "must be 1..=32768",
            });
        }
        self.label_bytes().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o() -> FatOptions {
        FatOptions::new(1, Timestamp::new(0, 0))
    }

    #[test]
    fn labels() {
        assert_eq!(
            o().volume_label("resin-boot").label_bytes().unwrap(),
            Some(*b"resin-boot ")
        );
        assert!(o().volume_label("   ").label_bytes().is_err());
        assert_eq!(o().volume_label("").label_bytes().unwrap(), None);
        for bad in ["twelve chars", "a.b", "Ä", " x", "a\tb", "a*"] {
            assert!(
                matches!(
                    o().volume_label(bad).label_bytes(),
                    Err(Error::InvalidLabel { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn option_checks() {
        assert!(o().check().is_ok());
        assert!(o().media(0x12).check().is_err());
        assert!(o().cluster_size(3000).check().is_err());
        assert!(o().cluster_size(131072).check().is_err());
        assert!(o().geometry(0, 4).check().is_err());
        assert!(o().root_entries(0).check().is_err());
        assert!(o().root_entries(40000).check().is_err());
        assert!(o().root_entries(32768).check().is_ok());
        assert_eq!(&o().oem_name(b"mkfs.fat").oem_name, b"mkfs.fat");
        assert_eq!(&o().oem_name(b"ab").oem_name, b"ab      ");
    }
}
