//! `[runtime.python]`: build steps for a Python runtime (bytecode compiled at build time).

use super::spanned::Spanned;

use super::checks::image_path;
use super::{Ctx, ProfileError};
use crate::rootfs::ImagePath;

/// `[runtime.*]`: build steps for the language runtime in the image.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawRuntime {
    #[serde(default)]
    pub python: Option<RawPython>,
    /// A Go function compiled at build time into one static binary.
    #[serde(default)]
    pub go: Option<super::go::RawGo>,
    /// A Rust function compiled at build time, from its Cargo project, into one static binary.
    #[serde(default)]
    pub cargo: Option<super::cargo::RawCargo>,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawPython {
    /// The interpreter (default: the runtime, when it is a `python*`).
    #[serde(default)]
    pub interpreter: Option<Spanned<String>>,
    /// Compile every `.py` to `__pycache__/*.pyc` at build time.
    #[serde(default)]
    pub bytecode: Option<bool>,
}

/// `[runtime.python]`: what the builder does for a Python runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonSpec {
    /// The image's interpreter, run on the build host through the image's loader.
    pub interpreter: ImagePath,
    /// Compile every `.py` of the image to bytecode at build time.
    pub bytecode: bool,
}

/// `[runtime.python]`.
pub(super) fn validate_python(
    cx: &Ctx,
    py: RawPython,
    runtime: &str,
) -> Result<PythonSpec, ProfileError> {
    let interpreter = match &py.interpreter {
        Some(i) => image_path(cx, i, "runtime.python.interpreter")?,
        None => default_interpreter(runtime).ok_or_else(|| {
            cx.near(
                "[runtime.python]",
                "runtime.python.interpreter",
                format!("the runtime {runtime:?} is not a python interpreter: set interpreter = \"/usr/bin/python3.11\" (the image's interpreter)"),
            )
        })?,
    };
    Ok(PythonSpec {
        interpreter,
        bytecode: py.bytecode.unwrap_or(false),
    })
}

/// The interpreter a `[runtime.python]` section means when it names none: the runtime itself
/// when its file name starts with `python`.
pub fn default_interpreter(argv0: &str) -> Option<ImagePath> {
    let p = ImagePath::parse(argv0).ok()?;
    p.file_name()
        .is_some_and(|n| n.starts_with("python"))
        .then_some(p)
}

#[cfg(test)]
mod tests {
    use crate::profile::tests::{Fixture, BASE};

    #[test]
    fn the_interpreter_defaults_to_a_python_runtime() {
        let f = Fixture::new();
        let e = f.err(&format!("{BASE}[runtime.python]\nbytecode = true\n"));
        assert!(e.contains("runtime.python.interpreter"), "{e}");
        let text = BASE.replace(
            "\"/bin/busybox\", \"httpd\", \"-f\"",
            "\"/usr/bin/python3.11\"",
        );
        let p = f
            .parse(&format!("{text}[runtime.python]\nbytecode = true\n"))
            .unwrap();
        let py = p.python.unwrap();
        assert_eq!(py.interpreter.as_str(), "/usr/bin/python3.11");
        assert!(py.bytecode);
    }
}
