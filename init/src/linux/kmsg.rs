//! The kernel log (`/dev/kmsg`), read for the seccomp filter's audit records.

use std::io;

use rustix::fd::OwnedFd;

/// `/dev/kmsg`, opened at its end on first use (seccomp log mode).
#[derive(Default)]
pub struct Kmsg {
    fd: Option<OwnedFd>,
}

impl Kmsg {
    /// Appends the seccomp audit records since the last call to `out`.
    pub fn seccomp_audit_records(&mut self, out: &mut Vec<String>) -> io::Result<()> {
        let fd = match self.fd.take() {
            Some(fd) => fd,
            None => open_kmsg_at_end()?,
        };
        let fd = self.fd.insert(fd);
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
fn seccomp_record(record: &str) -> Option<&str> {
    let msg = record
        .split_once(';')
        .map_or(record, |(_, m)| m)
        .lines()
        .next()
        .unwrap_or("");
    msg.contains("type=1326").then_some(msg)
}

#[cfg(test)]
mod tests {
    use super::seccomp_record;

    #[test]
    fn kmsg_records_keep_only_seccomp_decisions_first_line() {
        assert_eq!(
            seccomp_record(
                "5,1234,567890,-;audit: type=1326 audit(1.2:3): syscall=83\n SUBSYSTEM=x\n"
            ),
            Some("audit: type=1326 audit(1.2:3): syscall=83")
        );
        assert_eq!(
            seccomp_record("6,1235,567891,-;virtio_net virtio0 eth0: link up\n"),
            None
        );
    }
}
