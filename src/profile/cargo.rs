//! `[runtime.cargo]`: a Rust function compiled ahead of time, at build time, from its Cargo
//! project into one static binary put in the image (see `packages::cargo`).

use std::path::PathBuf;

use super::checks::{compiled_output, existing_dir};
use super::spanned::Spanned;
use super::{Ctx, ProfileError};
use crate::rootfs::ImagePath;

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawCargo {
    /// The Cargo project to build: a directory holding Cargo.toml and Cargo.lock (the lock pins
    /// every crate, by sha256), relative to the profile.
    pub source: Spanned<String>,
    /// The binary target to build (`cargo build --bin`; default: the project's only binary).
    #[serde(default)]
    pub bin: Option<Spanned<String>>,
    /// Where the binary goes in the image (the path `[init] argv` runs).
    pub output: Spanned<String>,
    /// The Rust toolchain the build runs: a directory holding bin/cargo and bin/rustc, with the
    /// standard library of the image's target (default: the sysroot of the `rustc` on PATH,
    /// `rustc --print sysroot`).
    #[serde(default)]
    pub toolchain: Option<Spanned<String>>,
}

/// `[runtime.cargo]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CargoSpec {
    /// The project's directory (holds Cargo.toml and Cargo.lock).
    pub source: PathBuf,
    /// `--bin NAME`, when the profile names one.
    pub bin: Option<String>,
    pub output: ImagePath,
    /// The toolchain's sysroot; `None`: the host `rustc`'s, found when the build runs.
    pub toolchain: Option<PathBuf>,
}

/// A Cargo target name: what `cargo build --bin` takes.
fn is_bin_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `[runtime.cargo]`.
pub(super) fn validate_cargo(
    cx: &Ctx,
    c: RawCargo,
    dir: &std::path::Path,
    argv0: &str,
) -> Result<CargoSpec, ProfileError> {
    let source = existing_dir(cx, dir, &c.source, "runtime.cargo.source")?;
    for (file, how) in [
        ("Cargo.toml", "`cargo new --bin fn` makes one"),
        ("Cargo.lock", "run `cargo generate-lockfile` (or any cargo build) where crates.io can be reached, and commit it"),
    ] {
        if !source.join(file).is_file() {
            return Err(cx.at(
                c.source.span(),
                "runtime.cargo.source",
                format!(
                    "{} has no {file}: name the directory of a Cargo project with its lock ({how})",
                    source.display()
                ),
            ));
        }
    }
    let bin = match &c.bin {
        Some(b) if !is_bin_name(b.get_ref()) => {
            return Err(cx.at(
                b.span(),
                "runtime.cargo.bin",
                format!(
                    "{:?}: name a binary target of the project (letters, digits, - and _)",
                    b.get_ref()
                ),
            ))
        }
        b => b.as_ref().map(|b| b.get_ref().clone()),
    };
    let output = compiled_output(cx, &c.output, "runtime.cargo.output", argv0)?;
    let toolchain = c
        .toolchain
        .as_ref()
        .map(|t| existing_dir(cx, dir, t, "runtime.cargo.toolchain"))
        .transpose()?;
    Ok(CargoSpec {
        source,
        bin,
        output,
        toolchain,
    })
}

#[cfg(test)]
mod tests {
    use crate::profile::tests::{Fixture, BASE};

    #[test]
    fn the_source_must_be_a_locked_project_and_argv_must_run_the_binary() {
        let f = Fixture::new();
        let d = f.dir.path();
        std::fs::create_dir_all(d.join("fn")).unwrap();
        let text = BASE.replace(
            "\"/bin/busybox\", \"httpd\", \"-f\"",
            "\"/srv/fn/bootstrap\"",
        );
        let cargo = |extra: &str| {
            format!(
                "{text}[runtime.cargo]\nsource = \"fn\"\noutput = \"/srv/fn/bootstrap\"\n{extra}"
            )
        };
        let e = f.err(&cargo(""));
        assert!(
            e.contains("runtime.cargo.source") && e.contains("no Cargo.toml"),
            "{e}"
        );
        std::fs::write(d.join("fn/Cargo.toml"), "[package]\nname = \"f\"\n").unwrap();
        let e = f.err(&cargo(""));
        assert!(e.contains("no Cargo.lock"), "{e}");
        std::fs::write(d.join("fn/Cargo.lock"), "version = 4\n").unwrap();
        let e = f.err(&cargo("bin = \"../x\"\n"));
        assert!(e.contains("runtime.cargo.bin"), "{e}");
        let e = f.err(&cargo("toolchain = \"nowhere\"\n"));
        assert!(e.contains("runtime.cargo.toolchain"), "{e}");
        let e = f.err(&format!(
            "{text}[runtime.cargo]\nsource = \"fn\"\noutput = \"/srv/fn/other\"\n"
        ));
        assert!(
            e.contains("runtime.cargo.output") && e.contains("argv"),
            "{e}"
        );
        let e = f.err(&format!(
            "{}[runtime.go]\nsource = \"fn\"\noutput = \"/srv/fn/bootstrap\"\n",
            cargo("")
        ));
        assert!(e.contains("one compiled function"), "{e}");
        let p = f.parse(&cargo("bin = \"bootstrap\"\n")).unwrap();
        let c = p.cargo.unwrap();
        assert_eq!(c.bin.as_deref(), Some("bootstrap"));
        assert_eq!(c.source, d.join("fn"));
        assert_eq!(c.toolchain, None);
    }
}
