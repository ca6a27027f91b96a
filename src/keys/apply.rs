//! Executing a plan's key changes: per batch of keys, a write-ahead-log intent for each, one
//! pipeline of compare-and-sets per store target (all targets at once), then one journal commit
//! per key that any target took. A failed target does not stop the other keys.
//!
//! Re-running is safe: a key that took the change now holds the declared value, so a fresh plan
//! no longer lists it, and a saved plan's compare-and-set refuses it as stale. A kill between
//! the writes and the commits loses nothing: the next apply reads the keys the log's intents name
//! and records what they hold ([`record_interrupted`]). A batch whose answer never came is read
//! back at once; a key that cannot be read back either stays an intent for the next apply.

use super::{show_held, show_to, KeyChange};
use crate::flag::StoreTarget;
use crate::journal::{KeyEntry, KeyIntent, Writer};
use crate::store::redis_keys::{Batch, Held, KeyEndpoint, KeyStores, Set, SetOutcome};
use anyhow::{anyhow, Result};
use futures::future::join_all;
use std::fmt::Write as _;

/// How many keys go into one pipeline per target.
pub(crate) const BATCH: usize = 256;

/// What happened to one key.
#[derive(Debug)]
pub struct KeyOutcome {
    pub entry: KeyEntry,
    /// The journal commit's abbreviated id, when at least one target was written.
    pub commit: Option<String>,
    /// Whether any failure was a stale plan.
    pub stale: bool,
    /// Targets whose write has an unknown outcome even after reading them back.
    pub unresolved: Vec<(StoreTarget, String)>,
}

/// One key of the plan: its changes (one per target) and its journal entry.
struct Planned<'p> {
    changes: Vec<&'p KeyChange>,
    entry: KeyEntry,
    stale: bool,
    /// Targets whose write went unanswered and could not be read back either.
    unresolved: Vec<(StoreTarget, String)>,
}

/// What [`apply`] tells its caller as it goes, for progress output.
#[derive(Debug)]
pub enum KeyEvent<'a> {
    /// `target` did not answer a batch of key writes (`why`); the batch's keys are being read
    /// back, for at most `within`, to learn whether they were written.
    Unanswered {
        target: &'a StoreTarget,
        keys: usize,
        why: &'a str,
        within: std::time::Duration,
    },
    /// A key is done.
    Key(&'a KeyOutcome),
    /// Something the operator should know about a target (replicas that lag).
    Warning(&'a str),
}

/// Writes every key change and journals each changed key. `on_event` is told about each key as
/// it is recorded, and before a target that did not answer is read back. An interruption
/// (Ctrl-C) stops it between two batches.
pub async fn apply(
    changes: &[KeyChange],
    stores: &KeyStores,
    journal: &mut Writer<'_>,
    on_event: &mut dyn FnMut(KeyEvent),
) -> Result<Vec<KeyOutcome>> {
    refuse_empty_reasons(changes)?;
    let mut keys: Vec<Planned> = Vec::new();
    for c in changes {
        match keys.last_mut() {
            Some(k) if k.changes[0].target.store == c.target.store && k.changes[0].key == c.key => {
                k.changes.push(c)
            }
            _ => keys.push(Planned {
                changes: vec![c],
                entry: entry(c),
                stale: false,
                unresolved: Vec::new(),
            }),
        }
    }
    for k in &keys {
        journal.check_key(&k.entry)?;
    }
    let mut outcomes = Vec::new();
    let mut rest = keys.into_iter().peekable();
    while rest.peek().is_some() {
        if crate::interrupt::requested() {
            break;
        }
        let mut batch: Vec<Planned> = rest.by_ref().take(BATCH).collect();
        let mut intents = Vec::new();
        for k in &batch {
            let targets = k.changes.iter().map(|c| c.target.clone()).collect();
            intents.push(journal.begin_key(&k.entry, targets)?);
        }
        journal.sync_log()?;
        write_batch(stores, &mut batch, on_event).await;
        for (k, intent) in batch.into_iter().zip(intents) {
            let unresolved = k.unresolved;
            if !unresolved.is_empty() {
                let targets = unresolved.iter().map(|(t, _)| t.clone()).collect();
                let left = journal.begin_key(&intent.entry, targets)?;
                journal.leave_key_unfinished(left);
            }
            let commit = journal.finish_key(&intent, &k.entry)?;
            let outcome = KeyOutcome {
                entry: k.entry,
                commit,
                stale: k.stale,
                unresolved,
            };
            on_event(KeyEvent::Key(&outcome));
            outcomes.push(outcome);
        }
    }
    Ok(outcomes)
}

/// The journal entry of a key, before any write.
fn entry(first: &KeyChange) -> KeyEntry {
    KeyEntry {
        store: first.target.store.clone(),
        key: first.key.clone(),
        value: first.to.clone(),
        previous: first.from.clone(),
        reason: first.reason.clone(),
        written: Vec::new(),
        failed: Vec::new(),
        notes: Vec::new(),
    }
}

/// Refuses, before anything is written, key changes whose declared reason is empty.
pub fn refuse_empty_reasons(changes: &[KeyChange]) -> Result<()> {
    let mut empty: Vec<String> = changes
        .iter()
        .filter(|c| c.reason.as_deref() == Some(""))
        .map(KeyChange::name)
        .collect();
    empty.dedup();
    if !empty.is_empty() {
        anyhow::bail!(
            "not applying: the reason of key {} is empty (reason = \"\"); say why in the overrides file, then \
             plan and apply again. Nothing was written",
            empty.join(", ")
        );
    }
    Ok(())
}

/// Sends the batch's compare-and-sets, one pipeline per target, all targets at once, and
/// records each answer in its key's entry; a target that did not answer is read back at once.
async fn write_batch(stores: &KeyStores, batch: &mut [Planned<'_>], on_event: &mut dyn FnMut(KeyEvent)) {
    let mut per_target: Vec<(&KeyEndpoint, Vec<(usize, &KeyChange)>)> = Vec::new();
    for (i, k) in batch.iter().enumerate() {
        for &c in &k.changes {
            if let Some(e) = stores.find(&c.target) {
                match per_target.iter_mut().find(|(t, _)| std::ptr::eq(*t, e)) {
                    Some((_, list)) => list.push((i, c)),
                    None => per_target.push((e, vec![(i, c)])),
                }
            }
        }
    }
    let sends = per_target.iter().map(|(endpoint, list)| async move {
        let sets: Vec<Set> = list
            .iter()
            .map(|(_, c)| Set {
                key: &c.key,
                from: c.from.as_ref().map(|s| s.0.as_slice()),
                to: c.to.as_deref(),
            })
            .collect();
        endpoint.compare_and_set(&sets).await
    });
    let results = join_all(sends).await;
    for k in batch.iter_mut() {
        for &c in &k.changes {
            if stores.find(&c.target).is_none() {
                k.entry.failed.push((
                    c.target.clone(),
                    "the plan names a target the overrides file no longer declares; make a new plan".into(),
                ));
            }
        }
    }
    for ((endpoint, list), result) in per_target.into_iter().zip(results) {
        match result {
            Batch::Answered(outcomes) => {
                let wrote = outcomes.contains(&SetOutcome::Written);
                let (note, warning) = match wrote {
                    true => endpoint.replicated().await,
                    false => (None, None),
                };
                if let Some(w) = &warning {
                    on_event(KeyEvent::Warning(w));
                }
                for ((i, c), outcome) in list.into_iter().zip(outcomes) {
                    let k = &mut batch[i];
                    match outcome {
                        SetOutcome::Written => {
                            k.entry.written.push(c.target.clone());
                            if let Some(note) = &note {
                                k.entry.notes.push((c.target.clone(), note.clone()));
                            }
                        }
                        SetOutcome::Stale(held) => {
                            k.stale = true;
                            k.entry.failed.push((c.target.clone(), stale(c, &held)));
                        }
                    }
                }
            }
            Batch::Failed(e) => {
                for (i, c) in list {
                    batch[i]
                        .entry
                        .failed
                        .push((c.target.clone(), format!("{e:#}; nothing was written")));
                }
            }
            Batch::Unknown(e) => resolve(endpoint, batch, list, &format!("{e:#}"), on_event).await,
        }
    }
}

/// The stale-plan refusal of `c`, whose key now holds `held`.
fn stale(c: &KeyChange, held: &Held) -> String {
    format!(
        "stale plan: the key holds {} but the plan was made against {}; run `relayctl plan` again and \
         review the new plan",
        show(held),
        show_held(c.from.as_ref().map(|s| s.0.as_slice()))
    )
}

/// What a key holds, as shown.
fn show(held: &Held) -> String {
    match held {
        Held::Absent => "(absent)".to_owned(),
        Held::Value(v) => show_held(Some(v)),
        Held::Other(kind) => format!("a Redis {kind}"),
    }
}

/// Whether a target holding `held` took the write of `to`.
fn landed(held: &Held, to: Option<&str>) -> bool {
    match (held, to) {
        (Held::Absent, None) => true,
        (Held::Value(v), Some(to)) => v.as_slice() == to.as_bytes(),
        _ => false,
    }
}

/// Reads back, in one pipeline on a new connection, the keys of `list` whose writes to
/// `endpoint` went unanswered (`why`), and records each as written or failed; those that cannot
/// be read back either stay unresolved.
async fn resolve(
    endpoint: &KeyEndpoint,
    batch: &mut [Planned<'_>],
    list: Vec<(usize, &KeyChange)>,
    why: &str,
    on_event: &mut dyn FnMut(KeyEvent),
) {
    let target = endpoint.target();
    on_event(KeyEvent::Unanswered {
        target: &target,
        keys: list.len(),
        why,
        within: endpoint.read_back_limit(),
    });
    let keys: Vec<&str> = list.iter().map(|(_, c)| c.key.as_str()).collect();
    match endpoint.read_back(&keys).await {
        Ok(held) => {
            for ((i, c), held) in list.into_iter().zip(held) {
                let k = &mut batch[i];
                match landed(&held, c.to.as_deref()) {
                    true => k.entry.written.push(c.target.clone()),
                    false => k.entry.failed.push((
                        c.target.clone(),
                        format!(
                            "{why}; read back, it holds {}: the write did not land",
                            show(&held)
                        ),
                    )),
                }
            }
        }
        Err(e) => {
            for (i, c) in list {
                let left = format!("{why}; reading it back failed too: {e:#}");
                batch[i].unresolved.push((c.target.clone(), left));
            }
        }
    }
}

/// Records the key writes an interrupted apply started and did not record, after reading the
/// keys: a target took a write if it now holds the value written (or the key is gone, for a
/// delete). Returns what was recorded.
pub async fn record_interrupted(
    stores: &KeyStores,
    journal: &mut Writer<'_>,
    intents: &[KeyIntent],
) -> Result<Vec<KeyEntry>> {
    let mut out = Vec::new();
    for intent in intents {
        let mut entry = intent.entry.clone();
        for target in &intent.targets {
            let endpoint = stores.find(target).ok_or_else(|| {
                anyhow!(
                    "an earlier apply left a write of key {} to {target} unrecorded, and the overrides \
                     file no longer declares that target; declare it again so relayctl can read it",
                    super::show_key(&entry.key)
                )
            })?;
            let held = endpoint.read(&[entry.key.as_str()]).await.map_err(|e| {
                e.context(
                    "an earlier apply left key writes whose outcome only the stores can tell, and they \
                     cannot be read now; run apply again once the stores answer",
                )
            })?;
            match held.first() {
                Some(h) if landed(h, entry.value.as_deref()) => entry.written.push(target.clone()),
                _ => entry.failed.push((
                    target.clone(),
                    "not written: apply was interrupted before this target".into(),
                )),
            }
        }
        journal.finish_key(intent, &entry)?;
        out.push(entry);
    }
    Ok(out)
}

/// A notice for stderr: a target's lagging replicas, or the wait after it did not answer key
/// writes (said before the wait starts).
pub fn render_notice(event: &KeyEvent) -> String {
    if let KeyEvent::Warning(w) = event {
        return format!("{} {w}\n", crate::ui::paint(crate::ui::WARNING, "warning:"));
    }
    let KeyEvent::Unanswered {
        target,
        keys,
        why,
        within,
    } = event
    else {
        return String::new();
    };
    crate::ui::read_back_warning(
        target,
        &format!("the writes of {keys} key(s)"),
        false,
        why,
        *within,
    )
}

/// What happened to one key: a line per target written (stdout) and per failure (stderr).
pub fn render_outcome(o: &KeyOutcome) -> (String, String) {
    let name = format!("{} {}", o.entry.store, super::show_key(&o.entry.key));
    let commit = o
        .commit
        .as_ref()
        .map(|c| format!("   journal {c}"))
        .unwrap_or_default();
    let (mut out, mut err) = (String::new(), String::new());
    for target in &o.entry.written {
        let note = o
            .entry
            .note(target)
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {} {name}: {}   {}{note}{commit}",
            crate::ui::paint(crate::ui::CHANGE, "~"),
            show_to(o.entry.value.as_deref()),
            target.target
        );
    }
    for (target, why) in &o.entry.failed {
        let _ = writeln!(
            err,
            "{} {name} NOT written to {target}: {why}",
            crate::ui::paint(crate::ui::ERROR, "error:")
        );
    }
    for (target, why) in &o.unresolved {
        let _ = writeln!(
            err,
            "{} {name}: whether it was written to {target} is unknown ({why}); the journal's write-ahead log \
             keeps it, and the next `relayctl apply` reads it back and records it",
            crate::ui::paint(crate::ui::ERROR, "error:")
        );
    }
    (out, err)
}

/// The closing status of the key part of an apply, or the error that says what was not written.
pub fn conclude(
    settings: &crate::settings::Settings,
    plan: &crate::plan::Plan,
    outcomes: &[KeyOutcome],
) -> Result<()> {
    let mut planned: Vec<(&str, &str)> = plan
        .keys
        .iter()
        .map(|c| (c.target.store.as_str(), c.key.as_str()))
        .collect();
    planned.dedup();
    if outcomes.len() < planned.len() {
        anyhow::bail!(
            "interrupted after {} of {} key(s); each key handled is in the journal. Run `relayctl plan` to \
             see what is left, then apply it",
            outcomes.len(),
            planned.len()
        );
    }
    if planned.is_empty() {
        return Ok(());
    }
    let committed = outcomes.iter().filter(|o| o.commit.is_some()).count();
    if let Some(failed) = failures(outcomes) {
        anyhow::bail!(
            "{failed} Once the failing stores are reachable, run `relayctl plan` to see exactly what is left and apply it"
        );
    }
    settings.status(format!(
        "Keys: {} key(s) changed, {committed} journal commit(s). They are plain Redis keys with no LaunchDarkly \
         counterpart: sync and verify leave them alone, and services see them on their next read.",
        outcomes.len()
    ));
    Ok(())
}

/// What was found in the stores for the keys an interrupted apply left unrecorded.
pub fn render_recorded(recorded: &[KeyEntry]) -> String {
    let mut out = format!(
        "An earlier apply left {} key write(s) unrecorded (it was interrupted, or a store did not answer); \
         read the keys and recorded what it wrote:\n",
        recorded.len()
    );
    for e in recorded {
        let written: Vec<String> = e.written.iter().map(|t| t.to_string()).collect();
        let _ = writeln!(
            out,
            "  {} {}: {}",
            e.store,
            super::show_key(&e.key),
            if written.is_empty() {
                "not written anywhere".to_owned()
            } else {
                format!("written to {}", written.join(", "))
            }
        );
    }
    out
}

/// Why the key part of an apply did not succeed, if it did not: `None` when every key was
/// written everywhere.
pub fn failures(outcomes: &[KeyOutcome]) -> Option<String> {
    let failed: Vec<&KeyOutcome> = outcomes
        .iter()
        .filter(|o| !o.entry.failed.is_empty() || !o.unresolved.is_empty())
        .collect();
    if failed.is_empty() {
        return None;
    }
    let stale = match failed.iter().any(|o| o.stale) {
        true => " Stale keys changed since the plan was made: run `relayctl plan` again and review.",
        false => "",
    };
    Some(format!(
        "{} of {} key(s) were not written everywhere (listed above); the journal records what was.{stale}",
        failed.len(),
        outcomes.len()
    ))
}
