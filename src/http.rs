//! A small blocking HTTP/1.0 client over plain TCP, for invoking functions through QEMU's
//! forwarded ports and reading release repositories. Loopback or any host; no TLS.
//!
//! Every request is bounded in size (`limit`) and in time ([`Limits`]): connecting, and any
//! silence from the server, may last at most `timeout`; after a grace period of `timeout` the
//! response must keep arriving at `min_rate` on average. So a response of at most N bytes takes
//! at most `timeout + N / min_rate`, whatever the server does (a server dripping one byte every
//! few seconds is cut off soon after the grace period, not after a year).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("talking to {0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: no response (the connection closed before any bytes arrived)")]
    Empty(String),
    #[error("{0}: malformed HTTP response")]
    Malformed(String),
    #[error("{0}: response larger than the {1}-byte limit")]
    TooLarge(String, u64),
    /// Where a streamed body goes refused it ([`stream`]); the caller names the place.
    #[error("storing the response: {0}")]
    Write(std::io::Error),
    /// A `206` that is not the range asked for: another range, or fewer bytes.
    #[error("{0}: a bad answer to a range request: {1}")]
    BadRange(String, String),
    /// A range request answered with another status than `206` ([`get_range`] stops reading
    /// at once and says which).
    #[error("a range request answered with HTTP {0}")]
    NotPartial(u16),
    /// The connection closed before the body its `Content-Length` announced was complete.
    #[error("{0}: the connection closed after {1} of the {2} bytes announced")]
    ShortBody(String, u64, u64),
    /// The server answered with a status the client cannot use.
    #[error("talking to {0}: the server answered HTTP {1}")]
    Status(String, u16),
    /// The server was too slow: silent for longer than the time-out, or below the minimum rate.
    #[error("{what}: timed out after {:.1}s: {why}", after.as_secs_f64())]
    TimedOut {
        what: String,
        after: Duration,
        why: String,
    },
}

/// How long one request may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connecting, any silence from the server, and the grace period before `min_rate` applies.
    pub timeout: Duration,
    /// Bytes per second the response must average after the grace period (0: no minimum).
    pub min_rate: u64,
}

impl Limits {
    /// 64 KiB/s: a 1 GiB artifact may take up to ~4.6 hours, a 1 MiB document 16 s (plus the
    /// grace period).
    pub const DEFAULT_MIN_RATE: u64 = 64 << 10;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    pub fn new(timeout: Duration) -> Limits {
        Limits {
            timeout,
            min_rate: Self::DEFAULT_MIN_RATE,
        }
    }

    /// The longest a response of at most `bytes` bytes may take.
    pub fn deadline_for(&self, bytes: u64) -> Duration {
        self.timeout + self.time_for(bytes)
    }

    /// Time `bytes` take at exactly `min_rate` (unbounded without a minimum rate).
    fn time_for(&self, bytes: u64) -> Duration {
        if self.min_rate == 0 {
            return Duration::MAX / 4;
        }
        Duration::from_secs_f64(bytes as f64 / self.min_rate as f64)
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::new(Self::DEFAULT_TIMEOUT)
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

/// `1.5 KiB/s`-style rate for messages.
fn rate(bytes_per_s: u64) -> String {
    if bytes_per_s >= 1 << 10 && bytes_per_s % (1 << 10) == 0 {
        format!("{} KiB/s", bytes_per_s >> 10)
    } else {
        format!("{bytes_per_s} bytes/s")
    }
}

/// Sends one request and reads the whole response (at most `limit` bytes, within `limits`).
pub fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    body: &[u8],
    limits: &Limits,
    limit: u64,
) -> Result<Response, HttpError> {
    let who = format!("{addr}{path}");
    let mut raw = Vec::new();
    exchange(addr, method, host, path, body, limits, "", &mut |chunk| {
        raw.extend_from_slice(chunk);
        if raw.len() as u64 > limit {
            return Err(HttpError::TooLarge(who.clone(), limit));
        }
        Ok(())
    })?;
    if raw.is_empty() {
        return Err(HttpError::Empty(who));
    }
    parse_response(&raw).ok_or(HttpError::Malformed(who))
}

/// The status line and headers of a response whose body went elsewhere ([`stream`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

/// The most header bytes [`stream`] accepts.
pub const MAX_HEAD: u64 = 16 << 10;

/// Sends one request and writes the body of a `200` response to `out` as it arrives (the body
/// of any other status is read and dropped), within `limits` (the whole exchange, headers
/// included, as for [`request`]). A body of more than `body_limit` bytes is
/// [`HttpError::TooLarge`], stopped there; headers longer than [`MAX_HEAD`] are
/// [`HttpError::Malformed`]; a failure of `out` is [`HttpError::Write`]. Returns the head and
/// the number of body bytes.
#[allow(clippy::too_many_arguments)]
pub fn stream(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    body: &[u8],
    limits: &Limits,
    body_limit: u64,
    out: &mut dyn Write,
) -> Result<(Head, u64), HttpError> {
    stream_inner(
        addr, method, host, path, body, limits, body_limit, None, out,
    )
}

/// What a server answered to a request for a byte range ([`get_range`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// `206` with exactly the bytes its `Content-Range` says (the ones asked for), written
    /// out; how many.
    Partial(u64),
    /// `200`: the server ignores `Range` and started sending the whole object. The connection
    /// was closed at once (nothing was written out); fetch the whole object instead.
    Ignored,
    /// Any other status (`404`, `416`…), its body dropped.
    Status(u16),
}

/// GETs the bytes of `path` from `start` to `end` (exclusive; to the end of the object when
/// `None`, at most `cap` bytes) with a `Range` request and writes them to `out` as they arrive.
/// A `206` must say `Content-Range: bytes START-LAST/…` for the range asked for and carry
/// exactly those bytes: anything else is [`HttpError::BadRange`] (what was written by then is
/// the caller's to throw away).
pub fn get_range(
    addr: SocketAddr,
    host: &str,
    path: &str,
    (start, end): (u64, Option<u64>),
    cap: u64,
    limits: &Limits,
    out: &mut dyn Write,
) -> Result<RangeAnswer, HttpError> {
    let who = format!("{addr}{path}");
    let limit = end.map_or(cap, |e| e.saturating_sub(start).min(cap));
    let r = stream_inner(
        addr,
        "GET",
        host,
        path,
        &[],
        limits,
        limit,
        Some((start, end)),
        out,
    );
    let (head, n) = match r {
        Err(HttpError::NotPartial(200)) => return Ok(RangeAnswer::Ignored),
        Err(HttpError::NotPartial(s)) => return Ok(RangeAnswer::Status(s)),
        Err(e) => return Err(e),
        Ok(x) => x,
    };
    if head.status != 206 {
        return Ok(RangeAnswer::Status(head.status));
    }
    let want = check_content_range(&who, &head, (start, end))?;
    if n != want {
        return Err(HttpError::ShortBody(who, n, want));
    }
    Ok(RangeAnswer::Partial(n))
}

/// The number of bytes a `206` answer to a request for `start..end` carries, from its
/// `Content-Range` (`bytes FIRST-LAST/TOTAL`), which must be the range asked for.
fn check_content_range(
    who: &str,
    head: &Head,
    (start, end): (u64, Option<u64>),
) -> Result<u64, HttpError> {
    let bad = |why: String| HttpError::BadRange(who.to_owned(), why);
    let said = head
        .headers
        .iter()
        .find(|(k, _)| k == "content-range")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| bad("a 206 answer without Content-Range".into()))?;
    let asked = match end {
        Some(e) => format!("bytes {start}-{}", e - 1),
        None => format!("bytes {start}-"),
    };
    let parsed = said
        .strip_prefix("bytes ")
        .and_then(|r| r.split_once('/'))
        .and_then(|(r, _)| r.split_once('-'))
        .and_then(|(f, l)| Some((f.parse::<u64>().ok()?, l.parse::<u64>().ok()?)));
    match parsed {
        Some((first, last))
            if first == start && last >= first && end.map_or(true, |e| last == e - 1) =>
        {
            Ok(last - start + 1)
        }
        _ => Err(bad(format!("asked for {asked}, the answer says {said:?}"))),
    }
}

/// [`stream`], or with `range` a `Range` request whose `206` body goes to `out` (another status
/// ends the exchange at once with [`HttpError::NotPartial`]). A body shorter than its
/// `Content-Length` is [`HttpError::ShortBody`].
#[allow(clippy::too_many_arguments)]
fn stream_inner(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    body: &[u8],
    limits: &Limits,
    body_limit: u64,
    range: Option<(u64, Option<u64>)>,
    out: &mut dyn Write,
) -> Result<(Head, u64), HttpError> {
    let who = format!("{addr}{path}");
    let (wanted, extra) = match range {
        Some((start, Some(end))) => (206, format!("Range: bytes={start}-{}\r\n", end - 1)),
        Some((start, None)) => (206, format!("Range: bytes={start}-\r\n")),
        None => (200, String::new()),
    };
    // Until the head is complete: its bytes; then the parsed head and the body's length.
    let mut head_bytes = Vec::new();
    let mut head: Option<Head> = None;
    let mut body_len = 0u64;
    let mut take_body = |head: &Head, bytes: &[u8], body_len: &mut u64| {
        if let Some(r) = range {
            if head.status != 206 {
                return Err(HttpError::NotPartial(head.status));
            }
            // Nothing is written out before the answer says it is the range asked for.
            if *body_len == 0 {
                check_content_range(&who, head, r)?;
            }
        }
        *body_len += bytes.len() as u64;
        if *body_len > body_limit {
            return Err(HttpError::TooLarge(who.clone(), body_limit));
        }
        if head.status == wanted {
            out.write_all(bytes).map_err(HttpError::Write)?;
        }
        Ok(())
    };
    exchange(
        addr,
        method,
        host,
        path,
        body,
        limits,
        &extra,
        &mut |chunk| {
            if let Some(h) = &head {
                return take_body(h, chunk, &mut body_len);
            }
            head_bytes.extend_from_slice(chunk);
            let Some((end, body_at)) = head_end(&head_bytes) else {
                if head_bytes.len() as u64 > MAX_HEAD {
                    return Err(HttpError::Malformed(who.clone()));
                }
                return Ok(());
            };
            let h =
                parse_head(&head_bytes[..end]).ok_or_else(|| HttpError::Malformed(who.clone()))?;
            let rest = head_bytes.split_off(body_at);
            take_body(&h, &rest, &mut body_len)?;
            head = Some(h);
            Ok(())
        },
    )?;
    match head {
        Some(h) => {
            let announced = h
                .headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse::<u64>().ok());
            match announced {
                Some(n) if h.status == wanted && body_len < n => {
                    Err(HttpError::ShortBody(who, body_len, n))
                }
                _ => Ok((h, body_len)),
            }
        }
        None if head_bytes.is_empty() => Err(HttpError::Empty(who)),
        None => Err(HttpError::Malformed(who)),
    }
}

/// Sends one request and hands every chunk of the response to `on_data` as it arrives, until
/// the server closes the connection, within `limits`. Returns the number of bytes received.
#[allow(clippy::too_many_arguments)]
fn exchange(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    body: &[u8],
    limits: &Limits,
    extra_headers: &str,
    on_data: &mut dyn FnMut(&[u8]) -> Result<(), HttpError>,
) -> Result<u64, HttpError> {
    let who = format!("{addr}{path}");
    let start = Instant::now();
    let timed_out = |why: String| HttpError::TimedOut {
        what: who.clone(),
        after: start.elapsed(),
        why,
    };
    let secs = limits.timeout.as_secs_f64();
    let mut s = TcpStream::connect_timeout(&addr, limits.timeout).map_err(|e| {
        if is_timeout(&e) {
            timed_out(format!("no connection within {secs:.1}s"))
        } else {
            HttpError::Connect(who.clone(), e)
        }
    })?;
    s.set_write_timeout(Some(limits.timeout))
        .map_err(|e| HttpError::Io(who.clone(), e))?;
    // Fewer round trips for small requests; a failure here changes only latency.
    if let Err(e) = s.set_nodelay(true) {
        return Err(HttpError::Io(who, e));
    }
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: stratos\r\nConnection: close\r\n"
    );
    req.push_str(extra_headers);
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .and_then(|_| s.write_all(body))
        .map_err(|e| {
            if is_timeout(&e) {
                timed_out(format!("the server took no data for {secs:.1}s"))
            } else {
                HttpError::Io(who.clone(), e)
            }
        })?;
    let mut received = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        // The transfer falls behind the minimum rate at grace + received / rate.
        let behind_at = limits.timeout + limits.time_for(received);
        let elapsed = start.elapsed();
        let slow = || {
            format!(
                "{received} bytes received, below the minimum of {} after a {secs:.1}s grace period",
                rate(limits.min_rate)
            )
        };
        if elapsed >= behind_at {
            return Err(timed_out(slow()));
        }
        let until_behind = behind_at - elapsed;
        let wait = limits.timeout.min(until_behind);
        s.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .map_err(|e| HttpError::Io(who.clone(), e))?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                received += n as u64;
                on_data(&buf[..n])?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                return Err(timed_out(if wait < limits.timeout {
                    slow()
                } else {
                    format!("no data for {secs:.1}s ({received} bytes received)")
                }));
            }
            Err(e) => return Err(HttpError::Io(who, e)),
        }
    }
    Ok(received)
}

/// A GET of at most 64 MiB; `timeout` bounds connecting and any silence (see [`Limits`]).
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response, HttpError> {
    request(
        addr,
        "GET",
        &addr.to_string(),
        path,
        &[],
        &Limits::new(timeout),
        64 << 20,
    )
}

/// Parses status line, headers and body of a complete response.
pub fn parse_response(raw: &[u8]) -> Option<Response> {
    let (end, body_at) = head_end(raw)?;
    let Head { status, headers } = parse_head(&raw[..end])?;
    Some(Response {
        status,
        headers,
        body: raw[body_at..].to_vec(),
    })
}

/// Where the head of a response ends and its body begins, once the blank line has arrived.
fn head_end(raw: &[u8]) -> Option<(usize, usize)> {
    raw.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| {
            raw.windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
        })
}

/// The status line and headers (without the blank line).
fn parse_head(head: &[u8]) -> Option<Head> {
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.lines();
    let status_line = lines.next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Head { status, headers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let r = parse_response(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhi\n").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.headers[0], ("content-type".into(), "text/plain".into()));
        assert_eq!(r.body, b"hi\n");
        assert!(parse_response(b"garbage").is_none());
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_none());
    }

    #[test]
    fn talks_to_a_local_server() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = c.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"GET /x HTTP/1.0\r\n"));
            c.write_all(b"HTTP/1.0 404 Not Found\r\n\r\nnope").unwrap();
        });
        let r = get(addr, "/x", Duration::from_secs(5)).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"nope"[..]));
        t.join().unwrap();
    }

    /// A server that answers the request, then sends `first` and one byte every `every` until
    /// the client goes away.
    fn drip(first: &'static [u8], every: Option<Duration>) -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _request = c.read(&mut buf).unwrap();
            if c.write_all(first).is_err() {
                return;
            }
            loop {
                match every {
                    Some(d) => {
                        std::thread::sleep(d);
                        if c.write_all(b"x").is_err() {
                            return;
                        }
                    }
                    // Silent: wait for the client to hang up.
                    None => {
                        if matches!(c.read(&mut buf), Ok(0) | Err(_)) {
                            return;
                        }
                    }
                }
            }
        });
        addr
    }

    #[test]
    fn http_drip_feed_times_out_at_the_minimum_rate() {
        let addr = drip(b"HTTP/1.0 200 OK\r\n\r\n", Some(Duration::from_millis(200)));
        let limits = Limits::new(Duration::from_secs(1));
        let e = request(addr, "GET", "h", "/slow", &[], &limits, 1 << 20).unwrap_err();
        assert!(matches!(e, HttpError::TimedOut { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("/slow: timed out after") && msg.contains("below the minimum of 64 KiB/s"),
            "{msg}"
        );
    }

    #[test]
    fn http_silent_server_times_out() {
        let addr = drip(b"HTTP/1.0 200", None);
        let limits = Limits {
            timeout: Duration::from_millis(300),
            min_rate: 0,
        };
        let e = request(addr, "GET", "h", "/quiet", &[], &limits, 1 << 20).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("/quiet: timed out after") && msg.contains("no data for 0.3s"),
            "{msg}"
        );
    }

    /// A server that answers one request with `response`, written in pieces of 7 bytes.
    fn answer(response: &'static [u8]) -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _request = c.read(&mut buf).unwrap();
            for piece in response.chunks(7) {
                if c.write_all(piece).and_then(|_| c.flush()).is_err() {
                    return;
                }
            }
        });
        addr
    }

    #[test]
    fn streams_the_body_of_a_200_only() {
        let limits = Limits::new(Duration::from_secs(5));
        let addr = answer(b"HTTP/1.0 200 OK\r\nContent-Type: x\r\n\r\nthe body\r\n\r\nand more");
        let mut out = Vec::new();
        let (head, n) = stream(addr, "GET", "h", "/a", &[], &limits, 100, &mut out).unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.headers, [("content-type".to_owned(), "x".to_owned())]);
        assert_eq!(out, b"the body\r\n\r\nand more");
        assert_eq!(n, out.len() as u64);
        // Another status: the body is read, not handed on.
        let addr = answer(b"HTTP/1.0 404 Not Found\r\n\r\nnope");
        let mut out = Vec::new();
        let (head, n) = stream(addr, "GET", "h", "/b", &[], &limits, 100, &mut out).unwrap();
        assert_eq!((head.status, n, out.len()), (404, 4, 0));
    }

    #[test]
    fn a_body_shorter_than_announced_is_a_short_body() {
        let limits = Limits::new(Duration::from_secs(5));
        let addr = answer(b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nabcd");
        let mut out = Vec::new();
        let e = stream(addr, "GET", "h", "/a", &[], &limits, 100, &mut out).unwrap_err();
        assert!(matches!(e, HttpError::ShortBody(_, 4, 10)), "{e:?}");
        // A range request answered 416 with a body longer than the range: the status counts.
        let addr = answer(
            b"HTTP/1.0 416 Range Not Satisfiable\r\nContent-Length: 20\r\n\r\n01234567890123456789",
        );
        let r = get_range(addr, "h", "/o", (5, None), 0, &limits, &mut Vec::new());
        assert_eq!(r.unwrap(), RangeAnswer::Status(416));
    }

    #[test]
    fn stream_stops_at_the_body_limit_and_on_garbage() {
        let limits = Limits::new(Duration::from_secs(5));
        let addr = answer(b"HTTP/1.0 200 OK\r\n\r\n0123456789X");
        let mut out = Vec::new();
        let e = stream(addr, "GET", "h", "/big", &[], &limits, 10, &mut out).unwrap_err();
        assert!(matches!(e, HttpError::TooLarge(_, 10)), "{e:?}");
        assert!(out.len() <= 10, "{}", out.len());
        let addr = answer(b"SSH-2.0-OpenSSH\r\n\r\nhello");
        let e = stream(addr, "GET", "h", "/ssh", &[], &limits, 10, &mut Vec::new()).unwrap_err();
        assert!(matches!(e, HttpError::Malformed(_)), "{e:?}");
        // A head that never ends.
        let addr = answer(&[b'x'; 20 << 10]);
        let e = stream(addr, "GET", "h", "/x", &[], &limits, 10, &mut Vec::new()).unwrap_err();
        assert!(matches!(e, HttpError::Malformed(_)), "{e:?}");
    }

    #[test]
    fn stream_reports_a_sink_that_fails() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let limits = Limits::new(Duration::from_secs(5));
        let addr = answer(b"HTTP/1.0 200 OK\r\n\r\nbody");
        let e = stream(addr, "GET", "h", "/a", &[], &limits, 10, &mut Full).unwrap_err();
        assert!(
            matches!(&e, HttpError::Write(w) if w.to_string() == "disk full"),
            "{e:?}"
        );
    }

    #[test]
    fn stream_drip_feed_times_out_at_the_minimum_rate() {
        let addr = drip(b"HTTP/1.0 200 OK\r\n\r\n", Some(Duration::from_millis(200)));
        let limits = Limits::new(Duration::from_secs(1));
        let mut out = Vec::new();
        let e = stream(addr, "GET", "h", "/slow", &[], &limits, 1 << 20, &mut out).unwrap_err();
        assert!(
            e.to_string().contains("below the minimum of 64 KiB/s"),
            "{e}"
        );
    }

    #[test]
    fn range_requests_take_exactly_the_range_asked_for() {
        let limits = Limits::new(Duration::from_secs(5));
        let get = |response: &'static [u8]| {
            let mut out = Vec::new();
            let r = get_range(
                answer(response),
                "h",
                "/o",
                (4, Some(8)),
                100,
                &limits,
                &mut out,
            );
            (r, out)
        };
        let (r, out) = get(b"HTTP/1.0 206 Partial\r\nContent-Range: bytes 4-7/20\r\n\r\nabcd");
        assert_eq!(
            (r.unwrap(), out.as_slice()),
            (RangeAnswer::Partial(4), &b"abcd"[..])
        );
        // To the end: whatever the server says is left.
        let addr = answer(b"HTTP/1.0 206 Partial\r\nContent-Range: bytes 4-9/10\r\n\r\nabcdef");
        let mut out = Vec::new();
        let r = get_range(addr, "h", "/o", (4, None), 100, &limits, &mut out);
        assert_eq!(
            (r.unwrap(), out.as_slice()),
            (RangeAnswer::Partial(6), &b"abcdef"[..])
        );
        // A server that ignores Range: nothing is written, whatever it sends.
        let (r, out) = get(b"HTTP/1.0 200 OK\r\n\r\n0123456789abcdefghij");
        assert_eq!((r.unwrap(), out.len()), (RangeAnswer::Ignored, 0));
        let (r, _) = get(b"HTTP/1.0 404 Not Found\r\n\r\nnope");
        assert_eq!(r.unwrap(), RangeAnswer::Status(404));
        // Another range, no Content-Range, too few bytes, too many.
        for bad in [
            &b"HTTP/1.0 206 Partial\r\nContent-Range: bytes 0-3/20\r\n\r\nabcd"[..],
            b"HTTP/1.0 206 Partial\r\n\r\nabcd",
            b"HTTP/1.0 206 Partial\r\nContent-Range: bytes 4-7/20\r\n\r\nabc",
            b"HTTP/1.0 206 Partial\r\nContent-Range: bytes 4-7/20\r\n\r\nabcde",
        ] {
            let leaked: &'static [u8] = Vec::leak(bad.to_vec());
            let (r, _) = get(leaked);
            let e = r.unwrap_err();
            assert!(
                matches!(
                    e,
                    HttpError::BadRange(..) | HttpError::TooLarge(..) | HttpError::ShortBody(..)
                ),
                "{e:?}"
            );
        }
    }

    #[test]
    fn deadlines_grow_with_the_size() {
        let l = Limits::default();
        assert_eq!(l.deadline_for(0), Duration::from_secs(30));
        assert_eq!(l.deadline_for(64 << 20), Duration::from_secs(30 + 1024));
    }
}
