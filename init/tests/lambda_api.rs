//! The Lambda interface's server on loopback, on the host: a fake runtime (a thread speaking
//! the Runtime API) and callers speaking plain HTTP to the invoke endpoint, as a user would
//! with `curl -d EVENT http://127.0.0.1:PORT/2015-03-31/functions/function/invocations`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stratos_init::lambda::{LambdaEvent, Server, ServerConfig, INVOKE_PATH, MAX_PAYLOAD};

const NEXT: &str = "/2018-06-01/runtime/invocation/next";

/// A server on ephemeral loopback ports; its wake-ups counted.
struct Fixture {
    server: Server,
    wakes: Arc<Mutex<u32>>,
}

fn start(timeout_ms: u64) -> Fixture {
    start_with_init(timeout_ms, 0)
}

/// With an init phase of `init_ms` (the VM's is 10 s).
fn start_with_init(timeout_ms: u64, init_ms: u64) -> Fixture {
    let cfg = ServerConfig {
        api: "127.0.0.1:0".parse().unwrap(),
        invoke: "127.0.0.1:0".parse().unwrap(),
        timeout: Duration::from_millis(timeout_ms),
        init_timeout: Duration::from_millis(init_ms),
        function_arn: stratos_init::lambda::function_arn("hello"),
    };
    let wakes = Arc::new(Mutex::new(0));
    let w = wakes.clone();
    let server = Server::start(&cfg, Box::new(move || *w.lock().unwrap() += 1)).unwrap();
    Fixture { server, wakes }
}

/// An event's `Lambda-Runtime-Deadline-Ms` and the wall clock now, in milliseconds.
fn deadline_and_now(ev: &Resp) -> (u128, u128) {
    let deadline = ev
        .header("Lambda-Runtime-Deadline-Ms")
        .unwrap()
        .parse()
        .unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    (deadline, now)
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 connection, kept alive.
struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let w = s.try_clone().unwrap();
        Client {
            r: BufReader::new(s),
            w,
        }
    }

    fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut all = req.into_bytes();
        all.extend_from_slice(body);
        // A refused body may be cut short by the server closing: the answer still counts.
        let _ = self.w.write_all(&all);
    }

    fn read(&mut self) -> Resp {
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        let status: u16 = line
            .split(' ')
            .nth(1)
            .unwrap_or_else(|| panic!("no status line: {line:?}"))
            .parse()
            .unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.r.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').unwrap();
            headers.push((n.to_owned(), v.trim().to_owned()));
        }
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; len];
        self.r.read_exact(&mut body).unwrap();
        Resp {
            status,
            headers,
            body,
        }
    }

    fn call(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        self.send(method, path, headers, body);
        self.read()
    }

    /// POSTs `body` as the response to the invocation `ev` (the runtime's side of a success).
    fn respond(&mut self, ev: &Resp, body: &[u8]) -> Resp {
        let path = format!("/2018-06-01/runtime/invocation/{}/response", request_id(ev));
        self.call("POST", &path, &[], body)
    }

    /// Whether the server closed the connection (EOF, or a reset).
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        !matches!(self.r.read(&mut b), Ok(n) if n > 0)
    }
}

/// A caller: POSTs `event` to the invoke endpoint, as `curl -d` does.
fn invoke(f: &Fixture, event: &[u8]) -> Resp {
    Client::connect(f.server.invoke_addr).call(
        "POST",
        INVOKE_PATH,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        event,
    )
}

/// The same from a thread.
fn invoke_later(f: &Fixture, event: &[u8]) -> thread::JoinHandle<Resp> {
    let addr = f.server.invoke_addr;
    let event = event.to_vec();
    thread::spawn(move || {
        Client::connect(addr).call(
            "POST",
            INVOKE_PATH,
            &[("Content-Type", "application/json")],
            &event,
        )
    })
}

fn runtime(f: &Fixture) -> Client {
    Client::connect(f.server.api_addr)
}

fn request_id(r: &Resp) -> String {
    r.header("Lambda-Runtime-Aws-Request-Id")
        .expect("a request id")
        .to_owned()
}

fn assert_function_error(r: &Resp, error_type: &str, message_has: &str) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("X-Amz-Function-Error"), Some("Unhandled"), "{r:?}");
    let doc = r.json();
    assert_eq!(doc["errorType"], error_type, "{doc}");
    let msg = doc["errorMessage"].as_str().unwrap();
    assert!(msg.contains(message_has), "{msg:?} lacks {message_has:?}");
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn an_event_reaches_the_runtime_with_lambdas_headers_and_its_response_the_caller() {
    let f = start(3000);
    let mut rt = runtime(&f);
    rt.send("GET", NEXT, &[], b"");
    // The first request for an invocation is the runtime's readiness, reported with a wake-up.
    wait_for("ready", || {
        (f.server.take_events() == vec![LambdaEvent::Ready]).then_some(())
    });
    assert!(*f.wakes.lock().unwrap() >= 1);
    let caller = {
        let addr = f.server.invoke_addr;
        thread::spawn(move || {
            Client::connect(addr).call(
                "POST",
                INVOKE_PATH,
                &[
                    ("X-Amz-Client-Context", "eyJjdXN0b20iOnsiayI6InYifX0="),
                    (
                        "X-Amzn-Trace-Id",
                        "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
                    ),
                ],
                br#"{"name":"world"}"#,
            )
        })
    };
    let ev = rt.read();
    assert_eq!(ev.status, 200);
    assert_eq!(ev.body, br#"{"name":"world"}"#);
    let id = request_id(&ev);
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(&id[14..15], "4", "a version 4 UUID: {id}");
    let (deadline, now) = deadline_and_now(&ev);
    assert!(
        deadline > now + 2000 && deadline <= now + 3000,
        "deadline {deadline}, now {now}"
    );
    assert_eq!(
        ev.header("Lambda-Runtime-Invoked-Function-Arn"),
        Some("arn:aws:lambda:us-east-1:012345678912:function:hello")
    );
    assert_eq!(
        ev.header("Lambda-Runtime-Trace-Id"),
        Some("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1")
    );
    assert_eq!(
        ev.header("Lambda-Runtime-Client-Context"),
        Some(r#"{"custom":{"k":"v"}}"#)
    );
    assert_eq!(ev.header("Lambda-Runtime-Cognito-Identity"), None);
    let ok = rt.call(
        "POST",
        &format!("/2018-06-01/runtime/invocation/{id}/response"),
        &[("Content-Type", "application/json")],
        br#"{"greeting":"hello world"}"#,
    );
    assert_eq!(
        (ok.status, ok.text()),
        (202, r#"{"status":"OK"}"#.to_owned())
    );
    let r = caller.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), r#"{"greeting":"hello world"}"#);
    assert_eq!(r.header("X-Amz-Function-Error"), None);
    assert_eq!(r.header("X-Amzn-RequestId"), Some(id.as_str()));

    // The next call on the same (kept-alive) runtime connection gets a fresh id and a trace
    // id made up for a caller that sent none.
    rt.send("GET", NEXT, &[], b"");
    let caller = invoke_later(&f, b"2");
    let ev = rt.read();
    let id2 = request_id(&ev);
    assert_ne!(id2, id);
    assert!(ev
        .header("Lambda-Runtime-Trace-Id")
        .unwrap()
        .starts_with("Root=1-"));
    assert_eq!(ev.header("Lambda-Runtime-Client-Context"), None);
    rt.call(
        "POST",
        &format!("/2018-06-01/runtime/invocation/{id2}/response"),
        &[],
        b"two",
    );
    assert_eq!(caller.join().unwrap().text(), "two");
    // Ready is reported once per runtime.
    assert_eq!(f.server.take_events(), vec![]);
}

#[test]
fn a_function_error_reaches_the_caller_as_its_document_with_x_amz_function_error() {
    let f = start(3000);
    let mut rt = runtime(&f);
    rt.send("GET", NEXT, &[], b"");
    let caller = invoke_later(&f, b"{}");
    let id = request_id(&rt.read());
    let doc = br#"{"errorMessage":"boom","errorType":"ValueError","stackTrace":[]}"#;
    let ok = rt.call(
        "POST",
        &format!("/2018-06-01/runtime/invocation/{id}/error"),
        &[("Lambda-Runtime-Function-Error-Type", "Unhandled")],
        doc,
    );
    assert_eq!(ok.status, 202);
    let r = caller.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Amz-Function-Error"), Some("Unhandled"));
    assert_eq!(r.body, doc);
}

#[test]
fn an_unknown_request_id_is_refused_with_400_and_a_second_answer_with_403() {
    let f = start(3000);
    let mut rt = runtime(&f);
    let unknown = rt.call(
        "POST",
        "/2018-06-01/runtime/invocation/not-an-id/response",
        &[],
        b"x",
    );
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.json()["errorType"], "InvalidRequestID");
    // The connection carries on after a refusal.
    rt.send("GET", NEXT, &[], b"");
    let caller = invoke_later(&f, b"{}");
    let id = request_id(&rt.read());
    let path = format!("/2018-06-01/runtime/invocation/{id}/response");
    assert_eq!(rt.call("POST", &path, &[], b"first").status, 202);
    let again = rt.call("POST", &path, &[], b"second");
    assert_eq!(again.status, 403, "{}", again.text());
    assert_eq!(again.json()["errorType"], "InvalidStateTransition");
    let err_after = rt.call(
        "POST",
        &format!("/2018-06-01/runtime/invocation/{id}/error"),
        &[],
        b"{}",
    );
    assert_eq!(err_after.status, 403);
    assert_eq!(caller.join().unwrap().text(), "first");
    // A well-formed id that was never handed out.
    let never = rt.call(
        "POST",
        "/2018-06-01/runtime/invocation/8f6c2c1e-8a51-4c43-9c3c-2a0a2b0b3f4e/response",
        &[],
        b"x",
    );
    assert_eq!(never.status, 400);
}

#[test]
fn a_7_mb_response_is_refused_and_the_caller_gets_lambdas_oversize_error() {
    let f = start(5000);
    let mut rt = runtime(&f);
    rt.send("GET", NEXT, &[], b"");
    let caller = invoke_later(&f, b"{}");
    let id = request_id(&rt.read());
    let big = vec![b'a'; 7 * 1024 * 1024];
    let r = rt.call(
        "POST",
        &format!("/2018-06-01/runtime/invocation/{id}/response"),
        &[],
        &big,
    );
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["errorType"], "RequestEntityTooLarge");
    assert_function_error(
        &caller.join().unwrap(),
        "Function.ResponseSizeTooLarge",
        &format!("Response payload size (7340032 bytes) exceeded maximum allowed payload size ({MAX_PAYLOAD} bytes)."),
    );
    // Drained, the runtime's connection still works.
    rt.send("GET", NEXT, &[], b"");
    let caller = invoke_later(&f, b"small");
    let id = request_id(&rt.read());
    rt.call(
        "POST",
        &format!("/2018-06-01/runtime/invocation/{id}/response"),
        &[],
        b"fine",
    );
    assert_eq!(caller.join().unwrap().text(), "fine");
}

#[test]
fn a_response_at_the_limit_passes_and_one_byte_more_does_not() {
    let f = start(5000);
    let mut rt = runtime(&f);
    for (size, passes) in [
        (MAX_PAYLOAD as usize, true),
        (MAX_PAYLOAD as usize + 1, false),
    ] {
        rt.send("GET", NEXT, &[], b"");
        let caller = invoke_later(&f, b"{}");
        let id = request_id(&rt.read());
        let body = vec![b'x'; size];
        let r = rt.call(
            "POST",
            &format!("/2018-06-01/runtime/invocation/{id}/response"),
            &[],
            &body,
        );
        let c = caller.join().unwrap();
        if passes {
            assert_eq!(r.status, 202);
            assert_eq!(c.body.len(), size);
        } else {
            assert_eq!(r.status, 413);
            assert_function_error(&c, "Function.ResponseSizeTooLarge", "exceeded");
        }
    }
}

#[test]
fn a_7_mb_event_is_refused_before_the_runtime_sees_it() {
    let f = start(3000);
    let big = vec![b'e'; 7 * 1024 * 1024];
    let r = invoke(&f, &big);
    assert_eq!(r.status, 413);
    let doc = r.json();
    assert_eq!(doc["errorType"], "RequestEntityTooLarge");
    assert_eq!(
        doc["errorMessage"],
        format!("Exceeded maximum allowed payload size ({MAX_PAYLOAD} bytes).")
    );
    // As curl sends a large body: `Expect: 100-continue` first; refused without the body.
    let mut c = Client::connect(f.server.invoke_addr);
    c.w.write_all(
        format!(
            "POST {INVOKE_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            big.len()
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(c.read().status, 413);
    // The runtime gets the next event, not the refused ones.
    let mut rt = runtime(&f);
    rt.send("GET", NEXT, &[], b"");
    let caller = invoke_later(&f, b"next one");
    let ev = rt.read();
    assert_eq!(ev.body, b"next one");
    rt.respond(&ev, b"ok");
    assert_eq!(caller.join().unwrap().text(), "ok");
}

#[test]
fn curl_with_expect_100_continue_is_served() {
    let f = start(3000);
    let mut rt = runtime(&f);
    rt.send("GET", NEXT, &[], b"");
    let addr = f.server.invoke_addr;
    let caller = thread::spawn(move || {
        let mut c = Client::connect(addr);
        let body = vec![b'z'; 2 * 1024 * 1024];
        c.w.write_all(
            format!(
                "POST {INVOKE_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
        let cont = c.read();
        assert_eq!(cont.status, 100);
        c.w.write_all(&body).unwrap();
        c.read()
    });
    let ev = rt.read();
    assert_eq!(ev.body.len(), 2 * 1024 * 1024);
    rt.respond(&ev, b"got it");
    assert_eq!(caller.join().unwrap().text(), "got it");
}

#[test]
fn a_runtime_that_never_asks_leaves_the_caller_a_timeout_and_is_not_killed() {
    // The caller waits for the init phase (600 ms), not only the function's timeout.
    let f = start_with_init(300, 600);
    let t0 = Instant::now();
    let r = invoke(&f, b"{}");
    assert!(t0.elapsed() >= Duration::from_millis(600));
    assert_function_error(&r, "Sandbox.Timedout", "Task timed out after 0.30 seconds");
    assert_function_error(&r, "Sandbox.Timedout", "did not ask for the event");
    assert_function_error(&r, "Sandbox.Timedout", "init phase of 0.60 seconds");
    assert_eq!(f.server.take_events(), vec![]);
}

#[test]
fn an_event_sent_during_the_init_phase_waits_for_the_runtime_and_its_timeout_starts_when_taken() {
    // A runtime slow to start (Python's awslambdaric imports for a second or more under TCG):
    // the first call outlives the function's 300 ms timeout waiting, and is still served.
    let f = start_with_init(300, 10_000);
    let caller = invoke_later(&f, b"early");
    thread::sleep(Duration::from_millis(700));
    let mut rt = runtime(&f);
    let ev = rt.call("GET", NEXT, &[], b"");
    assert_eq!(ev.body, b"early");
    let (deadline, now) = deadline_and_now(&ev);
    assert!(
        deadline > now + 150 && deadline <= now + 300,
        "the deadline counts from the hand-out: {deadline} vs now {now}"
    );
    let r = rt.respond(&ev, b"late but fine");
    assert_eq!(r.status, 202);
    let r = caller.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "late but fine");
    // Once the runtime is up, the function's timeout alone bounds the wait again.
    let t0 = Instant::now();
    let r = invoke(&f, b"{}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_function_error(&r, "Sandbox.Timedout", "Task timed out after 0.30 seconds");
}

#[test]
fn a_runtime_past_its_deadline_is_reported_and_its_successor_serves_the_next_call() {
    let f = start(300);
    let mut rt = runtime(&f);
    rt.send("GET", NEXT, &[], b"");
    let caller = invoke_later(&f, b"slow");
    let id = request_id(&rt.read());
    let r = caller.join().unwrap();
    assert_function_error(&r, "Sandbox.Timedout", "Task timed out after 0.30 seconds");
    assert!(r.json()["errorMessage"]
        .as_str()
        .unwrap()
        .starts_with(&format!("RequestId: {id} Error:")));
    let events = wait_for("the timeout", || {
        let e = f.server.take_events();
        e.iter()
            .any(|e| matches!(e, LambdaEvent::TimedOut { .. }))
            .then_some(e)
    });
    assert!(events.contains(&LambdaEvent::TimedOut {
        request_id: id.clone(),
        timeout_ms: 300
    }));
    // Until the runtime ended, nothing is handed out: the old runtime asks again and waits.
    let mut old = runtime(&f);
    old.send("GET", NEXT, &[], b"");
    let late = rt.call(
        "POST",
        &format!("/2018-06-01/runtime/invocation/{id}/response"),
        &[],
        b"too late",
    );
    assert_eq!(late.status, 403, "{}", late.text());
    // The init killed it (its connections close with it) and reaped it.
    drop(old);
    drop(rt);
    f.server
        .runtime_ended("runtime killed by signal 9 (SIGKILL)");
    let mut new = runtime(&f);
    new.send("GET", NEXT, &[], b"");
    wait_for("the new runtime ready", || {
        f.server
            .take_events()
            .contains(&LambdaEvent::Ready)
            .then_some(())
    });
    let caller = invoke_later(&f, b"again");
    let ev = new.read();
    assert_eq!(ev.body, b"again");
    new.call(
        "POST",
        &format!(
            "/2018-06-01/runtime/invocation/{}/response",
            request_id(&ev)
        ),
        &[],
        b"fast",
    );
    assert_eq!(caller.join().unwrap().text(), "fast");
}

#[test]
fn a_runtime_that_exits_holding_an_event_fails_it_with_runtime_exit_error() {
    let f = start(3000);
    let mut rt = runtime(&f);
    rt.send("GET", NEXT, &[], b"");
    let caller = invoke_later(&f, b"{}");
    let id = request_id(&rt.read());
    f.server.runtime_ended("runtime exited with status 1");
    let r = caller.join().unwrap();
    assert_function_error(&r, "Runtime.ExitError", "runtime exited with status 1");
    assert!(r.json()["errorMessage"]
        .as_str()
        .unwrap()
        .starts_with(&format!("RequestId: {id} ")));
}

#[test]
fn init_error_is_reported_before_the_first_next_and_refused_after() {
    let f = start(3000);
    let mut rt = runtime(&f);
    let r = rt.call(
        "POST",
        "/2018-06-01/runtime/init/error",
        &[("Lambda-Runtime-Function-Error-Type", "Runtime.ImportModuleError")],
        br#"{"errorMessage":"Unable to import module 'app': No module named 'app'\n","errorType":"Runtime.ImportModuleError"}"#,
    );
    assert_eq!(r.status, 202);
    assert_eq!(
        f.server.take_events(),
        vec![LambdaEvent::InitError(
            "Runtime.ImportModuleError: Unable to import module 'app': No module named 'app'"
                .into()
        )]
    );
    rt.send("GET", NEXT, &[], b"");
    wait_for("ready", || {
        f.server
            .take_events()
            .contains(&LambdaEvent::Ready)
            .then_some(())
    });
    let mut other = runtime(&f);
    let after = other.call("POST", "/2018-06-01/runtime/init/error", &[], b"{}");
    assert_eq!(after.status, 403);
    assert_eq!(f.server.take_events(), vec![]);
}

#[test]
fn callers_are_served_one_at_a_time_in_turn() {
    let f = start(5000);
    let callers: Vec<_> = (0..4)
        .map(|n| invoke_later(&f, format!("event {n}").as_bytes()))
        .collect();
    let mut rt = runtime(&f);
    let mut seen = Vec::new();
    for _ in 0..4 {
        rt.send("GET", NEXT, &[], b"");
        let ev = rt.read();
        // While the runtime holds one, the others wait: a second request gets nothing yet.
        let mut peek = runtime(&f);
        peek.send("GET", NEXT, &[], b"");
        peek.r
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut b = [0u8; 1];
        assert!(
            peek.r.read(&mut b).is_err(),
            "a second event was handed out"
        );
        drop(peek);
        let body = ev.text();
        seen.push(body.clone());
        rt.call(
            "POST",
            &format!(
                "/2018-06-01/runtime/invocation/{}/response",
                request_id(&ev)
            ),
            &[],
            format!("re: {body}").as_bytes(),
        );
    }
    let answers: Vec<String> = callers
        .into_iter()
        .map(|c| c.join().unwrap().text())
        .collect();
    for (n, answer) in answers.iter().enumerate() {
        assert!(seen.contains(&format!("event {n}")), "{seen:?}");
        assert_eq!(answer, &format!("re: event {n}"));
    }
}

#[test]
fn the_runtime_may_send_its_answer_chunked() {
    let f = start(3000);
    let mut rt = runtime(&f);
    rt.send("GET", NEXT, &[], b"");
    let caller = invoke_later(&f, b"{}");
    let id = request_id(&rt.read());
    rt.send(
        "POST",
        &format!("/2018-06-01/runtime/invocation/{id}/response"),
        &[("Transfer-Encoding", "chunked")],
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
    );
    assert_eq!(rt.read().status, 202);
    assert_eq!(caller.join().unwrap().text(), "hello world");
}

#[test]
fn other_paths_and_malformed_requests_get_clear_answers() {
    let f = start(3000);
    let mut c = Client::connect(f.server.invoke_addr);
    let r = c.call(
        "POST",
        "/2015-03-31/functions/other/invocations",
        &[],
        b"{}",
    );
    assert_eq!(
        (r.status, r.text()),
        (404, "404 page not found\n".to_owned())
    );
    // Kept alive after a 404.
    let r = c.call("GET", "/", &[], b"");
    assert_eq!(r.status, 404);
    let mut rt = runtime(&f);
    let r = rt.call("GET", "/2018-06-01/extension/register", &[], b"");
    assert_eq!(r.status, 404);
    let r = rt.call("POST", NEXT, &[], b"");
    assert_eq!((r.status, r.header("Allow")), (405, Some("GET")));
    // A head larger than the server reads.
    let mut c = Client::connect(f.server.invoke_addr);
    let huge = "a".repeat(1024 * 1024 + 1);
    let r = c.call("POST", INVOKE_PATH, &[("X-Big", &huge)], b"{}");
    assert_eq!(r.status, 431);
    assert!(c.closed());
    // Conflicting framing (request smuggling) is refused.
    let mut c = Client::connect(f.server.invoke_addr);
    let r = c.call(
        "POST",
        INVOKE_PATH,
        &[("Transfer-Encoding", "chunked"), ("Content-Length", "3")],
        b"abc",
    );
    assert_eq!(r.status, 400);
    // Not base64.
    let r = Client::connect(f.server.invoke_addr).call(
        "POST",
        INVOKE_PATH,
        &[("X-Amz-Client-Context", "%%%")],
        b"{}",
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("X-Amz-Client-Context"));
}

#[test]
fn connections_beyond_the_limit_are_refused_and_the_server_keeps_serving() {
    let f = start(3000);
    let idle: Vec<Client> = (0..stratos_init::lambda::serve::MAX_CONNECTIONS)
        .map(|_| Client::connect(f.server.invoke_addr))
        .collect();
    // Wait until the server has taken them all (accepting is asynchronous).
    let r = wait_for("a refusal", || {
        let mut c = Client::connect(f.server.invoke_addr);
        c.r.get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut line = String::new();
        match c.r.read_line(&mut line) {
            Ok(n) if n > 0 => Some(line),
            _ => None,
        }
    });
    assert!(r.starts_with("HTTP/1.1 429"), "{r}");
    drop(idle);
    // Once they are gone, calls are served again.
    let mut rt = runtime(&f);
    rt.send("GET", NEXT, &[], b"");
    let caller = {
        let addr = f.server.invoke_addr;
        thread::spawn(move || {
            wait_for("a free connection", || {
                let mut c = Client::connect(addr);
                c.send("POST", INVOKE_PATH, &[], b"back");
                let mut line = String::new();
                c.r.read_line(&mut line).ok()?;
                line.starts_with("HTTP/1.1 200").then_some(())
            })
        })
    };
    let ev = rt.read();
    rt.respond(&ev, b"ok");
    caller.join().unwrap();
}

/// Runs the real `curl` against the invoke endpoint, `stdin` for its `@-`; returns its `-D -`
/// output (status line, headers, body).
fn curl(f: &Fixture, args: &[&str], stdin: &[u8]) -> String {
    use std::process::{Command, Stdio};
    let url = format!("http://{}{INVOKE_PATH}", f.server.invoke_addr);
    let mut child = Command::new("curl")
        .args(["-sS", "-D", "-", "--max-time", "20"])
        .args(args)
        .arg(&url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run curl ({e}): ci/setup installs it"));
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let feeder = thread::spawn(move || {
        // curl stops reading a body the server refused: a broken pipe is expected then.
        let _ = input.write_all(&stdin);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How a fake runtime answers an event: `Ok` a response, `Err` an error document.
type Answer = fn(&[u8]) -> Result<Vec<u8>, Vec<u8>>;

/// A fake runtime answering `n` events, each with what `answer` makes of it (a response, or an
/// error document when it returns `Err`).
fn serve_events(f: &Fixture, n: usize, answer: Answer) -> thread::JoinHandle<()> {
    let mut rt = runtime(f);
    thread::spawn(move || {
        for _ in 0..n {
            rt.send("GET", NEXT, &[], b"");
            let ev = rt.read();
            let id = request_id(&ev);
            let (kind, body) = match answer(&ev.body) {
                Ok(b) => ("response", b),
                Err(b) => ("error", b),
            };
            let r = rt.call(
                "POST",
                &format!("/2018-06-01/runtime/invocation/{id}/{kind}"),
                &[("Content-Type", "application/json")],
                &body,
            );
            assert_eq!(r.status, 202);
        }
    })
}

#[test]
fn curl_gets_responses_errors_and_the_oversize_refusal() {
    let f = start(3000);
    let runtime = serve_events(&f, 3, |event| {
        if event.starts_with(b"{\"fail\"") {
            Err(br#"{"errorMessage":"asked to fail","errorType":"Exception"}"#.to_vec())
        } else {
            Ok(format!("{{\"got\":{}}}", event.len()).into_bytes())
        }
    });
    let ok = curl(&f, &["-d", r#"{"name":"world"}"#], b"");
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert!(ok.ends_with("\r\n\r\n{\"got\":16}"), "{ok}");
    let failed = curl(&f, &["-d", r#"{"fail":true}"#], b"");
    assert!(failed.starts_with("HTTP/1.1 200 OK\r\n"), "{failed}");
    assert!(
        failed.contains("X-Amz-Function-Error: Unhandled\r\n"),
        "{failed}"
    );
    assert!(
        failed.ends_with(r#"{"errorMessage":"asked to fail","errorType":"Exception"}"#),
        "{failed}"
    );
    // A 2 MB event: curl asks `Expect: 100-continue` first.
    let big_ok = curl(&f, &["--data-binary", "@-"], &vec![b'2'; 2 * 1024 * 1024]);
    assert!(big_ok.contains("HTTP/1.1 200 OK\r\n"), "{big_ok}");
    assert!(big_ok.ends_with("{\"got\":2097152}"), "{big_ok}");
    runtime.join().unwrap();
    // A 7 MB event is refused before anything reaches the runtime.
    let refused = curl(&f, &["--data-binary", "@-"], &vec![b'7'; 7 * 1024 * 1024]);
    assert!(refused.contains("HTTP/1.1 413 "), "{refused}");
    assert!(
        refused.ends_with(&format!(
            r#"{{"errorMessage":"Exceeded maximum allowed payload size ({MAX_PAYLOAD} bytes).","errorType":"RequestEntityTooLarge"}}"#
        )),
        "{refused}"
    );
}
