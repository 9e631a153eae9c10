//! zstd compression with fixed parameters, so equal input gives equal output.
//!
//! zstd's multi-threaded output does not depend on the number of workers (>= 1), but differs
//! from single-threaded mode: always use the multi-threaded path. The level and the library
//! version (pinned in Cargo.lock) are recorded in the manifest.

use std::io::Write;

/// The compression level of every artifact of a release build.
pub const LEVEL: i32 = 19;

/// The level of a `stratos build --dev` image: seconds instead of minutes, larger artifacts,
/// never published (the manifest says `"dev": true`).
pub const DEV_LEVEL: i32 = 3;

/// The bundled libzstd version, e.g. `1.5.7`.
pub fn library_version() -> String {
    let v = zstd::zstd_safe::version_number();
    format!("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100)
}

pub fn compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 8)) as u32;
    let mut enc = zstd::stream::Encoder::new(Vec::with_capacity(data.len() / 3), level)?;
    enc.multithread(workers)?;
    enc.include_checksum(true)?;
    enc.set_pledged_src_size(Some(data.len() as u64))?;
    enc.write_all(data)?;
    enc.finish()
}

pub fn decompress(data: &[u8]) -> std::io::Result<Vec<u8>> {
    zstd::stream::decode_all(data)
}

/// Decompresses at most `limit` output bytes, failing beyond (for untrusted input).
pub fn decompress_capped(data: &[u8], limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    let dec = zstd::stream::Decoder::new(data)?;
    dec.take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "decompressed size exceeds {limit} bytes"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_stable() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let a = super::compress(&data, super::LEVEL).unwrap();
        let b = super::compress(&data, super::LEVEL).unwrap();
        assert_eq!(a, b);
        assert_eq!(super::decompress(&a).unwrap(), data);
        let dev = super::compress(&data, super::DEV_LEVEL).unwrap();
        assert_eq!(dev, super::compress(&data, super::DEV_LEVEL).unwrap());
        assert_ne!(dev, a);
        assert_eq!(super::decompress(&dev).unwrap(), data);
        assert!(super::decompress_capped(&a, 10).is_err());
        assert!(super::library_version().starts_with("1."));
    }
}
