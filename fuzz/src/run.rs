//! The run loop: every corpus input unchanged, then seeded mutations of
//! them until the time is up, each under `catch_unwind`, with a watchdog
//! for hangs and the counting allocator for memory.

use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::alloc;
use crate::mutate::{fnv, mutate, Rng};
use crate::target::Target;

/// How one target is run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Time budget for the mutation phase (the corpus always runs whole).
    pub seconds: f64,
    /// Stop after this many executions (corpus included) even if time
    /// is left: `make fuzz-million` runs each target to 10^6.
    pub max_execs: Option<u64>,
    /// Seed inputs (files; `*.zst` are decompressed).
    pub corpus: PathBuf,
    /// Where crashes, hangs and over-limit inputs are saved.
    pub artifacts: PathBuf,
    /// Seed of the mutation sequence.
    pub seed: u64,
    /// One execution longer than this is a hang.
    pub hang: Duration,
}

/// What one run found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Target name.
    pub target: String,
    /// Executions (corpus and mutated).
    pub execs: u64,
    /// Wall time, seconds.
    pub secs: f64,
    /// Inputs that panicked.
    pub crashes: u64,
    /// Inputs that ran longer than the hang limit.
    pub hangs: u64,
    /// Most bytes one execution had allocated at once.
    pub peak_bytes: usize,
    /// Distinct outcomes (result signatures) seen.
    pub outcomes: usize,
}

impl Report {
    /// One tab-separated line `kiln-fuzz all` parses.
    pub fn row(&self) -> String {
        format!(
            "ROW\t{}\t{}\t{:.1}\t{}\t{}\t{}\t{}",
            self.target,
            self.execs,
            self.secs,
            self.crashes,
            self.hangs,
            self.peak_bytes,
            self.outcomes
        )
    }
}

/// Most bytes of inputs kept in the pool (seeds included).
const MAX_POOL_BYTES: usize = 256 << 20;

static EPOCH: OnceLock<Instant> = OnceLock::new();
/// Start of the running execution in ns since `EPOCH` plus one; 0 = idle.
static RUNNING_SINCE: AtomicU64 = AtomicU64::new(0);
static EXECS: AtomicU64 = AtomicU64::new(0);
static CRASHES: AtomicU64 = AtomicU64::new(0);
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn now_ns() -> u64 {
    let e = EPOCH.get_or_init(Instant::now);
    u64::try_from(e.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Reads the seed inputs of a target, sorted by file name.
///
/// # Errors
/// A message naming the file that cannot be read or decompressed.
pub fn load_corpus(dir: &Path) -> Result<Vec<Vec<u8>>, String> {
    let mut names: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.') && n != "README.md")
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    names.sort();
    names
        .iter()
        .map(|p| {
            let raw = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            if p.extension().is_some_and(|x| x == "zst") {
                zstd::decode_all(raw.as_slice()).map_err(|e| format!("{}: {e}", p.display()))
            } else {
                Ok(raw)
            }
        })
        .collect()
}

fn save(dir: &Path, kind: &str, input: &[u8]) -> PathBuf {
    let path = dir.join(format!("{kind}-{:016x}.bin", fnv(input)));
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, input)) {
        eprintln!("kiln-fuzz: cannot save {}: {e}", path.display());
    }
    path
}

/// Installs the quiet panic hook that records the message and place.
pub fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic".to_string());
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(format!("{at}: {msg}"));
        }
    }));
}

/// Runs one input; `Err` carries the panic text.
pub fn exec(target: &Target, input: &[u8]) -> Result<u64, String> {
    alloc::set_current(input);
    RUNNING_SINCE.store(now_ns().saturating_add(1), Ordering::SeqCst);
    let r = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    RUNNING_SINCE.store(0, Ordering::SeqCst);
    EXECS.fetch_add(1, Ordering::Relaxed);
    r.map_err(|_| {
        LAST_PANIC
            .lock()
            .ok()
            .and_then(|mut l| l.take())
            .unwrap_or_else(|| "panic".to_string())
    })
}

/// Watches for an execution running past `opts.hang`: saves the input,
/// prints the report row with one hang and exits with status 1.
fn start_watchdog(name: String, opts: &RunOptions, started: Instant) {
    let hang_ns = u64::try_from(opts.hang.as_nanos()).unwrap_or(u64::MAX);
    let dir = opts.artifacts.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(20));
        let since = RUNNING_SINCE.load(Ordering::SeqCst);
        if since == 0 || now_ns().saturating_sub(since - 1) <= hang_ns {
            continue;
        }
        let input = alloc::current();
        let path = save(&dir, "hang", &input);
        eprintln!(
            "kiln-fuzz: {name}: HANG (one execution over {} ms); input saved to {}",
            hang_ns / 1_000_000,
            path.display()
        );
        let rep = Report {
            target: name.clone(),
            execs: EXECS.load(Ordering::Relaxed),
            secs: started.elapsed().as_secs_f64(),
            crashes: CRASHES.load(Ordering::Relaxed),
            hangs: 1,
            ..Report::default()
        };
        println!("{}", rep.row());
        crate::targets::remove_scratch();
        std::process::exit(1);
    });
}

/// Runs `target`: the corpus, then mutations until `opts.seconds` passed
/// or `opts.max_execs` executions ran.
///
/// # Errors
/// A message when the corpus cannot be read.
pub fn run(target: &Target, opts: &RunOptions) -> Result<Report, String> {
    let mut pool = load_corpus(&opts.corpus)?;
    if pool.is_empty() {
        eprintln!(
            "kiln-fuzz: {}: no corpus in {}; starting from an empty input",
            target.name,
            opts.corpus.display()
        );
        pool.push(Vec::new());
    }
    alloc::set_artifact_dir(opts.artifacts.clone());
    std::fs::create_dir_all(&opts.artifacts)
        .map_err(|e| format!("{}: {e}", opts.artifacts.display()))?;
    install_panic_hook();
    let started = Instant::now();
    start_watchdog(target.name.to_string(), opts, started);
    let mut rep = Report {
        target: target.name.to_string(),
        ..Report::default()
    };
    let mut seen_sigs = HashSet::new();
    let mut seen_panics = HashSet::new();
    let mut rng = Rng::new(opts.seed ^ fnv(target.name.as_bytes()));
    let seeds = pool.len();
    let deadline = Duration::from_secs_f64(opts.seconds.max(0.0));
    let mut i = 0usize;
    let mut input = Vec::new();
    let mut pool_bytes: usize = pool.iter().map(Vec::len).sum();
    loop {
        if i < seeds {
            input.clone_from(&pool[i]);
        } else {
            let enough = opts
                .max_execs
                .is_some_and(|m| u64::try_from(i).unwrap_or(u64::MAX) >= m);
            if enough || started.elapsed() >= deadline {
                break;
            }
            let a = rng.below(pool.len());
            let b = rng.below(pool.len());
            input.clone_from(&pool[a]);
            mutate(&mut rng, &mut input, &pool[b]);
        }
        i += 1;
        let before = alloc::live();
        alloc::reset_peak();
        let r = exec(target, &input);
        rep.peak_bytes = rep
            .peak_bytes
            .max(alloc::reset_peak().saturating_sub(before));
        match r {
            Ok(sig) => {
                // Keep inputs that end differently from all before: a
                // cheap stand-in for coverage that lets depth build up.
                if seen_sigs.insert(sig)
                    && i > seeds
                    && pool.len() < 2000
                    && pool_bytes + input.len() <= MAX_POOL_BYTES
                {
                    pool_bytes += input.len();
                    pool.push(input.clone());
                }
            }
            Err(msg) => {
                rep.crashes += 1;
                CRASHES.fetch_add(1, Ordering::Relaxed);
                let place = msg.split(": ").next().unwrap_or("").to_string();
                if seen_panics.insert(place) {
                    let path = save(&opts.artifacts, "crash", &input);
                    eprintln!(
                        "kiln-fuzz: {}: CRASH {msg}; input saved to {}",
                        target.name,
                        path.display()
                    );
                }
            }
        }
    }
    rep.execs = EXECS.load(Ordering::Relaxed);
    rep.secs = started.elapsed().as_secs_f64();
    rep.outcomes = seen_sigs.len();
    Ok(rep)
}

/// Shrinks `input` while it still panics at the same place: removes
/// chunks from large to single bytes, then zeroes bytes.
pub fn minimize(target: &Target, mut input: Vec<u8>) -> Result<Vec<u8>, String> {
    install_panic_hook();
    let place = |r: Result<u64, String>| {
        r.err()
            .map(|m| m.split(": ").next().unwrap_or("").to_string())
    };
    let want = place(exec(target, &input)).ok_or("the input does not crash")?;
    // Deleting bytes shifts every offset after them: right for text and
    // small inputs, hopeless for disk images, which are zeroed instead.
    let mut chunk = if input.len() <= 64 << 10 {
        input.len().max(1).next_power_of_two()
    } else {
        0
    };
    while chunk >= 1 {
        let mut at = 0;
        while at < input.len() {
            let end = (at + chunk).min(input.len());
            let mut cand = input.clone();
            cand.drain(at..end);
            if place(exec(target, &cand)).as_deref() == Some(want.as_str()) {
                input = cand;
            } else {
                at += chunk;
            }
        }
        chunk /= 2;
    }
    for block in [4096usize, 512, 64, 8, 1] {
        if block == 1 && input.len() > 64 << 10 {
            break;
        }
        let mut at = 0;
        while at < input.len() {
            let end = (at + block).min(input.len());
            if input[at..end].iter().any(|&b| b != 0) {
                let mut cand = input.clone();
                cand[at..end].fill(0);
                if place(exec(target, &cand)).as_deref() == Some(want.as_str()) {
                    input = cand;
                }
            }
            at = end;
        }
    }
    Ok(input)
}
