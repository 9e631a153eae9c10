//! Progress reporting: a spinner or bar on a terminal, plain log lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Where progress goes (always stderr, so stdout stays for results).
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    tty: bool,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
            quiet,
        }
    }

    /// A reporter that prints nothing (library callers and tests).
    pub fn silent() -> Self {
        Progress {
            tty: false,
            quiet: true,
        }
    }

    /// Starts a step; it shows a spinner on a TTY, or one log line otherwise.
    pub fn step(&self, msg: impl Into<String>) -> Step {
        let msg = msg.into();
        let bar = if self.quiet {
            None
        } else if self.tty {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_message(msg.clone());
            b.enable_steady_tick(Duration::from_millis(120));
            Some(b)
        } else {
            eprintln!("stratos: {msg} ...");
            None
        };
        Step {
            bar,
            msg,
            start: Instant::now(),
            progress: *self,
        }
    }

    /// A bar with a known total (e.g. files compiled), on a TTY; plain lines every 10% otherwise.
    pub fn bar(&self, msg: impl Into<String>, total: u64) -> Bar {
        let msg = msg.into();
        let bar = if self.quiet {
            None
        } else if self.tty {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed}, eta {eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.set_message(msg.clone());
            Some(b)
        } else {
            eprintln!("stratos: {msg} ...");
            None
        };
        Bar {
            bar,
            msg,
            total: total.max(1),
            pos: 0,
            last_decile: 0,
            quiet: self.quiet,
        }
    }

    pub fn info(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("stratos: {}", msg.as_ref());
        }
    }

    /// Always printed, even when quiet.
    pub fn warn(&self, msg: impl AsRef<str>) {
        eprintln!("stratos: WARNING: {}", msg.as_ref());
    }
}

pub struct Step {
    bar: Option<ProgressBar>,
    msg: String,
    start: Instant,
    progress: Progress,
}

impl Step {
    pub fn done(self) {
        let took = self.start.elapsed();
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if !self.progress.quiet && (self.progress.tty || took > Duration::from_secs(1)) {
            eprintln!("stratos: {} ({:.1}s)", self.msg, took.as_secs_f64());
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

pub struct Bar {
    bar: Option<ProgressBar>,
    msg: String,
    total: u64,
    pos: u64,
    last_decile: u64,
    quiet: bool,
}

impl Bar {
    pub fn set(&mut self, pos: u64) {
        self.pos = pos.min(self.total);
        if let Some(b) = &self.bar {
            b.set_position(self.pos);
        } else if !self.quiet {
            let decile = self.pos * 10 / self.total;
            if decile > self.last_decile {
                self.last_decile = decile;
                eprintln!("stratos: {}: {}%", self.msg, decile * 10);
            }
        }
    }

    pub fn finish(self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Human-readable byte size.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
