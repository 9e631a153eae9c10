//! `stratos boot-test`: measured boots, A/B against a baseline, gated on objectives.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{CliError, CliResult};
use crate::boot::bench::objectives::{parse_gates, parse_slos};
use crate::boot::bench::{self, report, BenchError, BenchOptions, BootTestResult, Images};
use crate::boot::qemu::{choose_accel, AccelChoice};
use crate::boot::BootImage;

/// Boot an image N times under QEMU, each a fresh VM: phase markers from the guest, the time to
/// the first answered invocation (cold start) and the warm ones, the memory high-water mark.
/// With --baseline, A and B boots alternate (A B A B ...) and each metric gets its ratio
/// image/baseline (B/A) per pair, the median ratio and a 95% bootstrap interval. Objectives
/// (--slo, --max-regression) make the command exit 1, naming every one that failed.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  stratos boot-test out/hello --runs 10 --json boot.json\n  stratos boot-test out/hello --baseline out/hello-stock --runs 10 --slo runtime_ready.p95=900ms --max-regression first_response=10%\n\nMetrics (ms unless noted): init_start .. runtime_ready (guest CLOCK_BOOTTIME since kernel start),\ninit_to_exec, ready_seen and first_response (host, since QEMU was spawned), cold_start (first\ncall's latency), warm (median of the later calls), memory_peak (KiB).\nExit codes: 0 all runs booted and all objectives hold, 1 a run failed or an objective failed, 2 bad input."
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
    /// HTTP path of the function to invoke.
    #[arg(long, default_value = "/", value_name = "PATH")]
    pub invoke: String,
    /// The guest port the function listens on.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Invocations per boot: the first is the cold start, the rest are warm.
    #[arg(long, default_value_t = 5)]
    pub invocations: usize,
    /// Objectives on DIR's results, e.g. runtime_ready.p95=900ms,first_response.p50=2s.
    #[arg(long, value_name = "METRIC.STAT=LIMIT")]
    pub slo: Option<String>,
    /// Allowed regression of DIR against the baseline (median image/baseline ratio), e.g.
    /// runtime_ready=10%.
    #[arg(long, value_name = "METRIC=PERCENT%", requires = "baseline")]
    pub max_regression: Option<String>,
    /// Write every result as JSON (schema stratos-boot-test/1, see README).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write the table as Markdown.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    pub memory: u32,
    /// Per-boot limit in seconds: a boot that has not answered by then failed.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

pub fn run(a: Args) -> CliResult {
    let objectives = objectives(&a)?;
    let images = open_images(&a)?;
    let opts = options(&a, &images.image)?;
    let progress = |side, i, img: &BootImage, r: &_| print_progress(side, i, a.runs, img, r);
    let runs = bench::measure(&images, &opts, progress).map_err(map)?;
    let mut result = BootTestResult::new(&images, &opts, runs, &objectives).map_err(map)?;
    result
        .keep_logs_if_failed(&log_base(a.json.as_deref()))
        .map_err(map)?;
    print!("{}", report::text(&result));
    write_outputs(&a, &result)?;
    verdict(&result)
}

/// `--slo` and `--max-regression` (none given: no objectives), after checking the counts and
/// the path the other flags give.
fn objectives(a: &Args) -> Result<bench::Objectives, CliError> {
    if a.runs == 0 || a.invocations == 0 {
        return Err(input("--runs and --invocations must be at least 1".into()));
    }
    if !a.invoke.starts_with('/') {
        return Err(input(format!(
            "--invoke {:?}: the path must start with '/'",
            a.invoke
        )));
    }
    let mut o = bench::Objectives::default();
    if let Some(s) = &a.slo {
        o.slos = parse_slos(s).map_err(|e| input(format!("--slo: {e}")))?;
    }
    if let Some(g) = &a.max_regression {
        o.gates = parse_gates(g).map_err(|e| input(format!("--max-regression: {e}")))?;
    }
    Ok(o)
}

/// DIR and the baseline; SIGINT and SIGTERM stop the test between runs from here on.
fn open_images(a: &Args) -> Result<Images, CliError> {
    let image = BootImage::open(&a.dir).map_err(CliError::input)?;
    crate::boot::handle_stop_signals().map_err(CliError::input)?;
    let baseline = a
        .baseline
        .as_deref()
        .map(BootImage::open)
        .transpose()
        .map_err(CliError::input)?;
    Ok(Images { image, baseline })
}

fn options(a: &Args, image: &BootImage) -> Result<BenchOptions, CliError> {
    let (accel, why) = choose_accel(a.accel, &image.kernel()).map_err(CliError::input)?;
    if let Some(why) = why {
        eprintln!("stratos: KVM unavailable ({why}); using TCG");
    }
    Ok(BenchOptions {
        runs: a.runs,
        invoke_path: a.invoke.clone(),
        guest_port: a.port,
        invocations: a.invocations,
        accel,
        memory_mib: a.memory,
        timeout: Duration::from_secs(a.timeout),
    })
}

fn print_progress(side: bench::Side, i: usize, runs: usize, img: &BootImage, r: &bench::RunRecord) {
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

/// `--json` and `--markdown`.
fn write_outputs(a: &Args, result: &BootTestResult) -> CliResult {
    if let Some(j) = &a.json {
        write(j, &result.to_json())?;
    }
    if let Some(m) = &a.markdown {
        write(m, report::markdown(result).as_bytes())?;
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> CliResult {
    crate::sign::write_atomic(path, bytes, 0o644)
        .map_err(|e| input(format!("writing {}: {e}", path.display())))
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

/// An interruption is a failed check (exit 1); anything else is the image or the host (2).
fn map(e: BenchError) -> CliError {
    match e {
        BenchError::Interrupted { .. } => CliError::check(e),
        _ => CliError::input(e),
    }
}

fn input(message: String) -> CliError {
    CliError::input(anyhow::anyhow!(message))
}
