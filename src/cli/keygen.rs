//! `stratos keygen`: a new ed25519 signing key pair.

use std::path::PathBuf;

use super::{CliError, CliResult};
use crate::sign::SecretKey;

/// Create an ed25519 key pair: PREFIX.key (secret, mode 0600) and PREFIX.pub.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  stratos keygen --out keys/release\n\nThe secret key is never printed. Existing files are never overwritten."
)]
pub struct Args {
    /// Path prefix of the two files to create.
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
}

pub fn run(a: Args) -> CliResult {
    let key = SecretKey::generate().map_err(CliError::input)?;
    let (secret, public) = key.write_pair(&a.out).map_err(CliError::input)?;
    println!("key id:     {}", key.id());
    println!(
        "secret key: {} (mode 0600; keep it out of version control)",
        secret.display()
    );
    println!("public key: {}", public.display());
    Ok(())
}
