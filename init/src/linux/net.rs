//! The network: an interface up, its IPv4 address, the default route (ioctls on an inet
//! socket), and a TCP probe of the runtime.

use std::io;
use std::net::Ipv4Addr;

use rustix::fd::{AsRawFd, OwnedFd};

const IFNAMSIZ: usize = 16;

/// `struct ifreq` with the `sockaddr_in` member of its union (40 bytes on a 64-bit machine:
/// x86-64 and arm64 share the layout).
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

/// `struct rtentry` (`<net/route.h>`; x86-64 and arm64 share the LP64 layout).
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

// The kernel reads these by size: a layout that drifted on one architecture fails the build.
const _: () = assert!(std::mem::size_of::<IfReqAddr>() == 40);
const _: () = assert!(std::mem::size_of::<IfReqFlags>() == 40);
const _: () = assert!(std::mem::size_of::<RtEntry>() == 120);

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

/// Brings interface `name` up.
pub fn link_up(name: &str) -> io::Result<()> {
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

/// Sets the IPv4 address and netmask of interface `name`.
pub fn set_address(name: &str, addr: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
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

/// Adds the default route via `gateway`.
pub fn add_default_route(gateway: Ipv4Addr) -> io::Result<()> {
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

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn tcp_probe(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        std::time::Duration::from_millis(100),
    )
    // Refused (or timed out): not listening yet; the readiness timeout warning reports a
    // runtime that never is.
    .is_ok()
}
