//! Stream-optimized markers (table in the module doc).

use crate::bytes::put;

pub(crate) const VMDK_MARKER_EOS: u32 = 0;
pub(crate) const VMDK_MARKER_GT: u32 = 1;
pub(crate) const VMDK_MARKER_GD: u32 = 2;
pub(crate) const VMDK_MARKER_FOOTER: u32 = 3;
/// Bytes of a grain marker before the compressed data.
pub(crate) const VMDK_GRAIN_MARKER_LEN: usize = 12;

/// A metadata marker sector: `num_sectors` of type `kind` follow.
pub(crate) fn metadata_marker(num_sectors: u64, kind: u32) -> [u8; 512] {
    let mut b = [0u8; 512];
    put(&mut b, 0, &num_sectors.to_le_bytes());
    put(&mut b, 12, &kind.to_le_bytes());
    b
}

/// The 12-byte header of a compressed grain.
pub(crate) fn grain_marker(lba: u64, size: u32) -> [u8; VMDK_GRAIN_MARKER_LEN] {
    let mut b = [0u8; VMDK_GRAIN_MARKER_LEN];
    put(&mut b, 0, &lba.to_le_bytes());
    put(&mut b, 8, &size.to_le_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_bytes() {
        let m = metadata_marker(4, VMDK_MARKER_GT);
        assert_eq!(&m[..16], &[4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(
            grain_marker(0x80, 0x1234),
            [0x80, 0, 0, 0, 0, 0, 0, 0, 0x34, 0x12, 0, 0]
        );
    }
}
