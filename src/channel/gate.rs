//! Rollout gates: a `stratos boot-test` result decides whether a rollout may widen.

use serde::Deserialize;

use super::{ChannelError, ImageRef};

#[derive(Debug, Deserialize)]
struct GateDoc {
    schema: String,
    image: GateImage,
    passed: bool,
    #[serde(default)]
    objectives: Vec<Objective>,
}

#[derive(Debug, Deserialize)]
struct GateImage {
    name: String,
    version: String,
    #[serde(default)]
    manifest_sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Objective {
    objective: String,
    passed: bool,
    reason: String,
}

/// Checks that `bytes` (a boot-test `--json` result) is for `image` and met objectives.
/// Returns a one-line summary of what passed.
pub fn check(bytes: &[u8], path: &str, image: &ImageRef) -> Result<String, ChannelError> {
    let g: GateDoc = serde_json::from_slice(bytes).map_err(|e| {
        ChannelError::input(format!(
            "{path}: not a boot-test result ({e}); produce one with `stratos boot-test IMAGE --slo ... --json {path}`"
        ))
    })?;
    if g.schema != crate::boot::bench::SCHEMA {
        return Err(ChannelError::input(format!(
            "{path}: schema {:?} is not {:?}",
            g.schema,
            crate::boot::bench::SCHEMA
        )));
    }
    match &g.image.manifest_sha256 {
        Some(d) if *d == image.manifest_sha256 => {}
        Some(d) => {
            return Err(ChannelError::rejected(format!(
                "{path}: the boot test ran image {} {} (manifest sha256 {}), but the channel rolls out {} {} (manifest sha256 {}); test the image being rolled out",
                g.image.name, g.image.version, d, image.name, image.version, image.manifest_sha256
            )))
        }
        None => {
            return Err(ChannelError::rejected(format!(
                "{path}: the result does not say which image it tested (no image.manifest_sha256); rerun boot-test on the published image"
            )))
        }
    }
    if g.objectives.is_empty() {
        return Err(ChannelError::rejected(format!(
            "{path}: the boot test had no objectives, so it cannot gate a rollout; rerun it with --slo and/or --baseline --max-regression"
        )));
    }
    let failed: Vec<String> = g
        .objectives
        .iter()
        .filter(|o| !o.passed)
        .map(|o| format!("{}: {}", o.objective, o.reason))
        .collect();
    if !failed.is_empty() || !g.passed {
        return Err(ChannelError::rejected(format!(
            "{path}: the boot test failed{}{}; the rollout was not widened",
            if failed.is_empty() {
                ""
            } else {
                " its objectives: "
            },
            failed.join("; ")
        )));
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
    use super::*;

    fn image() -> ImageRef {
        ImageRef {
            name: "hello".into(),
            version: "1.0".into(),
            manifest_sha256: "a".repeat(64),
            manifest_length: 1,
            signature_sha256: "b".repeat(64),
            signature_length: 1,
        }
    }

    fn doc(digest: &str, passed: bool, objectives: &str) -> Vec<u8> {
        format!(
            r#"{{"schema":"stratos-boot-test/1","image":{{"name":"hello","version":"1.0","manifest_sha256":"{digest}"}},"passed":{passed},"objectives":[{objectives}]}}"#
        )
        .into_bytes()
    }

    #[test]
    fn gates() {
        let ok = r#"{"objective":"runtime_ready.p95<=900ms","passed":true,"reason":"812 ms"}"#;
        let bad = r#"{"objective":"runtime_ready.p95<=900ms","passed":false,"reason":"1200 ms > 900 ms"}"#;
        let a = "a".repeat(64);
        assert!(check(&doc(&a, true, ok), "g.json", &image()).is_ok());
        let e = check(&doc(&a, false, bad), "g.json", &image())
            .unwrap_err()
            .to_string();
        assert!(e.contains("1200 ms > 900 ms"), "{e}");
        let e = check(&doc(&"c".repeat(64), true, ok), "g.json", &image())
            .unwrap_err()
            .to_string();
        assert!(e.contains("test the image being rolled out"), "{e}");
        let e = check(&doc(&a, true, ""), "g.json", &image())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no objectives"), "{e}");
        assert!(check(b"{}", "g.json", &image()).is_err());
    }
}
