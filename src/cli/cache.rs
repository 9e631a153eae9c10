//! `stratos cache ls|gc`: what the content-addressed cache holds, and cleaning it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{human_bytes, CliError, CliResult};

/// Show or clean the build cache ($STRATOS_CACHE, else $XDG_CACHE_HOME/stratos, else
/// ~/.cache/stratos): built kernels, extracted sources, resolved configs, .deb files, and
/// compressed archives.
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
    /// Remove entries not used for DAYS days (default 30), or everything with --all.
    #[command(
        after_help = "Example:\n  stratos cache gc --older-than 7\n  stratos cache gc --all"
    )]
    Gc {
        #[arg(long, value_name = "DAYS", default_value_t = 30)]
        older_than: u64,
        #[arg(long)]
        all: bool,
    },
}

struct Item {
    kind: &'static str,
    path: PathBuf,
    bytes: u64,
    used: SystemTime,
}

fn size_of(p: &Path) -> u64 {
    walkdir::WalkDir::new(p)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn last_used(p: &Path) -> SystemTime {
    let marker = p.join(".complete");
    std::fs::metadata(if marker.exists() { &marker } else { p })
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn entries(root: &Path) -> Vec<Item> {
    let mut out = Vec::new();
    let mut scan = |dir: PathBuf, kind: &'static str, dirs_only: bool| {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut v: Vec<_> = rd.flatten().collect();
        v.sort_by_key(|e| e.file_name());
        for e in v {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.')
                || ["src", "configs", "digests", "work", "locks", "failed"].contains(&name.as_str())
                    && kind == "kernel"
            {
                continue;
            }
            if dirs_only && !p.is_dir() {
                continue;
            }
            out.push(Item {
                kind,
                bytes: size_of(&p),
                used: last_used(&p),
                path: p,
            });
        }
    };
    let k = root.join("kernels");
    scan(k.clone(), "kernel", true);
    scan(k.join("src"), "kernel-source", true);
    scan(k.join("configs"), "kernel-config", false);
    scan(k.join("failed"), "failed-build-log", false);
    scan(k.join("work"), "unfinished-build", true);
    scan(root.join("debs/sha256"), "deb", false);
    scan(root.join("zstd"), "zstd", false);
    out
}

pub fn run(a: Args) -> CliResult {
    let root = crate::cache::root();
    match a.command {
        Sub::Ls => {
            let items = entries(&root);
            println!("cache: {}", root.display());
            let now = SystemTime::now();
            let mut total = 0;
            for i in &items {
                let age = now.duration_since(i.used).unwrap_or_default().as_secs() / 86400;
                println!(
                    "  {:<17} {:>10}  {:>4} d  {}",
                    i.kind,
                    human_bytes(i.bytes),
                    age,
                    i.path
                        .file_name()
                        .map(|s| s.to_string_lossy())
                        .unwrap_or_default()
                );
                total += i.bytes;
            }
            println!("{} entries, {}", items.len(), human_bytes(total));
            Ok(())
        }
        Sub::Gc { older_than, all } => {
            let cutoff = SystemTime::now() - Duration::from_secs(older_than * 86400);
            let mut freed = 0;
            let mut n = 0;
            for i in entries(&root) {
                if all || i.used < cutoff {
                    let r = if i.path.is_dir() {
                        std::fs::remove_dir_all(&i.path)
                    } else {
                        std::fs::remove_file(&i.path)
                    };
                    r.map_err(|e| {
                        CliError::input(anyhow::anyhow!("removing {}: {e}", i.path.display()))
                    })?;
                    freed += i.bytes;
                    n += 1;
                }
            }
            println!("removed {n} entries, freed {}", human_bytes(freed));
            Ok(())
        }
    }
}
