//! The words every command shares (docs/commands.md, "Vocabulary"): durations with units, keys
//! named by role and checked to be the kind the flag needs, and the old spellings of renamed
//! flags, still read for one release with a warning.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::CliError;
use crate::sign::{PublicKey, SecretKey};

/// Clap's parser for every deadline flag: `500ms`, `30s`, `5m`, `2h` (a bare number is seconds,
/// as before units were read); zero is refused, a deadline that has passed before it starts.
pub fn deadline(s: &str) -> Result<Duration, String> {
    let d = crate::duration::parse(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err(format!("{s:?}: a deadline must be longer than 0"));
    }
    Ok(d)
}

/// A secret key for `flag` (e.g. `--image-key`): a public key file here is bad input naming the
/// flag, the file and the secret one to pass instead.
pub fn secret_key(flag: &str, path: &Path) -> Result<SecretKey, CliError> {
    SecretKey::load(path)
        .map_err(|e| CliError::input(anyhow::Error::new(e).context(flag.to_owned())))
}

/// A public key for `flag`: a secret key file here is bad input (it would be copied where only
/// the public half belongs), naming the flag, the file and the `.pub` to pass instead.
pub fn public_key(flag: &str, path: &Path) -> Result<PublicKey, CliError> {
    PublicKey::load(path)
        .map_err(|e| CliError::input(anyhow::Error::new(e).context(flag.to_owned())))
}

/// The image's secret key: `--image-key FILE`, else `$STRATOS_SIGNING_KEY` (a path); none is
/// an unsigned result, which the caller warns about.
pub fn image_secret_key(flag: Option<&Path>) -> Result<Option<SecretKey>, CliError> {
    if let Some(p) = flag {
        return secret_key("--image-key", p).map(Some);
    }
    match std::env::var_os("STRATOS_SIGNING_KEY").filter(|v| !v.is_empty()) {
        Some(p) => secret_key("$STRATOS_SIGNING_KEY", Path::new(&p)).map(Some),
        None => Ok(None),
    }
}

/// A flag renamed in this release: `old` still works in `command` (and its subcommands) and
/// warns, naming `new`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renamed {
    pub command: &'static [&'static str],
    pub old: &'static str,
    pub new: &'static str,
}

const fn renamed(
    command: &'static [&'static str],
    old: &'static str,
    new: &'static str,
) -> Renamed {
    Renamed { command, old, new }
}

/// Every renamed flag (docs/commands.md lists them). `repo init DIR`, a positional argument,
/// is handled by its command (`--repo DIR` now).
pub const RENAMED: &[Renamed] = &[
    renamed(&["build"], "--sign-key", "--image-key"),
    renamed(&["snapshot"], "--sign-key", "--image-key"),
    renamed(&["verify"], "--pubkey", "--image-key"),
    renamed(&["boot"], "--pubkey", "--image-key"),
    renamed(&["boot-test"], "--pubkey", "--image-key"),
    renamed(&["boot-test"], "--json", "--json-out"),
    renamed(&["boot-test"], "--markdown", "--markdown-out"),
    renamed(&["kernel", "profile"], "--json", "--json-out"),
    renamed(&["publish"], "--sign-key", "--channel-key"),
    renamed(&["promote"], "--sign-key", "--channel-key"),
    renamed(&["rollout"], "--sign-key", "--channel-key"),
    renamed(&["rollback"], "--sign-key", "--channel-key"),
    renamed(&["repo", "refresh"], "--sign-key", "--channel-key"),
    renamed(&["repo", "rotate-key"], "--old-key", "--old-root-key"),
    renamed(&["repo", "rotate-key"], "--new-key", "--new-root-key"),
    renamed(&["update", "apply"], "--sign-key", "--node-key"),
    renamed(&["update", "check"], "--timeout", "--network-timeout"),
    renamed(&["update", "fetch"], "--timeout", "--network-timeout"),
];

/// The arguments with every old spelling replaced by its new one, and a one-line warning on
/// stderr for each old spelling used (`warn` receives it). Nothing after `--` is touched.
pub fn modernize(args: Vec<OsString>, warn: &mut dyn FnMut(String)) -> Vec<OsString> {
    // The subcommand path: the words before the first flag's (`stratos repo refresh --repo`).
    let words: Vec<&str> = args
        .iter()
        .skip(1)
        .take_while(|a| a.to_str().is_some_and(|s| !s.starts_with('-')))
        .filter_map(|a| a.to_str())
        .collect();
    let rules: Vec<&Renamed> = RENAMED
        .iter()
        .filter(|r| words.len() >= r.command.len() && words[..r.command.len()] == *r.command)
        .collect();
    let mut warned: Vec<&str> = Vec::new();
    let mut out = Vec::with_capacity(args.len());
    let mut rest = false;
    for a in args {
        let text = a.to_str().unwrap_or_default();
        rest |= text == "--";
        let rule = (!rest).then(|| {
            rules.iter().find(|r| {
                text == r.old || text.strip_prefix(r.old).is_some_and(|v| v.starts_with('='))
            })
        });
        match rule.flatten() {
            Some(r) => {
                if !warned.contains(&r.old) {
                    warned.push(r.old);
                    warn(format!(
                        "stratos: warning: `{} {}` is now `{} {}`; the old spelling will be removed in the next release",
                        r.command.join(" "),
                        r.old,
                        r.command.join(" "),
                        r.new
                    ));
                }
                out.push(OsString::from(format!("{}{}", r.new, &text[r.old.len()..])));
            }
            None => out.push(a),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> (Vec<String>, Vec<String>) {
        let mut warnings = Vec::new();
        let out = modernize(args.iter().map(OsString::from).collect(), &mut |w| {
            warnings.push(w)
        });
        (
            out.into_iter().map(|a| a.into_string().unwrap()).collect(),
            warnings,
        )
    }

    #[test]
    fn an_old_spelling_becomes_the_new_one_with_one_warning() {
        let (args, warnings) = run(&[
            "stratos",
            "build",
            "p.toml",
            "--sign-key",
            "a.key",
            "--sign-key=b.key",
        ]);
        assert_eq!(
            args,
            [
                "stratos",
                "build",
                "p.toml",
                "--image-key",
                "a.key",
                "--image-key=b.key"
            ]
        );
        assert_eq!(
            warnings,
            ["stratos: warning: `build --sign-key` is now `build --image-key`; the old spelling will be removed in the next release"]
        );
    }

    #[test]
    fn a_flag_is_renamed_only_in_its_own_command() {
        // `--timeout` is the boot deadline in boot, the network deadline's old name in update.
        let (args, warnings) = run(&["stratos", "boot", "out/x", "--timeout", "5m"]);
        assert_eq!(args[3], "--timeout");
        assert!(warnings.is_empty());
        let (args, _) = run(&["stratos", "update", "check", "--timeout", "30"]);
        assert_eq!(args[3], "--network-timeout");
        let (args, _) = run(&["stratos", "update", "apply", "--timeout", "2m"]);
        assert_eq!(args[3], "--timeout");
        // Not a prefix match on the flag itself, and nothing after `--`.
        let (args, w) = run(&["stratos", "boot-test", "x", "--jsonx", "--", "--json"]);
        assert_eq!(args[3..], ["--jsonx", "--", "--json"]);
        assert!(w.is_empty());
    }

    #[test]
    fn deadlines_take_units_and_refuse_zero() {
        assert_eq!(deadline("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(deadline("300"), Ok(Duration::from_secs(300)));
        assert!(deadline("0s").unwrap_err().contains("longer than 0"));
        assert!(deadline("soon")
            .unwrap_err()
            .contains("like 500ms, 30s, 5m"));
    }

    #[test]
    fn every_renamed_flag_names_a_new_spelling_that_exists() {
        use clap::CommandFactory;
        let cli = super::super::Cli::command();
        for r in RENAMED {
            let mut cmd = &cli;
            for w in r.command {
                cmd = cmd.find_subcommand(w).unwrap_or_else(|| panic!("{w}"));
            }
            let has = |c: &clap::Command| {
                c.get_arguments()
                    .any(|a| a.get_long() == r.new.strip_prefix("--"))
            };
            let ok = has(cmd) || cmd.get_subcommands().any(has);
            assert!(ok, "{r:?}");
        }
    }
}
