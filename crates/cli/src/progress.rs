//! Byte progress of long steps, drawn by the CLI (the libraries report
//! done/total bytes through a callback; the clock and the terminal are
//! the CLI's): on a terminal, one bar per job (`indicatif`, redrawn in
//! place with carriage returns); otherwise (CI logs, pipes) plain lines,
//! at most one per job every [`LINE_EVERY`], plus the first and the last
//! of each phase, with no escape codes. Step notes (`kiln: writing p1
//! ...`) print above the bars, or as lines. Nothing at all when quiet.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The least time between two plain lines of the same job.
pub const LINE_EVERY: Duration = Duration::from_secs(1);

/// Bars (terminal) or plain lines (otherwise) for `n` jobs.
pub struct Bars {
    names: Vec<String>,
    draw: Draw,
}

enum Draw {
    Quiet,
    /// Per job, its bar once it reported (a job that never reports
    /// draws nothing); the styles for a known and an unknown total.
    Bars(
        Mutex<Vec<Option<indicatif::ProgressBar>>>,
        indicatif::MultiProgress,
        Box<[indicatif::ProgressStyle; 2]>,
    ),
    /// Per job: when its last line was printed, its phase then and when
    /// that phase started.
    Lines(Mutex<Vec<Option<(Instant, String, Instant)>>>),
}

impl Bars {
    /// One job per name (`""` for a single unnamed job); bars when stderr
    /// is a terminal.
    pub fn new(names: Vec<String>, quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let draw = if quiet {
            Draw::Quiet
        } else if tty {
            let bar = indicatif::ProgressStyle::with_template(
                "kiln: {prefix}{msg} [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            let open = indicatif::ProgressStyle::with_template(
                "kiln: {prefix}{msg} {spinner} {bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
            let multi = indicatif::MultiProgress::new();
            Draw::Bars(
                Mutex::new(vec![None; names.len()]),
                multi,
                Box::new([bar, open]),
            )
        } else {
            Draw::Lines(Mutex::new(vec![None; names.len()]))
        };
        Self { names, draw }
    }

    /// Job `i` has done `done` of `total` bytes (unknown total: `None`)
    /// in `phase` (e.g. "writing").
    pub fn report(&self, i: usize, phase: &str, done: u64, total: Option<u64>) {
        match &self.draw {
            Draw::Quiet => {}
            Draw::Bars(bars, multi, styles) => {
                let [bar, open] = &**styles;
                let Ok(mut bars) = bars.lock() else {
                    return;
                };
                let Some(slot) = bars.get_mut(i) else {
                    return;
                };
                let style = if total.is_some() { bar } else { open };
                let b = slot.get_or_insert_with(|| {
                    let b = indicatif::ProgressBar::new(total.unwrap_or(0))
                        .with_style(style.clone())
                        .with_prefix(self.names.get(i).cloned().unwrap_or_default())
                        .with_message(phase.to_owned());
                    multi.add(b)
                });
                if b.message() != phase {
                    b.set_style(style.clone());
                    b.set_message(phase.to_owned());
                    b.reset();
                }
                match total {
                    Some(t) => b.set_length(t.max(done)),
                    None => b.unset_length(),
                }
                b.set_position(done);
            }
            Draw::Lines(last) => {
                let Ok(mut last) = last.lock() else {
                    return;
                };
                let Some(l) = last.get_mut(i) else {
                    return;
                };
                let now = Instant::now();
                let since = match l {
                    Some((_, p, since)) if p == phase => *since,
                    _ => now,
                };
                let fresh = l
                    .as_ref()
                    .is_none_or(|(at, p, _)| p != phase || now - *at >= LINE_EVERY);
                let end = total == Some(done);
                if !fresh && !end {
                    return;
                }
                *l = Some((now, phase.to_owned(), since));
                self.line(i, phase, done, total, since);
            }
        }
    }

    /// A plain progress line, with speed and ETA from the time since the
    /// phase started (`since`).
    fn line(&self, i: usize, phase: &str, done: u64, total: Option<u64>, since: Instant) {
        let name = self.names.get(i).map_or("", String::as_str);
        let secs = since.elapsed().as_secs_f64();
        let amount = match total {
            Some(t) if t > 0 => format!("{:.1}%", done as f64 * 100.0 / t as f64),
            _ => format!("{} MiB", done >> 20),
        };
        // Too early in the phase for a meaningful speed.
        if secs < 0.1 {
            eprintln!("kiln: {name}{phase} {amount}");
            return;
        }
        let speed = done as f64 / secs;
        match total {
            Some(t) if t > 0 => {
                let eta = (t.saturating_sub(done)) as f64 / speed.max(1.0);
                eprintln!(
                    "kiln: {name}{phase} {amount} ({:.1} MiB/s, ETA {eta:.0}s)",
                    speed / 1048576.0
                );
            }
            _ => eprintln!(
                "kiln: {name}{phase} {amount} ({:.1} MiB/s)",
                speed / 1048576.0
            ),
        }
    }

    /// A step starts: `kiln: {msg}` above the bars, or as a line.
    pub fn note(&self, msg: &str) {
        match &self.draw {
            Draw::Quiet => {}
            Draw::Bars(_, multi, _) => {
                // Not drawn (stderr went away): nothing to do about it.
                multi.println(format!("kiln: {msg}")).ok();
            }
            Draw::Lines(_) => eprintln!("kiln: {msg}"),
        }
    }

    /// Removes the bars (before the closing lines are printed).
    pub fn done(&self) {
        if let Draw::Bars(bars, multi, _) = &self.draw {
            if let Ok(bars) = bars.lock() {
                for b in bars.iter().flatten() {
                    b.finish_and_clear();
                }
            }
            // A failed clear leaves a stale bar line: nothing to recover.
            multi.clear().ok();
        }
    }
}
