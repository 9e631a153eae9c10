//! `--docker-archive FILE`: the image as `docker save` writes it (`manifest.json`, the config,
//! the uncompressed layer, `repositories`), for `docker load` / `podman load` where an OCI
//! layout is not taken. A deterministic tar: fixed order, times and owners.

use std::path::Path;

use serde::Serialize;

use super::export::{ExportError, Tag};

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Entry<'a> {
    config: &'a str,
    repo_tags: Vec<String>,
    layers: Vec<&'a str>,
}

/// Writes the archive to `path` (atomically); returns its size. An existing file is replaced
/// only if it is a docker archive (its first member is `manifest.json`).
pub(super) fn archive(
    path: &Path,
    tag: &Tag,
    config: &[u8],
    layer_tar: &[u8],
) -> Result<Vec<u8>, ExportError> {
    check_replaceable(path)?;
    let config_name = format!("{}.json", crate::sign::sha256_hex(config));
    let layer_hex = crate::sign::sha256_hex(layer_tar);
    let layer_name = format!("{layer_hex}/layer.tar");
    let repo_tag = format!("{}:{}", tag.name, tag.tag);
    let manifest = serde_json::to_vec(&[Entry {
        config: &config_name,
        repo_tags: vec![repo_tag],
        layers: vec![&layer_name],
    }])
    .expect("plain data");
    let repositories = serde_json::to_vec(&serde_json::json!({
        &tag.name: { &tag.tag: &layer_hex }
    }))
    .expect("plain data");
    let io = |source| ExportError::Io {
        path: path.to_owned(),
        source,
    };
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    let mut dir = tar::Header::new_ustar();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_mtime(0);
    for (name, data) in [
        ("manifest.json", manifest.as_slice()),
        ("repositories", repositories.as_slice()),
        (config_name.as_str(), config),
    ] {
        append(&mut b, name, data).map_err(io)?;
    }
    b.append_data(&mut dir, format!("{layer_hex}/"), std::io::empty())
        .map_err(io)?;
    append(&mut b, &layer_name, layer_tar).map_err(io)?;
    b.into_inner().map_err(io)
}

fn append(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) -> std::io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, name, data)
}

fn check_replaceable(path: &Path) -> Result<(), ExportError> {
    use std::io::Read;
    let refuse = |why: String| ExportError::NotOurs {
        path: path.to_owned(),
        why,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ExportError::Io {
                path: path.to_owned(),
                source,
            })
        }
        Ok(m) => m,
    };
    if !meta.is_file() {
        return Err(refuse(format!(
            "it is {}, not a docker archive",
            crate::fsio::kind_name(meta.file_type())
        )));
    }
    let mut head = [0u8; 512];
    let ours = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head.starts_with(b"manifest.json\0");
    if ours {
        Ok(())
    } else {
        Err(refuse(
            "it is not a docker archive `stratos export` wrote".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`archive`], written where export writes it once the layout is in place.
    fn write(path: &Path, tag: &Tag, config: &[u8], layer: &[u8]) -> Result<(), ExportError> {
        let bytes = archive(path, tag, config, layer)?;
        crate::fsio::write_atomic(path, &bytes, 0o644).unwrap();
        Ok(())
    }

    #[test]
    fn an_archive_is_deterministic_and_only_its_own_kind_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let tag = Tag {
            name: "fn".into(),
            tag: "1.0".into(),
        };
        let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
        write(&a, &tag, b"{}", b"layer").unwrap();
        write(&b, &tag, b"{}", b"layer").unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        // Its own: replaced. Anything else: refused, untouched.
        write(&a, &tag, b"{}", b"layer 2").unwrap();
        let mine = dir.path().join("notes.tar");
        std::fs::write(&mine, b"not an archive").unwrap();
        let e = write(&mine, &tag, b"{}", b"layer").unwrap_err().to_string();
        assert!(e.contains("not a docker archive"), "{e}");
        assert_eq!(std::fs::read(&mine).unwrap(), b"not an archive");
        let listed: Vec<String> = tar::Archive::new(std::fs::File::open(&a).unwrap())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(listed[0], "manifest.json");
        assert!(
            listed.iter().any(|p| p.ends_with("/layer.tar")),
            "{listed:?}"
        );
    }
}
