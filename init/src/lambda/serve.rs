//! The two listeners and their connections: the invoke endpoint (callers) and the Runtime API
//! (the runtime), each connection in a thread of its own, at most [`MAX_CONNECTIONS`] per
//! listener, keep-alive as HTTP/1.1 clients expect.

use std::io::{self, BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::broker::{AnswerError, Broker, Meta, Outcome};
use super::http::{
    discard_body, read_body, read_head, write_continue, write_response, BodyError, Framing, Head,
    HeadError,
};
use super::ids::{base64_decode, error_document, request_id, trace_id};
use super::{INVOKE_PATH, MAX_PAYLOAD};

/// The most connections served at once on each listener; more are refused.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a caller may take to send a request (head and body) on the invoke endpoint, and
/// how long an idle keep-alive connection is kept.
pub const CALLER_IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the runtime may take to read what it is sent (an event of up to 6 MB).
pub const RUNTIME_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest `init/error` document read (its message is cut to [`INIT_ERROR_CHARS`]).
pub const MAX_INIT_ERROR: u64 = 64 * 1024;
/// The longest init error message passed on to the init.
pub const INIT_ERROR_CHARS: usize = 1000;
/// Stack of a connection thread (its buffers are on the heap): room for serde_json's 128
/// levels of nesting in a runtime's error document, in any build.
const THREAD_STACK: usize = 1024 * 1024;

const RUNTIME_PREFIX: &str = "/2018-06-01/runtime/";
const NEXT_PATH: &str = "/2018-06-01/runtime/invocation/next";
const INIT_ERROR_PATH: &str = "/2018-06-01/runtime/init/error";
const INVOCATION_PREFIX: &str = "/2018-06-01/runtime/invocation/";

/// Which listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Api,
    Invoke,
}

/// Accepts connections in a background thread, each served in a thread of its own.
pub fn spawn_listener(
    listener: TcpListener,
    side: Side,
    broker: Arc<Broker>,
    arn: String,
) -> io::Result<()> {
    let open = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name(format!("lambda-{side:?}").to_lowercase())
        .spawn(move || {
            for conn in listener.incoming() {
                // A failed accept (a connection reset before it was taken, or no descriptors
                // left) concerns that connection only.
                let Ok(stream) = conn else { continue };
                if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    open.fetch_sub(1, Ordering::SeqCst);
                    refuse(stream, side);
                    continue;
                }
                let (open2, broker, arn) = (open.clone(), broker.clone(), arn.clone());
                let started =
                    std::thread::Builder::new()
                        .stack_size(THREAD_STACK)
                        .spawn(move || {
                            match side {
                                Side::Api => serve_api(stream, &broker, &arn),
                                Side::Invoke => serve_invoke(stream, &broker),
                            }
                            open2.fetch_sub(1, Ordering::SeqCst);
                        });
                if started.is_err() {
                    open.fetch_sub(1, Ordering::SeqCst);
                }
            }
        })?;
    Ok(())
}

/// One connection too many: a caller is told to come back; the runtime's is closed.
fn refuse(mut stream: TcpStream, side: Side) {
    if side == Side::Invoke {
        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
        // Best effort: the connection is dropped either way.
        let _ = write_response(
            &mut stream,
            429,
            &[("Content-Type", "application/json")],
            &error_document("TooManyRequestsException", "Rate Exceeded."),
            false,
        );
    }
}

/// Sends `body` as JSON; `false` when the connection must end (asked to, or the write failed).
fn send_json(w: &mut TcpStream, status: u16, body: &[u8], keep_alive: bool) -> bool {
    write_response(
        w,
        status,
        &[("Content-Type", "application/json")],
        body,
        keep_alive,
    )
    .is_ok()
        && keep_alive
}

/// Answers a head that could not be read; `false`: the connection ends.
fn head_failed(w: &mut TcpStream, e: HeadError) -> bool {
    let status = match e {
        HeadError::Closed | HeadError::Io(_) => return false,
        HeadError::TooLarge => 431,
        HeadError::Malformed(_) => 400,
    };
    let why = match e {
        HeadError::Malformed(m) => m,
        _ => "request head too large",
    };
    send_json(
        w,
        status,
        &error_document("InvalidRequestContentException", why),
        false,
    );
    false
}

/// A request's reader with one deadline for all of it: each read waits at most until then, so
/// a caller trickling a byte now and then cannot hold the invocation slot (or a connection)
/// past it.
struct Deadline<'a> {
    r: &'a mut BufReader<TcpStream>,
    until: Instant,
}

impl Deadline<'_> {
    fn arm(&mut self) -> std::io::Result<()> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.r.get_ref().set_read_timeout(Some(left))
    }
}

impl std::io::Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.r.buffer().is_empty() {
            self.arm()?;
        }
        self.r.read(buf)
    }
}

impl BufRead for Deadline<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.r.buffer().is_empty() {
            self.arm()?;
        }
        self.r.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        self.r.consume(n);
    }
}

fn timed_streams(
    stream: TcpStream,
    read: Option<Duration>,
) -> Option<(BufReader<TcpStream>, TcpStream)> {
    // Small answers go out at once: no waiting for an ACK (Nagle) on a warm call.
    stream.set_nodelay(true).ok()?;
    stream.set_read_timeout(read).ok()?;
    stream.set_write_timeout(Some(RUNTIME_WRITE_TIMEOUT)).ok()?;
    let w = stream.try_clone().ok()?;
    Some((BufReader::with_capacity(64 * 1024, stream), w))
}

// ---------------------------------------------------------------------------------------------
// The invoke endpoint.

fn serve_invoke(stream: TcpStream, broker: &Broker) {
    let Some((mut r, mut w)) = timed_streams(stream, Some(CALLER_IO_TIMEOUT)) else {
        return;
    };
    loop {
        let head = match read_head(&mut r) {
            Ok(h) => h,
            Err(e) => {
                head_failed(&mut w, e);
                return;
            }
        };
        if !invoke_one(&mut r, &mut w, broker, &head) {
            return;
        }
    }
}

/// Serves one request on the invoke endpoint; `false`: the connection ends.
fn invoke_one(
    r: &mut BufReader<TcpStream>,
    w: &mut TcpStream,
    broker: &Broker,
    head: &Head,
) -> bool {
    if head.path != INVOKE_PATH {
        let drained = !head.expect_continue && discard_body(r, head.framing);
        return write_response(
            w,
            404,
            &[("Content-Type", "text/plain; charset=utf-8")],
            b"404 page not found\n",
            head.keep_alive && drained,
        )
        .is_ok()
            && head.keep_alive
            && drained;
    }
    let too_large = error_document(
        "RequestEntityTooLarge",
        &format!("Exceeded maximum allowed payload size ({MAX_PAYLOAD} bytes)."),
    );
    if head.expect_continue && matches!(head.framing, Framing::Length(n) if n > MAX_PAYLOAD) {
        // The caller waits before sending: refuse without reading.
        return send_json(w, 413, &too_large, false);
    }
    let client_context = match head
        .header("x-amz-client-context")
        .filter(|v| !v.is_empty())
    {
        None => None,
        Some(v) => match base64_decode(v).and_then(|b| String::from_utf8(b).ok()) {
            Some(c) => Some(c),
            None => {
                let keep = !head.expect_continue && discard_body(r, head.framing);
                let doc = error_document(
                    "InvalidRequestContentException",
                    "X-Amz-Client-Context must be base64 of UTF-8 JSON",
                );
                return send_json(w, 400, &doc, head.keep_alive && keep);
            }
        },
    };
    let meta = Meta {
        trace_id: head
            .header("x-amzn-trace-id")
            .filter(|v| !v.is_empty())
            .map_or_else(trace_id, str::to_owned),
        client_context,
    };
    let id = request_id();
    let queued = Instant::now() + broker.timeout();
    if !broker.enter(&id, queued) {
        let keep = !head.expect_continue && discard_body(r, head.framing);
        return send_outcome(
            w,
            &id,
            broker,
            Outcome::TimedOut { taken: false },
            head.keep_alive && keep,
        );
    }
    if head.expect_continue && write_continue(w).is_err() {
        broker.abandon(&id);
        return false;
    }
    // The whole event within CALLER_IO_TIMEOUT of getting the slot (not per read).
    let mut timed = Deadline {
        r,
        until: Instant::now() + CALLER_IO_TIMEOUT,
    };
    let event = read_body(&mut timed, head.framing, MAX_PAYLOAD);
    let _ = r.get_ref().set_read_timeout(Some(CALLER_IO_TIMEOUT));
    let event = match event {
        Ok(b) => b,
        Err(BodyError::TooLarge { size }) => {
            broker.abandon(&id);
            return send_json(w, 413, &too_large, head.keep_alive && size.is_some());
        }
        Err(BodyError::Malformed(m)) => {
            broker.abandon(&id);
            send_json(
                w,
                400,
                &error_document("InvalidRequestContentException", m),
                false,
            );
            return false;
        }
        Err(BodyError::Io(_)) => {
            broker.abandon(&id);
            return false;
        }
    };
    broker.submit(&id, event, meta);
    let outcome = broker.wait_outcome(&id, queued);
    send_outcome(w, &id, broker, outcome, head.keep_alive)
}

/// The caller's answer. Everything but a response is a function error: status 200 with
/// `X-Amz-Function-Error: Unhandled`, as Lambda's Invoke API answers.
fn send_outcome(
    w: &mut TcpStream,
    id: &str,
    broker: &Broker,
    o: Outcome,
    keep_alive: bool,
) -> bool {
    let error = |error_type: &str, message: String| {
        error_document(error_type, &format!("RequestId: {id} Error: {message}"))
    };
    let (content_type, body) = match o {
        Outcome::Response { body, content_type } => {
            return write_response(
                w,
                200,
                &[("Content-Type", &content_type), ("X-Amzn-RequestId", id)],
                &body,
                keep_alive,
            )
            .is_ok()
                && keep_alive;
        }
        Outcome::Error { body, error_type } if body.is_empty() => (
            "application/json".to_owned(),
            error(&error_type, "the runtime posted an error without a document".into()),
        ),
        Outcome::Error { body, .. } => ("application/json".to_owned(), body),
        Outcome::ResponseTooLarge { size } => (
            "application/json".to_owned(),
            error_document(
                "Function.ResponseSizeTooLarge",
                &match size {
                    Some(n) => format!("Response payload size ({n} bytes) exceeded maximum allowed payload size ({MAX_PAYLOAD} bytes)."),
                    None => format!("Response payload size exceeded maximum allowed payload size ({MAX_PAYLOAD} bytes)."),
                },
            ),
        ),
        Outcome::TimedOut { taken } => {
            let t = broker.timeout().as_secs_f64();
            let why = if taken {
                format!("Task timed out after {t:.2} seconds")
            } else {
                let init = broker.init_timeout().as_secs_f64();
                format!("Task timed out after {t:.2} seconds (the runtime did not ask for the event: no GET {NEXT_PATH} within the timeout, or within its init phase of {init:.2} seconds while it started)")
            };
            ("application/json".to_owned(), error("Sandbox.Timedout", why))
        }
        Outcome::RuntimeExited { how } => (
            "application/json".to_owned(),
            error("Runtime.ExitError", how),
        ),
    };
    write_response(
        w,
        200,
        &[
            ("Content-Type", &content_type),
            ("X-Amz-Function-Error", "Unhandled"),
            ("X-Amzn-RequestId", id),
        ],
        &body,
        keep_alive,
    )
    .is_ok()
        && keep_alive
}

// ---------------------------------------------------------------------------------------------
// The Runtime API.

fn serve_api(stream: TcpStream, broker: &Broker, arn: &str) {
    // No read timeout: the runtime's connection idles while the function runs.
    let Some((mut r, mut w)) = timed_streams(stream, None) else {
        return;
    };
    loop {
        let head = match read_head(&mut r) {
            Ok(h) => h,
            Err(e) => {
                head_failed(&mut w, e);
                return;
            }
        };
        if !api_one(&mut r, &mut w, broker, arn, &head) {
            return;
        }
    }
}

/// What a runtime's answer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Response,
    Error,
}

/// Serves one Runtime API request; `false`: the connection ends.
fn api_one(
    r: &mut BufReader<TcpStream>,
    w: &mut TcpStream,
    broker: &Broker,
    arn: &str,
    head: &Head,
) -> bool {
    let method = head.method.as_str();
    let path = head.path.as_str();
    if path == NEXT_PATH {
        if method != "GET" {
            return refuse_method(r, w, head, "GET");
        }
        if !discard_body(r, head.framing) {
            return false;
        }
        return next(w, broker, arn, head.keep_alive);
    }
    if path == INIT_ERROR_PATH {
        if method != "POST" {
            return refuse_method(r, w, head, "POST");
        }
        return init_error(r, w, broker, head);
    }
    if let Some(rest) = path.strip_prefix(INVOCATION_PREFIX) {
        let answer = match rest.rsplit_once('/') {
            Some((id, "response")) if !id.is_empty() && !id.contains('/') => {
                Some((id, Answer::Response))
            }
            Some((id, "error")) if !id.is_empty() && !id.contains('/') => Some((id, Answer::Error)),
            _ => None,
        };
        if let Some((id, kind)) = answer {
            if method != "POST" {
                return refuse_method(r, w, head, "POST");
            }
            return answer_one(r, w, broker, head, id, kind);
        }
    }
    let keep = !head.expect_continue && discard_body(r, head.framing) && head.keep_alive;
    let what = if path.starts_with(RUNTIME_PREFIX) {
        "no such Runtime API path (this server has no extensions, telemetry or logs API)"
    } else {
        "not a Runtime API path"
    };
    send_json(w, 404, &error_document("UnknownPath", what), keep)
}

fn refuse_method(
    r: &mut BufReader<TcpStream>,
    w: &mut TcpStream,
    head: &Head,
    allowed: &str,
) -> bool {
    let keep = !head.expect_continue && discard_body(r, head.framing) && head.keep_alive;
    write_response(
        w,
        405,
        &[("Content-Type", "application/json"), ("Allow", allowed)],
        &error_document("MethodNotAllowed", &format!("use {allowed} here")),
        keep,
    )
    .is_ok()
        && keep
}

/// `GET …/next`: waits for an event and sends it with Lambda's headers.
fn next(w: &mut TcpStream, broker: &Broker, arn: &str, keep_alive: bool) -> bool {
    let Some(h) = broker.next(&mut || peer_open(w)) else {
        // This runtime ended: its connection goes with it.
        return false;
    };
    let left = h.deadline.saturating_duration_since(Instant::now());
    let deadline_ms = (SystemTime::now() + left)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
        .to_string();
    let mut headers: Vec<(&str, &str)> = vec![
        ("Content-Type", "application/json"),
        ("Lambda-Runtime-Aws-Request-Id", &h.id),
        ("Lambda-Runtime-Deadline-Ms", &deadline_ms),
        ("Lambda-Runtime-Invoked-Function-Arn", arn),
        ("Lambda-Runtime-Trace-Id", &h.meta.trace_id),
    ];
    if let Some(c) = &h.meta.client_context {
        headers.push(("Lambda-Runtime-Client-Context", c));
    }
    let sent = write_response(w, 200, &headers, &h.event, keep_alive);
    if sent.is_err() {
        broker.requeue(h);
        return false;
    }
    keep_alive
}

/// Whether the peer has not closed its end (a non-blocking peek: EOF means closed).
fn peer_open(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    let open = match s.peek(&mut b) {
        Ok(n) => n > 0,
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).is_ok() && open
}

/// `POST …/invocation/{id}/response` and `…/error`.
fn answer_one(
    r: &mut BufReader<TcpStream>,
    w: &mut TcpStream,
    broker: &Broker,
    head: &Head,
    id: &str,
    kind: Answer,
) -> bool {
    if let Err(e) = broker.begin_answer(id) {
        let keep = !head.expect_continue && discard_body(r, head.framing) && head.keep_alive;
        let (status, doc) = match e {
            AnswerError::Unknown => (400, error_document("InvalidRequestID", "Invalid request ID")),
            AnswerError::AlreadyAnswered => (
                403,
                error_document(
                    "InvalidStateTransition",
                    &format!("Invocation {id} was answered already (or is over): one response or error per invocation"),
                ),
            ),
        };
        return send_json(w, status, &doc, keep);
    }
    let too_large = error_document(
        "RequestEntityTooLarge",
        &format!("Exceeded maximum allowed payload size ({MAX_PAYLOAD} bytes)."),
    );
    if head.expect_continue && matches!(head.framing, Framing::Length(n) if n > MAX_PAYLOAD) {
        let Framing::Length(n) = head.framing else {
            unreachable!("matched just above")
        };
        broker.finish_answer(id, Outcome::ResponseTooLarge { size: Some(n) });
        return send_json(w, 413, &too_large, false);
    }
    if head.expect_continue && write_continue(w).is_err() {
        broker.abort_answer(id);
        return false;
    }
    let body = match read_body(r, head.framing, MAX_PAYLOAD) {
        Ok(b) => b,
        Err(BodyError::TooLarge { size }) => {
            broker.finish_answer(id, Outcome::ResponseTooLarge { size });
            return send_json(w, 413, &too_large, head.keep_alive && size.is_some());
        }
        Err(BodyError::Malformed(m)) => {
            broker.abort_answer(id);
            send_json(
                w,
                400,
                &error_document("InvalidRequestContentException", m),
                false,
            );
            return false;
        }
        Err(BodyError::Io(_)) => {
            broker.abort_answer(id);
            return false;
        }
    };
    let outcome = match kind {
        Answer::Response => Outcome::Response {
            body,
            content_type: head
                .header("content-type")
                .unwrap_or("application/json")
                .to_owned(),
        },
        Answer::Error => Outcome::Error {
            body,
            error_type: head
                .header("lambda-runtime-function-error-type")
                .unwrap_or("Runtime.Unknown")
                .to_owned(),
        },
    };
    if broker.finish_answer(id, outcome) {
        send_json(w, 202, br#"{"status":"OK"}"#, head.keep_alive)
    } else {
        let doc = error_document(
            "InvalidStateTransition",
            &format!("Invocation {id} is over (it timed out) and cannot be answered"),
        );
        send_json(w, 403, &doc, head.keep_alive)
    }
}

/// `POST /2018-06-01/runtime/init/error`: the init hears `<errorType>: <errorMessage>`.
fn init_error(
    r: &mut BufReader<TcpStream>,
    w: &mut TcpStream,
    broker: &Broker,
    head: &Head,
) -> bool {
    if head.expect_continue && write_continue(w).is_err() {
        return false;
    }
    let (body, keep) = match read_body(r, head.framing, MAX_INIT_ERROR) {
        Ok(b) => (b, head.keep_alive),
        // Too long: what was sent is not kept, the header's type is still told.
        Err(BodyError::TooLarge { size }) => (Vec::new(), head.keep_alive && size.is_some()),
        Err(BodyError::Malformed(_) | BodyError::Io(_)) => (Vec::new(), false),
    };
    let message = init_error_message(head.header("lambda-runtime-function-error-type"), &body);
    if broker.init_error(message) {
        send_json(w, 202, br#"{"status":"OK"}"#, keep)
    } else {
        let doc = error_document(
            "InvalidStateTransition",
            "init/error is only accepted before the runtime asks for its first invocation",
        );
        send_json(w, 403, &doc, keep)
    }
}

/// What the init prints for an init error: the document's `errorType: errorMessage` (or the
/// header's type, or the raw body), printable, at most [`INIT_ERROR_CHARS`] characters.
pub fn init_error_message(header_type: Option<&str>, body: &[u8]) -> String {
    let doc: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |k: &str| {
        doc.as_ref()
            .and_then(|d| d.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let error_type = field("errorType").or_else(|| header_type.map(str::to_owned));
    let message = match (field("errorMessage"), doc.is_some()) {
        (Some(m), _) => m,
        (None, false) if !body.is_empty() => String::from_utf8_lossy(body).into_owned(),
        (None, _) => "(no message)".to_owned(),
    };
    let message = message.trim_end();
    let text = match error_type {
        Some(t) => format!("{t}: {message}"),
        None => message.to_owned(),
    };
    let printable = stratos_wire::control::printable(text.as_bytes());
    printable.chars().take(INIT_ERROR_CHARS).collect()
}
