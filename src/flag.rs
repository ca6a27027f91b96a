//! The one vocabulary of flag state, and the flag JSON exactly as the SDKs and the Relay Proxy
//! store it (facts §4).
//!
//! Every module speaks of flags in these terms: a [`FlagId`] names a flag in one environment, a
//! [`StoreTarget`] names one place a store keeps it, [`Targeting`] is the part of its state
//! relayctl manages, and [`find_variation`] is the one rule that turns a declared or recorded
//! variation into an index (numbers compare by value: 3 and 3.0 are the same variation).
//!
//! relayctl manages three properties of a flag per environment: `on`, `offVariation` and the
//! fallthrough variation. Everything else in the stored JSON (targets, rules, salt, properties this
//! version of relayctl has never heard of, numbers serde_json cannot hold) is kept byte for byte:
//! a rewrite replaces the managed values in the stored text ([`crate::json_text`]), never parsing
//! and re-printing the whole object, never rendering a template, and never panicking on what it
//! reads. Booleans and indexes are emitted as JSON booleans and integers, so the SDKs' strict
//! readers accept what we write; a version that cannot be incremented exactly is refused.

mod stored;

pub use stored::{NotAFlag, StoredFlag, Weighted};

use crate::json_text;
use crate::kind::{Kind, StoreTarget};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// One flag in one environment of one project: the unit of desired state and of journal commits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FlagId {
    pub project: String,
    pub environment: String,
    pub flag: String,
}

impl fmt::Display for FlagId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.project, self.environment, self.flag)
    }
}

/// A variation as the overrides file names it: by the value it serves, or by its index.
#[derive(Debug, Clone, PartialEq)]
pub enum VariationRef {
    Value(Value),
    Index(usize),
}

impl fmt::Display for VariationRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VariationRef::Value(v) => write!(f, "{v}"),
            VariationRef::Index(i) => write!(f, "{{ index = {i} }}"),
        }
    }
}

/// A variation of a flag, by index and by the value it serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variation {
    pub index: usize,
    pub value: Value,
}

impl fmt::Display for Variation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.value)
    }
}

impl Variation {
    /// This variation among `variations` (a flag's as LaunchDarkly has it now, which may have
    /// been reordered): the same index if it still serves the same value, else the one variation
    /// serving that value.
    pub fn locate(&self, variations: &[Value]) -> Result<Variation, String> {
        match variations.get(self.index) {
            Some(v) if same_value(v, &self.value) => Ok(Variation {
                index: self.index,
                value: v.clone(),
            }),
            _ => find_variation(&VariationRef::Value(self.value.clone()), variations),
        }
    }
}

/// Finds the variation `r` names among `variations`: the one at its index, or the one (and only
/// one) serving its value.
pub fn find_variation(r: &VariationRef, variations: &[Value]) -> Result<Variation, String> {
    match r {
        VariationRef::Index(i) => variations
            .get(*i)
            .map(|v| Variation {
                index: *i,
                value: v.clone(),
            })
            .ok_or_else(|| format!("index {i} is out of range; {}", list_variations(variations))),
        VariationRef::Value(want) => {
            let hits: Vec<usize> = (0..variations.len())
                .filter(|&i| same_value(&variations[i], want))
                .collect();
            match hits[..] {
                [i] => Ok(Variation {
                    index: i,
                    value: variations[i].clone(),
                }),
                [] => Err(format!("matches no variation; {}", list_variations(variations))),
                _ => Err(format!(
                    "matches several variations ({}); name one with {{ index = N }}",
                    hits.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
                )),
            }
        }
    }
}

/// Whether two variation values are the same: equal JSON, with numbers compared by value.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let int = |n: &serde_json::Number| n.as_i64().map(i128::from).or(n.as_u64().map(i128::from));
            match (int(x), int(y)) {
                (Some(a), Some(b)) => a == b,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        _ => a == b,
    }
}

/// How many variations an error message lists.
const LISTED_VARIATIONS: usize = 20;

/// The variations for an error message: index and a short excerpt of each value, at most
/// [`LISTED_VARIATIONS`] of them.
fn list_variations(variations: &[Value]) -> String {
    if variations.is_empty() {
        return "the flag has no variations".into();
    }
    let mut list: Vec<String> = variations
        .iter()
        .take(LISTED_VARIATIONS)
        .enumerate()
        .map(|(i, v)| format!("{i}: {}", json_text::excerpt(&v.to_string())))
        .collect();
    if variations.len() > LISTED_VARIATIONS {
        list.push(format!("and {} more", variations.len() - LISTED_VARIATIONS));
    }
    format!("the flag's variations are {}", list.join(", "))
}

/// What a flag serves in one of the slots relayctl manages (off variation or fallthrough).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Serve {
    /// A single variation.
    Variation(Variation),
    /// A percentage rollout (only ever observed, never written).
    Rollout,
    /// Nothing set: an unset off variation makes SDKs serve the application's default value.
    Unset,
}

impl fmt::Display for Serve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Serve::Variation(v) => v.fmt(f),
            Serve::Rollout => f.write_str("rollout"),
            Serve::Unset => f.write_str("unset"),
        }
    }
}

impl Serve {
    /// The variation served, if it is a single one.
    pub fn variation(&self) -> Option<&Variation> {
        match self {
            Serve::Variation(v) => Some(v),
            _ => None,
        }
    }
}

/// The managed part of a flag: `on`, and the off variation / fallthrough where they are declared.
///
/// `None` means "not managed by this override", so `from` and `to` of a change always carry the
/// same set of properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Targeting {
    pub on: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_variation: Option<Serve>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallthrough: Option<Serve>,
}

impl Targeting {
    /// The property-by-property differences from `self` to `to`, as `name: from -> to` strings.
    pub fn differences(&self, to: &Targeting) -> Vec<String> {
        let mut out = Vec::new();
        if self.on != to.on {
            out.push(format!("on: {} -> {}", self.on, to.on));
        }
        for (name, from, to) in [
            ("off_variation", &self.off_variation, &to.off_variation),
            ("fallthrough", &self.fallthrough, &to.fallthrough),
        ] {
            if let (Some(from), Some(to)) = (from, to) {
                if from != to {
                    out.push(format!("{name}: {from} -> {to}"));
                }
            }
        }
        out
    }

    /// The state after `later` is applied on top of `self`: `on` of `later`, and each slot from
    /// `later` where it manages it, else from `self`.
    pub fn then(&self, later: &Targeting) -> Targeting {
        Targeting {
            on: later.on,
            off_variation: later.off_variation.clone().or_else(|| self.off_variation.clone()),
            fallthrough: later.fallthrough.clone().or_else(|| self.fallthrough.clone()),
        }
    }
}

/// LaunchDarkly flags: the [`Kind`] of `[overrides.<project>.<environment>]` declarations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {}

/// What one store target holds for one flag.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Found(StoredFlag),
    /// Not in the store; `place` says where it was looked for (hash and field, file).
    Missing {
        place: String,
    },
    Invalid(NotAFlag),
}

/// One flag on one target that must change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagChange {
    #[serde(flatten)]
    pub id: FlagId,
    #[serde(flatten)]
    pub target: StoreTarget,
    /// The flag version observed in the store; apply refuses if it moved.
    pub version: u64,
    pub from: Targeting,
    pub to: Targeting,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What one flag commit records: the flag's state before and after the change, the store version
/// it was based on, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagRecord {
    pub id: FlagId,
    /// The state before, in the properties `to` manages (on the first target).
    pub from: Targeting,
    pub to: Targeting,
    /// The store version before the change (the highest among the targets).
    pub base_version: u64,
    pub reason: Option<String>,
}

impl FlagRecord {
    /// The commit subject's summary: what changed, in words.
    pub fn summary(&self) -> String {
        let (from, to) = (&self.from, &self.to);
        let mut parts = Vec::new();
        if from.on != to.on || (from.off_variation.is_none() && from.fallthrough.is_none()) {
            parts.push(if to.on { "turn on" } else { "turn off" }.to_owned());
        }
        if let (Some(Serve::Variation(v)), true) = (&to.off_variation, from.off_variation != to.off_variation)
        {
            parts.push(format!("serve {} when off", v.value));
        }
        if let (Some(Serve::Variation(v)), true) = (&to.fallthrough, from.fallthrough != to.fallthrough) {
            parts.push(format!("fall through to {}", v.value));
        }
        parts.join(", ")
    }
}

impl Kind for Flag {
    const NOUN: &'static str = "flag";
    type Id = FlagId;
    type Change = FlagChange;
    type Record = FlagRecord;
    type Version = u64;
    type Held = Lookup;

    fn id(change: &FlagChange) -> FlagId {
        change.id.clone()
    }

    fn target(change: &FlagChange) -> &StoreTarget {
        &change.target
    }

    fn reason(change: &FlagChange) -> Option<&str> {
        change.reason.as_deref()
    }

    fn expected(change: &FlagChange) -> u64 {
        change.version
    }

    fn next(expected: u64) -> u64 {
        expected + 1
    }

    fn record(changes: &[&FlagChange]) -> FlagRecord {
        let first = changes[0];
        FlagRecord {
            id: first.id.clone(),
            from: first.from.clone(),
            to: first.to.clone(),
            base_version: changes.iter().map(|c| c.version).max().unwrap_or(0),
            reason: first.reason.clone(),
        }
    }

    fn record_id(record: &FlagRecord) -> FlagId {
        record.id.clone()
    }

    /// A target took the write if it now holds the version after `expected`, in the planned state.
    fn landed(record: &FlagRecord, expected: u64, held: &Lookup) -> bool {
        matches!(held, Lookup::Found(f) if f.version == expected + 1 && f.targeting_like(&record.to) == record.to)
    }

    fn holds(expected: u64, held: &Lookup) -> String {
        match held {
            Lookup::Found(f) if f.version == expected => format!("it still holds v{}", f.version),
            Lookup::Found(f) => format!("it holds v{}, which is not this write", f.version),
            Lookup::Missing { .. } => "the flag is not there any more".to_owned(),
            Lookup::Invalid(_) => "it holds a value that is not a flag".to_owned(),
        }
    }

    fn show_version(version: u64) -> Option<String> {
        Some(format!("v{version}"))
    }

    fn writes_of(ids: &[&FlagId]) -> (String, bool) {
        match ids {
            [id] => (format!("the write of {id}"), true),
            _ => (format!("the writes of {} flags", ids.len()), false),
        }
    }
}

/// Whether `key` is a LaunchDarkly key (project, environment or flag): letters, digits, `.`,
/// `_` and `-`, starting with a letter or digit. Anything else (a `/`, `..`, a control
/// character) must be refused or quoted before it reaches a path, a log line or a terminal.
pub fn is_key(key: &str) -> bool {
    key.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod rewrite_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flag(v: Value) -> StoredFlag {
        StoredFlag::parse(&v.to_string()).unwrap()
    }

    fn variation(index: usize, value: Value) -> Serve {
        Serve::Variation(Variation { index, value })
    }

    #[test]
    fn rewrite_keeps_every_other_property_in_order_and_bumps_version() {
        let f = flag(json!({
            "key": "checkout", "on": true, "prerequisites": [], "targets": [{"variation": 0, "values": ["a"]}],
            "rules": [{"id": "r1", "clauses": [], "variation": 1, "trackEvents": false}],
            "fallthrough": {"rollout": {"variations": [{"variation": 0, "weight": 100000}]}},
            "offVariation": 1, "variations": [true, false], "salt": "s", "futureProperty": {"x": [1, 2]},
            "version": 41, "deleted": false
        }));
        let out = f
            .rewrite(&Targeting {
                on: false,
                off_variation: Some(variation(0, json!(true))),
                fallthrough: Some(variation(1, json!(false))),
            })
            .unwrap();
        assert_eq!(
            out,
            json!({
                "key": "checkout", "on": false, "prerequisites": [], "targets": [{"variation": 0, "values": ["a"]}],
                "rules": [{"id": "r1", "clauses": [], "variation": 1, "trackEvents": false}],
                "fallthrough": {"variation": 1},
                "offVariation": 0, "variations": [true, false], "salt": "s", "futureProperty": {"x": [1, 2]},
                "version": 42, "deleted": false
            })
            .to_string()
        );
        let keys: Vec<_> = serde_json::from_str::<serde_json::Map<String, Value>>(&out)
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys[..3], ["key", "on", "prerequisites"]);
        assert!(out.contains("\"on\":false"), "on must be a JSON boolean: {out}");
    }

    #[test]
    fn rewrite_of_on_only_leaves_variations_alone() {
        let f = flag(
            json!({"key": "k", "on": false, "offVariation": null, "fallthrough": {"variation": 0}, "variations": ["a", "b"], "version": 3}),
        );
        let out: Value = serde_json::from_str(
            &f.rewrite(&Targeting {
                on: true,
                off_variation: None,
                fallthrough: None,
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"key": "k", "on": true, "offVariation": null, "fallthrough": {"variation": 0}, "variations": ["a", "b"], "version": 4})
        );
    }

    #[test]
    fn reads_managed_properties() {
        let f = flag(
            json!({"key": "k", "on": true, "offVariation": 1, "fallthrough": {"rollout": {}}, "variations": ["a", "b"], "version": 3}),
        );
        let both = Targeting {
            on: true,
            off_variation: Some(Serve::Unset),
            fallthrough: Some(Serve::Unset),
        };
        assert_eq!(
            f.targeting_like(&both),
            Targeting {
                on: true,
                off_variation: Some(variation(1, json!("b"))),
                fallthrough: Some(Serve::Rollout),
            }
        );
        let f = flag(json!({"key": "k", "version": 0}));
        assert_eq!(
            f.targeting_like(&both),
            Targeting {
                on: false,
                off_variation: Some(Serve::Unset),
                fallthrough: Some(Serve::Unset),
            }
        );
    }

    #[test]
    fn rollout_slices_by_value() {
        let f = flag(json!({"key": "k", "fallthrough": {"rollout": {"variations": [
            {"variation": 1, "weight": 60000}, {"variation": 0, "weight": 40000}, {"variation": 7, "weight": 0}
        ]}}, "variations": ["a", "b"], "version": 1}));
        assert_eq!(*f.fallthrough(), Serve::Rollout);
        let slices: Vec<_> = f
            .rollout()
            .into_iter()
            .map(|w| (w.variation.index, w.variation.value, w.weight))
            .collect();
        assert_eq!(slices, [(1, json!("b"), 60000), (0, json!("a"), 40000)]);
        assert!(flag(json!({"key": "k", "version": 1})).rollout().is_empty());
    }

    #[test]
    fn keys() {
        for good in ["new-checkout", "a.b_c", "0x"] {
            assert!(is_key(good), "{good}");
        }
        for bad in ["", "-a", "../x", "a/b", "a b", "a\nb", "\u{1b}[31m"] {
            assert!(!is_key(bad), "{bad}");
        }
    }

    #[test]
    fn tombstones_parse_as_deleted() {
        let f = flag(json!({"key": "$deleted", "version": 9, "deleted": true}));
        assert!(f.deleted);
        assert_eq!(f.version, 9);
    }

    #[test]
    fn rejects_what_the_sdks_reject() {
        for (raw, why) in [
            ("not json", "not valid JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"key":"k"}"#, "no \"version\""),
            (r#"{"key":"k","version":-1}"#, "not a non-negative integer"),
            (r#"{"version":1}"#, "no \"key\""),
            (
                r#"{"key":"k","version":1,"on":"off"}"#,
                "\"on\" is \"off\", not a boolean",
            ),
            (r#"{"key":"k","version":1,"variations":{}}"#, "not an array"),
            (
                r#"{"key":"k","version":1,"variations":[1],"offVariation":3}"#,
                "only 1 variations",
            ),
            (
                r#"{"key":"k","version":1,"offVariation":"x"}"#,
                "not a variation index",
            ),
            (r#"{"key":"k","version":1,"fallthrough":1}"#, "not an object"),
            (r#"{"key":"k","version":1,"deleted":"yes"}"#, "not a boolean"),
            (r#"["k", 5, false, true, [], null, null]"#, "not a JSON object"),
            ("", "not valid JSON"),
        ] {
            let err = StoredFlag::parse(raw).unwrap_err().to_string();
            assert!(err.contains(why), "{raw}: {err}");
        }
    }
}
