//! `relayctl show` for plain Redis keys (`redis-keys` stores): what each store target holds for
//! each key, whether the targets agree, and whether it is the state `[keys.<store>]` declares.
//!
//! Pure, like the flags' half ([`super`]): the command reads the keys and streams what
//! [`render_key`] / [`to_json`] return. Whether a key is in its declared state is decided by the
//! planner itself ([`crate::plan::plan`] on that one key and target), so `show` and `plan`
//! agree. Key names and values are hostile text: shown quoted with escapes
//! ([`crate::key::show_key`], [`crate::key::show_held`]) and through [`ui::printable`].

use super::{declared_cell, fit, mark, write_cells, Declared, Summary};
use crate::desired::DeclaredKey;
use crate::key::{show_held, show_key, show_stored, show_to, Held, Key, KeyId, Stored};
use crate::kind::{Observed, StoreTarget};
use crate::ui;
use serde::Serialize;
use std::fmt::Write as _;

/// One key of one `redis-keys` store, on every target of the store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyView {
    pub store: String,
    /// The key as declared, without the store's prefix.
    pub key: String,
    /// Whether `[keys.<store>]` declares this key.
    pub declared: bool,
    /// Whether every target holds the same thing.
    pub agree: bool,
    pub targets: Vec<KeyTargetView>,
}

/// What one target holds for a key, and how that compares with the declaration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyTargetView {
    #[serde(flatten)]
    pub target: StoreTarget,
    #[serde(flatten)]
    pub state: KeyState,
    /// Set when the key is declared.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub declared: Option<Declared>,
}

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

impl From<&Held> for KeyState {
    fn from(held: &Held) -> KeyState {
        match held {
            Held::Absent => KeyState::Absent,
            Held::Value(v) => KeyState::Value {
                value: Stored(v.clone()),
            },
            Held::Other(kind) => KeyState::OtherType { kind: kind.clone() },
        }
    }
}

/// One key's view from what each target of its store holds (`readings`, in the overrides
/// file's order); the declared state is judged by the keys' planner, target by target.
pub fn view(
    store: &str,
    key: &str,
    readings: &[(StoreTarget, Held)],
    declared: Option<&DeclaredKey>,
) -> KeyView {
    let targets: Vec<KeyTargetView> = readings
        .iter()
        .map(|(target, held)| KeyTargetView {
            target: target.clone(),
            state: KeyState::from(held),
            declared: declared.map(|d| judge(d, target, held)),
        })
        .collect();
    KeyView {
        store: store.to_owned(),
        key: key.to_owned(),
        declared: declared.is_some(),
        agree: targets.windows(2).all(|w| w[0].state == w[1].state),
        targets,
    }
}

/// How what `target` holds compares with `d`, as `plan` would see it.
fn judge(d: &DeclaredKey, target: &StoreTarget, held: &Held) -> Declared {
    let id = KeyId {
        store: d.store.clone(),
        key: d.key.clone(),
    };
    let observed = Observed::<Key>::from([(id, vec![(target.clone(), held.clone())])]);
    let plan = crate::plan::plan::<Key>(std::slice::from_ref(d), &observed).keys;
    if let Some(p) = plan.problems.first() {
        Declared::Problem {
            problem: format!("{} in {}: {}", p.id, p.target, p.message),
        }
    } else if let Some(c) = plan.changes.first() {
        Declared::Differs {
            changes: vec![format!(
                "{} -> {}",
                show_stored(c.from.as_ref()),
                show_to(c.to.as_deref())
            )],
        }
    } else {
        Declared::Matches
    }
}

impl Summary {
    /// Counts the key views in.
    pub fn add_keys(&mut self, views: &[KeyView]) {
        for v in views {
            self.keys += 1;
            self.count(v.agree, v.declared, v.targets.iter().map(|t| &t.declared));
        }
    }
}

/// Column widths over the keys of one store, so its lines align.
#[derive(Debug, Clone, Default)]
pub struct KeyWidths([usize; 4]);

/// The cells of one line (store and key, value, target, declared state), unstyled, and the
/// style of the declared state.
fn cells(view: &KeyView, t: &KeyTargetView) -> ([String; 4], Option<anstyle::Style>) {
    let id = format!("{} {}", view.store, show_key(&view.key));
    let value = match &t.state {
        KeyState::Value { value } => show_held(Some(&value.0)),
        KeyState::Absent => show_held(None),
        KeyState::OtherType { kind } => format!("(a Redis {kind}, not a string)"),
    };
    let (declared, style) = declared_cell(t.declared.as_ref());
    let cells = [id, value, t.target.to_string(), declared];
    (cells.map(|c| ui::printable(&c).into_owned()), style)
}

/// The widths that align the lines of `views`.
pub fn widths(views: &[KeyView]) -> KeyWidths {
    let mut w = KeyWidths::default();
    for v in views {
        for t in &v.targets {
            fit(&mut w.0, &cells(v, t).0);
        }
    }
    w
}

/// One key, one line per target, shaped like a flag's: `!` when the targets disagree, the
/// store and key, the value (`(absent)`, or the Redis type when it is not a string), the
/// target, then the declared state (and why, when it cannot be planned).
pub fn render_key(view: &KeyView, w: &KeyWidths) -> String {
    let mut out = String::new();
    let mark = mark(view.agree);
    for t in &view.targets {
        let (cells, style) = cells(view, t);
        write_cells(&mut out, &mark, &cells, style, &w.0);
        if let Some(Declared::Problem { problem }) = &t.declared {
            let _ = write!(out, "  ({})", ui::printable(problem));
        }
        out.push('\n');
    }
    out
}

/// Between the flags and the keys of the `--json` document.
pub const JSON_KEYS: &str = "\n], \"keys\": [\n";

/// One key of the `--json` document, on one line.
pub fn to_json(view: &KeyView) -> String {
    serde_json::to_string(view).expect("a key view serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn value(v: &str) -> Held {
        Held::Value(v.as_bytes().to_vec())
    }

    fn views() -> Vec<KeyView> {
        let two = |a: Held, b: Held| vec![(target(1), a), (target(2), b)];
        let recent = declare("RECENT", Some("ON"));
        let gone = declare("old_key", None);
        vec![
            view(
                "meow-blue",
                "RECENT",
                &two(value("ON"), value("OFF")),
                Some(&recent),
            ),
            view(
                "meow-blue",
                "old_key",
                &two(Held::Absent, Held::Absent),
                Some(&gone),
            ),
            view(
                "meow-blue",
                "a hash",
                &two(Held::Other("hash".into()), Held::Other("hash".into())),
                Some(&declare("a hash", Some("1"))),
            ),
            view(
                "meow-blue",
                "evil\n\u{1b}[31m",
                &two(value("\u{9b}31m\u{202e}x"), Held::Value(vec![0xff, 0x00])),
                None,
            ),
        ]
    }

    #[test]
    fn one_line_per_key_and_target_escaped() {
        let views = views();
        let w = widths(&views);
        let text: String = views.iter().map(|v| ui::plain(&render_key(v, &w))).collect();
        insta::assert_snapshot!(text);
        assert!(!text.contains('\u{1b}') && !text.contains('\u{9b}') && !text.contains('\u{202e}'));
        let mut summary = Summary::default();
        summary.add_keys(&views);
        assert_eq!(
            ui::plain(&super::super::render_summary(&summary)),
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
