//! The console a run keeps: bounded, its beginning and its end.

use std::collections::VecDeque;
use std::time::Duration;

/// The console a run keeps: its first and its last [`CONSOLE_KEEP`] bytes of lines; what lies
/// between is counted, not kept (a guest can print without end).
pub const CONSOLE_KEEP: usize = 2 << 20;

/// Console lines, bounded: the beginning and the end of what the guest printed.
#[derive(Debug, Clone, Default)]
pub struct ConsoleLog {
    head: Vec<(Duration, String)>,
    head_bytes: usize,
    tail: VecDeque<(Duration, String)>,
    tail_bytes: usize,
    /// Lines (and their bytes) that fell out between the two.
    pub dropped_lines: u64,
    pub dropped_bytes: u64,
}

impl ConsoleLog {
    pub fn push(&mut self, t: Duration, line: String) {
        if self.head_bytes + line.len() <= CONSOLE_KEEP && self.tail.is_empty() {
            self.head_bytes += line.len();
            self.head.push((t, line));
            return;
        }
        self.tail_bytes += line.len();
        self.tail.push_back((t, line));
        while self.tail_bytes > CONSOLE_KEEP {
            let Some((_, l)) = self.tail.pop_front() else {
                break;
            };
            self.tail_bytes -= l.len();
            self.dropped_lines += 1;
            self.dropped_bytes += l.len() as u64;
        }
    }

    /// The lines kept, in order, with one line saying what was left out between them.
    pub fn lines(&self) -> Vec<(Duration, String)> {
        let mut out = self.head.clone();
        if self.dropped_lines > 0 {
            let t = self.tail.front().map_or(Duration::ZERO, |(t, _)| *t);
            out.push((
                t,
                format!(
                    "[stratos: {} console lines ({} bytes) left out here]",
                    self.dropped_lines, self.dropped_bytes
                ),
            ));
        }
        out.extend(self.tail.iter().cloned());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_log_keeps_its_ends_within_bounds() {
        let mut c = ConsoleLog::default();
        let line = "x".repeat(1000);
        for i in 0..10_000 {
            c.push(Duration::from_millis(i), format!("{i} {line}"));
        }
        let lines = c.lines();
        let bytes: usize = lines.iter().map(|(_, l)| l.len()).sum();
        assert!(bytes <= 2 * CONSOLE_KEEP + 200, "{bytes}");
        assert!(lines[0].1.starts_with("0 "));
        assert!(lines.last().unwrap().1.starts_with("9999 "));
        assert!(lines
            .iter()
            .any(|(_, l)| l.contains("console lines") && l.contains("left out")));
    }
}
