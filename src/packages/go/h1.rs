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
            // dirhash.HashZip hashes every entry; a directory's content is empty.
            files.push((m.name.clone(), Sha256::digest(b"").into()));
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

    fn repo(rel: &str) -> Vec<u8> {
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
    }

    /// The hashes Go 1.19.8 itself wrote into functions/go-api/go.sum (`go mod tidy` against
    /// functions/go-proxy): the go.mod's and the zip's.
    #[test]
    fn hashes_match_what_go_wrote_in_go_sum() {
        let sum = String::from_utf8(repo("functions/go-api/go.sum")).unwrap();
        let want = |suffix: &str| {
            sum.lines()
                .find(|l| l.starts_with(&format!("example.com/greet v1.0.0{suffix} ")))
                .and_then(|l| l.split_whitespace().nth(2))
                .unwrap()
                .to_owned()
        };
        let at = "functions/go-proxy/example.com/greet/@v/v1.0.0";
        assert_eq!(
            display(&of_go_mod(&repo(&format!("{at}.mod")))),
            want("/go.mod")
        );
        let zip = repo(&format!("{at}.zip"));
        assert_eq!(
            display(&of_zip(&zip, "example.com/greet@v1.0.0/").unwrap()),
            want("")
        );
    }

    #[test]
    fn a_zip_member_outside_its_module_is_refused() {
        let zip = repo("functions/go-proxy/example.com/greet/@v/v1.0.0.zip");
        let e = of_zip(&zip, "example.com/other@v1.0.0/").unwrap_err();
        assert!(e.contains("outside example.com/other@v1.0.0/"), "{e}");
        let e = of_zip(b"not a zip", "m@v1.0.0/").unwrap_err();
        assert!(e.contains("ZIP"), "{e}");
    }
}
