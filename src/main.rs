use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = stratos::cli::Cli::parse();
    match stratos::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {:#}", e.error);
            ExitCode::from(e.code)
        }
    }
}
