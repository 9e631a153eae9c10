//! `stratos update apply | rollback | status | clear-rejected`: the node's images after a fetch.

use std::path::Path;
use std::time::Duration;

use super::channel_args::*;
use super::update::{ApplyArgs, StateArgs};
use super::{CliError, CliResult};
use crate::boot::bench::{self, objectives::parse_slos, BenchOptions, BootTestResult, Images};
use crate::boot::qemu::{choose_accel, AccelChoice};
use crate::boot::BootImage;
use crate::channel::client::Current;
use crate::channel::lifecycle::{self, Applied, Report, ReportFile, ReportSummary, REPORT_SCHEMA};
use crate::channel::{self, to_bytes};

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
    if a.runs == 0 || a.invocations == 0 {
        return Err(input("--runs and --invocations must be at least 1".into()));
    }
    if !a.invoke.starts_with('/') {
        return Err(input(format!(
            "--invoke {:?}: the path must start with '/'",
            a.invoke
        )));
    }
    let mut objectives = bench::Objectives::default();
    if let Some(s) = &a.slo {
        objectives.slos = parse_slos(s).map_err(|e| input(format!("--slo: {e}")))?;
    }
    let key = a
        .sign_key
        .as_deref()
        .map(|p| crate::sign::SecretKey::load(p).map_err(CliError::input))
        .transpose()?;
    let dir = &a.state.state;
    let mut o = lifecycle::open(dir).map_err(map)?;
    print_notes(&o.notes);
    o.notes.clear();
    let Some(staged) = o.state.staged.clone() else {
        match &o.state.current {
            Some(c) => println!("nothing staged; current: {}", describe(c)),
            None => println!(
                "nothing staged and nothing current; `stratos update fetch` stages an image"
            ),
        }
        return Ok(());
    };
    let img_dir = dir.join(&staged.dir);
    let name = format!("{} {}", staged.image.name, staged.image.version);
    // What the node tests is what it verified at fetch time.
    let (passed, reason, summary) =
        match lifecycle::check_image(&img_dir, &staged.image.manifest_sha256) {
            // Not the image the channel named: rejected. A read error is this machine's, not the
            // image's: nothing is rejected.
            Err(e) if e.is_mismatch() => (false, e.to_string(), ReportSummary::default()),
            Err(e) => {
                return Err(CliError::env(anyhow::anyhow!(
                    "reading the staged image {name}: {e}; nothing was changed"
                )))
            }
            Ok(()) => {
                eprintln!(
                    "stratos: boot-testing the staged image {name} ({} runs)",
                    a.runs
                );
                let result = boot_test(&a, &img_dir, objectives)?;
                let summary = ReportSummary {
                    runs: result.runs,
                    failures: result.failures(),
                    medians: result
                        .metrics
                        .iter()
                        .map(|(k, m)| (k.clone(), m.summary.p50.round() as i64))
                        .collect(),
                };
                let reason = if result.passed {
                    match &result.objectives[..] {
                        [] => format!("{} boot(s) answered", result.runs),
                        obj => format!(
                            "{} boot(s) answered; objectives held: {}",
                            result.runs,
                            obj.iter()
                                .map(|v| v.objective.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    }
                } else {
                    format!("boot test failed: {}", result.failures().join("; "))
                };
                (result.passed, reason, summary)
            }
        };
    let applied =
        lifecycle::commit_apply(dir, &mut o, passed, &reason, channel::now()).map_err(map)?;
    print_notes(&o.notes);
    if let Some(path) = &a.report {
        let seq = lifecycle::next_report_seq(dir, &o).map_err(map)?;
        let report = Report {
            schema: REPORT_SCHEMA.into(),
            node_id: a
                .node_id
                .clone()
                .expect("clap requires --node-id with --report"),
            channel: staged.channel.clone(),
            channel_version: staged.channel_version,
            image: staged.image.name.clone(),
            version: staged.image.version.clone(),
            manifest_sha256: staged.image.manifest_sha256.clone(),
            passed,
            reason: reason.clone(),
            boot_test: summary,
            at: channel::now(),
            seq: Some(seq),
        };
        let file = ReportFile::new(report, key.as_ref());
        crate::fsio::write_atomic(path, &to_bytes(&file), 0o644).map_err(|e| {
            CliError::input(anyhow::Error::new(e).context(format!("--report {}", path.display())))
        })?;
        eprintln!("stratos: health report written to {}", path.display());
    }
    match applied {
        Applied::Switched { current } => {
            if a.state.json {
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
            if a.state.json {
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

/// One boot test of the staged image, with the objectives: the same harness as `boot-test`.
fn boot_test(
    a: &ApplyArgs,
    dir: &Path,
    objectives: bench::Objectives,
) -> Result<BootTestResult, CliError> {
    let image = BootImage::open(dir).map_err(CliError::input)?;
    crate::boot::handle_stop_signals().map_err(CliError::input)?;
    let (accel, why) = choose_accel(a.accel.unwrap_or(AccelChoice::Auto), &image.kernel())
        .map_err(CliError::input)?;
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
        restore: None,
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
    .map_err(|e| match e {
        bench::BenchError::Interrupted { .. } => CliError::check(e),
        _ => CliError::input(e),
    })?;
    BootTestResult::new(&images, &opts, runs, None, &objectives).map_err(CliError::input)
}

pub fn rollback(s: StateArgs) -> CliResult {
    let mut o = lifecycle::open(&s.state).map_err(map)?;
    print_notes(&o.notes);
    // A rollback already done (or interrupted after its commit point and finished since) is
    // not done a second time.
    let cur = lifecycle::rollback(&s.state, &mut o, channel::now()).map_err(map)?;
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
    let o = lifecycle::open(&s.state).map_err(map)?;
    print_notes(&o.notes);
    let st = &o.state;
    if s.json {
        print_sorted_json(&serde_json::json!({
            "current": st.current,
            "previous": st.previous,
            "staged": st.staged,
            "rejected": st.rejected.rejected,
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
            "{:9} {} {} (manifest sha256 {}, channel {} version {})",
            "staged",
            x.image.name,
            x.image.version,
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
    Ok(())
}

pub fn clear_rejected(s: StateArgs, digest: Option<String>) -> CliResult {
    let mut o = lifecycle::open(&s.state).map_err(map)?;
    print_notes(&o.notes);
    let gone = lifecycle::clear_rejected(&s.state, &mut o, digest.as_deref()).map_err(map)?;
    for r in gone {
        println!(
            "cleared: {} {} (manifest sha256 {}) may be staged again",
            r.image, r.version, r.manifest_sha256
        );
    }
    Ok(())
}
