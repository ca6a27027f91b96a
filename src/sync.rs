//! The sync engine: replay the journal onto LaunchDarkly once it is back, and check that
//! LaunchDarkly serves what the journal says (SPEC §2 "sync", "verify").
//!
//! sync takes the journal commits without a `synced` note, grouped per project/environment/flag
//! (oldest first), and for each flag decides from one GET: already in the target state (note
//! `synced`, send nothing), unchanged in LaunchDarkly by anyone but relayctl (PATCH the final
//! state, guarded by a JSON Patch `test` of the environment version), or changed there meanwhile
//! (note `conflict`, send nothing unless `--force`). The decisions are the pure functions of
//! [`decide`]; the API is launchdarkly.rs's business, the notes' text journal/notes.rs's. A
//! commit is noted `synced` only on evidence: a GET showing the target state, or a PATCH whose
//! answer (or a fresh GET after it) shows the target state at a version above the one it tested.
//!
//! It holds no journal lock: its caller read the groups, and hands it a place to record each
//! PATCH just before it is sent (the sent log) and a way to record notes, which takes the journal
//! lock for that moment only, never across a request. Notes are held in memory while flags keep
//! finishing and recorded at least every second when the lock is free; when an apply holds it,
//! they wait (in memory) for the next try, and the last try at the end waits the bounded lock
//! wait; what still cannot be recorded is handed back ([`Summary::unrecorded`]). Ctrl-C stops it
//! between two flags. This module receives a client and plain values, reports outcomes to its
//! caller, and never changes a store, reads settings or picks an exit code.

mod decide;

pub use decide::{attach_sent, decide, group, superseded, Decision, Group};

use crate::flag::FlagId;
use crate::journal::{Sent, SyncLock, SyncNote};
use crate::launchdarkly::{ApiError, Client, FlagPatch, LdFlag};
use anyhow::{bail, Result};
use decide::{differences, gap};
use futures::StreamExt;
use git2::Oid;
use serde_json::Value;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

/// How many flags are worked on at once. Requests for one flag are always sequential.
const CONCURRENCY: usize = 8;

/// How long sync waits for a flag to finish before it records the notes it holds.
const NOTES_IDLE: Duration = Duration::from_millis(100);

/// How often sync tries to record the notes it holds while flags keep finishing, or while
/// another relayctl holds the journal lock.
const NOTES_EVERY: Duration = crate::journal::NOTES_EVERY;

/// How many times one flag is re-read and re-decided after a concurrent change (409, failed test).
const REDECIDE: usize = 3;

/// How one flag ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// LaunchDarkly now has the state; `patched` is false when it already had it.
    Synced {
        ld_version: u64,
        patched: bool,
        forced: Option<String>,
    },
    /// `--dry-run`: this body would be sent.
    WouldPatch { body: Value, forced: Option<String> },
    /// Left alone, noted `conflict: <why>`.
    Conflict(String),
    /// Left alone, noted `skipped: <why>`.
    Skipped(String),
    /// Not finished, no note: a re-run tries again.
    Failed(String),
    /// Not tried because sync stopped (LaunchDarkly unavailable or the token refused).
    NotTried,
}

/// Works one flag to its outcome. Safe to repeat: a PATCH is only sent after a fresh GET shows
/// LaunchDarkly lacks the state, and it carries a version `test`, so a duplicate fails instead of
/// applying twice; and it is named in the sent log (`sending`; none for a dry run) before it
/// goes out. Returns `Err` only for errors that must stop the whole sync.
async fn work(
    client: &Client,
    group: &Group,
    force: bool,
    sending: Option<&SyncLock>,
) -> Result<Outcome, ApiError> {
    let mut rejected: Option<(u64, String)> = None;
    for _ in 0..REDECIDE {
        let ld = match client.get_flag(&group.id).await {
            Ok(ld) => ld,
            Err(ApiError::NotFound) => return Ok(Outcome::Conflict("not found in LD".into())),
            Err(e) => return outcome_of(e),
        };
        let (patch, forced) = match decide(group, &ld, force) {
            Decision::InState => {
                return Ok(Outcome::Synced {
                    ld_version: ld.version,
                    patched: false,
                    forced: None,
                })
            }
            Decision::Conflict(why) => return Ok(Outcome::Conflict(why)),
            Decision::Patch { patch, forced } => (patch, forced),
        };
        if let Some((version, why)) = &rejected {
            if *version == ld.version {
                return Ok(Outcome::Skipped(why.clone()));
            }
        }
        let Some(log) = sending else {
            return Ok(Outcome::WouldPatch {
                body: patch.body(&group.id.environment),
                forced,
            });
        };
        let sent = Sent {
            from: patch.expect_version,
            commits: group.commits.iter().map(|c| c.oid).collect(),
        };
        if let Err(e) = log.sending(&sent) {
            return Ok(Outcome::Failed(format!("{e:#}; nothing was sent")));
        }
        match client.patch_flag(&group.id, &patch).await {
            Ok(after) => return confirm(client, group, &patch, after, forced).await,
            // Someone changed the flag at the same moment: read it again and decide again.
            Err(ApiError::Conflict { .. }) => {}
            // A failed version test, or a clash with a scheduled change or approval: re-read to
            // tell them apart (the version moved, or it did not).
            Err(ApiError::Invalid { code, message }) => {
                rejected = Some((patch.expect_version, rejection(&code, &message)));
            }
            Err(ApiError::NotFound) => return Ok(Outcome::Conflict("not found in LD".into())),
            Err(ApiError::ApprovalRequired { .. }) => {
                return Ok(Outcome::Skipped("approval required".into()))
            }
            Err(e) => return outcome_of(e),
        }
    }
    Ok(match rejected {
        Some((_, why)) => Outcome::Skipped(why),
        None => Outcome::Failed(format!(
            "LD kept reporting concurrent changes after {REDECIDE} attempts"
        )),
    })
}

/// Why LaunchDarkly answered a PATCH with 400: a clash with a scheduled change or approval, or
/// another rejection (a failed version test among them).
fn rejection(code: &str, message: &str) -> String {
    let lower = message.to_lowercase();
    if lower.contains("schedul") || lower.contains("approval") {
        format!("conflicts with a pending scheduled change or approval in LD (400 {code}): {message}")
    } else {
        format!("LD rejected the change (400 {code}): {message}")
    }
}

/// Whether `ld` shows `group`'s target state at a version above `tested`.
fn shows_change(group: &Group, tested: u64, ld: &LdFlag) -> bool {
    ld.version > tested && gap(&group.target(), ld).is_ok_and(|g| g.is_empty())
}

/// The outcome of a PATCH answered with success: synced only when the answer shows the change
/// (or, if it does not, a fresh GET does). A success that changed nothing (a proxy answering 200,
/// an API that dropped the change) leaves the commits pending.
async fn confirm(
    client: &Client,
    group: &Group,
    patch: &FlagPatch,
    answer: LdFlag,
    forced: Option<String>,
) -> Result<Outcome, ApiError> {
    let synced = |ld: &LdFlag| Outcome::Synced {
        ld_version: ld.version,
        patched: true,
        forced: forced.clone(),
    };
    if shows_change(group, patch.expect_version, &answer) {
        return Ok(synced(&answer));
    }
    let ld = match client.get_flag(&group.id).await {
        Ok(ld) => ld,
        Err(e) => return outcome_of(e),
    };
    if shows_change(group, patch.expect_version, &ld) {
        return Ok(synced(&ld));
    }
    let mut what = differences(&group.target(), &ld);
    if ld.version <= patch.expect_version {
        what.insert(0, format!("version {}", ld.version));
    }
    Ok(Outcome::Failed(format!(
        "LD answered the PATCH (made against version {}) with success, but it does not show the change, nor \
         does a fresh GET ({}): not noted as synced. Check the flag in LaunchDarkly, then run `relayctl sync` \
         again",
        patch.expect_version,
        what.join(", ")
    )))
}

/// Errors that end the whole run (the rest is not tried) become `Err`; the others are this
/// flag's failure.
fn outcome_of(e: ApiError) -> Result<Outcome, ApiError> {
    match e {
        ApiError::Auth { .. }
        | ApiError::Unavailable(_)
        | ApiError::Redirect { .. }
        | ApiError::Interrupted => Err(e),
        other => Ok(Outcome::Failed(other.to_string())),
    }
}

/// The counts and lists of a finished sync.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub synced: usize,
    pub in_state: usize,
    pub would_patch: usize,
    /// `<flag> (commit <shorts>): <why>`, per flag.
    pub conflicts: Vec<String>,
    pub skipped: Vec<String>,
    pub failed: Vec<String>,
    /// Time spent writing notes.
    pub noting: std::time::Duration,
    /// Why the run stopped before trying every flag, when LaunchDarkly was unavailable (the
    /// flags not finished are in `failed`).
    pub unavailable: Option<String>,
    /// An interruption (Ctrl-C, SIGTERM) stopped the run between two flags.
    pub interrupted: bool,
    /// Notes that could not be recorded: another relayctl held the journal lock past the wait.
    pub unrecorded: Vec<(Oid, SyncNote)>,
}

impl Summary {
    /// Counts `outcome` of `g`.
    pub fn add(&mut self, g: &Group, outcome: &Outcome) {
        let line = format!("{} (commit {})", g.id, g.shorts());
        match outcome {
            Outcome::Synced { patched: true, .. } => self.synced += 1,
            Outcome::Synced { patched: false, .. } => self.in_state += 1,
            Outcome::WouldPatch { .. } => self.would_patch += 1,
            Outcome::Conflict(why) => self.conflicts.push(format!("{line}: {why}")),
            Outcome::Skipped(why) => self.skipped.push(format!("{line}: {why}")),
            Outcome::Failed(why) => self.failed.push(format!("{line}: {why}")),
            Outcome::NotTried => self.failed.push(format!("{line}: not tried")),
        }
    }
}

/// Options of `relayctl sync`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub dry_run: bool,
    pub force: bool,
    /// No wait (for a rate limit) may end after this.
    pub deadline: Option<Instant>,
}

/// The note recorded on every commit of a group for `outcome`, if any.
fn note_for(outcome: &Outcome, at: SystemTime) -> Option<SyncNote> {
    match outcome {
        Outcome::Synced {
            ld_version,
            patched,
            forced,
        } => Some(SyncNote::Synced {
            at,
            ld_version: *ld_version,
            already: !patched,
            forced: forced.clone(),
        }),
        Outcome::Conflict(why) => Some(SyncNote::Conflict(why.clone())),
        Outcome::Skipped(why) => Some(SyncNote::Skipped(why.clone())),
        Outcome::WouldPatch { .. } | Outcome::Failed(_) | Outcome::NotTried => None,
    }
}

/// Records notes for [`sync`]: `record(notes, wait)` records them under the journal lock and
/// says `false` when another relayctl holds it (at once, or with `wait` after the bounded wait).
pub type Record<'a> = dyn FnMut(&[(Oid, SyncNote)], bool) -> Result<bool> + 'a;

/// The notes a run holds in memory until the journal lock lets them be recorded.
struct Held<'r, 'a> {
    notes: Vec<(Oid, SyncNote)>,
    record: &'r mut Record<'a>,
    /// When recording was last tried.
    tried: Instant,
    /// The last try found the lock held by another relayctl.
    busy: bool,
    noting: Duration,
}

impl Held<'_, '_> {
    /// Records the notes held if the lock is free now, trying at most every [`NOTES_EVERY`]
    /// after it was found busy (or, with `force`, whatever the last try found).
    fn try_record(&mut self, force: bool) -> Result<()> {
        if self.notes.is_empty() || (!force && self.busy && self.tried.elapsed() < NOTES_EVERY) {
            return Ok(());
        }
        self.record_now(false)
    }

    fn record_now(&mut self, wait: bool) -> Result<()> {
        let started = Instant::now();
        self.busy = !(self.record)(&self.notes, wait)?;
        if !self.busy {
            self.notes.clear();
        }
        self.tried = Instant::now();
        self.noting += started.elapsed();
        Ok(())
    }
}

/// Replays `groups` (the unsynced commits of the journal, read by the caller) onto
/// LaunchDarkly, calling `report` as each flag finishes; `sending` names each PATCH in the sent
/// log before it goes out and `record` records notes (neither is used by a dry run).
///
/// Idempotent: each flag's notes are recorded within about a second of its request (sooner when
/// no other flag finishes), so a sync killed at any point and run again skips what is noted
/// `synced`, finds any flag whose PATCH landed but was not noted already in its target state
/// (noting it without a second PATCH), or recognises that PATCH as its own from the sent log,
/// and finishes the rest. `--dry-run` sends GETs only and writes no note. Stops early, leaving
/// the rest pending, when the token is refused or LaunchDarkly redirects (`Err`), when
/// LaunchDarkly stays unavailable ([`Summary::unavailable`]), or on Ctrl-C/SIGTERM
/// ([`Summary::interrupted`]): flags in flight finish, no new one starts.
pub async fn sync(
    client: &Client,
    groups: &[Group],
    options: Options,
    sending: Option<&SyncLock>,
    record: &mut Record<'_>,
    report: &mut dyn FnMut(&Group, &Outcome),
) -> Result<Summary> {
    client.begin(options.deadline);
    let stop = Stop::default();
    let sending = sending.filter(|_| !options.dry_run);
    // LD's flag is one resource across environments: never two requests for it at once.
    let mut locks: BTreeMap<(&str, &str), std::rc::Rc<tokio::sync::Mutex<()>>> = BTreeMap::new();
    let locks: Vec<_> = groups
        .iter()
        .map(|g| {
            locks
                .entry((g.id.project.as_str(), g.id.flag.as_str()))
                .or_default()
                .clone()
        })
        .collect();
    let mut results = futures::stream::iter(groups.iter().zip(locks).map(|(g, lock)| {
        let stop = &stop;
        async move {
            let _one_at_a_time = lock.lock().await;
            (g, stop.work(client, g, options.force, sending).await)
        }
    }))
    .buffer_unordered(CONCURRENCY);
    let mut summary = Summary::default();
    let mut held = Held {
        notes: Vec::new(),
        record,
        tried: Instant::now(),
        busy: false,
        noting: Duration::ZERO,
    };
    loop {
        let next = match held.notes.is_empty() {
            false => match tokio::time::timeout(NOTES_IDLE, results.next()).await {
                Ok(next) => next,
                Err(_) => {
                    held.try_record(false)?;
                    continue;
                }
            },
            true => results.next().await,
        };
        let Some(first) = next else { break };
        let mut done = vec![first];
        while let Some(Some(more)) = futures::FutureExt::now_or_never(results.next()) {
            done.push(more);
        }
        if !options.dry_run {
            let at = SystemTime::now();
            let notes = done
                .iter()
                .filter_map(|(g, o)| note_for(o, at).map(|n| (g, n)))
                .flat_map(|(g, n)| g.commits.iter().map(move |c| (c.oid, n.clone())));
            held.notes.extend(notes);
            if held.tried.elapsed() >= NOTES_EVERY {
                held.try_record(false)?;
            }
        }
        for (g, outcome) in done {
            summary.add(g, &outcome);
            report(g, &outcome);
        }
    }
    drop(results);
    if !held.notes.is_empty() {
        held.record_now(true)?;
    }
    summary.noting = held.noting;
    summary.unrecorded = held.notes;
    stop.finish(&mut summary)?;
    Ok(summary)
}

/// Whether a run goes on: once an error that ends it or an interruption is seen, no further
/// flag is started.
#[derive(Default)]
struct Stop {
    stopped: Cell<bool>,
    /// The error that ended the run; a token refusal or a redirect wins over unavailability.
    error: Cell<Option<ApiError>>,
    interrupted: Cell<bool>,
}

impl Stop {
    /// Works `g` to its outcome, unless the run has stopped ([`Outcome::NotTried`]).
    async fn work(&self, client: &Client, g: &Group, force: bool, sending: Option<&SyncLock>) -> Outcome {
        if crate::interrupt::requested() {
            self.interrupted.set(true);
        }
        if self.stopped.get() || self.interrupted.get() {
            return Outcome::NotTried;
        }
        match work(client, g, force, sending).await {
            Ok(o) => o,
            Err(ApiError::Interrupted) => {
                self.interrupted.set(true);
                Outcome::NotTried
            }
            Err(e) => {
                self.stopped.set(true);
                let failed = Outcome::Failed(e.to_string());
                let previous = self.error.take();
                self.error.set(match previous {
                    Some(p @ (ApiError::Auth { .. } | ApiError::Redirect { .. })) => Some(p),
                    _ => Some(e),
                });
                failed
            }
        }
    }

    /// Says in `summary` why the run stopped early; `Err` when it must end with an error.
    fn finish(self, summary: &mut Summary) -> Result<()> {
        match self.error.take() {
            Some(e @ (ApiError::Auth { .. } | ApiError::Redirect { .. })) => bail!(e),
            Some(ApiError::Unavailable(why)) => summary.unavailable = Some(why),
            Some(e) => summary.unavailable = Some(e.to_string()),
            None => {}
        }
        summary.interrupted = self.interrupted.get();
        Ok(())
    }
}

/// What `verify` found for one flag.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Match,
    /// What differs, property by property, in words.
    Mismatch(Vec<String>),
}

/// Compares LaunchDarkly with the journal's latest state of every flag of `groups`, a few
/// flags at a time; `on_checked` is told as each flag is read. Read only: no note, no PATCH.
/// Results are in flag order. `Err` only when the token is refused.
pub async fn verify(
    client: &Client,
    groups: &[Group],
    on_checked: &dyn Fn(),
) -> Result<Vec<(FlagId, String, Check)>, ApiError> {
    let mut checks: Vec<_> = futures::stream::iter(groups.iter().map(|g| async move {
        let r = client.get_flag(&g.id).await;
        on_checked();
        (g, r)
    }))
    .buffer_unordered(CONCURRENCY)
    .collect()
    .await;
    checks.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    let mut out = Vec::new();
    for (g, r) in checks {
        let problems = match r {
            Ok(ld) => differences(&g.target(), &ld),
            Err(ApiError::NotFound) => vec!["not found in LD".to_owned()],
            Err(e @ ApiError::Auth { .. }) => return Err(e),
            Err(e) => vec![format!("could not be read: {e}")],
        };
        let latest = g.commits.last().expect("a group has commits").short.clone();
        let check = if problems.is_empty() {
            Check::Match
        } else {
            Check::Mismatch(problems)
        };
        out.push((g.id.clone(), latest, check));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
