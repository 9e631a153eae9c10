//! One boot in progress: the VM, what it said so far, the calls made; and the steps that move
//! it on (read, call, ask for a reading, linger, finish).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use stratos_wire::Control;

use super::console_log::ConsoleLog;
use super::outcome::{BootRun, Invocation, MAX_BODIES};
use super::readings::{Readings, MAX_READINGS};
use super::{Invoke, RunOptions};
use crate::boot::image::BootImage;
use crate::boot::snapshot;
use crate::boot::vm::console::{self, Ending, Phase};
use crate::boot::vm::control::connect_control;
use crate::boot::vm::{stop_requested, Feed, Vm, VmSpec};
use crate::boot::BootError;

/// How long the init gets to answer a metrics request (within the boot's timeout): it answers
/// in milliseconds; this is for a host starved of CPU.
const METRICS_WAIT: Duration = Duration::from_secs(30);

/// After the init said it powers off, how long QEMU gets to exit by itself (a machine without
/// ACPI only halts, and QEMU keeps running).
const POWER_OFF_GRACE: Duration = Duration::from_secs(2);

/// After a call failed, how long the run goes on to hear the init explain it (the runtime's
/// death reaches the host a little after the reset connection does).
const INVOKE_FAIL_GRACE: Duration = Duration::from_secs(2);

/// Why a call cannot be made to an image whose init set up no network.
pub(crate) const NO_NETWORK: &str = "the image has no network: its profile has no [network] \
section, so the guest has no address and no call can reach the function; add [network] to the \
profile (docs/profile.md) and build again, or boot without --invoke";

/// How long one read waits when nothing is due.
const READ_WAIT: Duration = Duration::from_millis(50);

/// The phases one boot may send (each phase once, and a few spare to name the duplicate).
const MAX_PHASES: usize = 32;

/// The seccomp audit records one boot keeps (the init sends at most 4096).
const MAX_AUDIT_RECORDS: usize = 8192;

/// What reading gave.
pub(super) enum Read {
    /// Something (recorded).
    Some,
    /// The console line `until_line` asked for (recorded): stop.
    Until,
    /// Nothing within the wait.
    Nothing,
}

/// One boot in progress: the VM, what it said, the invocations made.
pub(super) struct Session<'a> {
    opts: &'a RunOptions,
    vm: Vm,
    memory_mib: u32,
    console: ConsoleLog,
    phases: Vec<Phase>,
    phase_seen: BTreeMap<String, Duration>,
    ending: Ending,
    ended_at: Option<Duration>,
    powered_off_at: Option<Duration>,
    invocations: Vec<Invocation>,
    body_bytes: usize,
    first_response: Option<Duration>,
    last_response: Option<Duration>,
    invoke_error: Option<String>,
    invoke_failed_at: Option<Duration>,
    timed_out: bool,
    runtime_started: bool,
    /// Everything the VM had to say was read: QEMU is gone.
    feed_closed: bool,
    /// A restore: when the VM continued.
    resumed: Option<Duration>,
    /// The control channel (the host's side, for restore messages and metrics requests).
    channel: Option<UnixStream>,
    /// The image observes (`[observe]`): metrics readings are asked for.
    pub(super) observes: bool,
    readings: Readings,
    memory_peak: Option<u64>,
    mem_available_kib: Option<u64>,
    seccomp_records: Vec<String>,
    hello: bool,
    control_error: Option<String>,
}

impl<'a> Session<'a> {
    pub(super) fn new(vm: Vm, opts: &'a RunOptions, memory_mib: u32) -> Self {
        Session {
            opts,
            vm,
            memory_mib,
            console: ConsoleLog::default(),
            phases: Vec::new(),
            phase_seen: Default::default(),
            ending: Ending::default(),
            ended_at: None,
            powered_off_at: None,
            invocations: Vec::new(),
            body_bytes: 0,
            first_response: None,
            last_response: None,
            invoke_error: None,
            invoke_failed_at: None,
            timed_out: false,
            runtime_started: false,
            feed_closed: false,
            resumed: None,
            channel: None,
            observes: false,
            readings: Readings::default(),
            memory_peak: None,
            mem_available_kib: None,
            seccomp_records: Vec::new(),
            hello: false,
            control_error: None,
        }
    }

    /// The control channel: a restore's comes from resuming it; a boot's is connected as QEMU
    /// starts (a boot without one is followed by its console and deadline).
    pub(super) fn connect(&mut self, spec: &VmSpec, sockets: &Path) -> Result<(), BootError> {
        let opts = self.opts;
        match (&opts.restore, &spec.control) {
            (Some(snap), _) => {
                let channel = snapshot::resume(snap, sockets)?;
                self.vm.attach_control(&channel)?;
                self.channel = Some(channel);
                self.resumed = Some(self.vm.started.elapsed());
            }
            (None, Some(path)) => {
                let deadline = self.vm.started + opts.timeout.min(Duration::from_secs(10));
                let vm = &mut self.vm;
                match connect_control(path, deadline, || vm.try_exit().is_some()) {
                    Ok(Some(c)) => {
                        self.vm.attach_control(&c)?;
                        self.channel = Some(c);
                    }
                    Ok(None) => self.vm.no_control(),
                    Err(e) => {
                        // Not this boot's end: the deadline and the console say what happened.
                        self.control_fault(e.to_string());
                        self.vm.no_control();
                    }
                }
            }
            (None, None) => self.vm.no_control(),
        }
        Ok(())
    }

    /// Makes the next call, with the readings that split the cold start from the warm calls;
    /// true when the run is done (the last call made, with `stop_after_invoke`: after holding
    /// and lingering).
    pub(super) fn call(&mut self, inv: &Invoke) -> bool {
        let before = self.invocations.len();
        self.invoke(inv);
        let n = self.invocations.len();
        if self.observes && n > before {
            if n == 1 {
                self.readings.after_first = self.request_metrics();
            }
            if n == inv.count {
                self.readings.after_last = if n == 1 {
                    self.readings.after_first
                } else {
                    self.request_metrics()
                };
            }
        }
        let opts = self.opts;
        if n == inv.count && opts.stop_after_invoke {
            if let Some(h) = &opts.hold {
                h.arrive(self.vm.pid(), self.vm.started + opts.timeout);
            }
            self.linger();
            return true;
        }
        false
    }

    /// The first thing that went wrong on the control channel is kept.
    fn control_fault(&mut self, why: String) {
        self.control_error.get_or_insert(why);
    }

    /// Records one thing the VM said. Only control messages move the run on.
    fn record(&mut self, feed: Feed) -> bool {
        match feed {
            Feed::Console(t, line) => {
                let until = self
                    .opts
                    .until_line
                    .as_deref()
                    .is_some_and(|u| line.contains(u));
                if let Some(h) = console::hint(&line) {
                    self.ending.observe_hint(&h);
                }
                self.console.push(t, line);
                return until;
            }
            Feed::ControlClosed(_) => {}
            Feed::Control(_, Err(e)) => self.control_fault(e),
            Feed::Control(t, Ok(msg)) => self.control(t, msg),
        }
        false
    }

    fn control(&mut self, t: Duration, msg: Control) {
        // Any message is word from the init (a restored one does not say hello again).
        self.hello = true;
        match msg {
            Control::Hello { format } => {
                if format != stratos_wire::control::CONTROL_FORMAT {
                    self.control_fault(format!(
                        "the init speaks control format {format}, this stratos {}: rebuild the image with this stratos",
                        stratos_wire::control::CONTROL_FORMAT
                    ));
                }
            }
            Control::Phase { name, ns } => {
                if self.phases.len() >= MAX_PHASES {
                    return self.control_fault(format!("more than {MAX_PHASES} phases"));
                }
                // A restored runtime was ready all along; it may be called once the init has
                // reseeded the clone and told it.
                let ready = if self.opts.restore.is_some() {
                    "restored"
                } else {
                    "runtime_ready"
                };
                if name == ready {
                    self.runtime_started = true;
                }
                self.phase_seen.entry(name.clone()).or_insert(t);
                self.phases.push(Phase { name, ns });
            }
            Control::Network { configured } => {
                if !configured && self.opts.invoke.is_some() && self.invoke_error.is_none() {
                    self.invoke_error = Some(NO_NETWORK.into());
                    self.invoke_failed_at = Some(t);
                }
            }
            Control::MemoryAvailable { kib } => self.mem_available_kib = Some(kib),
            Control::MemoryPeak { bytes } => {
                self.memory_peak = Some(self.memory_peak.map_or(bytes, |p| p.max(bytes)));
            }
            Control::Metrics(m) => {
                if self.readings.all.len() >= MAX_READINGS {
                    return self
                        .control_fault(format!("more than {MAX_READINGS} metrics readings"));
                }
                self.readings.all.push(*m);
            }
            Control::Restart { count, ending, .. } => {
                if self.ending.restarts.len() < MAX_PHASES {
                    self.ending.restarts.push((t, count, ending));
                }
            }
            Control::Ended { ending } => {
                if self.ending.ended.is_some() {
                    return self.control_fault("the runtime ended twice".into());
                }
                self.ending.ended = Some(ending);
                self.ended_at = Some(t);
            }
            Control::Fatal { message } => {
                self.ending.fatal = Some(stratos_wire::control::printable(message.as_bytes()));
            }
            Control::SeccompLog { record } => {
                if self.seccomp_records.len() < MAX_AUDIT_RECORDS {
                    self.seccomp_records.push(record);
                }
            }
            Control::Lost { count } => {
                self.control_fault(format!("the init lost {count} control messages"));
            }
            Control::PowerOff => {
                self.ending.powered_off = true;
                self.powered_off_at.get_or_insert(t);
            }
        }
    }

    /// Waits briefly for what the VM says next; not at all when an invocation is due (what
    /// arrives keeps its arrival time while a call is in flight, and the call does not wait for
    /// a quiet console).
    pub(super) fn read(&mut self) -> Read {
        let wait = if self.invocation_due() {
            Duration::ZERO
        } else {
            READ_WAIT
        };
        match self.vm.next(wait) {
            Ok(f) => {
                if self.record(f) {
                    Read::Until
                } else {
                    Read::Some
                }
            }
            Err(closed) => {
                self.feed_closed |= closed;
                Read::Nothing
            }
        }
    }

    /// Whether an invocation should be made now.
    pub(super) fn invocation_due(&self) -> bool {
        self.opts.invoke.as_ref().is_some_and(|inv| {
            self.runtime_started
                && self.invocations.len() < inv.count
                && self.invoke_error.is_none()
                && !self.runtime_failed()
        })
    }

    /// The runtime did not stay up: it ended, was restarted, or the init gave up. A run that
    /// calls the function has failed then, and ends at once.
    fn runtime_failed(&self) -> bool {
        self.ending.ended.is_some()
            || !self.ending.restarts.is_empty()
            || self.ending.fatal.is_some()
            || self.ending.panic.is_some()
    }

    /// Whether the boot is over: everything QEMU said was read (it exited), the init powered
    /// off (QEMU gets a moment to exit by itself), the kernel halted, the timeout, or a stop
    /// signal. Checked before every read.
    pub(super) fn over(&mut self) -> bool {
        if self.feed_closed {
            return true;
        }
        if self.ending.halted || stop_requested() {
            return true;
        }
        if self.opts.invoke.is_some() && self.runtime_failed() {
            return true;
        }
        // A call failed: the run has failed; a moment more to hear the init say why.
        if let Some(t) = self.invoke_failed_at {
            if self.vm.started.elapsed() > t + INVOKE_FAIL_GRACE {
                return true;
            }
        }
        let now = self.vm.started.elapsed();
        if let Some(t) = self.powered_off_at {
            if self.vm.try_exit().is_some() || now > t + POWER_OFF_GRACE {
                return true;
            }
        }
        if now > self.opts.timeout {
            self.timed_out = true;
            return true;
        }
        false
    }

    /// One HTTP GET to the function. A function not listening yet (QEMU accepts the connection
    /// and drops it) is retried by the loop; any other failure ends the invocations.
    fn invoke(&mut self, inv: &Invoke) {
        use crate::http::HttpError;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, inv.host_port));
        let sent = self.vm.started.elapsed();
        // The call never outlives the run's deadline.
        let left = self.opts.timeout.saturating_sub(sent);
        // A GET gets its answer at once or is retried; an event is sent once, and a Lambda
        // function may take until its own deadline to answer it.
        let limit = if inv.event.is_some() {
            left
        } else {
            Duration::from_secs(5).min(left)
        }
        .max(Duration::from_millis(1));
        let answer = match &inv.event {
            None => crate::http::get(addr, &inv.path, limit),
            Some(event) => crate::http::request(
                addr,
                "POST",
                &addr.to_string(),
                &inv.path,
                event,
                &crate::http::Limits::new(limit),
                64 << 20,
            ),
        };
        match answer {
            Ok(mut resp) => {
                let function_error = resp
                    .headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-function-error"))
                    .map(|(_, v)| stratos_wire::control::printable(v.as_bytes()));
                let done = self.vm.started.elapsed();
                self.first_response.get_or_insert(done);
                self.last_response = Some(done);
                if self.body_bytes + resp.body.len() > MAX_BODIES {
                    resp.body.clear();
                }
                self.body_bytes += resp.body.len();
                self.invocations.push(Invocation {
                    sent_ms: sent.as_secs_f64() * 1e3,
                    latency_ms: (done - sent).as_secs_f64() * 1e3,
                    status: resp.status,
                    function_error,
                    body: resp.body,
                });
            }
            Err(HttpError::Empty(_) | HttpError::Connect(..)) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            // A GET is safe to send again; an event is not (the function could run twice).
            Err(HttpError::Io(..) | HttpError::TimedOut { .. })
                if self.first_response.is_none() && inv.event.is_none() =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                self.invoke_error =
                    Some(stratos_wire::control::printable(e.to_string().as_bytes()));
                self.invoke_failed_at = Some(self.vm.started.elapsed());
            }
        }
    }

    /// Asks the init for a metrics reading and waits for it (following the VM meanwhile);
    /// returns its index in the readings. A reading that does not come is recorded as the
    /// readings' error.
    fn request_metrics(&mut self) -> Option<usize> {
        use std::io::Write;
        let seen = self.readings.all.len();
        let line = format!("{}\n", stratos_wire::METRICS_REQUEST);
        let sent = match self.channel.as_mut() {
            Some(c) => c.write_all(line.as_bytes()).map_err(|e| e.to_string()),
            None => Err("no control channel to the init".into()),
        };
        if let Err(e) = sent {
            self.readings.error = Some(format!("cannot ask the init for metrics: {e}"));
            return None;
        }
        let asked = self.vm.started.elapsed();
        let deadline = (asked + METRICS_WAIT).min(self.opts.timeout);
        while self.vm.started.elapsed() < deadline && !stop_requested() && !self.feed_closed {
            if self.control_error.is_some() {
                break;
            }
            if let Some(i) = (seen..self.readings.all.len())
                .find(|&i| self.readings.all[i].reason == stratos_wire::MetricsReason::Request)
            {
                return Some(i);
            }
            match self.vm.next(Duration::from_millis(20)) {
                Ok(f) => {
                    self.record(f);
                }
                Err(closed) => self.feed_closed |= closed,
            }
        }
        self.readings.error = Some(format!(
            "the init did not answer a metrics request within {:.1} s",
            (self.vm.started.elapsed() - asked).as_secs_f64()
        ));
        None
    }

    /// Keeps following the VM for `linger` (within the deadline): the runtime must stay alive
    /// through it, and what the init reports after the calls is recorded.
    fn linger(&mut self) {
        let until = (self.vm.started.elapsed() + self.opts.linger).min(self.opts.timeout);
        while self.vm.started.elapsed() < until && !self.feed_closed && !stop_requested() {
            match self.vm.next(Duration::from_millis(20)) {
                Ok(f) => {
                    self.record(f);
                }
                Err(closed) => self.feed_closed |= closed,
            }
        }
    }

    /// Stops QEMU, reads what it still had to say (briefly, and bounded), and sums up the boot.
    pub(super) fn finish(mut self, image: &BootImage) -> BootRun {
        let stopped_at = self.vm.started.elapsed();
        self.vm.stop();
        drop(self.channel.take());
        let drain_until = std::time::Instant::now() + Duration::from_secs(1);
        while std::time::Instant::now() < drain_until {
            match self.vm.next(Duration::from_millis(100)) {
                Ok(f) => {
                    self.record(f);
                }
                Err(_) => break,
            }
        }
        BootRun {
            accel: self.opts.accel,
            machine: image.machine,
            memory_mib: self.memory_mib,
            phases: console::check_phases(&self.phases),
            phase_seen: self.phase_seen,
            lines: self.console.lines(),
            ending: self.ending,
            ended_at: self.ended_at,
            invocations: self.invocations,
            first_response: self.first_response,
            last_response: self.last_response,
            wall: stopped_at,
            timed_out: self.timed_out,
            invoke_error: self.invoke_error,
            resumed: self.resumed,
            readings: self.readings,
            memory_peak: self.memory_peak,
            mem_available_kib: self.mem_available_kib,
            seccomp_records: self.seccomp_records,
            hello: self.hello,
            control_error: self.control_error,
        }
    }
}
