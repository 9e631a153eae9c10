//! Request and trace ids, drawn from the kernel's random generator at each call (no state in
//! the init: a restored snapshot, whose generator the init reseeded, never repeats an id), and
//! the small codecs the server needs (base64 for the client context, JSON error documents).

use std::time::{SystemTime, UNIX_EPOCH};

/// `n` random bytes from `getrandom(2)`. It only fails without a kernel generator at all; then
/// the clock and a counter stand in (ids stay unique within this boot, not unpredictable).
fn random<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    let mut filled = 0;
    while filled < N {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return fallback(),
        }
    }
    buf
}

fn fallback<const N: usize>() -> [u8; N] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut seed = (t ^ (u128::from(n) << 64)).to_le_bytes().to_vec();
    seed.extend_from_slice(&n.to_le_bytes());
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = seed[i % seed.len()];
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh request id: a random (version 4) UUID, as Lambda's.
pub fn request_id() -> String {
    stratos_wire::uuid(random(), 4)
}

/// A fresh X-Ray trace header, for a call that brought none (`Root=1-<time>-<random>`), not
/// sampled: there is no X-Ray daemon.
pub fn trace_id() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let root: [u8; 12] = random();
    let parent: [u8; 8] = random();
    format!(
        "Root=1-{:08x}-{};Parent={};Sampled=0",
        secs & 0xffff_ffff,
        hex(&root),
        hex(&parent)
    )
}

/// Decodes standard base64 (padding optional); `None` when it is not base64.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A single leftover sextet cannot come from whole bytes.
    (bits < 6).then_some(out)
}

/// `{"errorMessage":…,"errorType":…}`, Lambda's error document.
pub fn error_document(error_type: &str, message: &str) -> Vec<u8> {
    format!(
        "{{\"errorMessage\":{},\"errorType\":{}}}",
        json_string(message),
        json_string(error_type)
    )
    .into_bytes()
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
