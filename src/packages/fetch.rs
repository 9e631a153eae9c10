//! Downloads from a language registry (PyPI, npm) and the content-addressed cache they land in.
//! Only the fetch steps talk to a registry: a build with `--offline` reads the cache and the
//! directory `ci/setup` fills, nothing else.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where a networked setup step (`ci/fetch-pinned`) leaves pinned wheels and npm tarballs
/// (`wheels/`, `npm/`) for offline builds: `$STRATOS_PREFETCH_DIR`, else `/var/cache/stratos`.
/// Only a place to look: every file found there is checked against the pins.
pub fn prefetch_dir() -> PathBuf {
    std::env::var_os("STRATOS_PREFETCH_DIR")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("/var/cache/stratos"), PathBuf::from)
}

/// Fetches `url` over HTTPS with curl into memory, refusing more than `max_bytes`.
pub fn download(url: &str, max_bytes: u64, accept: Option<&str>) -> Result<Vec<u8>, String> {
    if !url.starts_with("https://") {
        return Err(format!(
            "{url}: only https:// URLs are fetched (a registry answer over plain HTTP could be anything)"
        ));
    }
    let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
    let out = dir.path().join("download");
    let mut cmd = Command::new("curl");
    cmd.args(["-fsSL", "--proto", "=https", "--proto-redir", "=https"])
        .args([
            "--retry",
            "2",
            "--connect-timeout",
            "20",
            "--max-time",
            "600",
        ])
        .arg("--max-filesize")
        .arg(max_bytes.to_string())
        .arg("-o")
        .arg(&out);
    if let Some(a) = accept {
        cmd.args(["-H", &format!("Accept: {a}")]);
    }
    let res = cmd.arg(url).output().map_err(|e| {
        format!("cannot run curl ({e}); install curl (ci/setup does) or fill the cache")
    })?;
    if !res.status.success() {
        let err = String::from_utf8_lossy(&res.stderr);
        return Err(format!(
            "{url}: {}",
            err.lines().last().unwrap_or("curl failed").trim()
        ));
    }
    crate::fsio::read_regular(
        &out,
        max_bytes,
        "a registry download",
        crate::fsio::Links::Refuse,
    )
    .map_err(|e| format!("{url}: {e}"))
}

/// Puts `bytes` at `path` in the cache (temp file, fsync, rename), creating its directory.
pub fn store(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    crate::fsio::write_atomic(path, bytes, 0o644)
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Regular files directly in `dir` whose name starts with `prefix` (case-insensitively), sorted;
/// a directory that does not exist has none.
pub fn candidates(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let prefix = prefix.to_ascii_lowercase();
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.to_ascii_lowercase().starts_with(&prefix))
        })
        .collect();
    out.sort();
    out
}
