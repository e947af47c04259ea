//! CRC-64/GO-ISO, the per-file checksum tar-split stores (Go's
//! `crc64.MakeTable(crc64.ISO)`: reflected polynomial
//! `0xD800000000000000`, initial value and final xor all ones). Stored
//! big-endian, 8 bytes.

const POLY: u64 = 0xD800_0000_0000_0000;

const fn table() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut k = 0;
        while k < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            k += 1;
        }
        t[i] = crc;
        i += 1;
    }
    t
}

static TABLE: [u64; 256] = table();

/// A running CRC-64/GO-ISO.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Crc64(u64);

impl Default for Crc64 {
    fn default() -> Self {
        Self(!0)
    }
}

impl Crc64 {
    pub(crate) fn update(&mut self, data: &[u8]) {
        let mut crc = self.0;
        for &b in data {
            let idx = usize::from((crc as u8) ^ b);
            crc = TABLE.get(idx).copied().unwrap_or(0) ^ (crc >> 8);
        }
        self.0 = crc;
    }
    /// The checksum as tar-split stores it (big-endian).
    pub(crate) fn finish(self) -> [u8; 8] {
        (!self.0).to_be_bytes()
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
}
