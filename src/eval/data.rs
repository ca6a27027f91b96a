//! One store target's flags and segments as the evaluation engine sees them, and the engine's
//! view of them (its `Store` trait), which records every key the engine asks for.
//!
//! Nothing here decides how a flag evaluates: that is `launchdarkly_server_sdk_evaluation::evaluate`
//! alone. This module only says what the target holds (read lazily: the engine's questions say
//! which prerequisites and segments it needs, so no hand-written walk of the flag model can miss
//! one) and judges what the engine consulted: a prerequisite or segment the target does not hold
//! (the SDKs then count the prerequisite as failed, the context as outside the segment), one the
//! engine cannot read, a big segment whose members live outside the store. With `--planned`, a
//! declared flag is seen as apply would write it: the planner resolves the declared state
//! (`plan::plan`) and [`StoredFlag::rewrite`] produces the JSON, exactly as apply does.

use super::Outcome;
use crate::desired::Override;
use crate::flag::{FlagId, Lookup, StoredFlag};
use crate::kind::{Observed, StoreTarget};
use crate::store::Raw;
use launchdarkly_server_sdk_evaluation::{self as ld, Context, Flag, Reason, Segment};
use serde::Deserialize;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A flag as evaluation uses it: the engine's model, and its variations as stored, so a value is
/// shown as it was written (`20`, not the engine's `20.0`).
#[derive(Debug, Clone)]
pub(super) struct FlagData {
    flag: Flag,
    variations: Vec<Value>,
}

/// What a target holds under one key.
#[derive(Debug, Clone)]
pub(super) enum Slot<T> {
    Found(T),
    /// Not there, or a deleted tombstone (which the SDKs treat as not there): where, in words.
    Missing(String),
    /// There, but nothing the engine can read (or not text, or stored twice): why.
    Unreadable(String),
    /// Declared, but apply would refuse to write the declared state (`--planned`): why.
    Refused(String),
}

/// The keys the engine asked for that have not been read from the target yet.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Needs {
    pub flags: BTreeSet<String>,
    pub segments: BTreeSet<String>,
}

impl Needs {
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty() && self.segments.is_empty()
    }

    pub fn add(&mut self, other: Needs) {
        self.flags.extend(other.flags);
        self.segments.extend(other.segments);
    }
}

/// What one target holds, as far as evaluation has needed it.
pub(super) struct TargetData<'a> {
    pub target: StoreTarget,
    project: String,
    environment: String,
    /// The flags as stored.
    flags: HashMap<String, Slot<FlagData>>,
    /// The declared flags as apply would write them, where that differs from `flags`.
    planned: HashMap<String, Slot<FlagData>>,
    segments: HashMap<String, Slot<Segment>>,
    /// The overrides file's declarations, with `--planned`.
    declared: Option<&'a [Override]>,
}

/// The properties read before the engine's own parse: a tombstone is no flag or segment.
#[derive(Deserialize)]
struct Head {
    deleted: Option<Value>,
    version: Option<Value>,
    #[serde(default)]
    variations: Vec<Value>,
}

/// Why a stored item is not there for the SDKs (a tombstone), or its head; or why it is no JSON.
fn head(json: &str) -> Result<Result<Head, String>, String> {
    let head: Head =
        serde_json::from_str(json).map_err(|e| format!("it is not a JSON object the SDKs read: {e}"))?;
    if head.deleted == Some(Value::Bool(true)) {
        let version = head.version.map_or_else(|| "?".to_owned(), |v| v.to_string());
        return Ok(Err(format!("it is a deleted tombstone, version {version}")));
    }
    Ok(Ok(head))
}

/// The slot of a flag stored as `raw`.
fn flag_slot(raw: &Raw) -> Slot<FlagData> {
    match raw {
        Raw::Json(json) => parse_flag(json),
        Raw::Missing(place) => Slot::Missing(place.clone()),
        Raw::Invalid(why) => Slot::Unreadable(why.to_string()),
    }
}

fn parse_flag(json: &str) -> Slot<FlagData> {
    let head = match head(json) {
        Ok(Ok(head)) => head,
        Ok(Err(tombstone)) => return Slot::Missing(tombstone),
        Err(why) => return Slot::Unreadable(why),
    };
    match serde_json::from_str::<Flag>(json) {
        Ok(flag) => Slot::Found(FlagData {
            flag,
            variations: head.variations,
        }),
        Err(e) => Slot::Unreadable(format!("the evaluation engine cannot read it: {e}")),
    }
}

fn segment_slot(raw: &Raw) -> Slot<Segment> {
    let json = match raw {
        Raw::Json(json) => json,
        Raw::Missing(place) => return Slot::Missing(place.clone()),
        Raw::Invalid(why) => return Slot::Unreadable(why.to_string()),
    };
    match head(json) {
        Ok(Ok(_)) => match serde_json::from_str::<Segment>(json) {
            Ok(segment) => Slot::Found(segment),
            Err(e) => Slot::Unreadable(format!("the evaluation engine cannot read it: {e}")),
        },
        Ok(Err(tombstone)) => Slot::Missing(tombstone),
        Err(why) => Slot::Unreadable(why),
    }
}

impl<'a> TargetData<'a> {
    /// Nothing read yet from `target` for `project`/`environment`; `declared` with `--planned`.
    pub fn new(
        target: StoreTarget,
        (project, environment): (&str, &str),
        declared: Option<&'a [Override]>,
    ) -> Self {
        TargetData {
            target,
            project: project.to_owned(),
            environment: environment.to_owned(),
            flags: HashMap::new(),
            planned: HashMap::new(),
            segments: HashMap::new(),
            declared,
        }
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// Whether the declared state is evaluated too (`--planned`).
    pub fn planned(&self) -> bool {
        self.declared.is_some()
    }

    /// Takes what the target holds for flags `keys` (`raws`, in the same order).
    pub fn supply_flags(&mut self, keys: &[String], raws: &[Raw]) {
        for (key, raw) in keys.iter().zip(raws) {
            if let Some(planned) = self.planned_slot(key, raw) {
                self.planned.insert(key.clone(), planned);
            }
            self.flags.insert(key.clone(), flag_slot(raw));
        }
    }

    /// Takes what the target holds for segments `keys` (`raws`, in the same order).
    pub fn supply_segments(&mut self, keys: &[String], raws: &[Raw]) {
        for (key, raw) in keys.iter().zip(raws) {
            self.segments.insert(key.clone(), segment_slot(raw));
        }
    }

    /// Takes a failure to read the target: every key asked for is unreadable, saying why.
    pub fn supply_failure(&mut self, needs: &Needs, why: &str) {
        for key in &needs.flags {
            self.flags.insert(key.clone(), Slot::Unreadable(why.to_owned()));
        }
        for key in &needs.segments {
            self.segments
                .insert(key.clone(), Slot::Unreadable(why.to_owned()));
        }
    }

    /// The flag `key` as apply would write it, when the overrides file declares it (`--planned`)
    /// and apply would change it: the planner's resolution of the declaration, then the stored
    /// flag's own rewrite. A declaration apply would refuse is [`Slot::Refused`], saying why.
    fn planned_slot(&self, key: &str, raw: &Raw) -> Option<Slot<FlagData>> {
        let id = FlagId {
            project: self.project.clone(),
            environment: self.environment.clone(),
            flag: key.to_owned(),
        };
        let declared = self.declared?.iter().find(|o| o.id == id)?;
        let Raw::Json(json) = raw else {
            return None;
        };
        let lookup = StoredFlag::parse(json).map_or_else(Lookup::Invalid, Lookup::Found);
        let observed: Observed<crate::flag::Flag> =
            BTreeMap::from([(id, vec![(self.target.clone(), lookup.clone())])]);
        let plan = crate::plan::plan::<crate::flag::Flag>(std::slice::from_ref(declared), &observed);
        if let Some(problem) = plan.flags.problems.first() {
            return Some(Slot::Refused(problem.message.clone()));
        }
        let (change, Lookup::Found(stored)) = (plan.flags.changes.first()?, lookup) else {
            return None;
        };
        Some(match stored.rewrite(&change.to) {
            Ok(json) => parse_flag(&json),
            Err(e) => Slot::Refused(e.to_string()),
        })
    }

    fn flag(&self, key: &str, planned: bool) -> Option<&Slot<FlagData>> {
        let planned = planned.then(|| self.planned.get(key)).flatten();
        planned.or_else(|| self.flags.get(key))
    }

    /// The named flag `key` evaluated for `context`, as stored or (`planned`) as apply would
    /// leave the target; or the keys the engine needs that have not been read yet.
    pub fn evaluate(&self, key: &str, context: &Context, planned: bool) -> Result<Outcome, Needs> {
        let data = match self.flag(key, planned) {
            None => {
                let mut needs = Needs::default();
                needs.flags.insert(key.to_owned());
                return Err(needs);
            }
            Some(Slot::Missing(place)) => return Ok(Outcome::not_found(place)),
            Some(Slot::Unreadable(why)) => {
                return Ok(Outcome::Unknown {
                    why: format!("the stored flag cannot be read: {why}"),
                })
            }
            Some(Slot::Refused(why)) => return Ok(Outcome::Unknown { why: refused(why) }),
            Some(Slot::Found(data)) => data,
        };
        let lens = Lens {
            data: self,
            planned,
            asked: RefCell::default(),
        };
        let (variation, reason) = {
            let detail = ld::evaluate(&lens, &data.flag, context, None);
            (detail.variation_index, reason_json(&detail.reason))
        };
        let asked = lens.asked.into_inner();
        let needs = Needs {
            flags: asked
                .flags
                .iter()
                .filter(|k| !self.flags.contains_key(*k))
                .cloned()
                .collect(),
            segments: asked
                .segments
                .iter()
                .filter(|k| !self.segments.contains_key(*k))
                .cloned()
                .collect(),
        };
        if !needs.is_empty() {
            return Err(needs);
        }
        let variation = variation.and_then(|i| usize::try_from(i).ok());
        let served = Outcome::Served {
            value: variation.and_then(|i| data.variations.get(i).cloned()),
            variation,
            reason,
            problems: Vec::new(),
        };
        Ok(self.judge(served, &asked, planned))
    }

    /// `served`, with what the engine consulted judged: missing items become problems (the
    /// answer is still what SDKs serve), unreadable items and big segments make it unknown.
    fn judge(&self, mut served: Outcome, asked: &Asked, planned: bool) -> Outcome {
        let mut problems = Vec::new();
        for key in &asked.flags {
            match self.flag(key, planned) {
                Some(Slot::Missing(place)) => problems.push(format!(
                    "prerequisite flag {} is not in this target ({place}); SDKs reading it count the prerequisite as failed",
                    quoted(key)
                )),
                Some(Slot::Unreadable(why)) => {
                    return Outcome::Unknown {
                        why: format!("prerequisite flag {} cannot be read: {why}", quoted(key)),
                    }
                }
                Some(Slot::Refused(why)) => {
                    return Outcome::Unknown {
                        why: format!("of its prerequisite flag {}: {}", quoted(key), refused(why)),
                    }
                }
                _ => {}
            }
        }
        for key in &asked.segments {
            match self.segments.get(key) {
                Some(Slot::Missing(place)) => problems.push(format!(
                    "segment {} is not in this target ({place}); SDKs reading it count the context as outside it",
                    quoted(key)
                )),
                Some(Slot::Unreadable(why)) => {
                    return Outcome::Unknown {
                        why: format!("segment {} cannot be read: {why}", quoted(key)),
                    }
                }
                Some(Slot::Found(segment)) if segment.unbounded => {
                    return Outcome::Unknown { why: big_segment(key) }
                }
                _ => {}
            }
        }
        if let Outcome::Served { problems: p, .. } = &mut served {
            *p = problems;
        }
        served
    }
}

/// Why the planned state of a flag is not known: apply would refuse to write it (`why`).
fn refused(why: &str) -> String {
    format!("apply cannot write its declared state here ({why}), so there is no planned state to evaluate")
}

/// Why a flag testing big segment `key` cannot be evaluated here.
fn big_segment(key: &str) -> String {
    format!(
        "its rules test big segment {} (\"unbounded\": true), whose members are kept in the SDKs' big segment \
         store, not beside the flags; relayctl does not read that store, so whether this context is a member is \
         unknown. Ask LaunchDarkly once it is back, or a service whose SDK has that store configured",
        quoted(key)
    )
}

/// A key from the store, quoted (JSON string syntax) for a message.
pub(super) fn quoted(key: &str) -> String {
    serde_json::to_string(key).expect("a string serializes")
}

/// LaunchDarkly's evaluation-reason JSON, as the engine writes it.
pub(super) fn reason_json(reason: &Reason) -> Value {
    serde_json::to_value(reason).expect("a reason serializes")
}

/// The keys the engine asked for during one evaluation.
#[derive(Debug, Default)]
struct Asked {
    flags: BTreeSet<String>,
    segments: BTreeSet<String>,
}

/// The engine's view of one target (as stored, or as planned), recording what it asks for.
struct Lens<'d, 'a> {
    data: &'d TargetData<'a>,
    planned: bool,
    asked: RefCell<Asked>,
}

impl ld::Store for Lens<'_, '_> {
    fn flag(&self, flag_key: &str) -> Option<Flag> {
        self.asked.borrow_mut().flags.insert(flag_key.to_owned());
        match self.data.flag(flag_key, self.planned) {
            Some(Slot::Found(data)) => Some(data.flag.clone()),
            _ => None,
        }
    }

    fn segment(&self, segment_key: &str) -> Option<Segment> {
        self.asked.borrow_mut().segments.insert(segment_key.to_owned());
        match self.data.segments.get(segment_key) {
            Some(Slot::Found(segment)) => Some(segment.clone()),
            _ => None,
        }
    }
}
