//! Freshness: expired documents, replays of older versions, forks of one version, documents
//! for another channel, freeze attacks with stale but unexpired documents, and the operator's
//! rollback and refresh that nodes accept.

use super::*;

#[test]
fn attack_replayed_older_channel_version() {
    let w = world();
    let n = w.node("n");
    let (old, old_sigs) = (
        w.read("channels/stable.json"),
        w.read("channels/stable.sigs.json"),
    );
    w.publish(&w.img_b, "stable", 100);
    assert_eq!(n.check().unwrap().channel_version, 2);
    w.write("channels/stable.json", &old);
    w.write("channels/stable.sigs.json", &old_sigs);
    let e = assert_rejected!(
        &n,
        check,
        ChannelError::Replayed {
            role: RoleName::Channel,
            have: 2,
            got: 1,
            ..
        }
    );
    assert!(
        e.to_string()
            .ends_with("version 1 is older than the version 2 this node already accepted (replay)"),
        "{e}"
    );
    assert_rejected!(&n, fetch, ChannelError::Replayed { .. });
}

#[test]
fn attack_expired_channel_document() {
    let w = world();
    let n = w.node("n");
    let mut doc = w.channel_doc("stable");
    doc.version += 1;
    doc.expires = channel::now() - 1;
    w.forge("stable", &doc, &[&w.key(&w.root_key)]);
    assert_rejected!(
        &n,
        check,
        ChannelError::Expired {
            role: RoleName::Channel,
            version: 2,
            ..
        }
    );
}

#[test]
fn attack_expired_root() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    let key = w.key(&w.root_key);
    let mut root: Root = channel::parse_root(&w.read("root.json"), "root").unwrap();
    root.version = 2;
    root.expires = channel::now() - 1;
    let bytes = to_bytes(&root);
    w.write("roots/2.root.json", &bytes);
    w.write("roots/2.sigs.json", &sign_bytes(&bytes, &[&key]));
    w.write("root.json", &bytes);
    let e = assert_rejected!(
        &n,
        check,
        ChannelError::Expired {
            role: RoleName::Root,
            version: 2,
            ..
        }
    );
    assert!(
        e.to_string().starts_with("root version 2 expired at "),
        "{e}"
    );
}

#[test]
fn attack_document_for_another_channel() {
    let w = world();
    w.publish(&w.img_b, "canary", 100);
    let n = w.node("n");
    n.check().unwrap();
    // The canary document (validly signed) served as stable's.
    let (c, s) = (
        w.read("channels/canary.json"),
        w.read("channels/canary.sigs.json"),
    );
    w.write("channels/stable.json", &c);
    w.write("channels/stable.sigs.json", &s);
    assert_rejected!(
        &n,
        check,
        ChannelError::WrongChannel { got, want, .. }
            if got.as_str() == "canary" && want.as_str() == "stable"
    );
}

#[test]
fn attack_same_version_different_content() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    let mut doc = w.channel_doc("stable");
    doc.tracks[0].halted = true; // same version 1, different bytes (a fork)
    w.forge("stable", &doc, &[&w.key(&w.root_key)]);
    assert_rejected!(
        &n,
        check,
        ChannelError::Forked {
            role: RoleName::Channel,
            version: 1,
            ..
        }
    );
}

#[test]
fn rollback_is_accepted_and_a_replay_is_not() {
    let w = world();
    let n = w.node("n");
    let v1 = (
        w.read("channels/stable.json"),
        w.read("channels/stable.sigs.json"),
    );
    w.publish(&w.img_b, "stable", 100);
    let d = n.fetch_update().unwrap();
    assert_eq!((d.channel_version, d.image_version.as_str()), (2, "1.3.0"));
    let v2 = (
        w.read("channels/stable.json"),
        w.read("channels/stable.sigs.json"),
    );
    w.cmd()
        .args(["rollback", "--repo"])
        .arg(&w.repo)
        .args(["--channel", "stable", "--channel-key"])
        .arg(&w.root_key)
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "rolled back: channel stable version 3 -> fixture 1.2.3",
        ));
    let d = n.fetch_update().unwrap();
    assert!(d.selected, "{}", d.reason);
    assert_eq!((d.channel_version, d.image_version.as_str()), (3, "1.2.3"));
    assert_eq!(digests(&n.state.join(d.staged.unwrap())), digests(&w.img_a));
    // Replaying either older document (the same image A, or B) is refused.
    for (doc, sigs) in [v1, v2] {
        w.write("channels/stable.json", &doc);
        w.write("channels/stable.sigs.json", &sigs);
        assert_rejected!(&n, fetch, ChannelError::Replayed { .. });
    }
}

#[test]
fn channel_expiry_is_bounded() {
    let w = world();
    let before = snapshot(&w.repo);
    let publish = |expires: &str| {
        w.cmd()
            .arg("publish")
            .arg(&w.img_b)
            .arg("--repo")
            .arg(&w.repo)
            .args(["--channel", "stable", "--expires", expires, "--channel-key"])
            .arg(&w.root_key)
            .assert()
            .code(2)
    };
    publish("99999999999d").stderr(predicates::str::contains(
        "--expires \"99999999999d\": must be between 1s and 3650d",
    ));
    publish("999999999999999999999d").stderr(predicates::str::contains(
        "--expires \"999999999999999999999d\": expected a duration",
    ));
    publish("3651d").stderr(predicates::str::contains("3650d"));
    assert_eq!(before, snapshot(&w.repo));
    w.cmd()
        .args(["repo", "init", "--repo"])
        .arg(w.path("r2"))
        .arg("--root-key")
        .arg(&w.root_key)
        .args(["--expires", "100000d"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "--expires \"100000d\": must be between",
        ));
    // A node refuses a document that would practically never expire.
    let n = w.node("n");
    let mut doc = w.channel_doc("stable");
    doc.version += 1;
    doc.expires = n.now + 100 * 365 * 86_400;
    w.forge("stable", &doc, &[&w.key(&w.root_key)]);
    assert_rejected!(
        &n,
        check,
        ChannelError::ValidTooLong { what, days: 36_500, .. } if what == "channels/stable.json"
    );
    // The node's --max-age is bounded and named too.
    w.update("check", &n.state)
        .args(["--max-age", "soon"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "--max-age \"soon\": expected a duration",
        ));
}

#[test]
fn attack_freeze_with_a_stale_unexpired_document() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    // A mirror keeps serving a document signed 8 days ago and valid for 3 more weeks (here
    // forged with the channel key as a stand-in for the operator's own old document).
    let mut doc = w.channel_doc("stable");
    doc.version += 1;
    // Against the node's own clock: seconds pass between making the node and forging.
    doc.timestamp = n.now - 8 * 86_400;
    doc.expires = n.now + 21 * 86_400;
    w.forge("stable", &doc, &[&w.key(&w.root_key)]);
    let e = assert_rejected!(
        &n,
        check,
        ChannelError::Frozen { version: 2, max_age, .. } if *max_age == channel::DEFAULT_MAX_AGE
    );
    assert!(
        e.to_string().starts_with("channels/stable.json: version 2 was signed 8d ago, longer than this node's maximum age of 7d (--max-age); either the repository is frozen on an old document (a freeze attack)"),
        "{e}"
    );
    assert_rejected!(&n, fetch, ChannelError::Frozen { .. });
    // A node that allows 9 days takes it: it is the age, nothing else.
    let lenient = Node {
        max_age: 9 * 86_400,
        ..w.node("n")
    };
    assert_eq!(lenient.check().unwrap().channel_version, 2);
}

#[test]
fn repo_refresh_keeps_a_quiet_channel_fresh() {
    let w = world();
    // The operator's own document, signed 8 days ago and unchanged since (written here with
    // the channel key and an old timestamp): nodes refuse it…
    let mut doc = w.channel_doc("stable");
    doc.version += 1;
    doc.timestamp = channel::now() - 8 * 86_400;
    w.forge("stable", &doc, &[&w.key(&w.root_key)]);
    let later = w.node("n");
    assert_rejected!(&later, check, ChannelError::Frozen { age, .. } if *age / 86_400 == 8);
    w.cmd()
        .args(["repo", "status", "--repo"])
        .arg(&w.repo)
        .assert()
        .success()
        .stdout(predicates::str::contains("8d ago"))
        .stdout(predicates::str::contains("STALE"));
    // …until the operator re-signs it, unchanged but for version, timestamp and expiry.
    let old = w.channel_doc("stable");
    w.cmd()
        .args(["repo", "refresh", "--repo"])
        .arg(&w.repo)
        .args(["--all", "--channel-key"])
        .arg(&w.root_key)
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "refreshed: channel stable version 3 -> fixture 1.2.3",
        ));
    let new = w.channel_doc("stable");
    assert_eq!((new.version, &new.tracks), (old.version + 1, &old.tracks));
    assert!(new.timestamp >= old.timestamp);
    let d = later.fetch_update().unwrap();
    assert!(d.selected && d.staged.is_some(), "{}", d.reason);
    // A channel that does not exist is named.
    w.cmd()
        .args(["repo", "refresh", "--repo"])
        .arg(&w.repo)
        .args(["--channel", "nope", "--channel-key"])
        .arg(&w.root_key)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("channel nope does not exist"));
}
