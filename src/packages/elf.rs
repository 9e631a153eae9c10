//! The shared-library closure of the runtime: what the dynamic loader will open when the
//! runtime starts, computed from the image tree alone (`PT_INTERP`, `DT_NEEDED`,
//! `DT_RUNPATH`/`DT_RPATH` with `$ORIGIN`, then the default directories). Scripts lead to their
//! `#!` interpreter. The closure is what the init preloads; a missing library is a build error.

use goblin::elf::Elf;

use crate::arch::Arch;
use crate::rootfs::{ImagePath, Kind, Tree};

/// Why a closure could not be computed; each names who needs what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    #[error("{wanted} (needed by {needer}) is not a file in the image")]
    NotAFile { wanted: ImagePath, needer: String },
    #[error("{path}: bad interpreter {interp:?}: {why}")]
    BadInterpreter {
        path: ImagePath,
        interp: String,
        why: String,
    },
    #[error("{path}: not a valid ELF file: {why}")]
    NotElf { path: ImagePath, why: String },
    #[error("{path}: bad PT_INTERP {interp:?}: {why}")]
    BadPtInterp {
        path: ImagePath,
        interp: String,
        why: String,
    },
    #[error("{path} is an ELF file for another machine (e_machine {machine}, {name}); an {arch} image cannot run it: take the {arch} build of the package or file that ships it")]
    WrongMachine {
        path: ImagePath,
        machine: u16,
        name: &'static str,
        arch: Arch,
    },
    #[error("{path} needs the shared library {lib}, which is not in the image (searched {searched}); add the package that ships it")]
    MissingLibrary {
        path: ImagePath,
        lib: String,
        searched: String,
    },
}

/// Where glibc's loader looks after RUNPATH (its built-in system directories, Debian's
/// multiarch ones first).
fn default_dirs(arch: Arch) -> Vec<String> {
    let mut dirs = arch.library_dirs().to_vec();
    dirs.extend(["/lib", "/usr/lib", "/lib64", "/usr/lib64"].map(String::from));
    dirs
}

/// Follows symlinks and hard links inside the tree; `None` if it does not end at a file.
pub fn resolve_file(tree: &Tree, path: &ImagePath) -> Option<ImagePath> {
    let mut p = path.clone();
    for _ in 0..40 {
        match tree.get(&p).map(|e| &e.kind) {
            Some(Kind::Symlink(t)) => p = ImagePath::resolve_link_target(&p, t),
            Some(Kind::Hardlink(t)) => p = t.clone(),
            Some(Kind::File(_)) => return Some(p),
            _ => return None,
        }
    }
    None
}

fn data<'a>(tree: &'a Tree, p: &ImagePath) -> Option<&'a [u8]> {
    match tree.get(p).map(|e| &e.kind) {
        Some(Kind::File(d)) => Some(d),
        _ => None,
    }
}

/// The closure of `roots` in load order: each root (resolved), its interpreter, its libraries,
/// as the loader of an `arch` image finds them. Non-ELF, non-script roots are returned as they
/// are. Errors name who needs what.
pub fn closure(tree: &Tree, roots: &[ImagePath], arch: Arch) -> Result<Vec<ImagePath>, ElfError> {
    let mut out: Vec<ImagePath> = Vec::new();
    let mut queue: Vec<(ImagePath, String)> = roots
        .iter()
        .map(|r| (r.clone(), "the profile".to_owned()))
        .collect();
    queue.reverse();
    while let Some((wanted, needer)) = queue.pop() {
        let Some(p) = resolve_file(tree, &wanted) else {
            return Err(ElfError::NotAFile { wanted, needer });
        };
        if out.contains(&p) {
            continue;
        }
        out.push(p.clone());
        let bytes = data(tree, &p).unwrap_or_default();
        let next = if bytes.starts_with(b"#!") {
            script_needs(&p, bytes)?
        } else if bytes.starts_with(b"\x7fELF") {
            elf_needs(tree, &p, bytes, arch)?
        } else {
            Vec::new()
        };
        // Depth first, in the order needed.
        queue.extend(next.into_iter().rev());
    }
    Ok(out)
}

/// A script's `#!` interpreter.
fn script_needs(p: &ImagePath, bytes: &[u8]) -> Result<Vec<(ImagePath, String)>, ElfError> {
    let rest = &bytes[2..];
    let line = rest.split(|b| *b == b'\n').next().unwrap_or_default();
    let interp = String::from_utf8_lossy(line);
    let Some(i) = interp.split_whitespace().next() else {
        return Ok(Vec::new());
    };
    let ip = ImagePath::parse(i).map_err(|e| ElfError::BadInterpreter {
        path: p.clone(),
        interp: i.to_owned(),
        why: e.to_string(),
    })?;
    Ok(vec![(ip, p.to_string())])
}

/// An ELF file's `PT_INTERP`, then each `DT_NEEDED` library where the loader would find it.
fn elf_needs(
    tree: &Tree,
    p: &ImagePath,
    bytes: &[u8],
    arch: Arch,
) -> Result<Vec<(ImagePath, String)>, ElfError> {
    let elf = Elf::parse(bytes).map_err(|e| ElfError::NotElf {
        path: p.clone(),
        why: e.to_string(),
    })?;
    if elf.header.e_machine != arch.elf_machine() {
        return Err(ElfError::WrongMachine {
            path: p.clone(),
            machine: elf.header.e_machine,
            name: machine_name(elf.header.e_machine),
            arch,
        });
    }
    let mut next: Vec<(ImagePath, String)> = Vec::new();
    if let Some(interp) = elf.interpreter {
        let ip = ImagePath::parse(interp).map_err(|e| ElfError::BadPtInterp {
            path: p.clone(),
            interp: interp.to_owned(),
            why: e.to_string(),
        })?;
        next.push((ip, p.to_string()));
    }
    let dirs = search_path(&elf, p, arch);
    for lib in &elf.libraries {
        let found = if lib.contains('/') {
            ImagePath::parse(lib)
                .ok()
                .filter(|c| resolve_file(tree, c).is_some())
        } else {
            dirs.iter()
                .filter_map(|d| {
                    ImagePath::parse(&format!("{}/{lib}", d.trim_end_matches('/'))).ok()
                })
                .find(|c| resolve_file(tree, c).is_some())
        };
        let Some(f) = found else {
            return Err(ElfError::MissingLibrary {
                path: p.clone(),
                lib: lib.to_string(),
                searched: dirs.join(", "),
            });
        };
        next.push((f, p.to_string()));
    }
    Ok(next)
}

/// How messages name an ELF machine: the architecture's word when StratOS builds for it,
/// else goblin's name of the `EM_*` constant.
fn machine_name(machine: u16) -> &'static str {
    Arch::ALL
        .iter()
        .find(|a| a.elf_machine() == machine)
        .map_or_else(
            || goblin::elf::header::machine_to_str(machine),
            |a| a.human(),
        )
}

/// Where the loader looks for a library `p` needs: `DT_RPATH` (only when there is no
/// `DT_RUNPATH`), `DT_RUNPATH`, both with `$ORIGIN` expanded, then the default directories.
fn search_path(elf: &Elf, p: &ImagePath, arch: Arch) -> Vec<String> {
    let origin = p.parent().map_or_else(|| "/".to_owned(), |d| d.to_string());
    let expand = |s: &str| -> Vec<String> {
        s.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| d.replace("${ORIGIN}", &origin).replace("$ORIGIN", &origin))
            .collect()
    };
    let runpath: Vec<String> = elf.runpaths.iter().flat_map(|r| expand(r)).collect();
    let mut dirs: Vec<String> = if runpath.is_empty() {
        elf.rpaths.iter().flat_map(|r| expand(r)).collect()
    } else {
        Vec::new()
    };
    dirs.extend(runpath);
    dirs.extend(default_dirs(arch));
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::{Entry, Origin};

    fn host(tree: &mut Tree, host_path: &str, at: &str) {
        let data = std::fs::read(host_path).unwrap();
        tree.insert(
            &ImagePath::parse(at).unwrap(),
            Entry::file(data, 0o755, &Origin::new("t")),
        )
        .unwrap();
    }

    /// The host's /bin/ls, its loader and libraries, added one by one as the closure asks.
    #[test]
    fn closure_of_a_real_binary_names_each_missing_library() {
        let mut tree = Tree::new();
        host(&mut tree, "/bin/ls", "/usr/bin/ls");
        tree.insert(
            &ImagePath::parse("/bin/ls-link").unwrap(),
            Entry::symlink("../usr/bin/ls", &Origin::new("t")),
        )
        .unwrap();
        let root = [ImagePath::parse("/bin/ls-link").unwrap()];
        let mut asked = Vec::new();
        let files = loop {
            match closure(&tree, &root, Arch::X86_64) {
                Ok(f) => break f,
                Err(e) => {
                    asked.push(e.to_string());
                    assert!(asked.len() < 20, "{asked:?}");
                    let missing = match e {
                        ElfError::MissingLibrary { lib, .. } => {
                            format!("/lib/x86_64-linux-gnu/{lib}")
                        }
                        // The loader.
                        ElfError::NotAFile { wanted, .. } => wanted.to_string(),
                        other => panic!("{other}"),
                    };
                    let real = std::fs::canonicalize(&missing).unwrap();
                    host(&mut tree, real.to_str().unwrap(), &missing);
                }
            }
        };
        assert!(
            asked
                .iter()
                .any(|e| e.starts_with("/usr/bin/ls needs the shared library libc.so.6")),
            "{asked:?}"
        );
        assert_eq!(files[0].as_str(), "/usr/bin/ls");
        assert!(files
            .iter()
            .any(|f| f.as_str() == "/lib/x86_64-linux-gnu/libc.so.6"));
        assert!(files.iter().any(|f| f.as_str().contains("ld-linux-x86-64")));
    }

    /// Real aarch64 ELF files: the arm64 glibc of the cross toolchain (libc6-arm64-cross,
    /// which `ci/setup` installs with libc6-dev-arm64-cross).
    const ARM64_GLIBC: &str = "/usr/aarch64-linux-gnu/lib";

    /// An arm64 library's closure is found where Debian's arm64 loader looks
    /// (`/lib/aarch64-linux-gnu`, its loader `/lib/ld-linux-aarch64.so.1`), and a file of the
    /// other architecture is refused in either image.
    #[test]
    fn closure_of_a_real_aarch64_library_uses_the_arm64_directories() {
        let arm64 = |f: &str| {
            let p = format!("{ARM64_GLIBC}/{f}");
            assert!(
                std::path::Path::new(&p).is_file(),
                "{p} is missing: install libc6-dev-arm64-cross (ci/setup does)"
            );
            p
        };
        let mut tree = Tree::new();
        host(
            &mut tree,
            &arm64("libm.so.6"),
            "/usr/lib/aarch64-linux-gnu/libm.so.6",
        );
        let root = [ImagePath::parse("/usr/lib/aarch64-linux-gnu/libm.so.6").unwrap()];
        assert_eq!(
            closure(&tree, &root, Arch::X86_64).unwrap_err().to_string(),
            "/usr/lib/aarch64-linux-gnu/libm.so.6 is an ELF file for another machine (e_machine 183, aarch64); an x86-64 image cannot run it: take the x86-64 build of the package or file that ships it"
        );
        assert_eq!(
            closure(&tree, &root, Arch::Aarch64).unwrap_err(),
            ElfError::MissingLibrary {
                path: root[0].clone(),
                lib: "libc.so.6".into(),
                searched: "/lib/aarch64-linux-gnu, /usr/lib/aarch64-linux-gnu, /lib, /usr/lib, /lib64, /usr/lib64".into(),
            }
        );
        host(
            &mut tree,
            &arm64("libc.so.6"),
            "/lib/aarch64-linux-gnu/libc.so.6",
        );
        assert!(
            closure(&tree, &root, Arch::Aarch64)
                .unwrap_err()
                .to_string()
                .starts_with("/usr/lib/aarch64-linux-gnu/libm.so.6 needs the shared library ld-linux-aarch64.so.1,"),
        );
        host(
            &mut tree,
            &arm64("ld-linux-aarch64.so.1"),
            "/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1",
        );
        // libc.so.6 is also an executable: its PT_INTERP is the loader's absolute path.
        assert_eq!(
            closure(&tree, &root, Arch::Aarch64).unwrap_err().to_string(),
            "/lib/ld-linux-aarch64.so.1 (needed by /lib/aarch64-linux-gnu/libc.so.6) is not a file in the image"
        );
        tree.insert(
            &ImagePath::parse("/lib/ld-linux-aarch64.so.1").unwrap(),
            Entry::symlink("aarch64-linux-gnu/ld-linux-aarch64.so.1", &Origin::new("t")),
        )
        .unwrap();
        let files = closure(&tree, &root, Arch::Aarch64).unwrap();
        assert_eq!(
            files.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            [
                "/usr/lib/aarch64-linux-gnu/libm.so.6",
                "/lib/aarch64-linux-gnu/libc.so.6",
                "/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1",
            ]
        );
        // The host's x86-64 executable in an arm64 image.
        host(&mut tree, "/bin/ls", "/usr/bin/ls");
        let e = closure(
            &tree,
            &[ImagePath::parse("/usr/bin/ls").unwrap()],
            Arch::Aarch64,
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                ElfError::WrongMachine {
                    machine: 62,
                    name: "x86-64",
                    arch: Arch::Aarch64,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn scripts_lead_to_their_interpreter() {
        let mut tree = Tree::new();
        let o = Origin::new("t");
        tree.insert(
            &ImagePath::parse("/srv/run.sh").unwrap(),
            Entry::file(b"#!/bin/sh -e\necho\n".to_vec(), 0o755, &o),
        )
        .unwrap();
        let e = closure(
            &tree,
            &[ImagePath::parse("/srv/run.sh").unwrap()],
            Arch::X86_64,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/bin/sh (needed by /srv/run.sh) is not a file in the image"
        );
        tree.insert(
            &ImagePath::parse("/bin/sh").unwrap(),
            Entry::file(b"not elf".to_vec(), 0o755, &o),
        )
        .unwrap();
        let f = closure(
            &tree,
            &[ImagePath::parse("/srv/run.sh").unwrap()],
            Arch::X86_64,
        )
        .unwrap();
        assert_eq!(
            f.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            ["/srv/run.sh", "/bin/sh"]
        );
    }
}
