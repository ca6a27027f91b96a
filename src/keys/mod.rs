//! Plain Redis keys under plan and apply (SPEC §1 "Plain Redis keys"): the keys a `redis-keys`
//! store manages, planned like flags (one change per key and store target, against the value
//! read) and applied as compare-and-sets on that value, each changed key one journal commit.
//!
//! This module is the keys' planner ([`plan`], pure, `BTreeMap` order) and their vocabulary
//! ([`KeyChange`], [`Stored`], how a key or a value is shown); [`apply`] executes the plan's key
//! changes. Keys never go through the flag machinery and flags never reach a `redis-keys`
//! store. Key names and values are hostile text: they are always shown escaped
//! ([`show_key`], [`show_value`]), so none can forge a line of output.

pub mod apply;

use crate::desired::DeclaredKey;
use crate::flag::StoreTarget;
use crate::store::redis_keys::{Held, KeyStores};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// A value a key held, as bytes: serialized as a JSON string when it is UTF-8 text, else as
/// `{"hex": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored(pub Vec<u8>);

impl Serialize for Stored {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => {
                let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
                BTreeMap::from([("hex", hex)]).serialize(s)
            }
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
            Raw::Hex { hex } => (0..hex.len())
                .step_by(2)
                .map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                .collect::<Option<Vec<u8>>>()
                .map(Stored)
                .ok_or_else(|| serde::de::Error::custom("\"hex\" is not hexadecimal bytes")),
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

impl KeyChange {
    /// `<store> <key>`, how messages name the key.
    pub fn name(&self) -> String {
        format!("{} {}", self.target.store, show_key(&self.key))
    }
}

/// What every target of every `redis-keys` store holds for each declared key: `(store, key)`
/// to the readings of the store's targets.
pub type Observed = BTreeMap<(String, String), Vec<(StoreTarget, Held)>>;

/// The key part of a plan.
#[derive(Debug, Default, PartialEq)]
pub struct KeyPlan {
    pub changes: Vec<KeyChange>,
    pub unchanged: usize,
    /// Declared keys that cannot be planned on a target, one message each, naming it.
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// Plans the declared keys against what the stores hold.
pub fn plan(declared: &[DeclaredKey], observed: &Observed) -> KeyPlan {
    let mut plan = KeyPlan::default();
    for d in declared {
        let name = format!("{} {}", d.store, show_key(&d.key));
        if d.reason.as_deref() == Some("") {
            plan.warnings.push(format!(
                "{name} has an empty reason: say why before you apply (apply refuses to write it until then)."
            ));
        }
        for (target, held) in observed
            .get(&(d.store.clone(), d.key.clone()))
            .into_iter()
            .flatten()
        {
            let from = match held {
                Held::Other(kind) => {
                    plan.problems.push(format!(
                        "{name} in {target}: the key holds a Redis {kind}, not a string; relayctl manages \
                         string keys only: remove it from [keys.{}] or fix the key's name",
                        d.store
                    ));
                    continue;
                }
                Held::Absent => None,
                Held::Value(v) => Some(Stored(v.clone())),
            };
            if from.as_ref().map(|s| s.0.as_slice()) == d.value.as_deref().map(str::as_bytes) {
                plan.unchanged += 1;
                continue;
            }
            plan.changes.push(KeyChange {
                target: target.clone(),
                key: d.key.clone(),
                from,
                to: d.value.clone(),
                reason: d.reason.clone(),
            });
        }
    }
    plan
}

impl crate::plan::Plan {
    /// Adds the key part of the plan: its changes, unchanged count, problems and warnings.
    pub fn add_keys(&mut self, keys: KeyPlan) {
        self.keys = keys.changes;
        self.unchanged += keys.unchanged;
        self.key_problems = keys.problems;
        self.warnings.extend(keys.warnings);
    }

    /// Whether the plan changes anything, a flag or a key.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty() || !self.keys.is_empty()
    }
}

/// Reads every declared key from every target of its store, all targets at once. A target that
/// cannot be read is an error naming it (all of them, if several are down).
pub async fn observe(stores: &KeyStores, declared: &[DeclaredKey]) -> anyhow::Result<Observed> {
    let reads = stores.endpoints().iter().map(|e| async move {
        let keys: Vec<&str> = declared
            .iter()
            .filter(|d| d.store == e.store())
            .map(|d| d.key.as_str())
            .collect();
        let mut held = Vec::new();
        for chunk in keys.chunks(apply::BATCH) {
            held.extend(e.read(chunk).await?);
        }
        anyhow::Ok(keys.into_iter().zip(held).collect::<Vec<_>>())
    });
    let mut observed = Observed::new();
    let mut failures = Vec::new();
    for (e, result) in stores
        .endpoints()
        .iter()
        .zip(futures::future::join_all(reads).await)
    {
        match result {
            Ok(found) => {
                for (key, held) in found {
                    let readings = observed
                        .entry((e.store().to_owned(), key.to_owned()))
                        .or_default();
                    readings.push((e.target(), held));
                }
            }
            Err(err) => failures.push(format!("{}: {err:#}", e.target())),
        }
    }
    match failures.len() {
        0 => Ok(observed),
        _ => Err(anyhow::anyhow!(
            "cannot read the keys of {}",
            failures.join("; and of ")
        )),
    }
}

/// Checks a saved plan's key changes against the overrides file: each names a declared key on
/// a declared target of its store, once, with the declared value and reason. Whether the store
/// still holds `from` is the write's to check. One message per bad change.
pub fn check_saved(
    changes: &[KeyChange],
    declared: &[DeclaredKey],
    is_target: impl Fn(&StoreTarget) -> bool,
) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for c in changes {
        let mut problems = Vec::new();
        if !seen.insert((&c.target, &c.key)) {
            problems.push("the plan lists it more than once".to_owned());
        }
        match declared
            .iter()
            .find(|d| d.store == c.target.store && d.key == c.key)
        {
            None => problems.push("the overrides file does not declare this key".to_owned()),
            Some(d) => {
                if d.value != c.to {
                    problems.push(format!(
                        "the plan sets {}, but the overrides file declares {}",
                        show_to(c.to.as_deref()),
                        show_to(d.value.as_deref())
                    ));
                }
                if d.reason != c.reason {
                    problems.push("its reason is not the one the overrides file gives".to_owned());
                }
                if !is_target(&c.target) {
                    problems.push(format!(
                        "the plan names target {}, which the overrides file does not declare for store {:?}",
                        c.target.target, c.target.store
                    ));
                }
            }
        }
        if !problems.is_empty() {
            out.push(format!("{} in {}: {}", c.name(), c.target, problems.join("; ")));
        }
    }
    out
}

/// Refuses a saved plan whose key changes do not match the overrides file (see [`check_saved`]),
/// before anything is written.
pub fn refuse_unsound(
    saved: &[KeyChange],
    declared: &[DeclaredKey],
    stores: &KeyStores,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    let problems = check_saved(saved, declared, |t| stores.find(t).is_some());
    if problems.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "the plan file {} does not match the overrides file, so nothing was written:\n  {}\n\
         Make a new plan with `relayctl plan --out FILE`, review it, and apply that",
        file.display(),
        problems.join("\n  ")
    )
}

/// The plan's lines for key changes: `~ <store> <key>: <from> -> <to>   <target>`.
pub fn render_rows(changes: &[KeyChange]) -> String {
    let rows: Vec<(String, &str)> = changes
        .iter()
        .map(|c| {
            let from = c.from.as_ref().map(|s| s.0.as_slice());
            (
                format!(
                    "{}: {} -> {}",
                    c.name(),
                    show_held(from),
                    show_to(c.to.as_deref())
                ),
                c.target.target.as_str(),
            )
        })
        .collect();
    let width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (line, target) in rows {
        let _ = writeln!(
            out,
            "  {} {line:<width$}   {target}",
            crate::ui::paint(crate::ui::CHANGE, "~")
        );
    }
    out
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

#[cfg(test)]
mod tests;
