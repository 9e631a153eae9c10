//! What StratOS reads of a Go module itself, before `go` runs: go.mod's `module`, `go`,
//! `toolchain`, `require` and `replace` lines, and go.sum's pins. Strict where it matters (a
//! module path or version that could name a path outside its directory is refused), lenient
//! where `go` is the authority (comments, `exclude`, `retract`).

use std::collections::BTreeMap;

/// A module path or version StratOS refuses, or a line it cannot read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

/// go.mod, as far as StratOS needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoMod {
    pub module: String,
    /// The `go` line's version and its line.
    pub go: Option<(String, usize)>,
    /// The `toolchain` line's name (`go1.21.0`) and its line.
    pub toolchain: Option<(String, usize)>,
    /// `require` entries: path → (version, line).
    pub require: BTreeMap<String, (String, usize)>,
    pub replace: Vec<Replace>,
}

/// One `replace old [v] => new [v]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replace {
    pub old: String,
    /// The version it replaces; `None`: every version.
    pub old_version: Option<String>,
    /// A module path, or a directory (starts with `./`, `../` or `/`).
    pub new: String,
    pub new_version: Option<String>,
    pub line: usize,
}

impl GoMod {
    /// The replacement Go applies to `path` at `version`: one for that version wins over one
    /// for every version.
    pub fn replacement(&self, path: &str, version: &str) -> Option<&Replace> {
        self.replace
            .iter()
            .find(|r| r.old == path && r.old_version.as_deref() == Some(version))
            .or_else(|| {
                self.replace
                    .iter()
                    .find(|r| r.old == path && r.old_version.is_none())
            })
    }
}

impl Replace {
    pub fn is_dir(&self) -> bool {
        self.new.starts_with("./")
            || self.new.starts_with("../")
            || self.new.starts_with('/')
            || self.new == "."
            || self.new == ".."
    }
}

/// Splits a go.mod line into tokens: words and "quoted" strings, up to a `//` comment.
fn tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        if rest.starts_with("//") {
            break;
        }
        if let Some(q) = rest.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            out.push(q[..end].to_owned());
            rest = q.get(end + 1..).unwrap_or("").trim_start();
        } else if let Some(q) = rest.strip_prefix('`') {
            let end = q.find('`').unwrap_or(q.len());
            out.push(q[..end].to_owned());
            rest = q.get(end + 1..).unwrap_or("").trim_start();
        } else {
            let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
            out.push(rest[..end].to_owned());
            rest = rest[end..].trim_start();
        }
    }
    out
}

/// Reads go.mod's text.
pub fn parse_go_mod(text: &str) -> Result<GoMod, LineError> {
    let mut m = GoMod::default();
    let mut block: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |message: String| LineError { line, message };
        let mut t = tokens(raw);
        if t.is_empty() {
            continue;
        }
        if block.is_some() && t[0] == ")" {
            block = None;
            continue;
        }
        let verb = match &block {
            Some(b) => b.clone(),
            None => {
                let v = t.remove(0);
                if t.first().map(String::as_str) == Some("(") {
                    block = Some(v);
                    continue;
                }
                v
            }
        };
        match verb.as_str() {
            "module" => {
                let p = t
                    .first()
                    .ok_or_else(|| err("`module` without a path".into()))?;
                check_path(p).map_err(&err)?;
                m.module = p.clone();
            }
            "go" => {
                let v = t
                    .first()
                    .ok_or_else(|| err("`go` without a version".into()))?;
                m.go = Some((v.clone(), line));
            }
            "toolchain" => {
                let v = t
                    .first()
                    .ok_or_else(|| err("`toolchain` without a name".into()))?;
                m.toolchain = Some((v.clone(), line));
            }
            "require" => {
                let [p, v, ..] = t.as_slice() else {
                    return Err(err("a `require` needs a module path and a version".into()));
                };
                check_path(p).map_err(&err)?;
                check_version(v).map_err(&err)?;
                m.require.insert(p.clone(), (v.clone(), line));
            }
            "replace" => {
                let arrow = t
                    .iter()
                    .position(|x| x == "=>")
                    .ok_or_else(|| err("a `replace` needs `=>`".into()))?;
                let (lhs, rhs) = (&t[..arrow], &t[arrow + 1..]);
                let (Some(old), Some(new)) = (lhs.first(), rhs.first()) else {
                    return Err(err("a `replace` needs a module on each side of `=>`".into()));
                };
                let r = Replace {
                    old: old.clone(),
                    old_version: lhs.get(1).cloned(),
                    new: new.clone(),
                    new_version: rhs.get(1).cloned(),
                    line,
                };
                if !r.is_dir() {
                    check_path(&r.new).map_err(&err)?;
                    let v = r.new_version.as_deref().ok_or_else(|| {
                        err(format!(
                            "replace {old} => {new}: a module replacement needs a version"
                        ))
                    })?;
                    check_version(v).map_err(&err)?;
                }
                m.replace.push(r);
            }
            // exclude, retract, godebug and what later Go versions add: `go` decides.
            _ => {}
        }
    }
    if m.module.is_empty() {
        return Err(LineError {
            line: 1,
            message: "no `module` line".into(),
        });
    }
    Ok(m)
}

/// The `go` line of a dependency's go.mod (read leniently: `go` itself parses the rest).
pub fn go_line(text: &str) -> Option<(String, usize)> {
    text.lines().enumerate().find_map(|(i, l)| {
        let t = tokens(l);
        (t.len() >= 2 && t[0] == "go").then(|| (t[1].clone(), i + 1))
    })
}

/// One go.sum pin: the module's zip (`h1:` of its files) or only its go.mod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SumLine {
    pub path: String,
    pub version: String,
    /// `true` for the `<version>/go.mod` line.
    pub go_mod: bool,
    /// The 32 bytes behind `h1:`.
    pub h1: [u8; 32],
    pub line: usize,
}

/// Reads go.sum's text: `<path> <version>[/go.mod] h1:<base64>` per line.
pub fn parse_go_sum(text: &str) -> Result<Vec<SumLine>, LineError> {
    use base64::Engine as _;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |message: String| LineError { line, message };
        let f: Vec<&str> = raw.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        let [path, version, hash] = f.as_slice() else {
            return Err(err("expected `<module> <version> h1:<hash>`".into()));
        };
        let (version, go_mod) = match version.strip_suffix("/go.mod") {
            Some(v) => (v, true),
            None => (*version, false),
        };
        check_path(path).map_err(&err)?;
        check_version(version).map_err(&err)?;
        let b64 = hash
            .strip_prefix("h1:")
            .ok_or_else(|| err(format!("{hash}: only h1: hashes are known")))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| err(format!("{hash}: not a base64 SHA-256")))?;
        out.push(SumLine {
            path: (*path).to_owned(),
            version: version.to_owned(),
            go_mod,
            h1: bytes,
            line,
        });
    }
    Ok(out)
}

/// A module path StratOS will put in a file name: ASCII letters, digits and `-._~+/`, no
/// empty, `.` or `..` element, no leading or trailing slash.
pub fn check_path(p: &str) -> Result<(), String> {
    let ok = !p.is_empty()
        && p.len() <= 256
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
        && p.split('/').all(|e| !e.is_empty() && e != "." && e != "..")
        && !p.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!("{p:?} is not a module path StratOS accepts (letters, digits, -._~+/; no empty, . or .. element)"))
    }
}

/// A module version: `v` then letters, digits and `-.+`, no `..`.
pub fn check_version(v: &str) -> Result<(), String> {
    let ok = v.len() <= 128
        && v.starts_with('v')
        && v.len() > 1
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.+".contains(&b))
        && !v.contains("..");
    if ok {
        Ok(())
    } else {
        Err(format!("{v:?} is not a module version (v1.2.3)"))
    }
}

/// A path or version as the module proxy protocol spells it: each upper-case letter becomes
/// `!` and its lower case.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `go1.19.8` / `1.19` → (1, 19, 8) / (1, 19, 0); `None` when it is not a release version.
pub fn release(v: &str) -> Option<(u32, u32, u32)> {
    let v = v.strip_prefix("go").unwrap_or(v);
    // Pre-releases (1.21rc2): the numbers before the suffix.
    let numeric: String = v
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut it = numeric.split('.').map(|x| x.parse::<u32>().ok());
    let major = it.next()??;
    let minor = it.next().flatten().unwrap_or(0);
    let patch = it.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_mod_lines_blocks_and_comments() {
        let m = parse_go_mod(
            "// a comment\nmodule example.com/api // the function\n\ngo 1.19\ntoolchain go1.21.0\n\nrequire (\n\texample.com/greet v1.0.0 // indirect\n\tgolang.org/x/text v0.3.0\n)\nrequire example.com/one v1.2.3\nreplace example.com/one => ../one\nreplace (\n\texample.com/greet v1.0.0 => example.com/fork v1.0.1\n)\nexclude example.com/bad v0.1.0\n",
        )
        .unwrap();
        assert_eq!(m.module, "example.com/api");
        assert_eq!(m.go, Some(("1.19".into(), 4)));
        assert_eq!(m.toolchain, Some(("go1.21.0".into(), 5)));
        assert_eq!(m.require.len(), 3);
        assert_eq!(m.require["example.com/greet"], ("v1.0.0".into(), 8));
        assert_eq!(m.replace.len(), 2);
        assert!(m.replace[0].is_dir());
        assert_eq!(m.replace[1].new, "example.com/fork");
        assert_eq!(m.replace[1].new_version.as_deref(), Some("v1.0.1"));
        assert_eq!(m.replace[1].old_version.as_deref(), Some("v1.0.0"));
        // A replacement for one version applies to that version only.
        assert!(m.replacement("example.com/greet", "v1.0.0").is_some());
        assert!(m.replacement("example.com/greet", "v1.2.0").is_none());
        assert!(m.replacement("example.com/one", "v9.9.9").is_some());
        assert_eq!(go_line("module x\n\ngo 1.22\n"), Some(("1.22".into(), 3)));
    }

    #[test]
    fn hostile_paths_and_versions_are_refused_with_their_line() {
        let e = parse_go_mod("module m\nrequire ../../etc v1.0.0\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse_go_mod("module m\nrequire a.com/b v1/../../x\n").is_err());
        assert!(parse_go_mod("go 1.19\n").is_err());
        // The module's own path reaches messages and the manifest: no control character.
        assert_eq!(
            parse_go_mod("module x\u{1b}]0;pwned\n").unwrap_err().line,
            1
        );
        let e = parse_go_sum("a.com/b v1.0.0 h1:AAAA\n").unwrap_err();
        assert!(e.message.contains("base64"), "{e:?}");
        assert!(parse_go_sum("a.com/b v1.0.0 sha256:x\n").is_err());
        assert!(parse_go_sum("/abs v1.0.0 h1:x\n").is_err());
    }

    #[test]
    fn go_sum_lines() {
        let s = parse_go_sum(
            "example.com/greet v1.0.0 h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nexample.com/greet v1.0.0/go.mod h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert!(!s[0].go_mod && s[1].go_mod);
        assert_eq!(s[1].line, 2);
    }

    #[test]
    fn escaping_and_releases() {
        assert_eq!(escape("github.com/Azure/SDK"), "github.com/!azure/!s!d!k");
        assert_eq!(release("go1.19.8"), Some((1, 19, 8)));
        assert_eq!(release("1.21"), Some((1, 21, 0)));
        assert_eq!(release("1.21rc2"), Some((1, 21, 0)));
        assert_eq!(release("x"), None);
    }
}
