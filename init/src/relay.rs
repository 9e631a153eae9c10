//! The runtime's output on its way to the console: cut into lines, each behind a prefix no
//! line of the init's carries, control characters escaped, long lines cut into pieces without
//! losing a byte, and paced so a flood cannot starve the console (the runtime then blocks in
//! write(), as it would on a slow terminal: nothing is dropped).

use stratos_wire::control::{cut_point, escape_into, RELAY_CONT_PREFIX, RELAY_PIECE, RELAY_PREFIX};

/// Splits a byte stream into console lines.
#[derive(Debug, Default)]
pub struct Relay {
    /// The current line so far (less than [`RELAY_PIECE`] bytes).
    line: Vec<u8>,
    /// The current line is the continuation of a cut one.
    cont: bool,
}

impl Relay {
    /// Feeds output; each finished console line (without a newline) goes to `emit`.
    pub fn feed(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(String)) {
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.push(&bytes[..i], emit);
                    self.end_line(emit);
                    bytes = &bytes[i + 1..];
                }
                None => {
                    self.push(bytes, emit);
                    bytes = &[];
                }
            }
        }
    }

    /// The output ended: a last line without a newline is emitted as it is.
    pub fn finish(&mut self, emit: &mut impl FnMut(String)) {
        if !self.line.is_empty() {
            self.end_line(emit);
        }
    }

    fn push(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(String)) {
        while !bytes.is_empty() {
            let room = RELAY_PIECE - self.line.len();
            let take = room.min(bytes.len());
            self.line.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.line.len() == RELAY_PIECE && !bytes.is_empty() {
                // Full and more to come: cut (at a character boundary), keep the rest.
                let at = cut_point(&self.line, RELAY_PIECE - 1).max(1);
                let rest = self.line.split_off(at);
                emit(self.render());
                self.line = rest;
                self.cont = true;
            }
        }
    }

    fn end_line(&mut self, emit: &mut impl FnMut(String)) {
        emit(self.render());
        self.line.clear();
        self.cont = false;
    }

    fn render(&self) -> String {
        let mut s = String::with_capacity(self.line.len() + 8);
        s.push_str(if self.cont {
            RELAY_CONT_PREFIX
        } else {
            RELAY_PREFIX
        });
        escape_into(&self.line, &mut s);
        s
    }
}

/// The relay's pace: `rate` bytes a second on average, bursts of up to `burst`.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: u64,
    burst: u64,
    tokens: u64,
    last_ns: u64,
}

/// Bytes a second the relay writes to the console at most, over time.
pub const RELAY_RATE: u64 = 1 << 20;
/// What it may write at once after a quiet moment.
pub const RELAY_BURST: u64 = 256 << 10;

impl Bucket {
    pub fn new(rate: u64, burst: u64, now_ns: u64) -> Self {
        Bucket {
            rate,
            burst,
            tokens: burst,
            last_ns: now_ns,
        }
    }

    /// Takes `n` bytes at `now_ns`; returns how long (ns) to wait before writing them.
    pub fn take(&mut self, n: u64, now_ns: u64) -> u64 {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = now_ns;
        let earned = (elapsed as u128 * self.rate as u128 / 1_000_000_000) as u64;
        self.tokens = self.tokens.saturating_add(earned).min(self.burst);
        if self.tokens >= n {
            self.tokens -= n;
            return 0;
        }
        let short = n - self.tokens;
        self.tokens = 0;
        let wait = (short as u128 * 1_000_000_000).div_ceil(self.rate as u128) as u64;
        // The wait pays for the shortfall: the clock moves on as if it had passed.
        self.last_ns = now_ns.saturating_add(wait);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratos_wire::control::unescape;

    fn relay(chunks: &[&[u8]]) -> Vec<String> {
        let mut r = Relay::default();
        let mut out = Vec::new();
        for c in chunks {
            r.feed(c, &mut |l| out.push(l));
        }
        r.finish(&mut |l| out.push(l));
        out
    }

    /// Joins relayed lines back into the bytes the runtime wrote.
    fn rejoin(lines: &[String]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            if let Some(rest) = l.strip_prefix(RELAY_CONT_PREFIX) {
                out.extend(unescape(rest).unwrap());
            } else {
                if i > 0 {
                    out.push(b'\n');
                }
                out.extend(unescape(l.strip_prefix(RELAY_PREFIX).unwrap()).unwrap());
            }
        }
        out
    }

    #[test]
    fn lines_are_prefixed_and_escaped() {
        let out = relay(&[b"hello\nstratos-phase runtime_ready 1\n\x1b[2Jx", b"y\n"]);
        assert_eq!(
            out,
            [
                "fn> hello",
                "fn> stratos-phase runtime_ready 1",
                "fn> \\x1b[2Jxy"
            ]
        );
        // An unterminated line is still a line of its own: nothing of the init's is glued on.
        assert_eq!(relay(&[b"stratos-phase x "]), ["fn> stratos-phase x "]);
    }

    #[test]
    fn a_one_mib_line_is_cut_without_losing_a_byte() {
        let mut line = Vec::new();
        let mut n = 0u32;
        while line.len() < 1 << 20 {
            line.extend(format!("{n:08} ").as_bytes());
            n += 1;
        }
        line.extend("é\x07\u{9b}".as_bytes());
        let mut input = line.clone();
        input.push(b'\n');
        input.extend(b"next");
        // Fed in odd-sized chunks.
        let chunks: Vec<&[u8]> = input.chunks(4093).collect();
        let out = relay(&chunks);
        assert!(out.len() > 256, "{}", out.len());
        assert!(out
            .iter()
            .all(|l| l.len() <= RELAY_PIECE * 4 + RELAY_PREFIX.len()));
        assert_eq!(
            out.iter().filter(|l| l.starts_with(RELAY_PREFIX)).count(),
            2
        );
        assert_eq!(rejoin(&out), input);
    }

    #[test]
    fn the_bucket_paces_a_flood() {
        let mut b = Bucket::new(1000, 100, 0);
        assert_eq!(b.take(100, 0), 0);
        // 50 more bytes right away: 50 ms at 1000 B/s.
        assert_eq!(b.take(50, 0), 50_000_000);
        // Over a long run the average holds: 10 000 bytes take ~10 s.
        let mut now = 50_000_000;
        let mut waited = 0;
        for _ in 0..100 {
            let w = b.take(100, now);
            waited += w;
            now += w;
        }
        assert!(
            (9_900_000_000..=10_100_000_000).contains(&waited),
            "{waited}"
        );
        // After a quiet minute, one burst is free again, not a minute's worth.
        now += 60_000_000_000;
        assert_eq!(b.take(100, now), 0);
        assert!(b.take(100, now) > 0);
    }
}
