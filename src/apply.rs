//! Executing a [`Plan`]: exactly the changes it holds, never a recomputed plan.
//!
//! Per flag, the targets are written concurrently, each with a compare-and-swap on the version
//! the plan observed; then, if any target took the change, one journal commit records which
//! did (and which failed). A failed target does not stop the other flags.
//!
//! Re-running after a crash or a partial failure is safe: a target that took the change now holds
//! the new version, so a fresh plan no longer lists it, and a saved plan refuses it as stale.
//! The one window left is a crash between a flag's store writes and its commit: that change is
//! in the stores but not in the journal.

use crate::journal::{Entry, Writer};
use crate::plan::{Change, Plan, TargetRef};
use crate::store::{Stores, WriteError};
use anyhow::Result;
use futures::future::join_all;

/// What happened to one flag.
#[derive(Debug)]
pub struct FlagOutcome {
    pub entry: Entry,
    /// The journal commit, when at least one target was written.
    pub commit: Option<git2::Oid>,
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
    let mut outcomes = Vec::new();
    for (id, changes) in plan.by_flag() {
        if crate::interrupt::requested() {
            break;
        }
        let results = join_all(changes.iter().map(|c| write(stores, c))).await;
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
        let commit = if entry.written.is_empty() {
            None
        } else {
            Some(journal.record(&entry, &first.from)?)
        };
        let outcome = FlagOutcome { entry, commit, stale };
        on_flag(&outcome);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

async fn write(stores: &Stores, change: &Change) -> Result<u64, WriteError> {
    let target: &TargetRef = &change.target;
    let Some(t) = stores.find(&change.id, target) else {
        return Err(anyhow::anyhow!(
            "the plan names store {:?} target {} which the overrides file no longer declares; make a new plan",
            target.store,
            target.target
        )
        .into());
    };
    t.write(&change.id, change.version, &change.to).await
}
