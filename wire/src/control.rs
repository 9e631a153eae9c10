//! The control channel: what PID 1 tells the host, and how the runtime's output is relayed.
//!
//! Everything the host decides about a boot (phases, readiness, metrics, how the runtime ended,
//! restarts, fatal errors, power-off) arrives as [`Control`] messages on a virtio-serial port,
//! [`CONTROL_PORT`], that only the init holds: it opens the port before it starts the runtime,
//! close-on-exec, and the device node is root's (`0600`); the kernel lets one process hold a
//! port at a time. The serial console is for people: the init relays the runtime's
//! stdout/stderr there through pipes, line by line, each line behind [`RELAY_PREFIX`] (or
//! [`RELAY_CONT_PREFIX`] for the rest of a cut line), control characters escaped
//! ([`escape_into`]). The host never reads a decision from the console.
//!
//! Messages are one JSON object per line (`\n`-terminated, at most [`MAX_CONTROL_LINE`]
//! bytes). The host writes to the same port: a restore message ([`crate::RESTORE_PREFIX`]) or
//! a metrics request ([`crate::METRICS_REQUEST`]).

use serde::{Deserialize, Serialize};

use crate::Metrics;

/// The virtio-serial port of the control channel.
pub const CONTROL_PORT: &str = "stratos.control";

/// The longest control line either side writes or accepts (a metrics reading with latency
/// histograms for every system call is well under this).
pub const MAX_CONTROL_LINE: usize = 256 * 1024;

/// Before every relayed line of the runtime's output on the console.
pub const RELAY_PREFIX: &str = "fn> ";
/// Before the continuation of a relayed line that was cut (every piece but the first).
pub const RELAY_CONT_PREFIX: &str = "fn+ ";
/// A relayed line is cut into pieces of at most this many bytes of output (before escaping).
pub const RELAY_PIECE: usize = 4096;

/// How the runtime ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    Exited { status: i32 },
    Killed { signal: i32 },
}

impl Ending {
    /// The shell's convention: the status, or 128 + the signal.
    pub fn exit_code(self) -> i32 {
        match self {
            Ending::Exited { status } => status,
            Ending::Killed { signal } => 128 + signal,
        }
    }
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Exited { status } => write!(f, "exited with status {status}"),
            Ending::Killed { signal } => write!(f, "was killed by signal {signal}"),
        }
    }
}

/// One message from the init to the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Control {
    /// The first message of a boot: the init holds the channel.
    Hello { format: u32 },
    /// Whether the init gave the guest an address (the profile's `[network]`), sent once the
    /// network is set up, before the runtime starts: without one nothing from the host can reach
    /// the function, and a host that means to call it says so at once instead of waiting.
    Network { configured: bool },
    /// A boot phase ([`crate::PHASES`], [`crate::ASYNC_PHASES`]) at CLOCK_BOOTTIME `ns`.
    Phase { name: String, ns: u64 },
    /// `MemAvailable` of the guest when the runtime became ready, KiB.
    MemoryAvailable { kib: u64 },
    /// The high-water mark of the runtime's cgroup so far, bytes.
    MemoryPeak { bytes: u64 },
    /// A metrics reading (`[observe]`).
    Metrics(Box<Metrics>),
    /// The runtime ended and is started again (restart `count` of `max`).
    Restart {
        count: u32,
        max: u32,
        ending: Ending,
    },
    /// The runtime ended for good.
    Ended { ending: Ending },
    /// The init could not get the runtime going, or keep it going.
    Fatal { message: String },
    /// A seccomp audit record (log mode): a call the baseline would deny.
    SeccompLog { record: String },
    /// Messages the init could not send (its queue was full): the host treats the run as
    /// incomplete.
    Lost { count: u64 },
    /// The machine powers off next.
    PowerOff,
}

/// The format of [`Control::Hello`] this crate speaks.
pub const CONTROL_FORMAT: u32 = 1;

impl Control {
    /// The line on the wire, with its newline.
    pub fn to_line(&self) -> String {
        // Plain strings, integers and a metrics reading of finite numbers: cannot fail.
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// One line (without its newline).
    pub fn parse(line: &[u8]) -> Result<Control, String> {
        serde_json::from_slice(line).map_err(|e| format!("malformed control message: {e}"))
    }
}

/// Appends `bytes` to `out` as printable text: printable ASCII and valid UTF-8 characters that
/// are not control characters as they are, a backslash as `\\`, tab as `\t`, carriage return as
/// `\r`, and every other byte (C0/C1 controls, DEL, bytes that are not valid UTF-8) as `\xNN`.
/// Nothing is lost: the original bytes can be read back from the text.
pub fn escape_into(bytes: &[u8], out: &mut String) {
    let mut rest = bytes;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(s) => (s, &[][..]),
            Err(e) => {
                let (ok, bad) = rest.split_at(e.valid_up_to());
                // Checked by from_utf8 up to valid_up_to.
                (std::str::from_utf8(ok).unwrap_or_default(), bad)
            }
        };
        for c in valid.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() || is_format_trap(c) => {
                    let mut b = [0u8; 4];
                    for x in c.encode_utf8(&mut b).bytes() {
                        out.push_str(&format!("\\x{x:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        if bad.is_empty() {
            break;
        }
        // One invalid byte at a time, then carry on after it.
        out.push_str(&format!("\\x{:02x}", bad[0]));
        rest = &bad[1..];
    }
}

/// Characters that reorder or hide text on a terminal (bidirectional overrides and isolates),
/// escaped like control characters.
fn is_format_trap(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `bytes` as printable text for a terminal, for display only: like [`escape_into`] but a
/// backslash stays as it is (text already escaped, such as relayed lines, is shown unchanged).
pub fn printable(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\\' {
            escape_into(&bytes[start..i], &mut out);
            out.push('\\');
            start = i + 1;
        }
    }
    escape_into(&bytes[start..], &mut out);
    out
}

/// `bytes` as printable text ([`escape_into`]).
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    escape_into(bytes, &mut s);
    s
}

/// Reads text made by [`escape`] back into bytes (for tests and for tools that want the
/// runtime's exact output from a console log). `None` for text [`escape`] cannot make.
pub fn unescape(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1)? {
            b'\\' => out.push(b'\\'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'x' => {
                let hex = text.get(i + 2..i + 4)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            _ => return None,
        }
        i += 2;
    }
    Some(out)
}

/// Where a relayed line may be cut at most `max` bytes into `bytes` without splitting a UTF-8
/// character (so both pieces stay readable): `max`, or up to 3 bytes before it.
pub fn cut_point(bytes: &[u8], max: usize) -> usize {
    if bytes.len() <= max {
        return bytes.len();
    }
    (max.saturating_sub(3)..=max)
        .rev()
        .find(|&i| i > 0 && bytes.get(i).is_some_and(|&c| (c as i8) >= -0x40))
        .unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_lossless_and_printable() {
        let samples: [&[u8]; 6] = [
            b"plain text",
            b"\x1b[2J\x1b]0;owned\x07 bell",
            b"back\\slash\ttab\rcr",
            "caf\u{e9} \u{202e}rev \u{9b}csi".as_bytes(),
            b"\xff\xfe bad \xc3",
            b"\x00\x7f",
        ];
        for s in samples {
            let e = escape(s);
            assert!(
                !e.chars().any(|c| c.is_control() || is_format_trap(c)),
                "{e:?}"
            );
            assert_eq!(unescape(&e).as_deref(), Some(s), "{e:?}");
        }
        assert_eq!(escape(b"\x1b[31m"), "\\x1b[31m");
        assert_eq!(printable(b"a\\x1b \x1b\t"), "a\\x1b \\x1b\\t");
        assert_eq!(escape("\u{9b}".as_bytes()), "\\xc2\\x9b");
    }

    #[test]
    fn cut_points_keep_characters_whole() {
        let s = "aé".repeat(10);
        let b = s.as_bytes();
        for max in 1..b.len() {
            let c = cut_point(b, max);
            assert!(c <= max && c > 0);
            assert!(std::str::from_utf8(&b[..c]).is_ok(), "{max}");
        }
        assert_eq!(cut_point(b"abc", 10), 3);
        // Not UTF-8 at all: cut where asked.
        assert_eq!(cut_point(&[0x80; 10], 4), 4);
    }

    #[test]
    fn messages_round_trip() {
        for m in [
            Control::Hello {
                format: CONTROL_FORMAT,
            },
            Control::Phase {
                name: "runtime_ready".into(),
                ns: 12,
            },
            Control::Restart {
                count: 1,
                max: 3,
                ending: Ending::Killed { signal: 9 },
            },
            Control::Ended {
                ending: Ending::Exited { status: 3 },
            },
            Control::PowerOff,
        ] {
            let l = m.to_line();
            assert!(l.ends_with('\n') && !l[..l.len() - 1].contains('\n'));
            assert_eq!(Control::parse(l.trim_end().as_bytes()).unwrap(), m);
        }
        assert!(Control::parse(b"{\"phase\":{\"name\":\"x\"}}").is_err());
        assert!(Control::parse(b"stratos-phase runtime_ready 1").is_err());
    }
}
