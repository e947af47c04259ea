//! Robustness of the parsers of untrusted input: thousands of mutated
//! bmap documents never panic and never allocate past their bounds (a
//! deterministic stand-in for the cargo-fuzz targets; each mutation is
//! reproducible from its seed). The mountinfo and GPT cases live with
//! their code, in kiln-flash and kiln-part.

use kiln_artifact::bmap::{BlockRange, Bmap};

#[path = "common/mutate.rs"]
mod mutate;
use mutate::{mutate, Rng};

#[test]
fn mutated_bmaps_never_panic() {
    let img: Vec<u8> = (0..64 * 4096u32)
        .map(|i| if i % 9000 < 300 { i as u8 } else { 0 })
        .collect();
    let ranges = kiln_artifact::bmap::nonzero_ranges(&img, 4096).unwrap();
    let xml = Bmap::from_image(&img, img.len() as u64, 4096, &ranges)
        .unwrap()
        .to_xml();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let doc = mutate(&mut rng, xml.as_bytes());
        if let Ok(b) = Bmap::parse(&doc) {
            // Whatever is accepted is self-consistent.
            accepted += 1;
            assert!(b
                .ranges()
                .windows(2)
                .all(|w| w[0].blocks.last < w[1].blocks.first));
            assert!(b.ranges().iter().all(|r| r.blocks.last < b.blocks_count()));
        }
    }
    // Most mutations break the file checksum and are refused.
    assert!(accepted < 1_000, "{accepted} mutated documents accepted");
    // Ranges that cover nothing are still refused.
    assert!(BlockRange::cover_extents(&[(u64::MAX, 2)], 4096).is_err());
}
