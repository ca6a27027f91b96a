//! Executing a [`Plan`]: exactly the changes it holds, never a recomputed plan.
//!
//! Per flag, the targets are written concurrently, each with a compare-and-swap on the version
//! the plan observed; then, if any target took the change, one journal commit records which
//! did (and which failed). A failed target does not stop the other flags.
//!
//! Re-running after a crash or a partial failure is safe: a target that took the change now holds
//! the new version, so a fresh plan no longer lists it, and a saved plan refuses it as stale.
//! A crash between a flag's store writes and its journal commit loses nothing: the journal logs
//! the intent first, and the next apply reads the stores to record what the killed one wrote
//! ([`record_interrupted`]).

use crate::flag::FlagId;
use crate::journal::{Entry, Intent, Writer};
use crate::plan::{Change, Plan};
use crate::store::{Lookup, Stores, WriteError};
use anyhow::{Context, Result};
use futures::future::join_all;

/// What happened to one flag.
#[derive(Debug)]
pub struct FlagOutcome {
    pub entry: Entry,
    /// The journal commit's abbreviated id, when at least one target was written.
    pub commit: Option<String>,
    /// Whether any failure was a stale plan.
    pub stale: bool,
}

/// Writes every change of `plan` and journals each changed flag. `on_flag` is told about each
/// flag as soon as it is done, for progress output. An interruption (Ctrl-C) stops it between
/// two flags: the outcomes returned are the flags that were handled.
pub async fn apply(
    plan: &Plan,
    stores: &Stores,
    journal: &mut Writer<'_>,
    on_flag: &mut dyn FnMut(&FlagOutcome),
) -> Result<Vec<FlagOutcome>> {
    refuse_empty_reasons(plan)?;
    let mut outcomes = Vec::new();
    for (id, changes) in plan.by_flag() {
        if crate::interrupt::requested() {
            break;
        }
        let first = changes[0];
        let mut entry = Entry {
            id: id.clone(),
            to: first.to.clone(),
            previous_on: first.from.on,
            base_version: changes.iter().map(|c| c.version).max().unwrap_or(0),
            reason: first.reason.clone(),
            written: Vec::new(),
            failed: Vec::new(),
        };
        let targets = changes.iter().map(|c| (c.target.clone(), c.version)).collect();
        let intent = journal.begin(&entry, &first.from, targets)?;
        let results = join_all(changes.iter().map(|c| write(stores, c))).await;
        let mut stale = false;
        for (change, result) in changes.iter().zip(results) {
            match result {
                Ok(version) => entry.written.push((change.target.clone(), version)),
                Err(e) => {
                    stale |= matches!(e, WriteError::Stale { .. });
                    entry.failed.push((change.target.clone(), format!("{e:#}")));
                }
            }
        }
        let commit = journal.finish(&intent, &entry)?;
        let outcome = FlagOutcome { entry, commit, stale };
        on_flag(&outcome);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Refuses, before anything is written, a plan that would write a flag whose declared reason is
/// empty (`reason = ""`, the placeholder `relayctl import` leaves): every change says why.
pub fn refuse_empty_reasons(plan: &Plan) -> Result<()> {
    let empty: Vec<String> = plan
        .by_flag()
        .into_iter()
        .filter(|(_, changes)| changes.iter().any(|c| c.reason.as_deref() == Some("")))
        .map(|(id, _)| id.to_string())
        .collect();
    if !empty.is_empty() {
        anyhow::bail!(
            "not applying: the reason of {} is empty (reason = \"\"); say why in the overrides file, then plan \
             and apply again. Nothing was written",
            empty.join(", ")
        );
    }
    Ok(())
}

/// Records the flag writes an interrupted apply started and did not record, after reading the
/// stores: a target took a write if it now holds the version after the planned one, with the
/// planned state. Returns what was recorded, per flag.
pub async fn record_interrupted(
    stores: &Stores,
    journal: &mut Writer<'_>,
    intents: &[Intent],
) -> Result<Vec<Entry>> {
    let ids: Vec<FlagId> = intents.iter().map(|i| i.entry.id.clone()).collect();
    let observed = stores.read(&ids).await.context(
        "an interrupted apply left flag writes whose outcome only the stores can tell, and they cannot be read",
    )?;
    let mut out = Vec::new();
    for intent in intents {
        let mut entry = intent.entry.clone();
        let readings = observed.get(&entry.id).map(Vec::as_slice).unwrap_or_default();
        for (target, expected) in &intent.targets {
            let found = readings.iter().find(|(t, _)| t == target).map(|(_, l)| l);
            match found {
                Some(Lookup::Found(f))
                    if f.version == expected + 1 && f.targeting_like(&entry.to) == entry.to =>
                {
                    entry.written.push((target.clone(), f.version));
                }
                _ => entry.failed.push((
                    target.clone(),
                    "not written: apply was interrupted before this target".into(),
                )),
            }
        }
        journal.finish(intent, &entry)?;
        out.push(entry);
    }
    Ok(out)
}

async fn write(stores: &Stores, change: &Change) -> Result<u64, WriteError> {
    let target = &change.target;
    let Some(endpoint) = stores.find(&change.id, target) else {
        return Err(anyhow::anyhow!(
            "the plan names store {:?} target {} which the overrides file no longer declares; make a new plan",
            target.store,
            target.target
        )
        .into());
    };
    endpoint.write(&change.id, change.version, &change.to).await
}
