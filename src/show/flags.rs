//! `show` for LaunchDarkly flags: a flag's state on a target by value (on/off, the off variation
//! and the fallthrough, a rollout slice by slice, the version), and the views of a whole
//! environment from what each target lists there ([`build`]).

use super::{view, FlagView, Showable, Summary};
use crate::desired::Override;
use crate::flag::{is_key, Flag, FlagChange, FlagId, Lookup, Serve, Variation, Weighted};
use crate::kind::StoreTarget;
use crate::plan::Problem;
use crate::store::Listing;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What a target holds for a flag.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum State {
    Found {
        version: u64,
        on: bool,
        off_variation: Serve,
        fallthrough: Fallthrough,
    },
    /// A deleted flag's tombstone: the SDKs treat it as not found.
    Deleted { version: u64 },
    /// Not there; `place` says where it was looked for.
    Missing { place: String },
    /// A value the SDKs would reject.
    Invalid { why: String },
}

/// What a flag serves when on and no target or rule matches.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallthrough {
    Variation(Variation),
    /// A percentage rollout, slice by slice.
    Rollout(Vec<Weighted>),
    Unset,
}

impl Showable for Flag {
    type State = State;

    fn state(lookup: &Lookup) -> State {
        match lookup {
            Lookup::Found(f) if f.deleted => State::Deleted { version: f.version },
            Lookup::Found(f) => State::Found {
                version: f.version,
                on: f.on(),
                off_variation: f.off_variation().clone(),
                fallthrough: match f.fallthrough() {
                    Serve::Variation(v) => Fallthrough::Variation(v.clone()),
                    Serve::Rollout => Fallthrough::Rollout(f.rollout()),
                    Serve::Unset => Fallthrough::Unset,
                },
            },
            Lookup::Missing { place } => State::Missing { place: place.clone() },
            Lookup::Invalid(e) => State::Invalid { why: e.to_string() },
        }
    }

    /// The same state, variations served and version (where each looked for a missing flag aside).
    fn same(a: &State, b: &State) -> bool {
        matches!((a, b), (State::Missing { .. }, State::Missing { .. })) || a == b
    }

    /// The flag (quoted when its key, from the store, is not a LaunchDarkly key), on/off, the
    /// off variation and the fallthrough by value, the version.
    fn cells(id: &FlagId, state: &State) -> Vec<String> {
        let id = match is_key(&id.flag) {
            true => id.to_string(),
            false => format!("{}/{}/{:?}", id.project, id.environment, id.flag),
        };
        let (state, off, fallthrough, version) = match state {
            State::Found {
                version,
                on,
                off_variation,
                fallthrough,
            } => (
                if *on { "on" } else { "off" }.to_owned(),
                format!("off: {off_variation}"),
                format!("fallthrough: {}", show_fallthrough(fallthrough)),
                format!("v{version}"),
            ),
            State::Deleted { version } => (
                "deleted".into(),
                String::new(),
                String::new(),
                format!("v{version}"),
            ),
            State::Missing { .. } => ("missing".into(), String::new(), String::new(), String::new()),
            State::Invalid { .. } => ("invalid".into(), String::new(), String::new(), String::new()),
        };
        vec![id, state, off, fallthrough, version]
    }

    fn invalid(state: &State) -> Option<String> {
        match state {
            State::Invalid { why } => Some(format!("not a flag: {why}")),
            _ => None,
        }
    }

    fn differences(change: &FlagChange) -> Vec<String> {
        change.from.differences(&change.to)
    }

    fn problem(p: &Problem<Flag>) -> String {
        p.message.clone()
    }

    fn counted(summary: &mut Summary) -> &mut usize {
        &mut summary.flags
    }
}

/// Builds the views of one environment from what each target holds there (`listings`, in the
/// overrides file's order): the flags in `only` when given, else every flag any target holds or
/// the overrides file declares there. Sorted by flag key.
pub fn build(
    project: &str,
    environment: &str,
    listings: &[(StoreTarget, Listing)],
    only: Option<&[String]>,
    overrides: &[Override],
) -> Vec<FlagView> {
    let declared: BTreeMap<&str, &Override> = overrides
        .iter()
        .filter(|o| o.id.project == project && o.id.environment == environment)
        .map(|o| (o.id.flag.as_str(), o))
        .collect();
    let flags: BTreeSet<&str> = match only {
        Some(only) => only.iter().map(String::as_str).collect(),
        None => listings
            .iter()
            .flat_map(|(_, l)| l.flags.keys().map(String::as_str))
            .chain(declared.keys().copied())
            .collect(),
    };
    let held_by = |flag: &str| -> Vec<(StoreTarget, Lookup)> {
        let missing = |listing: &Listing| Lookup::Missing {
            place: format!("no flag {flag:?} in {}", listing.place),
        };
        listings
            .iter()
            .map(|(t, l)| {
                (
                    t.clone(),
                    l.flags.get(flag).cloned().unwrap_or_else(|| missing(l)),
                )
            })
            .collect()
    };
    flags
        .into_iter()
        .map(|flag| {
            let id = FlagId {
                project: project.to_owned(),
                environment: environment.to_owned(),
                flag: flag.to_owned(),
            };
            view::<Flag>(id, held_by(flag), declared.get(flag).copied())
        })
        .collect()
}

fn show_fallthrough(f: &Fallthrough) -> String {
    match f {
        Fallthrough::Variation(v) => v.to_string(),
        Fallthrough::Unset => "unset".into(),
        Fallthrough::Rollout(slices) => rollout_text(slices),
    }
}

/// A percentage rollout by value: `rollout 60% "treatment" / 40% "control"`.
pub fn rollout_text(slices: &[Weighted]) -> String {
    if slices.is_empty() {
        return "rollout (no slices)".into();
    }
    let parts: Vec<String> = slices
        .iter()
        .map(|s| format!("{} {}", percent(s.weight), s.variation.value))
        .collect();
    format!("rollout {}", parts.join(" / "))
}

/// A rollout weight (1/1000 percent) as a percentage: `60%`, `33.333%`.
pub(super) fn percent(weight: u64) -> String {
    let whole = weight / 1000;
    match weight % 1000 {
        0 => format!("{whole}%"),
        frac => format!("{whole}.{}%", format!("{frac:03}").trim_end_matches('0')),
    }
}
