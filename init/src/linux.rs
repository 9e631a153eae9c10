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

use crate::sys::{ExitKind, Mount, Spawn, Sys, Waited};

pub struct LinuxSys;

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
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        // One write per line so lines from the init are never split by the runtime's output.
        // If the console is gone there is nowhere to report that.
        let _ = io::stdout().lock().write_all(&buf);
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

    fn read_file(&mut self, path: &str) -> io::Result<Vec<u8>> {
        std::fs::read(path)
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
        // SAFETY: the closure runs in the forked child before exec; it only makes
        // async-signal-safe system calls (setsid) and allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::setsid().map_err(io::Error::from)?;
                Ok(())
            });
        }
        let child = cmd.spawn()?;
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
        unsafe {
            libc::kill(-1, signal);
        }
    }

    fn sleep_ms(&mut self, ms: u64) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }

    fn sync(&mut self) {
        rustix::fs::sync();
    }

    fn power_off(&mut self) {
        rustix::fs::sync();
        let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
        // reboot(2) only returns on failure (not PID 1, no CAP_SYS_BOOT). PID 1 must never exit
        // (the kernel panics), so park here.
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

fn exit_kind(status: WaitStatus) -> ExitKind {
    if let Some(sig) = status.terminating_signal() {
        ExitKind::Signaled(sig)
    } else {
        ExitKind::Exited(status.exit_status().unwrap_or(0))
    }
}
