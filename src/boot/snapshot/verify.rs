//! Checking a snapshot before it is restored: its signature and the digests of its files
//! (`--verify`), that it was made for this image, QEMU and machine, and that its files are the
//! sizes and kind it says.

use super::{
    file_digest, io, manifest_sha256, Snapshot, SnapshotError, MEMORY_FILE, SIGNATURE_FILE,
    SNAPSHOT_FILE, STATE_FILE, STATE_MAGIC, STATE_MAX,
};
use crate::boot::image::BootImage;
use crate::boot::vm::qemu::qemu_version;
use crate::boot::vm::VmSpec;
use crate::sign::{KeyId, PublicKey};

impl Snapshot {
    /// `--verify`: the signature over `snapshot.json` and the digests of `memory` and `state`.
    /// A failure is the snapshot's, named by its files (never the image's `manifest.sig`).
    pub fn verify(&self, key: &PublicKey) -> Result<KeyId, SnapshotError> {
        use crate::sign::verify::VerifyError;
        let invalid = |why: String| SnapshotError::Invalid {
            dir: self.dir.clone(),
            why,
        };
        let sig = match crate::fsio::read_regular(
            &self.dir.join(SIGNATURE_FILE),
            crate::fsio::caps::SIGNATURE,
            "a signature",
            crate::fsio::Links::Refuse,
        ) {
            Ok(s) => s,
            Err(e) if e.is_not_found() => {
                return Err(invalid(format!(
                "it is unsigned (no {SIGNATURE_FILE}); make it with `stratos snapshot --image-key`"
            )))
            }
            Err(e) => return Err(e.into()),
        };
        let id = crate::sign::verify::check_signature(&sig, &self.bytes, key).map_err(|e| {
            invalid(match e {
                VerifyError::BadSignature => format!(
                    "{SIGNATURE_FILE}: the signature does not match {SNAPSHOT_FILE} ({SNAPSHOT_FILE} or its signature was modified)"
                ),
                VerifyError::WrongKey { signed_by, given } => format!(
                    "{SIGNATURE_FILE}: signed by key {signed_by}, but the public key given is {given}"
                ),
                VerifyError::MalformedSignature(why) => {
                    format!("{SIGNATURE_FILE}: malformed signature file: {why}")
                }
                other => format!("{SIGNATURE_FILE}: {other}"),
            })
        })?;
        for f in &self.meta.files {
            let got = file_digest(&self.dir, &f.name)?;
            if got.size != f.size || got.sha256 != f.sha256 {
                return Err(SnapshotError::Invalid {
                    dir: self.dir.clone(),
                    why: format!(
                        "{}: sha256 {} ({} bytes), but {SNAPSHOT_FILE} says {} ({} bytes)",
                        f.name, got.sha256, got.size, f.sha256, f.size
                    ),
                });
            }
        }
        let _ = self.verified.set(id.clone());
        Ok(id)
    }

    /// Refuses, naming the difference, a snapshot of another image or taken with another QEMU
    /// or machine than `spec` (the spec a restore would run).
    pub fn check_restorable(&self, image: &BootImage, spec: &VmSpec) -> Result<(), SnapshotError> {
        let mismatch = |why: String| SnapshotError::Mismatch {
            dir: self.dir.clone(),
            why,
        };
        let m = &self.meta;
        let digest = manifest_sha256(image)?;
        if m.image.manifest_sha256 != digest {
            return Err(mismatch(format!(
                "it was made for {} {} (manifest sha256 {}), not for this image {} {} (manifest sha256 {digest})",
                m.image.name,
                m.image.version,
                m.image.manifest_sha256,
                image.manifest.image.name,
                image.manifest.image.version
            )));
        }
        let qemu = qemu_version(spec.arch)?;
        if m.qemu_version != qemu {
            return Err(mismatch(format!(
                "it was made with {:?}, this host runs {qemu:?}; a migration is only read back by the same QEMU",
                m.qemu_version
            )));
        }
        let machine = spec.machine_line();
        if m.machine != machine {
            return Err(mismatch(format!(
                "it was made on the machine `{}`, the restore would be `{machine}`",
                m.machine
            )));
        }
        self.check_files()
    }

    /// The RAM and state files are there, regular, and of the sizes `snapshot.json` gives (the
    /// RAM file exactly the guest's memory), the state file within [`STATE_MAX`] and beginning
    /// as a QEMU migration stream does: a cheap check that catches a truncated, swapped or
    /// garbage file before QEMU does (as a failed migration over QMP, naming nothing). Their
    /// digests are `--verify`'s.
    fn check_files(&self) -> Result<(), SnapshotError> {
        use std::io::Read;
        let invalid = |why: String| SnapshotError::Invalid {
            dir: self.dir.clone(),
            why,
        };
        for name in [MEMORY_FILE, STATE_FILE] {
            let Some(f) = self.meta.files.iter().find(|f| f.name == name) else {
                return Err(invalid(format!("{SNAPSHOT_FILE} lists no {name} file")));
            };
            let path = self.dir.join(name);
            let (file, md) = crate::fsio::open_regular(&path, crate::fsio::Links::Refuse)?;
            if md.len() != f.size {
                return Err(invalid(format!(
                    "{name} is {} bytes, but {SNAPSHOT_FILE} says {}",
                    md.len(),
                    f.size
                )));
            }
            if name == STATE_FILE {
                if md.len() > STATE_MAX {
                    return Err(invalid(format!(
                        "{name} is {} bytes, more than a device state file holds ({STATE_MAX} at most): not a snapshot's state",
                        md.len()
                    )));
                }
                let mut head = Vec::with_capacity(STATE_MAGIC.len());
                file.take(STATE_MAGIC.len() as u64)
                    .read_to_end(&mut head)
                    .map_err(io(format!("reading {}", path.display())))?;
                if head != STATE_MAGIC {
                    return Err(invalid(format!(
                        "{name} is not a QEMU device state (it does not begin as a migration stream does): the file is damaged or was replaced; make the snapshot again"
                    )));
                }
            }
        }
        let ram = u64::from(self.meta.memory_mib) << 20;
        match self.meta.files.iter().find(|f| f.name == MEMORY_FILE) {
            Some(f) if f.size != ram => Err(invalid(format!(
                "{MEMORY_FILE} is {} bytes, but the guest has {} MiB ({ram} bytes)",
                f.size, self.meta.memory_mib
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use super::super::{SnapshotImage, SnapshotMeta, FORMAT};
    use crate::digest::Sha256;
    use crate::sign::manifest::signature_file;
    use crate::sign::SecretKey;

    /// A snapshot directory as `stratos snapshot` leaves it (16 MiB of RAM, a state file that
    /// begins like a migration stream), signed by `key`.
    fn fake(dir: &Path, key: &SecretKey, state: &[u8]) -> SnapshotMeta {
        std::fs::write(dir.join(MEMORY_FILE), vec![0u8; 16 << 20]).unwrap();
        std::fs::write(dir.join(STATE_FILE), state).unwrap();
        let meta = SnapshotMeta {
            format: FORMAT,
            image: SnapshotImage {
                name: "hello".into(),
                version: "1.0".into(),
                manifest_sha256: Sha256::parse(&"a".repeat(64)).unwrap(),
            },
            qemu_version: "QEMU emulator version 7.2.0".into(),
            machine: "microvm".into(),
            memory_mib: 16,
            accel: "tcg".into(),
            cmdline: "console=ttyS0".into(),
            guest_port: 8080,
            warm: Vec::new(),
            files: [MEMORY_FILE, STATE_FILE]
                .iter()
                .map(|n| {
                    file_digest(dir, &crate::sign::manifest::ArtifactName::from_static(n)).unwrap()
                })
                .collect(),
        };
        write_meta(dir, key, &meta);
        meta
    }

    fn write_meta(dir: &Path, key: &SecretKey, meta: &SnapshotMeta) {
        let bytes = meta.to_canonical();
        std::fs::write(dir.join(SNAPSHOT_FILE), &bytes).unwrap();
        std::fs::write(dir.join(SIGNATURE_FILE), signature_file(key, &bytes)).unwrap();
    }

    const GOOD_STATE: &[u8] = b"QEVM\0\0\0\x03 devices";

    #[test]
    fn a_tampered_snapshot_json_is_the_snapshots_fault_not_the_images() {
        let d = tempfile::tempdir().unwrap();
        let key = SecretKey::from_seed([7; 32]);
        let mut meta = fake(d.path(), &key, GOOD_STATE);
        let s = Snapshot::load(d.path()).unwrap();
        assert!(s.verified_by().is_none());
        assert_eq!(s.verify(&key.public()).unwrap(), *key.id());
        assert_eq!(s.verified_by(), Some(key.id()));
        // Edited after signing: another image's digest.
        meta.image.manifest_sha256 = Sha256::parse(&"b".repeat(64)).unwrap();
        std::fs::write(d.path().join(SNAPSHOT_FILE), meta.to_canonical()).unwrap();
        let s = Snapshot::load(d.path()).unwrap();
        let e = s.verify(&key.public()).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "snapshot {}: snapshot.sig: the signature does not match snapshot.json (snapshot.json or its signature was modified)",
                d.path().display()
            )
        );
        assert!(!e.contains("manifest"), "{e}");
        assert!(s.verified_by().is_none());
        // Another key; no signature at all.
        let other = SecretKey::from_seed([8; 32]);
        let e = s.verify(&other.public()).unwrap_err().to_string();
        assert!(e.contains("snapshot.sig: signed by key"), "{e}");
        std::fs::remove_file(d.path().join(SIGNATURE_FILE)).unwrap();
        let e = s.verify(&key.public()).unwrap_err().to_string();
        assert!(e.contains("it is unsigned (no snapshot.sig)"), "{e}");
    }

    #[test]
    fn an_absurd_memory_size_is_refused_on_load_naming_the_key() {
        let d = tempfile::tempdir().unwrap();
        let key = SecretKey::from_seed([7; 32]);
        let mut meta = fake(d.path(), &key, GOOD_STATE);
        for mib in [0, 15, 65537, u32::MAX] {
            meta.memory_mib = mib;
            write_meta(d.path(), &key, &meta);
            let e = Snapshot::load(d.path()).unwrap_err().to_string();
            assert_eq!(
                e,
                format!(
                    "snapshot {}: snapshot.json: memory_mib {mib} is outside 16..=65536 MiB: the file is damaged or was edited; make the snapshot again",
                    d.path().display()
                )
            );
        }
        // Within bounds but not the RAM file's size: named too, before QEMU.
        meta.memory_mib = 32;
        write_meta(d.path(), &key, &meta);
        let e = Snapshot::load(d.path())
            .unwrap()
            .check_files()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("memory is 16777216 bytes, but the guest has 32 MiB"),
            "{e}"
        );
    }

    #[test]
    fn a_garbage_state_file_is_named_before_qemu_reads_it() {
        let key = SecretKey::from_seed([7; 32]);
        let d = tempfile::tempdir().unwrap();
        fake(d.path(), &key, GOOD_STATE);
        Snapshot::load(d.path()).unwrap().check_files().unwrap();
        for garbage in [
            &b""[..],
            b"QEVM",
            b"\x7fELF\x02\x01\x01\0 not a state",
            b"QEVM\0\0\0\x02",
        ] {
            let d = tempfile::tempdir().unwrap();
            fake(d.path(), &key, garbage);
            let e = Snapshot::load(d.path())
                .unwrap()
                .check_files()
                .unwrap_err()
                .to_string();
            assert_eq!(
                e,
                format!(
                    "snapshot {}: state is not a QEMU device state (it does not begin as a migration stream does): the file is damaged or was replaced; make the snapshot again",
                    d.path().display()
                ),
                "{garbage:?}"
            );
        }
        // Not a regular file.
        let d = tempfile::tempdir().unwrap();
        fake(d.path(), &key, GOOD_STATE);
        std::fs::remove_file(d.path().join(STATE_FILE)).unwrap();
        std::fs::create_dir(d.path().join(STATE_FILE)).unwrap();
        let e = Snapshot::load(d.path())
            .unwrap()
            .check_files()
            .unwrap_err()
            .to_string();
        assert!(e.contains("state"), "{e}");
    }
}
