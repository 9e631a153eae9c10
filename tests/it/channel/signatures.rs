//! Who signed a document: thresholds of distinct keys, the wrong key, one key listed under two
//! ids, and the operator's tools refusing the same.

use super::*;

#[test]
fn attack_unsigned_channel_document() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    let mut doc = w.channel_doc("stable");
    doc.version += 1;
    doc.tracks[0].image = channel::parse_channel(&w.read("channels/stable.json"), "x")
        .unwrap()
        .tracks[0]
        .image
        .clone();
    w.forge("stable", &doc, &[]);
    assert_rejected!(
        &n,
        check,
        ChannelError::ThresholdUnmet {
            role: RoleName::Channel,
            have: 0,
            need: 1,
            ..
        }
    );
    // No signature file at all.
    std::fs::remove_file(w.repo.join("channels/stable.sigs.json")).unwrap();
    assert_rejected!(&n, check, ChannelError::NotFound { rel } if rel == "channels/stable.sigs.json");
}

#[test]
fn attack_channel_signatures_below_threshold() {
    let w = world_with(&[]);
    let k1 = w.keygen("ch1");
    let k2 = w.keygen("ch2");
    // A repository whose channel role needs 2 of 2 keys.
    let repo2 = w.path("releases2");
    w.cmd()
        .args(["repo", "init", "--repo"])
        .arg(&repo2)
        .arg("--root-key")
        .arg(&w.root_key)
        .arg("--channel-key")
        .arg(k1.with_extension("pub"))
        .arg("--channel-key")
        .arg(k2.with_extension("pub"))
        .args(["--channel-threshold", "2"])
        .assert()
        .success();
    // The operator's tool refuses to write a document below the threshold…
    w.cmd()
        .arg("publish")
        .arg(&w.img_a)
        .arg("--repo")
        .arg(&repo2)
        .args(["--channel", "stable", "--channel-key"])
        .arg(&k1)
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "1 valid signature(s) from distinct channel keys, 2 required",
        ));
    w.cmd()
        .arg("publish")
        .arg(&w.img_a)
        .arg("--repo")
        .arg(&repo2)
        .args(["--channel", "stable", "--channel-key"])
        .arg(&k1)
        .arg("--channel-key")
        .arg(&k2)
        .assert()
        .success();
    let w2 = World { repo: repo2, ..w };
    let n = w2.node("n");
    n.check().unwrap();
    // …and a node refuses one an attacker wrote with one key, or with that key twice.
    let mut doc = w2.channel_doc("stable");
    doc.version += 1;
    doc.tracks[0].rollout = channel::Rollout::percent(100, channel::now());
    let (s1, s2) = (w2.key(&k1), w2.key(&k2));
    for signers in [&[&s1][..], &[&s1, &s1]] {
        w2.forge("stable", &doc, signers);
        assert_rejected!(
            &n,
            check,
            ChannelError::ThresholdUnmet {
                role: RoleName::Channel,
                have: 1,
                need: 2,
                ..
            }
        );
    }
    // Both keys: accepted.
    w2.forge("stable", &doc, &[&s1, &s2]);
    assert_eq!(n.check().unwrap().channel_version, doc.version);
}

#[test]
fn attack_same_key_counted_twice() {
    let w = world_with(&["--threshold", "1"]);
    w.publish(&w.img_a, "stable", 100);
    let n = w.node("n");
    n.check().unwrap();
    // Root signed by the same key listed twice cannot meet a threshold of 2.
    let root_key = w.key(&w.root_key);
    let root: Root = channel::parse_root(&w.read("root.json"), "root").unwrap();
    let mut next = root.clone();
    next.version = 2;
    next.roles.root.threshold = 2;
    let bytes = to_bytes(&next);
    w.write("roots/2.root.json", &bytes);
    w.write(
        "roots/2.sigs.json",
        &sign_bytes(&bytes, &[&root_key, &root_key]),
    );
    w.write("root.json", &bytes);
    assert_rejected!(
        &n,
        check,
        ChannelError::ThresholdUnmet {
            role: RoleName::Root,
            have: 1,
            need: 2,
            ..
        }
    );
}

#[test]
fn attack_channel_signed_by_the_wrong_key() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    let mallory = w.keygen("mallory");
    let mut doc = w.channel_doc("stable");
    doc.version += 1;
    w.forge("stable", &doc, &[&w.key(&mallory)]);
    assert_rejected!(&n, check, ChannelError::ThresholdUnmet { have: 0, .. });
    // The operator tool will not sign with it either.
    w.cmd()
        .args(["rollout", "halt", "--repo"])
        .arg(&w.repo)
        .args(["--channel", "stable", "--channel-key"])
        .arg(&mallory)
        .assert()
        .code(2);
}

// Item 6: root and channel metadata.

/// Root documents for the committed `tests/hostile/root-*` fixtures, from a fixed key.
fn hostile_roots() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let k = SecretKey::from_seed([7; 32]);
    let real = k.id().clone();
    let entry = channel::KeyEntry {
        kind: "ed25519".into(),
        public: k.public().to_hex(),
    };
    let fake: stratos::sign::KeyId = "00000000000000ff".to_owned().try_into().unwrap();
    let role = |ids: &[&stratos::sign::KeyId], threshold| channel::Role {
        key_ids: ids.iter().map(|i| (*i).clone()).collect(),
        threshold,
    };
    let doc = |keys: Vec<(&stratos::sign::KeyId, &channel::KeyEntry)>, root_role: channel::Role| {
        let ids: Vec<_> = keys.iter().map(|(i, _)| *i).collect();
        Root {
            kind: channel::ROOT_TYPE.into(),
            spec_version: channel::SPEC_VERSION,
            version: 1,
            expires: 4_102_444_800, // 2100-01-01: rejected for its keys, whenever it is read
            keys: keys
                .iter()
                .map(|(i, e)| ((*i).clone(), (*e).clone()))
                .collect(),
            roles: channel::Roles {
                root: root_role,
                channel: role(&ids[..1], 1),
                image: role(&ids[..1], 1),
            },
        }
    };
    // The key signs once per id it is listed under.
    let sigs = |bytes: &[u8], ids: &[&stratos::sign::KeyId]| {
        to_bytes(&channel::Signatures {
            signatures: ids
                .iter()
                .map(|id| channel::Signature {
                    key_id: (*id).clone(),
                    sig: hex::encode(k.sign(bytes)),
                })
                .collect(),
        })
    };
    let two_ids = doc(
        vec![(&real, &entry), (&fake, &entry)],
        role(&[&real, &fake], 2),
    );
    let wrong_id = doc(vec![(&fake, &entry)], role(&[&fake], 1));
    let (b1, b2) = (to_bytes(&two_ids), to_bytes(&wrong_id));
    vec![
        (
            "root-one-key-two-ids",
            b1.clone(),
            sigs(&b1, &[&real, &fake]),
        ),
        ("root-key-id-not-its-key", b2.clone(), sigs(&b2, &[&fake])),
    ]
}

#[test]
fn root_hostile_fixtures_are_refused_at_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, sigs) in hostile_roots() {
        let fixture = root().join("tests/hostile").join(name);
        if std::env::var_os("STRATOS_REGENERATE_HOSTILE").is_some() {
            std::fs::create_dir_all(&fixture).unwrap();
            std::fs::write(fixture.join("root.json"), &bytes).unwrap();
            std::fs::write(fixture.join("root.sigs.json"), &sigs).unwrap();
        }
        // The committed fixture is what the generator above makes (run the test with
        // STRATOS_REGENERATE_HOSTILE=1 to rewrite it).
        assert_eq!(
            std::fs::read(fixture.join("root.json")).unwrap(),
            bytes,
            "{name}"
        );
        assert_eq!(
            std::fs::read(fixture.join("root.sigs.json")).unwrap(),
            sigs,
            "{name}"
        );
        let state = dir.path().join(name);
        let e = bootstrap(&state, &fixture.join("root.json")).unwrap_err();
        assert!(
            matches!(&e, ChannelError::KeyIdMismatch { listed, .. } if listed.as_str() == "00000000000000ff"),
            "{name}: {e:?}"
        );
        assert!(e.is_rejection(), "{name}: {e:?}");
        assert!(
            e.to_string().contains(
                "key id 00000000000000ff is not the id of the key it lists (that key's id is "
            ),
            "{name}: {e}"
        );
        assert!(!state.exists(), "{name}: the state was created");
    }
}

#[test]
fn attack_root_lists_one_key_under_two_ids() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    // A root version 2 whose root role needs 2 signatures and lists the one root key under its
    // own id and a made-up one, signed once per id: the old code counted two signatures.
    let key = w.key(&w.root_key);
    let mut root = w.root_doc();
    root.version = 2;
    let fake: stratos::sign::KeyId = "00000000000000ff".to_owned().try_into().unwrap();
    root.keys.insert(fake.clone(), root.keys[key.id()].clone());
    let r = &mut root.roles.root;
    r.key_ids.push(fake.clone());
    r.threshold = 2;
    let bytes = to_bytes(&root);
    let sigs = to_bytes(&channel::Signatures {
        signatures: [key.id().clone(), fake]
            .into_iter()
            .map(|id| channel::Signature {
                key_id: id,
                sig: hex::encode(key.sign(&bytes)),
            })
            .collect(),
    });
    w.write("roots/2.root.json", &bytes);
    w.write("roots/2.sigs.json", &sigs);
    w.write("root.json", &bytes);
    assert_rejected!(
        &n,
        check,
        ChannelError::KeyIdMismatch { what, listed, .. }
            if what == "root.json" && listed.as_str() == "00000000000000ff"
    );
    // Even a root that slipped through cannot count one key twice.
    let e = channel::verify_threshold("doc", &bytes, &sigs, &root, RoleName::Root).unwrap_err();
    assert!(
        matches!(
            e,
            ChannelError::ThresholdUnmet {
                role: RoleName::Root,
                have: 1,
                need: 2,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "doc: 1 valid signature(s) from distinct root keys, 2 required"
    );
}

#[test]
fn repo_init_refuses_the_same_key_twice() {
    let w = world_with(&[]);
    let ch = w.keygen("channel");
    let repo = w.path("twice");
    let init = |args: &[&std::ffi::OsStr]| {
        let mut c = w.cmd();
        c.args(["repo", "init", "--repo"]).arg(&repo).args(args);
        c.assert()
    };
    let key = w.root_key.as_os_str();
    let chp = ch.with_extension("pub");
    let id = w.key(&w.root_key).id().to_string();
    init(&[
        "--root-key".as_ref(),
        key,
        "--root-key".as_ref(),
        key,
        "--threshold".as_ref(),
        "2".as_ref(),
    ])
    .code(2)
    .stderr(predicates::str::contains(format!(
        "--root-key: key {id} is given twice; thresholds count distinct keys"
    )));
    init(&[
        "--root-key".as_ref(),
        key,
        "--channel-key".as_ref(),
        chp.as_os_str(),
        "--channel-key".as_ref(),
        chp.as_os_str(),
        "--channel-threshold".as_ref(),
        "2".as_ref(),
    ])
    .code(2)
    .stderr(predicates::str::contains("--channel-key: key"))
    .stderr(predicates::str::contains("is given twice"));
    // A threshold above the number of keys.
    init(&[
        "--root-key".as_ref(),
        key,
        "--channel-key".as_ref(),
        chp.as_os_str(),
        "--channel-threshold".as_ref(),
        "2".as_ref(),
    ])
    .code(2)
    .stderr(predicates::str::contains(
        "--channel-threshold 2 must be between 1 and the number of channel keys (1)",
    ));
    assert!(!repo.exists(), "nothing may be written");
}
