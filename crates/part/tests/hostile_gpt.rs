//! Robustness of the GPT relocation a flash runs on whatever image it
//! was given: thousands of mutated GPT headers never panic and never
//! allocate past their bounds (a deterministic stand-in for a fuzz
//! target; each mutation is reproducible from its seed).

use kiln_part::move_backup_gpt;
use kiln_units::SectorSize;

#[path = "../../artifact/tests/common/mutate.rs"]
mod mutate;
use mutate::Rng;

#[test]
fn mutated_gpt_headers_never_panic() {
    // A synthetic header built by mutating random fields exercises the
    // same bounds checks as a real GPT would.
    let mut rng = Rng(777);
    for _ in 0..3_000 {
        let mut disk = vec![0u8; 256 * 512];
        disk[512..520].copy_from_slice(b"EFI PART");
        for b in &mut disk[520..604] {
            *b = if rng.below(3) == 0 {
                rng.next() as u8
            } else {
                0
            };
        }
        // Sometimes a plausible header size and entry size.
        if rng.below(2) == 0 {
            disk[524..528].copy_from_slice(&92u32.to_le_bytes());
            disk[596..600].copy_from_slice(&128u32.to_le_bytes());
        }
        let cap = 256 * 512 + rng.below(4) as u64 * 512 * 100;
        disk.resize(cap as usize, 0);
        let _ = move_backup_gpt(&mut disk, SectorSize::S512, cap);
    }
}
