//! `[observe]`: the runtime's system calls counted (and timed) by eBPF programs on the
//! `raw_syscalls` tracepoints, and the `stratos-metrics` lines.
//!
//! [`Observer::attach`] creates the maps, loads the programs of [`crate::bpf`] with the maps'
//! descriptors in them and attaches them, before the runtime starts: everything the runtime's
//! cgroup does from its `execve` on is counted, nothing the init or the kernel's threads do
//! (the init's child joins the cgroup last before exec; its one `seccomp()` call there is
//! taken off the count).
//! A program the kernel refuses is reported with the verifier's log; the function still
//! runs, and every metrics line says why it has no system calls (`stratos.observe_error`).
//!
//! [`Observer::report`] prints one [`Metrics`] line: at `runtime_ready`, when the host asks
//! (`stratos-metrics-request` on the restore channel, [`crate::sys::SIGMETRICS`]) and at
//! shutdown.

use std::collections::BTreeMap;

use stratos_wire::{Metrics, MetricsReason, Observe, LATENCY_BUCKETS};

use crate::bpf::{self, AsmError, Insn, MAX_SYSCALLS};
use crate::cgroup::Cgroup;
use crate::console::{log, phase, phase_at};
use crate::paths::CGROUP;
use crate::sys::{BpfMap, Sys};

/// Prints a phase marker and keeps its time for the metrics.
pub fn mark<S: Sys>(sys: &mut S, obs: &mut Observer, name: &str) {
    let t = phase(sys, name);
    obs.phase(name, t);
}

/// A phase reached at `t` (ns), sent now and kept for the metrics.
pub fn mark_at<S: Sys>(sys: &mut S, obs: &mut Observer, name: &str, t: u64) {
    phase_at(sys, name, t);
    obs.phase(name, t);
}

/// What the init observes of the runtime, and its readings.
#[derive(Debug, Default)]
pub struct Observer {
    cfg: Option<Observe>,
    /// The per-call counters (`counts[nr]`).
    counts: Option<i32>,
    /// The latency buckets (`latency[nr * 32 + bucket]`).
    latency: Option<i32>,
    /// Why there are no system call counts, once attaching failed.
    error: Option<String>,
    seq: u64,
    /// Set when a snapshot restore woke this instance: it did not start cold.
    restored: bool,
    phases: BTreeMap<String, u64>,
    /// The runtime's `memory.max`.
    max_memory: Option<u64>,
    /// Restarts of the runtime so far.
    pub restarts: u32,
    /// The init installs a seccomp filter in the runtime (after it joined the cgroup).
    child_seccomp: bool,
    scratch: Vec<u64>,
}

impl Observer {
    pub fn new(cfg: Option<Observe>, max_memory: Option<u64>) -> Self {
        Observer {
            cfg,
            max_memory,
            ..Observer::default()
        }
    }

    /// Whether metrics lines are printed at all.
    pub fn enabled(&self) -> bool {
        self.cfg.is_some()
    }

    /// A phase the init printed (`ns`: CLOCK_BOOTTIME); the first time of each is kept.
    pub fn phase(&mut self, name: &str, ns: u64) {
        self.phases.entry(name.to_owned()).or_insert(ns);
    }

    /// A snapshot restore woke this instance at `ns`.
    pub fn restored(&mut self, ns: u64) {
        self.restored = true;
        self.phases.insert("restored".into(), ns);
    }

    /// Creates the maps, loads and attaches the programs for the runtime's cgroup. A failure
    /// is reported (with the verifier's log, if the kernel refused a program) and kept.
    pub fn attach<S: Sys>(&mut self, sys: &mut S, cgroup: Cgroup) {
        let Some(cfg) = self.cfg else { return };
        if let Err(e) = self.try_attach(sys, cfg, cgroup) {
            log(
                sys,
                &format!(
                    "error: [observe]: {e}; the runtime runs without its system calls counted"
                ),
            );
            self.error = Some(e);
        }
    }

    fn try_attach<S: Sys>(
        &mut self,
        sys: &mut S,
        cfg: Observe,
        cgroup: Cgroup,
    ) -> Result<(), String> {
        if !cgroup.made {
            return Err("the runtime has no cgroup of its own to count the system calls of".into());
        }
        let id = sys
            .cgroup_id(CGROUP)
            .map_err(|e| format!("cannot read the id of {CGROUP}: {e}"))?;
        let (counts, programs) = self.maps_and_programs(sys, cfg, id)?;
        // Load both before attaching either: a refused program leaves nothing attached.
        let loaded = load_programs(sys, programs)?;
        self.attach_programs(sys, counts, loaded)?;
        log(
            sys,
            &format!(
                "[observe]: counting the system calls of cgroup {CGROUP} (id {id}){}",
                if self.latency.is_some() {
                    ", with latencies"
                } else {
                    ""
                }
            ),
        );
        Ok(())
    }

    /// Creates the maps and assembles the programs that fill them, for cgroup `id`: the
    /// counters (returned), and with latencies the in-flight slots and the histograms.
    fn maps_and_programs<S: Sys>(
        &mut self,
        sys: &mut S,
        cfg: Observe,
        id: u64,
    ) -> Result<(i32, Programs), String> {
        let counts = create_map(
            sys,
            "stratos_counts",
            BpfMap::Counters {
                entries: MAX_SYSCALLS,
            },
        )?;
        let mut programs = Vec::new();
        if cfg.latency {
            let starts = create_map(
                sys,
                "stratos_starts",
                BpfMap::Slots {
                    value_size: bpf::SLOT_BYTES,
                    entries: bpf::IN_FLIGHT,
                },
            )?;
            let latency = create_map(
                sys,
                "stratos_latency",
                BpfMap::Counters {
                    entries: MAX_SYSCALLS * LATENCY_BUCKETS as u32,
                },
            )?;
            self.latency = Some(latency);
            programs.push(("sys_enter", bpf::enter_program(id, counts, Some(starts))));
            programs.push(("sys_exit", bpf::exit_program(id, starts, latency)));
        } else {
            programs.push(("sys_enter", bpf::enter_program(id, counts, None)));
        }
        Ok((counts, programs))
    }

    /// Attaches each loaded program to its tracepoint. The counting one failing is the error;
    /// the timing one failing leaves the counts without latencies.
    fn attach_programs<S: Sys>(
        &mut self,
        sys: &mut S,
        counts: i32,
        loaded: Vec<(&'static str, i32)>,
    ) -> Result<(), String> {
        for (tracepoint, fd) in loaded {
            let attached = sys.bpf_attach_raw_tracepoint(tracepoint, fd).map_err(|e| {
                format!("cannot attach to the raw tracepoint {tracepoint}: {e}; the kernel needs CONFIG_BPF_EVENTS (kernel-configs/observability.config)")
            });
            match (tracepoint, attached) {
                ("sys_enter", Ok(())) => self.counts = Some(counts),
                (_, Ok(())) => {}
                ("sys_enter", Err(e)) => return Err(e),
                // The counting program runs already: its counts stand, without latencies.
                (_, Err(e)) => {
                    self.latency = None;
                    log(
                        sys,
                        &format!("error: [observe]: {e}; system calls are counted but not timed"),
                    );
                }
            }
        }
        Ok(())
    }

    /// Prints one `stratos-metrics` line (nothing without `[observe]`).
    pub fn report<S: Sys>(&mut self, sys: &mut S, reason: MetricsReason) {
        let c = self.counters(sys, reason);
        self.report_counters(sys, reason, c);
    }

    /// The counters now: taken before something that lets the host act (the `runtime_ready`
    /// line lets it call the function) and printed after it, they count nothing of that.
    pub fn counters<S: Sys>(&mut self, sys: &mut S, reason: MetricsReason) -> Counters {
        let mut c = Counters {
            time_ns: sys.now_ns(),
            ..Counters::default()
        };
        if let Err(e) = self.read_syscalls(sys, reason, &mut c) {
            c.error = Some(format!("cannot read the system call counters: {e}"));
        }
        c
    }

    /// Prints one `stratos-metrics` line from counters taken earlier.
    pub fn report_counters<S: Sys>(&mut self, sys: &mut S, reason: MetricsReason, c: Counters) {
        if !self.enabled() {
            return;
        }
        self.seq += 1;
        let m = Metrics {
            reason,
            seq: self.seq,
            time_ns: c.time_ns,
            coldstart: !self.restored,
            init_duration: match (
                self.phases.get("runtime_exec"),
                self.phases.get("runtime_ready"),
            ) {
                (Some(&a), Some(&b)) => Some(b.saturating_sub(a) as f64 / 1e9),
                _ => None,
            },
            max_memory: self.max_memory,
            mem_usage: read_number(sys, &format!("{CGROUP}/memory.peak")),
            cpu_usage: cpu_usec(sys).map(|us| us as f64 / 1e6),
            restarts: self.restarts,
            phases_ns: self.phases.clone(),
            syscalls_total: c.syscalls.as_ref().map(|s| s.values().sum()),
            syscalls: c.syscalls,
            latency: c.latency,
            observe_error: c.error.or_else(|| self.error.clone()),
        };
        // For people on the console; the host reads the reading from the control channel.
        sys.log(&m.to_line());
        sys.control(&stratos_wire::Control::Metrics(Box::new(m)));
    }

    fn read_syscalls<S: Sys>(
        &mut self,
        sys: &mut S,
        reason: MetricsReason,
        c: &mut Counters,
    ) -> std::io::Result<()> {
        let Some(counts) = self.counts else {
            return Ok(());
        };
        sys.bpf_counters(counts, &mut self.scratch)?;
        let mut named = by_name(&self.scratch);
        // The init's child joins the runtime's cgroup just before it installs the seccomp
        // filter: that one seccomp() per start is the init's, not the runtime's.
        if self.child_seccomp {
            let starts = u64::from(self.restarts) + 1;
            if let Some(n) = named.get_mut("seccomp") {
                *n = n.saturating_sub(starts);
                if *n == 0 {
                    named.remove("seccomp");
                }
            }
        }
        c.syscalls = Some(named);
        // The line at `runtime_ready` is printed while the first call may be on its way: it
        // stays short (the console is slow under emulation); histograms come on request.
        if let (Some(latency), false) = (self.latency, reason == MetricsReason::Ready) {
            sys.bpf_counters(latency, &mut self.scratch)?;
            c.latency = Some(histograms(&self.scratch));
        }
        Ok(())
    }

    /// The init installs a seccomp filter in each runtime it starts (see [`Self::read_syscalls`]).
    pub fn set_child_seccomp(&mut self, installs: bool) {
        self.child_seccomp = installs;
    }
}

/// The programs to load, by tracepoint, as assembled.
type Programs = Vec<(&'static str, Result<Vec<Insn>, AsmError>)>;

fn create_map<S: Sys>(sys: &mut S, name: &str, m: BpfMap) -> Result<i32, String> {
    sys.bpf_map_create(name, m).map_err(|e| {
        format!("cannot create the eBPF map {name} (bpf(BPF_MAP_CREATE)): {e}; the kernel needs CONFIG_BPF_SYSCALL (kernel-configs/observability.config)")
    })
}

/// Loads every program, in order; the first the kernel refuses is the error, with the
/// verifier's log.
fn load_programs<S: Sys>(
    sys: &mut S,
    programs: Programs,
) -> Result<Vec<(&'static str, i32)>, String> {
    let mut loaded = Vec::new();
    for (tracepoint, insns) in programs {
        let insns = insns.map_err(|e| format!("the {tracepoint} program: {}", e.0))?;
        // Object names are at most 15 bytes.
        let name = format!("stratos_{}", tracepoint.trim_start_matches("sys_"));
        let fd = sys
            .bpf_prog_load(&name, &bpf::encode(&insns))
            .map_err(|e| {
                let log = e.log.trim_end();
                if log.is_empty() {
                    format!("the kernel refused the {tracepoint} program: {}", e.source)
                } else {
                    format!(
                        "the kernel refused the {tracepoint} program: {}; verifier log:\n{log}",
                        e.source
                    )
                }
            })?;
        loaded.push((tracepoint, fd));
    }
    Ok(loaded)
}

/// One reading of the counters (see [`Observer::counters`]).
#[derive(Debug, Default)]
pub struct Counters {
    time_ns: u64,
    syscalls: Option<BTreeMap<String, u64>>,
    latency: Option<BTreeMap<String, Vec<(u32, u64)>>>,
    error: Option<String>,
}

/// The name of system call `nr` (`#nr` when the table has none).
fn syscall_name(nr: usize) -> String {
    u32::try_from(nr)
        .ok()
        .and_then(stratos_wire::syscalls::name)
        .map_or_else(|| format!("#{nr}"), str::to_owned)
}

/// The non-zero counters, by system call name.
pub fn by_name(counts: &[u64]) -> BTreeMap<String, u64> {
    counts
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(nr, &n)| (syscall_name(nr), n))
        .collect()
}

/// Per system call with any, its non-empty buckets as `(bucket, count)`.
pub fn histograms(buckets: &[u64]) -> BTreeMap<String, Vec<(u32, u64)>> {
    let mut out = BTreeMap::new();
    for (nr, row) in buckets.chunks(LATENCY_BUCKETS).enumerate() {
        let nonzero: Vec<(u32, u64)> = row
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(b, &n)| (b as u32, n))
            .collect();
        if !nonzero.is_empty() {
            out.insert(syscall_name(nr), nonzero);
        }
    }
    out
}

fn read_number<S: Sys>(sys: &mut S, path: &str) -> Option<u64> {
    let b = sys.read_file(path).ok()?;
    String::from_utf8_lossy(&b).trim().parse().ok()
}

/// `usage_usec` of the runtime's cgroup (`cpu.stat`).
fn cpu_usec<S: Sys>(sys: &mut S) -> Option<u64> {
    let b = sys.read_file(&format!("{CGROUP}/cpu.stat")).ok()?;
    String::from_utf8_lossy(&b)
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse().ok())
}
