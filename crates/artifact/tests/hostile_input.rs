//! Robustness of the parsers of untrusted input: thousands of mutated
//! bmap documents never panic and never allocate past their bounds (a
//! deterministic stand-in for the cargo-fuzz targets; each mutation is
//! reproducible from its seed). The mountinfo and GPT cases live with
//! their code, in kiln-flash and kiln-part.

use kiln_artifact::bmap::{BlockRange, Bmap};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            1 if !v.is_empty() => {
                let n = rng.below(v.len());
                v.truncate(n);
            }
            2 => {
                let i = rng.below(v.len() + 1);
                let tokens: [&[u8]; 8] = [
                    b"<",
                    b">",
                    b"</Range>",
                    b"&",
                    b"\"",
                    b"-",
                    b"99999999999999999999999",
                    b"<!--",
                ];
                let t = tokens[rng.below(tokens.len())];
                v.splice(i..i, t.iter().copied());
            }
            3 if v.len() > 2 => {
                let a = rng.below(v.len());
                let b = rng.below(v.len());
                let (a, b) = (a.min(b), a.max(b));
                v.drain(a..b);
            }
            4 if !v.is_empty() => {
                let i = rng.below(v.len());
                let c = v[i];
                v.insert(i, c);
            }
            _ => {
                let i = rng.below(v.len() + 1);
                v.insert(i, b"0123456789 \n"[rng.below(12)]);
            }
        }
    }
    v
}

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
