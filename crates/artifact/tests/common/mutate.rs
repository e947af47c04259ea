//! Seeded, reproducible mutations for the hostile-input tests of
//! kiln-artifact, kiln-flash and kiln-part (included with `#[path]`): a
//! xorshift generator and a byte mutator (flips, sets, inserts, cuts).
#![allow(dead_code)]

pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

pub fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
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
