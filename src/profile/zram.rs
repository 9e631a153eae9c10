//! `[zram]`: a compressed swap device in RAM.

use super::spanned::Spanned;

use super::checks::{parse_size, IntOrString, ZramSize};
use super::{Ctx, ProfileError};

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawZram {
    pub size: Spanned<IntOrString>,
    #[serde(default)]
    pub algorithm: Option<Spanned<String>>,
    #[serde(default)]
    pub priority: Option<Spanned<i64>>,
    #[serde(default)]
    pub required: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zram {
    pub size: ZramSize,
    pub algorithm: String,
    pub priority: i32,
    pub required: bool,
}

/// Compression algorithms the Linux zram driver knows.
pub const ZRAM_ALGORITHMS: &[&str] = &["lzo", "lzo-rle", "lz4", "lz4hc", "zstd", "deflate", "842"];

/// `[zram]`.
pub(super) fn validate_zram(cx: &Ctx, z: RawZram) -> Result<Zram, ProfileError> {
    let size = match z.size.get_ref() {
        IntOrString::Int(i) => u64::try_from(*i).ok().filter(|&b| b >= 4096).map(ZramSize::Bytes),
        IntOrString::Str(s) => parse_size(s),
    }
    .ok_or_else(|| cx.at(z.size.span(), "zram.size", "must be bytes (at least 4096), a size like \"512M\" or \"1G\", or a percentage of RAM like \"50%\" (1-400)"))?;
    let algorithm = match z.algorithm {
        Some(a) => {
            if !ZRAM_ALGORITHMS.contains(&a.get_ref().as_str()) {
                return Err(cx.at(
                    a.span(),
                    "zram.algorithm",
                    format!(
                        "{:?} is not a zram algorithm; use one of {}",
                        a.get_ref(),
                        ZRAM_ALGORITHMS.join(", ")
                    ),
                ));
            }
            a.into_inner()
        }
        None => "lzo-rle".to_owned(),
    };
    let priority = match z.priority {
        Some(p) => i32::try_from(*p.get_ref())
            .ok()
            .filter(|v| (-1..=32767).contains(v))
            .ok_or_else(|| cx.at(p.span(), "zram.priority", "must be between -1 and 32767"))?,
        None => 100,
    };
    Ok(Zram {
        size,
        algorithm,
        priority,
        required: z.required.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use crate::profile::tests::{Fixture, BASE};

    #[test]
    fn bad_values() {
        let f = Fixture::new();
        for (snippet, want) in [
            ("[zram]\nsize = \"lots\"\n", "zram.size"),
            (
                "[zram]\nsize = \"1G\"\nalgorithm = \"gzip\"\n",
                "zram.algorithm",
            ),
        ] {
            let e = f.err(&format!("{BASE}{snippet}"));
            assert!(e.contains(want), "{snippet:?}: {e}");
        }
    }
}
