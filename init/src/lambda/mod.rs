//! The Lambda interface (`[init] interface = "lambda"`): the init serves AWS Lambda's Runtime
//! API to the runtime on loopback, and takes invocations from the host on the port the VM
//! forwards, the way AWS's Runtime Interface Emulator (RIE) does:
//!
//! - `POST /2015-03-31/functions/function/invocations` (the invoke endpoint, any address): the
//!   body is the event; the answer is the function's response, or (status 200 with
//!   `X-Amz-Function-Error: Unhandled`) its error document, Lambda's timeout document, or the
//!   oversize or runtime-exit document;
//! - `GET /2018-06-01/runtime/invocation/next`, `POST …/invocation/{id}/response`,
//!   `POST …/invocation/{id}/error`, `POST /2018-06-01/runtime/init/error` (the Runtime API,
//!   on 127.0.0.1).
//!
//! One invocation at a time ([`broker`]); bodies of at most [`MAX_PAYLOAD`] bytes either way;
//! every request head, body, connection and queue bounded ([`http`], [`serve`]), so neither
//! the runtime (untrusted) nor a caller can make the init hold more than a few such bodies.
//! What the init must act on comes out as [`LambdaEvent`]s, announced by the `wake` callback
//! (in the VM a signal to PID 1, so its supervision loop reads them at once).

pub mod broker;
pub mod http;
pub mod ids;
pub mod serve;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use broker::Broker;

/// The largest event and the largest response, in bytes: RIE's `MaxPayloadSize` (Lambda's
/// 6 MB synchronous limit, 6 MiB + 100 bytes).
pub const MAX_PAYLOAD: u64 = 6 * 1024 * 1024 + 100;

/// How long a runtime just started may take to ask for its first invocation: Lambda's init
/// phase (10 s). Invocations that arrive meanwhile wait for it; their own timeout starts when
/// the runtime takes the event. The first runtime that does not ask within it fails the boot.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The invoke endpoint's path (RIE's).
pub const INVOKE_PATH: &str = "/2015-03-31/functions/function/invocations";

/// What the init hears from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LambdaEvent {
    /// A runtime asked for its first invocation (`GET …/next`): it is ready. Once per
    /// runtime process (again after a restart).
    Ready,
    /// The runtime posted `init/error` before it asked for any invocation: the boot fails
    /// with this (printable, bounded) message.
    InitError(String),
    /// Invocation `request_id` was not answered within `timeout_ms` of being handed out: its
    /// caller got Lambda's timeout document; the runtime must be killed (and started again).
    TimedOut { request_id: String, timeout_ms: u64 },
}

/// Where and how the server serves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The Runtime API's address (127.0.0.1:9001 in the VM).
    pub api: SocketAddr,
    /// The invoke endpoint's address (0.0.0.0:8080 in the VM).
    pub invoke: SocketAddr,
    pub timeout: Duration,
    /// The runtime's init phase ([`INIT_TIMEOUT`] in the VM).
    pub init_timeout: Duration,
    /// `Lambda-Runtime-Invoked-Function-Arn`.
    pub function_arn: String,
}

impl ServerConfig {
    /// The server the init config asks for.
    pub fn from_wire(l: &stratos_wire::Lambda) -> Self {
        ServerConfig {
            api: SocketAddr::from((Ipv4Addr::LOCALHOST, l.api_port)),
            invoke: SocketAddr::from((Ipv4Addr::UNSPECIFIED, l.invoke_port)),
            timeout: Duration::from_millis(l.timeout_ms),
            init_timeout: INIT_TIMEOUT,
            function_arn: function_arn(&l.function_name),
        }
    }
}

/// The invoked function's ARN, as RIE makes it (a fixed region and account: there is no AWS
/// account behind it).
pub fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:us-east-1:012345678912:function:{name}")
}

/// The running server: both listeners bound, their threads started.
pub struct Server {
    broker: Arc<Broker>,
    pub api_addr: SocketAddr,
    pub invoke_addr: SocketAddr,
}

impl Server {
    /// Binds both listeners (so the ports are the init's before the runtime starts) and serves
    /// them in background threads.
    pub fn start(cfg: &ServerConfig, wake: Box<dyn Fn() + Send + Sync>) -> io::Result<Server> {
        let api = TcpListener::bind(cfg.api).map_err(|e| bind_error(e, "Runtime API", cfg.api))?;
        let invoke = TcpListener::bind(cfg.invoke)
            .map_err(|e| bind_error(e, "invoke endpoint", cfg.invoke))?;
        let broker = Arc::new(Broker::new(cfg.timeout, cfg.init_timeout, wake));
        let server = Server {
            broker: broker.clone(),
            api_addr: api.local_addr()?,
            invoke_addr: invoke.local_addr()?,
        };
        serve::spawn_listener(
            api,
            serve::Side::Api,
            broker.clone(),
            cfg.function_arn.clone(),
        )?;
        serve::spawn_listener(
            invoke,
            serve::Side::Invoke,
            broker,
            cfg.function_arn.clone(),
        )?;
        Ok(server)
    }

    /// The events since the last call.
    pub fn take_events(&self) -> Vec<LambdaEvent> {
        self.broker.take_events()
    }

    /// A runtime process was started: see [`Broker::runtime_started`].
    pub fn runtime_started(&self) {
        self.broker.runtime_started();
    }

    /// The runtime process ended (`how`, for people): see [`Broker::runtime_ended`].
    pub fn runtime_ended(&self, how: &str) {
        self.broker.runtime_ended(how);
    }
}

fn bind_error(e: io::Error, what: &str, addr: SocketAddr) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("cannot listen on {addr} for the Lambda {what}: {e}"),
    )
}

/// The environment a Lambda runtime is given, added to the profile's (whose variables win, as
/// RIE lets the container's win): `memory_mib` is the memory the function may use.
pub fn runtime_env(
    l: &stratos_wire::Lambda,
    env: &[(String, String)],
    memory_mib: u64,
) -> Vec<(String, String)> {
    let mut out = env.to_vec();
    let mut add = |k: &str, v: String| {
        if !out.iter().any(|(n, _)| n == k) {
            out.push((k.to_owned(), v));
        }
    };
    add(
        "AWS_LAMBDA_RUNTIME_API",
        format!("127.0.0.1:{}", l.api_port),
    );
    if !l.handler.is_empty() {
        add("_HANDLER", l.handler.clone());
    }
    add("LAMBDA_TASK_ROOT", l.task_root.clone());
    add("LAMBDA_RUNTIME_DIR", "/var/runtime".into());
    add("AWS_LAMBDA_FUNCTION_NAME", l.function_name.clone());
    add("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into());
    add("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mib.to_string());
    add(
        "AWS_LAMBDA_LOG_GROUP_NAME",
        format!("/aws/lambda/{}", l.function_name),
    );
    add("AWS_LAMBDA_LOG_STREAM_NAME", "$LATEST".into());
    add("TZ", ":UTC".into());
    out.sort();
    out
}
