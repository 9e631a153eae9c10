//! Root key rotation: nodes follow it, refuse skipped versions, rotations without the old keys
//! and rollbacks of the root; `--also` moves the channel and image roles along.

use super::*;

#[test]
fn root_rotation_is_followed() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    let new = w.keygen("root2");
    w.rotate(&w.root_key, &new).success();
    n.check().unwrap();
    let trusted: Root = channel::parse_root(
        &std::fs::read(n.state.join("trusted/root.json")).unwrap(),
        "t",
    )
    .unwrap();
    assert_eq!(trusted.version, 2);
    // The old key no longer signs roots.
    let old = w.key(&w.root_key);
    let mut r3 = trusted.clone();
    r3.version = 3;
    let bytes = to_bytes(&r3);
    w.write("roots/3.root.json", &bytes);
    w.write("roots/3.sigs.json", &sign_bytes(&bytes, &[&old]));
    w.write("root.json", &bytes);
    assert_rejected!(
        &n,
        check,
        ChannelError::ThresholdUnmet { role: RoleName::Root, what, .. }
            if what == "root version 3 (by the keys of version 2)"
    );
}

#[test]
fn attack_root_rotation_that_skips_a_version() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    let k2 = w.keygen("root2");
    let k3 = w.keygen("root3");
    for (old, new) in [(&w.root_key, &k2), (&k2, &k3)] {
        w.rotate(old, new).success();
    }
    std::fs::remove_file(w.repo.join("roots/2.root.json")).unwrap();
    assert_rejected!(&n, check, ChannelError::RotationSkipped { version: 2 });
}

#[test]
fn attack_root_rotation_without_the_old_keys() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    let mallory = w.keygen("mallory");
    let m = w.key(&mallory);
    let mut root: Root = channel::parse_root(&w.read("root.json"), "root").unwrap();
    root.version = 2;
    root.keys.insert(
        m.id().clone(),
        channel::KeyEntry {
            kind: "ed25519".into(),
            public: m.public().to_hex(),
        },
    );
    for (_, role) in root.roles.iter_mut() {
        role.key_ids = vec![m.id().clone()];
    }
    let bytes = to_bytes(&root);
    w.write("roots/2.root.json", &bytes);
    w.write("roots/2.sigs.json", &sign_bytes(&bytes, &[&m]));
    w.write("root.json", &bytes);
    assert_rejected!(
        &n,
        check,
        ChannelError::ThresholdUnmet { role: RoleName::Root, what, .. }
            if what == "root version 2 (by the keys of version 1)"
    );
    // The operator tool refuses to rotate without the current keys, too.
    w.rotate(&mallory, &mallory).code(1);
}

#[test]
fn attack_root_rollback() {
    let w = world();
    let n = w.node("n");
    let v1 = (w.read("root.json"), w.read("root.sigs.json"));
    let k2 = w.keygen("root2");
    w.rotate(&w.root_key, &k2).success();
    n.check().unwrap();
    w.write("root.json", &v1.0);
    w.write("root.sigs.json", &v1.1);
    assert_rejected!(
        &n,
        check,
        ChannelError::Replayed {
            role: RoleName::Root,
            have: 2,
            got: 1,
            ..
        }
    );
}

#[test]
fn root_rotation_warns_about_roles_that_still_trust_the_old_key() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    let old_id = w.key(&w.root_key).id().to_string();
    let new = w.keygen("root2");
    let a = w.rotate(&w.root_key, &new).success();
    let err = stderr_of(&a);
    assert!(
        err.contains(&format!(
            "warning: the channel and image roles still trust the retired root key {old_id}"
        )) && err.contains("--also channel,image"),
        "{err}"
    );
    let root = w.root_doc();
    for role in [channel::RoleName::Channel, channel::RoleName::Image] {
        assert!(root
            .roles
            .get(role)
            .key_ids
            .iter()
            .any(|k| k.as_str() == old_id));
    }
    // Which is what the warning says: the old key still signs channels nodes accept.
    assert!(n.check().is_ok());
}

#[test]
fn root_rotation_also_rotates_channel_and_image_roles() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    let old = w.key(&w.root_key);
    let new = w.keygen("root2");
    let new_id = w.key(&new).id().clone();
    let a = w
        .cmd()
        .args(["repo", "rotate-key", "--repo"])
        .arg(&w.repo)
        .arg("--old-root-key")
        .arg(&w.root_key)
        .arg("--new-root-key")
        .arg(&new)
        .args(["--also", "channel,image"])
        .assert()
        .success()
        .stdout(predicates::str::contains(format!(
            "the channel role now trusts {new_id} instead of {}",
            old.id()
        )))
        .stdout(predicates::str::contains("re-signed channel stable"));
    assert!(!stderr_of(&a).contains("warning"), "{}", stderr_of(&a));
    let root = w.root_doc();
    for role in channel::RoleName::ALL {
        assert_eq!(root.roles.get(role).key_ids, vec![new_id.clone()], "{role}");
    }
    assert!(!root.keys.contains_key(old.id()));
    // The node follows the rotation; the image signed by the retired key is no longer
    // trusted (the command said so)…
    assert!(stderr_of(&a).contains("nodes no longer stage images signed by"));
    assert_rejected!(&n, check, ChannelError::UntrustedImageKey { key, .. } if key == old.id());
    // …one signed by the new key is, in a channel document signed by the new key.
    let img = w.path("img-new-key");
    w.build(&img, "1.4.0", &new);
    w.cmd()
        .arg("publish")
        .arg(&img)
        .arg("--repo")
        .arg(&w.repo)
        .args(["--channel", "stable", "--channel-key"])
        .arg(&new)
        .assert()
        .success();
    let d = n.fetch_update().unwrap();
    assert_eq!((d.channel_version, d.image_version.as_str()), (3, "1.4.0"));
    assert!(d.selected && d.staged.is_some(), "{}", d.reason);
    // The retired key no longer signs channel documents.
    let mut doc = w.channel_doc("stable");
    doc.version += 1;
    w.forge("stable", &doc, &[&old]);
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
    // Unknown roles are refused by the command line.
    w.cmd()
        .args(["repo", "rotate-key", "--repo"])
        .arg(&w.repo)
        .arg("--old-root-key")
        .arg(&new)
        .arg("--new-root-key")
        .arg(&w.root_key)
        .args(["--also", "everything"])
        .assert()
        .code(2);
}
