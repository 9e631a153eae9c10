//! Binary deltas between two versions of a file (a kernel): bsdiff (the `bsdiff` crate, Colin
//! Percival's algorithm), its patch compressed with zstd.
//!
//! A delta is [`MAGIC`] followed by one zstd frame (level [`LEVEL`], long-distance matching,
//! checksum, window at most [`WINDOW_LOG_MAX`]) of the bsdiff patch: a sequence of entries, each
//! a control triple of little-endian 8-byte integers (`add_len`, `copy_len`, and `seek` in
//! sign-magnitude), then `add_len` bytes added to the base's bytes at the current position, then
//! `copy_len` bytes copied as they are; the position then moves by `add_len + seek`. bsdiff
//! encodes code that moved as small arithmetic differences (every displaced address), which
//! zstd's patch-from could only copy as short exact runs: on two real kernels it gives 1.7×
//! smaller deltas, at ~50 s and ~370 MB to make one (`bench/update.md`, "Kernel deltas").
//!
//! [`decode`] applies a patch itself rather than through the crate: it streams, checks every
//! length against the base and the output limit, and allocates nothing from a length the patch
//! claims.

use std::io::{self, BufReader, Read, Write};

/// The first bytes of every delta: its format (bsdiff patch, zstd-compressed). Anything else is
/// refused.
pub const MAGIC: &[u8; 20] = b"STRATOS-BSDIFF-ZSTD\0";

/// The zstd level the bsdiff patch is compressed at.
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

/// The window that covers a patch for `target` (the patch is about as long as the target: at
/// least 1 KiB, at most [`WINDOW_LOG_MAX`]).
fn window_log(target: usize) -> u32 {
    let total = (target as u64).max(1);
    let log = 64 - (total - 1).leading_zeros(); // ceil(log2(total))
    log.clamp(10, WINDOW_LOG_MAX)
}

/// The delta that turns `base` into `target`. Deterministic: the same inputs (and crate
/// versions) give the same bytes. Takes time and memory: bsdiff sorts the suffixes of `base`
/// (about 50 s and 370 MB for a 14 MB kernel, optimised).
pub fn encode(base: &[u8], target: &[u8]) -> io::Result<Vec<u8>> {
    let mut enc = zstd::stream::write::Encoder::new(MAGIC.to_vec(), LEVEL)?;
    enc.window_log(window_log(target.len()))?;
    enc.long_distance_matching(true)?;
    enc.include_checksum(true)?;
    bsdiff::diff(base, target, &mut enc)?;
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

fn corrupt(what: &str) -> DeltaError {
    DeltaError::Corrupt(io::Error::new(io::ErrorKind::InvalidData, what.to_owned()))
}

/// Fills `buf` from `r`; returns how many bytes it read (fewer only at the end of `r`).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A sign-magnitude little-endian 8-byte integer (bsdiff's `offtin`).
fn signed(b: [u8; 8]) -> i128 {
    let v = u64::from_le_bytes(b);
    let magnitude = i128::from(v & !(1 << 63));
    if v >> 63 == 1 {
        -magnitude
    } else {
        magnitude
    }
}

/// Applies `patch` (from [`encode`]) to `base`, streaming the result into `out`; returns the
/// number of bytes written. Refuses to write more than `max_out` bytes (an entry that would
/// take the output past it is refused before any of its bytes is written), and reports a patch
/// that is corrupt, truncated, of another format or reaching outside `base` as an error; it
/// allocates nothing from the lengths a patch claims. The caller still checks the result's
/// digest: a delta made against another base can decode without error into other bytes.
pub fn decode(
    base: &[u8],
    patch: impl Read,
    out: &mut impl Write,
    max_out: u64,
) -> Result<u64, DeltaError> {
    let mut src = Source {
        inner: patch,
        failed: false,
    };
    let mut magic = [0u8; MAGIC.len()];
    match read_full(&mut src, &mut magic) {
        Ok(n) if n == magic.len() && &magic == MAGIC => {}
        Ok(_) => {
            return Err(corrupt(
                "not a bsdiff+zstd delta (its format tag is missing)",
            ))
        }
        Err(e) => return Err(DeltaError::Read(e)),
    }
    let mut dec =
        zstd::stream::read::Decoder::with_buffer(BufReader::new(src)).map_err(DeltaError::Start)?;
    dec.window_log_max(WINDOW_LOG_MAX)
        .map_err(DeltaError::Start)?;
    // The decoder's error: the source failing, or the bytes being corrupt.
    let classify = |dec: &zstd::stream::read::Decoder<'_, BufReader<Source<_>>>, e| {
        if dec.get_ref().get_ref().failed {
            DeltaError::Read(e)
        } else {
            DeltaError::Corrupt(e)
        }
    };
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    let mut pos = 0i128; // in the base
                         // bsdiff writes one entry per position it stops at in the target, so never more entries
                         // than output bytes: a patch of empty entries must not keep a node busy past that.
    let mut entries = 0u64;
    loop {
        let mut control = [0u8; 24];
        match read_full(&mut dec, &mut control) {
            Ok(0) => break,
            Ok(24) => {}
            Ok(_) => return Err(corrupt("truncated in a control entry")),
            Err(e) => return Err(classify(&dec, e)),
        }
        entries += 1;
        if entries > max_out.saturating_add(1) {
            return Err(corrupt("more entries than the output has bytes"));
        }
        let word = |i: usize| <[u8; 8]>::try_from(&control[i * 8..i * 8 + 8]).unwrap();
        let add = u64::from_le_bytes(word(0));
        let copy = u64::from_le_bytes(word(1));
        let seek = signed(word(2));
        let end = add.checked_add(copy).and_then(|l| l.checked_add(n));
        if !matches!(end, Some(end) if end <= max_out) {
            return Err(DeltaError::TooLarge { max_out });
        }
        // The entry fits in the output limit (so `n + add + copy` cannot overflow below); the
        // base's range is checked before any byte is read (`pos` is an i128: no seek overflows).
        let start = usize::try_from(pos).map_err(|_| corrupt("seeks before the base's start"))?;
        let end = start
            .checked_add(usize::try_from(add).map_err(|_| corrupt("entry too long"))?)
            .filter(|&end| end <= base.len())
            .ok_or_else(|| corrupt("reads past the base's end"))?;
        let mut at = start;
        while at < end {
            let k = (end - at).min(buf.len());
            match read_full(&mut dec, &mut buf[..k]) {
                Ok(got) if got == k => {}
                Ok(_) => return Err(corrupt("truncated in an entry's added bytes")),
                Err(e) => return Err(classify(&dec, e)),
            }
            for (b, o) in buf[..k].iter_mut().zip(&base[at..at + k]) {
                *b = b.wrapping_add(*o);
            }
            out.write_all(&buf[..k]).map_err(DeltaError::Write)?;
            at += k;
        }
        let mut left = copy;
        while left > 0 {
            let k = left.min(buf.len() as u64) as usize;
            match read_full(&mut dec, &mut buf[..k]) {
                Ok(got) if got == k => {}
                Ok(_) => return Err(corrupt("truncated in an entry's copied bytes")),
                Err(e) => return Err(classify(&dec, e)),
            }
            out.write_all(&buf[..k]).map_err(DeltaError::Write)?;
            left -= k as u64;
        }
        n += add + copy;
        pos = end as i128 + seek;
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
        // An empty patch lacks the format tag: it is not an empty file.
        let e = apply(&base, &[], max).unwrap_err();
        assert!(matches!(e, DeltaError::Corrupt(_)), "{e:?}");
        assert!(e.to_string().contains("format tag"), "{e}");
        assert!(matches!(
            apply(&base, b"not a delta at all, and long enough", max).unwrap_err(),
            DeltaError::Corrupt(_)
        ));
        // The tag, then no zstd frame.
        let mut p = MAGIC.to_vec();
        p.extend_from_slice(b"not a zstd frame");
        assert!(matches!(
            apply(&base, &p, max).unwrap_err(),
            DeltaError::Corrupt(_)
        ));
        // Another format: a zstd patch-from delta (the format before bsdiff), a raw bsdiff patch.
        let patch_from = {
            let mut e =
                zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), 3, &base[..]).unwrap();
            e.write_all(&target).unwrap();
            e.finish().unwrap()
        };
        let mut raw = Vec::new();
        bsdiff::diff(&base, &target, &mut raw).unwrap();
        for foreign in [&patch_from, &raw] {
            let e = apply(&base, foreign, max).unwrap_err();
            assert!(matches!(e, DeltaError::Corrupt(_)), "{e}");
        }
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
            let mut e = zstd::stream::write::Encoder::new(MAGIC.to_vec(), 1).unwrap();
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
                // Random bytes behind the format tag and a valid frame magic number.
                let mut p = MAGIC.to_vec();
                p.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd]);
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

    /// A delta made of the given bsdiff entries (control triple, added bytes, copied bytes),
    /// as [`encode`] frames them.
    fn framed(entries: &[([u64; 3], &[u8], &[u8])]) -> Vec<u8> {
        let mut raw = Vec::new();
        for (control, add, copy) in entries {
            for w in control {
                raw.extend_from_slice(&w.to_le_bytes());
            }
            raw.extend_from_slice(add);
            raw.extend_from_slice(copy);
        }
        let mut p = MAGIC.to_vec();
        p.extend_from_slice(&zstd::encode_all(&raw[..], 1).unwrap());
        p
    }

    #[test]
    fn hostile_entries_are_refused_before_anything_is_allocated_or_written() {
        let base = noise(3, 1000);
        // A seek backwards, in sign-magnitude.
        let neg = |v: u64| v | 1 << 63;
        // A hand-made patch: 10 bytes added to the base's first 10, 3 copied, back 5, 5 more.
        let good = framed(&[
            ([10, 3, neg(5)], &[1; 10], b"xyz"),
            ([5, 0, 0], &[0; 5], b""),
        ]);
        let mut want: Vec<u8> = base[..10].iter().map(|b| b.wrapping_add(1)).collect();
        want.extend_from_slice(b"xyz");
        want.extend_from_slice(&base[5..10]);
        assert_eq!(apply(&base, &good, 18).unwrap(), want);
        // Lengths that claim more than the limit, up to overflowing: refused, nothing written.
        for control in [
            [u64::MAX, 0, 0],
            [0, u64::MAX, 0],
            [u64::MAX, u64::MAX, 0],
            [19, 0, 0],
        ] {
            let mut out = Vec::new();
            let e = decode(&base, &framed(&[(control, b"", b"")])[..], &mut out, 18).unwrap_err();
            assert!(
                matches!(e, DeltaError::TooLarge { max_out: 18 }),
                "{control:?}: {e}"
            );
            assert!(out.is_empty());
        }
        // Within the limit, but reading past the base's end or before its start: corrupt.
        let max = 1 << 20;
        for entries in [
            vec![([1001, 0, 0], &[0u8; 1001][..], &b""[..])],
            vec![([10, 0, 991], &[0; 10], b""), ([1, 0, 0], &[0], b"")],
            vec![([0, 0, neg(1)], &[], b""), ([1, 0, 0], &[0], b"")],
            vec![
                ([0, 0, neg(u64::MAX >> 1)], &[], b""),
                ([1, 0, 0], &[0], b""),
            ],
        ] {
            let e = apply(&base, &framed(&entries), max).unwrap_err();
            assert!(matches!(e, DeltaError::Corrupt(_)), "{e}");
        }
        // A seek that lands exactly on the end is fine while nothing more is read from the base.
        let end = framed(&[([10, 0, 990], &[0; 10], b""), ([0, 2, 0], b"", b"ab")]);
        assert_eq!(apply(&base, &end, max).unwrap().len(), 12);
        // Lengths the patch does not carry: truncated.
        for (control, add, copy) in [
            ([10, 0, 0], &[0u8; 9][..], &b""[..]),
            ([0, 10, 0], &[], &[7; 9]),
        ] {
            let e = apply(&base, &framed(&[(control, add, copy)]), max).unwrap_err();
            assert!(matches!(e, DeltaError::Corrupt(_)), "{e}");
            assert!(e.to_string().contains("truncated"), "{e}");
        }
        // Empty entries, more than the output has bytes: refused, without decoding them all.
        let empty = framed(&vec![([0, 0, 0], &b""[..], &b""[..]); 20]);
        assert_eq!(apply(&base, &empty, 19).unwrap(), Vec::<u8>::new());
        let e = apply(&base, &empty, 18).unwrap_err();
        assert!(e.to_string().contains("more entries"), "{e}");
        // A control entry cut short.
        let mut p = MAGIC.to_vec();
        p.extend_from_slice(&zstd::encode_all(&[0u8; 23][..], 1).unwrap());
        assert!(apply(&base, &p, max)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
    }

    #[test]
    fn the_window_covers_the_patch_up_to_the_cap() {
        assert_eq!(window_log(0), 10);
        assert_eq!(window_log(14_000_000), 24);
        assert_eq!(window_log(1 << 26), 26);
        assert_eq!(window_log(1 << 30), WINDOW_LOG_MAX);
    }
}
