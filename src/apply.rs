//! Executing a plan: exactly the changes it holds, never a recomputed plan, for any kind of item
//! ([`Applicable`]: planned, stored and journaled), flags and plain keys through the same code.
//!
//! Items are handled in batches: the write-ahead log records the intents of the whole batch (and
//! makes them survive a power cut), then each endpoint takes the batch's writes in one batched
//! call (the endpoints concurrently), each write a compare-and-set on what the plan observed;
//! then, per item in plan order, if any target took the change, one journal commit records
//! which did (and which failed). A failed target or a stale item does not stop the others.
//!
//! Re-running after a crash or a partial failure is safe: a target that took the change now holds
//! it, so a fresh plan no longer lists it, and a saved plan's compare-and-set refuses it as stale.
//! A crash between an item's store writes and its journal commit loses nothing: the journal logs
//! the intent first, and the next apply reads the stores to record what the killed one wrote
//! ([`record_interrupted`]). What the journal needs from every item's commit is checked before
//! the first store write ([`Writer::check`]), so no item is written that cannot be journaled.
//!
//! A write whose outcome is unknown (sent, and no answer came) is resolved the same way, at once:
//! the target is read back (a batch's unanswered writes to one target together, in one bounded
//! read, announced once), and the write counts as done if the target now holds what it wrote
//! ([`Kind::landed`]). A target that cannot be read back either stays an unfinished intent in
//! the journal's write-ahead log, for the next apply to resolve; it is never reported as written
//! or as not written on a guess.

use crate::journal::{Entry, Intent, Journaled, Writer};
use crate::kind::{Kind, StoreTarget};
use crate::plan::{Part, Plannable};
use crate::store::{self, Endpoint, Storable, Stores, WriteError, Written};
use anyhow::{anyhow, bail, Context, Result};
use futures::future::join_all;
use std::time::Duration;

/// A kind of item apply can write: planned, kept in stores and recorded in the journal.
pub trait Applicable: Plannable + Storable + Journaled {}

impl<K: Plannable + Storable + Journaled> Applicable for K {}

/// What happened to one item.
#[derive(Debug)]
pub struct Outcome<K: Kind> {
    pub entry: Entry<K>,
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

/// What became of the items an apply handled, counted: each item's outcome is told as it comes
/// ([`Event::Done`]) and not kept, so an apply's memory does not grow with its items.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    /// Items handled (all planned ones, unless interrupted).
    pub handled: usize,
    /// Journal commits made.
    pub committed: usize,
    /// Items not written everywhere: a target failed, or its outcome stayed unknown.
    pub failed: usize,
    /// Target writes that failed.
    pub failed_targets: usize,
    /// Target writes whose outcome stayed unknown (kept in the write-ahead log).
    pub unknown: usize,
    /// Whether any failure was a stale plan.
    pub stale: bool,
}

impl Tally {
    fn add<K: Kind>(&mut self, o: &Outcome<K>) {
        self.handled += 1;
        self.committed += usize::from(o.commit.is_some());
        self.failed += usize::from(!o.entry.failed.is_empty() || !o.unresolved.is_empty());
        self.failed_targets += o.entry.failed.len();
        self.unknown += o.unresolved.len();
        self.stale |= o.stale;
    }
}

/// What [`apply`] tells its caller as it goes, for progress output.
#[derive(Debug)]
pub enum Event<'a, K: Kind> {
    /// `target` did not answer the writes of `ids` (`why`, the first one's reason), or
    /// (`answered`) answered them but they are in doubt; they are being read back, all in one
    /// read bounded by `within`, to learn whether each landed. Said once per target and batch.
    Unanswered {
        target: &'a StoreTarget,
        ids: &'a [&'a K::Id],
        why: &'a str,
        answered: bool,
        within: Duration,
    },
    /// The `targets` have not answered the writes of this batch (`writes` of them, all targets
    /// together) after `after`: said every [`SLOW`] while they take.
    Slow {
        targets: &'a [StoreTarget],
        writes: usize,
        after: Duration,
    },
    /// An item is done.
    Done(&'a Outcome<K>),
}

/// How long a batch's writes may take before apply says it is still waiting, and how often.
const SLOW: Duration = Duration::from_secs(5);

/// Items per batch: their intents are logged together before any of their writes, then each
/// endpoint takes the batch's writes in one batched call (a few round trips, not a few per item).
const BATCH: usize = 256;

/// One item of a batch: its changes (one per target) and what its commit records.
type Item<'p, K> = (Vec<&'p <K as Kind>::Change>, <K as Kind>::Record);

/// Writes every change of `part` and journals each changed item. `on_event` is told about each
/// item as soon as it is done, and before a target that did not answer is read back, for
/// progress output. An interruption (Ctrl-C) stops it between two batches: the tally counts the
/// items that were handled.
pub async fn apply<K: Applicable>(
    part: &Part<K>,
    stores: &Stores,
    journal: &mut Writer<'_>,
    on_event: &mut dyn FnMut(Event<K>),
) -> Result<Tally> {
    refuse_empty_reasons(part)?;
    let items = part.by_item();
    for changes in &items {
        journal.check::<K>(&K::record(changes))?;
    }
    let mut tally = Tally::default();
    for batch in items.chunks(BATCH) {
        if crate::interrupt::requested() {
            break;
        }
        let batch: Vec<Item<K>> = batch.iter().map(|c| (c.clone(), K::record(c))).collect();
        apply_batch(&batch, stores, journal, on_event, &mut tally).await?;
    }
    Ok(tally)
}

/// An item of a batch, between its writes and its commit.
struct Staged<'p, K: Kind> {
    entry: Entry<K>,
    stale: bool,
    /// Writes whose outcome stayed unknown, with why.
    unresolved: Vec<(&'p K::Change, String)>,
    warnings: Vec<(StoreTarget, String)>,
}

/// Logs the intents of every item of `batch`, writes them all, reads back the targets that did
/// not answer, and journals each item in plan order.
async fn apply_batch<K: Applicable>(
    batch: &[Item<'_, K>],
    stores: &Stores,
    journal: &mut Writer<'_>,
    on_event: &mut dyn FnMut(Event<K>),
    tally: &mut Tally,
) -> Result<()> {
    let mut intents = Vec::new();
    for (changes, record) in batch {
        intents.push(journal.begin::<K>(record, planned::<K>(changes.iter().copied()))?);
    }
    journal.sync_log()?;
    let all: Vec<&K::Change> = batch.iter().flat_map(|(c, _)| c.iter().copied()).collect();
    let mut results = write_all::<K>(stores, &all, on_event).await.into_iter();
    let mut staged = Vec::new();
    let mut unknown = Vec::new();
    for (n, (changes, record)) in batch.iter().enumerate() {
        let mut item = Staged {
            entry: Entry::new(record.clone()),
            stale: false,
            unresolved: Vec::new(),
            warnings: Vec::new(),
        };
        for &change in changes {
            let target = K::target(change).clone();
            match results.next().expect("one result per change") {
                Ok(Written { note, warning }) => {
                    item.entry
                        .written
                        .push((target.clone(), K::next(K::expected(change))));
                    item.entry.notes.extend(note.map(|n| (target.clone(), n)));
                    item.warnings.extend(warning.map(|w| (target, w)));
                }
                Err(WriteError::Unknown(e)) => unknown.push((n, change, format!("{e:#}"), false)),
                Err(WriteError::InDoubt(e)) => unknown.push((n, change, format!("{e:#}"), true)),
                Err(e) => {
                    item.stale |= matches!(e, WriteError::Stale(_));
                    item.entry.failed.push((target, format!("{e:#}")));
                }
            }
        }
        staged.push(item);
    }
    let reads = read_back::<K>(stores, &unknown, on_event).await;
    for ((n, change, why, _), read) in unknown.into_iter().zip(reads) {
        let item = &mut staged[n];
        if let Some(why) = settle::<K>(&mut item.entry, change, why, read) {
            item.unresolved.push((change, why));
        }
    }
    for (intent, item) in intents.into_iter().zip(staged) {
        // Targets whose write stayed unknown are kept in the write-ahead log, relogged before the
        // item's done line, so no crash can leave them unrecorded; nothing else stays open.
        if !item.unresolved.is_empty() {
            let targets = planned::<K>(item.unresolved.iter().map(|(c, _)| *c));
            let left = journal.begin::<K>(&intent.entry.record, targets)?;
            journal.leave_unfinished(left);
        }
        let commit = journal.finish(&intent, &item.entry)?;
        let unresolved = item.unresolved.into_iter();
        let outcome = Outcome {
            entry: item.entry,
            commit,
            stale: item.stale,
            unresolved: unresolved.map(|(c, why)| (K::target(c).clone(), why)).collect(),
            warnings: item.warnings,
        };
        on_event(Event::Done(&outcome));
        tally.add(&outcome);
    }
    Ok(())
}

/// The targets of `changes`, each with the version its write expects to replace.
fn planned<'c, K: Kind>(changes: impl Iterator<Item = &'c K::Change>) -> Vec<(StoreTarget, K::Version)> {
    changes.map(|c| (K::target(c).clone(), K::expected(c))).collect()
}

/// Refuses, before anything is written, a plan that would write an item whose declared reason
/// is empty (`reason = ""`, the placeholder `relayctl import` leaves): every change says why.
pub fn refuse_empty_reasons<K: Kind>(part: &Part<K>) -> Result<()> {
    let empty: Vec<String> = part
        .by_item()
        .into_iter()
        .filter(|changes| changes.iter().any(|c| K::reason(c) == Some("")))
        .map(|changes| K::id(changes[0]).to_string())
        .collect();
    if !empty.is_empty() {
        bail!(
            "not applying: the reason of {} is empty (reason = \"\"); say why in the overrides file, then plan \
             and apply again. Nothing was written",
            empty.join(", ")
        );
    }
    Ok(())
}

/// Records the writes of kind `K` an interrupted apply started and did not record, after reading
/// the stores: a target took a write if it now holds what the write wrote ([`Kind::landed`]).
/// Refuses, naming it, an intent whose target the overrides file no longer declares: only that
/// store can tell, and relayctl does not guess. Returns what was recorded, per item.
pub async fn record_interrupted<K: Applicable>(
    stores: &Stores,
    journal: &mut Writer<'_>,
    intents: &[Intent<K>],
) -> Result<Vec<Entry<K>>> {
    let mut pairs = Vec::new();
    for intent in intents {
        let id = K::record_id(&intent.entry.record);
        for (target, _) in &intent.targets {
            if stores.find::<K>(&id, target).is_none() {
                bail!(
                    "an earlier apply left a write of {} {id} to {target} unrecorded, and the overrides file no \
                     longer declares that target; declare it again so relayctl can read it",
                    K::NOUN
                );
            }
            pairs.push((id.clone(), target.clone()));
        }
    }
    let (observed, unreadable) = stores.read_named::<K>(&pairs).await;
    if !unreadable.is_empty() {
        return Err(anyhow!("cannot read {}", unreadable.join("; and "))).context(format!(
            "an earlier apply (interrupted, or stopped by a store that did not answer) left {} writes whose \
             outcome only the stores can tell, and they cannot be read now; run apply again once the stores \
             answer",
            K::NOUN
        ));
    }
    let mut out = Vec::new();
    for intent in intents {
        let mut entry = intent.entry.clone();
        let readings = observed.get(&K::record_id(&entry.record));
        for (target, expected) in &intent.targets {
            let held = readings
                .and_then(|r| r.iter().find(|(t, _)| t == target))
                .map(|(_, h)| h);
            match held {
                Some(held) if K::landed(&entry.record, *expected, held) => {
                    entry.written.push((target.clone(), K::next(*expected)));
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
/// concurrently; one outcome per change, in order. Targets that take longer than [`SLOW`] are
/// named through `on_event`, every [`SLOW`], until they answer.
async fn write_all<K: Storable>(
    stores: &Stores,
    changes: &[&K::Change],
    on_event: &mut dyn FnMut(Event<K>),
) -> Vec<Result<Written, WriteError>> {
    let mut results: Vec<Option<Result<Written, WriteError>>> = changes.iter().map(|_| None).collect();
    let mut by_endpoint: Vec<(&K::Endpoint, Vec<usize>)> = Vec::new();
    for (i, change) in changes.iter().enumerate() {
        let target = K::target(change);
        let Some(endpoint) = stores.find::<K>(&K::id(change), target) else {
            results[i] = Some(Err(anyhow!(
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
    let answered: Vec<std::cell::Cell<bool>> = by_endpoint.iter().map(|_| Default::default()).collect();
    let writes = by_endpoint
        .iter()
        .zip(&answered)
        .map(|((endpoint, at), answered)| async move {
            let mine: Vec<&K::Change> = at.iter().map(|&i| changes[i]).collect();
            let done = endpoint.write(&mine).await;
            answered.set(true);
            done
        });
    let all = join_all(writes);
    tokio::pin!(all);
    let started = tokio::time::Instant::now();
    let done = loop {
        tokio::select! {
            done = &mut all => break done,
            () = tokio::time::sleep(SLOW) => {
                let waiting = by_endpoint.iter().zip(&answered).filter(|(_, a)| !a.get());
                let targets: Vec<StoreTarget> = waiting.map(|((e, at), _)| e.target(&K::id(changes[at[0]]))).collect();
                on_event(Event::Slow { targets: &targets, writes: changes.len(), after: started.elapsed() });
            }
        }
    };
    for ((_, at), done) in by_endpoint.iter().zip(done) {
        for (&i, result) in at.iter().zip(done) {
            results[i] = Some(result);
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every change has an outcome"))
        .collect()
}

/// The unanswered writes to one target: its endpoint (if still declared), and their indexes.
type Group<'s, K> = (Option<&'s <K as Storable>::Endpoint>, &'s StoreTarget, Vec<usize>);

/// A write whose outcome is unknown: the index of its item in the batch, the change, why, and
/// whether the target answered it (in doubt) or not.
type Unknown<'p, K> = (usize, &'p <K as Kind>::Change, String, bool);

/// Reads back the writes in `unknown` (sent and never answered): per endpoint and target, all
/// its items in one bounded read (one new connection for Redis), announced once; the targets
/// concurrently. One reading per write, in order.
async fn read_back<K: Storable>(
    stores: &Stores,
    unknown: &[Unknown<'_, K>],
    on_event: &mut dyn FnMut(Event<K>),
) -> Vec<Result<K::Held>> {
    let mut groups: Vec<Group<K>> = Vec::new();
    for (i, (_, change, _, _)) in unknown.iter().enumerate() {
        let (id, target) = (K::id(change), K::target(change));
        let endpoint = stores.find::<K>(&id, target);
        let same = |(e, t, _): &&mut Group<K>| {
            *t == target && e.zip(endpoint).is_none_or(|(a, b)| std::ptr::eq(a, b))
        };
        match groups.iter_mut().find(same) {
            Some((_, _, at)) => at.push(i),
            None => groups.push((endpoint, target, vec![i])),
        }
    }
    let mut reads = Vec::new();
    for (endpoint, target, at) in &groups {
        let ids: Vec<K::Id> = at.iter().map(|&i| K::id(unknown[i].1)).collect();
        let shown: Vec<&K::Id> = ids.iter().collect();
        on_event(Event::Unanswered {
            target,
            ids: &shown,
            why: &unknown[at[0]].2,
            answered: unknown[at[0]].3,
            within: endpoint.map_or(Duration::ZERO, |e| e.read_back_limit()),
        });
        reads.push(async move {
            let ids: Vec<&K::Id> = ids.iter().collect();
            match endpoint {
                Some(e) => store::read_back::<K>(e, &ids).await,
                None => Err(anyhow!("the overrides file no longer declares it")),
            }
        });
    }
    let mut out: Vec<Option<Result<K::Held>>> = unknown.iter().map(|_| None).collect();
    for ((_, _, at), read) in groups.iter().zip(join_all(reads).await) {
        match read {
            Ok(held) => {
                for (&i, held) in at.iter().zip(held) {
                    out[i] = Some(Ok(held));
                }
            }
            Err(e) => {
                for &i in at {
                    out[i] = Some(Err(anyhow!("{e:#}")));
                }
            }
        }
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow!("the store returned no reading for it"))))
        .collect()
}

/// Records in `entry` whether the write of `change` (unanswered: `why`) landed, as `read` shows;
/// returns why not when the target could not be read back either.
fn settle<K: Kind>(
    entry: &mut Entry<K>,
    change: &K::Change,
    why: String,
    read: Result<K::Held>,
) -> Option<String> {
    let (target, expected) = (K::target(change).clone(), K::expected(change));
    match read {
        Ok(held) if K::landed(&entry.record, expected, &held) => {
            entry.written.push((target, K::next(expected)));
        }
        Ok(held) => entry.failed.push((
            target,
            format!(
                "{why}; read back, {}: the write did not land",
                K::holds(expected, &held)
            ),
        )),
        Err(e) => return Some(format!("{why}; reading it back failed too: {e:#}")),
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{parse, ConfigEnv};
    use crate::flag::Flag;
    use crate::journal::{corrupt_packs, test_options, Journal};
    use std::path::Path;

    /// A packfile that does not check out is caught before the branch moves to the commits it
    /// holds: the apply fails, saying so; the write-ahead log keeps what was written to the store;
    /// the next run commits it, once, and git finds the journal whole.
    #[test]
    fn a_corrupted_pack_is_refused_and_what_it_held_is_committed_by_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let flags =
            r#"{"flags": {"f": {"key": "f", "on": true, "variations": [true, false], "version": 4}}}"#;
        std::fs::write(dir.path().join("flags.json"), flags).unwrap();
        let src = "[[store]]\ntype = \"file\"\npath = \"flags.json\"\n[overrides.p.e]\nf = { on = false, reason = \"INC-1\" }\n";
        let config = parse(&dir.path().join("overrides.toml"), src, &ConfigEnv::default()).unwrap();
        let stores = Stores::open(&config.stores, &[], store::REQUEST_TIMEOUT).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ids = [config.overrides[0].id.clone()];
        let observed = rt.block_on(stores.read::<Flag>(&ids)).unwrap();
        let plan = crate::plan::plan::<Flag>(&config.overrides, &observed);
        let path = dir.path().join("journal");
        let mut journal = Journal::open_locked(&path, &test_options()).unwrap();

        corrupt_packs(true);
        let applied = journal.write(|w| rt.block_on(apply(&plan.flags, &stores, w, &mut |_| {})));
        corrupt_packs(false);
        let e = format!("{:#}", applied.unwrap_err());
        assert!(e.contains("does not check out"), "{e}");
        assert!(e.contains("relayctl-wal.jsonl keeps the 1 change(s)"), "{e}");
        let stored = std::fs::read_to_string(dir.path().join("flags.json")).unwrap();
        assert!(
            stored.contains("\"version\": 5"),
            "the store was written: {stored}"
        );
        assert!(journal.entries().unwrap().is_empty(), "the branch did not move");
        drop(journal);

        let journal = Journal::open_locked(&path, &test_options()).unwrap();
        assert_eq!(journal.recovery().commits, 1);
        let entries = journal.entries().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].reason.as_deref(), Some("INC-1"));
        drop(journal);
        fsck(&path);
    }

    fn fsck(path: &Path) {
        let out = std::process::Command::new("git")
            .args(["-C", &path.to_string_lossy(), "fsck", "--full", "--strict"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}
