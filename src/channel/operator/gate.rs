//! Rollout gates: a `stratos boot-test` result decides whether a rollout may widen.

use crate::boot_result::{BootTestResult, SCHEMA};
use crate::channel::doc::ImageRef;
use crate::channel::error::{ChannelError, GateError, ImageNamed};

/// Checks that `bytes` (a boot-test `--json-out` result) is for `image` and met objectives.
/// Returns a one-line summary of what passed.
pub fn check(bytes: &[u8], path: &str, image: &ImageRef) -> Result<String, ChannelError> {
    let g = BootTestResult::from_json(bytes).map_err(|source| GateError::NotABootTest {
        path: path.to_owned(),
        source,
    })?;
    if g.schema != SCHEMA {
        return Err(GateError::WrongSchema {
            path: path.to_owned(),
            schema: g.schema,
            want: SCHEMA,
        }
        .into());
    }
    match &g.image.manifest_sha256 {
        Some(d) if image.manifest_sha256 == *d => {}
        Some(d) => {
            return Err(GateError::WrongImage {
                path: path.to_owned(),
                tested: Box::new(ImageNamed {
                    name: g.image.name.clone(),
                    version: g.image.version.clone(),
                    digest: d.to_string(),
                }),
                rolled_out: Box::new(ImageNamed {
                    name: image.name.clone(),
                    version: image.version.clone(),
                    digest: image.manifest_sha256.to_string(),
                }),
            }
            .into())
        }
        None => {
            return Err(GateError::UnknownImage {
                path: path.to_owned(),
            }
            .into())
        }
    }
    if let Some(s) = g.snapshot.as_ref().filter(|s| !s.verified) {
        return Err(GateError::UnverifiedSnapshot {
            path: path.to_owned(),
            dir: s.dir.clone(),
            snapshot_sha256: s.snapshot_sha256.to_string(),
        }
        .into());
    }
    if g.objectives.is_empty() {
        return Err(GateError::NoObjectives {
            path: path.to_owned(),
        }
        .into());
    }
    let failed: Vec<String> = g
        .objectives
        .iter()
        .filter(|o| !o.passed)
        .map(|o| format!("{}: {}", o.objective, o.reason))
        .collect();
    if !failed.is_empty() || !g.passed {
        return Err(GateError::Failed {
            path: path.to_owned(),
            failed,
        }
        .into());
    }
    Ok(format!(
        "{} objective(s) passed: {}",
        g.objectives.len(),
        g.objectives
            .iter()
            .map(|o| o.objective.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::boot_result::{ImageInfo, Verdict};

    fn image() -> ImageRef {
        ImageRef {
            name: "hello".into(),
            version: "1.0".into(),
            arch: crate::arch::Arch::X86_64,
            manifest_sha256: crate::digest::Sha256::parse(&"a".repeat(64)).unwrap(),
            manifest_length: 1,
            signature_sha256: crate::digest::Sha256::parse(&"b".repeat(64)).unwrap(),
            signature_length: 1,
        }
    }

    fn doc(digest: Option<&str>, passed: bool, objectives: Vec<Verdict>) -> BootTestResult {
        BootTestResult {
            schema: SCHEMA.into(),
            image: ImageInfo {
                dir: Some("out/hello".into()),
                manifest_sha256: digest.map(|d| d.parse().unwrap()),
                name: "hello".into(),
                version: "1.0".into(),
                machine: "microvm".into(),
                sizes: BTreeMap::new(),
            },
            baseline: None,
            snapshot: None,
            accel: "tcg".into(),
            runs: 1,
            invocations: 1,
            invoke: "/".into(),
            baseline_invoke: None,
            memory_mib: 512,
            metrics: BTreeMap::new(),
            baseline_metrics: None,
            comparison: None,
            objectives,
            runs_detail: Vec::new(),
            concurrent: None,
            logs: Vec::new(),
            passed,
        }
    }

    fn verdict(passed: bool, reason: &str) -> Verdict {
        Verdict {
            objective: "runtime_ready.p95<=900ms".into(),
            value: Some(if passed { 812.0 } else { 1200.0 }),
            passed,
            reason: reason.into(),
        }
    }

    fn check_doc(d: &BootTestResult) -> Result<String, ChannelError> {
        check(&d.to_json(), "g.json", &image())
    }

    #[test]
    fn gates() {
        let ok = || vec![verdict(true, "812 ms")];
        let bad = vec![verdict(false, "1200 ms > 900 ms")];
        let a = "a".repeat(64);
        assert!(check_doc(&doc(Some(&a), true, ok())).is_ok());
        let gate_error = |d: &BootTestResult| match check_doc(d).unwrap_err() {
            ChannelError::Gate(g) => g,
            e => panic!("{e:?}"),
        };
        let e = gate_error(&doc(Some(&a), false, bad));
        assert!(
            matches!(&e, GateError::Failed { failed, .. } if failed == &["runtime_ready.p95<=900ms: 1200 ms > 900 ms"]),
            "{e:?}"
        );
        assert!(e.is_rejection());
        let e = gate_error(&doc(Some(&"c".repeat(64)), true, ok()));
        assert!(
            matches!(&e, GateError::WrongImage { tested, .. } if tested.digest == "c".repeat(64)),
            "{e:?}"
        );
        let e = gate_error(&doc(None, true, ok()));
        assert!(matches!(e, GateError::UnknownImage { .. }), "{e:?}");
        let e = gate_error(&doc(Some(&a), true, Vec::new()));
        assert!(matches!(e, GateError::NoObjectives { .. }), "{e:?}");
        let e = check(b"{}", "g.json", &image()).unwrap_err();
        assert!(
            matches!(e, ChannelError::Gate(GateError::NotABootTest { .. })),
            "{e:?}"
        );
        assert!(e.is_bad_input());
    }

    #[test]
    fn a_result_restored_from_an_unverified_snapshot_does_not_gate() {
        use crate::boot_result::SnapshotInfo;
        let a = "a".repeat(64);
        let mut d = doc(Some(&a), true, vec![verdict(true, "812 ms")]);
        let snap = |verified: bool| SnapshotInfo {
            dir: "out/hello.snap".into(),
            snapshot_sha256: "c".repeat(64).parse().unwrap(),
            warm: Vec::new(),
            verified,
            key_id: verified.then(|| "0123456789abcdef".into()),
        };
        d.snapshot = Some(snap(false));
        let e = check_doc(&d).unwrap_err();
        assert!(
            matches!(&e, ChannelError::Gate(GateError::UnverifiedSnapshot { dir, .. }) if dir == "out/hello.snap"),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(
            e.starts_with("g.json: the boot test restored the snapshot out/hello.snap"),
            "{e}"
        );
        assert!(e.contains("without verifying it"), "{e}");
        assert!(e.contains("--verify --image-key"), "{e}");
        // A result written before the field existed says nothing: not verified.
        let mut v = serde_json::to_value(&d).unwrap();
        v["snapshot"].as_object_mut().unwrap().remove("verified");
        v["snapshot"].as_object_mut().unwrap().remove("key_id");
        let e = check(&serde_json::to_vec(&v).unwrap(), "g.json", &image())
            .unwrap_err()
            .to_string();
        assert!(e.contains("without verifying it"), "{e}");
        d.snapshot = Some(snap(true));
        assert!(check_doc(&d).is_ok());
    }

    #[test]
    fn only_a_whole_result_of_this_schema_gates() {
        let a = "a".repeat(64);
        let mut other = doc(Some(&a), true, vec![verdict(true, "812 ms")]);
        other.schema = "stratos-boot-test/2".into();
        let e = check_doc(&other).unwrap_err().to_string();
        assert_eq!(
            e,
            "g.json: schema \"stratos-boot-test/2\" is not \"stratos-boot-test/1\""
        );
        // A document missing a field every result has is not a result.
        let mut v =
            serde_json::to_value(doc(Some(&a), true, vec![verdict(true, "812 ms")])).unwrap();
        v.as_object_mut().unwrap().remove("runs_detail");
        let e = check(&serde_json::to_vec(&v).unwrap(), "g.json", &image())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("g.json: not a boot-test result (missing field `runs_detail`"),
            "{e}"
        );
    }
}
