//! A flag as a store holds it: its JSON, parsed just enough to plan it and checked as the SDKs
//! check it ([`StoredFlag::parse`]), and rewritten in place ([`StoredFlag::rewrite`]): only the
//! managed values change, every other byte stays as stored (see [`super`]).

use super::{Serve, Targeting, Variation};
use crate::json_text;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
