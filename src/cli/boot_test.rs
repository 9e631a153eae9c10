//! `stratos boot-test`: measured boots, A/B against a baseline, gated on objectives.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{CliError, CliResult};
use crate::boot::bench::objectives::{parse_gates, parse_slos};
use crate::boot::bench::{self, concurrent, report, BenchError, BenchOptions, Images};
use crate::boot::vm::{Accel, AccelChoice};
use crate::boot::BootImage;
use crate::boot_result::{BootTestResult, RunRecord};
use crate::cache::{self, Cache};

/// Boot an image N times under QEMU, each a fresh VM: phase markers from the guest, the time to
/// the first answered invocation (cold start) and the warm ones, the memory high-water mark.
/// With --baseline, A and B boots alternate (A B A B ...) and each metric gets its ratio
/// image/baseline (B/A) per pair, the median ratio and a 95% bootstrap interval. With
/// --snapshot, B restores the snapshot instead of booting, against A booting the same image (or
/// --baseline). Objectives (--slo, --max-regression) make the command exit 1, naming every one
/// that failed.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  stratos boot-test out/hello --runs 10 --json-out boot.json\n  stratos boot-test out/hello --baseline out/hello-stock --runs 10 --slo runtime_ready.p95=900ms --max-regression first_response=10%\n  stratos boot-test out/python-fn --runs 3 --slo first_response.p95=3s --slo 'syscalls.cold_start<=2000' --json-out boot.json\n  stratos boot-test out/python-fn --snapshot out/python-fn.snap --runs 10 --concurrent 10\n  stratos boot-test out/python-fn --snapshot out/python-fn.snap --verify --image-key keys/release.pub --slo first_response.p95=1s --json-out boot.json\n\nMetrics (ms unless noted): init_start .. runtime_ready (guest CLOCK_BOOTTIME since kernel start),\ninit_to_exec, ready_seen, resumed, restored and first_response (host, since QEMU was spawned;\nresumed and restored only for restores), cold_start (first call's latency), warm (median of the\nlater calls), memory_peak and mem_available (KiB); for an image with [observe], the runtime's\nsystem calls (calls): syscalls.ready (at runtime_ready), syscalls.cold_start (through the first\nanswer), syscalls.total (through the last) and syscalls.warm (per later call).\nExit codes: 0 all runs booted and all objectives hold, 1 a run failed or an objective failed, 2 bad input,\n3 QEMU missing or failing, 130 interrupted (the VM is stopped; the runs so far are not reported)."
)]
pub struct Args {
    /// The image directory (B).
    pub dir: PathBuf,
    /// Boots per image.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// A baseline image (A), booted interleaved with DIR.
    #[arg(long, value_name = "DIR")]
    pub baseline: Option<PathBuf>,
    /// Restore this snapshot of DIR (made by `stratos snapshot`) for DIR's runs instead of
    /// booting; the baseline is DIR booted, unless --baseline names another image. Memory and
    /// accelerator are the snapshot's, for both.
    #[arg(long, value_name = "SNAPSHOT")]
    pub snapshot: Option<PathBuf>,
    /// Refuse to run unless DIR (and the --snapshot, its signature and the digests of its
    /// files) verifies against --image-key. The result records whether the snapshot was
    /// verified: one that was not cannot pass `rollout advance --gate`.
    #[arg(long, requires = "image_key")]
    pub verify: bool,
    /// The image key, public (PREFIX.pub from `stratos keygen`), for --verify.
    #[arg(long, value_name = "FILE", requires = "verify")]
    pub image_key: Option<PathBuf>,
    /// After the runs, start N clones of the snapshot at once and then N boots of DIR at once,
    /// call each once, and compare the host memory of the two groups (sum of QEMU's PSS).
    #[arg(long, value_name = "N", requires = "snapshot")]
    pub concurrent: Option<usize>,
    /// HTTP path of the function to invoke (default "/", or with --event, or for a Lambda
    /// function, the path AWS's Runtime Interface Emulator takes events on; a Lambda function
    /// without --event is sent the event {}).
    #[arg(long, value_name = "PATH")]
    pub invoke: Option<String>,
    /// POST this to the function on every call instead of a GET: a file's contents, or JSON
    /// given inline (a Lambda function's event; at most 6 MB). An answer with
    /// X-Amz-Function-Error fails the run.
    #[arg(long, value_name = "FILE|JSON")]
    pub event: Option<String>,
    /// Call the baseline at this path instead (with --baseline-event, default: the path AWS's
    /// Runtime Interface Emulator takes events on): to compare functions called differently,
    /// such as a Lambda function against an HTTP one. Without it, the baseline is called as
    /// DIR is; or, when neither --invoke nor --event is given, its own way (a GET of /, or a
    /// Lambda function's event {}).
    #[arg(long, value_name = "PATH", requires = "baseline")]
    pub baseline_invoke: Option<String>,
    /// POST this to the baseline instead (a file's contents, or JSON given inline). With
    /// --baseline-invoke but without it, the baseline gets GETs.
    #[arg(long, value_name = "FILE|JSON", requires = "baseline")]
    pub baseline_event: Option<String>,
    /// The guest port the function listens on, DIR's and the baseline's [default: each
    /// image's own: 8080, or a Lambda function's invoke port].
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Invocations per boot: the first is the cold start, the rest are warm.
    #[arg(long, default_value_t = 5)]
    pub invocations: usize,
    /// Objectives on DIR's results, comma-separated or repeated: METRIC.STAT=LIMIT (STAT: min,
    /// p50, p95, p99 or max), or METRIC=LIMIT / 'METRIC<=LIMIT' for every run (the max; quote
    /// `<=` in a shell). Times take a unit (900ms, 2s, 1m), memory is KiB, system calls a count:
    /// runtime_ready.p95=900ms,first_response.p50=2s or 'syscalls.total<=400'.
    #[arg(long, value_name = "METRIC[.STAT]=LIMIT")]
    pub slo: Vec<String>,
    /// Allowed regression of DIR against the baseline (median image/baseline ratio), e.g.
    /// runtime_ready=10% or syscalls.total=10%. Repeatable.
    #[arg(long, value_name = "METRIC=PERCENT%", requires = "baseline")]
    pub max_regression: Vec<String>,
    /// Write every result as JSON to FILE (schema stratos-boot-test/1:
    /// docs/boot-test.schema.json).
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,
    /// Also write the table as Markdown to FILE.
    #[arg(long, value_name = "FILE")]
    pub markdown_out: Option<PathBuf>,
    /// Accelerator [default: auto; with --snapshot, the snapshot's].
    #[arg(long, value_enum)]
    pub accel: Option<AccelChoice>,
    /// Guest memory in MiB [default: 512; with --snapshot, the snapshot's].
    #[arg(long)]
    pub memory: Option<u32>,
    /// Per-boot deadline: a boot that has not answered by then failed (and its QEMU is
    /// stopped). A duration such as 90s or 5m (a bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = super::vocab::deadline)]
    pub timeout: Duration,
}

pub fn run(a: Args) -> CliResult {
    let objectives = objectives(&a)?;
    let images = open_images(&a)?;
    let opts = options(&a, &images)?;
    let progress = |side, i, img: &BootImage, r: &_| print_progress(side, i, a.runs, img, r);
    let runs = bench::measure(&images, &opts, progress).map_err(map)?;
    interrupted()?;
    let concurrent = match (a.concurrent, &opts.restore) {
        (Some(n), Some(snap)) => {
            eprintln!(
                "stratos: {n} concurrent restores of {}, then {n} concurrent boots",
                snap.dir.display()
            );
            Some(concurrent::measure(&images.image, snap, n, &opts).map_err(map)?)
        }
        _ => None,
    };
    interrupted()?;
    let mut result =
        BootTestResult::new(&images, &opts, runs, concurrent, &objectives).map_err(map)?;
    result
        .keep_logs_if_failed(&log_base(a.json_out.as_deref()))
        .map_err(map)?;
    print!("{}", report::text(&result));
    write_outputs(&a, &result)?;
    verdict(&result)
}

/// `--slo` and `--max-regression` (none given: no objectives), after checking the counts and
/// the path the other flags give.
fn objectives(a: &Args) -> Result<bench::Objectives, CliError> {
    if a.runs == 0 || a.invocations == 0 || a.concurrent == Some(0) {
        return Err(input(
            "--runs, --invocations and --concurrent must be at least 1".into(),
        ));
    }
    if let Some(p) = a.invoke.as_deref().filter(|p| !p.starts_with('/')) {
        return Err(input(format!(
            "--invoke {p:?}: the path must start with '/'"
        )));
    }
    let mut o = bench::Objectives::default();
    for s in &a.slo {
        o.slos
            .extend(parse_slos(s).map_err(|e| input(format!("--slo: {e}")))?);
    }
    warn_unitless(&o.slos);
    for g in &a.max_regression {
        o.gates
            .extend(parse_gates(g).map_err(|e| input(format!("--max-regression: {e}")))?);
    }
    Ok(o)
}

/// DIR and the baseline (DIR itself when restoring without --baseline); SIGINT and SIGTERM
/// stop the test between runs from here on.
fn open_images(a: &Args) -> Result<Images, CliError> {
    if let Some(pubkey) = a.image_key.as_deref().filter(|_| a.verify) {
        let key = super::vocab::public_key("--image-key", pubkey)?;
        let v =
            crate::sign::verify::verify_image_for(&a.dir, &key, crate::sign::verify::Need::Boot)
                .map_err(|e| {
                    CliError::check(anyhow::anyhow!(
                        "refusing to test: verification of {} FAILED: {e}",
                        a.dir.display()
                    ))
                })?;
        eprintln!(
            "stratos: verified {} {} (key {})",
            v.manifest.image.name, v.manifest.image.version, v.key_id
        );
    }
    let image = BootImage::open(&a.dir).map_err(CliError::input)?;
    crate::boot::handle_stop_signals().map_err(CliError::input)?;
    let baseline = match (&a.baseline, &a.snapshot) {
        (Some(b), _) => Some(BootImage::open(b).map_err(CliError::input)?),
        (None, Some(_)) => Some(image.clone()),
        (None, None) => None,
    };
    Ok(Images { image, baseline })
}

fn options(a: &Args, images: &Images) -> Result<BenchOptions, CliError> {
    let image = &images.image;
    let restore = a
        .snapshot
        .as_deref()
        .map(|dir| {
            super::boot::open_snapshot(dir, image, a.image_key.as_deref().filter(|_| a.verify))
        })
        .transpose()?;
    let (accel, memory_mib) = match &restore {
        Some(snap) => {
            let (accel, memory) = (snap.accel(), snap.meta.memory_mib);
            if a.memory.is_some_and(|m| m != memory) {
                return Err(input(format!(
                    "--memory {}: the snapshot {} was made with {memory} MiB, and both sides run with it; leave --memory out",
                    a.memory.unwrap_or_default(),
                    snap.dir.display()
                )));
            }
            let asked = match a.accel {
                Some(AccelChoice::Kvm) => Some(Accel::Kvm),
                Some(AccelChoice::Tcg) => Some(Accel::Tcg),
                Some(AccelChoice::Auto) | None => None,
            };
            if asked.is_some_and(|x| x != accel) {
                return Err(input(format!(
                    "--accel: the snapshot {} was made under {}, and restores run on it; leave --accel out",
                    snap.dir.display(),
                    accel.name()
                )));
            }
            (accel, memory)
        }
        None => {
            let choice = a.accel.unwrap_or(AccelChoice::Auto);
            let (accel, why) = image
                .choose_accel(choice, &Cache::new(cache::root()))
                .map_err(CliError::env)?;
            if let Some(why) = why {
                eprintln!("stratos: KVM unavailable ({why}); using TCG");
            }
            (accel, a.memory.unwrap_or(512))
        }
    };
    let (invoke_path, event) = call(a, image).map_err(input)?;
    Ok(BenchOptions {
        runs: a.runs,
        invoke_path,
        event,
        guest_port: image.function_port(a.port),
        invocations: a.invocations,
        accel,
        memory_mib,
        timeout: a.timeout,
        restore,
        baseline_call: baseline_call(a, image, images.baseline.as_ref())?,
    })
}

/// How the baseline is called, when not as DIR: `--baseline-invoke` and `--baseline-event`;
/// without them and without `--invoke` and `--event`, each image's own default call (a Lambda
/// function's event against an HTTP function's GET of `/`).
fn baseline_call(
    a: &Args,
    image: &BootImage,
    baseline: Option<&BootImage>,
) -> Result<Option<bench::Call>, CliError> {
    let Some(baseline) = baseline else {
        return Ok(None);
    };
    let port = baseline.function_port(a.port);
    if a.baseline_invoke.is_none() && a.baseline_event.is_none() {
        // Called as DIR when the command line says how (on the baseline's own port), else
        // each image its own way.
        let (path, event) = if a.invoke.is_some() || a.event.is_some() {
            call(a, baseline).map_err(input)?
        } else {
            let (path, event) = baseline.default_call();
            (path.to_owned(), event)
        };
        let own = bench::Call { path, event, port };
        let (path, event) = call(a, image).map_err(input)?;
        let dir = bench::Call {
            path,
            event,
            port: image.function_port(a.port),
        };
        return Ok((own != dir).then_some(own));
    }
    if let Some(p) = a.baseline_invoke.as_deref().filter(|p| !p.starts_with('/')) {
        return Err(input(format!(
            "--baseline-invoke {p:?}: the path must start with '/'"
        )));
    }
    let event = a
        .baseline_event
        .as_deref()
        .map(crate::boot::run::read_event)
        .transpose()
        .map_err(input)?;
    let path = match (&a.baseline_invoke, &event) {
        (Some(p), _) => p.clone(),
        (None, Some(_)) => crate::boot::run::LAMBDA_INVOKE_PATH.to_owned(),
        (None, None) => "/".to_owned(),
    };
    Ok(Some(bench::Call { path, event, port }))
}

fn print_progress(side: bench::Side, i: usize, runs: usize, img: &BootImage, r: &RunRecord) {
    eprintln!(
        "stratos: run {}/{runs} {} {}: {}",
        i + 1,
        side.letter(),
        img.manifest.image.name,
        report::brief(r)
    );
}

/// Consoles are kept next to the JSON (`boot-test.*` without it).
fn log_base(json: Option<&Path>) -> PathBuf {
    json.map_or_else(|| PathBuf::from("boot-test"), |j| j.with_extension(""))
}

/// `--json-out` and `--markdown-out`.
fn write_outputs(a: &Args, result: &BootTestResult) -> CliResult {
    if let Some(j) = &a.json_out {
        write(j, &result.to_json())?;
    }
    if let Some(m) = &a.markdown_out {
        write(m, report::markdown(result).as_bytes())?;
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> CliResult {
    crate::fsio::write_atomic(path, bytes, 0o644).map_err(super::writing(path))
}

/// Exit 1 naming everything that failed, when anything did.
fn verdict(result: &BootTestResult) -> CliResult {
    if result.passed {
        return Ok(());
    }
    Err(CliError::check(anyhow::anyhow!(
        "boot-test FAILED: {}",
        result.failures().join("; ")
    )))
}

/// A signal is an interruption (130, whatever the run was doing when it came); QEMU missing or
/// failing and host I/O are the machine (3); anything else is the image (2).
pub(super) fn map(e: BenchError) -> CliError {
    match e {
        BenchError::Interrupted { done, of } => CliError::interrupted(&format!(
            "the VM was stopped after {done} of {of} runs; nothing was reported"
        )),
        _ if crate::boot::stop_requested() => CliError::interrupted("the VM was stopped"),
        BenchError::Boot(b) => CliError::from(b),
        BenchError::Read { .. } | BenchError::Write { .. } => CliError::env(e),
        BenchError::Manifest(_) => CliError::input(e),
    }
}

/// A signal during the last run ends the test there: its VM was stopped, nothing is reported.
pub(super) fn interrupted() -> CliResult {
    if crate::boot::stop_requested() {
        return Err(CliError::interrupted(
            "the VM was stopped; nothing was reported",
        ));
    }
    Ok(())
}

/// `--slo` times without a unit are read as milliseconds, as before; say how to write them.
pub(super) fn warn_unitless(slos: &[crate::boot::bench::objectives::Slo]) {
    for s in slos.iter().filter(|s| s.unitless) {
        eprintln!(
            "stratos: warning: --slo {}: a time without a unit is read as milliseconds; write the unit (e.g. {}ms); bare times will be refused in the next release",
            s.text,
            s.limit
        );
    }
}

fn input(message: String) -> CliError {
    CliError::input(anyhow::anyhow!(message))
}

/// The calls each run makes: a POST of --event (to --invoke's path, else the path AWS's Runtime
/// Interface Emulator takes events on), a GET of --invoke's path, or, with neither, the image's
/// default call (a GET of "/", or for a Lambda function a POST of `{}` to the RIE path).
fn call(a: &Args, image: &BootImage) -> Result<(String, Option<Vec<u8>>), String> {
    let event = a
        .event
        .as_deref()
        .map(crate::boot::run::read_event)
        .transpose()?;
    Ok(match (&a.invoke, event) {
        // A Lambda function is sent the event {} when none is given.
        (Some(p), event) => (p.clone(), event.or_else(|| image.default_call().1)),
        (None, Some(e)) => (crate::boot::run::LAMBDA_INVOKE_PATH.to_owned(), Some(e)),
        (None, None) => {
            let (path, event) = image.default_call();
            (path.to_owned(), event)
        }
    })
}
