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

/// `-v/--verbose`, set once by the command line: show the external commands StratOS runs.
static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_verbose(on: bool) {
    VERBOSE.store(on, std::sync::atomic::Ordering::Relaxed);
}

pub fn verbose() -> bool {
    VERBOSE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Shows `cmd` on stderr (with `-v`), as a line that can be pasted into a shell, and gives it
/// back: spawn sites write `traced(&mut cmd).output()` or `Command::new(..).args(..).traced()`.
pub trait Traced {
    fn traced(&mut self) -> &mut Self;
}

impl Traced for std::process::Command {
    fn traced(&mut self) -> &mut Self {
        if verbose() {
            eprintln!("stratos: + {}", shell_line(self));
        }
        self
    }
}

/// The command as a shell line: `cd DIR && VAR=VALUE program args`, each word quoted when it
/// needs to be. A variable the command removes is shown as `-u VAR` through `env`.
pub fn shell_line(cmd: &std::process::Command) -> String {
    let mut words: Vec<String> = Vec::new();
    let envs: Vec<_> = cmd.get_envs().collect();
    if !envs.is_empty() {
        words.push("env".into());
        for (k, v) in envs {
            let k = k.to_string_lossy();
            match v {
                Some(v) => words.push(shell_quote(&format!("{k}={}", v.to_string_lossy()))),
                None => words.extend(["-u".to_owned(), shell_quote(&k)]),
            }
        }
    }
    words.push(shell_quote(&cmd.get_program().to_string_lossy()));
    words.extend(cmd.get_args().map(|a| shell_quote(&a.to_string_lossy())));
    let line = words.join(" ");
    match cmd.get_current_dir() {
        Some(dir) => format!("cd {} && {line}", shell_quote(&dir.to_string_lossy())),
        None => line,
    }
}

/// `word` as one shell word: as is when it holds only safe characters, else in single quotes
/// (a `'` inside becomes `'\''`); a word with control characters (a newline in a script) in
/// bash's `$'…'` with the characters escaped, so the line stays one line and none reaches the
/// terminal raw.
pub fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        return word.to_owned();
    }
    if word.chars().any(char::is_control) {
        let mut out = String::from("$'");
        for c in word.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('\'');
        return out;
    }
    format!("'{}'", word.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_shown_as_a_line_a_shell_runs_unchanged() {
        let mut cmd = std::process::Command::new("make");
        cmd.args(["-C", "/src/linux 6.1", "O=/tmp/b", "it's", ""])
            .env("ARCH", "x86_64")
            .env_remove("MAKEFLAGS")
            .current_dir("/work dir");
        assert_eq!(
            shell_line(&cmd),
            "cd '/work dir' && env ARCH=x86_64 -u MAKEFLAGS make -C '/src/linux 6.1' O=/tmp/b 'it'\\''s' ''"
        );
        // What the shell makes of the quoted words is the argument list itself.
        let words = ["a b", "it's", "$HOME", "x;y", "l1\n'l2'\t\\n\u{1b}"];
        let quoted = words.map(shell_quote).join(" ");
        assert!(
            !quoted.contains('\n') && !quoted.contains('\u{1b}'),
            "{quoted}"
        );
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("printf '%s\\0' {quoted}"))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            words.map(|w| format!("{w}\0")).concat()
        );
    }
}
