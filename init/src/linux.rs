//! The real [`Sys`]: Linux system calls. The only module of the init with `unsafe`, each block
//! with its reason.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::process::Command;

use rustix::fd::{AsRawFd, OwnedFd};
use rustix::mount::MountFlags as RMountFlags;
use rustix::process::{WaitOptions, WaitStatus};

use crate::sys::{BpfLoadError, BpfMap, ExitKind, Mount, Spawn, Sys, Waited};

#[derive(Default)]
pub struct LinuxSys {
    /// Read end of the runtime's readiness pipe (non-blocking).
    notify_read: Option<OwnedFd>,
    /// /dev/kmsg, opened at its end on first use (seccomp log mode).
    kmsg: Option<OwnedFd>,
    /// eBPF maps, programs and tracepoint links: open for the life of PID 1 (closing a
    /// link's descriptor would detach its program).
    bpf_fds: Vec<OwnedFd>,
    /// Counter maps mapped into memory, by descriptor.
    bpf_counters: Vec<(i32, Mapped)>,
    /// The runtime's output pipe (a second descriptor of its read end) and whether the relay
    /// is busy with what it read: how [`Sys::settle_relay`] knows the console caught up.
    relay: Option<(OwnedFd, std::sync::Arc<std::sync::atomic::AtomicBool>)>,
}

/// A read-only shared mapping of a `BPF_F_MMAPABLE` array map's values.
struct Mapped {
    ptr: *mut u64,
    entries: usize,
    len: usize,
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned; nothing refers to the mapping
        // after this.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

// bpf(2) commands and constants (include/uapi/linux/bpf.h).
const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_int = 17;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
const BPF_F_MMAPABLE: u32 = 1 << 10;
/// The verifier log asked for when a program is refused.
const VERIFIER_LOG_BYTES: usize = 256 * 1024;

/// `union bpf_attr`, as bytes: each command's fields are written at their offsets.
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Self {
        Attr([0; 128])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    /// A `char[16]` object name (truncated, NUL-terminated).
    fn name(&mut self, off: usize, name: &str) -> &mut Self {
        let n = name.len().min(15);
        self.0[off..off + n].copy_from_slice(&name.as_bytes()[..n]);
        self
    }
}

/// bpf(2); returns the new descriptor.
fn bpf(cmd: libc::c_int, attr: &mut Attr) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a live, writable 128-byte buffer laid out as the command's part of
    // `union bpf_attr` (the kernel checks the size and that unknown bytes are zero); any
    // pointers written into it point to buffers the caller keeps alive over this call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr() as *mut libc::c_void,
            attr.0.len() as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a successful bpf() of these commands returns a new descriptor we own.
    Ok(unsafe { <OwnedFd as rustix::fd::FromRawFd>::from_raw_fd(r as i32) })
}

fn handled_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before any other use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGCHLD,
            crate::sys::SIGRESTORED,
            crate::sys::SIGMETRICS,
        ] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

const IFNAMSIZ: usize = 16;

/// `struct ifreq` with the `sockaddr_in` member of its union (40 bytes on x86-64).
#[repr(C)]
struct IfReqAddr {
    name: [u8; IFNAMSIZ],
    addr: libc::sockaddr_in,
    _pad: [u8; 8],
}

/// `struct ifreq` with the `short` flags member of its union.
#[repr(C)]
struct IfReqFlags {
    name: [u8; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// `struct rtentry` (x86-64 layout, `<net/route.h>`).
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr_in,
    rt_gateway: libc::sockaddr_in,
    rt_genmask: libc::sockaddr_in,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_tos: libc::c_uchar,
    rt_class: libc::c_uchar,
    rt_pad4: [libc::c_short; 3],
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

fn ifname(name: &str) -> io::Result<[u8; IFNAMSIZ]> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() >= IFNAMSIZ || b.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad interface name",
        ));
    }
    let mut out = [0u8; IFNAMSIZ];
    out[..b.len()].copy_from_slice(b);
    Ok(out)
}

fn sockaddr(a: Ipv4Addr) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.octets()),
        },
        sin_zero: [0; 8],
    }
}

fn inet_socket() -> io::Result<OwnedFd> {
    rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )
    .map_err(io::Error::from)
}

fn ioctl<T>(fd: &OwnedFd, req: libc::c_ulong, arg: &mut T) -> io::Result<()> {
    // SAFETY: `fd` is an open socket; `arg` points at a live, properly laid out request
    // structure of the type the kernel expects for `req` (callers pair them).
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, arg as *mut T) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Sys for LinuxSys {
    fn now_ns(&self) -> u64 {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        (t.tv_sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec as u64)
    }

    fn log(&mut self, line: &str) {
        // One write per line, under the console lock: the relayed lines of the runtime's output
        // never split one of the init's.
        crate::channel::console_line(line);
    }

    fn mkdir_p(&mut self, path: &str, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
    }

    fn mount(&mut self, m: &Mount) -> io::Result<()> {
        let mut flags = RMountFlags::empty();
        if m.flags.nosuid {
            flags |= RMountFlags::NOSUID;
        }
        if m.flags.nodev {
            flags |= RMountFlags::NODEV;
        }
        if m.flags.noexec {
            flags |= RMountFlags::NOEXEC;
        }
        let data = CString::new(m.data.as_str())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        rustix::mount::mount(
            m.source.as_str(),
            m.target.as_str(),
            m.fstype.as_str(),
            flags,
            data.as_c_str(),
        )
        .map_err(io::Error::from)
    }

    fn umount(&mut self, target: &str) -> io::Result<()> {
        rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty())
            .map_err(io::Error::from)
    }

    fn remount_root_ro(&mut self) -> io::Result<()> {
        rustix::mount::mount_remount("/", RMountFlags::RDONLY, c"").map_err(io::Error::from)
    }

    fn read_file(&mut self, path: &str) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn write_file(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.write_all(data)
    }

    fn swapon(&mut self, device: &str, priority: i32) -> io::Result<()> {
        let dev = CString::new(device).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // <sys/swap.h>: SWAP_FLAG_PREFER 0x8000, priority in the low 15 bits.
        let flags = if priority < 0 {
            0
        } else {
            0x8000 | (priority & 0x7fff)
        };
        // SAFETY: `dev` is a NUL-terminated path that outlives the call; swapon(2) reads it only.
        let r = unsafe { libc::swapon(dev.as_ptr(), flags) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn entropy_ready(&mut self) -> bool {
        let mut b = [0u8; 1];
        // EAGAIN: not initialised yet. Any other failure (ENOSYS on an ancient kernel) says
        // nothing about the pool; report it as not ready so the warning names the problem.
        rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::NONBLOCK).is_ok()
    }

    fn add_entropy(&mut self, bytes: &[u8]) -> io::Result<()> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/urandom")?;
        // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
        let mut info = Vec::with_capacity(8 + bytes.len());
        info.extend_from_slice(&((bytes.len() * 8) as i32).to_ne_bytes());
        info.extend_from_slice(&(bytes.len() as i32).to_ne_bytes());
        info.extend_from_slice(bytes);
        // RNDADDENTROPY = _IOW('R', 0x03, int[2])
        const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
        // SAFETY: `info` is a valid rand_pool_info (two ints, then buf_size bytes) that lives
        // across the call; the fd is open.
        let r = unsafe { libc::ioctl(f.as_raw_fd(), RNDADDENTROPY, info.as_ptr()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn reseed_crng(&mut self) -> io::Result<()> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/urandom")?;
        // RNDRESEEDCRNG = _IO('R', 0x07)
        const RNDRESEEDCRNG: libc::c_ulong = 0x5207;
        // SAFETY: an argument-less ioctl on an open fd.
        let r = unsafe { libc::ioctl(f.as_raw_fd(), RNDRESEEDCRNG, 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn set_realtime(&mut self, unix_ns: u128) -> io::Result<()> {
        let ts = libc::timespec {
            tv_sec: (unix_ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (unix_ns % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: a valid timespec for the duration of the call.
        let r = unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn settle_relay(&mut self) {
        let Some((fd, busy)) = &self.relay else {
            return;
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(100);
        while std::time::Instant::now() < deadline {
            let pending = rustix::io::ioctl_fionread(fd).unwrap_or(0);
            if pending == 0 && !busy.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    fn open_control(&mut self, on_message: fn(&mut Self, &str)) {
        crate::channel::open(move |line| on_message(&mut LinuxSys::default(), line));
    }

    fn control(&mut self, msg: &stratos_wire::Control) {
        crate::channel::send(msg);
    }

    fn await_control(&mut self, timeout_ms: u64) {
        crate::channel::await_open(std::time::Duration::from_millis(timeout_ms));
    }

    fn flush_control(&mut self, timeout_ms: u64) {
        crate::channel::flush(std::time::Duration::from_millis(timeout_ms));
    }

    fn watch_entropy(&mut self, ready: fn(&mut Self)) {
        let spawned = std::thread::Builder::new()
            .name("entropy".into())
            .spawn(move || {
                let mut b = [0u8; 1];
                let mut sys = LinuxSys::default();
                // Blocks until the kernel's pool is initialised.
                while let Err(e) =
                    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty())
                {
                    if e != rustix::io::Errno::INTR {
                        sys.log(&format!(
                            "{} warning: cannot wait for the kernel's random pool: {e}; entropy_ready will not be reported",
                            stratos_wire::LOG_PREFIX
                        ));
                        return;
                    }
                }
                ready(&mut sys);
            });
        if let Err(e) = spawned {
            self.log(&format!(
                "{} cannot watch for entropy: {e}",
                stratos_wire::LOG_PREFIX
            ));
        }
    }

    fn start_preload(&mut self, paths: &[String]) {
        let paths = paths.to_vec();
        // The thread inherits the blocked signal mask, so signals keep going to the main loop.
        let spawned = std::thread::Builder::new()
            .name("preload".into())
            .spawn(move || {
                // Lowest priority (this thread only): warming must never delay the runtime.
                let param = libc::sched_param { sched_priority: 0 };
                // SAFETY: plain syscall on the calling thread with a valid parameter struct.
                let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
                if r < 0 {
                    let e = io::Error::last_os_error();
                    LinuxSys::default().log(&format!(
                        "stratos-init: warning: preload: cannot lower its priority ({e}); warming at normal priority"
                    ));
                }
                for p in &paths {
                    match std::fs::File::open(p) {
                        Ok(f) => {
                            // Only a hint: if the kernel declines it, the pages are read when
                            // first used instead, as without preloading; nothing depends on it.
                            let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::WillNeed);
                        }
                        Err(e) => {
                            let mut sys = LinuxSys::default();
                            sys.log(&format!("stratos-init: warning: preload {p}: {e}"));
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            self.log(&format!(
                "stratos-init: warning: cannot start the preload thread: {e}"
            ));
        }
    }

    fn block_signals(&mut self) -> io::Result<()> {
        let set = handled_signals();
        // SAFETY: `set` is an initialised sigset_t; a null old-set pointer is allowed.
        let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(())
    }

    fn wait_signal(&mut self, timeout_ms: u64) -> Option<i32> {
        let set = handled_signals();
        let ts = libc::timespec {
            tv_sec: (timeout_ms / 1000) as libc::time_t,
            tv_nsec: ((timeout_ms % 1000) * 1_000_000) as libc::c_long,
        };
        // SAFETY: all pointers are to live locals; a null siginfo pointer is allowed.
        let r = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
        (r > 0).then_some(r)
    }

    fn kill(&mut self, pid: u32, signal: i32) -> io::Result<()> {
        let pid = i32::try_from(pid)
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: kill(2) on one positive pid (real-time signals included, which rustix's
        // Signal does not name); it touches no memory of ours.
        if unsafe { libc::kill(pid, signal) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn tcp_probe(&mut self, port: u16) -> bool {
        std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            std::time::Duration::from_millis(100),
        )
        // Refused (or timed out): not listening yet; the readiness timeout warning reports a
        // runtime that never is.
        .is_ok()
    }

    fn notified(&mut self) -> bool {
        let Some(fd) = &self.notify_read else {
            return false;
        };
        let mut buf = [0u8; 64];
        // EAGAIN: nothing written yet. End of file (the runtime closed the pipe without writing)
        // or an error: it cannot become ready this way; the readiness timeout warning says so.
        matches!(rustix::io::read(fd, &mut buf), Ok(n) if n > 0)
    }

    fn set_hostname(&mut self, name: &str) -> io::Result<()> {
        rustix::system::sethostname(name.as_bytes()).map_err(io::Error::from)
    }

    fn load_module(&mut self, path: &str, params: &str) -> io::Result<()> {
        let f = std::fs::File::open(path)?;
        let params =
            CString::new(params).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // MODULE_INIT_COMPRESSED_FILE lets the kernel decompress .ko.xz/.ko.zst itself.
        let flags = if path.ends_with(".ko") { 0 } else { 4 };
        match rustix::system::finit_module(&f, params.as_c_str(), flags) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::EXIST) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn link_up(&mut self, name: &str) -> io::Result<()> {
        let fd = inet_socket()?;
        let mut req = IfReqFlags {
            name: ifname(name)?,
            flags: 0,
            _pad: [0; 22],
        };
        ioctl(&fd, libc::SIOCGIFFLAGS, &mut req)?;
        req.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        ioctl(&fd, libc::SIOCSIFFLAGS, &mut req)
    }

    fn set_address(&mut self, name: &str, addr: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
        let fd = inet_socket()?;
        let mut req = IfReqAddr {
            name: ifname(name)?,
            addr: sockaddr(addr),
            _pad: [0; 8],
        };
        ioctl(&fd, libc::SIOCSIFADDR, &mut req)?;
        let mask = if prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix_len.min(32)))
        };
        req.addr = sockaddr(Ipv4Addr::from(mask));
        ioctl(&fd, libc::SIOCSIFNETMASK, &mut req)
    }

    fn add_default_route(&mut self, gateway: Ipv4Addr) -> io::Result<()> {
        let fd = inet_socket()?;
        let mut rt = RtEntry {
            rt_pad1: 0,
            rt_dst: sockaddr(Ipv4Addr::UNSPECIFIED),
            rt_gateway: sockaddr(gateway),
            rt_genmask: sockaddr(Ipv4Addr::UNSPECIFIED),
            rt_flags: (libc::RTF_UP | libc::RTF_GATEWAY) as libc::c_ushort,
            rt_pad2: 0,
            rt_pad3: 0,
            rt_tos: 0,
            rt_class: 0,
            rt_pad4: [0; 3],
            rt_metric: 0,
            rt_dev: std::ptr::null_mut(),
            rt_mtu: 0,
            rt_window: 0,
            rt_irtt: 0,
        };
        ioctl(&fd, libc::SIOCADDRT, &mut rt)
    }

    fn spawn(&mut self, s: &Spawn) -> io::Result<u32> {
        let (prog, args) = s
            .argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty argv"))?;
        let mut cmd = Command::new(prog);
        cmd.args(args)
            .env_clear()
            .envs(s.env.iter().map(|(k, v)| (k, v)))
            .current_dir(s.cwd)
            .uid(s.uid)
            .gid(s.gid);
        // The runtime never holds the console: its stdin is /dev/null, and its output goes
        // through a pipe the init relays (prefixed, escaped, paced) or to /dev/null.
        cmd.stdin(std::process::Stdio::null());
        let relay_read = if s.null_stdio {
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            None
        } else {
            let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
            let w2 = rustix::io::fcntl_dupfd_cloexec(&w, 0)?;
            cmd.stdout(std::process::Stdio::from(w))
                .stderr(std::process::Stdio::from(w2));
            Some(r)
        };
        // Everything the child does between fork and exec is prepared here, so the closure
        // only makes system calls and allocates nothing.
        // Both descriptors the child uses are moved above the notify descriptor (3): the
        // child's dup2 onto 3 must not replace the one it writes to its cgroup afterwards, and
        // a pipe end that already is 3 would keep its close-on-exec flag through dup2.
        let procs = match s.cgroup_procs {
            Some(p) => Some(above_notify_fd(
                std::fs::OpenOptions::new().write(true).open(p)?,
            )?),
            None => None,
        };
        let notify_write = if s.notify {
            let (r, w) = rustix::pipe::pipe_with(
                rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
            )?;
            self.notify_read = Some(r);
            cmd.env("STRATOS_NOTIFY_FD", stratos_wire::NOTIFY_FD.to_string());
            Some(above_notify_fd(w)?)
        } else {
            None
        };
        let filter: Option<Vec<libc::sock_filter>> = s.seccomp.map(decode_filter).transpose()?;
        let seccomp_flags: libc::c_ulong = if s.seccomp_log { 2 } else { 0 }; // SECCOMP_FILTER_FLAG_LOG
        let procs_fd = procs.as_ref().map(|f| f.as_raw_fd());
        let notify_fd = notify_write.as_ref().map(|f| f.as_raw_fd());
        // SAFETY: the closure runs in the forked child before exec. It only makes
        // async-signal-safe system calls on values prepared above and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                // PID 1 blocks the signals it handles; the runtime starts with none blocked.
                let mut empty: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut empty);
                // Cannot fail: SIG_SETMASK with a valid set.
                libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                // No stray descriptors of the init survive exec. Belt and braces: every descriptor
                // the init opens is close-on-exec already (std and rustix open them so), so a
                // kernel without close_range (before 5.11) loses nothing; not a reason to fail.
                libc::syscall(
                    libc::SYS_close_range,
                    3u32,
                    u32::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                );
                if let Some(fd) = notify_fd {
                    if libc::dup2(fd, stratos_wire::NOTIFY_FD) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                // Into the runtime's cgroup as late as it can be (the filter below may not
                // allow the write): what `[observe]` counts of the child before its exec is
                // only the seccomp() call that installs the filter.
                if let Some(fd) = procs_fd {
                    // Writing "0" moves the writing process into the cgroup.
                    if libc::write(fd, b"0".as_ptr().cast(), 1) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if let Some(f) = &filter {
                    let prog = libc::sock_fprog {
                        len: f.len() as libc::c_ushort,
                        filter: f.as_ptr() as *mut libc::sock_filter,
                    };
                    let r = libc::syscall(
                        libc::SYS_seccomp,
                        1 as libc::c_ulong, // SECCOMP_SET_MODE_FILTER
                        seccomp_flags,
                        &prog as *const libc::sock_fprog,
                    );
                    if r < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        // The Command held the pipe's write ends: they are closed with it, so the relay sees
        // the end of the output once the runtime (and whatever inherited them) is gone.
        drop(cmd);
        if let Some(r) = relay_read {
            let busy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            // Only to ask how much is pending: a failure just means no settling.
            self.relay = rustix::io::fcntl_dupfd_cloexec(&r, 0)
                .ok()
                .map(|d| (d, busy.clone()));
            crate::channel::relay(std::fs::File::from(r), busy);
        }
        drop(notify_write);
        drop(procs);
        // The child is reaped by `wait` (waitpid(-1)); dropping the handle does not wait.
        Ok(child.id())
    }

    fn wait(&mut self, block: bool) -> io::Result<Waited> {
        let opts = if block {
            WaitOptions::empty()
        } else {
            WaitOptions::NOHANG
        };
        match rustix::process::wait(opts) {
            Ok(Some((pid, status))) => Ok(Waited::Reaped(
                pid.as_raw_nonzero().get() as u32,
                exit_kind(status),
            )),
            Ok(None) => Ok(Waited::NoneReady),
            Err(rustix::io::Errno::CHILD) => Ok(Waited::NoChildren),
            Err(rustix::io::Errno::INTR) => Ok(Waited::NoneReady),
            Err(e) => Err(e.into()),
        }
    }

    fn kill_all(&mut self, signal: i32) {
        // SAFETY: kill(2) with pid -1 signals every process we may signal except ourselves;
        // it touches no memory of ours.
        // Its only failure for PID 1 is ESRCH, nothing left to signal: the case all is well.
        unsafe {
            libc::kill(-1, signal);
        }
    }

    fn seccomp_audit_records(&mut self, out: &mut Vec<String>) -> io::Result<()> {
        let fd = match self.kmsg.take() {
            Some(fd) => fd,
            None => open_kmsg_at_end()?,
        };
        let fd = self.kmsg.insert(fd);
        let mut buf = vec![0u8; 8192];
        loop {
            match rustix::io::read(&*fd, &mut buf) {
                // Every new record was read.
                Ok(0) | Err(rustix::io::Errno::AGAIN) => return Ok(()),
                Ok(n) => {
                    if let Some(msg) = seccomp_record(&String::from_utf8_lossy(&buf[..n])) {
                        out.push(msg.to_owned());
                    }
                }
                // Records were overwritten before we read them: the next read goes on from the
                // oldest one left. INTR: nothing was read; read again.
                Err(rustix::io::Errno::PIPE | rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn sleep_ms(&mut self, ms: u64) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }

    fn bpf_map_create(&mut self, name: &str, map: BpfMap) -> io::Result<i32> {
        let (kind, value_size, entries, flags) = match map {
            BpfMap::Counters { entries } => (BPF_MAP_TYPE_ARRAY, 8, entries, BPF_F_MMAPABLE),
            BpfMap::Slots {
                value_size,
                entries,
            } => (BPF_MAP_TYPE_ARRAY, value_size, entries, 0),
        };
        let mut a = Attr::new();
        // map_type, key_size, value_size, max_entries, map_flags; map_name at 28.
        a.u32(0, kind)
            .u32(4, 4)
            .u32(8, value_size)
            .u32(12, entries)
            .u32(16, flags)
            .name(28, name);
        let fd = bpf(BPF_MAP_CREATE, &mut a)?;
        let raw = fd.as_raw_fd();
        if let BpfMap::Counters { entries } = map {
            let len = (entries as usize * 8).next_multiple_of(4096);
            // SAFETY: a fresh shared mapping of the map's values (offset 0 of an mmapable
            // array is its first value); the kernel keeps the pages for as long as the
            // mapping exists, which `Mapped` ends with munmap. Writable so the counters can be
            // read as atomics (the programs add to them concurrently); the init never writes.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    raw,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            self.bpf_counters.push((
                raw,
                Mapped {
                    ptr: p.cast::<u64>(),
                    entries: entries as usize,
                    len,
                },
            ));
        }
        self.bpf_fds.push(fd);
        Ok(raw)
    }

    fn bpf_prog_load(&mut self, name: &str, insns: &[u8]) -> Result<i32, BpfLoadError> {
        let license = b"GPL\0";
        let load = |log: Option<&mut Vec<u8>>| {
            let mut a = Attr::new();
            // prog_type, insn_cnt, insns, license; log_level, log_size, log_buf; prog_name at 48.
            a.u32(0, BPF_PROG_TYPE_RAW_TRACEPOINT)
                .u32(4, (insns.len() / 8) as u32)
                .u64(8, insns.as_ptr() as u64)
                .u64(16, license.as_ptr() as u64)
                .name(48, name);
            if let Some(buf) = log {
                a.u32(24, 1)
                    .u32(28, buf.len() as u32)
                    .u64(32, buf.as_mut_ptr() as u64);
            }
            bpf(BPF_PROG_LOAD, &mut a)
        };
        // Without a log first (the verifier is faster without one); a refusal is loaded again
        // with the log, to say why.
        match load(None) {
            Ok(fd) => {
                let raw = fd.as_raw_fd();
                self.bpf_fds.push(fd);
                Ok(raw)
            }
            Err(source) => {
                let mut buf = vec![0u8; VERIFIER_LOG_BYTES];
                let _ = load(Some(&mut buf));
                let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
                Err(BpfLoadError {
                    source,
                    log: String::from_utf8_lossy(&buf[..end]).into_owned(),
                })
            }
        }
    }

    fn bpf_attach_raw_tracepoint(&mut self, tracepoint: &str, prog: i32) -> io::Result<()> {
        let name = CString::new(tracepoint).map_err(|_| io::ErrorKind::InvalidInput)?;
        let mut a = Attr::new();
        // raw_tracepoint.name, raw_tracepoint.prog_fd.
        a.u64(0, name.as_ptr() as u64).u32(8, prog as u32);
        let link = bpf(BPF_RAW_TRACEPOINT_OPEN, &mut a)?;
        self.bpf_fds.push(link);
        Ok(())
    }

    fn bpf_counters(&mut self, map: i32, out: &mut Vec<u64>) -> io::Result<()> {
        let m = self
            .bpf_counters
            .iter()
            .find(|(fd, _)| *fd == map)
            .map(|(_, m)| m)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        out.clear();
        out.extend((0..m.entries).map(|i| {
            // SAFETY: `i < entries`: inside the live, writable, page-aligned mapping, so the
            // pointer is valid and 8-byte aligned for as long as `m` lives; the programs
            // update the counters only with atomic adds, so reading them as atomics is not a
            // data race.
            let counter = unsafe { std::sync::atomic::AtomicU64::from_ptr(m.ptr.add(i)) };
            counter.load(std::sync::atomic::Ordering::Relaxed)
        }));
        Ok(())
    }

    fn cgroup_id(&mut self, path: &str) -> io::Result<u64> {
        Ok(rustix::fs::stat(path)?.st_ino)
    }

    fn sync(&mut self) {
        rustix::fs::sync();
    }

    fn power_off(&mut self) {
        rustix::fs::sync();
        // reboot(2) only returns on failure (not PID 1, no CAP_SYS_BOOT). PID 1 must never exit
        // (the kernel panics), so say so and park here.
        if let Err(e) = rustix::system::reboot(rustix::system::RebootCommand::PowerOff) {
            self.log(&format!(
                "{} warning: cannot power off: {e}; halting here",
                stratos_wire::LOG_PREFIX
            ));
        }
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// Opens the kernel log for reading, non-blocking, positioned after the records already there
/// (the runtime starts after this; earlier records are not its).
fn open_kmsg_at_end() -> io::Result<OwnedFd> {
    let fd = rustix::fs::open(
        "/dev/kmsg",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    rustix::fs::seek(&fd, rustix::fs::SeekFrom::End(0))?;
    Ok(fd)
}

/// The message of a `/dev/kmsg` record (`pri,seq,usec,flags;message` then continuation lines)
/// if it reports a seccomp decision (audit type 1326).
pub(crate) fn seccomp_record(record: &str) -> Option<&str> {
    let msg = record
        .split_once(';')
        .map_or(record, |(_, m)| m)
        .lines()
        .next()
        .unwrap_or("");
    msg.contains("type=1326").then_some(msg)
}

/// Decodes a BPF program: 8-byte records of (u16 code, u8 jt, u8 jf, u32 k), little endian.
fn decode_filter(bytes: &[u8]) -> io::Result<Vec<libc::sock_filter>> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(8) || bytes.len() / 8 > 4096 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "malformed seccomp filter (not 1..4096 8-byte instructions)",
        ));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

fn exit_kind(status: WaitStatus) -> ExitKind {
    if let Some(sig) = status.terminating_signal() {
        ExitKind::Signaled(sig)
    } else {
        // Without WUNTRACED/WCONTINUED, wait reports only exits and deaths by signal: a status
        // that is neither (the 0) cannot come back.
        ExitKind::Exited(status.exit_status().unwrap_or(0))
    }
}

/// The same open file on a descriptor above [`stratos_wire::NOTIFY_FD`] (close-on-exec).
fn above_notify_fd(fd: impl Into<OwnedFd>) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(
        fd.into(),
        stratos_wire::NOTIFY_FD + 7,
    )?)
}
