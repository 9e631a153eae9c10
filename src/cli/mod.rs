//! The command line: one file per subcommand. `main.rs` only parses and maps exit codes.

pub mod boot;
pub mod boot_test;
pub mod build;
pub mod cache;
pub mod completions;
pub mod docgen;
pub mod doctor;
pub mod export;
pub mod inspect;
pub mod kernel;
pub mod keygen;
pub mod lock;
pub mod man;
pub mod new;
mod node_state;
pub mod promote;
pub mod publish;
pub mod repo;
pub mod rollback;
pub mod rollout;
pub mod schema;
pub mod seccomp;
pub mod snapshot;
pub mod update;
pub mod verify;
pub mod vocab;

mod channel_args;

use clap::{Parser, Subcommand};

/// How a command ended, as its exit code: the one table every command's errors map to
/// ([`Exit::ALL`] with [`Exit::meaning`]; `stratos --help` and docs/commands.md print it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Success = 0,
    /// A check failed: verification, an objective, a rejected update, a guest that failed.
    CheckFailed = 1,
    /// Bad usage or bad input (a profile, a key, an image directory, an argument).
    BadInput = 2,
    /// The machine could not do its part: a tool missing or failing (a kernel that does not
    /// compile, a download that fails, QEMU missing or unable to start), host I/O.
    Environment = 3,
    /// Stopped by SIGINT, SIGTERM or SIGHUP: the VM was stopped (128 + SIGINT, as shells
    /// report a Ctrl-C).
    Interrupted = 130,
}

impl Exit {
    /// Every exit code, in order.
    pub const ALL: [Exit; 5] = [
        Exit::Success,
        Exit::CheckFailed,
        Exit::BadInput,
        Exit::Environment,
        Exit::Interrupted,
    ];

    /// What the code means, as `stratos --help` and docs/commands.md say it.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Success => "success",
            Exit::CheckFailed => {
                "a check failed: verification, an objective, a rejected update, a guest that failed"
            }
            Exit::BadInput => {
                "bad usage or input: a flag, a profile, a key (or the wrong kind of key), an image directory"
            }
            Exit::Environment => {
                "the machine failed its part: a tool missing or failing (QEMU not installed, a kernel that does not compile, a download that fails), host I/O, a full disk"
            }
            Exit::Interrupted => "interrupted (Ctrl-C, SIGTERM, SIGHUP): the VM was stopped",
        }
    }

    /// The table as `stratos --help` ends with it.
    pub fn help_text() -> String {
        let mut s = String::from("Exit codes (every command):");
        for e in Exit::ALL {
            s.push_str(&format!("\n  {:<3} {}", e as u8, e.meaning()));
        }
        s
    }
}

/// A failed command: its exit code and the error to print.
#[derive(Debug)]
pub struct CliError {
    pub code: Exit,
    pub error: anyhow::Error,
}

impl CliError {
    pub fn input(e: impl Into<anyhow::Error>) -> Self {
        CliError {
            code: Exit::BadInput,
            error: e.into(),
        }
    }
    pub fn check(e: impl Into<anyhow::Error>) -> Self {
        CliError {
            code: Exit::CheckFailed,
            error: e.into(),
        }
    }
    pub fn env(e: impl Into<anyhow::Error>) -> Self {
        CliError {
            code: Exit::Environment,
            error: e.into(),
        }
    }
    /// Stopped by a signal (exit 130); `what` says what was stopped.
    pub fn interrupted(what: &str) -> Self {
        CliError {
            code: Exit::Interrupted,
            error: anyhow::anyhow!("interrupted: {what}"),
        }
    }
    /// [`CliError::env`] when `environment`, else [`CliError::input`].
    pub fn input_or_env(environment: bool, e: impl Into<anyhow::Error>) -> Self {
        if environment {
            Self::env(e)
        } else {
            Self::input(e)
        }
    }
}

impl From<crate::boot::BootError> for CliError {
    fn from(e: crate::boot::BootError) -> Self {
        CliError::input_or_env(e.is_environment(), e)
    }
}

impl From<crate::kernel::build::KernelBuildError> for CliError {
    fn from(e: crate::kernel::build::KernelBuildError) -> Self {
        CliError::input_or_env(e.is_environment(), e)
    }
}

pub type CliResult = Result<(), CliError>;

#[derive(Debug, Parser)]
#[command(
    name = "stratos",
    version,
    about = "Build reproducible, signed, SBOM-attached micro-OS images for function nodes",
    long_about = None,
    after_help = format!(
        "Example:\n  stratos keygen --out keys/release\n  stratos build profiles/hello.toml --out out/hello --image-key keys/release.key\n  stratos verify out/hello --image-key keys/release.pub\n\n{}",
        Exit::help_text()
    )
)]
pub struct Cli {
    /// Show every external command StratOS runs (make, qemu-system-*, bwrap, apt-get, tar,
    /// curl, ...) on stderr, quoted so it can be pasted into a shell; `boot` also shows the
    /// whole console.
    #[arg(long, short, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Build(build::Args),
    Lock(lock::Args),
    Boot(boot::Args),
    BootTest(boot_test::Args),
    Snapshot(snapshot::Args),
    Verify(verify::Args),
    Export(export::Args),
    Keygen(keygen::Args),
    Inspect(inspect::Args),
    Kernel(kernel::Args),
    Cache(cache::Args),
    Seccomp(seccomp::Args),
    Repo(repo::Args),
    Publish(publish::Args),
    Promote(promote::Args),
    Rollout(rollout::Args),
    Rollback(rollback::Args),
    Update(update::Args),
    New(new::Args),
    Doctor(doctor::Args),
    Schema(schema::Args),
    Completions(completions::Args),
    Man(man::Args),
}

pub fn run(cli: Cli) -> CliResult {
    crate::progress::set_verbose(cli.verbose);
    dispatch(cli).map_err(host_storage)
}

/// A full disk, an exhausted quota or a read-only file system is the machine failing its part
/// (exit 3), whatever the command was doing when it hit it: never bad input (2) or a failed
/// check (1).
fn host_storage(mut e: CliError) -> CliError {
    if e.code != Exit::Environment && storage_error(&e.error).is_some() {
        e.code = Exit::Environment;
    }
    e
}

/// The I/O error in `e`'s chain that says the host's storage cannot take a write (ENOSPC,
/// EDQUOT, EROFS).
pub fn storage_error(e: &anyhow::Error) -> Option<&std::io::Error> {
    use rustix::io::Errno;
    let host = [Errno::NOSPC, Errno::DQUOT, Errno::ROFS].map(Errno::raw_os_error);
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .find(|io| io.raw_os_error().is_some_and(|n| host.contains(&n)))
}

/// Maps a failed write of `path` (a file the user named) to bad input, keeping the I/O error
/// itself as the cause so a full disk is still told apart (exit 3, [`storage_error`]).
pub(crate) fn writing(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |e| CliError::input(anyhow::Error::new(e).context(format!("writing {}", path.display())))
}

fn dispatch(cli: Cli) -> CliResult {
    match cli.command {
        Command::Build(a) => build::run(a),
        Command::Lock(a) => lock::run(a),
        Command::Boot(a) => boot::run(a),
        Command::BootTest(a) => boot_test::run(a),
        Command::Snapshot(a) => snapshot::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Export(a) => export::run(a),
        Command::Keygen(a) => keygen::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Kernel(a) => kernel::run(a),
        Command::Cache(a) => cache::run(a),
        Command::Seccomp(a) => seccomp::run(a),
        Command::Repo(a) => repo::run(a),
        Command::Publish(a) => publish::run(a),
        Command::Promote(a) => promote::run(a),
        Command::Rollout(a) => rollout::run(a),
        Command::Rollback(a) => rollback::run(a),
        Command::Update(a) => update::run(a),
        Command::New(a) => new::run(a),
        Command::Doctor(a) => doctor::run(a),
        Command::Schema(a) => schema::run(a),
        Command::Completions(a) => completions::run(a),
        Command::Man(a) => man::run(a),
    }
}

/// An error and its causes on one line, each cause once: a cause whose text the message
/// already contains (a `{source}` in the message and the same error as its source) is not
/// repeated.
pub fn render_error(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    // Defence in depth: whatever a message quotes, no escape sequence reaches the terminal
    // (newlines stay: some messages are several lines long).
    let mut safe = String::with_capacity(out.len());
    for line in out.split('\n') {
        if !safe.is_empty() {
            safe.push('\n');
        }
        crate::fsio::escape_controls(line, &mut safe).expect("writing to a String");
    }
    safe
}

pub use crate::progress::human_bytes;

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_prints_its_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot write the image to out/x: {source}")]
        struct Outer {
            #[source]
            source: std::io::Error,
        }
        let io = std::io::Error::from_raw_os_error(13);
        let e = anyhow::Error::new(Outer { source: io }).context("building p.toml");
        let text = super::render_error(&e);
        assert_eq!(
            text,
            "building p.toml: cannot write the image to out/x: Permission denied (os error 13)"
        );
        assert_eq!(text.matches("os error 13").count(), 1);
    }
}
