//! ustar headers (POSIX.1-1988 "ustar Interchange Format", IEEE Std
//! 1003.1 `pax` rationale), as OVF packages use them (DSP0243 §5.3).
//!
//! | offset | size | field | written as |
//! |---:|---:|---|---|
//! | 0 | 100 | name | the member's file name |
//! | 100 | 8 | mode | `0000644` |
//! | 108 | 8 | uid | `0000000` |
//! | 116 | 8 | gid | `0000000` |
//! | 124 | 12 | size | octal, 11 digits (base-256 above 8 GiB, as GNU tar) |
//! | 136 | 12 | mtime | octal, 11 digits |
//! | 148 | 8 | chksum | octal sum of the header bytes, this field as spaces |
//! | 156 | 1 | typeflag | `0` (regular file) |
//! | 157 | 100 | linkname | empty |
//! | 257 | 6 | magic | `ustar\0` |
//! | 263 | 2 | version | `00` |
//! | 265 | 32 | uname | `root` |
//! | 297 | 32 | gname | `root` |
//! | 329 | 155 | devmajor, devminor, prefix | empty |

/// Size of a tar block and header, bytes.
pub(crate) const TAR_BLOCK: u64 = 512;
/// Largest size the 11 octal digits hold.
const OCTAL_MAX: u64 = (1 << 33) - 1;

fn octal(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    for (d, c) in field.iter_mut().zip(s.bytes().chain([0])) {
        *d = c;
    }
}

/// The 512-byte header of a regular file `name` (at most 100 bytes) of
/// `size` bytes modified at `mtime` (Unix seconds).
pub(crate) fn header(name: &str, size: u64, mtime: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    for (d, c) in h[..100].iter_mut().zip(name.bytes()) {
        *d = c;
    }
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    if size <= OCTAL_MAX {
        octal(&mut h[124..136], size);
    } else {
        // GNU base-256: high bit set, big-endian value in the rest.
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    octal(&mut h[136..148], mtime.min(OCTAL_MAX));
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

/// `len` rounded up to a whole number of tar blocks.
pub(crate) fn padded(len: u64) -> u64 {
    len.div_ceil(TAR_BLOCK) * TAR_BLOCK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_header() {
        let h = header("a.ovf", 1234, 1_700_000_000);
        assert_eq!(&h[..6], b"a.ovf\0");
        assert_eq!(&h[124..136], b"00000002322\0");
        assert_eq!(&h[136..148], b"14524770400\0");
        assert_eq!(&h[257..265], b"ustar\x0000");
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        let mut z = h;
        z[148..156].fill(b' ');
        assert_eq!(stored, z.iter().map(|&b| u32::from(b)).sum::<u32>());
        let big = header("b", 1 << 40, 0);
        assert_eq!(big[124], 0x80);
        assert_eq!(&big[128..136], &(1u64 << 40).to_be_bytes());
        assert_eq!(padded(0), 0);
        assert_eq!(padded(513), 1024);
    }
}
