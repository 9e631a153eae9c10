//! The command-line reference, `docs/cli.md`, rendered from the clap definitions themselves (as
//! bootc's `docgen` does), so the reference cannot drift from the binary: a test
//! (`golden::cli_reference_is_current`) compares this rendering with the file, and
//! `STRATOS_BLESS=1` rewrites it.
//!
//! Every command's `--help` (the text `stratos <command> --help` prints), depth first in
//! the order the commands are declared, wrapped at a fixed width so the bytes do not depend on
//! the terminal that renders them.

use clap::CommandFactory;

use super::Cli;

/// The width help text is wrapped at, whatever the terminal.
pub const WIDTH: usize = 100;

/// The markdown of `docs/cli.md`: a table of contents, then each command's long help.
pub fn markdown() -> String {
    let mut root = fixed_width(Cli::command());
    root.build();
    let mut commands = Vec::new();
    collect(&root, &mut commands);

    let mut out = String::from(
        "# CLI reference\n\n\
         <!-- Generated from the clap definitions by src/cli/docgen.rs; do not edit.\n     \
         Rewrite it with: STRATOS_BLESS=1 cargo test --locked --test it -- golden::cli_reference_is_current -->\n\n\
         Every command's `--help`, as `stratos` prints it. Exit codes, and what each command is for, \
         are summarised in [commands.md](commands.md).\n\n",
    );
    for c in &commands {
        let depth = c.path.matches(' ').count();
        out.push_str(&format!(
            "{}- [`{}`](#{})\n",
            "  ".repeat(depth),
            c.path,
            c.path.replace(' ', "-")
        ));
    }
    for c in &commands {
        out.push_str(&format!("\n## {}\n\n```text\n{}\n```\n", c.path, c.help));
    }
    out
}

/// One command of the reference: its full name (`stratos kernel lint`) and its long help.
struct Rendered {
    path: String,
    help: String,
}

/// `cmd` and every subcommand below it, depth first, skipping clap's generated `help`
/// subcommands and hidden commands.
fn collect(cmd: &clap::Command, out: &mut Vec<Rendered>) {
    let path = cmd
        .get_bin_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_owned();
    let help = if has_long_help(cmd) {
        cmd.clone().render_long_help()
    } else {
        cmd.clone().render_help()
    };
    out.push(Rendered {
        path,
        help: help.to_string().trim_end().to_owned(),
    });
    for sub in cmd.get_subcommands() {
        if sub.get_name() != "help" && !sub.is_hide_set() {
            collect(sub, out);
        }
    }
}

/// Whether `--help` prints more than `-h` for `cmd`, as clap decides it: then clap gives
/// `--help` itself a long help ("see a summary with '-h'"). `stratos CMD --help` prints the long
/// form only then, and the reference shows what `--help` prints.
fn has_long_help(cmd: &clap::Command) -> bool {
    cmd.get_arguments()
        .any(|a| a.get_id() == "help" && a.get_long_help().is_some())
}

/// `cmd` with every command below it wrapping its help at [`WIDTH`].
fn fixed_width(cmd: clap::Command) -> clap::Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    names.iter().fold(cmd.term_width(WIDTH), |cmd, name| {
        cmd.mut_subcommand(name, fixed_width)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_in_the_reference_once() {
        let md = markdown();
        for name in [
            "stratos",
            "stratos build",
            "stratos kernel lint",
            "stratos update apply",
        ] {
            assert_eq!(md.matches(&format!("\n## {name}\n")).count(), 1, "{name}");
        }
        assert!(!md.contains("## stratos help"));
        assert!(md.contains("Usage: stratos kernel lint"));
    }

    #[test]
    fn the_reference_does_not_depend_on_the_terminal() {
        let md = markdown();
        assert_eq!(md, markdown());
        let mut in_help = false;
        for line in md.lines() {
            match line {
                "```text" => in_help = true,
                "```" => in_help = false,
                _ if in_help => {
                    // Only a word longer than the width (a usage line) can overflow it.
                    let fits = line.chars().count() <= WIDTH || line.starts_with("Usage: ");
                    assert!(fits, "wider than {WIDTH}: {line}");
                }
                _ => {}
            }
        }
    }
}
