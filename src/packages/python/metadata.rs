//! A wheel's metadata files: `RECORD` (CSV of paths, hashes and sizes), the RFC 822-style
//! `WHEEL` and `METADATA` headers, and the licence they declare.

use std::collections::BTreeMap;

use sha2::Digest;

use crate::packages::spdx::is_spdx_expression;

/// A `RECORD` row's hash: (algorithm, urlsafe-base64 digest, size).
pub(super) type RecordHash = (String, String, Option<u64>);

/// The `RECORD` file's rows: path → (algorithm, urlsafe-base64 digest, size), for rows with a
/// hash (RECORD itself and signatures have none).
pub(super) fn parse_record(text: &str) -> Result<BTreeMap<String, Option<RecordHash>>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields =
            csv_fields(line).ok_or_else(|| format!("RECORD line {}: malformed CSV", i + 1))?;
        let [path, hash, size] = fields.as_slice() else {
            return Err(format!("RECORD line {}: expected path,hash,size", i + 1));
        };
        let entry = if hash.is_empty() {
            None
        } else {
            let (algo, digest) = hash.split_once('=').ok_or_else(|| {
                format!("RECORD line {}: hash {hash:?} is not algo=digest", i + 1)
            })?;
            let size = if size.is_empty() {
                None
            } else {
                Some(
                    size.parse::<u64>()
                        .map_err(|_| format!("RECORD line {}: size {size:?}", i + 1))?,
                )
            };
            Some((algo.to_owned(), digest.to_owned(), size))
        };
        if out.insert(path.clone(), entry).is_some() {
            return Err(format!("RECORD lists {path:?} twice"));
        }
    }
    Ok(out)
}

/// One CSV line (RFC 4180 quoting).
fn csv_fields(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, '"') if at_start => {
                quoted = true;
                at_start = false;
            }
            (true, '"') => {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            }
            (false, ',') => {
                out.push(std::mem::take(&mut cur));
                at_start = true;
            }
            (_, c) => {
                cur.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        return None;
    }
    out.push(cur);
    Some(out)
}

pub(super) fn record_digest(algo: &str, data: &[u8]) -> Option<String> {
    use base64::Engine;
    let d: Vec<u8> = match algo {
        "sha256" => sha2::Sha256::digest(data).to_vec(),
        "sha384" => sha2::Sha384::digest(data).to_vec(),
        "sha512" => sha2::Sha512::digest(data).to_vec(),
        _ => return None,
    };
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d))
}

/// Headers of an RFC 822-style metadata file (up to the body), repeated keys kept in order.
pub(super) fn metadata_headers(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push('\n');
                last.1.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    out
}

/// The SPDX expression of a wheel's licence: `License-Expression`, else a `License` field that
/// is already one, else the licence classifiers that map to one.
pub fn license_of(metadata: &str) -> Option<String> {
    let h = metadata_headers(metadata);
    let get = |k: &str| h.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    if let Some(e) = get("license-expression").filter(|e| is_spdx_expression(e)) {
        return Some(e);
    }
    if let Some(l) = get("license").filter(|l| is_spdx_expression(l) && l.len() < 64) {
        return Some(l);
    }
    const CLASSIFIERS: &[(&str, &str)] = &[
        ("License :: OSI Approved :: MIT License", "MIT"),
        (
            "License :: OSI Approved :: Apache Software License",
            "Apache-2.0",
        ),
        ("License :: OSI Approved :: BSD License", "BSD-3-Clause"),
        ("License :: OSI Approved :: ISC License (ISCL)", "ISC"),
        (
            "License :: OSI Approved :: Python Software Foundation License",
            "PSF-2.0",
        ),
        (
            "License :: OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)",
            "MPL-2.0",
        ),
    ];
    let found: Vec<&str> = h
        .iter()
        .filter(|(k, _)| k == "classifier")
        .filter_map(|(_, v)| CLASSIFIERS.iter().find(|(c, _)| c == v).map(|(_, id)| *id))
        .collect();
    match found.as_slice() {
        [one] => Some((*one).to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_csv_and_licences() {
        let r =
            parse_record("a/b.py,sha256=abc,12\n\"we,ird.py\",sha256=x,\nx.dist-info/RECORD,,\n")
                .unwrap();
        assert_eq!(r["a/b.py"], Some(("sha256".into(), "abc".into(), Some(12))));
        assert!(r.contains_key("we,ird.py"));
        assert_eq!(r["x.dist-info/RECORD"], None);
        assert!(parse_record("a,b\n").is_err());
        assert!(parse_record("a,sha256=x,1\na,sha256=x,1\n").is_err());
        assert_eq!(
            license_of("Name: x\nLicense-Expression: MIT OR Apache-2.0\n"),
            Some("MIT OR Apache-2.0".into())
        );
        assert_eq!(
            license_of("Name: x\nLicense: BSD-3-Clause\n"),
            Some("BSD-3-Clause".into())
        );
        assert_eq!(license_of("License: Copyright 2001 someone, all rights\nClassifier: License :: OSI Approved :: MIT License\n"), Some("MIT".into()));
        assert_eq!(license_of("License: see file\n"), None);
        assert!(!is_spdx_expression("MIT OR"));
        assert!(is_spdx_expression("(MIT OR Apache-2.0) AND BSD-3-Clause"));
    }
}
