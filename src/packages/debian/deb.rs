//! Reading `.deb` files (an `ar` archive holding `control.tar.*` and `data.tar.*`) and
//! extracting their data into a [`Tree`] under the overlay path-safety rules.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use crate::packages::unpack::Capped;
use crate::rootfs::{Entry, ImagePath, Kind, Origin, Tree};

#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("{pkg}: not a Debian package: {why}")]
    Format { pkg: String, why: String },
    #[error("{pkg}: refusing archive entry {entry:?}: {why}")]
    Hostile {
        pkg: String,
        entry: String,
        why: String,
    },
    #[error("{pkg}: {why}")]
    Tree { pkg: String, why: String },
    #[error("package {pkg}: {what} expands past the {} limit {why}; if the package is genuine, raise {key} in the profile", human(*limit))]
    TooLarge {
        pkg: String,
        what: String,
        limit: u64,
        why: &'static str,
        key: &'static str,
    },
}

fn human(n: u64) -> String {
    crate::progress::human_bytes(n)
}

/// The members of an `ar` archive (name → bytes), in order. Borrows from `bytes`: sizes are
/// checked against what is there before anything is sliced.
pub fn ar_members<'a>(bytes: &'a [u8], pkg: &str) -> Result<Vec<(String, &'a [u8])>, DebError> {
    let bad = |why: &str| DebError::Format {
        pkg: pkg.to_owned(),
        why: why.to_owned(),
    };
    let mut rest = bytes
        .strip_prefix(b"!<arch>\n")
        .ok_or_else(|| bad("no ar magic"))?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 60 {
            return Err(bad("truncated ar header"));
        }
        let (h, body) = rest.split_at(60);
        if &h[58..60] != b"`\n" {
            return Err(bad("bad ar header"));
        }
        let name = std::str::from_utf8(&h[..16])
            .map_err(|_| bad("bad ar name"))?
            .trim_end()
            .trim_end_matches('/')
            .to_owned();
        let size: usize = std::str::from_utf8(&h[48..58])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| bad("bad ar member size"))?;
        if body.len() < size {
            return Err(bad("truncated ar member"));
        }
        out.push((name, &body[..size]));
        let next = size.saturating_add(size & 1);
        rest = &body[next.min(body.len())..];
    }
    Ok(out)
}

/// A streaming decompressor for `data.tar.{xz,zst,gz}` / `control.tar.*`, by member name.
pub fn member_reader<'a>(
    name: &str,
    data: &'a [u8],
    pkg: &str,
) -> Result<Box<dyn Read + 'a>, DebError> {
    let fail = |e: std::io::Error| DebError::Format {
        pkg: pkg.to_owned(),
        why: format!("{name}: {e}"),
    };
    Ok(if name.ends_with(".xz") {
        Box::new(liblzma::read::XzDecoder::new(data))
    } else if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::with_buffer(data).map_err(fail)?)
    } else if name.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(data))
    } else if name.ends_with(".tar") {
        Box::new(data)
    } else {
        return Err(DebError::Format {
            pkg: pkg.to_owned(),
            why: format!("unsupported member compression: {name}"),
        });
    })
}

/// The (decompressing) reader of the member whose name starts with `prefix` (`data.tar`,
/// `control.tar`), and the member's name.
pub fn open_member<'a>(
    bytes: &'a [u8],
    prefix: &str,
    pkg: &str,
) -> Result<(String, Box<dyn Read + 'a>), DebError> {
    let members = ar_members(bytes, pkg)?;
    if members.first().map(|m| m.0.as_str()) != Some("debian-binary") {
        return Err(DebError::Format {
            pkg: pkg.to_owned(),
            why: "first member is not debian-binary".into(),
        });
    }
    let (name, data) = members
        .into_iter()
        .find(|(n, _)| n.starts_with(prefix))
        .ok_or_else(|| DebError::Format {
            pkg: pkg.to_owned(),
            why: format!("no {prefix}.* member"),
        })?;
    let r = member_reader(&name, data, pkg)?;
    Ok((name, r))
}

/// The largest control archive accepted (Debian's are a few KiB).
pub const MAX_CONTROL_TAR: u64 = 16 << 20;

/// Reads `./control` from the package's control archive.
pub fn control_text(bytes: &[u8], pkg: &str) -> Result<String, DebError> {
    let (name, r) = open_member(bytes, "control.tar", pkg)?;
    let mut ar = tar::Archive::new(Capped::new(r, MAX_CONTROL_TAR));
    let fail = |e: std::io::Error| match Capped::<&[u8]>::exceeded(&e) {
        Some(limit) => DebError::TooLarge {
            pkg: pkg.to_owned(),
            what: name.clone(),
            limit,
            why: "for a control archive",
            key: "nothing (a control archive is never this large)",
        },
        None => DebError::Format {
            pkg: pkg.to_owned(),
            why: e.to_string(),
        },
    };
    for entry in ar.entries().map_err(fail)? {
        let mut entry = entry.map_err(fail)?;
        let path = entry.path().map_err(fail)?.to_string_lossy().into_owned();
        if path.trim_start_matches("./") == "control" {
            let mut s = String::new();
            (&mut entry)
                .take(1 << 20)
                .read_to_string(&mut s)
                .map_err(fail)?;
            return Ok(s);
        }
    }
    Err(DebError::Format {
        pkg: pkg.to_owned(),
        why: "control archive has no control file".into(),
    })
}

pub use crate::rootfs::Budget;

/// What an extraction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// In-image paths of the regular files and links the package put in the tree.
    pub paths: Vec<ImagePath>,
    /// Bytes of file content.
    pub bytes: u64,
}

/// Extracts a `data.tar` into `tree`. Rejected, with the entry named: `..` components,
/// absolute names, a path through a symlink the same archive created, hard links to anything
/// but a file already extracted from this archive, duplicate entries, device nodes and FIFOs.
/// Nothing is written to the host: the tree is in memory.
pub fn extract_data_tar(
    data_tar: impl Read,
    tree: &mut Tree,
    origin: &Origin,
    pkg: &str,
    budget: Budget,
) -> Result<Extracted, DebError> {
    let limits = budget.limits;
    // The whole stream: the package's files plus the archive's own headers and padding.
    let stream_cap = limits
        .package
        .saturating_add(limits.package / 4)
        .saturating_add(64 << 20);
    let mut x = Extraction {
        pkg,
        origin,
        budget,
        seen: BTreeSet::new(),
        own_symlinks: BTreeSet::new(),
        own_files: BTreeMap::new(),
        out: Extracted::default(),
    };
    let mut ar = tar::Archive::new(Capped::new(data_tar, stream_cap));
    for entry in ar.entries().map_err(|e| x.fail(e))? {
        let mut entry = entry.map_err(|e| x.fail(e))?;
        let Some((name, path)) = x.entry_path(&entry)? else {
            continue;
        };
        let Some(e) = x.entry(tree, &mut entry, &name, &path)? else {
            continue;
        };
        x.insert(tree, &path, e)?;
    }
    Ok(x.out)
}

/// The state of one package's extraction.
struct Extraction<'a> {
    pkg: &'a str,
    origin: &'a Origin,
    budget: Budget,
    seen: BTreeSet<ImagePath>,
    /// Symlinks this archive created: nothing may be written through them.
    own_symlinks: BTreeSet<ImagePath>,
    /// Files this archive created (a hard link may only point at one), by their final path.
    own_files: BTreeMap<ImagePath, ImagePath>,
    out: Extracted,
}

impl Extraction<'_> {
    fn hostile(&self, entry: &str, why: &str) -> DebError {
        DebError::Hostile {
            pkg: self.pkg.to_owned(),
            entry: entry.to_owned(),
            why: why.to_owned(),
        }
    }

    fn too_large(
        &self,
        what: String,
        limit: u64,
        why: &'static str,
        key: &'static str,
    ) -> DebError {
        DebError::TooLarge {
            pkg: self.pkg.to_owned(),
            what,
            limit,
            why,
            key,
        }
    }

    /// A read error of the archive: past the stream's cap, or malformed.
    fn fail(&self, e: std::io::Error) -> DebError {
        match Capped::<&[u8]>::exceeded(&e) {
            Some(limit) => self.too_large(
                "data.tar".into(),
                limit,
                "for a package's archive",
                "[image] max-package-size",
            ),
            None => DebError::Format {
                pkg: self.pkg.to_owned(),
                why: format!("data.tar: {e}"),
            },
        }
    }

    /// The entry's name and in-image path; `None` for the archive's root (`./`). Refused:
    /// non-UTF-8 and absolute names, `..`, duplicates, paths through this archive's symlinks.
    fn entry_path<R: Read>(
        &mut self,
        entry: &tar::Entry<R>,
    ) -> Result<Option<(String, ImagePath)>, DebError> {
        let name = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| self.hostile("<non-UTF-8>", "file names must be UTF-8"))?;
        if name.starts_with('/') {
            return Err(self.hostile(&name, "absolute path"));
        }
        let trimmed = name.trim_start_matches("./");
        if trimmed.is_empty() || trimmed == "." {
            return Ok(None);
        }
        let path =
            ImagePath::parse_relative(trimmed).map_err(|e| self.hostile(&name, &e.to_string()))?;
        if !self.seen.insert(path.clone()) {
            return Err(self.hostile(&name, "duplicate entry"));
        }
        let mut anc = path.parent();
        while let Some(a) = anc {
            if self.own_symlinks.contains(&a) {
                return Err(self.hostile(
                    &name,
                    &format!("it would be written through the symlink {a} from the same archive"),
                ));
            }
            anc = a.parent();
        }
        Ok(Some((name, path)))
    }

    /// The tree entry for an archive entry; `None` to skip it (a directory where the tree has a
    /// symlink, as dpkg keeps `/bin -> usr/bin`).
    fn entry<R: Read>(
        &mut self,
        tree: &Tree,
        entry: &mut tar::Entry<R>,
        name: &str,
        path: &ImagePath,
    ) -> Result<Option<Entry>, DebError> {
        let h = entry.header();
        let declared = h.size().map_err(|e| self.fail(e))?;
        let mode = h.mode().map_err(|e| self.fail(e))? & 0o7777;
        let uid = u32::try_from(h.uid().map_err(|e| self.fail(e))?)
            .map_err(|_| self.hostile(name, "uid out of range"))?;
        let gid = u32::try_from(h.gid().map_err(|e| self.fail(e))?)
            .map_err(|_| self.hostile(name, "gid out of range"))?;
        let origin = self.origin;
        let e = match h.entry_type() {
            tar::EntryType::Directory => {
                if let Some(Kind::Symlink(_)) = tree.get(path).map(|e| &e.kind) {
                    return Ok(None);
                }
                Entry::dir(mode, origin)
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let data = self.file_data(entry, name, declared)?;
                Entry::file(data, mode, origin)
            }
            tar::EntryType::Symlink => {
                let target = self.link_target(entry, name, "symlink")?;
                if target.is_empty() || target.contains('\0') {
                    return Err(self.hostile(name, "empty symlink target"));
                }
                self.own_symlinks.insert(path.clone());
                Entry::symlink(target, origin)
            }
            tar::EntryType::Link => {
                let target = self.link_target(entry, name, "hard link")?;
                if target.starts_with('/') {
                    return Err(self.hostile(name, "hard link to an absolute path"));
                }
                let t = ImagePath::parse_relative(target.trim_start_matches("./"))
                    .map_err(|e| self.hostile(name, &format!("hard link target: {e}")))?;
                let actual = self.own_files.get(&t).ok_or_else(|| {
                    self.hostile(
                        name,
                        &format!("hard link to {t}, which is not a file from this archive"),
                    )
                })?;
                Entry::new(Kind::Hardlink(actual.clone()), mode, origin)
            }
            _ => {
                return Err(self.hostile(
                    name,
                    "device nodes, FIFOs and other special files are not allowed in packages",
                ))
            }
        };
        Ok(Some(e.owned_by(uid, gid)))
    }

    /// A member's bytes. The header's size is not trusted: at most what every limit still
    /// allows is read, and a size the archive does not hold is refused.
    fn file_data<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        name: &str,
        declared: u64,
    ) -> Result<Vec<u8>, DebError> {
        let limits = self.budget.limits;
        let left_pkg = limits.package.saturating_sub(self.out.bytes);
        let left_image = limits
            .image
            .saturating_sub(self.budget.image_used.saturating_add(self.out.bytes));
        let (cap, limit, why, key) = [
            (
                limits.file,
                limits.file,
                "for one file",
                "[image] max-file-size",
            ),
            (
                left_pkg,
                limits.package,
                "for one package",
                "[image] max-package-size",
            ),
            (
                left_image,
                limits.image,
                "for the whole image",
                "[image] max-image-size",
            ),
        ]
        .into_iter()
        .min_by_key(|c| c.0)
        .expect("three limits");
        let mut data = Vec::new();
        entry
            .take(cap.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| self.fail(e))?;
        if data.len() as u64 > cap {
            return Err(self.too_large(format!("member {name:?}"), limit, why, key));
        }
        if declared != data.len() as u64 {
            return Err(self.hostile(
                name,
                &format!(
                    "its header declares {declared} bytes but the archive holds {}",
                    data.len()
                ),
            ));
        }
        self.out.bytes += data.len() as u64;
        Ok(data)
    }

    fn link_target<R: Read>(
        &self,
        entry: &tar::Entry<R>,
        name: &str,
        what: &str,
    ) -> Result<String, DebError> {
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| self.hostile(name, &format!("{what} without a target")))?;
        String::from_utf8(target.into_owned())
            .map_err(|_| self.hostile(name, &format!("{what} target is not UTF-8")))
    }

    fn insert(&mut self, tree: &mut Tree, path: &ImagePath, e: Entry) -> Result<(), DebError> {
        let is_file = matches!(e.kind, Kind::File(_));
        let is_dir = matches!(e.kind, Kind::Dir);
        let at = tree.insert(path, e).map_err(|e| DebError::Tree {
            pkg: self.pkg.to_owned(),
            why: e.to_string(),
        })?;
        if is_file {
            self.own_files.insert(path.clone(), at.clone());
        }
        if !is_dir {
            self.out.paths.push(at);
        }
        Ok(())
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Builds a .deb in memory from tar entries (for hostile fixtures).
    pub fn make_deb(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, ty, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*ty);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_size(data.len() as u64);
            // Write raw names so hostile paths survive (the tar crate refuses `..` in set_path).
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        let data_tar = b.into_inner().unwrap();
        let mut deb = b"!<arch>\n".to_vec();
        for (name, body) in [("debian-binary", b"2.0\n".to_vec()), ("data.tar", data_tar)] {
            deb.extend_from_slice(
                format!(
                    "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                    name,
                    0,
                    0,
                    0,
                    100644,
                    body.len()
                )
                .as_bytes(),
            );
            deb.extend_from_slice(&body);
            if body.len() % 2 == 1 {
                deb.push(b'\n');
            }
        }
        deb
    }

    pub fn budget() -> Budget {
        Budget {
            limits: crate::rootfs::ExpandLimits::default(),
            image_used: 0,
        }
    }

    fn extract(deb: &[u8]) -> (Tree, Result<Extracted, DebError>) {
        let mut t = Tree::new();
        let (_, tar) = open_member(deb, "data.tar", "evil").unwrap();
        let r = extract_data_tar(tar, &mut t, &Origin::new("pkg"), "evil", budget());
        (t, r)
    }

    use tar::EntryType as T;

    #[test]
    fn extracts_a_normal_package() {
        let deb = make_deb(&[
            ("./", T::Directory, b"", None),
            ("./bin/", T::Directory, b"", None),
            ("./bin/busybox", T::Regular, b"ELF", None),
            ("./bin/sh", T::Symlink, b"", Some("busybox")),
            ("./bin/ash", T::Link, b"", Some("./bin/busybox")),
        ]);
        let (t, r) = extract(&deb);
        let r = r.unwrap();
        assert_eq!(r.bytes, 3);
        assert_eq!(r.paths.len(), 3);
        let p = ImagePath::parse("/bin/ash").unwrap();
        assert_eq!(
            t.get(&p).unwrap().kind,
            Kind::Hardlink(ImagePath::parse("/bin/busybox").unwrap())
        );
    }

    #[test]
    fn hostile_dotdot() {
        let deb = make_deb(&[("./../../etc/passwd", T::Regular, b"x", None)]);
        let e = extract(&deb).1.unwrap_err().to_string();
        assert!(e.contains("'..'"), "{e}");
    }

    #[test]
    fn hostile_absolute_symlink_then_write_through_it() {
        let deb = make_deb(&[
            ("./evil", T::Symlink, b"", Some("/etc")),
            ("./evil/passwd", T::Regular, b"root::0:0::/:/bin/sh", None),
        ]);
        let (t, r) = extract(&deb);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("through the symlink /evil"), "{e}");
        assert!(t.get(&ImagePath::parse("/etc/passwd").unwrap()).is_none());
    }

    #[test]
    fn hostile_hardlink_outside() {
        for target in ["../../etc/shadow", "/etc/shadow", "./not/extracted"] {
            let deb = make_deb(&[("./x", T::Link, b"", Some(target))]);
            assert!(extract(&deb).1.is_err(), "{target}");
        }
    }

    #[test]
    fn hostile_duplicate_entry() {
        let deb = make_deb(&[
            ("./a", T::Regular, b"1", None),
            ("./a", T::Regular, b"2", None),
        ]);
        let e = extract(&deb).1.unwrap_err().to_string();
        assert!(e.contains("duplicate"), "{e}");
    }

    #[test]
    fn hostile_device_node() {
        let deb = make_deb(&[("./dev/sda", T::Block, b"", None)]);
        assert!(extract(&deb)
            .1
            .unwrap_err()
            .to_string()
            .contains("device nodes"));
    }

    #[test]
    fn keeps_existing_directory_symlinks() {
        let mut t = Tree::new();
        let o = Origin::new("base");
        t.insert(
            &ImagePath::parse("/usr/bin").unwrap(),
            Entry::dir(0o755, &o),
        )
        .unwrap();
        t.insert(
            &ImagePath::parse("/bin").unwrap(),
            Entry::symlink("usr/bin", &o),
        )
        .unwrap();
        let deb = make_deb(&[
            ("./bin/", T::Directory, b"", None),
            ("./bin/busybox", T::Regular, b"x", None),
        ]);
        let (_, tar) = open_member(&deb, "data.tar", "p").unwrap();
        let r = extract_data_tar(tar, &mut t, &Origin::new("p"), "p", budget()).unwrap();
        assert_eq!(r.paths[0].as_str(), "/usr/bin/busybox");
    }

    #[test]
    fn garbage_is_not_a_package() {
        assert!(open_member(b"garbage", "data.tar", "p").is_err());
        assert!(open_member(b"!<arch>\nshort", "data.tar", "p").is_err());
    }
}
