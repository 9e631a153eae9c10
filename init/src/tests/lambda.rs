//! The Lambda interface: its HTTP parsing and bounds, its invocation state machine, its ids and
//! documents (on their own), and how the boot and the supervisor use it (through the fake).
//! The server on loopback sockets is tested in `tests/lambda_api.rs`.

use std::io::Cursor;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stratos_wire::{Lambda, RestartPolicy};

use super::{config, Call, Fake};
use crate::boot::{boot, Outcome};
use crate::cgroup::{Cgroup, MemoryPeak};
use crate::lambda::broker::{AnswerError, Broker, Meta, Outcome as Call_, ANSWERED_KEPT};
use crate::lambda::http::{
    discard_body, read_body, read_head, BodyError, Framing, HeadError, MAX_DRAIN, MAX_HEAD,
    MAX_HEADERS, MAX_KEPT, MAX_KEPT_LINE,
};
use crate::lambda::ids::{base64_decode, error_document, json_string, request_id, trace_id};
use crate::lambda::serve::init_error_message;
use crate::lambda::{runtime_env, LambdaEvent};
use crate::observe::Observer;
use crate::runtime::Prepared;
use crate::supervise::{State, Supervisor, IDLE_WAKE_MS, LAMBDA_INIT_TIMEOUT_MS};
use crate::sys::{ExitKind, Waited, SIGKILL};

// --- HTTP --------------------------------------------------------------------------------------

fn head(raw: &str) -> Result<crate::lambda::http::Head, HeadError> {
    read_head(&mut Cursor::new(raw.as_bytes().to_vec()))
}

#[test]
fn a_request_head_is_read_with_its_framing_and_connection() {
    let h = head("POST /2015-03-31/functions/function/invocations?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nX-Amz-Client-Context:  abc \r\n\r\n").unwrap();
    assert_eq!(h.method, "POST");
    assert_eq!(h.path, "/2015-03-31/functions/function/invocations");
    assert_eq!(h.framing, Framing::Length(12));
    assert!(h.keep_alive && !h.expect_continue);
    assert_eq!(h.header("x-amz-client-context"), Some("abc"));
    let h = head("GET / HTTP/1.0\n\n").unwrap();
    assert!(!h.keep_alive, "HTTP/1.0 closes by default");
    assert_eq!(h.framing, Framing::Length(0));
    let h = head("\r\nPOST /x HTTP/1.1\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n").unwrap();
    assert!(!h.keep_alive && h.expect_continue);
    assert_eq!(h.framing, Framing::Chunked);
}

#[test]
fn malformed_and_oversized_heads_are_refused() {
    assert!(matches!(head(""), Err(HeadError::Closed)));
    for bad in [
        "GET\r\n\r\n",
        "GET / HTTP/2\r\n\r\n",
        "get / HTTP/1.1\r\n\r\n",
        "GET http://x/ HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nno colon\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a",
        "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    ] {
        assert!(
            matches!(head(bad), Err(HeadError::Malformed(_))),
            "{bad:?}: {:?}",
            head(bad)
        );
    }
    let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
    assert!(matches!(head(&long), Err(HeadError::TooLarge)));
    let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_KEPT_LINE));
    assert!(matches!(head(&long_target), Err(HeadError::TooLarge)));
    let long_length = format!(
        "GET / HTTP/1.1\r\nContent-Length: {}1\r\n\r\n",
        "0".repeat(300)
    );
    assert!(matches!(head(&long_length), Err(HeadError::Malformed(_))));
    let many = format!(
        "GET / HTTP/1.1\r\n{}\r\n",
        "A: b\r\n".repeat(MAX_HEADERS + 1)
    );
    assert!(matches!(head(&many), Err(HeadError::TooLarge)));
    let just = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(MAX_HEADERS));
    assert!(head(&just).is_ok());
}

fn body(raw: &[u8], framing: Framing, limit: u64) -> (Result<Vec<u8>, BodyError>, usize) {
    let mut c = Cursor::new(raw.to_vec());
    let b = read_body(&mut c, framing, limit);
    (b, c.position() as usize)
}

#[test]
fn long_headers_are_skipped_but_framing_headers_never_are() {
    // A runtime's X-Ray error cause can be large: read, not kept.
    let cause = "c".repeat(200 * 1024);
    let h = head(&format!(
        "POST /x HTTP/1.1\r\nLambda-Runtime-Function-XRay-Error-Cause: {cause}\r\nLambda-Runtime-Function-Error-Type: Unhandled\r\nContent-Length: 2\r\n\r\n"
    ))
    .unwrap();
    assert_eq!(h.header("lambda-runtime-function-xray-error-cause"), None);
    assert_eq!(
        h.header("lambda-runtime-function-error-type"),
        Some("Unhandled")
    );
    assert_eq!(h.framing, Framing::Length(2));
    // Past the kept budget other headers are skipped, framing ones still read.
    let filler: String = (0..3)
        .map(|n| format!("X-{n}: {}\r\n", "f".repeat(MAX_KEPT_LINE - 5)))
        .collect();
    let h = head(&format!(
        "POST /x HTTP/1.1\r\n{filler}X-Late: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
    ))
    .unwrap();
    assert_eq!(h.framing, Framing::Chunked);
    assert_eq!(h.header("x-late"), None);
    let kept: usize = h
        .headers
        .iter()
        .filter(|(n, _)| n != "transfer-encoding")
        .map(|(n, v)| n.len() + v.len())
        .sum();
    assert!(kept <= MAX_KEPT, "{kept}");
    // A line exactly as long as what is kept is kept whole.
    let exact = format!("X: {}", "e".repeat(MAX_KEPT_LINE - 3));
    let h = head(&format!("GET / HTTP/1.1\r\n{exact}\r\n\r\n")).unwrap();
    assert_eq!(h.header("x").map(str::len), Some(MAX_KEPT_LINE - 3));
    let over = format!("X: {}", "e".repeat(MAX_KEPT_LINE - 2));
    let h = head(&format!("GET / HTTP/1.1\r\n{over}\r\n\r\n")).unwrap();
    assert_eq!(h.header("x"), None);
}

#[test]
fn bodies_are_read_to_their_length_and_no_further() {
    let (b, read) = body(b"helloGET", Framing::Length(5), 10);
    assert_eq!((b.unwrap(), read), (b"hello".to_vec(), 5));
    let (b, read) = body(
        b"3\r\nabc\r\n0\r\nTrailer: x\r\n\r\nNEXT",
        Framing::Chunked,
        10,
    );
    assert_eq!(b.unwrap(), b"abc");
    assert_eq!(read, 25, "stops after the trailers");
    let (b, _) = body(b"hel", Framing::Length(5), 10);
    assert!(matches!(b, Err(BodyError::Io(_))));
    for bad in [
        &b"zz\r\n"[..],
        b"3\r\nabcd\r\n0\r\n\r\n",
        b"\r\n",
        b"11111111111111111\r\n",
    ] {
        let (b, _) = body(bad, Framing::Chunked, 100);
        assert!(matches!(b, Err(BodyError::Malformed(_))), "{bad:?}: {b:?}");
    }
}

#[test]
fn a_body_over_the_limit_is_drained_and_sized_up_to_the_drain_bound() {
    let (b, read) = body(&[b'a'; 20], Framing::Length(20), 10);
    assert!(matches!(b, Err(BodyError::TooLarge { size: Some(20) })));
    assert_eq!(read, 20, "drained, the connection can carry the answer");
    let (b, _) = body(
        b"8\r\naaaaaaaa\r\n8\r\naaaaaaaa\r\n0\r\n\r\n",
        Framing::Chunked,
        10,
    );
    assert!(matches!(b, Err(BodyError::TooLarge { size: Some(16) })));
    // Past the drain bound nothing more is read: the connection is to be closed.
    let (b, read) = body(b"", Framing::Length(10 + MAX_DRAIN + 1), 10);
    assert!(matches!(b, Err(BodyError::TooLarge { size: None })));
    assert_eq!(read, 0);
    let mut c = Cursor::new(b"abc".to_vec());
    assert!(discard_body(&mut c, Framing::Length(3)));
    assert_eq!(c.position(), 3);
    assert!(!discard_body(
        &mut Cursor::new(vec![]),
        Framing::Length(MAX_DRAIN + 1)
    ));
}

// --- Ids and documents -------------------------------------------------------------------------

#[test]
fn request_ids_are_fresh_version_4_uuids() {
    let ids: std::collections::BTreeSet<String> = (0..1000).map(|_| request_id()).collect();
    assert_eq!(ids.len(), 1000);
    for id in ids.iter().take(20) {
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12],
            "{id}"
        );
        assert!(parts[2].starts_with('4'), "{id}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{id}");
        assert!(id.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));
    }
    let t = trace_id();
    assert!(t.starts_with("Root=1-") && t.ends_with(";Sampled=0"), "{t}");
    assert_ne!(trace_id(), t);
}

#[test]
fn base64_decodes_standard_alphabet_with_or_without_padding() {
    assert_eq!(base64_decode("eyJhIjoxfQ==").unwrap(), br#"{"a":1}"#);
    assert_eq!(base64_decode("eyJhIjoxfQ").unwrap(), br#"{"a":1}"#);
    assert_eq!(base64_decode("").unwrap(), b"");
    assert_eq!(base64_decode("TWFu").unwrap(), b"Man");
    assert!(base64_decode("%%%").is_none());
    assert!(base64_decode("A").is_none(), "one sextet is not a byte");
}

#[test]
fn error_documents_are_json_whatever_the_message() {
    let d = error_document("Sandbox.Timedout", "a \"quote\"\n\\ \u{1}");
    let v: serde_json::Value = serde_json::from_slice(&d).unwrap();
    assert_eq!(v["errorType"], "Sandbox.Timedout");
    assert_eq!(v["errorMessage"], "a \"quote\"\n\\ \u{1}");
    assert_eq!(json_string("é"), "\"é\"");
}

#[test]
fn init_error_messages_are_typed_printable_and_bounded() {
    assert_eq!(
        init_error_message(
            Some("Runtime.X"),
            br#"{"errorMessage":"bad handler","errorType":"Runtime.HandlerNotFound"}"#
        ),
        "Runtime.HandlerNotFound: bad handler"
    );
    assert_eq!(
        init_error_message(Some("Runtime.X"), b"{}"),
        "Runtime.X: (no message)"
    );
    assert_eq!(init_error_message(None, b""), "(no message)");
    assert_eq!(
        init_error_message(None, b"plain \x1b[31mtext"),
        "plain \\x1b[31mtext"
    );
    let long = format!(r#"{{"errorMessage":"{}"}}"#, "x".repeat(5000));
    assert_eq!(init_error_message(None, long.as_bytes()).len(), 1000);
}

// --- The invocation state machine --------------------------------------------------------------

fn broker(timeout_ms: u64) -> (Arc<Broker>, Arc<AtomicU32>) {
    let wakes = Arc::new(AtomicU32::new(0));
    let w = wakes.clone();
    let b = Broker::new(
        Duration::from_millis(timeout_ms),
        Duration::ZERO,
        Box::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        }),
    );
    (Arc::new(b), wakes)
}

fn alive() -> bool {
    true
}

/// A caller's whole call, in a thread: enter, submit `event`, wait for the outcome.
fn call(b: &Arc<Broker>, id: &str, event: &[u8]) -> std::thread::JoinHandle<Call_> {
    let (b, id, event) = (b.clone(), id.to_owned(), event.to_vec());
    std::thread::spawn(move || {
        let queued = Instant::now() + b.timeout();
        assert!(b.enter(&id, queued));
        b.submit(&id, event, Meta::default());
        b.wait_outcome(&id, queued)
    })
}

#[test]
fn an_invocation_goes_from_caller_to_runtime_and_back() {
    let (b, wakes) = broker(5000);
    let caller = call(&b, "id-1", b"event");
    let h = b.next(&mut alive).unwrap();
    assert_eq!((h.id.as_str(), h.event.as_slice()), ("id-1", &b"event"[..]));
    assert!(h.deadline > Instant::now() + Duration::from_secs(4));
    assert_eq!(b.take_events(), vec![LambdaEvent::Ready]);
    assert_eq!(wakes.load(Ordering::SeqCst), 1);
    b.begin_answer("id-1").unwrap();
    assert_eq!(b.begin_answer("id-1"), Err(AnswerError::AlreadyAnswered));
    assert!(b.finish_answer(
        "id-1",
        Call_::Response {
            body: b"ok".to_vec(),
            content_type: "text/plain".into()
        }
    ));
    assert_eq!(
        caller.join().unwrap(),
        Call_::Response {
            body: b"ok".to_vec(),
            content_type: "text/plain".into()
        }
    );
    assert_eq!(b.begin_answer("id-1"), Err(AnswerError::AlreadyAnswered));
    assert_eq!(b.begin_answer("id-2"), Err(AnswerError::Unknown));
    // Ready once per runtime.
    let caller = call(&b, "id-2", b"");
    let h = b.next(&mut alive).unwrap();
    b.begin_answer(&h.id).unwrap();
    b.finish_answer(
        &h.id,
        Call_::Response {
            body: vec![],
            content_type: String::new(),
        },
    );
    caller.join().unwrap();
    assert_eq!(b.take_events(), vec![]);
}

#[test]
fn an_event_not_yet_handed_out_cannot_be_answered() {
    let (b, _) = broker(5000);
    assert!(b.enter("id-1", Instant::now() + Duration::from_secs(5)));
    assert_eq!(b.begin_answer("id-1"), Err(AnswerError::Unknown));
    b.submit("id-1", vec![], Meta::default());
    assert_eq!(b.begin_answer("id-1"), Err(AnswerError::Unknown));
}

#[test]
fn a_broken_answer_can_be_sent_again_and_a_failed_hand_out_is_handed_again() {
    let (b, _) = broker(5000);
    let caller = call(&b, "id-1", b"e");
    let h = b.next(&mut alive).unwrap();
    b.requeue(h);
    let h = b.next(&mut alive).unwrap();
    assert_eq!(h.event, b"e");
    b.begin_answer("id-1").unwrap();
    b.abort_answer("id-1");
    b.begin_answer("id-1").unwrap();
    b.finish_answer(
        "id-1",
        Call_::Error {
            body: b"{}".to_vec(),
            error_type: "Function.X".into(),
        },
    );
    assert!(matches!(caller.join().unwrap(), Call_::Error { .. }));
}

#[test]
fn a_dead_runtime_connection_takes_no_event() {
    let (b, _) = broker(5000);
    let caller = call(&b, "id-1", b"e");
    std::thread::sleep(Duration::from_millis(20));
    assert!(b.next(&mut || false).is_none());
    let h = b.next(&mut alive).unwrap();
    assert_eq!(h.id, "id-1");
    b.begin_answer("id-1").unwrap();
    b.finish_answer(
        "id-1",
        Call_::Response {
            body: vec![],
            content_type: String::new(),
        },
    );
    caller.join().unwrap();
}

#[test]
fn past_the_deadline_the_caller_times_out_and_the_init_hears_it_once() {
    let (b, _) = broker(100);
    let caller = call(&b, "id-1", b"e");
    let h = b.next(&mut alive).unwrap();
    assert_eq!(caller.join().unwrap(), Call_::TimedOut { taken: true });
    assert_eq!(
        b.take_events(),
        vec![
            LambdaEvent::Ready,
            LambdaEvent::TimedOut {
                request_id: "id-1".into(),
                timeout_ms: 100
            }
        ]
    );
    // Too late to answer.
    assert_eq!(b.begin_answer(&h.id), Err(AnswerError::AlreadyAnswered));
    // Nothing is handed out until the runtime ended; its waits end then.
    let caller = call(&b, "id-2", b"e2");
    let waiting = {
        let b = b.clone();
        std::thread::spawn(move || b.next(&mut alive).map(|h| h.id))
    };
    std::thread::sleep(Duration::from_millis(30));
    b.runtime_ended("runtime killed by signal 9 (SIGKILL)");
    assert_eq!(waiting.join().unwrap(), None);
    let h = b.next(&mut alive).unwrap();
    assert_eq!(h.id, "id-2");
    assert_eq!(b.take_events(), vec![LambdaEvent::Ready]);
    b.begin_answer("id-2").unwrap();
    b.finish_answer(
        "id-2",
        Call_::Response {
            body: vec![],
            content_type: String::new(),
        },
    );
    assert!(matches!(caller.join().unwrap(), Call_::Response { .. }));
}

#[test]
fn a_caller_no_runtime_asked_for_times_out_without_a_kill() {
    let (b, _) = broker(50);
    let caller = call(&b, "id-1", b"e");
    assert_eq!(caller.join().unwrap(), Call_::TimedOut { taken: false });
    assert_eq!(b.take_events(), vec![]);
    // The slot is free again: the next caller is served.
    let caller = call(&b, "id-2", b"e");
    let h = b.next(&mut alive).unwrap();
    assert_eq!(h.id, "id-2");
    assert_eq!(h.event, b"e");
    b.begin_answer("id-2").unwrap();
    b.finish_answer(
        "id-2",
        Call_::Response {
            body: vec![],
            content_type: String::new(),
        },
    );
    caller.join().unwrap();
}

#[test]
fn callers_wait_their_turn_and_a_late_one_gives_it_up() {
    let (b, _) = broker(5000);
    assert!(b.enter("first", Instant::now() + Duration::from_secs(5)));
    // A second caller with a short queue bound gives up; a third still gets its turn.
    assert!(!b.enter("second", Instant::now() + Duration::from_millis(30)));
    let third = {
        let b = b.clone();
        std::thread::spawn(move || b.enter("third", Instant::now() + Duration::from_secs(5)))
    };
    std::thread::sleep(Duration::from_millis(20));
    b.abandon("first");
    assert!(third.join().unwrap());
}

#[test]
fn a_runtime_that_ends_holding_an_event_fails_it() {
    let (b, _) = broker(5000);
    let caller = call(&b, "id-1", b"e");
    let _h = b.next(&mut alive).unwrap();
    b.runtime_ended("runtime exited with status 1");
    assert_eq!(
        caller.join().unwrap(),
        Call_::RuntimeExited {
            how: "runtime exited with status 1".into()
        }
    );
    assert_eq!(b.begin_answer("id-1"), Err(AnswerError::AlreadyAnswered));
}

#[test]
fn init_error_is_accepted_until_the_first_next_only() {
    let (b, _) = broker(5000);
    assert!(b.init_error("Runtime.X: no".into()));
    assert_eq!(
        b.take_events(),
        vec![LambdaEvent::InitError("Runtime.X: no".into())]
    );
    let waiting = {
        let b = b.clone();
        std::thread::spawn(move || b.next(&mut alive).is_none())
    };
    while b.take_events().is_empty() {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!b.init_error("late".into()));
    b.runtime_ended("gone");
    assert!(waiting.join().unwrap());
}

#[test]
fn answered_ids_are_remembered_up_to_a_bound() {
    let (b, _) = broker(5000);
    for n in 0..ANSWERED_KEPT + 1 {
        let id = format!("id-{n}");
        let caller = call(&b, &id, b"");
        let h = b.next(&mut alive).unwrap();
        b.begin_answer(&h.id).unwrap();
        b.finish_answer(
            &h.id,
            Call_::Response {
                body: vec![],
                content_type: String::new(),
            },
        );
        caller.join().unwrap();
    }
    assert_eq!(b.begin_answer("id-0"), Err(AnswerError::Unknown));
    assert_eq!(b.begin_answer("id-1"), Err(AnswerError::AlreadyAnswered));
}

// --- The runtime's environment, the boot and the supervisor ------------------------------------

fn lambda() -> Lambda {
    Lambda {
        api_port: 9001,
        invoke_port: 8080,
        timeout_ms: 3000,
        function_name: "hello".into(),
        handler: "app.handler".into(),
        task_root: "/var/task".into(),
    }
}

#[test]
fn the_runtime_gets_lambdas_environment_and_the_profiles_wins() {
    let env = runtime_env(
        &lambda(),
        &[
            ("PATH".into(), "/bin".into()),
            ("TZ".into(), "Europe/Paris".into()),
        ],
        512,
    );
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("AWS_LAMBDA_RUNTIME_API"), Some("127.0.0.1:9001"));
    assert_eq!(get("_HANDLER"), Some("app.handler"));
    assert_eq!(get("LAMBDA_TASK_ROOT"), Some("/var/task"));
    assert_eq!(get("AWS_LAMBDA_FUNCTION_NAME"), Some("hello"));
    assert_eq!(get("AWS_LAMBDA_FUNCTION_VERSION"), Some("$LATEST"));
    assert_eq!(get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), Some("512"));
    assert_eq!(get("AWS_LAMBDA_LOG_GROUP_NAME"), Some("/aws/lambda/hello"));
    assert_eq!(get("TZ"), Some("Europe/Paris"));
    assert_eq!(get("PATH"), Some("/bin"));
    assert_eq!(env.iter().filter(|(n, _)| n == "TZ").count(), 1);
    let mut sorted = env.clone();
    sorted.sort();
    assert_eq!(env, sorted);
    let mut no_handler = lambda();
    no_handler.handler = String::new();
    assert!(!runtime_env(&no_handler, &[], 128)
        .iter()
        .any(|(n, _)| n == "_HANDLER"));
}

#[test]
fn the_boot_starts_the_server_before_the_runtime_with_its_environment() {
    let mut cfg = config();
    cfg.lambda = Some(lambda());
    cfg.limits.memory_max = Some(256 * 1024 * 1024);
    let mut f = Fake::new(&cfg);
    f.lambda_events.push_back(vec![LambdaEvent::Ready]);
    f.waits = vec![Waited::Reaped(42, ExitKind::Exited(0))].into();
    let o = boot(&mut f);
    assert_eq!(o, Outcome::Runtime(ExitKind::Exited(0)));
    let start = f
        .calls
        .iter()
        .position(|c| *c == Call::StartLambda(9001, 8080))
        .expect("the server started");
    let spawn = f
        .calls
        .iter()
        .position(|c| matches!(c, Call::Spawn(..)))
        .unwrap();
    assert!(start < spawn);
    let env = &f.spawned_env[0];
    assert!(env.contains(&("AWS_LAMBDA_RUNTIME_API".into(), "127.0.0.1:9001".into())));
    assert!(env.contains(&("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), "256".into())));
    assert!(env.contains(&("PATH".into(), "/bin".into())));
    assert!(f
        .calls
        .contains(&Call::LambdaEnded("runtime exited with status 0".into())));
}

#[test]
fn an_http_boot_never_touches_the_lambda_server() {
    let mut f = Fake::new(&config());
    f.waits = vec![Waited::Reaped(42, ExitKind::Exited(0))].into();
    boot(&mut f);
    assert!(!f
        .calls
        .iter()
        .any(|c| matches!(c, Call::StartLambda(..) | Call::LambdaEnded(_))));
    assert_eq!(f.spawned_env[0], config().runtime.env);
}

#[test]
fn a_server_that_cannot_listen_stops_the_boot_before_the_runtime() {
    let mut cfg = config();
    cfg.lambda = Some(lambda());
    let mut f = Fake::new(&cfg);
    f.lambda_start_error = Some(std::io::ErrorKind::AddrInUse);
    let o = boot(&mut f);
    assert!(matches!(o, Outcome::Fatal(_)), "{o:?}");
    assert!(!f.calls.iter().any(|c| matches!(c, Call::Spawn(..))));
}

fn lambda_prepared(policy: RestartPolicy) -> Prepared {
    let mut cfg = config();
    cfg.lambda = Some(lambda());
    cfg.restart.policy = policy;
    Prepared {
        cfg,
        cgroup: Cgroup::default(),
        seccomp: None,
        seccomp_log: false,
    }
}

#[test]
fn the_lambda_runtime_is_ready_when_it_first_asks_for_an_invocation() {
    let p = lambda_prepared(RestartPolicy::Never);
    let mut f = Fake::new(&p.cfg);
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    assert_eq!(f.lines("stratos-phase runtime_ready").len(), 0);
    assert_eq!(
        sv.timeout_ms(f.clock),
        IDLE_WAKE_MS,
        "woken by the server, not polled"
    );
    assert!(sv.on_tick(&mut f, 0).is_continue());
    assert_eq!(f.lines("stratos-phase runtime_ready").len(), 0);
    f.lambda_events.push_back(vec![LambdaEvent::Ready]);
    assert!(sv.on_tick(&mut f, 0).is_continue());
    assert_eq!(f.lines("stratos-phase runtime_ready").len(), 1);
    f.lambda_events.push_back(vec![LambdaEvent::Ready]);
    assert!(sv.on_tick(&mut f, 0).is_continue());
    assert_eq!(f.lines("stratos-phase runtime_ready").len(), 1);
}

#[test]
fn a_lambda_runtime_that_does_not_ask_within_the_init_phase_fails_the_boot() {
    let p = lambda_prepared(RestartPolicy::Always);
    let mut f = Fake::new(&p.cfg);
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let start = f.clock;
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    assert!(f.calls.contains(&Call::LambdaStarted));
    // The loop wakes for the end of the init phase.
    assert_eq!(sv.timeout_ms(start + 9_500 * 1_000_000), 500);
    assert!(sv
        .on_tick(&mut f, start + LAMBDA_INIT_TIMEOUT_MS * 1_000_000)
        .is_continue());
    match sv.on_tick(&mut f, start + (LAMBDA_INIT_TIMEOUT_MS + 1) * 1_000_000) {
        ControlFlow::Break(Err(e)) => assert_eq!(
            e.to_string(),
            "the Lambda runtime did not ask for an invocation (GET /2018-06-01/runtime/invocation/next) within its init phase of 10 s (Lambda's init timeout): it is stuck or waiting for something before its first request"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_lambda_runtime_ready_in_time_is_not_held_to_the_init_phase() {
    let p = lambda_prepared(RestartPolicy::Never);
    let mut f = Fake::new(&p.cfg);
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    f.lambda_events.push_back(vec![LambdaEvent::Ready]);
    assert!(sv.on_tick(&mut f, 1).is_continue());
    let later = (LAMBDA_INIT_TIMEOUT_MS + 60_000) * 1_000_000;
    assert!(sv.on_tick(&mut f, later).is_continue());
    assert_eq!(sv.timeout_ms(later), IDLE_WAKE_MS);
}

#[test]
fn a_caller_waits_through_the_init_phase_then_for_the_timeout_only() {
    let b = Arc::new(Broker::new(
        Duration::from_millis(50),
        Duration::from_millis(400),
        Box::new(|| {}),
    ));
    let caller = call(&b, "id-1", b"e");
    std::thread::sleep(Duration::from_millis(150));
    // Past the 50 ms timeout, still within the init phase: the event is handed out (a runtime
    // that gets nothing gives up after 2 s: a regression fails, it does not hang).
    let mut alive = alive_for(Duration::from_secs(2));
    let h = b.next(&mut alive).expect("the event was not handed out");
    assert!(h.deadline >= Instant::now() + Duration::from_millis(30));
    b.begin_answer("id-1").unwrap();
    b.finish_answer(
        "id-1",
        Call_::Response {
            body: b"ok".to_vec(),
            content_type: String::new(),
        },
    );
    assert!(matches!(caller.join().unwrap(), Call_::Response { .. }));
    // A restarted runtime has an init phase of its own.
    b.runtime_ended("runtime exited with status 1");
    b.runtime_started();
    let t0 = Instant::now();
    let caller = call(&b, "id-2", b"e");
    assert_eq!(caller.join().unwrap(), Call_::TimedOut { taken: false });
    assert!(
        t0.elapsed() >= Duration::from_millis(350),
        "{:?}",
        t0.elapsed()
    );
}

/// `alive` for a runtime's `next`: true for `d`, then false (it gives up).
fn alive_for(d: Duration) -> impl FnMut() -> bool {
    let until = Instant::now() + d;
    move || Instant::now() < until
}

#[test]
fn callers_queued_during_the_init_phase_get_their_whole_timeout_once_the_runtime_is_ready() {
    let b = Arc::new(Broker::new(
        Duration::from_millis(50),
        Duration::from_millis(400),
        Box::new(|| {}),
    ));
    let first = call(&b, "id-1", b"one");
    std::thread::sleep(Duration::from_millis(10));
    let second = call(&b, "id-2", b"two");
    // The runtime asks at 150 ms, past both callers' 50 ms: each is served in turn.
    std::thread::sleep(Duration::from_millis(150));
    for id in ["id-1", "id-2"] {
        let mut alive = alive_for(Duration::from_secs(2));
        let h = b.next(&mut alive).expect("the event was not handed out");
        assert_eq!(h.id, id);
        b.begin_answer(id).unwrap();
        b.finish_answer(
            id,
            Call_::Response {
                body: id.as_bytes().to_vec(),
                content_type: String::new(),
            },
        );
    }
    assert!(matches!(first.join().unwrap(), Call_::Response { .. }));
    assert!(matches!(second.join().unwrap(), Call_::Response { .. }));
}

#[test]
fn an_init_error_ends_supervision_with_its_message() {
    let p = lambda_prepared(RestartPolicy::Always);
    let mut f = Fake::new(&p.cfg);
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    f.lambda_events.push_back(vec![LambdaEvent::InitError(
        "Runtime.ImportModuleError: no app".into(),
    )]);
    match sv.on_tick(&mut f, 0) {
        ControlFlow::Break(Err(e)) => assert_eq!(
            e.to_string(),
            "the Lambda runtime failed to initialise (it posted /2018-06-01/runtime/init/error): Runtime.ImportModuleError: no app"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_init_error_told_before_the_runtime_exits_is_the_end_whatever_the_policy() {
    let p = lambda_prepared(RestartPolicy::Always);
    let mut f = Fake::new(&p.cfg);
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    f.lambda_events.push_back(vec![LambdaEvent::InitError(
        "Runtime.UserCodeSyntaxError: bad".into(),
    )]);
    match sv.on_reaped(&mut f, 42, ExitKind::Exited(1)) {
        ControlFlow::Break(Err(e)) => assert!(
            e.to_string().ends_with("Runtime.UserCodeSyntaxError: bad"),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(!f.calls.iter().any(|c| matches!(c, Call::Spawn(..))));
}

#[test]
fn a_timed_out_runtime_is_killed_and_started_again_whatever_the_policy() {
    let p = lambda_prepared(RestartPolicy::Never);
    let mut f = Fake::new(&p.cfg);
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    f.lambda_events.push_back(vec![
        LambdaEvent::Ready,
        LambdaEvent::TimedOut {
            request_id: "abc".into(),
            timeout_ms: 3000,
        },
    ]);
    assert!(sv.on_tick(&mut f, 0).is_continue());
    assert!(f.calls.contains(&Call::Signal(42, SIGKILL)));
    assert!(f.console.iter().any(|l| {
        l.contains(
        "invocation abc did not finish within its timeout of 3000 ms; killing the runtime (SIGKILL)"
    )
    }));
    assert!(sv
        .on_reaped(&mut f, 42, ExitKind::Signaled(9))
        .is_continue());
    assert!(f.calls.contains(&Call::LambdaEnded(
        "runtime killed by signal 9 (SIGKILL)".into()
    )));
    assert!(matches!(sv.state(), State::Backoff { .. }));
    let now = f.clock;
    assert!(sv.on_tick(&mut f, now).is_continue());
    assert_eq!(
        sv.state(),
        State::Running { pid: 42 },
        "the fake's next pid"
    );
    assert_eq!(
        f.calls
            .iter()
            .filter(|c| matches!(c, Call::Spawn(..)))
            .count(),
        1
    );
    // No restart was counted against the policy's budget.
    assert!(!f
        .control
        .iter()
        .any(|c| matches!(c, stratos_wire::Control::Restart { .. })));
    // A crash afterwards follows the policy (never): the end.
    assert!(sv.on_reaped(&mut f, 42, ExitKind::Exited(1)).is_break());
}
