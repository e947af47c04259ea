//! Deterministic seeded mutations: bit flips, byte sets, interesting
//! integers at aligned offsets (both endiannesses), chunk splice from
//! another input, chunk duplication and deletion, truncation and
//! extension. The same seed gives the same sequence of inputs.

/// splitmix64: small, fast, good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }
    /// True with probability 1/n.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// FNV-1a 64 of `data` (artifact names, outcome signatures).
pub fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Values that break size and offset arithmetic.
const INTERESTING: [u64; 22] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x200,
    0x1000,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    0xffff_ffff_ffff_fffe,
    u64::MAX,
];

/// Largest input a mutation may grow to, bytes.
pub const MAX_LEN: usize = 64 << 20;

/// Applies 1 to 8 stacked mutations to `data`; `other` feeds splices.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        one(rng, data, other);
    }
    data.truncate(MAX_LEN);
}

/// An offset to mutate: half the time uniform, half the time the next
/// non-zero byte after a uniform start (disk images are mostly zeros and
/// their metadata sits in the non-zero parts).
fn pick(rng: &mut Rng, data: &[u8]) -> usize {
    let at = rng.below(data.len());
    if rng.one_in(2) {
        return at;
    }
    let end = data.len().min(at.saturating_add(1 << 20));
    data.get(at..end)
        .and_then(|s| s.iter().position(|&b| b != 0))
        .map_or(at, |p| at + p)
}

fn one(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    if data.is_empty() {
        let n = 1 + rng.below(64);
        data.extend((0..n).map(|_| rng.next_u64() as u8));
        return;
    }
    match rng.below(10) {
        0 | 1 => {
            let at = pick(rng, data);
            data[at] ^= 1 << rng.below(8);
        }
        2 => {
            let at = pick(rng, data);
            data[at] = rng.next_u64() as u8;
        }
        3..=5 => interesting(rng, data),
        6 => splice(rng, data, other),
        7 => {
            // Duplicate a chunk in place.
            let at = pick(rng, data);
            let len = 1 + rng.below((data.len() - at).min(4096));
            let chunk = data[at..at + len].to_vec();
            let to = rng.below(data.len() + 1);
            data.splice(to..to, chunk);
        }
        8 => {
            let at = pick(rng, data);
            let len = 1 + rng.below((data.len() - at).min(4096));
            data.drain(at..at + len);
        }
        _ => {
            if rng.one_in(2) {
                let keep = rng.below(data.len());
                data.truncate(keep);
            } else {
                let n = 1 + rng.below(4096);
                let fill = if rng.one_in(2) {
                    0
                } else {
                    rng.next_u64() as u8
                };
                data.resize(data.len() + n, fill);
            }
        }
    }
}

/// Writes an interesting integer of 1, 2, 4 or 8 bytes, little or big
/// endian, at an offset aligned to its width.
fn interesting(rng: &mut Rng, data: &mut [u8]) {
    let width = 1usize << rng.below(4);
    if data.len() < width {
        return;
    }
    let at = pick(rng, data).min(data.len() - width) / width * width;
    let mut v = INTERESTING[rng.below(INTERESTING.len())];
    match rng.below(4) {
        0 => v = v.wrapping_add(1 + rng.below(16) as u64),
        1 => v = v.wrapping_sub(1 + rng.below(16) as u64),
        _ => {}
    }
    // The low `width` bytes of `v`, in either byte order.
    let le = v.to_le_bytes();
    let be = v.to_be_bytes();
    let src = if rng.one_in(2) {
        &le[..width]
    } else {
        &be[8 - width..]
    };
    data[at..at + width].copy_from_slice(src);
}

/// Copies a chunk of `other` over or into `data`.
fn splice(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    if other.is_empty() {
        return;
    }
    let from = pick(rng, other);
    let len = 1 + rng.below((other.len() - from).min(4096));
    let chunk = &other[from..from + len];
    let at = rng.below(data.len());
    if rng.one_in(2) {
        let end = (at + len).min(data.len());
        data[at..end].copy_from_slice(&chunk[..end - at]);
    } else {
        data.splice(at..at, chunk.iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_inputs() {
        let base = vec![7u8; 1000];
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..50)
                .map(|_| {
                    let mut d = base.clone();
                    mutate(&mut rng, &mut d, b"other input");
                    d
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn mutations_change_inputs_and_stay_bounded() {
        let mut rng = Rng::new(3);
        let mut changed = 0;
        for _ in 0..500 {
            let mut d = vec![0u8; 64];
            mutate(&mut rng, &mut d, &[1, 2, 3, 4]);
            changed += usize::from(d != vec![0u8; 64]);
            assert!(d.len() <= MAX_LEN);
        }
        assert!(changed > 400, "only {changed} of 500 mutated inputs differ");
    }

    #[test]
    fn big_endian_interesting_values_land_in_place() {
        let mut rng = Rng::new(9);
        let mut saw_be = false;
        for _ in 0..2000 {
            let mut d = vec![0u8; 16];
            interesting(&mut rng, &mut d);
            // A 4-byte big-endian 1 is 00 00 00 01.
            saw_be |= d.chunks(4).any(|c| c == [0, 0, 0, 1]);
        }
        assert!(saw_be);
    }
}
