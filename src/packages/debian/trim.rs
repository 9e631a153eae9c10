//! Trimming installed packages: `exclude` globs (with a default set of documentation, manual
//! pages, locales and bytecode caches) and `keep` globs that win over them. Each package's
//! licence is read from its `copyright` file before the docs go, so the SBOM keeps it.

/// What a function image never needs from a Debian package.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    "/usr/share/doc/**",
    "/usr/share/man/**",
    "/usr/share/info/**",
    "/usr/share/locale/**",
    "/usr/share/lintian/**",
    "/usr/share/bug/**",
    "/usr/share/doc-base/**",
    "**/__pycache__/**",
];

/// Kept whatever the excludes say (while the defaults apply): each package's copyright file,
/// so the image carries the licence terms of everything in it.
pub const DEFAULT_KEEPS: &[&str] = &["/usr/share/doc/*/copyright"];

/// Matches `path` against a glob: `*` and `?` within one path component, `**` across any
/// number of components.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    fn rec(p: &[u8], s: &[u8]) -> bool {
        if p.is_empty() {
            return s.is_empty();
        }
        // `dir/**` also matches `dir` itself.
        if p == b"/**" && s.is_empty() {
            return true;
        }
        if p.starts_with(b"**") {
            let rest = p[2..].strip_prefix(b"/").unwrap_or(&p[2..]);
            // `**` matches any sequence, including across '/'.
            return (0..=s.len()).any(|i| rec(rest, &s[i..])) || rec(&p[2..], s);
        }
        match p[0] {
            b'*' => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != b'/')
                .any(|i| rec(&p[1..], &s[i..])),
            b'?' => !s.is_empty() && s[0] != b'/' && rec(&p[1..], &s[1..]),
            c => !s.is_empty() && s[0] == c && rec(&p[1..], &s[1..]),
        }
    }
    rec(pattern.as_bytes(), path.as_bytes())
}

/// Whether a path goes: excluded (by the defaults unless disabled, or the profile) and not kept.
pub fn excluded(path: &str, exclude: &[String], keep: &[String], defaults: bool) -> bool {
    let ex = (defaults && DEFAULT_EXCLUDES.iter().any(|g| glob_match(g, path)))
        || exclude.iter().any(|g| glob_match(g, path));
    ex && !keep.iter().any(|g| glob_match(g, path))
        && !(defaults && DEFAULT_KEEPS.iter().any(|g| glob_match(g, path)))
}

/// A Debian licence short name as an SPDX identifier (`LicenseRef-...` when SPDX has none).
fn spdx(debian: &str) -> String {
    let known = [
        ("GPL-1", "GPL-1.0-only"),
        ("GPL-1+", "GPL-1.0-or-later"),
        ("Artistic", "Artistic-1.0"),
        ("GPL-2", "GPL-2.0-only"),
        ("GPL-2+", "GPL-2.0-or-later"),
        ("GPL-3", "GPL-3.0-only"),
        ("GPL-3+", "GPL-3.0-or-later"),
        ("LGPL-2", "LGPL-2.0-only"),
        ("LGPL-2+", "LGPL-2.0-or-later"),
        ("LGPL-2.1", "LGPL-2.1-only"),
        ("LGPL-2.1+", "LGPL-2.1-or-later"),
        ("LGPL-3", "LGPL-3.0-only"),
        ("LGPL-3+", "LGPL-3.0-or-later"),
        ("GFDL-1.3+", "GFDL-1.3-or-later"),
        ("BSD-2-clause", "BSD-2-Clause"),
        ("BSD-3-clause", "BSD-3-Clause"),
        ("BSD-4-clause", "BSD-4-Clause"),
        ("Expat", "MIT"),
        ("MIT", "MIT"),
        ("Zlib", "Zlib"),
        ("Apache-2.0", "Apache-2.0"),
        ("PSF-2", "PSF-2.0"),
        ("ISC", "ISC"),
        ("OpenSSL", "OpenSSL"),
        ("MPL-2.0", "MPL-2.0"),
    ];
    if let Some((_, id)) = known.iter().find(|(d, _)| d.eq_ignore_ascii_case(debian)) {
        return (*id).to_owned();
    }
    let clean: String = debian
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("LicenseRef-{clean}")
}

/// The licences a machine-readable (DEP-5) `copyright` file declares, as an SPDX expression
/// (`A AND (B OR C)`), or `None` for a free-form file.
pub fn licences(copyright: &str) -> Option<String> {
    if !copyright.starts_with("Format:") {
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    for line in copyright.lines() {
        let Some(v) = line.strip_prefix("License:") else {
            continue;
        };
        let v = v.trim().replace(',', " ");
        if v.is_empty() {
            continue;
        }
        // `A or B`, `A and B`, `A with X exception` (kept as one reference).
        let mut alts: Vec<String> = Vec::new();
        for alt in v.split(" or ") {
            let parts: Vec<String> = alt.split(" and ").map(|p| spdx(p.trim())).collect();
            alts.push(parts.join(" AND "));
        }
        // Each term once: `A and B` adds A and B, an alternative stays one parenthesised term.
        let terms: Vec<String> = if alts.len() > 1 {
            vec![format!("({})", alts.join(" OR "))]
        } else {
            alts.remove(0).split(" AND ").map(str::to_owned).collect()
        };
        for id in terms {
            if !out.contains(&id) {
                out.push(id);
            }
        }
    }
    if out.is_empty() {
        return None;
    }
    Some(out.join(" AND "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(
            "/usr/share/doc/**",
            "/usr/share/doc/libc6/copyright"
        ));
        assert!(glob_match("/usr/share/doc/**", "/usr/share/doc"));
        assert!(glob_match(
            "**/__pycache__/**",
            "/usr/lib/python3.11/__pycache__/os.cpython-311.pyc"
        ));
        assert!(glob_match(
            "/usr/lib/*/gconv/*.so",
            "/usr/lib/x86_64-linux-gnu/gconv/BIG5.so"
        ));
        assert!(!glob_match(
            "/usr/lib/*/gconv/*.so",
            "/usr/lib/x86_64-linux-gnu/gconv/sub/BIG5.so"
        ));
        assert!(glob_match("/usr/bin/python3.1?", "/usr/bin/python3.11"));
        assert!(!glob_match("/usr/share/man/**", "/usr/share/manual"));
        let keep = vec!["/usr/share/locale/C.UTF-8/**".to_owned()];
        assert!(excluded(
            "/usr/share/locale/de/LC_MESSAGES/x.mo",
            &[],
            &keep,
            true
        ));
        assert!(!excluded(
            "/usr/share/locale/C.UTF-8/LC_CTYPE",
            &[],
            &keep,
            true
        ));
        assert!(!excluded("/usr/share/doc/x/README", &[], &[], false));
        assert!(excluded("/usr/share/doc/x/README", &[], &[], true));
        assert!(!excluded("/usr/share/doc/x/copyright", &[], &[], true));
    }

    #[test]
    fn dep5_licences() {
        let c = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nLicense: Zlib\n\nFiles: contrib/*\nLicense: GPL-2+ or LGPL-2.1+\n\nLicense: Zlib\n text\n";
        assert_eq!(
            licences(c).as_deref(),
            Some("Zlib AND (GPL-2.0-or-later OR LGPL-2.1-or-later)")
        );
        assert_eq!(spdx("public-domain"), "LicenseRef-public-domain");
        // Each licence once, however many paragraphs name it, alone or in a conjunction.
        let c =
            "Format: x\n\nLicense: MIT\n\nLicense: OpenSSL and SSLeay\n\nLicense: SSLeay and MIT\n";
        assert_eq!(
            licences(c).as_deref(),
            Some("MIT AND OpenSSL AND LicenseRef-SSLeay")
        );
        assert_eq!(
            licences("This package was debianized by ...").as_deref(),
            None
        );
    }
}
