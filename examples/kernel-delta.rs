//! `cargo run --release --example kernel-delta -- BASE TARGET`: the delta `stratos publish`
//! writes from BASE to TARGET (`stratos::archive::delta`: bsdiff, compressed with zstd), timed,
//! applied back and checked, and TARGET compressed as `publish` stores it (`<sha256>.zst`, which
//! a delta must beat); prints one JSON object (sizes in bytes, times in seconds). Used by
//! `ci/bench-kernel-delta`.

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, target] = args.as_slice() else {
        return Err("usage: kernel-delta BASE TARGET".into());
    };
    let read = |p: &String| std::fs::read(p).map_err(|e| format!("reading {p}: {e}"));
    let (base, target) = (read(base)?, read(target)?);
    let t = Instant::now();
    let delta = stratos::archive::delta::encode(&base, &target)?;
    let encode = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut out = Vec::with_capacity(target.len());
    stratos::archive::delta::decode(&base, &delta[..], &mut out, target.len() as u64)?;
    let decode = t.elapsed().as_secs_f64();
    if out != target {
        return Err("the delta did not decode to TARGET".into());
    }
    let t = Instant::now();
    let level = stratos::channel::operator::OBJECT_LEVEL;
    let compressed = stratos::archive::zst::compress(&target, level)?;
    let compress = t.elapsed().as_secs_f64();
    let json = serde_json::json!({
        "compressed_bytes": compressed.len(),
        "compressed_level": level,
        "compress_seconds": (compress * 1000.0).round() / 1000.0,
        "delta_bytes": delta.len(),
        "encode_seconds": (encode * 1000.0).round() / 1000.0,
        "decode_seconds": (decode * 1000.0).round() / 1000.0,
        "level": stratos::archive::delta::LEVEL,
    });
    println!("{json}");
    Ok(())
}
