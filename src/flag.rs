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
//! version of relayctl has never heard of) is kept byte-for-byte in value and order: a rewrite is a
//! read-modify-write of the parsed object, never a render from a template. Booleans and indexes are
//! emitted as JSON booleans and integers, so the SDKs' strict readers accept what we write.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
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

fn list_variations(variations: &[Value]) -> String {
    if variations.is_empty() {
        return "the flag has no variations".into();
    }
    let list: Vec<String> = variations
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{i}: {v}"))
        .collect();
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

/// Why stored JSON is not a flag relayctl can safely rewrite.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct NotAFlag(String);

/// A flag as read from a store, parsed just enough to plan it; the raw JSON is kept for
/// [`StoredFlag::rewrite`], which is the only place that builds the full object.
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

/// The properties planning needs; every other property is skipped without being built.
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

impl StoredFlag {
    /// Parses and type-checks stored flag JSON (the checks the Python and Go SDKs make).
    pub fn parse(raw: &str) -> Result<StoredFlag, NotAFlag> {
        // A derived struct also deserializes from a JSON array (fields by position); a flag is
        // an object, and `rewrite` relies on that.
        if !raw.trim_start().starts_with('{') {
            return Err(match serde_json::from_str::<Value>(raw) {
                Ok(_) => NotAFlag("stored value is not a JSON object".into()),
                Err(e) => NotAFlag(format!("stored value is not valid JSON: {e}")),
            });
        }
        let view: View = match serde_json::from_str(raw) {
            Ok(v) => v,
            Err(e) if e.classify() == serde_json::error::Category::Data => {
                return Err(match serde_json::from_str::<Value>(raw) {
                    Ok(v) if !v.is_object() => NotAFlag("stored value is not a JSON object".into()),
                    _ => NotAFlag(format!("stored value is not a flag: {e}")),
                })
            }
            Err(e) => return Err(NotAFlag(format!("stored value is not valid JSON: {e}"))),
        };
        let version = match &view.version {
            Some(v) => v
                .as_u64()
                .ok_or_else(|| NotAFlag(format!("\"version\" is {v}, not a non-negative integer")))?,
            None => return Err(NotAFlag("it has no \"version\"".into())),
        };
        let deleted = match &view.deleted {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(NotAFlag(format!("\"deleted\" is {v}, not a boolean"))),
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
        match &view.key {
            Some(Value::String(_)) => {}
            Some(v) => return Err(NotAFlag(format!("\"key\" is {v}, not a string"))),
            None => return Err(NotAFlag("it has no \"key\"".into())),
        }
        flag.on = match view.on {
            None => false,
            Some(Value::Bool(b)) => b,
            Some(v) => return Err(NotAFlag(format!("\"on\" is {v}, not a boolean"))),
        };
        flag.variations = match view.variations {
            None => Vec::new(),
            Some(Value::Array(v)) => v,
            Some(v) => return Err(NotAFlag(format!("\"variations\" is {v}, not an array"))),
        };
        flag.off_variation = match &view.off_variation {
            None => Serve::Unset,
            Some(i) => flag.variation_at("\"offVariation\"", i)?,
        };
        flag.fallthrough = match &view.fallthrough {
            None => Serve::Unset,
            Some(Value::Object(ft)) => match (ft.get("variation"), ft.get("rollout")) {
                (Some(i), _) if !i.is_null() => flag.variation_at("\"fallthrough.variation\"", i)?,
                (_, Some(r)) if !r.is_null() => Serve::Rollout,
                _ => Serve::Unset,
            },
            Some(v) => return Err(NotAFlag(format!("\"fallthrough\" is {v}, not an object"))),
        };
        Ok(flag)
    }

    /// The variations the flag can serve, in index order.
    pub fn variations(&self) -> &[Value] {
        &self.variations
    }

    /// Whether the flag is on (a missing `on` reads as off, as in every SDK).
    pub fn on(&self) -> bool {
        self.on
    }

    fn variation_at(&self, what: &str, index: &Value) -> Result<Serve, NotAFlag> {
        let i = index
            .as_u64()
            .ok_or_else(|| NotAFlag(format!("{what} is {index}, not a variation index")))?
            as usize;
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
    /// Only `on`, `offVariation`, `fallthrough` (when declared) and `version` change; every other
    /// property keeps its value and position.
    pub fn rewrite(&self, to: &Targeting) -> String {
        let mut json: Map<String, Value> =
            serde_json::from_str(&self.raw).expect("parsed as a JSON object in StoredFlag::parse");
        json.insert("on".into(), Value::Bool(to.on));
        if let Some(Serve::Variation(v)) = &to.off_variation {
            json.insert("offVariation".into(), Value::from(v.index));
        }
        if let Some(Serve::Variation(v)) = &to.fallthrough {
            let mut ft = Map::new();
            ft.insert("variation".into(), Value::from(v.index));
            json.insert("fallthrough".into(), Value::Object(ft));
        }
        json.insert("version".into(), Value::from(self.version + 1));
        Value::Object(json).to_string()
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
        let out = f.rewrite(&Targeting {
            on: false,
            off_variation: Some(variation(0, json!(true))),
            fallthrough: Some(variation(1, json!(false))),
        });
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
        let keys: Vec<_> = serde_json::from_str::<Map<String, Value>>(&out)
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
        let out: Value = serde_json::from_str(&f.rewrite(&Targeting {
            on: true,
            off_variation: None,
            fallthrough: None,
        }))
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
