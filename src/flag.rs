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

use crate::json_text;
use serde::de::IgnoredAny;
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

/// One place a store keeps flags, as plans, the journal and messages name it: the store's name
/// and its redacted URL, table or path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StoreTarget {
    pub store: String,
    pub target: String,
}

impl fmt::Display for StoreTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.store, self.target)
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

/// Why stored JSON is not a flag relayctl can safely rewrite. Its message quotes stored text only
/// as a short, single-line excerpt.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct NotAFlag(String);

/// A stored value that is not text at all (Redis values are bytes) cannot be a flag.
impl From<std::string::FromUtf8Error> for NotAFlag {
    fn from(e: std::string::FromUtf8Error) -> NotAFlag {
        NotAFlag(format!(
            "it is not UTF-8 text (byte {} is not valid UTF-8), so it cannot be flag JSON",
            e.utf8_error().valid_up_to()
        ))
    }
}

impl NotAFlag {
    /// A refusal for a reason found outside the flag JSON (the store's own record of it).
    pub(crate) fn new(message: impl Into<String>) -> NotAFlag {
        NotAFlag(message.into())
    }
}

/// The largest version relayctl writes: 2^53 − 1, the largest integer JavaScript SDKs read
/// exactly. A flag stored with this version or more cannot be given version + 1 exactly.
pub const MAX_VERSION: u64 = (1 << 53) - 1;

/// A flag as read from a store, parsed just enough to plan it; the raw JSON is kept for
/// [`StoredFlag::rewrite`], which edits it in place.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFlag {
    raw: String,
    pub version: u64,
    pub deleted: bool,
    on: bool,
    variations: Vec<Value>,
    off_variation: Serve,
    fallthrough: Serve,
}

/// The properties planning needs; every other property is skipped without being built (so it
/// may hold anything valid JSON allows: `1e400`, nesting hundreds deep).
#[derive(Deserialize)]
struct View {
    key: Option<Value>,
    version: Option<Value>,
    deleted: Option<Value>,
    on: Option<Value>,
    variations: Option<Value>,
    #[serde(rename = "offVariation")]
    off_variation: Option<Value>,
    fallthrough: Option<Value>,
}

/// The stored text of property `name` of `raw` as a message quotes it (an excerpt, exactly as
/// written, so `1e400` reads `1e400`), or `parsed` when it cannot be found.
fn quote(raw: &str, name: &str, parsed: &Value) -> String {
    let written = json_text::object(raw.as_bytes(), 0)
        .ok()
        .and_then(|(o, _)| o.find(name).last().map(|m| m.value.clone()))
        .and_then(|r| raw.get(r));
    match written {
        Some(text) => json_text::excerpt(text),
        None => json_text::excerpt(&parsed.to_string()),
    }
}

/// Why a flag at `version` cannot be rewritten.
fn too_large(version: u64) -> NotAFlag {
    NotAFlag(format!(
        "\"version\" is {version}, too large to increment exactly: relayctl writes version + 1, which must be at most {MAX_VERSION} (2^53 - 1) for JavaScript SDKs to read it; correct the version in the store, or leave this flag out of the overrides file"
    ))
}

/// `"name" is <what `raw` holds there>, not <expected>`.
fn not_a(raw: &str, name: &str, parsed: &Value, expected: &str) -> NotAFlag {
    NotAFlag(format!(
        "\"{name}\" is {}, not {expected}",
        quote(raw, name, parsed)
    ))
}

impl StoredFlag {
    /// Parses and type-checks stored flag JSON (the checks the Python and Go SDKs make), and
    /// refuses a version above [`MAX_VERSION`], which relayctl never writes.
    pub fn parse(raw: &str) -> Result<StoredFlag, NotAFlag> {
        let view = Self::view(raw)?;
        let version = match &view.version {
            Some(v) => v
                .as_u64()
                .ok_or_else(|| not_a(raw, "version", v, "a non-negative integer"))?,
            None => return Err(NotAFlag("it has no \"version\"".into())),
        };
        let deleted = match &view.deleted {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(not_a(raw, "deleted", v, "a boolean")),
        };
        let mut flag = StoredFlag {
            raw: raw.to_owned(),
            version,
            deleted,
            on: false,
            variations: Vec::new(),
            off_variation: Serve::Unset,
            fallthrough: Serve::Unset,
        };
        if deleted {
            return Ok(flag);
        }
        if version > MAX_VERSION {
            // Not a version relayctl wrote. One at MAX_VERSION may be, so it is read; the planner
            // refuses to change it (`next_version`).
            return Err(too_large(version));
        }
        flag.read_state(view)?;
        Ok(flag)
    }

    /// Reads and checks the state of a flag that is not deleted.
    fn read_state(&mut self, view: View) -> Result<(), NotAFlag> {
        let raw = self.raw.as_str();
        match &view.key {
            Some(Value::String(_)) => {}
            Some(v) => return Err(not_a(raw, "key", v, "a string")),
            None => return Err(NotAFlag("it has no \"key\"".into())),
        }
        self.on = match &view.on {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(not_a(raw, "on", v, "a boolean")),
        };
        self.variations = match view.variations {
            None => Vec::new(),
            Some(Value::Array(v)) => v,
            Some(v) => return Err(not_a(raw, "variations", &v, "an array")),
        };
        self.off_variation = match &view.off_variation {
            None => Serve::Unset,
            Some(i) => self.variation_at("\"offVariation\"", i, || quote(&self.raw, "offVariation", i))?,
        };
        self.fallthrough = match &view.fallthrough {
            None => Serve::Unset,
            Some(Value::Object(ft)) => match (ft.get("variation"), ft.get("rollout")) {
                (Some(i), _) if !i.is_null() => self.variation_at("\"fallthrough.variation\"", i, || {
                    json_text::excerpt(&i.to_string())
                })?,
                (_, Some(r)) if !r.is_null() => Serve::Rollout,
                _ => Serve::Unset,
            },
            Some(v) => return Err(not_a(raw, "fallthrough", v, "an object")),
        };
        Ok(())
    }

    /// The properties planning reads, or why `raw` is not a JSON object holding them.
    fn view(raw: &str) -> Result<View, NotAFlag> {
        // A derived struct also deserializes from a JSON array (fields by position); a flag is
        // an object, and `rewrite` relies on that.
        if !raw.trim_start().starts_with('{') {
            return Err(match serde_json::from_str::<IgnoredAny>(raw) {
                Ok(_) => NotAFlag("stored value is not a JSON object".into()),
                Err(e) => NotAFlag(format!("stored value is not valid JSON: {e}")),
            });
        }
        let is_json = || serde_json::from_str::<IgnoredAny>(raw).is_ok();
        serde_json::from_str(raw).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => NotAFlag(format!("stored value is not a flag: {e}")),
            // Valid JSON, but a property relayctl reads holds what serde_json cannot (`1e400`,
            // nesting deeper than 128): calling it invalid JSON would send the operator astray.
            _ if is_json() => NotAFlag(format!(
                "a property relayctl reads (such as variations or fallthrough) holds a number or nesting it cannot represent: {e}"
            )),
            _ => NotAFlag(format!("stored value is not valid JSON: {e}")),
        })
    }

    /// The version a rewrite writes: the stored one + 1, when that is exact for every SDK. The
    /// planner asks before it plans a change, so a flag that cannot take one is a plan problem.
    pub fn next_version(&self) -> Result<u64, NotAFlag> {
        match self.version.checked_add(1) {
            Some(next) if next <= MAX_VERSION => Ok(next),
            _ => Err(too_large(self.version)),
        }
    }

    /// The variations the flag can serve, in index order.
    pub fn variations(&self) -> &[Value] {
        &self.variations
    }

    /// Whether the flag is on (a missing `on` reads as off, as in every SDK).
    pub fn on(&self) -> bool {
        self.on
    }

    /// What the variation at `index` serves; `shown` quotes the index for a message.
    fn variation_at(
        &self,
        what: &str,
        index: &Value,
        shown: impl FnOnce() -> String,
    ) -> Result<Serve, NotAFlag> {
        let i = index
            .as_u64()
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| NotAFlag(format!("{what} is {}, not a variation index", shown())))?;
        match self.variations.get(i) {
            Some(value) => Ok(Serve::Variation(Variation {
                index: i,
                value: value.clone(),
            })),
            None => Err(NotAFlag(format!(
                "{what} is {i} but the flag has only {} variations",
                self.variations.len()
            ))),
        }
    }

    /// What the flag serves when off.
    pub fn off_variation(&self) -> &Serve {
        &self.off_variation
    }

    /// The current state of the properties that `like` manages.
    pub fn targeting_like(&self, like: &Targeting) -> Targeting {
        Targeting {
            on: self.on(),
            off_variation: like.off_variation.as_ref().map(|_| self.off_variation.clone()),
            fallthrough: like.fallthrough.as_ref().map(|_| self.fallthrough.clone()),
        }
    }

    /// Returns the flag JSON with `to` applied and `version` set to the current version + 1.
    ///
    /// Only the values of `on`, `offVariation`, `fallthrough` (when declared) and `version`
    /// change, in place; one that is absent is added at the end. Every other byte (properties,
    /// their order, numbers as written, whitespace) stays exactly as stored.
    pub fn rewrite(&self, to: &Targeting) -> Result<String, NotAFlag> {
        let version = self.next_version()?;
        let index = |s: &Option<Serve>| match s {
            Some(Serve::Variation(v)) => Some(v.index),
            _ => None,
        };
        let managed = [
            ("on", Some(to.on.to_string())),
            ("offVariation", index(&to.off_variation).map(|i| i.to_string())),
            (
                "fallthrough",
                index(&to.fallthrough).map(|i| format!("{{\"variation\":{i}}}")),
            ),
            ("version", Some(version.to_string())),
        ];
        let malformed = |e: json_text::Error| NotAFlag(format!("the stored flag cannot be rewritten: {e}"));
        let (object, _) = json_text::object(self.raw.as_bytes(), 0).map_err(malformed)?;
        let mut edits = Vec::new();
        let mut added = Vec::new();
        for (name, value) in managed {
            let Some(value) = value else { continue };
            let mut found = object.find(name);
            match (found.next(), found.next()) {
                (Some(m), None) => edits.push((m.value.clone(), value.into_bytes())),
                (None, _) => added.push(format!("\"{name}\":{value}")),
                (Some(_), Some(_)) => {
                    return Err(NotAFlag(format!(
                    "\"{name}\" appears more than once in the stored flag; SDKs disagree on which one counts"
                )))
                }
            }
        }
        if !added.is_empty() {
            edits.push(object.append(&added.join(",")));
        }
        let bytes = json_text::splice(self.raw.as_bytes(), edits).map_err(malformed)?;
        String::from_utf8(bytes).map_err(|e| NotAFlag(format!("the rewritten flag is not UTF-8: {e}")))
    }
}

/// One slice of a percentage rollout: a variation and its weight, in 1/1000 percent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Weighted {
    #[serde(flatten)]
    pub variation: Variation,
    pub weight: u64,
}

impl StoredFlag {
    /// What the flag serves when on and no target or rule matches.
    pub fn fallthrough(&self) -> &Serve {
        &self.fallthrough
    }

    /// The slices of the fallthrough's percentage rollout, when it is one, for showing it by
    /// value (relayctl never writes a rollout). A slice naming no variation of the flag is
    /// left out: the SDKs cannot serve it either.
    pub fn rollout(&self) -> Vec<Weighted> {
        if self.fallthrough != Serve::Rollout {
            return Vec::new();
        }
        let json: Value = serde_json::from_str(&self.raw).unwrap_or_default();
        let slices = json["fallthrough"]["rollout"]["variations"].as_array().cloned();
        slices
            .unwrap_or_default()
            .iter()
            .filter_map(|slice| {
                let index = usize::try_from(slice["variation"].as_u64()?).ok()?;
                Some(Weighted {
                    variation: Variation {
                        index,
                        value: self.variations.get(index)?.clone(),
                    },
                    weight: slice["weight"].as_u64().unwrap_or(0),
                })
            })
            .collect()
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
