//! What the builds of compiled functions share (Go's `go/`, Rust's `cargo/`): the function's
//! source copied into the sandbox's scratch directory, the compiler's output made safe to
//! print, and the check that what came out is one static executable for the image's machine.

use std::path::Path;

use crate::arch::Arch;

/// Why the function's source could not be copied.
#[derive(Debug)]
pub enum CopyError {
    /// A symlink or special file at this path: it could lead out of the source.
    NotRegular(std::path::PathBuf),
    /// Over the size limit, or the file system failed.
    Io(String),
}

/// Copies the source tree `from` (regular files and directories only; a symlink is refused: it
/// could lead out of the source) into `to`, skipping the top-level entries named in `skip`
/// (`.git`, a Cargo project's `target`), at most `max_bytes` of files together.
pub fn copy_source(from: &Path, to: &Path, skip: &[&str], max_bytes: u64) -> Result<(), CopyError> {
    let mut total = 0u64;
    let mut walk = walkdir::WalkDir::new(from).sort_by_file_name().into_iter();
    while let Some(e) = walk.next() {
        let e = e.map_err(|e| CopyError::Io(format!("reading {}: {e}", from.display())))?;
        let rel = e.path().strip_prefix(from).unwrap_or(Path::new(""));
        if e.depth() == 1 && skip.iter().any(|s| rel.as_os_str() == *s) {
            if e.file_type().is_dir() {
                walk.skip_current_dir();
            }
            continue;
        }
        let dest = to.join(rel);
        let t = e.file_type();
        let io = |e: std::io::Error| CopyError::Io(format!("copying {}: {e}", dest.display()));
        if t.is_dir() {
            std::fs::create_dir_all(&dest).map_err(io)?;
        } else if t.is_file() {
            total = total.saturating_add(e.metadata().map(|m| m.len()).unwrap_or(0));
            if total > max_bytes {
                return Err(CopyError::Io(format!(
                    "{}: the function's source is over {max_bytes} bytes",
                    from.display()
                )));
            }
            std::fs::copy(e.path(), &dest).map_err(io)?;
        } else {
            return Err(CopyError::NotRegular(e.path().to_owned()));
        }
    }
    Ok(())
}

/// A compiler's output for an error: the scratch path `work` shortened (its `src/` dropped,
/// the rest `<scratch>`), control characters escaped (it quotes the untrusted source), at most
/// `max` bytes.
pub fn printable(text: &str, work: &Path, max: usize) -> String {
    let text = text.replace(&format!("{}/src/", work.display()), "");
    let text = text.replace(&work.display().to_string(), "<scratch>");
    let mut out = String::new();
    for line in text.lines() {
        if out.len() >= max {
            out.push_str("[… cut]");
            break;
        }
        // Writing into a String cannot fail.
        let _ = crate::fsio::escape_controls(line, &mut out);
        out.push('\n');
    }
    out.trim_end().to_owned()
}

/// The binary must be a static executable for the image's machine: no interpreter, no
/// libraries (the image holds nothing else). `Err` says what it is instead.
pub fn check_static(binary: &[u8], arch: Arch) -> Result<(), String> {
    let elf = goblin::elf::Elf::parse(binary).map_err(|e| format!("not an ELF file: {e}"))?;
    if elf.header.e_machine != arch.elf_machine() {
        return Err(format!(
            "built for ELF machine {}, not {}",
            elf.header.e_machine,
            arch.human()
        ));
    }
    if elf.interpreter.is_some() || !elf.libraries.is_empty() {
        return Err("it is dynamically linked".into());
    }
    Ok(())
}

/// sha256 over a directory's regular files: each file's sha256 (hex), two spaces and its
/// relative path, one per line, sorted (what Go's `h1:` hashes, without the base64): the
/// digest of a dependency the function keeps in its own source.
pub fn dir_digest(dir: &Path) -> Result<String, String> {
    use sha2::Digest as _;
    let mut lines = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.map_err(|e| format!("reading {}: {e}", dir.display()))?;
        if e.file_type().is_file() {
            let (sum, _) = crate::fsio::sha256_file(e.path(), crate::fsio::Links::Refuse)
                .map_err(|e| e.to_string())?;
            let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
            lines.push(format!("{}  {}\n", hex::encode(sum), rel.display()));
        }
    }
    lines.sort();
    Ok(hex::encode(sha2::Sha256::digest(lines.concat())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_refuses_links_and_skips_what_it_is_told() {
        let d = tempfile::tempdir().unwrap();
        let (from, to) = (d.path().join("from"), d.path().join("to"));
        std::fs::create_dir_all(from.join("target/release")).unwrap();
        std::fs::create_dir_all(from.join("src")).unwrap();
        std::fs::write(from.join("src/main.rs"), "fn main() {}").unwrap();
        std::fs::write(from.join("target/release/big"), "x").unwrap();
        copy_source(&from, &to, &["target"], 1 << 20).unwrap();
        assert!(to.join("src/main.rs").is_file());
        assert!(!to.join("target").exists());
        assert!(matches!(
            copy_source(&from, &d.path().join("small"), &[], 4),
            Err(CopyError::Io(m)) if m.contains("over 4 bytes")
        ));
        std::os::unix::fs::symlink("/etc/passwd", from.join("src/leak")).unwrap();
        assert!(matches!(
            copy_source(&from, &d.path().join("t2"), &[], 1 << 20),
            Err(CopyError::NotRegular(p)) if p.ends_with("src/leak")
        ));
    }

    #[test]
    fn compiler_output_is_shortened_escaped_and_bounded() {
        let work = Path::new("/tmp/s-1");
        let out = printable(
            "/tmp/s-1/src/main.rs:1: \x1b[31mbad\n/tmp/s-1/x",
            work,
            1 << 10,
        );
        assert_eq!(out, "main.rs:1: \\u{1b}[31mbad\n<scratch>/x");
        assert!(printable(&"a\n".repeat(100), work, 10).ends_with("[… cut]"));
    }
}
