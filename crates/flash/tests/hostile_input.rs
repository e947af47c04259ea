//! Robustness of the mountinfo parser (the text comes from the system,
//! but a flash must not panic on whatever it holds): thousands of mutated
//! texts never panic (a deterministic stand-in for a fuzz target; each
//! mutation is reproducible from its seed).

use kiln_flash::mountinfo::parse_mountinfo;

#[path = "../../artifact/tests/common/mutate.rs"]
mod mutate;
use mutate::{mutate, Rng};

#[test]
fn mutated_mountinfo_never_panics() {
    let base = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut rng = Rng(12345);
    for _ in 0..5_000 {
        let text = mutate(&mut rng, base.as_bytes());
        let _ = parse_mountinfo(&String::from_utf8_lossy(&text));
    }
}
