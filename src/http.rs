//! A small blocking HTTP/1.0 client over plain TCP, for invoking functions through QEMU's
//! forwarded ports and reading release repositories. Loopback or any host; no TLS.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

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
}

/// Sends one request and reads the whole response (at most `limit` bytes).
pub fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
    limit: u64,
) -> Result<Response, HttpError> {
    let who = format!("{addr}{path}");
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| HttpError::Connect(who.clone(), e))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| HttpError::Io(who.clone(), e))?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| HttpError::Io(who.clone(), e))?;
    let _ = s.set_nodelay(true);
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: stratos\r\nConnection: close\r\n"
    );
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .and_then(|_| s.write_all(body))
        .map_err(|e| HttpError::Io(who.clone(), e))?;
    let mut raw = Vec::new();
    s.take(limit + 1)
        .read_to_end(&mut raw)
        .map_err(|e| HttpError::Io(who.clone(), e))?;
    if raw.len() as u64 > limit {
        return Err(HttpError::TooLarge(who, limit));
    }
    if raw.is_empty() {
        return Err(HttpError::Empty(who));
    }
    parse_response(&raw).ok_or(HttpError::Malformed(who))
}

pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response, HttpError> {
    request(addr, "GET", &addr.to_string(), path, &[], timeout, 64 << 20)
}

/// Parses status line, headers and body of a complete response.
pub fn parse_response(raw: &[u8]) -> Option<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| {
            raw.windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
        })?;
    let head = std::str::from_utf8(&raw[..split.0]).ok()?;
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
    Some(Response {
        status,
        headers,
        body: raw[split.1..].to_vec(),
    })
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
}
