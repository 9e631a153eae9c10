//! `stratos man [--out DIR]`: manual pages (roff) generated from the clap definitions
//! (clap_mangen): `stratos.1` and one page per command, named like git's (`stratos-build.1`,
//! `stratos-kernel-lint.1`).

use std::io::Write;
use std::path::PathBuf;

use super::{writing, CliError, CliResult};

/// Write the manual pages: the top page to stdout, or every page into a directory.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    stratos man | man -l -\n  \
    stratos man --out ~/.local/share/man/man1     # then: man stratos-build")]
pub struct Args {
    /// Write stratos.1 and one page per command (stratos-build.1, stratos-kernel-lint.1, ...)
    /// into DIR (created if missing; pages of these names are replaced) instead of printing
    /// the top page.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Every manual page: (file name, roff text), the top page first, then each command depth
/// first in the order the commands are declared (hidden commands and `help` left out).
pub fn pages() -> Vec<(String, Vec<u8>)> {
    let mut root = <super::Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    root.build();
    let mut out = Vec::new();
    collect(&root, "stratos", &mut out);
    out
}

fn collect(cmd: &clap::Command, name: &str, out: &mut Vec<(String, Vec<u8>)>) {
    let page = cmd.clone().display_name(name);
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut roff)
        .expect("rendering into memory");
    out.push((format!("{name}.1"), roff));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, &format!("{name}-{}", sub.get_name()), out);
    }
}

pub fn run(a: Args) -> CliResult {
    let pages = pages();
    let Some(dir) = a.out else {
        return std::io::stdout()
            .lock()
            .write_all(&pages[0].1)
            .map_err(|e| CliError::env(anyhow::Error::new(e).context("writing to stdout")));
    };
    std::fs::create_dir_all(&dir).map_err(writing(&dir))?;
    for (file, roff) in &pages {
        let path = dir.join(file);
        crate::fsio::write_atomic(&path, roff, 0o644).map_err(writing(&path))?;
    }
    eprintln!("wrote {} manual pages into {}", pages.len(), dir.display());
    Ok(())
}
