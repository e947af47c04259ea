//! The fixed directory skeleton of the engine's overlay2 store (moby
//! `image/`, `layer/`, `daemon/graphdriver/overlay2`), shared by the
//! writer (`store.rs`) and the merge with an existing store (`merge.rs`).

/// The directories every store has, with the modes the engine gives them.
pub(crate) const STORE_DIRS: &[(&str, u32)] = &[
    ("image", 0o700),
    ("image/overlay2", 0o700),
    ("image/overlay2/distribution", 0o700),
    ("image/overlay2/imagedb", 0o700),
    ("image/overlay2/imagedb/content", 0o700),
    ("image/overlay2/imagedb/content/sha256", 0o700),
    ("image/overlay2/imagedb/metadata", 0o700),
    ("image/overlay2/imagedb/metadata/sha256", 0o700),
    ("image/overlay2/layerdb", 0o700),
    ("image/overlay2/layerdb/sha256", 0o755),
    ("image/overlay2/layerdb/tmp", 0o755),
    ("overlay2", 0o710),
    ("overlay2/l", 0o700),
];
