//! Reading a guest's serial console: the init's phase markers, how the runtime ended, and
//! kernel failures. Shared by `stratos boot`, `stratos boot-test` and the tests.

use stratos_wire::{ASYNC_PHASES, LOG_PREFIX, PHASES, PHASE_PREFIX};

/// Something the harness cares about, recognised in one console line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `stratos-phase <name> <ns>` (CLOCK_BOOTTIME nanoseconds).
    Phase { name: String, ns: u64 },
    /// The runtime exited with this status.
    Exited(i32),
    /// The runtime was killed by this signal.
    Killed(i32),
    /// The init gave up: the message says why.
    Fatal(String),
    /// The kernel panicked (message after "Kernel panic - not syncing: ").
    KernelPanic(String),
    /// dm-verity refused a block of the root filesystem (the kernel's message).
    RootCorrupted(String),
    /// The init is about to power off.
    PowerOff,
    /// The kernel stopped the machine (`reboot: System halted` / `reboot: Power down`). On a
    /// machine without ACPI the kernel can only halt, and QEMU keeps running.
    Halted,
}

/// Recognises one console line. Markers may be preceded by other output on the same line
/// (a runtime that printed without a newline), so they are searched for, not anchored.
pub fn parse_line(line: &str) -> Option<Event> {
    let line = line.trim_end_matches(['\r', '\n']);
    if let Some(i) = line.find(PHASE_PREFIX) {
        let rest = &line[i + PHASE_PREFIX.len()..];
        let mut parts = rest.split_whitespace();
        if let (Some(name), Some(ns)) = (parts.next(), parts.next()) {
            if PHASES.contains(&name) || ASYNC_PHASES.contains(&name) {
                if let Ok(ns) = ns.parse::<u64>() {
                    return Some(Event::Phase {
                        name: name.to_owned(),
                        ns,
                    });
                }
            }
        }
        return None;
    }
    if line.contains("reboot: System halted") || line.contains("reboot: Power down") {
        return Some(Event::Halted);
    }
    // dm-verity found a block of the root that does not match its hash tree.
    if let Some(i) = line.find("device-mapper: verity") {
        if line.contains("is corrupted") {
            return Some(Event::RootCorrupted(line[i..].trim().to_owned()));
        }
    }
    if let Some(i) = line.find("Kernel panic - not syncing:") {
        return Some(Event::KernelPanic(line[i + 27..].trim().to_owned()));
    }
    let i = line.find(LOG_PREFIX)?;
    let msg = line[i + LOG_PREFIX.len()..].trim();
    if let Some(code) = msg.strip_prefix("runtime exited with status ") {
        return code.trim().parse().ok().map(Event::Exited);
    }
    if let Some(rest) = msg.strip_prefix("runtime killed by signal ") {
        return rest
            .split_whitespace()
            .next()?
            .parse()
            .ok()
            .map(Event::Killed);
    }
    if let Some(why) = msg.strip_prefix("fatal: ") {
        return Some(Event::Fatal(why.to_owned()));
    }
    if msg == "powering off" {
        return Some(Event::PowerOff);
    }
    None
}

/// A `stratos-metrics {json}` line: the metrics, or why they do not parse; `None` for any
/// other line.
pub fn metrics(line: &str) -> Option<Result<stratos_wire::Metrics, String>> {
    let i = line.find(stratos_wire::METRICS_PREFIX)?;
    let json = line[i + stratos_wire::METRICS_PREFIX.len()..].strip_prefix(' ')?;
    Some(stratos_wire::Metrics::from_json(json.trim_end()))
}

/// System calls a seccomp baseline in log mode would have denied, from the init's
/// `seccomp-log:` lines (audit records): name → count.
pub fn seccomp_log(lines: &[String]) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for l in lines {
        if !l.contains("seccomp-log:") {
            continue;
        }
        let Some(nr) = l
            .split_whitespace()
            .find_map(|w| w.strip_prefix("syscall="))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let name = crate::seccomp::table::name(nr).map_or_else(|| format!("#{nr}"), str::to_owned);
        *out.entry(format!("{name} ({nr})")).or_insert(0) += 1;
    }
    out
}

/// One phase as reached in a boot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Phase {
    pub name: String,
    pub ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhaseError {
    #[error("phase {0} appears more than once")]
    Duplicate(String),
    #[error("phase {later} ({later_ns} ns) is reported before {earlier} ({earlier_ns} ns) in the boot order")]
    OutOfOrder {
        earlier: String,
        earlier_ns: u64,
        later: String,
        later_ns: u64,
    },
}

/// The phase markers of a console log, checked: each at most once, in the order of
/// [`PHASES`] and with non-decreasing times ([`ASYNC_PHASES`] may come anywhere). Phases that
/// did not happen are simply absent.
pub fn phases(log: &str) -> Result<Vec<Phase>, PhaseError> {
    let mut out: Vec<Phase> = Vec::new();
    for line in log.lines() {
        if let Some(Event::Phase { name, ns }) = parse_line(line) {
            if out.iter().any(|p| p.name == name) {
                return Err(PhaseError::Duplicate(name));
            }
            // Reported whenever they happen: no place in the boot order.
            if ASYNC_PHASES.contains(&name.as_str()) {
                out.push(Phase { name, ns });
                continue;
            }
            if let Some(prev) = out
                .iter()
                .rev()
                .find(|p| !ASYNC_PHASES.contains(&p.name.as_str()))
            {
                let rank = |n: &str| PHASES.iter().position(|p| *p == n).unwrap_or(usize::MAX);
                if rank(&name) < rank(&prev.name) || ns < prev.ns {
                    return Err(PhaseError::OutOfOrder {
                        earlier: prev.name.clone(),
                        earlier_ns: prev.ns,
                        later: name,
                        later_ns: ns,
                    });
                }
            }
            out.push(Phase { name, ns });
        }
    }
    Ok(out)
}

/// What a console log says about how the boot ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ending {
    pub exited: Option<i32>,
    pub killed: Option<i32>,
    pub fatal: Option<String>,
    pub panic: Option<String>,
    /// The first block dm-verity refused.
    pub root_corrupted: Option<String>,
    pub powered_off: bool,
    pub halted: bool,
}

impl Ending {
    pub fn observe(&mut self, e: &Event) {
        match e {
            Event::Exited(c) => self.exited = Some(*c),
            Event::Killed(s) => self.killed = Some(*s),
            Event::Fatal(m) => self.fatal = Some(m.clone()),
            Event::KernelPanic(m) => self.panic = Some(m.clone()),
            Event::RootCorrupted(m) => {
                if self.root_corrupted.is_none() {
                    self.root_corrupted = Some(m.clone());
                }
            }
            Event::PowerOff => self.powered_off = true,
            Event::Halted => self.halted = true,
            Event::Phase { .. } => {}
        }
    }

    /// The exit code a harness should report: the runtime's status, 128+signal, or None when
    /// the runtime never ended (still running, fatal boot error, kernel panic).
    pub fn exit_code(&self) -> Option<i32> {
        self.exited.or(self.killed.map(|s| 128 + s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_lines() {
        assert_eq!(
            parse_line("stratos-phase init_start 512000000\r\n"),
            Some(Event::Phase {
                name: "init_start".into(),
                ns: 512_000_000
            })
        );
        assert_eq!(
            parse_line("stratos-init: runtime exited with status 3"),
            Some(Event::Exited(3))
        );
        assert_eq!(
            parse_line("stratos-init: runtime killed by signal 15 (SIGTERM)"),
            Some(Event::Killed(15))
        );
        assert_eq!(
            parse_line("stratos-init: fatal: cannot mount"),
            Some(Event::Fatal("cannot mount".into()))
        );
        assert_eq!(
            parse_line(
                "[    1.2] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100"
            ),
            Some(Event::KernelPanic(
                "Attempted to kill init! exitcode=0x00000100".into()
            ))
        );
        assert_eq!(
            parse_line("stratos-init: powering off"),
            Some(Event::PowerOff)
        );
        assert_eq!(parse_line("random kernel noise"), None);
    }

    #[test]
    fn malformed_markers_are_ignored() {
        for l in [
            "stratos-phase",
            "stratos-phase init_start",
            "stratos-phase init_start -5",
            "stratos-phase init_start 12abc",
            "stratos-phase not_a_phase 12",
            "stratos-phase init_start 99999999999999999999999",
        ] {
            assert_eq!(parse_line(l), None, "{l}");
        }
    }

    #[test]
    fn interleaved_output_before_a_marker() {
        assert_eq!(
            parse_line("partial output stratos-phase runtime_ready 900"),
            Some(Event::Phase {
                name: "runtime_ready".into(),
                ns: 900
            })
        );
    }

    #[test]
    fn phases_in_order_with_missing_ones() {
        let log = "noise\nstratos-phase init_start 10\nhello\nstratos-phase mounts_done 20\nstratos-phase runtime_exec 30\n";
        let p = phases(log).unwrap();
        assert_eq!(
            p.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["init_start", "mounts_done", "runtime_exec"]
        );
    }

    #[test]
    fn entropy_ready_may_come_anywhere() {
        // A boot that had to wait for entropy: the waiter reports it after the runtime started.
        let log = "stratos-phase init_start 10\nstratos-phase mounts_done 20\nstratos-phase runtime_exec 30\nstratos-phase entropy_ready 25\nstratos-phase runtime_ready 40\n";
        let p = phases(log).unwrap();
        assert_eq!(
            p.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            [
                "init_start",
                "mounts_done",
                "runtime_exec",
                "entropy_ready",
                "runtime_ready"
            ]
        );
        assert!(phases("stratos-phase entropy_ready 1\nstratos-phase entropy_ready 2\n").is_err());
    }

    #[test]
    fn duplicate_and_out_of_order_phases() {
        assert_eq!(
            phases("stratos-phase init_start 1\nstratos-phase init_start 2\n"),
            Err(PhaseError::Duplicate("init_start".into()))
        );
        assert!(matches!(
            phases("stratos-phase mounts_done 1\nstratos-phase init_start 2\n"),
            Err(PhaseError::OutOfOrder { .. })
        ));
        assert!(matches!(
            phases("stratos-phase init_start 5\nstratos-phase mounts_done 2\n"),
            Err(PhaseError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn seccomp_log_lines() {
        let lines = vec![
            "stratos-init: seccomp-log: audit: type=1326 audit(1.2:3): pid=82 comm=\"busybox\" sig=0 arch=c000003e syscall=83 compat=0 ip=0x1 code=0x7ffc0000".to_owned(),
            "stratos-init: seccomp-log: audit: type=1326 audit(1.2:4): syscall=83 code=0x7ffc0000".to_owned(),
            "noise syscall=1".to_owned(),
        ];
        let m = seccomp_log(&lines);
        assert_eq!(m.len(), 1);
        assert_eq!(m["mkdir (83)"], 2);
    }

    #[test]
    fn endings() {
        let mut e = Ending::default();
        for l in [
            "stratos-init: runtime killed by signal 9 (SIGKILL)",
            "stratos-init: powering off",
        ] {
            e.observe(&parse_line(l).unwrap());
        }
        assert_eq!(e.exit_code(), Some(137));
        assert!(e.powered_off);
    }
}
