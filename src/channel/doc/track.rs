//! A channel's images, one per architecture, each rolled out on its own ([`Track`]), and how a
//! channel document holds them.
//!
//! On disk the x86_64 track keeps the fields a channel had before arm64 — `image`, `rollout`,
//! `halted`, `previous` — so nodes that predate arm64 (all x86_64) read the documents as they
//! always have; the other architectures' tracks are listed in `other_arches`:
//! ```text
//! {"channel": "stable", "version": 7, …, "image": {…}, "rollout": {…}, "halted": false,
//!  "previous": null, "other_arches": [{"image": {"arch": "aarch64", …}, "rollout": {…},
//!  "halted": false, "previous": null}]}
//! ```
//! A channel carrying only aarch64 has no `image` at all. Every image names its architecture
//! (`image.arch`, absent for x86_64), which the node checks against the signed manifest.
//!
//! A track may also list `deltas` (at the top level for x86_64, in its `other_arches` entry for
//! the others; absent when there are none): binary deltas `publish` wrote from the kernels of
//! the images the track carried before to the kernel of its image ([`Delta`]).

use serde::{Deserialize, Serialize};

use super::{Channel, ChannelName, ImageRef, Rollout};
use crate::arch::Arch;
use crate::channel::error::{ChannelError, UsageError};
use crate::digest::Sha256;
use crate::sign::manifest::ArtifactName;

/// The most deltas a track lists; a document listing more is malformed.
pub const MAX_DELTAS: usize = 16;

/// A binary delta of one artifact of the track's image ([`crate::archive::delta`]): applied to
/// the artifact whose sha256 is `from` (the same artifact of an image the channel carried
/// before), it gives the one whose sha256 is `to`. It is the object `objects/sha256/<sha256>`,
/// `size` bytes. Optional for nodes: one without the base downloads the artifact itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// The artifact it rebuilds (`kernel`: the manifest's `kernel.artifact`).
    pub artifact: ArtifactName,
    pub from: Sha256,
    pub to: Sha256,
    /// The delta object's sha256 and length.
    pub sha256: Sha256,
    pub size: u64,
}

/// One architecture's image in a channel and its rollout: published, promoted, widened, halted
/// and rolled back on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Track {
    /// The image (its `arch` is the track's architecture).
    pub image: ImageRef,
    pub rollout: Rollout,
    #[serde(default)]
    pub halted: bool,
    /// The image this track carried before (what `rollback` returns to).
    #[serde(default)]
    pub previous: Option<ImageRef>,
    /// Deltas to the image's kernel from the kernels of images the track carried before (at
    /// most [`MAX_DELTAS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deltas: Vec<Delta>,
}

impl Track {
    pub fn arch(&self) -> Arch {
        self.image.arch
    }
}

/// Where `a` comes in [`Arch::ALL`] (the order tracks are kept in).
fn rank(a: Arch) -> usize {
    Arch::ALL.iter().position(|x| *x == a).unwrap_or(usize::MAX)
}

/// `"x86_64 and aarch64"`: the architectures a channel carries, for messages.
pub fn list_arches(arches: &[Arch]) -> String {
    let names: Vec<&str> = arches.iter().map(|a| a.name()).collect();
    match names.split_last() {
        None => "nothing".to_owned(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

impl Channel {
    /// The track of `arch`, if the channel carries an image for it.
    pub fn track(&self, arch: Arch) -> Option<&Track> {
        self.tracks.iter().find(|t| t.arch() == arch)
    }

    pub fn track_mut(&mut self, arch: Arch) -> Option<&mut Track> {
        self.tracks.iter_mut().find(|t| t.arch() == arch)
    }

    /// The architectures the channel carries an image for, in [`Arch::ALL`]'s order.
    pub fn arches(&self) -> Vec<Arch> {
        self.tracks.iter().map(Track::arch).collect()
    }

    /// Puts `t` in place of its architecture's track, or adds it.
    pub fn set_track(&mut self, t: Track) {
        match self.track_mut(t.arch()) {
            Some(old) => *old = t,
            None => {
                self.tracks.push(t);
                self.tracks.sort_by_key(|t| rank(t.arch()));
            }
        }
    }

    /// The architecture an operator's command acts on: `arch` when given (the channel must
    /// carry an image for it), else the only one the channel carries; with two, the command
    /// must say which (`--arch`).
    pub fn pick(&self, arch: Option<Arch>) -> Result<Arch, ChannelError> {
        let carries = self.arches();
        match arch {
            Some(a) if carries.contains(&a) => Ok(a),
            Some(a) => Err(UsageError::NoImageForArch {
                channel: self.channel.clone(),
                arch: a,
                carries: list_arches(&carries),
            }
            .into()),
            None if carries.len() == 1 => Ok(carries[0]),
            None => Err(UsageError::WhichArch {
                channel: self.channel.clone(),
                carries: list_arches(&carries),
            }
            .into()),
        }
    }
}

/// A channel document as written: the x86_64 track in the fields it had before arm64, the
/// others in `other_arches`.
#[derive(Serialize, Deserialize)]
pub(super) struct RawChannel {
    #[serde(rename = "type")]
    kind: String,
    spec_version: u32,
    channel: ChannelName,
    version: u64,
    expires: u64,
    timestamp: u64,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image: Option<ImageRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rollout: Option<Rollout>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    halted: Option<bool>,
    /// Written as `null` for an x86_64 track with no previous image (as documents always said
    /// it), left out when there is no x86_64 track; absent and `null` both read as none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<Option<ImageRef>>,
    /// The x86_64 track's deltas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    deltas: Vec<Delta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    other_arches: Vec<Track>,
}

impl From<Channel> for RawChannel {
    fn from(c: Channel) -> RawChannel {
        let mut x86 = None;
        let mut other_arches = Vec::new();
        for t in c.tracks {
            if t.arch() == Arch::X86_64 {
                x86 = Some(t);
            } else {
                other_arches.push(t);
            }
        }
        RawChannel {
            kind: c.kind,
            spec_version: c.spec_version,
            channel: c.channel,
            version: c.version,
            expires: c.expires,
            timestamp: c.timestamp,
            min_version: c.min_version,
            halted: x86.as_ref().map(|t| t.halted),
            previous: x86.as_ref().map(|t| t.previous.clone()),
            rollout: x86.as_ref().map(|t| t.rollout.clone()),
            deltas: x86.as_ref().map(|t| t.deltas.clone()).unwrap_or_default(),
            image: x86.map(|t| t.image),
            other_arches,
        }
    }
}

impl TryFrom<RawChannel> for Channel {
    type Error = String;
    fn try_from(r: RawChannel) -> Result<Channel, String> {
        let mut tracks = Vec::new();
        let previous = r.previous.flatten();
        match (r.image, r.rollout) {
            (Some(image), Some(rollout)) => {
                if image.arch != Arch::X86_64 {
                    return Err(format!(
                        "image: an {} image where the x86_64 one goes (other architectures' images are listed in other_arches)",
                        image.arch.name()
                    ));
                }
                tracks.push(Track {
                    image,
                    rollout,
                    halted: r.halted.unwrap_or(false),
                    previous,
                    deltas: r.deltas,
                });
            }
            (None, None) if r.halted != Some(true) && previous.is_none() && r.deltas.is_empty() => {
            }
            (None, None) => return Err("halted, previous or deltas without an image".to_owned()),
            (Some(_), None) => return Err("an image without a rollout".to_owned()),
            (None, Some(_)) => return Err("a rollout without an image".to_owned()),
        }
        for t in r.other_arches {
            let arch = t.arch();
            if arch == Arch::X86_64 {
                return Err(
                    "other_arches: an x86_64 image (the x86_64 image is the channel's image)"
                        .to_owned(),
                );
            }
            if tracks.iter().any(|x: &Track| x.arch() == arch) {
                return Err(format!("other_arches: two {} images", arch.name()));
            }
            tracks.push(t);
        }
        for t in &tracks {
            if t.deltas.len() > MAX_DELTAS {
                return Err(format!(
                    "deltas: the {} image lists {} deltas, more than the {MAX_DELTAS} a track may list",
                    t.arch().name(),
                    t.deltas.len()
                ));
            }
            if let Some(p) = t.previous.as_ref().filter(|p| p.arch != t.arch()) {
                return Err(format!(
                    "the {} image's previous image is an {} image",
                    t.arch().name(),
                    p.arch.name()
                ));
            }
        }
        if tracks.is_empty() {
            return Err("no image (a channel carries one for at least one architecture)".into());
        }
        tracks.sort_by_key(|t| rank(t.arch()));
        Ok(Channel {
            kind: r.kind,
            spec_version: r.spec_version,
            channel: r.channel,
            version: r.version,
            expires: r.expires,
            timestamp: r.timestamp,
            min_version: r.min_version,
            tracks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::doc::{parse_channel, to_bytes, Wave};
    use crate::digest::Sha256;

    fn image(arch: Arch, digest: &str) -> ImageRef {
        ImageRef {
            name: "hello".into(),
            version: "1.0".into(),
            arch,
            manifest_sha256: Sha256::parse(&digest.repeat(64)).unwrap(),
            manifest_length: 10,
            signature_sha256: Sha256::parse(&"b".repeat(64)).unwrap(),
            signature_length: 10,
        }
    }

    fn track(arch: Arch, digest: &str, percent: u32) -> Track {
        Track {
            image: image(arch, digest),
            rollout: Rollout {
                started_at: 1,
                waves: vec![Wave {
                    start_after: 0,
                    fleet_percent: percent,
                }],
            },
            halted: false,
            previous: None,
            deltas: Vec::new(),
        }
    }

    fn delta(from: &str, to: &str) -> Delta {
        Delta {
            artifact: ArtifactName::from_static("kernel"),
            from: Sha256::parse(&from.repeat(64)).unwrap(),
            to: Sha256::parse(&to.repeat(64)).unwrap(),
            sha256: Sha256::parse(&"e".repeat(64)).unwrap(),
            size: 1234,
        }
    }

    #[test]
    fn deltas_sit_with_their_track_and_are_left_out_when_there_are_none() {
        let mut x = track(Arch::X86_64, "a", 10);
        x.deltas = vec![delta("1", "2"), delta("3", "2")];
        let mut arm = track(Arch::Aarch64, "c", 50);
        arm.deltas = vec![delta("4", "5")];
        let c = channel(vec![x, arm]);
        let bytes = to_bytes(&c);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["deltas"][1]["from"], "3".repeat(64), "{v}");
        assert_eq!(v["deltas"][0]["artifact"], "kernel");
        assert_eq!(v["deltas"][0]["size"], 1234);
        assert_eq!(v["other_arches"][0]["deltas"][0]["to"], "5".repeat(64));
        assert_eq!(parse_channel(&bytes, "c.json").unwrap(), c);
        // Without deltas, the document has no such key (the bytes older documents had).
        let c = channel(vec![
            track(Arch::X86_64, "a", 10),
            track(Arch::Aarch64, "c", 50),
        ]);
        let v: serde_json::Value = serde_json::from_slice(&to_bytes(&c)).unwrap();
        assert!(v.get("deltas").is_none(), "{v}");
        assert!(v["other_arches"][0].get("deltas").is_none(), "{v}");
        // Unknown fields of an entry are tolerated, as elsewhere in metadata.
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["deltas"][0]["method"] = "zstd-patch-from".into();
        let read = parse_channel(&serde_json::to_vec(&v).unwrap(), "c.json").unwrap();
        assert_eq!(read.tracks[0].deltas[0], delta("1", "2"));
    }

    fn channel(tracks: Vec<Track>) -> Channel {
        Channel {
            kind: crate::channel::doc::CHANNEL_TYPE.into(),
            spec_version: 1,
            channel: "stable".parse().unwrap(),
            version: 3,
            expires: 1_900_000_000,
            timestamp: 1,
            min_version: None,
            tracks,
        }
    }

    #[test]
    fn the_x86_64_track_stays_where_old_nodes_read_it() {
        let c = channel(vec![
            track(Arch::X86_64, "a", 10),
            track(Arch::Aarch64, "c", 50),
        ]);
        let bytes = to_bytes(&c);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["image"]["manifest_sha256"], "a".repeat(64));
        assert!(v["image"].get("arch").is_none(), "{v}");
        assert_eq!(v["rollout"]["waves"][0]["fleet_percent"], 10);
        assert_eq!(v["other_arches"][0]["image"]["arch"], "aarch64");
        assert_eq!(
            v["other_arches"][0]["rollout"]["waves"][0]["fleet_percent"],
            50
        );
        assert_eq!(parse_channel(&bytes, "c.json").unwrap(), c);
        // An aarch64-only channel has no top-level image.
        let c = channel(vec![track(Arch::Aarch64, "c", 50)]);
        let bytes = to_bytes(&c);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        for absent in ["image", "rollout", "halted", "previous"] {
            assert!(v.get(absent).is_none(), "{absent}: {v}");
        }
        assert_eq!(parse_channel(&bytes, "c.json").unwrap(), c);
    }

    #[test]
    fn tracks_are_kept_in_order_and_replaced_by_architecture() {
        let mut c = channel(vec![track(Arch::Aarch64, "c", 50)]);
        c.set_track(track(Arch::X86_64, "a", 10));
        assert_eq!(c.arches(), [Arch::X86_64, Arch::Aarch64]);
        c.set_track(track(Arch::Aarch64, "d", 100));
        assert_eq!(c.tracks.len(), 2);
        assert_eq!(
            c.track(Arch::Aarch64).unwrap().image.manifest_sha256,
            Sha256::parse(&"d".repeat(64)).unwrap()
        );
    }

    #[test]
    fn a_command_names_the_architecture_when_there_are_two() {
        let one = channel(vec![track(Arch::Aarch64, "c", 50)]);
        assert_eq!(one.pick(None).unwrap(), Arch::Aarch64);
        let e = one.pick(Some(Arch::X86_64)).unwrap_err().to_string();
        assert_eq!(
            e,
            "channel stable carries no x86_64 image (it carries aarch64); publish an x86_64 build to it first"
        );
        let two = channel(vec![
            track(Arch::X86_64, "a", 10),
            track(Arch::Aarch64, "c", 50),
        ]);
        assert_eq!(two.pick(Some(Arch::X86_64)).unwrap(), Arch::X86_64);
        let e = two.pick(None).unwrap_err();
        assert!(e.is_bad_input());
        assert_eq!(
            e.to_string(),
            "channel stable carries images for x86_64 and aarch64: say which with --arch"
        );
    }

    #[test]
    fn documents_that_mix_up_architectures_are_malformed() {
        let good = to_bytes(&channel(vec![
            track(Arch::X86_64, "a", 10),
            track(Arch::Aarch64, "c", 50),
        ]));
        let v: serde_json::Value = serde_json::from_slice(&good).unwrap();
        let bad = |edit: &dyn Fn(&mut serde_json::Value), want: &str| {
            let mut v = v.clone();
            edit(&mut v);
            let e = parse_channel(&serde_json::to_vec(&v).unwrap(), "c.json")
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("c.json: malformed: ") && e.contains(want),
                "{e}"
            );
        };
        let seventeen: Vec<serde_json::Value> = (0..17)
            .map(|_| serde_json::to_value(delta("1", "2")).unwrap())
            .collect();
        bad(
            &|v| v["deltas"] = seventeen.clone().into(),
            "deltas: the x86_64 image lists 17 deltas, more than the 16 a track may list",
        );
        bad(
            &|v| v["other_arches"][0]["deltas"] = seventeen.clone().into(),
            "deltas: the aarch64 image lists 17 deltas",
        );
        bad(
            &|v| v["deltas"] = serde_json::json!([{"artifact": "kernel"}]),
            "missing field `from`",
        );
        bad(
            &|v| {
                for k in ["image", "rollout", "halted", "previous"] {
                    v.as_object_mut().unwrap().remove(k);
                }
                v["deltas"] = seventeen[..1].to_vec().into();
            },
            "deltas without an image",
        );
        bad(
            &|v| v["image"]["arch"] = "aarch64".into(),
            "an aarch64 image where the x86_64 one goes",
        );
        bad(
            &|v| v["other_arches"][0]["image"]["arch"] = "x86_64".into(),
            "other_arches: an x86_64 image",
        );
        bad(
            &|v| {
                let t = v["other_arches"][0].clone();
                v["other_arches"].as_array_mut().unwrap().push(t);
            },
            "two aarch64 images",
        );
        bad(
            &|v| v["other_arches"][0]["previous"] = v["image"].clone(),
            "the aarch64 image's previous image is an x86_64 image",
        );
        bad(
            &|v| {
                v.as_object_mut().unwrap().remove("rollout");
            },
            "an image without a rollout",
        );
        bad(
            &|v| {
                for k in ["image", "rollout", "halted", "previous", "other_arches"] {
                    v.as_object_mut().unwrap().remove(k);
                }
            },
            "no image",
        );
    }
}
