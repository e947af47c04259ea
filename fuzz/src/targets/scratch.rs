//! The per-process scratch directory of the targets whose parser takes a
//! path instead of bytes.

/// A scratch directory for targets whose parser takes a path: one per
/// process (a fresh temporary directory per execution would put a new
/// random name into every error message and cost more than the parse),
/// emptied before each use. [`remove_scratch`] deletes it at the end.
pub(crate) fn scratch() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("kiln-fuzz-{}", std::process::id()));
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Deletes the directory [`scratch`] made, if any.
pub fn remove_scratch() {
    let dir = std::env::temp_dir().join(format!("kiln-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(dir);
}
