//! The sync engine: replay the journal onto LaunchDarkly once it is back, and check that
//! LaunchDarkly serves what the journal says (SPEC §2 "sync", "verify").
//!
//! sync walks the journal commits without a `synced` note, oldest first, groups them per
//! project/environment/flag, and for each flag decides from one GET: already in the target state
//! (note `synced`, send nothing), unchanged in LaunchDarkly since the outage began (PATCH the
//! final state, guarded by a JSON Patch `test` of the environment version), or changed there
//! meanwhile (note `conflict`, send nothing unless `--force`). The decision is the pure
//! [`decide`]; the API is launchdarkly.rs's business, the notes' text journal/notes.rs's. A
//! commit is noted `synced` only on evidence: a GET showing the target state, or a PATCH whose
//! answer (or a fresh GET after it) shows the target state at a version above the one it tested.
//! Ctrl-C stops it between two flags. This module receives a client and plain values, reports
//! outcomes to its caller, and never changes a store, reads settings or picks an exit code.

use crate::flag::{FlagId, Serve, Targeting, Variation};
use crate::journal::{Journal, Recorded, SyncNote};
use crate::launchdarkly::{ApiError, Client, FlagPatch, LdFlag};
use anyhow::{bail, Result};
use futures::StreamExt;
use serde_json::Value;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

/// How many flags are worked on at once. Requests for one flag are always sequential.
const CONCURRENCY: usize = 8;

/// How long sync waits for a flag to finish before it writes out the notes it holds.
const NOTES_IDLE: std::time::Duration = std::time::Duration::from_millis(100);

/// How many times one flag is re-read and re-decided after a concurrent change (409, failed test).
const REDECIDE: usize = 3;

/// The unsynced commits of one flag, oldest first: they become one request.
#[derive(Debug, Clone)]
pub struct Group {
    pub id: FlagId,
    pub commits: Vec<Recorded>,
}

impl Group {
    /// The final state: `on` of the newest commit; each variation slot from the newest commit
    /// that set it.
    pub fn target(&self) -> Targeting {
        let (first, rest) = self.commits.split_first().expect("a group has commits");
        rest.iter().fold(first.to.clone(), |state, c| state.then(&c.to))
    }

    /// The abbreviated ids covered, oldest first: `abc1234, def5678`.
    pub fn shorts(&self) -> String {
        self.commits
            .iter()
            .map(|c| c.short.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The LD comment: `relayctl <short-sha>[, ...]: <reason> (<author>)`.
    pub fn comment(&self) -> String {
        let mut reasons: Vec<&str> = Vec::new();
        let mut authors: Vec<&str> = Vec::new();
        for c in &self.commits {
            if let Some(r) = c.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
                if !reasons.contains(&r) {
                    reasons.push(r);
                }
            }
            if !authors.contains(&c.author.as_str()) {
                authors.push(&c.author);
            }
        }
        let reason = if reasons.is_empty() {
            let subject = &self.commits.last().expect("a group has commits").subject;
            subject
                .split_once(": ")
                .map_or(subject.as_str(), |(_, s)| s)
                .to_owned()
        } else {
            reasons.join("; ")
        };
        let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
        format!("relayctl {}: {reason} ({})", self.shorts(), authors.join(", "))
    }
}

/// Groups `entries` (newest first, as [`Journal::entries`] returns them) per flag, keeping the
/// commits `keep` accepts, oldest first; groups are ordered by their oldest commit.
pub fn group(entries: &[Recorded], keep: impl Fn(&Recorded) -> bool) -> Vec<Group> {
    let mut order: Vec<FlagId> = Vec::new();
    let mut by_flag: BTreeMap<FlagId, Vec<Recorded>> = BTreeMap::new();
    for r in entries.iter().rev().filter(|r| keep(r)) {
        by_flag
            .entry(r.id.clone())
            .or_insert_with(|| {
                order.push(r.id.clone());
                Vec::new()
            })
            .push(r.clone());
    }
    order
        .into_iter()
        .map(|id| {
            let commits = by_flag.remove(&id).unwrap_or_default();
            Group { id, commits }
        })
        .collect()
}

/// What LaunchDarkly must change to serve a target state: the managed properties that differ,
/// each variation located among LaunchDarkly's current variations.
#[derive(Debug, Default, PartialEq)]
struct Gap {
    on: Option<bool>,
    off_variation: Option<Variation>,
    fallthrough: Option<Variation>,
}

impl Gap {
    fn is_empty(&self) -> bool {
        *self == Gap::default()
    }
}

/// The slot `want` sets, located in `ld`'s variations; `None` when LaunchDarkly already serves it.
fn slot_gap(what: &str, want: &Option<Serve>, has: &Serve, ld: &LdFlag) -> Result<Option<Variation>, String> {
    let Some(v) = want.as_ref().and_then(Serve::variation) else {
        return Ok(None);
    };
    let located = v.locate(&ld.variations).map_err(|_| {
        format!(
            "{what} variation {} was {} when applied, but LD's variations are now {}",
            v.index,
            v.value,
            Value::from(ld.variations.clone())
        )
    })?;
    Ok((has.variation().map(|h| h.index) != Some(located.index)).then_some(located))
}

/// How `ld` differs from `target`, or why the journal's variations cannot be found in it.
fn gap(target: &Targeting, ld: &LdFlag) -> Result<Gap, String> {
    Ok(Gap {
        on: (ld.on != target.on).then_some(target.on),
        off_variation: slot_gap("off", &target.off_variation, &ld.off_variation, ld)?,
        fallthrough: slot_gap("fallthrough", &target.fallthrough, &ld.fallthrough, ld)?,
    })
}

/// What to do with one flag, given what LaunchDarkly has.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// LaunchDarkly already serves the target state.
    InState,
    /// Send `patch`; `forced` says which conflict `--force` overrode.
    Patch {
        patch: FlagPatch,
        forced: Option<String>,
    },
    /// Leave the flag alone: LaunchDarkly changed it during the outage (or no longer has it).
    Conflict(String),
}

/// Decides what to do for `group` given LaunchDarkly's state `ld` (a pure function).
pub fn decide(group: &Group, ld: &LdFlag, force: bool) -> Decision {
    let gap = match gap(&group.target(), ld) {
        Ok(gap) if gap.is_empty() => return Decision::InState,
        Ok(gap) => gap,
        Err(why) => return Decision::Conflict(why),
    };
    let base = group.commits[0].base_version;
    let changed = (ld.version != base).then(|| format!("LD version {}, base {base}", ld.version));
    if changed.is_some() && !force {
        return Decision::Conflict(changed.unwrap_or_default());
    }
    Decision::Patch {
        patch: FlagPatch {
            comment: group.comment(),
            expect_version: ld.version,
            on: gap.on,
            off_variation: gap.off_variation.map(|v| v.index),
            fallthrough: gap.fallthrough.map(|v| v.index),
            replace_fallthrough_rule: !matches!(ld.fallthrough, Serve::Variation(_)),
        },
        forced: changed,
    }
}

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
/// applying twice. Returns `Err` only for errors that must stop the whole sync.
async fn work(client: &Client, group: &Group, force: bool, dry_run: bool) -> Result<Outcome, ApiError> {
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
        if dry_run {
            return Ok(Outcome::WouldPatch {
                body: patch.body(&group.id.environment),
                forced,
            });
        }
        match client.patch_flag(&group.id, &patch).await {
            Ok(after) => return confirm(client, group, &patch, after, forced).await,
            // Someone changed the flag at the same moment: read it again and decide again.
            Err(ApiError::Conflict { .. }) => {}
            // A failed version test, or a clash with a scheduled change or approval: re-read to
            // tell them apart (the version moved, or it did not).
            Err(ApiError::Invalid { code, message }) => {
                let lower = message.to_lowercase();
                let why = if lower.contains("schedul") || lower.contains("approval") {
                    format!(
                        "conflicts with a pending scheduled change or approval in LD (400 {code}): {message}"
                    )
                } else {
                    format!("LD rejected the change (400 {code}): {message}")
                };
                rejected = Some((patch.expect_version, why));
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

/// Replays the unsynced commits of `journal` onto LaunchDarkly, calling `report` as each flag
/// finishes (after its notes are set).
///
/// Idempotent: each flag's notes are set as soon as its request succeeds, oldest commit first,
/// and written out within a second (at once when the sync waits), so a sync killed at any point
/// and run again skips what is noted `synced`, finds any flag whose PATCH landed but was not
/// noted already in its target state (noting it without a second PATCH), and finishes the rest. `--dry-run` sends GETs only and writes no note.
/// Stops early, leaving the rest pending, when the token is refused or LaunchDarkly redirects
/// (`Err`), when LaunchDarkly stays unavailable ([`Summary::unavailable`]), or on Ctrl-C/SIGTERM
/// ([`Summary::interrupted`]): flags in flight finish, no new one starts.
pub async fn sync(
    journal: &mut Journal,
    client: &Client,
    groups: &[Group],
    options: Options,
    report: &mut dyn FnMut(&Group, &Outcome),
) -> Result<Summary> {
    client.begin(options.deadline);
    let stop = Stop::default();
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
            (g, stop.work(client, g, options).await)
        }
    }))
    .buffer_unordered(CONCURRENCY);
    let mut summary = Summary::default();
    loop {
        // Notes are held in memory while flags keep finishing, and written out (one notes commit,
        // one packfile) at least every second and whenever no flag finishes for NOTES_IDLE.
        let next = match journal.notes_held() {
            true => match tokio::time::timeout(NOTES_IDLE, results.next()).await {
                Ok(next) => next,
                Err(_) => {
                    journal.write_notes()?;
                    continue;
                }
            },
            false => results.next().await,
        };
        let Some(first) = next else { break };
        let mut done = vec![first];
        while let Some(Some(more)) = futures::FutureExt::now_or_never(results.next()) {
            done.push(more);
        }
        if !options.dry_run {
            let started = std::time::Instant::now();
            let at = SystemTime::now();
            let notes: Vec<(git2::Oid, SyncNote)> = done
                .iter()
                .filter_map(|(g, o)| note_for(o, at).map(|n| (g, n)))
                .flat_map(|(g, n)| g.commits.iter().map(move |c| (c.oid, n.clone())))
                .collect();
            journal.set_notes(&notes)?;
            summary.noting += started.elapsed();
        }
        for (g, outcome) in done {
            summary.add(g, &outcome);
            report(g, &outcome);
        }
    }
    drop(results);
    let started = std::time::Instant::now();
    journal.write_notes()?;
    summary.noting += started.elapsed();
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
    async fn work(&self, client: &Client, g: &Group, options: Options) -> Outcome {
        if crate::interrupt::requested() {
            self.interrupted.set(true);
        }
        if self.stopped.get() || self.interrupted.get() {
            return Outcome::NotTried;
        }
        match work(client, g, options.force, options.dry_run).await {
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

/// What differs between the journal's `target` and LaunchDarkly, in words.
fn differences(target: &Targeting, ld: &LdFlag) -> Vec<String> {
    let mut out = Vec::new();
    if ld.on != target.on {
        out.push(format!("on: LD {}, journal {}", ld.on, target.on));
    }
    let show = |s: &Serve| match s {
        Serve::Variation(v) => format!("{} ({})", v.index, v.value),
        other => other.to_string(),
    };
    for (name, want, has) in [
        ("off_variation", &target.off_variation, &ld.off_variation),
        ("fallthrough", &target.fallthrough, &ld.fallthrough),
    ] {
        let Some(want) = want.as_ref().and_then(Serve::variation) else {
            continue;
        };
        let located = want.locate(&ld.variations).ok();
        let serves = |v: &Variation| has.variation().is_some_and(|h| h.index == v.index);
        if !located.as_ref().is_some_and(serves) {
            let index = located.map_or(want.index, |v| v.index);
            out.push(format!(
                "{name}: LD {}, journal {index} ({})",
                show(has),
                want.value
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
