//! `kiln-fuzz`: an in-tree mutation fuzzer for every kiln parser of
//! untrusted bytes, on the stable toolchain (cargo-fuzz and libFuzzer
//! need nightly).
//!
//! ```text
//! kiln-fuzz list
//! kiln-fuzz run TARGET [--seconds N] [--execs N] [--corpus DIR] [--seed S] [--limit-mib M]
//! kiln-fuzz all [--seconds N] [--execs N] [--seed S] [--only a,b]   # one process per target, then a table
//! kiln-fuzz repro TARGET FILE                            # one input; exit 1 if it panics
//! kiln-fuzz minimize TARGET FILE OUT                     # shrink a crashing input
//! kiln-fuzz pack-oci DIR OUT                             # an image directory as an `oci` seed
//! kiln-fuzz unpack-oci FILE DIR                           # and back (to look at a crash)
//! ```
//!
//! Every input runs under `catch_unwind`; one execution over 1 s is a
//! hang; the counting allocator fails any allocation that passes the
//! bound (512 MiB by default, one allocation or the live total). Crashes,
//! hangs and over-limit inputs are saved to `fuzz/artifacts/TARGET/` and
//! make the run exit non-zero. Mutations are deterministic for a seed.

mod alloc;
mod mutate;
mod run;
mod target;
mod targets;
mod template;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

const USAGE: &str = "usage: kiln-fuzz list | run TARGET [--seconds N] [--execs N] [--corpus DIR] [--seed S] [--limit-mib M] \
| all [--seconds N] [--execs N] [--seed S] [--only a,b] | repro TARGET FILE | minimize TARGET FILE OUT | pack-oci DIR OUT | unpack-oci FILE DIR";

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `--name value` options after the positional arguments.
struct Flags(Vec<(String, String)>);

impl Flags {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut out = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let name = a
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {a:?}"))?;
            let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            out.push((name.to_string(), v.clone()));
        }
        Ok(Self(out))
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.get(name) {
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: not a number: {v}")),
            None => Ok(default),
        }
    }
    fn check(&self, known: &[&str]) -> Result<(), String> {
        match self.0.iter().find(|(n, _)| !known.contains(&n.as_str())) {
            Some((n, _)) => Err(format!("unknown option --{n}")),
            None => Ok(()),
        }
    }
}

fn target(name: &str) -> Result<&'static targets::Target, String> {
    targets::find(name).ok_or_else(|| format!("unknown target {name:?} (kiln-fuzz list)"))
}

fn print_table(rows: &[run::Report], failed: &[(String, String)]) {
    println!(
        "| target | executions | exec/s | crashes | hangs | peak MiB/exec | outcomes |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        println!(
            "| {} | {} | {:.0} | {} | {} | {:.1} | {} |",
            r.target,
            r.execs,
            r.execs as f64 / r.secs.max(1e-9),
            r.crashes,
            r.hangs,
            r.peak_bytes as f64 / f64::from(1u32 << 20),
            r.outcomes
        );
    }
    for (t, why) in failed {
        println!("| {t} | FAILED: {why} | | | | | |");
    }
}

fn parse_row(line: &str) -> Option<run::Report> {
    let f: Vec<&str> = line.strip_prefix("ROW\t")?.split('\t').collect();
    Some(run::Report {
        target: (*f.first()?).to_string(),
        execs: f.get(1)?.parse().ok()?,
        secs: f.get(2)?.parse().ok()?,
        crashes: f.get(3)?.parse().ok()?,
        hangs: f.get(4)?.parse().ok()?,
        peak_bytes: f.get(5)?.parse().ok()?,
        outcomes: f.get(6)?.parse().ok()?,
    })
}

/// Runs each target in its own process (an over-limit allocation aborts
/// the process; a hang exits it), then prints the table.
fn all(flags: &Flags) -> Result<bool, String> {
    flags.check(&["seconds", "execs", "seed", "only", "limit-mib"])?;
    let only: Option<Vec<&str>> = flags.get("only").map(|s| s.split(',').collect());
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for t in targets::ALL
        .iter()
        .filter(|t| only.as_ref().is_none_or(|o| o.contains(&t.name)))
    {
        eprintln!("kiln-fuzz: running {}", t.name);
        let mut cmd = Command::new(&exe);
        cmd.args(["run", t.name]);
        for k in ["seconds", "execs", "seed", "limit-mib"] {
            if let Some(v) = flags.get(k) {
                cmd.args([format!("--{k}"), v.to_string()]);
            }
        }
        let out = cmd
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.lines().rev().find_map(parse_row) {
            Some(r) => rows.push(r),
            None => failed.push((
                t.name.to_string(),
                format!("exited with {} (see above)", out.status),
            )),
        }
    }
    print_table(&rows, &failed);
    Ok(failed.is_empty() && rows.iter().all(|r| r.crashes == 0 && r.hangs == 0))
}

fn run_one(name: &str, flags: &Flags) -> Result<bool, String> {
    flags.check(&["seconds", "execs", "corpus", "seed", "limit-mib"])?;
    let t = target(name)?;
    alloc::set_limit(flags.num("limit-mib", alloc::DEFAULT_LIMIT >> 20)? << 20);
    let opts = run::RunOptions {
        seconds: flags.num("seconds", 60.0)?,
        max_execs: match flags.get("execs") {
            Some(_) => Some(flags.num("execs", 0)?),
            None => None,
        },
        corpus: flags
            .get("corpus")
            .map_or_else(|| fuzz_dir().join("corpus").join(name), PathBuf::from),
        artifacts: fuzz_dir().join("artifacts").join(name),
        seed: flags.num("seed", 1)?,
        hang: Duration::from_secs(1),
    };
    let rep = run::run(t, &opts);
    targets::remove_scratch();
    let rep = rep?;
    println!("{}", rep.row());
    print_table(std::slice::from_ref(&rep), &[]);
    Ok(rep.crashes == 0 && rep.hangs == 0)
}

fn read(p: &str) -> Result<Vec<u8>, String> {
    let raw = std::fs::read(p).map_err(|e| format!("{p}: {e}"))?;
    if Path::new(p).extension().is_some_and(|x| x == "zst") {
        return zstd::decode_all(raw.as_slice()).map_err(|e| format!("{p}: {e}"));
    }
    Ok(raw)
}

fn main_inner(args: &[String]) -> Result<bool, String> {
    let pos = |i: usize| {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| USAGE.to_string())
    };
    match pos(0)? {
        "list" => {
            for t in targets::ALL {
                println!("{:<18} {}", t.name, t.invariant);
            }
            Ok(true)
        }
        "run" => run_one(pos(1)?, &Flags::parse(&args[2..])?),
        "all" => all(&Flags::parse(&args[1..])?),
        "repro" => {
            let t = target(pos(1)?)?;
            run::install_panic_hook();
            match run::exec(t, &read(pos(2)?)?) {
                Ok(sig) => {
                    println!("ok (outcome {sig:016x})");
                    Ok(true)
                }
                Err(msg) => {
                    println!("PANIC {msg}");
                    Ok(false)
                }
            }
        }
        "minimize" => {
            let t = target(pos(1)?)?;
            let small = run::minimize(t, read(pos(2)?)?)?;
            std::fs::write(pos(3)?, &small).map_err(|e| e.to_string())?;
            println!("{} bytes", small.len());
            Ok(true)
        }
        "pack-oci" => {
            let packed = template::pack(Path::new(pos(1)?))
                .map_err(|e| format!("{}: {e}", pos(1).unwrap_or("")))?;
            std::fs::write(pos(2)?, packed).map_err(|e| e.to_string())?;
            Ok(true)
        }
        "unpack-oci" => {
            let dir = Path::new(pos(2)?);
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            let n = template::materialize(&read(pos(1)?)?, dir).map_err(|e| e.to_string())?;
            println!("{n} files");
            Ok(true)
        }
        _ => Err(USAGE.to_string()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = main_inner(&args);
    targets::remove_scratch();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("kiln-fuzz: {e}");
            ExitCode::from(2)
        }
    }
}
