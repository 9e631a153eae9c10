//! What a node or the operator reads: repositories over HTTP (with a thousand nodes, and a
//! server that drips), FIFOs where files are expected.

use predicates::prelude::PredicateBooleanExt;

use super::*;
pub(super) use crate::common::server::Server;

#[test]
fn end_to_end_over_http_canary_promote_rollback_with_a_thousand_nodes() {
    let w = world_with(&[]);
    w.publish(&w.img_a, "canary", 10);
    let server = Server::start(&w.repo);
    let url = server.url();
    // Node `node-ID` (state `nodes/node-ID`) following `channel` over HTTP.
    let node = |id: usize, channel: &str| Node {
        source: Source::parse(&url).unwrap(),
        channel: channel.parse().unwrap(),
        ..w.node(&format!("node-{id:04}"))
    };
    // Canary at 10%: about a tenth of 1,000 nodes are selected.
    let selected: Vec<usize> = (0..1000)
        .filter(|&i| node(i, "canary").check().unwrap().selected)
        .collect();
    eprintln!("canary at 10%: {} of 1000 nodes selected", selected.len());
    assert!((70..=130).contains(&selected.len()), "{}", selected.len());
    // A selected node fetches over HTTP with the command a node would run.
    let first = selected[0];
    let out = w
        .cmd()
        .args([
            "update",
            "fetch",
            "--json",
            "--repo",
            &url,
            "--channel",
            "canary",
        ])
        .args(["--node-id", &format!("node-{first:04}"), "--state"])
        .arg(w.path(&format!("nodes/node-{first:04}")))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["selected"], true);
    let staged = w
        .path(&format!("nodes/node-{first:04}"))
        .join(v["staged"].as_str().unwrap());
    assert_eq!(digests(&staged), digests(&w.img_a));
    // Promote to stable at 100%: every node on stable is selected.
    w.cmd()
        .args(["promote", "--repo"])
        .arg(&w.repo)
        .args([
            "--from",
            "canary",
            "--to",
            "stable",
            "--percent",
            "100",
            "--channel-key",
        ])
        .arg(&w.root_key)
        .assert()
        .success();
    let mut already = 0;
    for i in 0..1000 {
        let d = node(i, "stable").check().unwrap();
        // The canary node that staged A already has it; everyone else is selected.
        if d.reason.starts_with("already staged") {
            already += 1;
        } else {
            assert!(d.selected, "node {i}: {}", d.reason);
        }
    }
    assert_eq!(already, 1);
    // B goes out on stable, then the operator rolls back: nodes get A again, at a higher version.
    w.publish(&w.img_b, "stable", 100);
    let d = node(7, "stable").fetch_update().unwrap();
    assert_eq!((d.channel_version, d.image_version.as_str()), (2, "1.3.0"));
    w.cmd()
        .args(["rollback", "--repo"])
        .arg(&w.repo)
        .args(["--channel", "stable", "--channel-key"])
        .arg(&w.root_key)
        .assert()
        .success();
    let d = node(7, "stable").fetch_update().unwrap();
    assert!(d.selected);
    assert_eq!((d.channel_version, d.image_version.as_str()), (3, "1.2.3"));
    // Caps hold over HTTP too: an oversized document is aborted at the limit.
    let mut big = w.read("channels/stable.json");
    big.resize(2 << 20, b' ');
    w.write("channels/big.json", &big);
    w.write(
        "channels/big.sigs.json",
        &w.read("channels/stable.sigs.json"),
    );
    let n = node(8, "big");
    assert_rejected!(
        &n,
        check,
        ChannelError::TooLarge { rel, cap: 1_048_576 } if rel == "channels/big.json"
    );
}

// Item 3: a server that drips a byte every 200 ms would keep a node busy for days within the
// size cap; the request deadline cuts it off and says "timed out".

/// A server on 127.0.0.1 that answers every request with a status line and then one byte
/// every 200 ms (for two minutes at most).
fn drip_server() -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                if c.read(&mut buf).is_err() || c.write_all(b"HTTP/1.0 200 OK\r\n\r\n").is_err() {
                    return;
                }
                for _ in 0..600 {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    if c.write_all(b" ").is_err() {
                        return; // the client gave up
                    }
                }
            });
        }
    });
    port
}

#[test]
fn http_drip_feed_times_out() {
    let w = world();
    let port = drip_server();
    let url = format!("http://127.0.0.1:{port}/");
    let n = Node {
        source: Source::parse(&url)
            .unwrap()
            .with_timeout(std::time::Duration::from_secs(1)),
        ..w.node("n")
    };
    let before = snapshot(&n.state);
    let e = n.check().unwrap_err();
    assert!(matches!(e, ChannelError::Http(_)), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("127.0.0.1:{port}/root.json: timed out after"))
            && msg.contains("below the minimum of 64 KiB/s"),
        "{msg}"
    );
    assert_eq!(before, snapshot(&n.state), "the state changed after: {msg}");
    // The command a node runs: exit 1, the same reason, --network-timeout documented.
    let a = w
        .cmd()
        .args(["update", "check", "--network-timeout", "1s", "--repo", &url])
        .args(["--channel", "stable", "--node-id", "n", "--state"])
        .arg(&n.state)
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(predicates::str::contains("/root.json: timed out after"));
    assert_eq!(stderr_of(&a).matches("timed out").count(), 1);
    assert_eq!(before, snapshot(&n.state));
    // In JSON: a time-out is not a verification rejection.
    let out = w
        .cmd()
        .args([
            "update",
            "check",
            "--json",
            "--network-timeout",
            "1",
            "--repo",
            &url,
        ])
        .args(["--channel", "stable", "--node-id", "n", "--state"])
        .arg(&n.state)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rejected"], false);
    assert!(v["reason"].as_str().unwrap().contains("timed out"), "{v}");
    w.cmd()
        .args(["update", "check", "--help"])
        .assert()
        .success()
        .stdout(
            predicates::str::contains("--network-timeout <DURATION>")
                .and(predicates::str::contains("64 KiB/s")),
        );
}

// Item 4: FIFOs where files are expected are refused at once, naming the file.

#[test]
fn channel_publish_fifo_in_place_of_an_artifact() {
    let w = world();
    let img = w.copy_image(&w.img_b, "fifo-image");
    mkfifo(&img.join("kernel"));
    let before = snapshot(&w.repo);
    w.cmd()
        .arg("publish")
        .arg(&img)
        .arg("--repo")
        .arg(&w.repo)
        .args(["--channel", "stable", "--channel-key"])
        .arg(&w.root_key)
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(predicates::str::contains(format!(
            "{} is a FIFO, not a regular file",
            img.join("kernel").display()
        )));
    assert_eq!(before, snapshot(&w.repo));
    // The manifest or the signature as a FIFO: the same.
    for name in ["manifest.json", "manifest.sig"] {
        let img = w.copy_image(&w.img_b, &format!("fifo-{name}"));
        mkfifo(&img.join(name));
        w.cmd()
            .arg("publish")
            .arg(&img)
            .arg("--repo")
            .arg(&w.repo)
            .args(["--channel", "stable", "--channel-key"])
            .arg(&w.root_key)
            .timeout(std::time::Duration::from_secs(60))
            .assert()
            .code(1)
            .stderr(predicates::str::contains(format!("{name} is a FIFO")));
    }
    assert_eq!(before, snapshot(&w.repo));
}

#[test]
fn update_fetch_fifo_in_place_of_an_object() {
    let w = world();
    let n = w.node("n");
    w.drop_compressed(&w.img_a, "kernel");
    let object = w
        .repo
        .join("objects/sha256")
        .join(w.artifact_sha(&w.img_a, "kernel"));
    mkfifo(&object);
    let before = snapshot(&n.state);
    w.update("fetch", &n.state)
        .assert()
        .code(1)
        .stderr(predicates::str::contains(format!(
            "{} is a FIFO, not a regular file",
            object.display()
        )));
    assert_eq!(before, snapshot(&n.state));
    // A FIFO for a metadata document, too.
    mkfifo(&w.repo.join("channels/stable.json"));
    w.update("check", &n.state)
        .assert()
        .code(1)
        .stderr(predicates::str::contains("stable.json is a FIFO"));
    assert_eq!(before, snapshot(&n.state));
}

#[test]
fn channel_fifo_as_gate_waves_or_bootstrap_root() {
    let w = world();
    let fifo = w.path("fifo");
    mkfifo(&fifo);
    let before = snapshot(&w.repo);
    let run = |args: &[&str]| {
        w.cmd()
            .args(args)
            .arg(&fifo)
            .arg("--repo")
            .arg(&w.repo)
            .args(["--channel", "stable", "--channel-key"])
            .arg(&w.root_key)
            .timeout(std::time::Duration::from_secs(60))
            .assert()
            .code(2)
            .stderr(predicates::str::contains(format!(
                "{} is a FIFO, not a regular file",
                fifo.display()
            )))
    };
    run(&["rollout", "advance", "--gate"]).stderr(predicates::str::contains("--gate: "));
    run(&["rollout", "--waves"]).stderr(predicates::str::contains("--waves: "));
    assert_eq!(before, snapshot(&w.repo));
    let state = w.path("fresh-node");
    w.update("check", &state)
        .arg("--bootstrap-root")
        .arg(&fifo)
        .assert()
        .code(2)
        .stderr(
            predicates::str::contains("--bootstrap-root: ").and(predicates::str::contains(
                format!("{} is a FIFO", fifo.display()),
            )),
        );
    assert!(!state.exists());
}
