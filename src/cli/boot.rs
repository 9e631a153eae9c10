//! `stratos boot`: run an image under QEMU with its serial console on the terminal.

use std::path::PathBuf;
use std::time::Duration;

use super::{CliError, CliResult};
use crate::boot::vm::{free_port, AccelChoice, Echo, Forward};
use crate::boot::{self, BootImage, Invoke, RunOptions};
use crate::cache::{self, Cache};
use crate::sign::verify::{verify_image_for, Need};

/// Boot an image under QEMU (KVM when it works, else TCG), or restore a snapshot of it
/// (--snapshot), showing what the function prints (the whole serial console with -v, and in
/// an interactive session) and keeping the whole console in a log file. Exits 0 when the runtime exited 0 (or
/// --invoke got a 2xx answer), else 1 naming what happened.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  stratos boot out/hello --forward 8080:8080\n  stratos boot out/hello --invoke /cgi-bin/hello     # boot, call the function once, stop\n  stratos boot out/hello --verify --image-key keys/release.pub\n  stratos boot out/hello --snapshot out/hello.snap --invoke /cgi-bin/hello   # restore, not boot\n  stratos boot --state /var/lib/stratos --forward 8080:8080   # whatever the node has in service\n\nGuest ports are forwarded to 127.0.0.1 only; the guest cannot open connections out.\nIn an interactive session, Ctrl-A X quits QEMU."
)]
pub struct Args {
    /// The image directory.
    #[arg(required_unless_present = "state", conflicts_with = "state")]
    pub dir: Option<PathBuf>,
    /// Boot the image a node's update state puts in service (its current.json, from
    /// `stratos update apply` or `update rollback`) instead of DIR: a launcher needs only this.
    #[arg(long, value_name = "STATE")]
    pub state: Option<PathBuf>,
    /// Forward 127.0.0.1:HOSTPORT to the guest's GUESTPORT (repeatable).
    #[arg(long, value_name = "HOSTPORT:GUESTPORT")]
    pub forward: Vec<Forward>,
    /// After the runtime starts, send one HTTP GET for PATH to the guest, print the answer and
    /// the time from QEMU start to the answer, then stop the VM.
    #[arg(long, value_name = "PATH")]
    pub invoke: Option<String>,
    /// Send this as the body of a POST instead of a GET: a file's contents, or JSON given
    /// inline (at most 6 MB, Lambda's limit). Without --invoke it goes to the path AWS's
    /// Runtime Interface Emulator takes events on (/2015-03-31/functions/function/invocations);
    /// an answer with X-Amz-Function-Error is a failed check.
    #[arg(long, value_name = "FILE|JSON")]
    pub event: Option<String>,
    /// The guest port --invoke talks to [default: 8080, or a Lambda function's invoke port].
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Give up (and stop QEMU) when the boot has not ended (or, with --invoke, answered) by
    /// then: a duration such as 90s or 5m (a bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = super::vocab::deadline)]
    pub timeout: Duration,
    /// Accelerator.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    pub memory: u32,
    /// Refuse to boot unless the image (and the --snapshot) verifies against --image-key.
    #[arg(long, requires = "image_key")]
    pub verify: bool,
    /// The image key, public (PREFIX.pub from `stratos keygen`), for --verify.
    #[arg(long, value_name = "FILE", requires = "verify")]
    pub image_key: Option<PathBuf>,
    /// Restore this snapshot (made by `stratos snapshot` for this image, on this QEMU and
    /// machine) instead of booting; with --verify its signature and digests are checked too.
    #[arg(long, value_name = "DIR")]
    pub snapshot: Option<PathBuf>,
    /// Do not copy the console to stdout.
    #[arg(long, short)]
    pub quiet: bool,
    /// Keep the whole console (every line, with its time) in FILE [default:
    /// <cache>/logs/boot/<image name>.console.log]. Without -v only the function's own output
    /// (the `fn> ` lines) is copied to stdout; -v (or STRATOS_CONSOLE=all) copies every line.
    #[arg(long, value_name = "FILE")]
    pub console_log: Option<PathBuf>,
}

impl Args {
    fn image_dir(&self) -> &std::path::Path {
        self.dir.as_deref().expect("clap requires DIR or --state")
    }
}

pub fn run(mut a: Args) -> CliResult {
    if let Some(state) = &a.state {
        let (cur, dir) =
            crate::channel::node::current_image(state).map_err(super::channel_args::map)?;
        eprintln!(
            "stratos: {} is current in {}",
            format_args!("{} {}", cur.image, cur.version),
            state.display()
        );
        a.dir = Some(dir);
    }
    if a.verify {
        verify_first(&a)?;
    }
    let image = BootImage::open(a.image_dir())?;
    let restore = a
        .snapshot
        .as_deref()
        .map(|dir| {
            let key = a
                .verify
                .then(|| a.image_key.as_deref().expect("clap requires it"));
            open_snapshot(dir, &image, key)
        })
        .transpose()?;
    crate::boot::handle_stop_signals().map_err(CliError::env)?;
    // A restore runs on the accelerator the snapshot was made with.
    let accel = match &restore {
        Some(s) => s.accel(),
        None => {
            let (accel, why) = image
                .choose_accel(a.accel, &Cache::new(cache::root()))
                .map_err(CliError::env)?;
            if let Some(why) = why {
                eprintln!("stratos: KVM unavailable ({why}); using TCG (software emulation)");
            }
            accel
        }
    };
    let mut forwards = a.forward.clone();
    let invoke = planned_invoke(&a, image.function_port(a.port), &mut forwards)?;
    let memory = restore.as_ref().map_or(a.memory, |s| s.meta.memory_mib);
    eprintln!(
        "stratos: {} {} {} ({}, {}, {} MiB){}",
        match &a.snapshot {
            Some(dir) => format!("restoring {} of", dir.display()),
            None => "booting".to_owned(),
        },
        image.manifest.image.name,
        image.manifest.image.version,
        accel.name(),
        image.machine.name(),
        memory,
        forwards
            .iter()
            .map(|f| format!(", 127.0.0.1:{} -> guest:{}", f.host, f.guest))
            .collect::<String>()
    );
    let interactive = invoke.is_none()
        && restore.is_none()
        && !a.quiet
        && std::io::IsTerminal::is_terminal(&std::io::stdin());
    let opts = RunOptions {
        accel,
        memory_mib: memory,
        forwards,
        timeout: a.timeout,
        echo: echo(a.quiet, interactive),
        interactive,
        stop_after_invoke: true,
        // What the function prints while answering reaches the serial console after the
        // answer reaches us (the UART drains behind the network): read it before stopping.
        linger: Duration::from_millis(500),
        cmdline: None,
        until_line: None,
        restore,
        hold: None,
        invoke,
    };
    let r = boot::run(&image, &opts);
    if crate::boot::stop_requested() {
        return Err(CliError::interrupted("the VM was stopped"));
    }
    let r = r?;
    keep_console(&a, &image, &r, opts.echo);
    print_timings(&r);
    print_syscalls(&r);
    print_seccomp_log(&r, image.arch);
    match &opts.invoke {
        Some(inv) => report_invocation(&r, inv),
        None => report_ending(&r),
    }
}

/// The console lines copied to stdout: none with --quiet; all of them with -v,
/// `STRATOS_CONSOLE=all` or in an interactive session; else the function's own output only.
pub(super) fn echo(quiet: bool, interactive: bool) -> Echo {
    let all = std::env::var_os("STRATOS_CONSOLE").is_some_and(|v| v == "all");
    if quiet {
        Echo::Off
    } else if interactive || all || crate::progress::verbose() {
        Echo::All
    } else {
        Echo::Relayed
    }
}

/// Writes the whole console to --console-log (or its default) and says where, unless every
/// line was already shown. A log that cannot be written is a warning: the boot itself worked.
fn keep_console(a: &Args, image: &BootImage, r: &boot::BootRun, echo: Echo) {
    let path = a.console_log.clone().unwrap_or_else(|| {
        cache::root()
            .join("logs/boot")
            .join(format!("{}.console.log", image.manifest.image.name))
    });
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| crate::fsio::write_atomic(&path, r.log().as_bytes(), 0o644));
    match written {
        Err(e) => eprintln!(
            "stratos: warning: cannot keep the console in {}: {e}",
            path.display()
        ),
        Ok(()) if echo != Echo::All => eprintln!(
            "stratos: the whole console ({} lines): {} (-v shows it as it happens)",
            r.lines.len(),
            path.display()
        ),
        Ok(()) => {}
    }
}

/// A snapshot to restore: for this image, QEMU and machine (and with --verify, signed and
/// intact), or refused naming the difference.
/// Loads a snapshot and checks it restores for `image` here (same image, QEMU version and
/// machine); with `verify_with`, its signature and digests too.
pub(super) fn open_snapshot(
    dir: &std::path::Path,
    image: &BootImage,
    verify_with: Option<&std::path::Path>,
) -> Result<std::sync::Arc<crate::boot::snapshot::Snapshot>, CliError> {
    use crate::boot::snapshot::Snapshot;
    let snap = Snapshot::load(dir).map_err(CliError::input)?;
    if let Some(pubkey) = verify_with {
        let key = super::vocab::public_key("--image-key", pubkey)?;
        let id = snap.verify(&key).map_err(|e| {
            CliError::check(anyhow::anyhow!(
                "refusing to restore: verification FAILED: {e}"
            ))
        })?;
        eprintln!("stratos: verified snapshot {} (key {id})", dir.display());
    }
    let probe = snap.restore_spec(image, snap.accel(), Vec::new(), std::path::Path::new("/"));
    snap.check_restorable(image, &probe)
        .map_err(|e| CliError::input_or_env(e.is_environment(), e))?;
    Ok(std::sync::Arc::new(snap))
}

/// `--verify`: the image's signature and digests hold, or nothing boots.
fn verify_first(a: &Args) -> CliResult {
    let key = super::vocab::public_key(
        "--image-key",
        a.image_key.as_deref().expect("clap requires it"),
    )?;
    let v = verify_image_for(a.image_dir(), &key, Need::Boot).map_err(|e| {
        CliError::check(anyhow::anyhow!(
            "refusing to boot: verification FAILED: {e}"
        ))
    })?;
    eprintln!(
        "stratos: verified {} {} (key {})",
        v.manifest.image.name, v.manifest.image.version, v.key_id
    );
    Ok(())
}

/// The call `--invoke PATH` / `--event E` asks for, if any: a POST of the event (to
/// --invoke's path, else the Runtime Interface Emulator's), or a GET of --invoke's path, on
/// guest port `port`.
fn planned_invoke(
    a: &Args,
    port: u16,
    forwards: &mut Vec<Forward>,
) -> Result<Option<Invoke>, CliError> {
    let event = a
        .event
        .as_deref()
        .map(crate::boot::run::read_event)
        .transpose()
        .map_err(|e| CliError::input(anyhow::anyhow!(e)))?;
    let path = match (&a.invoke, &event) {
        (Some(p), _) => p.as_str(),
        (None, Some(_)) => crate::boot::run::LAMBDA_INVOKE_PATH,
        (None, None) => return Ok(None),
    };
    plan_invoke(path, port, event, forwards).map(Some)
}

/// The call `--invoke PATH` makes, through the forward to the function's port (added when the
/// user gave none).
fn plan_invoke(
    path: &str,
    port: u16,
    event: Option<Vec<u8>>,
    forwards: &mut Vec<Forward>,
) -> Result<Invoke, CliError> {
    if !path.starts_with('/') {
        return Err(CliError::input(anyhow::anyhow!(
            "--invoke {path:?}: the path must start with '/'"
        )));
    }
    let host = match forwards.iter().find(|f| f.guest == port) {
        Some(f) => f.host,
        None => {
            let h = free_port().map_err(CliError::env)?;
            forwards.push(Forward {
                host: h,
                guest: port,
            });
            h
        }
    };
    Ok(Invoke {
        host_port: host,
        path: path.to_owned(),
        count: 1,
        event,
    })
}

/// In seccomp log mode: the calls the baseline would have denied.
fn print_seccomp_log(r: &boot::BootRun, arch: crate::arch::Arch) {
    let logged = boot::vm::console::seccomp_log(&r.seccomp_records, arch);
    if !logged.is_empty() {
        eprintln!(
            "stratos: seccomp log mode: calls the baseline would deny: {}",
            logged
                .iter()
                .map(|(n, c)| format!("{n} x{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

/// The answer to `--invoke`: printed with the time to it; anything but a 2xx is a failed check.
fn report_invocation(r: &boot::BootRun, inv: &Invoke) -> CliResult {
    let Some(i) = r.invocations.first() else {
        return Err(CliError::check(anyhow::anyhow!(
            "no answer from {}: {}",
            inv.path,
            r.failure_reason()
        )));
    };
    println!("--- response: HTTP {} from {} ---", i.status, inv.path);
    // The function's answer, made printable: its bytes never reach the terminal raw.
    for line in i.body.trim_ascii_end().split(|&b| b == b'\n') {
        println!("{}", stratos_wire::control::printable(line));
    }
    println!("---");
    println!(
        "time from QEMU start to the first response: {:.3} s ({}, {})",
        r.first_response.unwrap_or_default().as_secs_f64(),
        r.accel.name(),
        r.machine.name()
    );
    eprintln!("stratos: VM stopped");
    if let Some(why) = r.health_failure() {
        return Err(CliError::check(anyhow::anyhow!("{why}")));
    }
    if let Some(e) = &i.function_error {
        return Err(CliError::check(anyhow::anyhow!(
            "the function failed (X-Amz-Function-Error: {e})"
        )));
    }
    if (200..300).contains(&i.status) {
        Ok(())
    } else {
        Err(CliError::check(anyhow::anyhow!(
            "the function answered HTTP {}",
            i.status
        )))
    }
}

/// How the guest ended: its runtime's status is printed, never passed through as ours (1, 2
/// and 3 mean something else here): a runtime that failed is a failed check.
fn report_ending(r: &boot::BootRun) -> CliResult {
    match r.ending.exit_code() {
        Some(0) => Ok(()),
        Some(code) => Err(CliError::check(anyhow::anyhow!(
            "the guest runtime ended with exit code {code}"
        ))),
        None => Err(CliError::check(anyhow::anyhow!("{}", r.failure_reason()))),
    }
}

/// `[observe]`: the runtime's system calls through the first answer, the most frequent first.
fn print_syscalls(r: &boot::BootRun) {
    let reading = r.readings.after_first.and_then(|i| r.readings.all.get(i));
    if let Some(e) = &r.readings.error {
        eprintln!("stratos: [observe]: {e}");
    }
    let Some(m) = reading else { return };
    if let Some(e) = &m.observe_error {
        eprintln!("stratos: [observe]: no system call counts: {e}");
        return;
    }
    let (Some(calls), Some(total)) = (&m.syscalls, m.syscalls_total) else {
        return;
    };
    let mut top: Vec<(&String, &u64)> = calls.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    eprintln!(
        "stratos: the runtime's system calls through the first answer: {total} in {} kinds ({})",
        calls.len(),
        top.iter()
            .take(5)
            .map(|(n, c)| format!("{n} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn print_timings(r: &boot::BootRun) {
    let Ok(phases) = &r.phases else { return };
    let get = |n: &str| {
        phases
            .iter()
            .find(|p| p.name == n)
            .map(|p| p.ns as f64 / 1e9)
    };
    let mut parts = Vec::new();
    if let Some(t) = get("init_start") {
        parts.push(format!("kernel start -> init {t:.3} s"));
        if let Some(e) = get("runtime_exec") {
            parts.push(format!("init -> runtime exec {:.1} ms", (e - t) * 1e3));
        }
    }
    if !parts.is_empty() {
        eprintln!(
            "stratos: timings (guest CLOCK_BOOTTIME): {}",
            parts.join(" | ")
        );
    }
}
