//! The Linux swap area header (mkswap's format, `include/linux/swap.h`
//! `union swap_header`), written into the first page of the swapfile.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1024 | boot bits (zero) |
//! | 1024 | 4 | version (1), native endian: little on both boards |
//! | 1028 | 4 | last_page: index of the last usable page |
//! | 1032 | 4 | nr_badpages (0) |
//! | 1036 | 16 | sws_uuid (RFC 4122 byte order) |
//! | 1052 | 16 | sws_volume (label, NUL padded) |
//! | 1068 | 468 | padding[117] (zero) |
//! | 1536 | 4 | badpages[] (none) |
//! | page_size - 10 | 10 | magic `SWAPSPACE2` |

use kiln_units::Guid;

/// Page size of both boards (x86-64 and armv7), in bytes.
pub const SWAP_PAGE_SIZE: usize = 4096;

/// The first page of a swapfile of `size_bytes` bytes.
pub fn swap_header(size_bytes: u64, uuid: Guid, label: &str) -> [u8; SWAP_PAGE_SIZE] {
    let mut page = [0u8; SWAP_PAGE_SIZE];
    let pages = size_bytes / SWAP_PAGE_SIZE as u64;
    let last_page = u32::try_from(pages.saturating_sub(1)).unwrap_or(u32::MAX);
    page[1024..1028].copy_from_slice(&1u32.to_le_bytes());
    page[1028..1032].copy_from_slice(&last_page.to_le_bytes());
    page[1036..1052].copy_from_slice(&uuid.to_rfc_bytes());
    let l = label.as_bytes();
    let n = l.len().min(15);
    page[1052..1052 + n].copy_from_slice(&l[..n]);
    page[SWAP_PAGE_SIZE - 10..].copy_from_slice(b"SWAPSPACE2");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields() {
        let g: Guid = "0f3c2d1e-aaaa-4bbb-8ccc-123456789abc".parse().unwrap();
        let h = swap_header(1 << 30, g, "bob-swap");
        assert_eq!(&h[4086..], b"SWAPSPACE2");
        assert_eq!(u32::from_le_bytes(h[1024..1028].try_into().unwrap()), 1);
        assert_eq!(
            u32::from_le_bytes(h[1028..1032].try_into().unwrap()),
            262_143
        );
        assert_eq!(h[1036], 0x0f);
        assert_eq!(&h[1052..1060], b"bob-swap");
        assert!(h[..1024].iter().all(|&b| b == 0));
    }
}
