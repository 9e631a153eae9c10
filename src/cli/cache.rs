//! `stratos cache ls|gc`: what the content-addressed cache holds, and cleaning it.

use std::time::{Duration, SystemTime};

use super::{human_bytes, CliError, CliResult};
use crate::cache::Cache;

/// Show or clean the build cache ($STRATOS_CACHE, else $XDG_CACHE_HOME/stratos, else
/// ~/.cache/stratos): built kernels, extracted sources, resolved configs, .deb files, wheels,
/// npm tarballs and compressed archives.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// List cache entries with their size and age.
    #[command(after_help = "Example:\n  stratos cache ls")]
    Ls,
    /// Remove entries not used for a while (--older-than, default 30d), or everything with
    /// --all. Only the cache's own folders are cleaned; symlinks are removed as links, never
    /// followed.
    #[command(
        after_help = "Example:\n  stratos cache gc --older-than 7d\n  stratos cache gc --all"
    )]
    Gc {
        /// Remove entries not used for this long: a duration such as 7d or 12h (a bare number
        /// is days here, as it always was: write the unit).
        #[arg(long, value_name = "DURATION", default_value = "30d")]
        older_than: String,
        #[arg(long)]
        all: bool,
    },
}

pub fn run(a: Args) -> CliResult {
    let cache = Cache::new(crate::cache::root());
    let warn_links = |links: &[std::path::PathBuf]| {
        for l in links {
            eprintln!(
                "warning: {} is a symlink; stratos does not follow links out of its cache, so it was not listed or cleaned",
                l.display()
            );
        }
    };
    match a.command {
        Sub::Ls => {
            let (items, links) = cache.entries().map_err(CliError::env)?;
            warn_links(&links);
            println!("cache: {}", cache.root.display());
            let now = SystemTime::now();
            let mut total = 0;
            for i in &items {
                let age = now.duration_since(i.used).unwrap_or_default().as_secs() / 86400;
                println!(
                    "  {:<17} {:>10}  {:>4} d  {}{}",
                    i.kind.name(),
                    human_bytes(i.bytes),
                    age,
                    i.path
                        .file_name()
                        .map(|s| s.to_string_lossy())
                        .unwrap_or_default(),
                    if i.is_link { " (symlink)" } else { "" }
                );
                total += i.bytes;
            }
            println!("{} entries, {}", items.len(), human_bytes(total));
            Ok(())
        }
        Sub::Gc { older_than, all } => {
            let age = gc_age(&older_than)?;
            let cutoff = SystemTime::now()
                .checked_sub(age)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let r = cache
                .gc(|e| all || e.used < cutoff)
                .map_err(CliError::env)?;
            warn_links(&r.skipped_links);
            println!(
                "removed {} entries, freed {}",
                r.removed,
                human_bytes(r.freed)
            );
            Ok(())
        }
    }
}

/// `--older-than`: a duration; a bare number is days (its meaning before units), with a warning.
fn gc_age(text: &str) -> Result<Duration, CliError> {
    if let Ok(days) = text.trim().parse::<u64>() {
        eprintln!(
            "stratos: warning: --older-than {days}: a bare number here means days; write {days}d (bare numbers will be refused in the next release)"
        );
        return Ok(Duration::from_secs(days.saturating_mul(86_400)));
    }
    crate::duration::parse(text).map_err(|e| CliError::input(anyhow::anyhow!("--older-than {e}")))
}
