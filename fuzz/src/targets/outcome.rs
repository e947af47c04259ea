//! Outcome signatures: how an input ended, as a number the runner
//! compares to keep inputs that reach something new.

use std::fmt::Display;

/// Signature of an error: its text without digits (offsets and sizes
/// change with every input; the kind of failure is what matters).
pub(crate) fn err_sig<E: Display + ?Sized>(e: &E) -> u64 {
    if std::env::var_os("KILN_FUZZ_DEBUG").is_some() {
        eprintln!("outcome: {e}");
    }
    let text: Vec<u8> = e
        .to_string()
        .bytes()
        .filter(|b| !b.is_ascii_digit())
        .take(160)
        .collect();
    crate::mutate::fnv(&text) | 1
}

/// Mixes `v` into signature `h`.
pub(crate) fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x100_0000_01b3).rotate_left(17)
}

/// Buckets a count logarithmically (so "read 1000 vs 1001 bytes" is one
/// outcome).
pub(crate) fn bucket(n: u64) -> u64 {
    u64::from(64 - n.leading_zeros())
}
