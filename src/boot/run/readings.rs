//! The init's metrics readings of one boot (`[observe]`), and the check that they could all be
//! true of one boot.

use stratos_wire::Metrics;

/// The metrics readings of one boot, and which of them the harness asked for.
#[derive(Debug, Clone, Default)]
pub struct Readings {
    /// Every reading, in order.
    pub all: Vec<Metrics>,
    /// The reading asked for after the first answer (index in `all`): the cold start.
    pub after_first: Option<usize>,
    /// The reading asked for after the last answer.
    pub after_last: Option<usize>,
    /// Why a reading asked for did not come.
    pub error: Option<String>,
}

/// The most readings one boot keeps (the host asks for two; the init adds one at ready and
/// one at shutdown).
pub const MAX_READINGS: usize = 64;

impl Readings {
    /// The reading the init took at `runtime_ready`.
    pub fn ready(&self) -> Option<&Metrics> {
        self.all
            .iter()
            .find(|m| m.reason == stratos_wire::MetricsReason::Ready)
    }

    /// Checks that the readings could all be true of one boot: numbered one after the other, taken at
    /// non-decreasing times; counters that never go down (restarts, every system call, the
    /// total, which is their sum); memory used within the VM's. An inconsistent reading fails the
    /// run rather than being used.
    pub fn check(&self, memory_mib: u32) -> Result<(), String> {
        let mut prev: Option<&Metrics> = None;
        // A restored clone continues the numbering of the boot it was saved from.
        let first = self.all.first().map_or(1, |m| m.seq);
        for (i, m) in self.all.iter().enumerate() {
            let n = i as u64 + 1;
            if m.seq != first.saturating_add(i as u64) {
                return Err(format!(
                    "reading {n} is numbered {}, after {}",
                    m.seq,
                    m.seq.saturating_sub(1).max(first)
                ));
            }
            check_alone(n, m, memory_mib)?;
            if let Some(p) = prev {
                check_after(n, p, m)?;
            }
            prev = Some(m);
        }
        Ok(())
    }
}

/// Reading `n` by itself: its total is the sum of its counts, and it used no more memory than
/// the VM has.
fn check_alone(n: u64, m: &Metrics, memory_mib: u32) -> Result<(), String> {
    if let Some(total) = m.syscalls_total {
        let sum: u64 = m
            .syscalls
            .iter()
            .flat_map(|s| s.values())
            .fold(0u64, |a, &b| a.saturating_add(b));
        if sum != total {
            return Err(format!(
                "reading {n}: the system call total {total} is not the sum of its counts ({sum})"
            ));
        }
    }
    // (`faas.max_memory` is the profile's limit, which may exceed a smaller VM.)
    let vm = u64::from(memory_mib) << 20;
    if let Some(v) = m.mem_usage.filter(|&v| v > vm) {
        return Err(format!(
            "reading {n}: faas.mem_usage {v} bytes is more than the VM's {memory_mib} MiB"
        ));
    }
    Ok(())
}

/// Reading `n` after the one before it (`p`): no earlier, and no counter went down.
fn check_after(n: u64, p: &Metrics, m: &Metrics) -> Result<(), String> {
    if m.time_ns < p.time_ns {
        return Err(format!("reading {n} was taken before reading {}", n - 1));
    }
    if m.restarts < p.restarts {
        return Err(format!(
            "reading {n}: restarts went down from {} to {}",
            p.restarts, m.restarts
        ));
    }
    if let (Some(a), Some(b)) = (p.syscalls_total, m.syscalls_total) {
        if b < a {
            return Err(format!(
                "reading {n}: the system call total went down from {a} to {b}"
            ));
        }
    }
    if let (Some(a), Some(b)) = (&p.syscalls, &m.syscalls) {
        for (name, &before) in a {
            let now = b.get(name).copied().unwrap_or(0);
            if now < before {
                return Err(format!(
                    "reading {n}: the count of {} went down from {before} to {now}",
                    stratos_wire::control::escape(name.as_bytes())
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(seq: u64, total: u64, read: u64) -> stratos_wire::Metrics {
        let mut m = stratos_wire::Metrics::from_json(&format!(
            r#"{{"reason":"request","seq":{seq},"stratos.time_ns":{seq},"faas.coldstart":true,"stratos.restarts":0,"stratos.phases_ns":{{}},"stratos.syscalls":{{"read":{read}}},"stratos.syscalls.total":{total}}}"#
        ))
        .unwrap();
        m.mem_usage = Some(1 << 20);
        m
    }

    #[test]
    fn readings_that_cannot_be_true_of_one_boot_are_refused() {
        let ok = Readings {
            all: vec![reading(1, 5, 5), reading(2, 9, 9)],
            ..Readings::default()
        };
        assert_eq!(ok.check(256), Ok(()));
        let down = Readings {
            all: vec![reading(1, 9, 9), reading(2, 5, 5)],
            ..Readings::default()
        };
        assert!(down.check(256).unwrap_err().contains("went down"));
        let sum = Readings {
            all: vec![reading(1, 7, 5)],
            ..Readings::default()
        };
        assert!(sum.check(256).unwrap_err().contains("not the sum"));
        let seq = Readings {
            all: vec![reading(1, 5, 5), reading(3, 9, 9)],
            ..Readings::default()
        };
        assert!(seq.check(256).unwrap_err().contains("numbered"));
        // A restored clone's first reading is not its boot's first.
        let restored = Readings {
            all: vec![reading(2, 5, 5), reading(3, 9, 9)],
            ..Readings::default()
        };
        assert_eq!(restored.check(256), Ok(()));
        let mut big = reading(1, 5, 5);
        big.mem_usage = Some(1 << 40);
        let big = Readings {
            all: vec![big],
            ..Readings::default()
        };
        assert!(big.check(256).unwrap_err().contains("more than the VM"));
    }
}
