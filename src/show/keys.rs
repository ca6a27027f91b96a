//! `show` for plain Redis keys (`redis-keys` stores): what a target holds for a key, by value.
//! Key names and values are hostile text: shown quoted with escapes ([`show_key`],
//! [`show_held`]).

use super::{Showable, Summary};
use crate::key::{show_held, show_stored, show_to, Held, Key, KeyChange, KeyId, Stored};
use crate::plan::Problem;
use serde::Serialize;

/// What a target holds for a key.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum KeyState {
    /// A string (JSON: the text, or `{"hex": "..."}` when it is not UTF-8).
    Value {
        value: Stored,
    },
    Absent,
    /// Another Redis type (`hash`, `list`...), which relayctl does not manage.
    OtherType {
        #[serde(rename = "type")]
        kind: String,
    },
}

impl Showable for Key {
    type State = KeyState;

    fn state(held: &Held) -> KeyState {
        match held {
            Held::Absent => KeyState::Absent,
            Held::Value(v) => KeyState::Value {
                value: Stored(v.clone()),
            },
            Held::Other(kind) => KeyState::OtherType { kind: kind.clone() },
        }
    }

    fn same(a: &KeyState, b: &KeyState) -> bool {
        a == b
    }

    /// The store and key, and the value (`(absent)`, or the Redis type when not a string).
    fn cells(id: &KeyId, state: &KeyState) -> Vec<String> {
        let value = match state {
            KeyState::Value { value } => show_held(Some(&value.0)),
            KeyState::Absent => show_held(None),
            KeyState::OtherType { kind } => format!("(a Redis {kind}, not a string)"),
        };
        vec![id.to_string(), value]
    }

    fn invalid(_: &KeyState) -> Option<String> {
        None
    }

    fn differences(c: &KeyChange) -> Vec<String> {
        vec![format!(
            "{} -> {}",
            show_stored(c.from.as_ref()),
            show_to(c.to.as_deref())
        )]
    }

    fn problem(p: &Problem<Key>) -> String {
        format!("{} in {}: {}", p.id, p.target, p.message)
    }

    fn counted(summary: &mut Summary) -> &mut usize {
        &mut summary.keys
    }
}

#[cfg(test)]
mod tests {
    use super::super::{render, render_summary, to_json, view, widths, KeyView};
    use super::*;
    use crate::desired::DeclaredKey;
    use crate::kind::StoreTarget;
    use crate::ui;
    use serde_json::{json, Value};

    fn target(port: u16) -> StoreTarget {
        StoreTarget {
            store: "meow-blue".into(),
            target: format!("redis://127.0.0.1:{port}"),
        }
    }

    fn declare(key: &str, value: Option<&str>) -> DeclaredKey {
        DeclaredKey {
            store: "meow-blue".into(),
            key: key.into(),
            value: value.map(str::to_owned),
            reason: None,
        }
    }

    fn id(key: &str) -> KeyId {
        KeyId {
            store: "meow-blue".into(),
            key: key.into(),
        }
    }

    fn value(v: &str) -> Held {
        Held::Value(v.as_bytes().to_vec())
    }

    fn views() -> Vec<KeyView> {
        let two = |a: Held, b: Held| vec![(target(1), a), (target(2), b)];
        let recent = declare("RECENT", Some("ON"));
        let gone = declare("old_key", None);
        let hash = || Held::Other("hash".into());
        vec![
            view::<Key>(id("RECENT"), two(value("ON"), value("OFF")), Some(&recent)),
            view::<Key>(id("old_key"), two(Held::Absent, Held::Absent), Some(&gone)),
            view::<Key>(
                id("a hash"),
                two(hash(), hash()),
                Some(&declare("a hash", Some("1"))),
            ),
            view::<Key>(
                id("evil\n\u{1b}[31m"),
                two(value("\u{9b}31m\u{202e}x"), Held::Value(vec![0xff, 0x00])),
                None,
            ),
        ]
    }

    #[test]
    fn one_line_per_key_and_target_escaped() {
        let views = views();
        let w = widths(&views);
        let text: String = views.iter().map(|v| ui::plain(&render(v, &w))).collect();
        insta::assert_snapshot!(text);
        assert!(!text.contains('\u{1b}') && !text.contains('\u{9b}') && !text.contains('\u{202e}'));
        let mut summary = Summary::default();
        summary.add(&views);
        assert_eq!(
            ui::plain(&render_summary(&summary)),
            "Shown: 0 flag(s) and 4 key(s), 2 where the targets disagree (marked !); 3 declared in the \
             overrides file, 2 not in the declared state: `relayctl plan` shows the changes.\n"
        );
    }

    #[test]
    fn json_names_values_types_and_the_declared_state() {
        let views = views();
        let json = |i: usize| serde_json::from_str::<Value>(&to_json(&views[i])).unwrap();
        assert_eq!(
            json(0),
            json!({"store": "meow-blue", "key": "RECENT", "declared": true, "agree": false, "targets": [
                {"store": "meow-blue", "target": "redis://127.0.0.1:1", "status": "value", "value": "ON",
                 "declared_state": "matches"},
                {"store": "meow-blue", "target": "redis://127.0.0.1:2", "status": "value", "value": "OFF",
                 "declared_state": "differs", "changes": ["\"OFF\" -> \"ON\""]}]})
        );
        assert_eq!(json(1)["targets"][0]["status"], json!("absent"));
        assert_eq!(json(1)["targets"][0]["declared_state"], json!("matches"));
        assert_eq!(
            (
                json(2)["targets"][0]["status"].clone(),
                json(2)["targets"][0]["type"].clone()
            ),
            (json!("other_type"), json!("hash"))
        );
        assert_eq!(json(2)["targets"][0]["declared_state"], json!("problem"));
        assert_eq!(json(3)["targets"][1]["value"], json!({"hex": "ff00"}));
        assert!(json(3)["targets"][0].get("declared_state").is_none());
    }
}
