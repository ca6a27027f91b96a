//! The one vocabulary of plain Redis keys (SPEC §1 "Plain Redis keys"), a leaf like
//! [`crate::flag`]: a key of a `redis-keys` store ([`KeyId`]), what a target holds for it
//! ([`Held`], [`Stored`]), a planned change ([`KeyChange`]), what its commit records
//! ([`KeyRecord`]), and how each is shown. [`Key`] is its [`Kind`].
//!
//! Key names and values are hostile text: they are always shown escaped ([`show_key`],
//! [`show_held`]), so none can forge a line of output, a trailer or a terminal sequence.

use crate::kind::{Kind, StoreTarget};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// The journal's folder of key commits, and the prefix of a key selector (`_keys/STORE/KEY`):
/// no LaunchDarkly project key starts with `_`, so it never meets a flag's path.
pub const FOLDER: &str = "_keys";

/// Plain Redis keys: the [`Kind`] of `[keys.<store>]` declarations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {}

/// One key of one `redis-keys` store, as declared (without the store's prefix).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct KeyId {
    pub store: String,
    pub key: String,
}

impl fmt::Display for KeyId {
    /// `<store> <key>`, the key escaped when it is not plain.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.store, show_key(&self.key))
    }
}

/// What a key holds on one target.
#[derive(Debug, Clone, PartialEq)]
pub enum Held {
    Absent,
    /// A string, as bytes.
    Value(Vec<u8>),
    /// Another Redis type (`hash`, `list`...), which relayctl does not manage.
    Other(String),
}

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Held::Absent => f.write_str("(absent)"),
            Held::Value(v) => f.write_str(&show_held(Some(v))),
            Held::Other(kind) => write!(f, "a Redis {kind}"),
        }
    }
}

/// A value a key held, as bytes: serialized as a JSON string when it is UTF-8 text, else as
/// `{"hex": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored(pub Vec<u8>);

impl Serialize for Stored {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => BTreeMap::from([("hex", hex::encode(&self.0))]).serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Stored {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Hex { hex: String },
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) => Ok(Stored(t.into_bytes())),
            Raw::Hex { hex } => hex::decode(hex)
                .map(Stored)
                .map_err(|_| serde::de::Error::custom("\"hex\" is not hexadecimal bytes")),
        }
    }
}

/// One key on one store target that must change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyChange {
    #[serde(flatten)]
    pub target: StoreTarget,
    pub key: String,
    /// What the key held when planned (`null`: absent); apply refuses if it moved.
    pub from: Option<Stored>,
    /// What it must hold (`null`: deleted).
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What one key commit records: the key's new value, what it held before, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub store: String,
    pub key: String,
    /// The value written (`None`: deleted).
    pub value: Option<String>,
    /// What the key held before (on the first target): `None` when absent.
    pub previous: Option<Stored>,
    pub reason: Option<String>,
}

impl Kind for Key {
    const NOUN: &'static str = "key";
    type Id = KeyId;
    type Change = KeyChange;
    type Record = KeyRecord;
    type Version = ();
    type Held = Held;

    fn id(change: &KeyChange) -> KeyId {
        KeyId {
            store: change.target.store.clone(),
            key: change.key.clone(),
        }
    }

    fn target(change: &KeyChange) -> &StoreTarget {
        &change.target
    }

    fn reason(change: &KeyChange) -> Option<&str> {
        change.reason.as_deref()
    }

    fn expected(_: &KeyChange) {}

    fn next((): ()) {}

    fn record(changes: &[&KeyChange]) -> KeyRecord {
        let first = changes[0];
        KeyRecord {
            store: first.target.store.clone(),
            key: first.key.clone(),
            value: first.to.clone(),
            previous: first.from.clone(),
            reason: first.reason.clone(),
        }
    }

    fn record_id(record: &KeyRecord) -> KeyId {
        KeyId {
            store: record.store.clone(),
            key: record.key.clone(),
        }
    }

    /// A key took the write if it now holds the value written, or is gone for a delete.
    fn landed(record: &KeyRecord, (): (), held: &Held) -> bool {
        match (held, &record.value) {
            (Held::Absent, None) => true,
            (Held::Value(v), Some(to)) => v.as_slice() == to.as_bytes(),
            _ => false,
        }
    }

    fn holds((): (), held: &Held) -> String {
        format!("it holds {held}")
    }

    fn show_version((): ()) -> Option<String> {
        None
    }
}

/// The longest part of a value shown in plans, messages and journal trailers.
const SHOWN: usize = 64;

/// A key as shown: as it is when it is plain (visible ASCII), else quoted with escapes.
pub fn show_key(key: &str) -> String {
    let plain = !key.is_empty() && !key.starts_with('"') && key.chars().all(|c| c.is_ascii_graphic());
    match plain {
        true => key.to_owned(),
        false => format!("{key:?}"),
    }
}

/// A value as shown: `(absent)`, a quoted string with escapes, or `b"..."` for bytes that are
/// not UTF-8; past [`SHOWN`] characters, cut and followed by its length.
pub fn show_held(value: Option<&[u8]>) -> String {
    let Some(bytes) = value else {
        return "(absent)".to_owned();
    };
    let (shown, cut) = match std::str::from_utf8(bytes) {
        Ok(text) => {
            let head: String = text.chars().take(SHOWN).collect();
            let cut = head.len() < text.len();
            (format!("{head:?}"), cut)
        }
        Err(_) => {
            let head = &bytes[..bytes.len().min(SHOWN)];
            (format!("b\"{}\"", head.escape_ascii()), head.len() < bytes.len())
        }
    };
    match cut {
        true => format!("{shown}... ({} bytes)", bytes.len()),
        false => shown,
    }
}

/// A declared value as shown (`(absent)` for one that must not exist).
pub fn show_to(value: Option<&str>) -> String {
    show_held(value.map(str::as_bytes))
}

/// What a key held before a change, as shown.
pub fn show_stored(value: Option<&Stored>) -> String {
    show_held(value.map(|s| s.0.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_keys_are_shown_escaped_and_cut() {
        assert_eq!(show_key("RECENT"), "RECENT");
        assert_eq!(show_key("a b\nKey: x"), "\"a b\\nKey: x\"");
        assert_eq!(show_key(""), "\"\"");
        assert_eq!(show_to(None), "(absent)");
        assert_eq!(show_to(Some("ON")), "\"ON\"");
        assert_eq!(show_to(Some("a\n\u{1b}[31m")), "\"a\\n\\u{1b}[31m\"");
        assert_eq!(show_held(Some(&[0xff, b'a'])), "b\"\\xffa\"");
        let long = "x".repeat(100);
        assert_eq!(
            show_to(Some(&long)),
            format!("\"{}\"... (100 bytes)", "x".repeat(64))
        );
    }

    #[test]
    fn stored_values_round_trip_through_plan_json_even_when_not_text() {
        for bytes in [b"ON".to_vec(), vec![0xff, 0x00, b'a'], Vec::new()] {
            let json = serde_json::to_string(&Stored(bytes.clone())).unwrap();
            let back: Stored = serde_json::from_str(&json).unwrap();
            assert_eq!(back.0, bytes, "{json}");
        }
        assert_eq!(
            serde_json::to_string(&Stored(vec![0xff])).unwrap(),
            "{\"hex\":\"ff\"}"
        );
    }
}
