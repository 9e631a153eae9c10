//! What one boot produced ([`BootRun`]), and why it failed or was not healthy, in words.

use std::collections::BTreeMap;
use std::time::Duration;

use super::readings::Readings;
use crate::boot::vm::console::{Ending, Phase, PhaseError};
use crate::boot::vm::{Accel, Machine};

/// One invocation's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Invocation {
    /// Since QEMU was spawned, when the request that got this answer was sent.
    pub sent_ms: f64,
    /// Request → complete response.
    pub latency_ms: f64,
    pub status: u16,
    /// A Lambda function's error (`X-Amz-Function-Error`: `Unhandled`), which comes with 200.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_error: Option<String>,
    /// The answer's body; kept for the first answers only, up to [`MAX_BODIES`] bytes a run
    /// (later ones are empty): a run of many calls holds one answer's worth, not many.
    #[serde(skip)]
    pub body: Vec<u8>,
}

/// The answer bytes one run keeps, over all its invocations.
pub const MAX_BODIES: usize = 1 << 20;

/// Everything one boot produced.
#[derive(Debug, Clone)]
pub struct BootRun {
    pub accel: Accel,
    pub machine: Machine,
    /// The VM's memory (MiB): what no reading of the guest's memory can exceed.
    pub memory_mib: u32,
    /// Console lines with the time since QEMU was spawned (bounded: see
    /// [`ConsoleLog`](super::console_log::ConsoleLog)). For
    /// people: nothing is decided from them.
    pub lines: Vec<(Duration, String)>,
    /// The phases the init sent, checked.
    pub phases: Result<Vec<Phase>, PhaseError>,
    /// When the host heard of each phase (since QEMU was spawned).
    pub phase_seen: BTreeMap<String, Duration>,
    pub ending: Ending,
    /// When the init said the runtime ended for good.
    pub ended_at: Option<Duration>,
    pub invocations: Vec<Invocation>,
    /// Time from spawning QEMU to the first complete answer (the cold start seen by a caller).
    pub first_response: Option<Duration>,
    /// When the last answer came.
    pub last_response: Option<Duration>,
    /// Time from spawning QEMU until it exited (or was stopped).
    pub wall: Duration,
    pub timed_out: bool,
    /// Why invoking failed, if it did.
    pub invoke_error: Option<String>,
    /// A restore: time from spawning QEMU until the restored VM continued.
    pub resumed: Option<Duration>,
    /// The init's metrics readings (`[observe]`).
    pub readings: Readings,
    /// The runtime's memory high-water mark (bytes), the init's last word on it.
    pub memory_peak: Option<u64>,
    /// `MemAvailable` at `runtime_ready`, KiB.
    pub mem_available_kib: Option<u64>,
    /// Seccomp audit records (log mode), as the init sent them.
    pub seccomp_records: Vec<String>,
    /// The init said hello on its control channel.
    pub hello: bool,
    /// What went wrong on the control channel (a malformed or lost message).
    pub control_error: Option<String>,
}
/// What the runtime is called in messages about how it ended.
fn ended(e: stratos_wire::Ending) -> String {
    match e {
        stratos_wire::Ending::Exited { status } => format!("exited with status {status}"),
        stratos_wire::Ending::Killed { signal } => format!(
            "was killed by signal {signal}{}",
            signal_name(signal).map_or(String::new(), |n| format!(" ({n})"))
        ),
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        6 => "SIGABRT",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        31 => "SIGSYS",
        _ => return None,
    })
}
impl BootRun {
    /// Why a boot did not produce what was expected.
    pub fn failure_reason(&self) -> String {
        let r = self;
        if let Some(c) = &r.ending.root_corrupted {
            return format!("root filesystem failed verification: {c}");
        }
        if let Some(p) = &r.ending.panic {
            return format!("the kernel panicked: {p}");
        }
        if let Some(f) = &r.ending.fatal {
            return format!("the init failed: {f}");
        }
        // The runtime's own end explains a failed call, so it comes first.
        let call = r
            .invoke_error
            .as_ref()
            .map_or(String::new(), |e| format!(" (the call: {e})"));
        if let Some(e) = r.ending.ended {
            return format!(
                "the runtime {} before the run's last answer{call}",
                ended(e)
            );
        }
        if let Some((_, count, e)) = r.ending.restarts.first() {
            return format!(
                "the runtime {} and was restarted (restart {count}) before the run's last answer{call}",
                ended(*e)
            );
        }
        if let Some(e) = &r.invoke_error {
            return e.clone();
        }
        let channel = r
            .control_error
            .as_ref()
            .map_or(String::new(), |e| format!(" (the control channel: {e})"));
        if r.timed_out {
            let wall = r.wall.as_secs_f64();
            if !r.hello {
                return format!(
                    "timed out after {wall:.0} s without a word from the init on its control channel{channel} (the kernel needs CONFIG_VIRTIO_CONSOLE, or virtio_console in [kernel] modules)"
                );
            }
            let ready = if self.opts_ready() {
                ""
            } else {
                " before the runtime was ready"
            };
            return format!("timed out after {wall:.0} s{ready}{channel}");
        }
        if let Some(e) = &r.control_error {
            return format!("the control channel: {e}");
        }
        if !r.hello {
            return "the VM stopped without a word from the init on its control channel".into();
        }
        "the VM stopped without the init saying how the runtime ended".into()
    }

    fn opts_ready(&self) -> bool {
        self.phase_seen.contains_key("runtime_ready") || self.phase_seen.contains_key("restored")
    }

    /// Why a run that got its answers is still not healthy: the runtime restarted, ended or was
    /// killed at any time of the run (the answers, or the linger after them), the init failed,
    /// a control message was malformed or lost, or the metrics readings contradict each other.
    pub fn health_failure(&self) -> Option<String> {
        if let Some(e) = &self.control_error {
            return Some(format!("the control channel: {e}"));
        }
        if let Some((t, count, e)) = self.ending.restarts.first() {
            return Some(format!(
                "the runtime {} and was restarted (restart {count}, {:.2} s into the run)",
                ended(*e),
                t.as_secs_f64()
            ));
        }
        if let Some(e) = self.ending.ended {
            let when = self.ended_at.map_or(String::new(), |t| {
                let after = match self.last_response {
                    Some(l) if l <= t => " after answering",
                    _ => "",
                };
                format!("{after}, {:.2} s into the run", t.as_secs_f64())
            });
            return Some(format!("the runtime {}{when}", ended(e)));
        }
        if let Some(f) = &self.ending.fatal {
            return Some(format!("the init failed: {f}"));
        }
        if self.ending.powered_off {
            return Some("the init powered the machine off during the run".into());
        }
        if let Some(p) = &self.ending.panic {
            return Some(format!("the kernel panicked: {p}"));
        }
        if let Err(e) = self.readings.check(self.memory_mib) {
            return Some(format!("inconsistent metrics readings: {e}"));
        }
        let vm_kib = u64::from(self.memory_mib) << 10;
        if let Some(kib) = self.mem_available_kib.filter(|&k| k > vm_kib) {
            return Some(format!(
                "the init reported {kib} KiB available in a VM of {} MiB",
                self.memory_mib
            ));
        }
        if let Some(b) = self.memory_peak.filter(|&b| b > vm_kib << 10) {
            return Some(format!(
                "the init reported a memory peak of {b} bytes in a VM of {} MiB",
                self.memory_mib
            ));
        }
        None
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        for (t, l) in &self.lines {
            s.push_str(&format!("[{:>9.3}] {l}\n", t.as_secs_f64()));
        }
        s
    }

    pub fn console_text(&self) -> String {
        let mut s = String::new();
        for (_, l) in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}
