//! A minimal, bounded HTTP/1.1 server side: request heads, bodies (`Content-Length` or
//! chunked), responses. Every read has a ceiling: a head is at most [`MAX_HEAD`] bytes and
//! [`MAX_HEADERS`] lines, of which at most [`MAX_KEPT`] bytes are kept (longer header lines,
//! e.g. a runtime's X-Ray error cause, are read and skipped); a body is kept up to a limit the
//! caller gives, and past it only counted (and dropped) up to [`MAX_DRAIN`], so a peer can
//! never make the init hold more.

use std::io::{self, BufRead, Write};

/// The largest request head (request line and headers) read: Go's `DefaultMaxHeaderBytes`,
/// what RIE accepts (a runtime may send a large `Lambda-Runtime-Function-XRay-Error-Cause`).
pub const MAX_HEAD: usize = 1024 * 1024;
/// The most bytes of one head line kept; a longer header is skipped (a longer request line, or
/// a longer framing header, is refused).
pub const MAX_KEPT_LINE: usize = 8 * 1024;
/// The most header bytes kept from one head; headers past it are skipped, except those that
/// frame the request (which are refused when longer than [`MAX_FRAMING_VALUE`]).
pub const MAX_KEPT: usize = 16 * 1024;
/// The longest value of a header that frames the request (`Content-Length`,
/// `Transfer-Encoding`, `Connection`, `Expect`).
pub const MAX_FRAMING_VALUE: usize = 256;
/// The most empty lines skipped before a request line.
const MAX_EMPTY_LINES: usize = 4;
/// The most header lines in one head.
pub const MAX_HEADERS: usize = 64;
/// How many bytes of a body past its limit are read and dropped (so the peer, which is still
/// sending, reads the answer instead of a reset connection) before the connection is closed.
pub const MAX_DRAIN: u64 = 16 * 1024 * 1024;

/// How a request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` (0 when the request has neither header).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// The request target as sent, without its query string.
    pub path: String,
    /// Header names in lower case, in order.
    pub headers: Vec<(String, String)>,
    pub framing: Framing,
    /// The connection stays open after the answer (HTTP/1.1 without `Connection: close`).
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for `100 Continue` before its body.
    pub expect_continue: bool,
}

impl Head {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub enum HeadError {
    /// The peer closed the connection between requests (the normal end of a connection).
    Closed,
    /// The head is larger than [`MAX_HEAD`] or has more than [`MAX_HEADERS`] lines.
    TooLarge,
    /// Not HTTP/1.x as this server reads it.
    Malformed(&'static str),
    Io(io::Error),
}

/// Reads one line of at most `left` bytes (the head's remaining budget), without its line end,
/// keeping at most `keep` bytes of it in `out`; `true` when it was longer (cut).
fn read_line<R: BufRead>(
    r: &mut R,
    left: &mut usize,
    keep: usize,
    out: &mut Vec<u8>,
) -> Result<bool, HeadError> {
    out.clear();
    let mut seen = 0usize;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(HeadError::Io(e)),
        };
        if buf.is_empty() {
            return Err(if seen == 0 {
                HeadError::Closed
            } else {
                HeadError::Malformed("the connection ended inside a request head")
            });
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if take > *left {
            return Err(HeadError::TooLarge);
        }
        *left -= take;
        seen += take;
        let room = (keep + 2).saturating_sub(out.len());
        out.extend_from_slice(&buf[..take.min(room)]);
        r.consume(take);
        if done {
            let cut = seen > out.len();
            if !cut {
                out.pop();
                if out.last() == Some(&b'\r') {
                    out.pop();
                }
            }
            let long = out.len() > keep;
            out.truncate(keep);
            return Ok(cut || long);
        }
    }
}

/// Headers that decide how the request is framed or the connection kept: never skipped.
fn frames(name: &str) -> bool {
    matches!(
        name,
        "content-length" | "transfer-encoding" | "connection" | "expect"
    )
}

/// The request line: method, path (without its query), whether HTTP/1.1.
fn read_request_line<R: BufRead>(
    r: &mut R,
    left: &mut usize,
) -> Result<(String, String, bool), HeadError> {
    let mut line = Vec::new();
    let mut empty = 0;
    loop {
        if read_line(r, left, MAX_KEPT_LINE, &mut line)? {
            return Err(HeadError::TooLarge);
        }
        if !line.is_empty() {
            break;
        }
        empty += 1;
        if empty > MAX_EMPTY_LINES {
            return Err(HeadError::Malformed(
                "empty lines instead of a request line",
            ));
        }
    }
    let request_line = std::str::from_utf8(&line)
        .map_err(|_| HeadError::Malformed("request line is not UTF-8"))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed(
            "request line is not METHOD TARGET VERSION",
        ));
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(HeadError::Malformed("not HTTP/1.0 or HTTP/1.1")),
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HeadError::Malformed("bad method"));
    }
    if !target.starts_with('/') {
        return Err(HeadError::Malformed(
            "request target is not an absolute path",
        ));
    }
    let path = target.split('?').next().unwrap_or(target).to_owned();
    let method = method.to_owned();
    Ok((method, path, http11))
}

/// The header lines up to the empty line: names in lower case; long or surplus ones skipped
/// (see [`MAX_KEPT`]).
fn read_headers<R: BufRead>(
    r: &mut R,
    left: &mut usize,
) -> Result<Vec<(String, String)>, HeadError> {
    let mut line = Vec::new();
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut kept = 0usize;
    let mut lines = 0usize;
    loop {
        let cut = read_line(r, left, MAX_KEPT_LINE, &mut line)?;
        if line.is_empty() && !cut {
            break;
        }
        lines += 1;
        if lines > MAX_HEADERS {
            return Err(HeadError::TooLarge);
        }
        // A cut line may end inside a UTF-8 sequence: only its name must be whole.
        let text = String::from_utf8_lossy(&line);
        let Some((name, value)) = text.split_once(':') else {
            return Err(HeadError::Malformed("header line without ':'"));
        };
        if name.is_empty()
            || name
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(HeadError::Malformed("bad header name"));
        }
        let name = name.to_ascii_lowercase();
        let value = value.trim();
        if frames(&name) {
            if cut || value.len() > MAX_FRAMING_VALUE {
                return Err(HeadError::Malformed("a framing header is too long"));
            }
        } else if cut || kept + name.len() + value.len() > MAX_KEPT {
            // Not one this server reads far enough to need it whole: skipped.
            continue;
        } else if std::str::from_utf8(&line).is_err() {
            return Err(HeadError::Malformed("header is not UTF-8"));
        }
        kept += name.len() + value.len();
        headers.push((name, value.to_owned()));
    }
    Ok(headers)
}

/// Reads a request head. A few empty lines before the request line are skipped (RFC 9112
/// §2.2).
pub fn read_head<R: BufRead>(r: &mut R) -> Result<Head, HeadError> {
    let mut left = MAX_HEAD;
    let (method, path, http11) = read_request_line(r, &mut left)?;
    let headers = read_headers(r, &mut left)?;
    let mut head = Head {
        method,
        path,
        headers,
        framing: Framing::Length(0),
        keep_alive: http11,
        expect_continue: false,
    };
    head.framing = framing(&head)?;
    for (name, value) in &head.headers {
        match name.as_str() {
            "connection" => {
                for token in value.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        head.keep_alive = false;
                    } else if token.eq_ignore_ascii_case("keep-alive") {
                        head.keep_alive = true;
                    }
                }
            }
            "expect" if value.eq_ignore_ascii_case("100-continue") => {
                head.expect_continue = http11;
            }
            _ => {}
        }
    }
    Ok(head)
}

/// The body's framing; conflicting or repeated framing headers are refused (request smuggling).
fn framing(head: &Head) -> Result<Framing, HeadError> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for (name, value) in &head.headers {
        match name.as_str() {
            "content-length" => {
                let n = value
                    .parse::<u64>()
                    .ok()
                    .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or(HeadError::Malformed("Content-Length is not a number"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(HeadError::Malformed("two different Content-Length headers"));
                }
                length = Some(n);
            }
            "transfer-encoding" => {
                if chunked || !value.eq_ignore_ascii_case("chunked") {
                    return Err(HeadError::Malformed(
                        "Transfer-Encoding other than one \"chunked\"",
                    ));
                }
                chunked = true;
            }
            _ => {}
        }
    }
    match (length, chunked) {
        (Some(_), true) => Err(HeadError::Malformed(
            "both Content-Length and Transfer-Encoding",
        )),
        (_, true) => Ok(Framing::Chunked),
        (l, false) => Ok(Framing::Length(l.unwrap_or(0))),
    }
}

/// A body read whole, or why not.
#[derive(Debug)]
pub enum BodyError {
    /// Longer than the limit: `size` is its length when it was read to its end (drained, the
    /// connection still usable), or `None` when it was longer than [`MAX_DRAIN`] too (the
    /// connection must be closed).
    TooLarge { size: Option<u64> },
    /// Broken chunked framing.
    Malformed(&'static str),
    /// The connection failed or ended inside the body.
    Io(io::Error),
}

/// Reads a body of at most `limit` bytes. A longer one is drained (read and dropped, up to
/// [`MAX_DRAIN`] past the limit) so the connection can carry the answer, and reported with its
/// size.
pub fn read_body<R: BufRead>(
    r: &mut R,
    framing: Framing,
    limit: u64,
) -> Result<Vec<u8>, BodyError> {
    if let Framing::Length(n) = framing {
        if n > limit.saturating_add(MAX_DRAIN) {
            return Err(BodyError::TooLarge { size: None });
        }
    }
    let mut body = Vec::new();
    let mut total: u64 = 0;
    let mut keep = |chunk: &[u8]| -> Result<(), BodyError> {
        total += chunk.len() as u64;
        if total > limit.saturating_add(MAX_DRAIN) {
            return Err(BodyError::TooLarge { size: None });
        }
        if total <= limit {
            body.extend_from_slice(chunk);
        } else if !body.is_empty() {
            body = Vec::new();
        }
        Ok(())
    };
    match framing {
        Framing::Length(n) => copy_exact(r, n, &mut keep)?,
        Framing::Chunked => read_chunked(r, &mut keep)?,
    }
    if total > limit {
        return Err(BodyError::TooLarge { size: Some(total) });
    }
    Ok(body)
}

/// Reads and drops a body (of a request refused before it was read), at most [`MAX_DRAIN`]
/// bytes; `false` when it was longer (the connection must be closed).
pub fn discard_body<R: BufRead>(r: &mut R, framing: Framing) -> bool {
    matches!(
        read_body(r, framing, 0),
        Ok(_) | Err(BodyError::TooLarge { size: Some(_) })
    )
}

/// Hands exactly `n` bytes from `r` to `sink`, buffer by buffer.
fn copy_exact<R: BufRead>(
    r: &mut R,
    mut n: u64,
    sink: &mut impl FnMut(&[u8]) -> Result<(), BodyError>,
) -> Result<(), BodyError> {
    while n > 0 {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BodyError::Io(e)),
        };
        if buf.is_empty() {
            return Err(BodyError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        let take = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        sink(&buf[..take])?;
        r.consume(take);
        n -= take as u64;
    }
    Ok(())
}

/// The longest chunk-size line (hex size and extensions) accepted.
const MAX_CHUNK_LINE: usize = 1024;

fn read_chunked<R: BufRead>(
    r: &mut R,
    sink: &mut impl FnMut(&[u8]) -> Result<(), BodyError>,
) -> Result<(), BodyError> {
    let mut line = Vec::new();
    let head_error = |e: HeadError| match e {
        HeadError::Io(e) => BodyError::Io(e),
        HeadError::Closed => BodyError::Io(io::ErrorKind::UnexpectedEof.into()),
        HeadError::TooLarge | HeadError::Malformed(_) => {
            BodyError::Malformed("bad chunk-size line")
        }
    };
    loop {
        let mut left = MAX_CHUNK_LINE;
        read_line(r, &mut left, MAX_CHUNK_LINE, &mut line).map_err(head_error)?;
        let size = std::str::from_utf8(&line)
            .ok()
            .map(|l| l.split(';').next().unwrap_or(""))
            .filter(|s| !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or(BodyError::Malformed("bad chunk size"))?;
        if size == 0 {
            // Trailers (ignored), up to the empty line.
            let mut budget = MAX_HEAD;
            loop {
                let cut =
                    read_line(r, &mut budget, MAX_KEPT_LINE, &mut line).map_err(head_error)?;
                if line.is_empty() && !cut {
                    return Ok(());
                }
            }
        }
        copy_exact(r, size, sink)?;
        let mut left = 2;
        read_line(r, &mut left, 2, &mut line).map_err(head_error)?;
        if !line.is_empty() {
            return Err(BodyError::Malformed("chunk data longer than its size"));
        }
    }
}

/// The reason phrase of the status codes this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Request Entity Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        _ => "Unknown",
    }
}

/// Writes one response: status, `headers`, `Content-Length`, `Connection: close` unless
/// `keep_alive`, and `body`, in as few writes as it takes.
pub fn write_response<W: Write>(
    w: &mut W,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        // Values come from the runtime too: no line breaks may end up in a header.
        let value: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        head.push_str(name);
        head.push_str(": ");
        head.push_str(&value);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    if body.len() <= 16 * 1024 {
        let mut all = head.into_bytes();
        all.extend_from_slice(body);
        w.write_all(&all)?;
    } else {
        w.write_all(head.as_bytes())?;
        w.write_all(body)?;
    }
    w.flush()
}

/// `100 Continue`, for a client that waits for it before its body.
pub fn write_continue<W: Write>(w: &mut W) -> io::Result<()> {
    w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    w.flush()
}
