//! `[runtime.go]`: a Go function compiled ahead of time, at build time, into one static binary
//! put in the image (see `packages::go`).

use std::path::PathBuf;

use super::checks::{compiled_output, existing_dir, resolve};
use super::spanned::Spanned;
use super::{Ctx, ProfileError};
use crate::rootfs::ImagePath;

/// Debian 12's Go toolchain (`golang-go`).
pub const DEFAULT_TOOLCHAIN: &str = "/usr/lib/go-1.19";

/// Where modules missing from the cache are fetched from, unless the profile or `--go-proxy`
/// names another place.
pub const DEFAULT_PROXY: &str = "https://proxy.golang.org";

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawGo {
    /// The Go module to build: a directory holding go.mod (and go.sum when it has
    /// dependencies), relative to the profile.
    pub source: Spanned<String>,
    /// The package to build, relative to the module's directory (default ".").
    #[serde(default)]
    pub package: Option<Spanned<String>>,
    /// Where the binary goes in the image (the path `[init] argv` runs).
    pub output: Spanned<String>,
    /// The Go toolchain (its GOROOT) the build runs (default /usr/lib/go-1.19, Debian's
    /// golang-go).
    #[serde(default)]
    pub toolchain: Option<Spanned<String>>,
    /// Where pinned modules the cache lacks are fetched from: an https:// module proxy, a
    /// file:// URL or a directory (relative to the profile) laid out as one (default
    /// https://proxy.golang.org; `stratos build --go-proxy` overrides it).
    #[serde(default)]
    pub proxy: Option<Spanned<String>>,
}

/// `[runtime.go]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoSpec {
    /// The module's directory (holds go.mod).
    pub source: PathBuf,
    /// The package, relative to the module (`.` or `./cmd/fn`).
    pub package: String,
    pub output: ImagePath,
    /// The toolchain's GOROOT.
    pub toolchain: PathBuf,
    /// An https:// URL or a directory laid out as a module proxy.
    pub proxy: GoProxy,
}

/// Where pinned modules come from when the cache lacks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoProxy {
    Https(String),
    Dir(PathBuf),
}

impl GoProxy {
    /// `https://…`, `file:///abs` or a path (relative to `dir`).
    pub fn parse(s: &str, dir: &std::path::Path) -> Result<GoProxy, String> {
        let s = s.trim_end_matches('/');
        if let Some(rest) = s.strip_prefix("file://") {
            if !rest.starts_with('/') || rest.trim_matches('/').is_empty() {
                return Err(format!(
                    "{s:?}: a file:// proxy needs an absolute path (file:///srv/goproxy)"
                ));
            }
            return Ok(GoProxy::Dir(PathBuf::from(rest)));
        }
        if let Some(host) = s.strip_prefix("https://") {
            if host.is_empty() || host.starts_with('/') {
                return Err(format!("{s:?}: an https:// proxy needs a host"));
            }
            return Ok(GoProxy::Https(s.to_owned()));
        }
        if s.contains("://") || s.is_empty() {
            return Err(format!(
                "{s:?}: a module proxy is an https:// URL, a file:// URL or a directory"
            ));
        }
        Ok(GoProxy::Dir(resolve(dir, s)))
    }
}

impl std::fmt::Display for GoProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GoProxy::Https(u) => f.write_str(u),
            GoProxy::Dir(d) => write!(f, "{}", d.display()),
        }
    }
}

/// `[runtime.go]`.
pub(super) fn validate_go(
    cx: &Ctx,
    go: RawGo,
    dir: &std::path::Path,
    argv0: &str,
) -> Result<GoSpec, ProfileError> {
    let source = existing_dir(cx, dir, &go.source, "runtime.go.source")?;
    if !source.join("go.mod").is_file() {
        return Err(cx.at(
            go.source.span(),
            "runtime.go.source",
            format!(
                "{} has no go.mod: name the directory of a Go module (`go mod init example.com/fn` makes one)",
                source.display()
            ),
        ));
    }
    let package = match &go.package {
        None => ".".to_owned(),
        Some(p) => {
            let v = p.get_ref().trim_end_matches('/');
            let ok = (v == "." || v.starts_with("./"))
                && !v
                    .split('/')
                    .skip(1)
                    .any(|c| c.is_empty() || c == "." || c == "..")
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"./_-".contains(&b));
            if !ok {
                return Err(cx.at(
                    p.span(),
                    "runtime.go.package",
                    format!("{v:?}: name a package inside the module, as \".\" or \"./cmd/fn\""),
                ));
            }
            v.to_owned()
        }
    };
    let output = compiled_output(cx, &go.output, "runtime.go.output", argv0)?;
    let toolchain = match &go.toolchain {
        Some(t) => existing_dir(cx, dir, t, "runtime.go.toolchain")?,
        None => PathBuf::from(DEFAULT_TOOLCHAIN),
    };
    let proxy = match &go.proxy {
        Some(p) => {
            GoProxy::parse(p.get_ref(), dir).map_err(|m| cx.at(p.span(), "runtime.go.proxy", m))?
        }
        None => GoProxy::Https(DEFAULT_PROXY.to_owned()),
    };
    Ok(GoSpec {
        source,
        package,
        output,
        toolchain,
        proxy,
    })
}

#[cfg(test)]
mod tests {
    use crate::profile::tests::{Fixture, BASE};

    #[test]
    fn the_source_must_be_a_module_and_argv_must_run_the_binary() {
        let f = Fixture::new();
        let d = f.dir.path();
        std::fs::create_dir_all(d.join("fn")).unwrap();
        let text = BASE.replace(
            "\"/bin/busybox\", \"httpd\", \"-f\"",
            "\"/srv/fn/bootstrap\"",
        );
        let e = f.err(&format!(
            "{text}[runtime.go]\nsource = \"fn\"\noutput = \"/srv/fn/bootstrap\"\n"
        ));
        assert!(
            e.contains("runtime.go.source") && e.contains("no go.mod"),
            "{e}"
        );
        std::fs::write(d.join("fn/go.mod"), "module example.com/fn\n\ngo 1.19\n").unwrap();
        let e = f.err(&format!(
            "{text}[runtime.go]\nsource = \"fn\"\noutput = \"/srv/fn/other\"\n"
        ));
        assert!(e.contains("runtime.go.output") && e.contains("argv"), "{e}");
        let e = f.err(&format!(
            "{text}[runtime.go]\nsource = \"fn\"\noutput = \"/srv/fn/bootstrap\"\npackage = \"../x\"\n"
        ));
        assert!(e.contains("runtime.go.package"), "{e}");
        let e = f.err(&format!(
            "{text}[runtime.go]\nsource = \"fn\"\noutput = \"/srv/fn/bootstrap\"\nproxy = \"http://x\"\n"
        ));
        assert!(
            e.contains("runtime.go.proxy") && e.contains("https://"),
            "{e}"
        );
        let p = f
            .parse(&format!(
            "{text}[runtime.go]\nsource = \"fn\"\noutput = \"/srv/fn/bootstrap\"\nproxy = \"goproxy\"\n"
            ))
            .unwrap();
        let go = p.go.unwrap();
        assert_eq!(go.package, ".");
        assert_eq!(
            go.toolchain,
            std::path::PathBuf::from(super::DEFAULT_TOOLCHAIN)
        );
        assert_eq!(go.proxy, super::GoProxy::Dir(d.join("goproxy")));
    }
}
