//! `stratos completions SHELL`: a shell's completion script, generated from the clap
//! definitions (clap_complete), so it knows every command and flag of this binary.

use std::io::Write;

use super::{CliError, CliResult};

/// Print the shell completion script for stratos (every command, flag and value it knows).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    stratos completions bash > ~/.local/share/bash-completion/completions/stratos\n  \
    stratos completions zsh > ~/.zfunc/_stratos     # with fpath+=(~/.zfunc) before compinit\n  \
    stratos completions fish > ~/.config/fish/completions/stratos.fish")]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// The completion script for `shell`.
pub fn script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = <super::Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "stratos", &mut out);
    out
}

pub fn run(a: Args) -> CliResult {
    std::io::stdout()
        .lock()
        .write_all(&script(a.shell))
        .map_err(|e| CliError::env(anyhow::Error::new(e).context("writing to stdout")))
}
