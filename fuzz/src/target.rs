//! What a fuzz target is.

/// One fuzz target.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Name on the command line and of the corpus directory.
    pub name: &'static str,
    /// What must hold for every input.
    pub invariant: &'static str,
    /// Runs one input and returns its outcome signature.
    pub run: fn(&[u8]) -> u64,
}
