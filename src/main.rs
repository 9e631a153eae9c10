use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // `stratos ... | head` closes our stdout early: end quietly like other command-line tools
    // (exit 141 = 128 + SIGPIPE) instead of reporting a panic from println!.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    // Renamed flags still work for one release, each with a one-line warning.
    let args = stratos::cli::vocab::modernize(std::env::args_os().collect(), &mut |warning| {
        eprintln!("{warning}")
    });
    let cli = stratos::cli::Cli::parse_from(args);
    match stratos::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", stratos::cli::render_error(&e.error));
            ExitCode::from(e.code as u8)
        }
    }
}
