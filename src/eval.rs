//! `relayctl eval`'s engine: what a context gets from a flag, on each store target, by
//! LaunchDarkly's own evaluation engine (`launchdarkly-server-sdk-evaluation`, the engine inside
//! LaunchDarkly's Rust SDK). relayctl never decides an evaluation itself: it reads what the
//! engine asks for and reports what the engine answers.
//!
//! Each target is evaluated on its own data alone: the flag, and the prerequisites and segments
//! the engine asks for, read from that same target, round after round until the engine needs
//! nothing more (one round per level of nesting, every context and flag of the target batched in
//! each round's reads). So a Redis and a DynamoDB that disagree give different answers, as the
//! services reading them do. With `--planned`, declared flags are seen as apply would write
//! them ([`data`]). What the engine consulted is judged afterwards: a prerequisite or segment the
//! target lacks is reported with the answer the SDKs give anyway; a big segment, or an item that
//! cannot be read, makes the answer unknown rather than a guess.

pub mod context;
mod data;
pub mod render;
#[cfg(test)]
mod tests;

use crate::desired::Override;
use crate::flag::FlagId;
use crate::kind::StoreTarget;
use crate::store::{ItemKind, Stores};
use data::{Needs, TargetData};
use futures::future::join_all;
use launchdarkly_server_sdk_evaluation::{Context, Error, Reason};
use serde_json::Value;

/// How many rounds of reads one target may take: each level of prerequisites or segments
/// nested in one another is a round, and real flags nest a few levels at most.
const MAX_ROUNDS: usize = 32;

/// What a context gets from a flag on one target.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The engine's answer: what an SDK reading this target serves.
    Served {
        /// The variation's value as stored, or `None` when the SDKs serve the application's
        /// default value (no off variation, an error).
        value: Option<Value>,
        variation: Option<usize>,
        /// LaunchDarkly's evaluation-reason JSON (`{"kind": "RULE_MATCH", ...}`).
        reason: Value,
        /// What the target lacks that the evaluation consulted (a prerequisite, a segment, the
        /// flag itself): the answer stands, but the store is not what LaunchDarkly would hold.
        problems: Vec<String>,
    },
    /// No answer can be given here: why (a big segment, an item that cannot be read).
    Unknown { why: String },
}

impl Outcome {
    /// The answer for a flag the target does not hold (`place` says where it was looked for).
    fn not_found(place: &str) -> Outcome {
        Outcome::Served {
            value: None,
            variation: None,
            reason: data::reason_json(&Reason::Error {
                error: Error::FlagNotFound,
            }),
            problems: vec![format!("the flag is not in this target ({place})")],
        }
    }
}

/// One flag for one context on one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub id: FlagId,
    /// The context's position in the list evaluated.
    pub context: usize,
    pub target: StoreTarget,
    /// As the target holds it now.
    pub now: Outcome,
    /// As apply would leave the target (`--planned`).
    pub planned: Option<Outcome>,
}

/// Evaluates each of `flags` for each of `contexts` on every store target, as stored now and,
/// with `declared` (the overrides file's declarations), as apply would leave it. In order:
/// context, then flag, then target (the overrides file's order). Never fails as a whole: a
/// target that cannot be read gives unknown outcomes naming it.
pub async fn evaluate(
    stores: &Stores,
    flags: &[FlagId],
    contexts: &[Context],
    declared: Option<&[Override]>,
) -> Vec<Evaluation> {
    let mut environments: Vec<(&str, &str)> = Vec::new();
    for id in flags {
        let env = (id.project.as_str(), id.environment.as_str());
        if !environments.contains(&env) {
            environments.push(env);
        }
    }
    let mut jobs = Vec::new();
    for &env in &environments {
        let keys: Vec<String> = flags
            .iter()
            .filter(|id| (id.project.as_str(), id.environment.as_str()) == env)
            .map(|id| id.flag.clone())
            .collect();
        for (index, target) in stores.targets(env.0, env.1).into_iter().enumerate() {
            let data = TargetData::new(target, env, declared);
            jobs.push(on_target(stores, index, data, keys.clone(), contexts));
        }
    }
    let mut found: Vec<Evaluation> = join_all(jobs).await.into_iter().flatten().collect();
    // Context, then flag in the order asked, then target: the targets are already in order.
    let position = |id: &FlagId| flags.iter().position(|f| f == id).unwrap_or(usize::MAX);
    found.sort_by_key(|e| (e.context, position(&e.id)));
    found
}

/// Evaluates `keys` for every context on one target, reading what the engine needs round by
/// round (`index`: the target's endpoint). An evaluation done in one round stays done: the
/// target's data only grows.
async fn on_target(
    stores: &Stores,
    index: usize,
    mut data: TargetData<'_>,
    keys: Vec<String>,
    contexts: &[Context],
) -> Vec<Evaluation> {
    let mut done = vec![None; contexts.len() * keys.len()];
    let mut needs = Needs {
        flags: keys.iter().cloned().collect(),
        ..Needs::default()
    };
    for _ in 0..MAX_ROUNDS {
        read(stores, index, &mut data, &needs).await;
        needs = evaluate_pending(&data, &keys, contexts, &mut done);
        if needs.is_empty() {
            return done.into_iter().flatten().collect();
        }
    }
    let why = format!(
        "its prerequisites and segments nest more than {MAX_ROUNDS} levels deep in this target; check them for a \
         cycle (LaunchDarkly refuses one)"
    );
    data.supply_failure(&needs, &why);
    evaluate_pending(&data, &keys, contexts, &mut done);
    done.into_iter().flatten().collect()
}

/// Reads what `needs` names from the target into `data`: flags and segments, one request each.
async fn read(stores: &Stores, index: usize, data: &mut TargetData<'_>, needs: &Needs) {
    let (project, environment) = (data.project().to_owned(), data.environment().to_owned());
    let env = (project.as_str(), environment.as_str());
    let flags: Vec<String> = needs.flags.iter().cloned().collect();
    let segments: Vec<String> = needs.segments.iter().cloned().collect();
    let (read_flags, read_segments) = futures::join!(
        stores.read_items(index, env, ItemKind::Flag, &flags),
        stores.read_items(index, env, ItemKind::Segment, &segments)
    );
    match (read_flags, read_segments) {
        (Ok(f), Ok(s)) => {
            data.supply_flags(&flags, &f);
            data.supply_segments(&segments, &s);
        }
        (Err(e), _) | (_, Err(e)) => {
            let why = format!("cannot read {}: {e:#}", data.target);
            data.supply_failure(needs, &why);
        }
    }
}

/// Makes every evaluation of the target not `done` yet (`done[context * keys + key]`) that the
/// data read so far allows; returns what the others still need read.
fn evaluate_pending(
    data: &TargetData<'_>,
    keys: &[String],
    contexts: &[Context],
    done: &mut [Option<Evaluation>],
) -> Needs {
    let mut needs = Needs::default();
    for (slot, i) in done.iter_mut().zip(0..).filter(|(slot, _)| slot.is_none()) {
        let (context, key) = (i / keys.len(), &keys[i % keys.len()]);
        let now = data.evaluate(key, &contexts[context], false);
        let planned = data
            .planned()
            .then(|| data.evaluate(key, &contexts[context], true))
            .transpose();
        for more in [now.as_ref().err(), planned.as_ref().err()].into_iter().flatten() {
            needs.add(more.clone());
        }
        if let (Ok(now), Ok(planned)) = (now, planned) {
            *slot = Some(Evaluation {
                id: FlagId {
                    project: data.project().to_owned(),
                    environment: data.environment().to_owned(),
                    flag: key.clone(),
                },
                context,
                target: data.target.clone(),
                now,
                planned,
            });
        }
    }
    needs
}
