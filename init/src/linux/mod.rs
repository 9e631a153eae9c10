//! The real [`Sys`]: Linux system calls, one submodule per concern. The only module of the
//! init with `unsafe` (here and in its submodules), each block with its reason.
#![allow(unsafe_code)]

mod bpf;
mod files;
mod kmsg;
mod net;
mod process;
mod random;
mod signals;

use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::channel;
use crate::sys::{BpfLoadError, BpfMap, Mount, Spawn, Sys, Waited};

#[derive(Default)]
pub struct LinuxSys {
    /// The runtime's readiness and output pipes.
    runtime: process::Runtime,
    /// The kernel log, for the seccomp audit records.
    kmsg: kmsg::Kmsg,
    /// The eBPF maps, programs and links of `[observe]`.
    bpf: bpf::Bpf,
    /// The Lambda interface's server, once started.
    lambda: Option<crate::lambda::Server>,
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
        channel::console_line(line);
    }

    fn mkdir_p(&mut self, path: &str, mode: u32) -> io::Result<()> {
        files::mkdir_p(path, mode)
    }

    fn mount(&mut self, m: &Mount) -> io::Result<()> {
        files::mount(m)
    }

    fn umount(&mut self, target: &str) -> io::Result<()> {
        files::umount(target)
    }

    fn remount_root_ro(&mut self) -> io::Result<()> {
        files::remount_root_ro()
    }

    fn read_file(&mut self, path: &str) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn write_file(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        files::write_file(path, data)
    }

    fn set_hostname(&mut self, name: &str) -> io::Result<()> {
        rustix::system::sethostname(name.as_bytes()).map_err(io::Error::from)
    }

    fn load_module(&mut self, path: &str, params: &str) -> io::Result<()> {
        files::load_module(path, params)
    }

    fn link_up(&mut self, name: &str) -> io::Result<()> {
        net::link_up(name)
    }

    fn set_address(&mut self, name: &str, addr: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
        net::set_address(name, addr, prefix_len)
    }

    fn add_default_route(&mut self, gateway: Ipv4Addr) -> io::Result<()> {
        net::add_default_route(gateway)
    }

    fn swapon(&mut self, device: &str, priority: i32) -> io::Result<()> {
        files::swapon(device, priority)
    }

    fn entropy_ready(&mut self) -> bool {
        random::entropy_ready()
    }

    fn watch_entropy(&mut self, ready: fn(&mut Self)) {
        random::watch_entropy(move || ready(&mut LinuxSys::default()));
    }

    fn add_entropy(&mut self, bytes: &[u8]) -> io::Result<()> {
        random::add_entropy(bytes)
    }

    fn reseed_crng(&mut self) -> io::Result<()> {
        random::reseed_crng()
    }

    fn set_realtime(&mut self, unix_ns: u128) -> io::Result<()> {
        random::set_realtime(unix_ns)
    }

    fn open_control(&mut self, on_message: fn(&mut Self, &str)) {
        channel::open(move |line| on_message(&mut LinuxSys::default(), line));
    }

    fn await_control(&mut self, timeout_ms: u64) {
        channel::await_open(Duration::from_millis(timeout_ms));
    }

    fn control(&mut self, msg: &stratos_wire::Control) {
        channel::send(msg);
    }

    fn flush_control(&mut self, timeout_ms: u64) {
        channel::flush(Duration::from_millis(timeout_ms));
    }

    fn start_preload(&mut self, paths: &[String]) {
        files::start_preload(paths);
    }

    fn block_signals(&mut self) -> io::Result<()> {
        signals::block()
    }

    fn wait_signal(&mut self, timeout_ms: u64) -> Option<i32> {
        signals::wait(timeout_ms)
    }

    fn spawn(&mut self, s: &Spawn) -> io::Result<u32> {
        self.runtime.spawn(s)
    }

    fn wait(&mut self, block: bool) -> io::Result<Waited> {
        process::wait(block)
    }

    fn kill(&mut self, pid: u32, signal: i32) -> io::Result<()> {
        signals::kill(pid, signal)
    }

    fn kill_group(&mut self, pgid: u32, signal: i32) -> io::Result<()> {
        signals::kill_group(pgid, signal)
    }

    fn kill_all(&mut self, signal: i32) {
        signals::kill_all(signal);
    }

    fn tcp_probe(&mut self, port: u16) -> bool {
        net::tcp_probe(port)
    }

    fn notified(&mut self) -> bool {
        self.runtime.notified()
    }

    fn settle_relay(&mut self) {
        self.runtime.settle_relay();
    }

    fn seccomp_audit_records(&mut self, out: &mut Vec<String>) -> io::Result<()> {
        self.kmsg.seccomp_audit_records(out)
    }

    fn start_lambda(&mut self, cfg: &stratos_wire::Lambda) -> io::Result<()> {
        let server = crate::lambda::Server::start(
            &crate::lambda::ServerConfig::from_wire(cfg),
            Box::new(|| {
                // PID 1 takes it in its supervision loop; if it cannot be sent, the loop still
                // reads the events at its next wake-up (within a second).
                let _ = signals::kill(1, crate::sys::SIGLAMBDA);
            }),
        )?;
        self.lambda = Some(server);
        Ok(())
    }

    fn lambda_events(&mut self) -> Vec<crate::lambda::LambdaEvent> {
        self.lambda
            .as_ref()
            .map(crate::lambda::Server::take_events)
            .unwrap_or_default()
    }

    fn lambda_runtime_started(&mut self) {
        if let Some(s) = &self.lambda {
            s.runtime_started();
        }
    }

    fn lambda_runtime_ended(&mut self, how: &str) {
        if let Some(s) = &self.lambda {
            s.runtime_ended(how);
        }
    }

    fn bpf_map_create(&mut self, name: &str, map: BpfMap) -> io::Result<i32> {
        self.bpf.map_create(name, map)
    }

    fn bpf_prog_load(&mut self, name: &str, insns: &[u8]) -> Result<i32, BpfLoadError> {
        self.bpf.prog_load(name, insns)
    }

    fn bpf_attach_raw_tracepoint(&mut self, tracepoint: &str, prog: i32) -> io::Result<()> {
        self.bpf.attach_raw_tracepoint(tracepoint, prog)
    }

    fn bpf_counters(&mut self, map: i32, out: &mut Vec<u64>) -> io::Result<()> {
        self.bpf.counters(map, out)
    }

    fn cgroup_id(&mut self, path: &str) -> io::Result<u64> {
        Ok(rustix::fs::stat(path)?.st_ino)
    }

    fn sleep_ms(&mut self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
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
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}
