//! minisign's key derivation: scrypt (salsa20/8, SHA-256) with N, r, p
//! picked from libsodium's `opslimit`/`memlimit` pair exactly as
//! `crypto_pwhash_scryptsalsa208sha256` does (`pickparams` in libsodium's
//! `crypto_pwhash/scryptsalsa208sha256/pwhash_scryptsalsa208sha256.c`).

use crate::Error;
use zeroize::Zeroizing;

/// The scrypt cost of an encrypted secret key, as minisign stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfLimits {
    /// libsodium opslimit.
    pub opslimit: u64,
    /// libsodium memlimit (bytes).
    pub memlimit: u64,
}

impl KdfLimits {
    /// What `minisign -G` uses (libsodium's `*_SENSITIVE`): N = 2^20,
    /// r = 8, p = 1, 1 GiB of memory, a few seconds.
    pub const SENSITIVE: KdfLimits = KdfLimits {
        opslimit: 33_554_432,
        memlimit: 1_073_741_824,
    };
    /// Cheap limits for unit tests only (N = 2^10).
    pub const TEST: KdfLimits = KdfLimits {
        opslimit: 32_768,
        memlimit: 1_048_576,
    };
    /// The largest memlimit accepted when reading a key (a corrupt or
    /// hostile key must not make kiln allocate unbounded memory).
    const MAX_MEMLIMIT: u64 = 2 << 30;
    /// The largest opslimit accepted (64x minisign's default).
    const MAX_OPSLIMIT: u64 = 1 << 31;

    /// scrypt (log2 N, r, p) for these limits.
    fn params(self) -> Result<(u8, u32, u32), Error> {
        let bad = Error::KdfLimits {
            opslimit: self.opslimit,
            memlimit: self.memlimit,
        };
        if self.opslimit > Self::MAX_OPSLIMIT || self.memlimit > Self::MAX_MEMLIMIT {
            return Err(bad);
        }
        let ops = self.opslimit.max(32_768);
        let r: u64 = 8;
        let log2_below = |max_n: u64| {
            let mut n_log2 = 1u8;
            while n_log2 < 63 && (1u64 << n_log2) <= max_n / 2 {
                n_log2 += 1;
            }
            n_log2
        };
        if ops < self.memlimit / 32 {
            let n_log2 = log2_below(ops / (r * 4));
            Ok((n_log2, 8, 1))
        } else {
            let n_log2 = log2_below(self.memlimit / (r * 128));
            let maxrp = ((ops / 4) / (1u64 << n_log2)).min(0x3fff_ffff);
            let p = u32::try_from(maxrp / r).map_err(|_| bad)?;
            Ok((n_log2, 8, p.max(1)))
        }
    }

    /// The `len`-byte key stream for `passphrase` and `salt`.
    pub(crate) fn stream(
        self,
        passphrase: &[u8],
        salt: &[u8; 32],
        len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let bad = || Error::KdfLimits {
            opslimit: self.opslimit,
            memlimit: self.memlimit,
        };
        let (log_n, r, p) = self.params()?;
        let params = scrypt::Params::new(log_n, r, p, 32).map_err(|_| bad())?;
        let mut out = Zeroizing::new(vec![0u8; len]);
        scrypt::scrypt(passphrase, salt, &params, &mut out).map_err(|_| bad())?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minisign_defaults_pick_n_2_20_r_8_p_1() {
        assert_eq!(KdfLimits::SENSITIVE.params().unwrap(), (20, 8, 1));
        // libsodium's INTERACTIVE pair: N = 2^14, r = 8, p = 1.
        let interactive = KdfLimits {
            opslimit: 524_288,
            memlimit: 16_777_216,
        };
        assert_eq!(interactive.params().unwrap(), (14, 8, 1));
        assert_eq!(KdfLimits::TEST.params().unwrap(), (10, 8, 1));
    }

    #[test]
    fn huge_limits_are_refused() {
        let huge = KdfLimits {
            opslimit: u64::MAX,
            memlimit: u64::MAX,
        };
        assert!(matches!(huge.params(), Err(Error::KdfLimits { .. })));
    }
}
