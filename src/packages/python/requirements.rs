//! A hash-pinned `requirements.txt` (what `pip-compile --generate-hashes` and `uv pip compile
//! --generate-hashes` write): every requirement `name==version` with its sha256 hashes.

use std::collections::BTreeSet;
use std::path::Path;

use super::PypiError;
use crate::digest::Sha256;

/// One pinned requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// As written.
    pub name: String,
    pub version: String,
    /// Allowed sha256 digests (hex, lower case) of the files that may be installed.
    pub hashes: BTreeSet<Sha256>,
    pub line: usize,
}

impl Requirement {
    /// PEP 503 normal form: lower case, runs of `-_.` as one `-`.
    pub fn normalized(&self) -> String {
        normalize(&self.name)
    }
}

pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

fn is_project_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 200
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Parses a requirements file: every requirement `name==version` with at least one
/// `--hash=sha256:…`; comments and blank lines; `\` continues a line. Anything else (ranges,
/// markers, URLs, editable installs, options, other files) is an error naming the line.
pub fn parse_requirements(text: &str, file: &Path) -> Result<Vec<Requirement>, PypiError> {
    let mut out: Vec<Requirement> = Vec::new();
    for (line, text) in logical_lines(text) {
        let err = |why: String| PypiError::Requirements {
            file: file.to_owned(),
            line,
            why,
        };
        let r = parse_requirement(&text, line).map_err(err)?;
        if let Some(prev) = out.iter().find(|p| p.normalized() == r.normalized()) {
            return Err(err(format!(
                "{} is already required on line {}",
                r.name, prev.line
            )));
        }
        out.push(r);
    }
    Ok(out)
}

/// The file's logical lines, comments removed and `\` continuations joined: (first physical
/// line number, text), blank ones left out.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut logical: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let body = strip_comment(raw);
        let (body, continued) = match body.trim_end().strip_suffix('\\') {
            Some(b) => (b, true),
            None => (body, false),
        };
        let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        acc.push(' ');
        acc.push_str(body);
        if continued {
            pending = Some((start, acc));
        } else if !acc.trim().is_empty() {
            logical.push((start, acc));
        }
    }
    if let Some((start, acc)) = pending {
        if !acc.trim().is_empty() {
            logical.push((start, acc));
        }
    }
    logical
}

/// The line up to its comment, which starts at a '#' at the start or after whitespace.
fn strip_comment(raw: &str) -> &str {
    for (at, _) in raw.match_indices('#') {
        if at == 0 || raw[..at].ends_with(char::is_whitespace) {
            return &raw[..at];
        }
    }
    raw
}

/// One logical line: `name==version` followed by its `--hash` options.
fn parse_requirement(text: &str, line: usize) -> Result<Requirement, String> {
    let mut tokens = text.split_whitespace().peekable();
    let first = tokens.next().expect("non-empty line");
    if first.starts_with('-') {
        return Err(format!("option {first:?}: StratOS reads only pinned requirements (`name==version --hash=sha256:…`); indexes, constraints and other files are not followed (pip-compile's header options can go: the build fetches from PyPI's simple API)"));
    }
    // `name==version`, tolerating spaces around `==`.
    let mut spec = first.to_owned();
    while let Some(t) = tokens.next_if(|t| !t.starts_with("--")) {
        spec.push_str(t);
    }
    let (name, version) = parse_pin(&spec)?;
    let hashes = parse_hashes(tokens)?;
    if hashes.is_empty() {
        return Err(format!("{name}=={version} has no --hash: every requirement is pinned by hash (`pip-compile --generate-hashes`), so a changed file on the index cannot slip in"));
    }
    Ok(Requirement {
        name: name.to_owned(),
        version: version.to_owned(),
        hashes,
        line,
    })
}

/// `name[extras]==version` → (name, version); anything but an exact pin is refused.
fn parse_pin(spec: &str) -> Result<(&str, &str), String> {
    if spec.contains(';') {
        return Err(format!("{spec:?}: environment markers are not supported; compile the requirements for the image's platform (Linux, the image's architecture and Python) so every line applies"));
    }
    if spec.contains('@') || spec.contains("://") {
        return Err(format!(
            "{spec:?}: a direct URL; pin the package from the index with name==version and its hashes"
        ));
    }
    let Some((name_part, version)) = spec.split_once("==") else {
        return Err(format!("{spec:?} is not pinned: write name==version with its --hash=sha256:… (`pip-compile --generate-hashes` or `uv pip compile --generate-hashes` write exactly that)"));
    };
    let version = version.trim_start_matches('=');
    // Extras select dependencies, which are pinned on their own lines.
    let name = name_part.split('[').next().unwrap_or("");
    if !is_project_name(name) {
        return Err(format!("{name:?} is not a project name"));
    }
    if version.is_empty()
        || version.contains('*')
        || !version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_' | '!'))
    {
        return Err(format!(
            "{spec:?}: an exact version is needed (no wildcards or ranges)"
        ));
    }
    Ok((name, version))
}

/// The `--hash=sha256:…` (or `--hash sha256:…`) options after a pin.
fn parse_hashes<'a>(mut tokens: impl Iterator<Item = &'a str>) -> Result<BTreeSet<Sha256>, String> {
    let mut hashes = BTreeSet::new();
    while let Some(t) = tokens.next() {
        let value = match t.strip_prefix("--hash") {
            Some(rest) if rest.starts_with('=') => rest[1..].to_owned(),
            Some("") => tokens.next().unwrap_or("").to_owned(),
            _ => {
                return Err(format!(
                    "{t:?}: only --hash=sha256:… may follow a requirement"
                ))
            }
        };
        let Some(hex) = value.strip_prefix("sha256:") else {
            return Err(format!("--hash={value}: only sha256 hashes are accepted"));
        };
        // pip accepts either case; the digest is the same.
        let digest = Sha256::parse(&hex.to_ascii_lowercase())
            .map_err(|_| format!("--hash=sha256:{hex}: not 64 hex digits"))?;
        hashes.insert(digest);
    }
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Vec<Requirement>, PypiError> {
        parse_requirements(s, Path::new("req.txt"))
    }

    #[test]
    fn pip_compile_output_parses() {
        let h1 = "a".repeat(64);
        let h2 = "B".repeat(64);
        let text = format!(
            "#\n# This file is autogenerated by pip-compile\n#\nMarkupSafe==2.1.5 \\\n    --hash=sha256:{h1} \\\n    --hash=sha256:{h2}\n    # via jinja2\nidna[all] == 3.7 --hash sha256:{h1}  # comment\n"
        );
        let r = parse(&text).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].name, "MarkupSafe");
        assert_eq!(r[0].normalized(), "markupsafe");
        assert_eq!(r[0].line, 4);
        assert!(r[0]
            .hashes
            .contains(&Sha256::parse(&"b".repeat(64)).unwrap()));
        assert_eq!(r[1].version, "3.7");
        assert_eq!(r[1].line, 8);
    }

    #[test]
    fn unpinned_unhashed_and_unsupported_lines_name_the_line() {
        let h = "a".repeat(64);
        for (text, want) in [
            (
                "idna>=3\n".to_owned(),
                "req.txt:1: \"idna>=3\" is not pinned",
            ),
            (
                "\nidna==3.7\n".to_owned(),
                "req.txt:2: idna==3.7 has no --hash",
            ),
            (format!("idna==3.7 --hash=md5:{h}\n"), "only sha256"),
            (
                format!("idna==3.7 ; python_version<'3' --hash=sha256:{h}\n"),
                "environment markers",
            ),
            ("-r other.txt\n".to_owned(), "req.txt:1: option \"-r\""),
            (format!("idna==3.* --hash=sha256:{h}\n"), "exact version"),
            (
                format!("idna==3.7 --hash=sha256:{h}\nIDNA==3.7 --hash=sha256:{h}\n"),
                "req.txt:2: IDNA is already required on line 1",
            ),
            ("idna @ https://x/y.whl\n".to_owned(), "direct URL"),
        ] {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn hostile_requirement_files_never_panic() {
        let seeds = [
            "a==1 --hash=sha256:".to_owned() + &"a".repeat(64),
            "\\\n\\\n#x\n-".into(),
            "a[==1;@ \\".into(),
        ];
        for s in &seeds {
            for cut in 0..=s.len() {
                if s.is_char_boundary(cut) {
                    let _ = parse(&s[..cut]);
                }
            }
        }
    }
}
