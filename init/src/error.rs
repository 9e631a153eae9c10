//! Why PID 1 could not bring the runtime up or keep it going, one enum per concern.
//!
//! Each `Display` is, word for word, the text of the console line the init prints for it
//! (`stratos-init: fatal: …`, or `stratos-init: warning: …` for what it survives). Messages
//! carry their cause (the console gets one line), so `source()` is left empty: a chain printer
//! would repeat it.

use std::fmt;
use std::io;
use std::net::Ipv4Addr;

use stratos_wire::CONFIG_PATH;

use crate::paths::{CGROUP, ZRAM_DEV};
use crate::sys::{signal_name, Mount};

/// A mount the init needs could not be made.
#[derive(Debug)]
pub enum MountError {
    /// The mount point cannot be created.
    MountPoint { target: String, source: io::Error },
    /// mount(2) failed.
    Mount { mount: Mount, source: io::Error },
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountError::MountPoint { target, source } => {
                write!(f, "cannot create mount point {target}: {source}")
            }
            MountError::Mount { mount, source } => write!(
                f,
                "cannot mount {} ({}) on {}: {source}",
                mount.source, mount.fstype, mount.target
            ),
        }
    }
}

/// The runtime's cgroup could not be made.
#[derive(Debug)]
pub enum CgroupError {
    /// cgroup2 cannot be mounted.
    Mount(MountError),
    /// The runtime's cgroup directory cannot be created.
    Create(io::Error),
}

impl fmt::Display for CgroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CgroupError::Mount(e) => e.fmt(f),
            CgroupError::Create(e) => write!(f, "cannot create {CGROUP}: {e}"),
        }
    }
}

/// The runtime's memory high-water mark cannot be read (a warning: the runtime is unaffected).
#[derive(Debug)]
pub enum PeakError {
    Read(io::Error),
    /// The file holds something other than a number of bytes.
    NotANumber(String),
}

impl fmt::Display for PeakError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeakError::Read(e) => write!(f, "cannot read {CGROUP}/memory.peak: {e}"),
            PeakError::NotANumber(s) => {
                write!(f, "{CGROUP}/memory.peak holds {s:?}, not a number of bytes")
            }
        }
    }
}

/// Compressed swap could not be set up.
#[derive(Debug)]
pub enum ZramError {
    ReadMeminfo(io::Error),
    NoMemTotal,
    /// A zram sysfs attribute cannot be written.
    Write {
        path: String,
        value: String,
        source: io::Error,
    },
    SwapSignature(io::Error),
    Swapon(io::Error),
}

impl fmt::Display for ZramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZramError::ReadMeminfo(e) => write!(f, "cannot read /proc/meminfo: {e}"),
            ZramError::NoMemTotal => f.write_str("no MemTotal in /proc/meminfo"),
            ZramError::Write {
                path,
                value,
                source,
            } => write!(
                f,
                "cannot write {value} to {path}: {source} (is zram built in or its module loaded?)"
            ),
            ZramError::SwapSignature(e) => {
                write!(f, "cannot write the swap signature to {ZRAM_DEV}: {e}")
            }
            ZramError::Swapon(e) => write!(f, "swapon {ZRAM_DEV}: {e}"),
        }
    }
}

/// The network the config asks for could not be configured.
#[derive(Debug)]
pub enum NetworkError {
    LinkUp {
        interface: String,
        source: io::Error,
    },
    SetAddress {
        address: Ipv4Addr,
        prefix_len: u8,
        interface: String,
        source: io::Error,
    },
    Route {
        gateway: Ipv4Addr,
        source: io::Error,
    },
}

impl fmt::Display for NetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkError::LinkUp { interface, source } => {
                write!(f, "cannot bring up {interface}: {source}")
            }
            NetworkError::SetAddress {
                address,
                prefix_len,
                interface,
                source,
            } => write!(
                f,
                "cannot set {address}/{prefix_len} on {interface}: {source}"
            ),
            NetworkError::Route { gateway, source } => {
                write!(f, "cannot add a default route via {gateway}: {source}")
            }
        }
    }
}

/// Why the boot ends without the runtime having run to its end: the `fatal:` line.
#[derive(Debug)]
pub enum InitError {
    Mount(MountError),
    ReadConfig(io::Error),
    /// The config does not parse or has another format (the wire crate's message).
    BadConfig(String),
    /// The runtime has limits, and the cgroup that would hold them cannot be made.
    CgroupForLimits(CgroupError),
    /// One of the runtime's limits cannot be applied.
    CgroupLimit {
        path: String,
        value: String,
        source: io::Error,
    },
    Module {
        name: String,
        path: String,
        source: io::Error,
    },
    /// zram failed and the profile says `required = true`.
    ZramRequired(ZramError),
    Network(NetworkError),
    /// The runtime would have run unfiltered.
    SeccompFilter {
        path: String,
        source: io::Error,
    },
    RemountRo(io::Error),
    /// The runtime cannot be executed (at boot or at a restart).
    Spawn {
        program: String,
        source: io::Error,
    },
    /// SIGTERM or SIGINT arrived while the runtime was waiting to restart.
    StoppedWhileRestarting(i32),
    /// Nothing is left to reap, yet the runtime was never reaped.
    RuntimeVanished,
    Wait(io::Error),
    /// The Lambda interface's server cannot start (its message names the address).
    LambdaServer(io::Error),
    /// The Lambda runtime posted `init/error` (its `errorType: errorMessage`, printable).
    LambdaInit(String),
    /// The first Lambda runtime did not ask for an invocation within the init phase (ms).
    LambdaInitTimeout(u64),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::Mount(e) => e.fmt(f),
            InitError::ReadConfig(e) => write!(f, "cannot read {CONFIG_PATH}: {e}"),
            InitError::BadConfig(e) => write!(f, "{CONFIG_PATH}: {e}"),
            InitError::CgroupForLimits(e) => write!(f, "{e} (needed for the runtime's limits)"),
            InitError::CgroupLimit {
                path,
                value,
                source,
            } => write!(f, "cannot write {value} to {path}: {source}"),
            InitError::Module { name, path, source } => {
                write!(f, "cannot load kernel module {name} ({path}): {source}")
            }
            InitError::ZramRequired(e) => {
                write!(f, "zram: {e} (the profile says required = true)")
            }
            InitError::Network(e) => e.fmt(f),
            InitError::SeccompFilter { path, source } => write!(
                f,
                "cannot read the seccomp filter {path}: {source}; refusing to start the runtime unfiltered"
            ),
            InitError::RemountRo(e) => write!(f, "cannot remount / read-only: {e}"),
            InitError::Spawn { program, source } => {
                write!(f, "cannot execute the runtime {program}: {source}")
            }
            InitError::StoppedWhileRestarting(sig) => write!(
                f,
                "stopped by {} before the runtime could restart",
                signal_name(*sig)
            ),
            InitError::RuntimeVanished => {
                f.write_str("the runtime disappeared without being reaped")
            }
            InitError::Wait(e) => write!(f, "wait failed: {e}"),
            InitError::LambdaServer(e) => write!(f, "{e}"),
            InitError::LambdaInit(m) => write!(
                f,
                "the Lambda runtime failed to initialise (it posted /2018-06-01/runtime/init/error): {m}"
            ),
            InitError::LambdaInitTimeout(ms) => write!(
                f,
                "the Lambda runtime did not ask for an invocation (GET /2018-06-01/runtime/invocation/next) within its init phase of {} s (Lambda's init timeout): it is stuck or waiting for something before its first request",
                ms / 1000
            ),
        }
    }
}

impl From<MountError> for InitError {
    fn from(e: MountError) -> Self {
        InitError::Mount(e)
    }
}

impl From<NetworkError> for InitError {
    fn from(e: NetworkError) -> Self {
        InitError::Network(e)
    }
}

impl std::error::Error for MountError {}
impl std::error::Error for CgroupError {}
impl std::error::Error for PeakError {}
impl std::error::Error for ZramError {}
impl std::error::Error for NetworkError {}
impl std::error::Error for InitError {}
