//! Byte progress of long steps, drawn by the CLI (the libraries report
//! done/total bytes through a callback; the clock and the terminal are
//! the CLI's): on a terminal, one bar per job (`indicatif`, redrawn in
//! place with carriage returns); otherwise (CI logs, pipes) plain lines,
//! at most one per job every [`LINE_EVERY`], plus the first and the last
//! of each phase, with no escape codes. Nothing at all when quiet.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The least time between two plain lines of the same job.
pub const LINE_EVERY: Duration = Duration::from_secs(1);

/// Bars (terminal) or plain lines (otherwise) for `n` jobs.
pub struct Bars {
    names: Vec<String>,
    started: Instant,
    draw: Draw,
}

enum Draw {
    Quiet,
    Bars(Vec<indicatif::ProgressBar>, indicatif::MultiProgress),
    /// Per job: when its last line was printed and its phase then.
    Lines(Mutex<Vec<Option<(Instant, &'static str)>>>),
}

impl Bars {
    /// One job per name (`""` for a single unnamed job); bars when stderr
    /// is a terminal.
    pub fn new(names: Vec<String>, quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let draw = if quiet {
            Draw::Quiet
        } else if tty {
            let multi = indicatif::MultiProgress::new();
            let style = indicatif::ProgressStyle::with_template(
                "kiln: {prefix}{msg:9} [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            let bars = names
                .iter()
                .map(|n| {
                    // Length 1 until the first report: 0 would draw 100%.
                    let b = multi.add(indicatif::ProgressBar::new(1));
                    b.set_style(style.clone());
                    b.set_prefix(n.clone());
                    b.set_message("starting");
                    b
                })
                .collect();
            Draw::Bars(bars, multi)
        } else {
            Draw::Lines(Mutex::new(vec![None; names.len()]))
        };
        Self {
            names,
            started: Instant::now(),
            draw,
        }
    }

    /// Job `i` has done `done` of `total` bytes (unknown total: `None`)
    /// in `phase` (e.g. "writing").
    pub fn report(&self, i: usize, phase: &'static str, done: u64, total: Option<u64>) {
        match &self.draw {
            Draw::Quiet => {}
            Draw::Bars(bars, _) => {
                if let Some(b) = bars.get(i) {
                    if b.message() != phase {
                        b.set_message(phase);
                        b.reset();
                    }
                    b.set_length(total.unwrap_or(done).max(done));
                    b.set_position(done);
                }
            }
            Draw::Lines(last) => {
                let Ok(mut last) = last.lock() else {
                    return;
                };
                let Some(l) = last.get_mut(i) else {
                    return;
                };
                let now = Instant::now();
                let fresh = l.is_none_or(|(at, p)| p != phase || now - at >= LINE_EVERY);
                let end = total == Some(done);
                if !fresh && !end {
                    return;
                }
                *l = Some((now, phase));
                self.line(i, phase, done, total);
            }
        }
    }

    /// A plain progress line, with speed and ETA from the time since
    /// [`Bars::new`].
    fn line(&self, i: usize, phase: &str, done: u64, total: Option<u64>) {
        let name = self.names.get(i).map_or("", String::as_str);
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let speed = done as f64 / secs;
        match total {
            Some(t) if t > 0 => {
                let eta = (t.saturating_sub(done)) as f64 / speed.max(1.0);
                eprintln!(
                    "kiln: {name}{phase} {:.1}% ({:.1} MiB/s, ETA {:.0}s)",
                    done as f64 * 100.0 / t as f64,
                    speed / 1048576.0,
                    eta
                );
            }
            _ => eprintln!(
                "kiln: {name}{phase} {} MiB ({:.1} MiB/s)",
                done >> 20,
                speed / 1048576.0
            ),
        }
    }

    /// Removes the bars (before the closing lines are printed).
    pub fn done(&self) {
        if let Draw::Bars(bars, multi) = &self.draw {
            for b in bars {
                b.finish_and_clear();
            }
            // A failed clear leaves a stale bar line: nothing to recover.
            multi.clear().ok();
        }
    }
}
