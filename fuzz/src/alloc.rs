//! A counting global allocator that bounds memory per run.
//!
//! Every allocation is counted; one allocation above the bound ([`set_limit`], bytes), or
//! one that would take what the running execution holds (the live total
//! less what was live when it started: corpus and pool) above it, fails. Before failing, the
//! input being executed ([`set_current`]) is saved to the target's
//! artifact directory as `oom-<hash>.bin`, so a header that claims
//! terabytes and makes a parser allocate them is caught and reproducible.
//! (A failed allocation then aborts the process through the standard
//! allocation-error handler; `kiln-fuzz all` reports the target as failed.)

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// Default bound on one allocation and on the live total, bytes.
pub const DEFAULT_LIMIT: usize = 512 << 20;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_LIMIT);
/// Live bytes when the current execution started (the harness's own
/// memory: corpus, pool), not charged to the execution.
static BASE: AtomicUsize = AtomicUsize::new(0);
static REPORTING: AtomicBool = AtomicBool::new(false);
static CURRENT: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static ARTIFACTS: OnceLock<PathBuf> = OnceLock::new();

/// The allocator installed by `main.rs`.
pub struct Counting;

// SAFETY: every method forwards to `System` with the caller's layout and
// pointer unchanged; the counters are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !admit(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged (see the impl).
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !admit(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged (see the impl).
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !admit(new_size - old) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged (see the impl).
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            if new_size > old {
                LIVE.fetch_sub(new_size - old, Ordering::Relaxed);
            }
        } else if new_size < old {
            LIVE.fetch_sub(old - new_size, Ordering::Relaxed);
        }
        p
    }
}

/// Counts `size` more live bytes, or refuses (saving the current input)
/// when that passes the limit.
fn admit(size: usize) -> bool {
    let limit = LIMIT.load(Ordering::Relaxed);
    let live = LIVE.fetch_add(size, Ordering::Relaxed).saturating_add(size);
    let charged = live.saturating_sub(BASE.load(Ordering::Relaxed));
    if size > limit || charged > limit {
        LIVE.fetch_sub(size, Ordering::Relaxed);
        over_limit(size, live);
        return false;
    }
    PEAK.fetch_max(live, Ordering::Relaxed);
    true
}

/// Saves the input being run. Allocating here is fine: nested
/// allocations are small and go through `admit` again, and `REPORTING`
/// stops a second report.
fn over_limit(size: usize, live: usize) {
    if REPORTING.swap(true, Ordering::SeqCst) {
        return;
    }
    eprintln!(
        "kiln-fuzz: allocation of {size} bytes (live total {live}, {} at the start of this execution) over the bound",
        BASE.load(Ordering::Relaxed)
    );
    if let (Some(dir), Ok(input)) = (ARTIFACTS.get(), CURRENT.try_lock()) {
        let path = dir.join(format!("oom-{:016x}.bin", crate::mutate::fnv(&input)));
        match std::fs::write(&path, &*input) {
            Ok(()) => eprintln!("kiln-fuzz: input saved to {}", path.display()),
            Err(e) => eprintln!("kiln-fuzz: cannot save {}: {e}", path.display()),
        }
    }
    REPORTING.store(false, Ordering::SeqCst);
}

/// Sets the bound, bytes.
pub fn set_limit(bytes: usize) {
    LIMIT.store(bytes, Ordering::Relaxed);
}

/// Where over-limit inputs are saved.
pub fn set_artifact_dir(dir: PathBuf) {
    let _ = ARTIFACTS.set(dir);
}

/// Records the input about to run (copied into a buffer kept between
/// runs) and starts charging allocations to it.
pub fn set_current(input: &[u8]) {
    if let Ok(mut cur) = CURRENT.lock() {
        cur.clear();
        cur.extend_from_slice(input);
    }
    BASE.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// A copy of the input last given to [`set_current`].
pub fn current() -> Vec<u8> {
    CURRENT.lock().map(|c| c.clone()).unwrap_or_default()
}

/// Live bytes now.
pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Resets the peak to the live total and returns the previous peak.
pub fn reset_peak() -> usize {
    PEAK.swap(LIVE.load(Ordering::Relaxed), Ordering::Relaxed)
}
