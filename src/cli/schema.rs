//! `stratos schema profile [--out FILE]`: the profile's JSON Schema, derived from the types that
//! parse a profile (`crate::profile::json_schema`), for editors: Taplo and Even Better TOML
//! read it from a `#:schema PATH` first line. `docs/profile.schema.json` is this output.

use std::io::Write;
use std::path::PathBuf;

use super::{writing, CliError, CliResult};

/// Print the JSON Schema of a profile (draft 7), for editors that complete and check TOML.
///
/// Generated from the same types that parse a profile: it names every key and its type, and
/// rejects unknown keys; what only `stratos build` checks (paths that must exist, names,
/// sizes) is left to it. Point an editor at it with a first line `#:schema FILE` in the
/// profile (Taplo, Even Better TOML).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    stratos schema profile > profile.schema.json\n  \
    stratos schema profile --out docs/profile.schema.json")]
pub struct Args {
    /// Which schema.
    #[arg(value_enum)]
    pub which: Which,
    /// Write the schema to FILE (replaced atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Which {
    /// A profile (profile.toml).
    Profile,
}

pub fn run(a: Args) -> CliResult {
    let text = match a.which {
        Which::Profile => crate::profile::json_schema_text(),
    };
    match a.out {
        Some(path) => {
            crate::fsio::write_atomic(&path, text.as_bytes(), 0o644).map_err(writing(&path))
        }
        None => std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .map_err(|e| CliError::env(anyhow::Error::new(e).context("writing to stdout"))),
    }
}
