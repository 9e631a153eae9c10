//! The syscall seam: everything the init does to the system goes through [`Sys`], so the boot
//! logic can be run on the host against a recording fake (see `tests`), and for real as PID 1.

use std::io;
use std::net::Ipv4Addr;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    Exited(i32),
    Signaled(i32),
}

impl ExitKind {
    pub fn success(self) -> bool {
        self == ExitKind::Exited(0)
    }
}

/// Result of one wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    Reaped(u32, ExitKind),
    /// Children exist but none has changed state (non-blocking wait only).
    NoneReady,
    /// There are no children at all.
    NoChildren,
}

/// A mount to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub fstype: String,
    pub flags: MountFlags,
    pub data: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MountFlags {
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
}

/// What the runtime is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spawn<'a> {
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub cwd: &'a str,
    pub uid: u32,
    pub gid: u32,
    /// `cgroup.procs` of the cgroup the runtime must start in.
    pub cgroup_procs: Option<&'a str>,
    /// Give the runtime the write end of a readiness pipe as fd 3.
    pub notify: bool,
    /// stdin/stdout/stderr on /dev/null instead of relayed to the console.
    pub null_stdio: bool,
    /// A seccomp BPF program (8-byte `sock_filter` records) installed after `no_new_privs`.
    pub seccomp: Option<&'a [u8]>,
    /// `SECCOMP_FILTER_FLAG_LOG`: log what the filter does (for building baselines).
    pub seccomp_log: bool,
}

/// Signals PID 1 handles: forwarded to the runtime (TERM and INT also stop it).
pub const SIGHUP: i32 = 1;
pub const SIGINT: i32 = 2;
pub const SIGKILL: i32 = 9;
pub const SIGUSR1: i32 = 10;
pub const SIGUSR2: i32 = 12;
pub const SIGTERM: i32 = 15;
pub const SIGCHLD: i32 = 17;
/// SIGRTMIN+8: sent to PID 1 by its restore thread once a restored clone is reseeded, so the
/// supervisor (which knows the runtime) tells the runtime before `restored` is reported.
pub const SIGRESTORED: i32 = 42;
/// SIGRTMIN+9: sent to PID 1 by its restore thread when the host asks for a metrics reading
/// (`stratos-metrics-request`), so the supervisor prints one.
pub const SIGMETRICS: i32 = 43;
/// SIGRTMIN+10: sent to PID 1 by the Lambda interface's server when it has news for the
/// supervisor ([`Sys::lambda_events`]: the runtime is ready, failed to initialise, or overran
/// an invocation's deadline).
pub const SIGLAMBDA: i32 = 44;

/// An eBPF map to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BpfMap {
    /// `BPF_MAP_TYPE_ARRAY` of `entries` u64 counters (4-byte index keys), created
    /// `BPF_F_MMAPABLE` so [`Sys::bpf_counters`] reads it without a system call.
    Counters { entries: u32 },
    /// `BPF_MAP_TYPE_ARRAY` of `entries` values of `value_size` bytes (4-byte index keys),
    /// used by the programs only.
    Slots { value_size: u32, entries: u32 },
}

/// A program the kernel refused, with its verifier's log (empty when it gave none).
#[derive(Debug)]
pub struct BpfLoadError {
    pub source: io::Error,
    pub log: String,
}

pub trait Sys {
    /// CLOCK_BOOTTIME in nanoseconds.
    fn now_ns(&self) -> u64;
    /// Writes one line to the console (a newline is added), in a single write.
    fn log(&mut self, line: &str);
    fn mkdir_p(&mut self, path: &str, mode: u32) -> io::Result<()>;
    fn mount(&mut self, m: &Mount) -> io::Result<()>;
    fn umount(&mut self, target: &str) -> io::Result<()>;
    /// Remounts `/` read-only.
    fn remount_root_ro(&mut self) -> io::Result<()>;
    fn read_file(&mut self, path: &str) -> io::Result<Vec<u8>>;
    /// Writes `data` at the start of an existing file (sysfs, procfs, cgroupfs, a device).
    fn write_file(&mut self, path: &str, data: &[u8]) -> io::Result<()>;
    fn set_hostname(&mut self, name: &str) -> io::Result<()>;
    /// `finit_module`; a module that is already loaded is not an error.
    fn load_module(&mut self, path: &str, params: &str) -> io::Result<()>;
    fn link_up(&mut self, ifname: &str) -> io::Result<()>;
    fn set_address(&mut self, ifname: &str, addr: Ipv4Addr, prefix_len: u8) -> io::Result<()>;
    fn add_default_route(&mut self, gateway: Ipv4Addr) -> io::Result<()>;
    fn swapon(&mut self, device: &str, priority: i32) -> io::Result<()>;
    /// Whether the kernel's random pool is initialised: `getrandom(GRND_NONBLOCK)` succeeds.
    fn entropy_ready(&mut self) -> bool;
    /// Waits in the background for the pool, then calls `ready` there (with a `Sys` of its
    /// own; the boot prints the `entropy_ready` phase line).
    fn watch_entropy(&mut self, ready: fn(&mut Self));
    /// Adds `bytes` to the kernel's entropy pool, credited (`RNDADDENTROPY`).
    fn add_entropy(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes the kernel's CRNG reseed from the pool now (`RNDRESEEDCRNG`).
    fn reseed_crng(&mut self) -> io::Result<()>;
    /// Sets `CLOCK_REALTIME`.
    fn set_realtime(&mut self, unix_ns: u128) -> io::Result<()>;
    /// Opens the control channel in the background: waits for the virtio-serial port named
    /// [`stratos_wire::CONTROL_PORT`] (it may come with a module loaded later), holds it
    /// close-on-exec, sends every [`Sys::control`] message in order, and hands each line from
    /// the host to `on_message` in the background (with a `Sys` of its own; the boot passes
    /// [`crate::restore::apply`], where a restore ends in [`SIGRESTORED`] to PID 1).
    fn open_control(&mut self, on_message: fn(&mut Self, &str));
    /// Waits (at most `timeout_ms`) until the control thread holds the port, or knows there is
    /// none: called before the runtime starts, so the port is the init's before the runtime
    /// could try to open it.
    fn await_control(&mut self, timeout_ms: u64);
    /// Queues one message for the host on the control channel (never blocks; messages queued
    /// before the port appears are sent once it does).
    fn control(&mut self, msg: &stratos_wire::Control);
    /// Waits until every queued control message was written, at most `timeout_ms` (and not at
    /// all when the VM has no control port).
    fn flush_control(&mut self, timeout_ms: u64);
    /// Starts warming the page cache for `paths` in the background.
    fn start_preload(&mut self, paths: &[String]);
    /// Blocks the handled signals so they are only taken by [`Sys::wait_signal`].
    fn block_signals(&mut self) -> io::Result<()>;
    /// Waits up to `timeout_ms` for a handled signal (including SIGCHLD); `None` on timeout.
    fn wait_signal(&mut self, timeout_ms: u64) -> Option<i32>;
    /// Starts the runtime in a new session; returns its pid. Fails if it cannot be executed.
    fn spawn(&mut self, s: &Spawn) -> io::Result<u32>;
    fn wait(&mut self, block: bool) -> io::Result<Waited>;
    fn kill(&mut self, pid: u32, signal: i32) -> io::Result<()>;
    /// Sends `signal` to the process group `pgid` (a runtime leads its own session).
    fn kill_group(&mut self, pgid: u32, signal: i32) -> io::Result<()>;
    /// Sends `signal` to every process but PID 1.
    fn kill_all(&mut self, signal: i32);
    /// Whether something accepts TCP connections on 127.0.0.1:`port`.
    fn tcp_probe(&mut self, port: u16) -> bool;
    /// Whether the runtime has written to its notify descriptor.
    fn notified(&mut self) -> bool;
    /// Waits briefly (at most ~100 ms) until the runtime's relayed output written so far is on
    /// the console, so a line it printed before it became ready shows before `runtime_ready`.
    fn settle_relay(&mut self);
    /// Appends to `out` the kernel log records that reported seccomp decisions (audit type
    /// 1326) since the last call, as text. An error means the kernel log cannot be read; what
    /// was read before it is in `out`.
    fn seccomp_audit_records(&mut self, out: &mut Vec<String>) -> io::Result<()>;
    /// Starts the Lambda interface's server (`[init] interface = "lambda"`): both its ports are
    /// bound when this returns; its news come as [`SIGLAMBDA`] to PID 1.
    fn start_lambda(&mut self, cfg: &stratos_wire::Lambda) -> io::Result<()>;
    /// What the Lambda interface's server has to say since the last call (nothing when it
    /// does not run).
    fn lambda_events(&mut self) -> Vec<crate::lambda::LambdaEvent>;
    /// Tells the Lambda interface's server that a runtime process was started (its init phase
    /// starts).
    fn lambda_runtime_started(&mut self);
    /// Tells the Lambda interface's server that the runtime process ended (`how`, for people):
    /// the invocation it held fails, and the next runtime starts afresh.
    fn lambda_runtime_ended(&mut self, how: &str);
    /// Creates an eBPF map named `name`; returns its descriptor (kept open by the `Sys`).
    fn bpf_map_create(&mut self, name: &str, map: BpfMap) -> io::Result<i32>;
    /// Loads a `BPF_PROG_TYPE_RAW_TRACEPOINT` program (`insns`: 8-byte instructions, licence
    /// GPL); returns its descriptor. A refusal carries the verifier's log.
    fn bpf_prog_load(&mut self, name: &str, insns: &[u8]) -> Result<i32, BpfLoadError>;
    /// Attaches a loaded program to a raw tracepoint (`sys_enter`); it stays attached for the
    /// life of PID 1.
    fn bpf_attach_raw_tracepoint(&mut self, tracepoint: &str, prog: i32) -> io::Result<()>;
    /// Reads every counter of a [`BpfMap::Counters`] map into `out` (cleared first).
    fn bpf_counters(&mut self, map: i32, out: &mut Vec<u64>) -> io::Result<()>;
    /// The id of the cgroup at `path` (its inode number on cgroup2), what
    /// `bpf_get_current_cgroup_id()` returns for its processes.
    fn cgroup_id(&mut self, path: &str) -> io::Result<u64>;
    fn sleep_ms(&mut self, ms: u64);
    fn sync(&mut self);
    /// Powers the machine off. The real one does not return.
    fn power_off(&mut self);
}

/// Signal names for messages.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        17 => "SIGCHLD",
        31 => "SIGSYS",
        42 => "SIGRTMIN+8",
        43 => "SIGRTMIN+9",
        44 => "SIGRTMIN+10",
        _ => "signal",
    }
}
