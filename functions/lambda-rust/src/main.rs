//! A Lambda function as AWS's documentation writes one with `lambda_runtime`: nothing in it
//! knows about StratOS. The event chooses what it does, so one image exercises every path:
//!
//! - `{"name": "x"}`: answers `{"message": "Hello, x!", "request_id": …, "deadline_ms": …}`;
//! - `{"fail": "why"}`: returns an error (the caller sees Lambda's error document);
//! - `{"sleep_ms": N}`: sleeps first (past the deadline, the invocation times out).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    fail: Option<String>,
    #[serde(default)]
    sleep_ms: Option<u64>,
}

#[derive(Serialize)]
struct Response {
    message: String,
    request_id: String,
    function_name: String,
    deadline_ms: u64,
}

async fn handler(event: LambdaEvent<Request>) -> Result<Response, Error> {
    let (req, ctx) = event.into_parts();
    if let Some(ms) = req.sleep_ms {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    if let Some(why) = req.fail {
        return Err(format!("the function failed as asked: {why}").into());
    }
    let name = req.name.unwrap_or_else(|| "world".to_owned());
    Ok(Response {
        message: format!("Hello, {name}! This is StratOS on Rust (lambda_runtime)."),
        request_id: ctx.request_id,
        function_name: ctx.env_config.function_name.clone(),
        deadline_ms: ctx.deadline,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    println!("lambda-rust: starting");
    lambda_runtime::run(service_fn(handler)).await
}
