//! `stratos update apply | rollback | status | clear-rejected`: the node's images after a fetch.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::channel_args::*;
use super::{CliError, CliResult};
use crate::boot::bench::{self, objectives::parse_slos, BenchOptions, Images};
use crate::boot::vm::AccelChoice;
use crate::boot::BootImage;
use crate::boot_result::BootTestResult;
use crate::channel::doc::ReportFile;
use crate::channel::node::apply::StagedUnreadable;
use crate::channel::node::report_out::{kept_reports, Delivered, ReportOut};
use crate::channel::node::{self, Applied, Apply, Begun, Current};
use crate::channel::{self, to_bytes};

#[derive(Debug, Clone, clap::Args)]
pub struct StateArgs {
    /// The node's update state directory.
    #[arg(long)]
    pub state: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Boots of the staged image.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Objectives the boots must meet, as in boot-test: METRIC.STAT=LIMIT or METRIC=LIMIT
    /// (every run), times with a unit (e.g. first_response.p50=5s); comma-separated or
    /// repeated. Without any, every boot must answer.
    #[arg(long, value_name = "METRIC[.STAT]=LIMIT")]
    pub slo: Vec<String>,
    /// HTTP path of the function to call [default: "/", or for a Lambda function the path
    /// AWS's Runtime Interface Emulator takes events on]. A Lambda function is sent the event
    /// {} (a POST); anything else a GET.
    #[arg(long, value_name = "PATH")]
    pub invoke: Option<String>,
    /// The guest port the function listens on [default: 8080, or a Lambda function's invoke port].
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Calls per boot.
    #[arg(long, default_value_t = 2)]
    pub invocations: usize,
    /// Accelerator [default: auto].
    #[arg(long, value_enum)]
    pub accel: Option<crate::boot::vm::AccelChoice>,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    pub memory: u32,
    /// Per-boot deadline: a duration such as 90s or 5m (a bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = super::vocab::deadline)]
    pub timeout: Duration,
    /// Write a health report (JSON) here, for `rollout advance --gate-reports`.
    #[arg(long, value_name = "FILE", requires = "node_id")]
    pub report: Option<PathBuf>,
    /// This node's id, as in `update fetch` (named in the report).
    #[arg(long)]
    pub node_id: Option<String>,
    /// The node key, secret (PREFIX.key from `stratos keygen`): signs the report.
    #[arg(long, value_name = "FILE", requires = "report")]
    pub node_key: Option<PathBuf>,
    /// This node's architecture ("x86_64", "aarch64"): a staged image of another is refused,
    /// unbooted. [default: this machine's]
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<crate::arch::Arch>,
}

fn print_notes(notes: &[String]) {
    for n in notes {
        eprintln!("note: {n}");
    }
}

fn describe(c: &Current) -> String {
    format!(
        "{} {} (manifest sha256 {})",
        c.image, c.version, c.manifest_sha256
    )
}

pub fn apply(a: ApplyArgs) -> CliResult {
    let objectives = apply_objectives(&a)?;
    let arch = super::update::node_arch(a.arch)?;
    let key = a
        .node_key
        .as_deref()
        .map(|p| super::vocab::secret_key("--node-key", p))
        .transpose()?;
    let mut ap = match Apply::begin(&a.state.state).map_err(map)? {
        Begun::NothingStaged { current, notes } => {
            print_notes(&notes);
            match &current {
                Some(c) => println!("nothing staged; current: {}", describe(c)),
                None => println!(
                    "nothing staged and nothing current; `stratos update fetch` stages an image"
                ),
            }
            say_kept_reports(&a.state.state);
            return Ok(());
        }
        Begun::Staged(ap) => ap,
    };
    print_notes(&ap.take_notes());
    ap.check_arch(arch).map_err(map)?;
    // Before any boot: a report that cannot be written must stop the apply now, not after.
    let report_out = a.report.as_deref().map(prepare_report).transpose()?;
    let verdict = ap.test(|dir| {
        eprintln!(
            "stratos: boot-testing the staged image {} ({} runs)",
            ap.name(),
            a.runs
        );
        boot_test(&a, dir, objectives)
    })?;
    let applied = ap.commit(&verdict, channel::now()).map_err(map)?;
    print_notes(&ap.take_notes());
    if let Some(out) = &report_out {
        let node_id = a
            .node_id
            .as_deref()
            .expect("clap requires --node-id with --report");
        let file = ap
            .report(&verdict, node_id, key.as_ref(), channel::now())
            .map_err(map)?;
        say_delivered(ap.deliver_report(out, &file), &file);
    }
    print_applied(applied, &verdict.reason, &a.state, ap.dir())
}

/// `--report FILE` made ready (its directory created if missing) and checked writable.
fn prepare_report(path: &Path) -> Result<ReportOut, CliError> {
    let (out, note) = ReportOut::prepare(path).map_err(|e| {
        CliError::input(
            anyhow::Error::new(e)
                .context(format!("--report {}; nothing was booted", path.display())),
        )
    })?;
    if let Some(n) = note {
        eprintln!("note: {n}");
    }
    Ok(out)
}

/// Says where the health report went. The apply's result does not depend on it: a report that
/// could not be written where asked is kept in the state directory (or, failing that too,
/// printed here) and the command goes on to say what the apply did.
fn say_delivered(d: Delivered, file: &ReportFile) {
    match d {
        Delivered::Written(p) => eprintln!("stratos: health report written to {}", p.display()),
        Delivered::Kept { kept, error } => eprintln!(
            "warning: the health report could not be written ({error}); the signed report is kept at {}: upload it from there",
            kept.display()
        ),
        Delivered::Lost { error, kept_error } => eprintln!(
            "warning: the health report could not be written ({error}) nor kept in the state directory ({kept_error}); here it is:\n{}",
            String::from_utf8_lossy(&to_bytes(file)).trim_end()
        ),
    }
}

/// Reports an earlier apply could not write where asked, still waiting to be uploaded.
fn say_kept_reports(state: &Path) {
    for p in kept_reports(state) {
        eprintln!(
            "note: {} is a health report that could not be written where --report said: upload it from there",
            p.display()
        );
    }
}

/// The objectives `--slo` gives, once the boot flags are checked.
fn apply_objectives(a: &ApplyArgs) -> Result<bench::Objectives, CliError> {
    if a.runs == 0 || a.invocations == 0 {
        return Err(input("--runs and --invocations must be at least 1".into()));
    }
    if let Some(p) = a.invoke.as_deref().filter(|p| !p.starts_with('/')) {
        return Err(input(format!(
            "--invoke {p:?}: the path must start with '/'"
        )));
    }
    let mut objectives = bench::Objectives::default();
    for s in &a.slo {
        objectives
            .slos
            .extend(parse_slos(s).map_err(|e| input(format!("--slo: {e}")))?);
    }
    super::boot_test::warn_unitless(&objectives.slos);
    Ok(objectives)
}

/// What `apply` did: the new current image, or the rejection (exit 1).
fn print_applied(applied: Applied, reason: &str, s: &StateArgs, dir: &Path) -> CliResult {
    match applied {
        Applied::Switched { current } => {
            if s.json {
                print_sorted_json(
                    &serde_json::json!({"applied": true, "current": current, "reason": reason}),
                );
            } else {
                println!("applied: {} is current ({reason})", describe(&current));
                if let Some(p) = &current.replaces {
                    println!("previous: {}", describe(p));
                }
            }
            Ok(())
        }
        Applied::Rejected(r) => {
            if s.json {
                print_sorted_json(&serde_json::json!({"applied": false, "rejected": r}));
            }
            Err(CliError::check(anyhow::anyhow!(
                "rejected {} {}: {}; it will not be staged again (`stratos update clear-rejected --state {} --digest {}` undoes that); current is unchanged",
                r.image,
                r.version,
                r.reason,
                dir.display(),
                r.manifest_sha256
            )))
        }
    }
}

/// A staged image this machine cannot read: exit 3, nothing rejected.
impl From<StagedUnreadable> for CliError {
    fn from(e: StagedUnreadable) -> Self {
        CliError::env(e)
    }
}

/// One boot test of the staged image, with the objectives: the same harness as `boot-test`.
fn boot_test(
    a: &ApplyArgs,
    dir: &Path,
    objectives: bench::Objectives,
) -> Result<BootTestResult, CliError> {
    let image = BootImage::open(dir).map_err(CliError::input)?;
    crate::boot::handle_stop_signals().map_err(CliError::env)?;
    let (accel, why) = image
        .choose_accel(
            a.accel.unwrap_or(AccelChoice::Auto),
            &crate::cache::Cache::new(crate::cache::root()),
        )
        .map_err(CliError::env)?;
    if let Some(why) = why {
        eprintln!("stratos: KVM unavailable ({why}); using TCG");
    }
    let (default_path, event) = image.default_call();
    let opts = BenchOptions {
        runs: a.runs,
        invoke_path: a.invoke.as_deref().unwrap_or(default_path).to_owned(),
        event,
        guest_port: image.function_port(a.port),
        invocations: a.invocations,
        accel,
        memory_mib: a.memory,
        timeout: a.timeout,
        restore: None,
        baseline_call: None,
    };
    let images = Images {
        image,
        baseline: None,
    };
    let runs = bench::measure(&images, &opts, |_, i, img: &BootImage, r: &_| {
        eprintln!(
            "stratos: run {}/{} {}: {}",
            i + 1,
            a.runs,
            img.manifest.image.name,
            bench::report::brief(r)
        )
    })
    .map_err(super::boot_test::map)?;
    super::boot_test::interrupted()?;
    BootTestResult::new(&images, &opts, runs, None, &objectives).map_err(CliError::input)
}

pub fn rollback(s: StateArgs) -> CliResult {
    let mut o = node::open(&s.state).map_err(map)?;
    print_notes(&o.notes);
    // A rollback already done (or interrupted after its commit point and finished since) is
    // not done a second time.
    let cur = node::rollback(&mut o, channel::now()).map_err(map)?;
    if s.json {
        print_sorted_json(&serde_json::json!({"current": cur}));
    } else {
        println!("rolled back: {} is current", describe(&cur));
        if let Some(p) = &cur.replaces {
            println!("previous: {}", describe(p));
        }
    }
    Ok(())
}

pub fn status(s: StateArgs) -> CliResult {
    let o = node::open(&s.state).map_err(map)?;
    print_notes(&o.notes);
    say_kept_reports(&s.state);
    let st = &o.state;
    let last = node::last_fetch(&s.state).map_err(map)?;
    if s.json {
        print_sorted_json(&serde_json::json!({
            "current": st.current,
            "previous": st.previous,
            "staged": st.staged,
            "rejected": st.rejected.rejected,
            "last_fetch": last,
        }));
        return Ok(());
    }
    let show = |what: &str, c: &Option<Current>| match c {
        Some(c) => println!("{what:9} {}", describe(c)),
        None => println!("{what:9} -"),
    };
    show("current", &st.current);
    show("previous", &st.previous);
    match &st.staged {
        Some(x) => println!(
            "{:9} {} {} for {} (manifest sha256 {}, channel {} version {})",
            "staged",
            x.image.name,
            x.image.version,
            x.image.arch.name(),
            x.image.manifest_sha256,
            x.channel,
            x.channel_version
        ),
        None => println!("{:9} -", "staged"),
    }
    for r in &st.rejected.rejected {
        println!(
            "{:9} {} {} (manifest sha256 {}) at {}: {}",
            "rejected",
            r.image,
            r.version,
            r.manifest_sha256,
            channel::fmt_time(r.at),
            r.reason
        );
    }
    match &last {
        Some(t) => {
            println!("{:9} {}", "fetched", t.summary());
            for line in t.lines() {
                println!("{line}");
            }
        }
        None => println!("{:9} -", "fetched"),
    }
    Ok(())
}

pub fn clear_rejected(s: StateArgs, digest: Option<String>) -> CliResult {
    let mut o = node::open(&s.state).map_err(map)?;
    print_notes(&o.notes);
    let gone = node::clear_rejected(&mut o, digest.as_deref()).map_err(map)?;
    for r in gone {
        println!(
            "cleared: {} {} (manifest sha256 {}) may be staged again",
            r.image, r.version, r.manifest_sha256
        );
    }
    Ok(())
}
