//! Binary deltas between two versions of a file (a kernel): zstd's "patch-from", the old file
//! as a reference prefix the new one is compressed against (`zstd --patch-from`).
//!
//! A delta is one zstd frame with its content size and checksum. Its window covers the base and
//! the target together, capped at [`WINDOW_LOG_MAX`] (128 MiB) so that a decoder needs no
//! limit beyond `window_log_max(27)`; past that the delta only finds matches in the last
//! 128 MiB, and is still correct. Long-distance matching finds the base's unchanged runs
//! wherever they moved to. Measured against bsdiff on two real kernels in `bench/update.md`
//! ("Kernel deltas").

use std::io::{self, BufReader, Read, Write};

/// The compression level of a delta (as `zstd -19 --patch-from`).
pub const LEVEL: i32 = 19;

/// The largest window a delta uses, and a decoder accepts: 2^27 bytes.
pub const WINDOW_LOG_MAX: u32 = 27;

/// Why a delta could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("starting the zstd decoder: {0}")]
    Start(io::Error),
    #[error("reading the delta: {0}")]
    Read(io::Error),
    #[error("the delta is corrupt or was made against another base: {0}")]
    Corrupt(io::Error),
    #[error("the delta decodes to more than {max_out} bytes")]
    TooLarge { max_out: u64 },
    #[error("writing the patched file: {0}")]
    Write(io::Error),
}

/// The window that covers `base` and `target` together (at least 1 KiB, at most
/// [`WINDOW_LOG_MAX`]).
fn window_log(base: usize, target: usize) -> u32 {
    let total = (base as u64).saturating_add(target as u64).max(1);
    let log = 64 - (total - 1).leading_zeros(); // ceil(log2(total))
    log.clamp(10, WINDOW_LOG_MAX)
}

/// The delta that turns `base` into `target`. Deterministic: the same inputs (and zstd
/// version) give the same bytes.
pub fn encode(base: &[u8], target: &[u8]) -> io::Result<Vec<u8>> {
    let mut enc = zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), LEVEL, base)?;
    enc.window_log(window_log(base.len(), target.len()))?;
    enc.long_distance_matching(true)?;
    enc.include_checksum(true)?;
    enc.include_contentsize(true)?;
    enc.set_pledged_src_size(Some(target.len() as u64))?;
    enc.write_all(target)?;
    enc.finish()
}

/// A reader that remembers whether reading it failed, so that the decoder's error can be told
/// apart: the source failing, or the bytes being no valid delta.
struct Source<R> {
    inner: R,
    failed: bool,
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }
}

/// Applies `patch` (from [`encode`]) to `base`, streaming the result into `out`; returns the
/// number of bytes written. Refuses to write more than `max_out` bytes (it stops after reading
/// one byte past it), and reports a patch that is corrupt, truncated or made against another
/// base as an error. The caller still checks the result's digest: a delta made against another
/// base can decode without error into other bytes.
pub fn decode(
    base: &[u8],
    patch: impl Read,
    out: &mut impl Write,
    max_out: u64,
) -> Result<u64, DeltaError> {
    let src = Source {
        inner: patch,
        failed: false,
    };
    let mut dec = zstd::stream::read::Decoder::with_ref_prefix(BufReader::new(src), base)
        .map_err(DeltaError::Start)?;
    dec.window_log_max(WINDOW_LOG_MAX)
        .map_err(DeltaError::Start)?;
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        // Never more than one byte past the limit.
        let room = (max_out + 1 - n).min(buf.len() as u64) as usize;
        let k = match dec.read(&mut buf[..room]) {
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if dec.get_ref().get_ref().failed => return Err(DeltaError::Read(e)),
            Err(e) => return Err(DeltaError::Corrupt(e)),
        };
        if k == 0 {
            break;
        }
        n += k as u64;
        if n > max_out {
            return Err(DeltaError::TooLarge { max_out });
        }
        out.write_all(&buf[..k]).map_err(DeltaError::Write)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pseudo-random byte stream (xorshift), the same for the same seed.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// A base and a target that shares most of it, moved and edited (as a rebuilt kernel is).
    fn pair() -> (Vec<u8>, Vec<u8>) {
        let base = noise(1, 600_000);
        let mut target = Vec::new();
        target.extend_from_slice(&base[..200_000]);
        target.extend_from_slice(&noise(2, 3_000)); // inserted: shifts the rest
        target.extend_from_slice(&base[200_000..450_000]);
        target.extend_from_slice(&base[460_000..]); // 10 000 bytes removed
        target[500_000] ^= 0xff;
        (base, target)
    }

    fn apply(base: &[u8], patch: &[u8], max_out: u64) -> Result<Vec<u8>, DeltaError> {
        let mut out = Vec::new();
        let n = decode(base, patch, &mut out, max_out)?;
        assert_eq!(n, out.len() as u64);
        Ok(out)
    }

    #[test]
    fn round_trip_is_small_and_deterministic() {
        let (base, target) = pair();
        let d = encode(&base, &target).unwrap();
        // Incompressible data: only the inserted bytes and a few matches' worth of overhead.
        assert!(d.len() < 8_000, "{} bytes", d.len());
        assert_eq!(encode(&base, &target).unwrap(), d);
        assert_eq!(apply(&base, &d, target.len() as u64).unwrap(), target);
        // No base at all (an empty file) still round-trips: the delta is the whole target.
        let d = encode(&[], &target).unwrap();
        assert_eq!(apply(&[], &d, u64::MAX - 1).unwrap(), target);
        // An empty target.
        let d = encode(&base, &[]).unwrap();
        assert_eq!(apply(&base, &d, 0).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn output_beyond_the_limit_is_refused() {
        let (base, target) = pair();
        let d = encode(&base, &target).unwrap();
        let len = target.len() as u64;
        assert_eq!(apply(&base, &d, len).unwrap().len() as u64, len);
        let mut out = Vec::new();
        let e = decode(&base, &d[..], &mut out, len - 1).unwrap_err();
        assert!(
            matches!(e, DeltaError::TooLarge { max_out } if max_out == len - 1),
            "{e}"
        );
        // Nothing past the limit reached the output.
        assert!((out.len() as u64) < len, "{}", out.len());
        assert!(matches!(
            apply(&base, &d, 0).unwrap_err(),
            DeltaError::TooLarge { max_out: 0 }
        ));
    }

    #[test]
    fn corrupt_truncated_and_foreign_patches_are_errors() {
        let (base, target) = pair();
        let d = encode(&base, &target).unwrap();
        let max = 10 * target.len() as u64;
        for cut in [1, 4, d.len() / 2, d.len() - 1] {
            let e = apply(&base, &d[..cut], max).unwrap_err();
            assert!(matches!(e, DeltaError::Corrupt(_)), "cut at {cut}: {e}");
        }
        // An empty patch is an incomplete frame, not an empty file.
        let e = apply(&base, &[], max).unwrap_err();
        assert!(matches!(e, DeltaError::Corrupt(_)), "{e:?}");
        assert!(matches!(
            apply(&base, b"not a zstd frame at all", max).unwrap_err(),
            DeltaError::Corrupt(_)
        ));
        // A flipped byte in the compressed body: the frame's checksum (or its structure)
        // catches it.
        let mut bad = d.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x55;
        assert!(apply(&base, &bad, max).is_err());
        // Against another base, the decoded bytes differ from the target or decoding fails:
        // never the target (callers check the digest).
        let other = noise(9, base.len());
        if let Ok(out) = apply(&other, &d, max) {
            assert_ne!(out, target);
        }
        // A window larger than a decoder accepts is refused, not allocated.
        let big = {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
            e.window_log(30).unwrap();
            e.long_distance_matching(true).unwrap();
            e.write_all(&target).unwrap();
            e.finish().unwrap()
        };
        assert!(matches!(
            apply(&base, &big, max).unwrap_err(),
            DeltaError::Corrupt(_)
        ));
    }

    #[test]
    fn a_failing_source_is_a_read_error() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("connection reset"))
            }
        }
        let e = decode(b"base", Broken, &mut Vec::new(), 100).unwrap_err();
        assert!(matches!(e, DeltaError::Read(_)), "{e}");
        assert!(e.to_string().contains("connection reset"), "{e}");
    }

    #[test]
    fn random_patches_never_panic_and_stay_bounded() {
        let (base, target) = pair();
        let d = encode(&base, &target).unwrap();
        let max = target.len() as u64;
        for seed in 0..200u64 {
            let r = noise(seed + 100, 64);
            let patch = if seed % 2 == 0 {
                // Random bytes behind a valid frame magic number.
                let mut p = vec![0x28, 0xb5, 0x2f, 0xfd];
                p.extend_from_slice(&noise(seed, 16 + seed as usize * 3));
                p
            } else {
                // The real delta with a few bytes changed.
                let mut p = d.clone();
                for k in 0..3 {
                    let at = (r[k * 2] as usize * 256 + r[k * 2 + 1] as usize) % p.len();
                    p[at] ^= r[10 + k] | 1;
                }
                p
            };
            let mut out = Vec::new();
            match decode(&base, &patch[..], &mut out, max) {
                Ok(n) => assert!(n <= max && n == out.len() as u64),
                Err(_) => assert!(out.len() as u64 <= max),
            }
        }
    }

    #[test]
    fn the_window_covers_base_and_target_up_to_the_cap() {
        assert_eq!(window_log(0, 0), 10);
        assert_eq!(window_log(14_000_000, 14_000_000), 25);
        assert_eq!(window_log(1 << 26, 1 << 26), 27);
        assert_eq!(window_log(1 << 30, 1 << 30), WINDOW_LOG_MAX);
    }
}
