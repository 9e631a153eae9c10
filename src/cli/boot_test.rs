//! `stratos boot-test`: measured boots, A/B against a baseline, gated on objectives.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::{CliError, CliResult};
use crate::boot::bench::{self, BenchOptions, RunRecord};
use crate::boot::qemu::{choose_accel, AccelChoice};
use crate::boot::BootImage;

/// Boot an image N times under QEMU, each a fresh VM: phase markers from the guest, the time to
/// the first answered invocation (cold start) and the warm ones, the memory high-water mark.
/// With --baseline, A and B boots alternate (A B A B ...) and each metric gets its B/A ratio per
/// pair, the median ratio and a 95% bootstrap interval. Objectives (--slo, --max-regression)
/// make the command exit 1, naming every one that failed.
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
    /// Allowed regression of B against the baseline (median ratio), e.g. runtime_ready=10%.
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

fn sizes(img: &BootImage) -> serde_json::Value {
    img.manifest
        .artifacts
        .iter()
        .map(|a| (a.name.clone(), json!(a.size)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn write_logs(json: Option<&Path>, runs: &[&RunRecord]) -> Result<Vec<String>, CliError> {
    let base = json
        .map(|j| j.with_extension(""))
        .unwrap_or_else(|| PathBuf::from("boot-test"));
    let mut out = Vec::new();
    for r in runs {
        let p = PathBuf::from(format!("{}.{}-run{}.log", base.display(), r.image, r.index));
        crate::sign::write_atomic(&p, r.log.as_bytes(), 0o644)
            .map_err(|e| CliError::input(anyhow::anyhow!("writing {}: {e}", p.display())))?;
        out.push(p.display().to_string());
    }
    Ok(out)
}

/// sha256 of an image's manifest.json, which names (and so pins) every artifact.
fn manifest_digest(dir: &std::path::Path) -> Option<String> {
    std::fs::read(dir.join(crate::sign::manifest::MANIFEST_FILE))
        .ok()
        .map(|b| crate::sign::sha256_hex(&b))
}

pub fn run(a: Args) -> CliResult {
    if a.runs == 0 || a.invocations == 0 {
        return Err(CliError::input(anyhow::anyhow!(
            "--runs and --invocations must be at least 1"
        )));
    }
    if !a.invoke.starts_with('/') {
        return Err(CliError::input(anyhow::anyhow!(
            "--invoke {:?}: the path must start with '/'",
            a.invoke
        )));
    }
    let slos = a
        .slo
        .as_deref()
        .map(bench::parse_slos)
        .transpose()
        .map_err(|e| CliError::input(anyhow::anyhow!("--slo: {e}")))?
        .unwrap_or_default();
    let gates = a
        .max_regression
        .as_deref()
        .map(bench::parse_gates)
        .transpose()
        .map_err(|e| CliError::input(anyhow::anyhow!("--max-regression: {e}")))?
        .unwrap_or_default();
    let b_img = BootImage::open(&a.dir).map_err(CliError::input)?;
    crate::boot::handle_stop_signals().map_err(CliError::input)?;
    let a_img = a
        .baseline
        .as_deref()
        .map(BootImage::open)
        .transpose()
        .map_err(CliError::input)?;
    let (accel, why) = choose_accel(a.accel, &b_img.kernel()).map_err(CliError::input)?;
    if let Some(why) = why {
        eprintln!("stratos: KVM unavailable ({why}); using TCG");
    }
    let opts = BenchOptions {
        runs: a.runs,
        invoke_path: a.invoke.clone(),
        guest_port: a.port,
        invocations: a.invocations,
        accel,
        memory_mib: a.memory,
        timeout: Duration::from_secs(a.timeout),
    };
    let mut runs_a = Vec::new();
    let mut runs_b = Vec::new();
    for i in 0..a.runs {
        if crate::boot::stop_requested() {
            return Err(CliError::check(anyhow::anyhow!(
                "interrupted after {i} of {} runs",
                a.runs
            )));
        }
        if let Some(img) = &a_img {
            let r = bench::run_once(img, i, &opts).map_err(CliError::input)?;
            eprintln!(
                "stratos: run {}/{} A {}: {}",
                i + 1,
                a.runs,
                img.manifest.image.name,
                brief(&r)
            );
            runs_a.push(r);
        }
        let r = bench::run_once(&b_img, i, &opts).map_err(CliError::input)?;
        eprintln!(
            "stratos: run {}/{} B {}: {}",
            i + 1,
            a.runs,
            b_img.manifest.image.name,
            brief(&r)
        );
        runs_b.push(r);
    }
    let sum_b = bench::summarise(&runs_b);
    let sum_a = a_img.as_ref().map(|_| bench::summarise(&runs_a));
    let cmp = a_img.as_ref().map(|_| bench::compare(&runs_a, &runs_b));
    let mut verdicts = bench::check_slos(&slos, &sum_b);
    if let Some(c) = &cmp {
        verdicts.extend(bench::check_gates(&gates, c));
    }
    let failed_runs: Vec<&RunRecord> = runs_a.iter().chain(&runs_b).filter(|r| !r.ok).collect();
    let logs = if failed_runs.is_empty() {
        Vec::new()
    } else {
        let all: Vec<&RunRecord> = runs_a.iter().chain(&runs_b).collect();
        write_logs(a.json.as_deref(), &all)?
    };

    println!(
        "{} {} — {} runs, {} invocation(s) each, {} ({}), {} MiB",
        b_img.manifest.image.name,
        b_img.manifest.image.version,
        a.runs,
        a.invocations,
        accel.name(),
        b_img.machine.name(),
        a.memory
    );
    if let Some(img) = &a_img {
        println!(
            "baseline (A): {} {} ({}); B/A < 1 means DIR is faster/smaller",
            img.manifest.image.name,
            img.manifest.image.version,
            img.machine.name()
        );
    }
    print!(
        "{}",
        bench::table(&sum_b, sum_a.as_ref(), cmp.as_ref(), false)
    );
    let passed = failed_runs.is_empty() && verdicts.iter().all(|v| v.passed);
    for v in &verdicts {
        println!(
            "{} {}: {}",
            if v.passed { "PASS" } else { "FAIL" },
            v.objective,
            v.reason
        );
    }
    for r in &failed_runs {
        println!(
            "FAIL run {} of {}: {}",
            r.index,
            r.image,
            r.failure.as_deref().unwrap_or("failed")
        );
    }
    if !logs.is_empty() {
        println!("console logs: {}", logs.join(", "));
    }
    let doc = json!({
        "schema": bench::SCHEMA,
        "image": {"dir": a.dir.display().to_string(), "manifest_sha256": manifest_digest(&a.dir), "name": b_img.manifest.image.name, "version": b_img.manifest.image.version, "machine": b_img.machine.name(), "sizes": sizes(&b_img)},
        "baseline": a_img.as_ref().map(|img| json!({"dir": a.baseline.as_ref().map(|p| p.display().to_string()), "manifest_sha256": a.baseline.as_deref().and_then(manifest_digest), "name": img.manifest.image.name, "version": img.manifest.image.version, "machine": img.machine.name(), "sizes": sizes(img)})),
        "accel": accel.name(),
        "runs": a.runs,
        "invocations": a.invocations,
        "invoke": a.invoke,
        "memory_mib": a.memory,
        "metrics": sum_b,
        "baseline_metrics": sum_a,
        "comparison": cmp,
        "objectives": verdicts,
        "runs_detail": runs_a.iter().chain(&runs_b).collect::<Vec<_>>(),
        "logs": logs,
        "passed": passed,
    });
    if let Some(j) = &a.json {
        let mut bytes = serde_json::to_vec_pretty(&doc).expect("serialisable");
        bytes.push(b'\n');
        crate::sign::write_atomic(j, &bytes, 0o644)
            .map_err(|e| CliError::input(anyhow::anyhow!("writing {}: {e}", j.display())))?;
    }
    if let Some(m) = &a.markdown {
        let mut text = format!(
            "{} {} vs {} — {} runs each, {} ({}), interleaved A/B\n\n",
            b_img.manifest.image.name,
            b_img.manifest.image.version,
            a_img
                .as_ref()
                .map_or("no baseline".to_owned(), |i| i.manifest.image.name.clone()),
            a.runs,
            accel.name(),
            b_img.machine.name()
        );
        text.push_str(&bench::table(&sum_b, sum_a.as_ref(), cmp.as_ref(), true));
        crate::sign::write_atomic(m, text.as_bytes(), 0o644)
            .map_err(|e| CliError::input(anyhow::anyhow!("writing {}: {e}", m.display())))?;
    }
    if passed {
        Ok(())
    } else {
        let mut why: Vec<String> = verdicts
            .iter()
            .filter(|v| !v.passed)
            .map(|v| format!("{} ({})", v.objective, v.reason))
            .collect();
        why.extend(failed_runs.iter().map(|r| {
            format!(
                "run {} of {}: {}",
                r.index,
                r.image,
                r.failure.as_deref().unwrap_or("failed")
            )
        }));
        Err(CliError::check(anyhow::anyhow!(
            "boot-test FAILED: {}",
            why.join("; ")
        )))
    }
}

fn brief(r: &RunRecord) -> String {
    if !r.ok {
        return format!("FAILED: {}", r.failure.as_deref().unwrap_or(""));
    }
    let g = |k: &str| r.metrics.get(k).map_or("-".into(), |v| format!("{v:.0}"));
    format!(
        "init {} ms, ready {} ms, first response {} ms",
        g("init_start"),
        g("runtime_ready"),
        g("first_response")
    )
}
