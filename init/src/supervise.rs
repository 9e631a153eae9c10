//! Supervising the runtime once it runs, as a small state machine.
//!
//! [`Supervisor`] holds the state (the runtime's [`State`], restarts so far, readiness); each
//! event is one method that makes its transition through the [`Sys`] seam and says whether
//! supervision goes on ([`Step`]):
//!
//! - [`Supervisor::on_signal`]: a signal arrived (forwarded; SIGTERM/SIGINT start a stop);
//! - [`Supervisor::on_reaped`]: a child ended (the runtime: restart or end; else an orphan);
//! - [`Supervisor::on_tick`]: time passed (restart after the back-off, SIGKILL after the stop
//!   timeout, readiness, memory peak and seccomp audit records, and with the Lambda interface
//!   its server's news: ready, an init error, an invocation past its deadline).
//!
//! [`Supervisor::run`] is the loop that feeds them: wait for a signal (or until the next thing
//! is due, [`Supervisor::timeout_ms`]), reap, tick.

use std::ops::ControlFlow;

use stratos_wire::{Readiness, Restart, RestartPolicy};

use stratos_wire::MetricsReason;

use crate::cgroup::MemoryPeak;
use crate::console::{log, phase};
use crate::error::InitError;
use crate::lambda::LambdaEvent;
use crate::meminfo::meminfo_kib;
use crate::observe::{mark_at, Observer};
use crate::runtime::{describe, ending, spawn_runtime, Prepared};
use crate::sys::{
    signal_name, ExitKind, Sys, Waited, SIGHUP, SIGINT, SIGKILL, SIGMETRICS, SIGRESTORED, SIGTERM,
    SIGUSR1, SIGUSR2,
};

/// What the loop does after a transition: go on, or stop supervising with how the runtime
/// ended for good (or why it could not be kept going).
pub type Step = ControlFlow<Result<ExitKind, InitError>>;

/// How long the loop sleeps when nothing is due.
pub const IDLE_WAKE_MS: u64 = 1000;
/// How often readiness is checked until the runtime is ready.
pub const READINESS_POLL_MS: u64 = 5;
/// With the Lambda interface: the first runtime must ask for an invocation within this long
/// (Lambda's init phase), or the boot fails.
pub const LAMBDA_INIT_TIMEOUT_MS: u64 = crate::lambda::INIT_TIMEOUT.as_millis() as u64;

/// Where the runtime is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Running as `pid`.
    Running { pid: u32 },
    /// Running as `pid`, told to stop (SIGTERM or SIGINT forwarded): SIGKILL follows at
    /// `deadline` (CLOCK_BOOTTIME ns); `killed` once it was sent. Its end is the end.
    Stopping {
        pid: u32,
        deadline: u64,
        killed: bool,
    },
    /// Ended; started again at `at` (ns), per the restart policy.
    Backoff { at: u64 },
}

impl State {
    /// The runtime's pid while it runs.
    pub fn pid(self) -> Option<u32> {
        match self {
            State::Running { pid } | State::Stopping { pid, .. } => Some(pid),
            State::Backoff { .. } => None,
        }
    }
}

/// The runtime under supervision.
pub struct Supervisor<'a> {
    p: &'a Prepared,
    state: State,
    /// Restarts made so far.
    restarts: u32,
    /// `runtime_ready` was printed.
    ready: bool,
    /// After this time (ns) a runtime not yet ready gets one warning (with the Lambda
    /// interface: the boot fails).
    ready_deadline: u64,
    late_warned: bool,
    peak: &'a mut MemoryPeak,
    /// `[observe]`: the metrics lines.
    obs: &'a mut Observer,
    /// Seccomp log mode: the kernel's audit records are forwarded (until the log fails).
    audit: bool,
    /// Audit records forwarded, and those past [`MAX_AUDIT_RECORDS`].
    audit_sent: u64,
    audit_dropped: u64,
    audit_cap_warned: bool,
    /// The Lambda interface: the runtime (this pid) was killed for overrunning an invocation's
    /// deadline; it is started again at once, whatever the restart policy.
    timed_out: Option<u32>,
}

/// The most seccomp audit records one boot forwards: enough to name every call a baseline
/// lacks many times over; a runtime looping on a denied call cannot flood the host.
pub const MAX_AUDIT_RECORDS: u64 = 4096;

impl<'a> Supervisor<'a> {
    /// Takes over the runtime just started as `pid`. Without a readiness check it is ready now.
    /// `peak` reports the runtime's memory peak while it runs, `obs` the metrics.
    pub fn start<S: Sys>(
        sys: &mut S,
        p: &'a Prepared,
        pid: u32,
        peak: &'a mut MemoryPeak,
        obs: &'a mut Observer,
    ) -> Self {
        // With the Lambda interface the runtime is ready when it first asks for an invocation.
        let ready = p.cfg.readiness.is_none() && p.cfg.lambda.is_none();
        if ready {
            runtime_ready(sys, obs);
        }
        if p.cfg.lambda.is_some() {
            sys.lambda_runtime_started();
        }
        let ready_deadline = match &p.cfg.readiness {
            Some(Readiness::Tcp { timeout_ms, .. } | Readiness::Notify { timeout_ms }) => {
                sys.now_ns().saturating_add(ns(*timeout_ms))
            }
            None if p.cfg.lambda.is_some() => {
                sys.now_ns().saturating_add(ns(LAMBDA_INIT_TIMEOUT_MS))
            }
            None => u64::MAX,
        };
        Supervisor {
            p,
            state: State::Running { pid },
            restarts: 0,
            ready,
            ready_deadline,
            late_warned: false,
            peak,
            obs,
            audit: p.seccomp_log,
            audit_sent: 0,
            audit_dropped: 0,
            audit_cap_warned: false,
            timed_out: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Supervises until the runtime ends for good.
    pub fn run<S: Sys>(mut self, sys: &mut S) -> Result<ExitKind, InitError> {
        loop {
            let timeout = self.timeout_ms(sys.now_ns());
            if let Some(sig) = sys.wait_signal(timeout) {
                if let ControlFlow::Break(end) = self.on_signal(sys, sig) {
                    return end;
                }
            }
            if let ControlFlow::Break(end) = self.reap(sys) {
                return end;
            }
            let now = sys.now_ns();
            if let ControlFlow::Break(end) = self.on_tick(sys, now) {
                return end;
            }
        }
    }

    /// How long to wait for a signal at `now`: until the next thing is due.
    pub fn timeout_ms(&self, now: u64) -> u64 {
        // The Lambda interface's readiness wakes the loop itself (SIGLAMBDA): no polling.
        let polled = self.p.cfg.lambda.is_none();
        let wake = if !self.ready && self.state.pid().is_some() && polled {
            READINESS_POLL_MS
        } else if !self.ready && !polled {
            // The end of the init phase.
            IDLE_WAKE_MS.min(ms_until(now, self.ready_deadline))
        } else {
            IDLE_WAKE_MS
        };
        match self.state {
            State::Backoff { at } => wake.min(ms_until(now, at)),
            State::Stopping {
                deadline,
                killed: false,
                ..
            } => wake.min(ms_until(now, deadline)),
            State::Running { .. } | State::Stopping { .. } => wake,
        }
    }

    /// A signal arrived. SIGTERM/SIGINT are forwarded and start a graceful stop (or, between
    /// restarts, end supervision); SIGHUP/SIGUSR1/SIGUSR2 are forwarded; SIGCHLD and anything
    /// else only woke the loop (reaping follows).
    pub fn on_signal<S: Sys>(&mut self, sys: &mut S, sig: i32) -> Step {
        let name = signal_name(sig);
        match (sig, self.state) {
            (SIGTERM | SIGINT, State::Backoff { .. }) => {
                log(
                    sys,
                    &format!("received {name} while the runtime is not running; stopping"),
                );
                return ControlFlow::Break(Err(InitError::StoppedWhileRestarting(sig)));
            }
            (SIGTERM | SIGINT, State::Running { pid } | State::Stopping { pid, .. }) => {
                forward(sys, pid, sig);
                log(
                    sys,
                    &format!("received {name}; forwarded to the runtime, stopping"),
                );
                // A second SIGTERM is forwarded too, but does not move the deadline.
                if let State::Running { pid } = self.state {
                    let deadline = sys.now_ns().saturating_add(ns(self.p.cfg.stop_timeout_ms));
                    self.state = State::Stopping {
                        pid,
                        deadline,
                        killed: false,
                    };
                }
            }
            (SIGRESTORED, state) => {
                // The restore thread reseeded the clone: tell the runtime, then the host (which
                // calls the function once it reads `restored`), then say what was done.
                let told = self.p.cfg.on_restore.map(|to| match state.pid() {
                    Some(pid) => {
                        forward(sys, pid, to);
                        format!(
                            "restored from a snapshot; sent {} to the runtime",
                            signal_name(to)
                        )
                    }
                    None => format!(
                        "restored from a snapshot while the runtime is not running; {} not sent",
                        signal_name(to)
                    ),
                });
                let t = phase(sys, "restored");
                self.obs.restored(t);
                if let Some(t) = told {
                    log(sys, &t);
                }
            }
            (SIGMETRICS, _) => self.obs.report(sys, MetricsReason::Request),
            (SIGHUP | SIGUSR1 | SIGUSR2, State::Running { pid } | State::Stopping { pid, .. }) => {
                forward(sys, pid, sig);
                log(sys, &format!("received {name}; forwarded to the runtime"));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    /// Reaps every child that has ended, orphans included: one [`Self::on_reaped`] each.
    pub fn reap<S: Sys>(&mut self, sys: &mut S) -> Step {
        loop {
            match sys.wait(false) {
                Ok(Waited::Reaped(pid, how)) => {
                    let step = self.on_reaped(sys, pid, how);
                    if step.is_break() {
                        return step;
                    }
                }
                Ok(Waited::NoChildren) if self.state.pid().is_some() => {
                    return ControlFlow::Break(Err(InitError::RuntimeVanished));
                }
                Ok(Waited::NoneReady | Waited::NoChildren) => return ControlFlow::Continue(()),
                Err(e) => return ControlFlow::Break(Err(InitError::Wait(e))),
            }
        }
    }

    /// A child ended `how`. The runtime's end is the end when it was told to stop; otherwise
    /// the restart policy decides. Any other child is an orphan the init adopted: reaping it
    /// was all there was to do.
    pub fn on_reaped<S: Sys>(&mut self, sys: &mut S, pid: u32, how: ExitKind) -> Step {
        if self.p.cfg.lambda.is_some() && self.state.pid() == Some(pid) {
            // What the server heard before the runtime ended comes first: a runtime posts
            // init/error (and has it accepted) before it exits.
            if let ControlFlow::Break(end) = self.on_lambda_events(sys, true) {
                return ControlFlow::Break(end);
            }
            sys.lambda_runtime_ended(&describe(how));
            if self.timed_out.take() == Some(pid) && matches!(self.state, State::Running { .. }) {
                log(
                    sys,
                    &format!(
                        "{}; starting it again for the next invocation",
                        describe(how)
                    ),
                );
                self.state = State::Backoff { at: sys.now_ns() };
                return ControlFlow::Continue(());
            }
        }
        match self.state {
            State::Stopping { pid: runtime, .. } if runtime == pid => ControlFlow::Break(Ok(how)),
            State::Running { pid: runtime } if runtime == pid => self.restart_or_end(sys, how),
            _ => ControlFlow::Continue(()),
        }
    }

    fn restart_or_end<S: Sys>(&mut self, sys: &mut S, how: ExitKind) -> Step {
        let restart = &self.p.cfg.restart;
        let Some(delay) = restart_delay(restart, how, self.restarts) else {
            return ControlFlow::Break(Ok(how));
        };
        self.restarts += 1;
        self.obs.restarts = self.restarts;
        sys.control(&stratos_wire::Control::Restart {
            count: self.restarts,
            max: restart.max_restarts,
            ending: ending(how),
        });
        log(
            sys,
            &format!(
                "restart {} of {} in {delay} ms: {}",
                self.restarts,
                restart.max_restarts,
                describe(how)
            ),
        );
        self.state = State::Backoff {
            at: sys.now_ns().saturating_add(ns(delay)),
        };
        ControlFlow::Continue(())
    }

    /// Time passed (`now`, ns): the memory peak and seccomp audit records are reported; the
    /// runtime is restarted when its back-off is over, or killed when it outlived its stop
    /// deadline; readiness is checked until reached.
    pub fn on_tick<S: Sys>(&mut self, sys: &mut S, now: u64) -> Step {
        self.peak.tick(sys, now);
        if self.p.cfg.lambda.is_some() {
            if let ControlFlow::Break(end) = self.on_lambda_events(sys, false) {
                return ControlFlow::Break(end);
            }
        }
        if self.audit {
            self.forward_audit_records(sys);
        }
        match self.state {
            State::Backoff { at } if now >= at => {
                let pid = match spawn_runtime(sys, self.p) {
                    Ok(pid) => pid,
                    Err(e) => return ControlFlow::Break(Err(e)),
                };
                log(sys, &format!("restarted runtime as pid {pid}"));
                if self.p.cfg.lambda.is_some() {
                    sys.lambda_runtime_started();
                    if !self.ready {
                        // A runtime that crashed before it first asked: the new one has an
                        // init phase of its own, as the broker gives it.
                        self.ready_deadline = now.saturating_add(ns(LAMBDA_INIT_TIMEOUT_MS));
                    }
                }
                self.state = State::Running { pid };
            }
            State::Stopping {
                pid,
                deadline,
                killed: false,
            } if now >= deadline => {
                log(
                    sys,
                    &format!(
                        "the runtime did not stop within {} ms; sending SIGKILL",
                        self.p.cfg.stop_timeout_ms
                    ),
                );
                forward(sys, pid, SIGKILL);
                self.state = State::Stopping {
                    pid,
                    deadline,
                    killed: true,
                };
            }
            _ => {}
        }
        let waiting = matches!(self.state, State::Running { .. });
        if !self.ready && self.p.cfg.lambda.is_some() && waiting && now > self.ready_deadline {
            return ControlFlow::Break(Err(InitError::LambdaInitTimeout(LAMBDA_INIT_TIMEOUT_MS)));
        }
        if !self.ready && self.state.pid().is_some() {
            self.check_readiness(sys, now);
        }
        ControlFlow::Continue(())
    }

    /// The Lambda interface's news: the runtime asked for its first invocation (ready), posted
    /// an init error (the boot fails with it), or overran an invocation's deadline (its caller
    /// has Lambda's timeout error; the runtime is killed, and started again once reaped).
    /// `reaped`: the runtime has just been reaped, so its pid may already be another
    /// process's — a timeout is then only recorded, nothing is killed.
    fn on_lambda_events<S: Sys>(&mut self, sys: &mut S, reaped: bool) -> Step {
        for event in sys.lambda_events() {
            match event {
                LambdaEvent::Ready => {
                    if !self.ready && self.state.pid().is_some() {
                        self.ready = true;
                        runtime_ready(sys, self.obs);
                    }
                }
                LambdaEvent::InitError(message) => {
                    return ControlFlow::Break(Err(InitError::LambdaInit(message)));
                }
                LambdaEvent::TimedOut {
                    request_id,
                    timeout_ms,
                } => {
                    if let State::Running { pid } = self.state {
                        log(
                            sys,
                            &format!("invocation {request_id} did not finish within its timeout of {timeout_ms} ms; killing the runtime (SIGKILL)"),
                        );
                        self.timed_out = Some(pid);
                        if !reaped {
                            // The whole session: a runtime that did not exec (a shell
                            // `bootstrap`) must not leave the real one behind, still holding
                            // the Runtime API.
                            if let Err(e) = sys.kill_group(pid, SIGKILL) {
                                log(
                                    sys,
                                    &format!("cannot kill the runtime's process group {pid}: {e}"),
                                );
                                forward(sys, pid, SIGKILL);
                            }
                        }
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// Prints the new seccomp audit records as `seccomp-log:` lines. A kernel log that cannot
    /// be read is one warning, then no more reading.
    fn forward_audit_records<S: Sys>(&mut self, sys: &mut S) {
        let mut records = Vec::new();
        let read = sys.seccomp_audit_records(&mut records);
        for record in records {
            if self.audit_sent >= MAX_AUDIT_RECORDS {
                self.audit_dropped += 1;
                continue;
            }
            self.audit_sent += 1;
            log(sys, &format!("seccomp-log: {record}"));
            sys.control(&stratos_wire::Control::SeccompLog { record });
        }
        if self.audit_dropped > 0 && !self.audit_cap_warned {
            self.audit_cap_warned = true;
            log(
                sys,
                &format!("warning: more than {MAX_AUDIT_RECORDS} seccomp audit records; the rest are counted, not forwarded"),
            );
        }
        if let Err(e) = read {
            self.audit = false;
            log(
                sys,
                &format!(
                    "warning: cannot read seccomp audit records from /dev/kmsg: {e}; the calls the filter would deny are no longer reported"
                ),
            );
        }
    }

    /// Probes readiness once: `runtime_ready` when reached, one warning when late.
    fn check_readiness<S: Sys>(&mut self, sys: &mut S, now: u64) {
        let ok = match &self.p.cfg.readiness {
            Some(Readiness::Tcp { port, .. }) => sys.tcp_probe(*port),
            Some(Readiness::Notify { .. }) => sys.notified(),
            // The Lambda interface's readiness comes as an event (see `on_lambda_events`).
            None if self.p.cfg.lambda.is_some() => false,
            None => true,
        };
        if ok {
            self.ready = true;
            runtime_ready(sys, self.obs);
        } else if now > self.ready_deadline && !self.late_warned {
            self.late_warned = true;
            log(
                sys,
                "warning: the runtime is not ready within its readiness timeout; still waiting",
            );
        }
    }
}

/// The runtime is ready: the phase, then how much memory the guest still has (what a root on
/// disk saves against one in RAM shows here), then the metrics (with `[observe]`).
fn runtime_ready<S: Sys>(sys: &mut S, obs: &mut Observer) {
    // Read before the message that lets the host call the function.
    let counters = obs.counters(sys, MetricsReason::Ready);
    let t = sys.now_ns();
    // What the runtime printed before it was ready shows before the phase on the console.
    sys.settle_relay();
    mark_at(sys, obs, "runtime_ready", t);
    match sys.read_file("/proc/meminfo") {
        Ok(m) => match meminfo_kib(&String::from_utf8_lossy(&m), "MemAvailable:") {
            Some(kib) => {
                sys.control(&stratos_wire::Control::MemoryAvailable { kib });
                log(sys, &format!("memory available {kib} KiB at runtime_ready"));
            }
            None => log(sys, "warning: /proc/meminfo has no MemAvailable"),
        },
        Err(e) => log(sys, &format!("warning: cannot read /proc/meminfo: {e}")),
    }
    obs.report_counters(sys, MetricsReason::Ready, counters);
}

/// Whether to restart after the runtime ended `how`, having restarted `done` times already;
/// `Some(delay_ms)` with the capped exponential backoff if so.
pub fn restart_delay(r: &Restart, how: ExitKind, done: u32) -> Option<u64> {
    let wanted = match r.policy {
        RestartPolicy::Never => false,
        RestartPolicy::OnFailure => !how.success(),
        RestartPolicy::Always => true,
    };
    if !wanted || done >= r.max_restarts {
        return None;
    }
    let factor = 1u64.checked_shl(done).unwrap_or(u64::MAX);
    Some(
        r.backoff_initial_ms
            .saturating_mul(factor)
            .min(r.backoff_max_ms),
    )
}

/// Milliseconds as nanoseconds, saturating (a timeout from the config may be huge).
fn ns(ms: u64) -> u64 {
    ms.saturating_mul(1_000_000)
}

/// Whole milliseconds from `now` until `at` (nanoseconds), rounded up, at least 1.
fn ms_until(now: u64, at: u64) -> u64 {
    at.saturating_sub(now).div_ceil(1_000_000).max(1)
}

/// Sends `sig` to the runtime; a failure is a warning.
fn forward<S: Sys>(sys: &mut S, pid: u32, sig: i32) {
    if let Err(e) = sys.kill(pid, sig) {
        log(
            sys,
            &format!(
                "warning: cannot send {} to the runtime (pid {pid}): {e}",
                signal_name(sig)
            ),
        );
    }
}
