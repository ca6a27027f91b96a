//! Executing a [`Plan`]: exactly the changes it holds, never a recomputed plan.
//!
//! Flags are handled in batches: the write-ahead log records the intents of the whole batch,
//! then each endpoint takes the batch's writes in one batched call (the endpoints concurrently),
//! each write a compare-and-swap on the version the plan observed; then, per flag in plan order,
//! if any target took the change, one journal commit records which did (and which failed). A
//! failed target or a stale flag does not stop the other flags.
//!
//! Re-running after a crash or a partial failure is safe: a target that took the change now holds
//! the new version, so a fresh plan no longer lists it, and a saved plan refuses it as stale.
//! A crash between a flag's store writes and its journal commit loses nothing: the journal logs
//! the intent first, and the next apply reads the stores to record what the killed one wrote
//! ([`record_interrupted`]). What the journal needs from every flag's commit is checked before
//! the first store write ([`Writer::check`]), so no flag is written that cannot be journaled.
//!
//! A write whose outcome is unknown (sent, and no answer came) is resolved the same way, at once:
//! the target is read back (a batch's unanswered writes to one target together, in one bounded
//! read, announced once), and the write counts as done if it now holds the planned version + 1
//! with the planned state. A target that cannot be read back either stays an unfinished intent in
//! the journal's write-ahead log, for the next apply to resolve; it is never reported as written
//! or as not written on a guess.

use crate::flag::{FlagId, StoreTarget, Targeting};
use crate::journal::{Entry, Intent, Writer};
use crate::plan::{Change, Plan};
use crate::store::{Endpoint, Lookup, Stores, WriteError, Written};
use anyhow::{Context, Result};
use futures::future::join_all;
use std::time::Duration;

/// What happened to one flag.
#[derive(Debug)]
pub struct FlagOutcome {
    pub entry: Entry,
    /// The journal commit's abbreviated id, when at least one target was written.
    pub commit: Option<String>,
    /// Whether any failure was a stale plan.
    pub stale: bool,
    /// Targets whose write has an unknown outcome even after reading them back, with why: the
    /// write-ahead log keeps them for the next apply.
    pub unresolved: Vec<(StoreTarget, String)>,
    /// Targets that took the write with a warning (Redis replicas that did not acknowledge it).
    pub warnings: Vec<(StoreTarget, String)>,
}

/// What [`apply`] tells its caller as it goes, for progress output.
#[derive(Debug)]
pub enum Event<'a> {
    /// `target` did not answer the writes of `flags` (`why`, the first one's reason); they are
    /// being read back, all in one read bounded by `within`, to learn whether each landed. Said
    /// once per target and batch.
    Unanswered {
        target: &'a StoreTarget,
        flags: &'a [&'a FlagId],
        why: &'a str,
        within: Duration,
    },
    /// A flag is done.
    Flag(&'a FlagOutcome),
}

/// Flags per batch: their intents are logged together before any of their writes, then each
/// endpoint takes the batch's writes in one batched call (a few round trips, not a few per flag).
const BATCH: usize = 256;

/// Writes every change of `plan` and journals each changed flag. `on_event` is told about each
/// flag as soon as it is done, and before a target that did not answer is read back, for
/// progress output. An interruption (Ctrl-C) stops it between two batches of flags: the outcomes
/// returned are the flags that were handled.
pub async fn apply(
    plan: &Plan,
    stores: &Stores,
    journal: &mut Writer<'_>,
    on_event: &mut dyn FnMut(Event),
) -> Result<Vec<FlagOutcome>> {
    refuse_empty_reasons(plan)?;
    let flags: Vec<(Vec<&Change>, Entry)> = plan
        .by_flag()
        .into_iter()
        .map(|(id, changes)| {
            let entry = entry(id, &changes);
            (changes, entry)
        })
        .collect();
    for (_, entry) in &flags {
        journal.check(entry)?;
    }
    let mut outcomes = Vec::new();
    for batch in flags.chunks(BATCH) {
        if crate::interrupt::requested() {
            break;
        }
        apply_batch(batch, stores, journal, on_event, &mut outcomes).await?;
    }
    Ok(outcomes)
}

/// Logs the intents of every flag of `batch`, writes them all, reads back the targets that did
/// not answer, and journals each flag in plan order.
async fn apply_batch(
    batch: &[(Vec<&Change>, Entry)],
    stores: &Stores,
    journal: &mut Writer<'_>,
    on_event: &mut dyn FnMut(Event),
    outcomes: &mut Vec<FlagOutcome>,
) -> Result<()> {
    let mut intents = Vec::new();
    for (changes, entry) in batch {
        let targets = changes.iter().map(|c| (c.target.clone(), c.version)).collect();
        intents.push(journal.begin(entry, &changes[0].from, targets)?);
    }
    journal.sync_log()?;
    let all: Vec<&Change> = batch.iter().flat_map(|(c, _)| c.iter().copied()).collect();
    let mut results = write_all(stores, &all).await.into_iter();
    let mut staged = Vec::new();
    let mut unknown = Vec::new();
    for (n, (changes, entry)) in batch.iter().enumerate() {
        let mut entry = entry.clone();
        let mut stale = false;
        let mut warnings = Vec::new();
        for change in changes {
            match results.next().expect("one result per change") {
                Ok(Written {
                    version,
                    note,
                    warning,
                }) => {
                    entry.written.push((change.target.clone(), version));
                    entry.notes.extend(note.map(|n| (change.target.clone(), n)));
                    warnings.extend(warning.map(|w| (change.target.clone(), w)));
                }
                Err(WriteError::Unknown(e)) => unknown.push((n, *change, format!("{e:#}"))),
                Err(e) => {
                    stale |= matches!(e, WriteError::Stale { .. });
                    entry.failed.push((change.target.clone(), format!("{e:#}")));
                }
            }
        }
        staged.push((entry, stale, Vec::new(), warnings));
    }
    let reads = read_back(stores, &unknown, on_event).await;
    for ((n, change, why), read) in unknown.into_iter().zip(reads) {
        let (entry, _, unresolved, _) = &mut staged[n];
        if let Some(why) = settle(entry, change, why, read) {
            unresolved.push((change, why));
        }
    }
    for ((intent, (entry, stale, unresolved, warnings)), (changes, _)) in
        intents.into_iter().zip(staged).zip(batch)
    {
        // Targets whose write stayed unknown are kept in the write-ahead log, relogged before the
        // flag's done line, so no crash can leave them unrecorded; nothing else stays open.
        let first = changes[0];
        if !unresolved.is_empty() {
            let targets = unresolved.iter().map(|(c, _)| (c.target.clone(), c.version));
            let left = journal.begin(&intent.entry, &first.from, targets.collect())?;
            journal.leave_unfinished(left);
        }
        let commit = journal.finish(&intent, &entry)?;
        let unresolved = unresolved
            .into_iter()
            .map(|(c, why)| (c.target.clone(), why))
            .collect();
        let outcome = FlagOutcome {
            entry,
            commit,
            stale,
            unresolved,
            warnings,
        };
        on_event(Event::Flag(&outcome));
        outcomes.push(outcome);
    }
    Ok(())
}

/// The journal entry of the flag `id`, changed by `changes` (one per target), before any write.
fn entry(id: &FlagId, changes: &[&Change]) -> Entry {
    let first = changes[0];
    Entry {
        id: id.clone(),
        to: first.to.clone(),
        previous_on: first.from.on,
        base_version: changes.iter().map(|c| c.version).max().unwrap_or(0),
        reason: first.reason.clone(),
        written: Vec::new(),
        failed: Vec::new(),
        notes: Vec::new(),
    }
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
        "an earlier apply (interrupted, or stopped by a store that did not answer) left flag writes \
         whose outcome only the stores can tell, and they cannot be read now; run apply again once \
         the stores answer",
    )?;
    let mut out = Vec::new();
    for intent in intents {
        let mut entry = intent.entry.clone();
        let readings = observed.get(&entry.id).map(Vec::as_slice).unwrap_or_default();
        for (target, expected) in &intent.targets {
            let found = readings.iter().find(|(t, _)| t == target).map(|(_, l)| l);
            match found {
                Some(lookup) if landed(lookup, *expected, &entry.to) => {
                    entry.written.push((target.clone(), expected + 1));
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

/// Writes every change of `changes`, each endpoint's share in one batched call, the endpoints
/// concurrently; one outcome per change, in order.
async fn write_all(stores: &Stores, changes: &[&Change]) -> Vec<Result<Written, WriteError>> {
    let mut results: Vec<Option<Result<Written, WriteError>>> = changes.iter().map(|_| None).collect();
    let mut by_endpoint: Vec<(&Endpoint, Vec<usize>)> = Vec::new();
    for (i, change) in changes.iter().enumerate() {
        let target = &change.target;
        let Some(endpoint) = stores.find(&change.id, target) else {
            results[i] = Some(Err(anyhow::anyhow!(
                "the plan names store {:?} target {} which the overrides file no longer declares; make a new plan",
                target.store,
                target.target
            )
            .into()));
            continue;
        };
        match by_endpoint.iter_mut().find(|(e, _)| std::ptr::eq(*e, endpoint)) {
            Some((_, at)) => at.push(i),
            None => by_endpoint.push((endpoint, vec![i])),
        }
    }
    let writes = by_endpoint.iter().map(|(endpoint, at)| async move {
        let writes: Vec<_> = at
            .iter()
            .map(|&i| (&changes[i].id, changes[i].version, &changes[i].to))
            .collect();
        endpoint.write_batch(&writes).await
    });
    for ((_, at), done) in by_endpoint.iter().zip(join_all(writes).await) {
        for (&i, result) in at.iter().zip(done) {
            results[i] = Some(result);
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every change has an outcome"))
        .collect()
}

/// Whether a target took the write of `to` over version `expected`: it holds the next version,
/// with the planned state.
fn landed(lookup: &Lookup, expected: u64, to: &Targeting) -> bool {
    matches!(lookup, Lookup::Found(f) if f.version == expected + 1 && f.targeting_like(to) == *to)
}

/// Reads back the writes in `unknown` (sent and never answered; with the index of its flag in
/// the batch and why): per endpoint and target, all its flags in one bounded read (one new
/// connection for Redis), announced once; the targets concurrently. One reading per write, in
/// order.
async fn read_back(
    stores: &Stores,
    unknown: &[(usize, &Change, String)],
    on_event: &mut dyn FnMut(Event),
) -> Vec<Result<Lookup>> {
    let mut groups: Vec<(Option<&Endpoint>, &StoreTarget, Vec<usize>)> = Vec::new();
    for (i, (_, change, _)) in unknown.iter().enumerate() {
        let endpoint = stores.find(&change.id, &change.target);
        let same = |(e, t, _): &&mut (Option<&Endpoint>, &StoreTarget, Vec<usize>)| {
            *t == &change.target && e.zip(endpoint).is_none_or(|(a, b)| std::ptr::eq(a, b))
        };
        match groups.iter_mut().find(same) {
            Some((_, _, at)) => at.push(i),
            None => groups.push((endpoint, &change.target, vec![i])),
        }
    }
    let mut reads = Vec::new();
    for (endpoint, target, at) in &groups {
        let ids: Vec<FlagId> = at.iter().map(|&i| unknown[i].1.id.clone()).collect();
        let shown: Vec<&FlagId> = ids.iter().collect();
        on_event(Event::Unanswered {
            target,
            flags: &shown,
            why: &unknown[at[0]].2,
            within: endpoint.map_or(Duration::ZERO, Endpoint::read_back_limit),
        });
        reads.push(async move {
            match endpoint {
                Some(e) => e.read_back(&ids).await,
                None => Err(anyhow::anyhow!("the overrides file no longer declares it")),
            }
        });
    }
    let mut out: Vec<Option<Result<Lookup>>> = unknown.iter().map(|_| None).collect();
    for ((_, _, at), read) in groups.iter().zip(join_all(reads).await) {
        match read {
            Ok(lookups) => {
                for (&i, lookup) in at.iter().zip(lookups) {
                    out[i] = Some(Ok(lookup));
                }
            }
            Err(e) => {
                for &i in at {
                    out[i] = Some(Err(anyhow::anyhow!("{e:#}")));
                }
            }
        }
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("the store returned no reading for it"))))
        .collect()
}

/// Records in `entry` whether the write of `change` (unanswered: `why`) landed, as `read` shows;
/// returns why not when the target could not be read back either.
fn settle(entry: &mut Entry, change: &Change, why: String, read: Result<Lookup>) -> Option<String> {
    let target = change.target.clone();
    match read {
        Ok(lookup) if landed(&lookup, change.version, &entry.to) => {
            entry.written.push((target, change.version + 1));
        }
        Ok(lookup) => {
            let holds = match &lookup {
                Lookup::Found(f) if f.version == change.version => {
                    format!("it still holds v{}", f.version)
                }
                Lookup::Found(f) => format!("it holds v{}, which is not this write", f.version),
                Lookup::Missing { .. } => "the flag is not there any more".to_owned(),
                Lookup::Invalid(_) => "it holds a value that is not a flag".to_owned(),
            };
            entry.failed.push((
                target,
                format!("{why}; read back, {holds}: the write did not land"),
            ));
        }
        Err(e) => return Some(format!("{why}; reading it back failed too: {e:#}")),
    }
    None
}
