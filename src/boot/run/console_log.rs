//! The console a run keeps: bounded, its beginning and its end.

use std::collections::VecDeque;
use std::time::Duration;

/// The console a run keeps: its first and its last [`CONSOLE_KEEP`] bytes of lines; what lies
/// between is counted, not kept (a guest can print without end).
pub const CONSOLE_KEEP: usize = 2 << 20;

/// What one line costs beyond its text, counted against [`CONSOLE_KEEP`]: the kept log's
/// `[ seconds ] ` prefix and newline (13 bytes). Without it a flood of empty lines would be
/// kept without bound (each counting 0 bytes).
const LINE_COST: usize = 13;

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
        let cost = line.len() + LINE_COST;
        if self.head_bytes + cost <= CONSOLE_KEEP && self.tail.is_empty() {
            self.head_bytes += cost;
            self.head.push((t, line));
            return;
        }
        self.tail_bytes += cost;
        self.tail.push_back((t, line));
        while self.tail_bytes > CONSOLE_KEEP {
            let Some((_, l)) = self.tail.pop_front() else {
                break;
            };
            self.tail_bytes -= l.len() + LINE_COST;
            self.dropped_lines += 1;
            // The guest's bytes: the line and its newline.
            self.dropped_bytes += l.len() as u64 + 1;
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

    #[test]
    fn a_flood_of_empty_lines_is_bounded_too() {
        let mut c = ConsoleLog::default();
        for i in 0..2_000_000u64 {
            c.push(Duration::from_micros(i), String::new());
        }
        let kept = c.lines();
        // Written as `[ seconds ] \n` (13 bytes each), within the two ends' budget.
        assert!(
            kept.len() * LINE_COST <= 2 * CONSOLE_KEEP + 200,
            "{} lines",
            kept.len()
        );
        assert!(c.dropped_lines > 1_000_000);
    }
}
