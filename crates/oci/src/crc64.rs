//! CRC-64/GO-ISO, the per-file checksum tar-split stores (Go's
//! `crc64.MakeTable(crc64.ISO)`: reflected polynomial
//! `0xD800000000000000`, initial value and final xor all ones). Stored
//! big-endian, 8 bytes.

use crc::{Crc, Digest, Table, CRC_64_GO_ISO};

/// Slice-by-16 tables: every member's data passes through this CRC, so the
/// byte-at-a-time table would cost more than decompressing the layer.
static GO_ISO: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_GO_ISO);

/// A running CRC-64/GO-ISO.
#[derive(Clone)]
pub(crate) struct Crc64(Digest<'static, u64, Table<16>>);

impl Default for Crc64 {
    fn default() -> Self {
        Self(GO_ISO.digest())
    }
}

impl Crc64 {
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// The checksum as tar-split stores it (big-endian).
    pub(crate) fn finish(&self) -> [u8; 8] {
        self.0.clone().finalize().to_be_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value() {
        // Catalogue check value of CRC-64/GO-ISO for "123456789".
        let mut c = Crc64::default();
        c.update(b"1234");
        c.update(b"56789");
        assert_eq!(u64::from_be_bytes(c.finish()), 0xb909_56c7_75a4_1001);
    }

    #[test]
    fn matches_the_bitwise_definition() {
        // Reflected polynomial 0xD800000000000000, init and xorout all
        // ones, one bit at a time (Go's crc64.ISO), over odd lengths and
        // split updates, so the sliced tables cannot drift from it.
        fn bitwise(data: &[u8]) -> u64 {
            let mut crc = !0u64;
            for &b in data {
                crc ^= u64::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 {
                        (crc >> 1) ^ 0xD800_0000_0000_0000
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        let data: Vec<u8> = (0..10_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in [0, 1, 7, 15, 16, 17, 255, 4096, 9_999] {
            let (a, b) = data[..len].split_at(len / 3);
            let mut c = Crc64::default();
            c.update(a);
            c.update(b);
            assert_eq!(
                u64::from_be_bytes(c.finish()),
                bitwise(&data[..len]),
                "len {len}"
            );
        }
    }
}
