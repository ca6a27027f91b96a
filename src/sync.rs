//! `relayctl sync` and `relayctl verify`: replay the journal onto LaunchDarkly once it is back,
//! and check that LaunchDarkly serves what the journal says (SPEC §2 "sync", "verify").
//!
//! sync walks the journal commits without a `synced` note, oldest first, groups them per
//! project/environment/flag, and for each flag decides from one GET: already in the target state
//! (note `synced`, send nothing), unchanged in LaunchDarkly since the outage began (PATCH the
//! final state, guarded by a JSON Patch `test` of the environment version), or changed there
//! meanwhile (note `conflict`, send nothing unless `--force`). The decision is the pure
//! [`decide`]; the API is launchdarkly.rs's business; the notes' text is written here and stored
//! by journal.rs. This module never changes a store.

use crate::desired::FlagId;
use crate::journal::{format_utc, now, Journal, Recorded};
use crate::launchdarkly::{ApiError, Change, Client, LdFallthrough, LdFlag};
use crate::settings::Settings;
use crate::Exit;
use anyhow::{bail, Result};
use futures::StreamExt;
use serde_json::Value;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::IsTerminal;

/// How many flags are worked on at once. Requests for one flag are always sequential.
const CONCURRENCY: usize = 8;
/// How many times one flag is re-read and re-decided after a concurrent change (409, failed test).
const REDECIDE: usize = 3;
/// Above this many flags, a terminal gets a progress bar.
const PROGRESS_ABOVE: usize = 5;

/// The unsynced commits of one flag, oldest first: they become one request.
#[derive(Debug, Clone)]
pub struct Group {
    pub id: FlagId,
    pub commits: Vec<Recorded>,
}

/// A variation the journal wants served, by index and (when recorded) by value.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub index: usize,
    pub value: Option<Value>,
}

/// The state a group of commits leaves the flag in: the latest value of each managed property.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub on: bool,
    pub off_variation: Option<Slot>,
    pub fallthrough: Option<Slot>,
}

impl Group {
    /// The final state: `on` of the newest commit; each variation slot from the newest commit
    /// that set it.
    pub fn target(&self) -> Target {
        let last = self.commits.last().expect("a group has commits");
        let slot = |get: fn(&Recorded) -> (Option<usize>, Option<Value>)| {
            self.commits.iter().rev().find_map(|c| {
                let (index, value) = get(c);
                index.map(|index| Slot { index, value })
            })
        };
        Target {
            on: last.on,
            off_variation: slot(|c| (c.off_variation, c.off_variation_value.clone())),
            fallthrough: slot(|c| (c.fallthrough, c.fallthrough_value.clone())),
        }
    }

    /// The short shas covered, oldest first: `abc1234, def5678`.
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

/// What to do with one flag, given what LaunchDarkly has.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// LaunchDarkly already serves the target state.
    InState,
    /// Send `change`; `forced` says which conflict `--force` overrode.
    Patch { change: Change, forced: Option<String> },
    /// Leave the flag alone: LaunchDarkly changed it during the outage (or no longer has it).
    Conflict(String),
}

/// Decides what to do for `group` given LaunchDarkly's state `ld` (a pure function).
pub fn decide(group: &Group, ld: &LdFlag, force: bool) -> Decision {
    let target = group.target();
    let resolve = |what: &str, slot: &Option<Slot>| -> Result<Option<usize>, String> {
        let Some(slot) = slot else { return Ok(None) };
        let Some(value) = &slot.value else {
            return Ok(Some(slot.index));
        };
        if ld.variations.get(slot.index) == Some(value) {
            return Ok(Some(slot.index));
        }
        let same: Vec<usize> = (0..ld.variations.len())
            .filter(|&i| &ld.variations[i] == value)
            .collect();
        match same[..] {
            [i] => Ok(Some(i)),
            _ => Err(format!(
                "{what} variation {} was {value} when applied, but LD's variations are now {}",
                slot.index,
                Value::from(ld.variations.clone())
            )),
        }
    };
    let (off, ft) = match (
        resolve("off", &target.off_variation),
        resolve("fallthrough", &target.fallthrough),
    ) {
        (Ok(off), Ok(ft)) => (off, ft),
        (Err(e), _) | (_, Err(e)) => return Decision::Conflict(e),
    };
    let off_differs = off.is_some_and(|i| ld.off_variation != Some(i));
    let ft_differs = ft.is_some_and(|i| ld.fallthrough != LdFallthrough::Variation(i));
    if ld.on == target.on && !off_differs && !ft_differs {
        return Decision::InState;
    }
    let base = group.commits[0].base_version;
    let changed = (ld.version != base).then(|| format!("LD version {}, base {base}", ld.version));
    if changed.is_some() && !force {
        return Decision::Conflict(changed.unwrap_or_default());
    }
    Decision::Patch {
        change: Change {
            comment: group.comment(),
            expect_version: ld.version,
            on: (ld.on != target.on).then_some(target.on),
            off_variation: off.filter(|_| off_differs),
            fallthrough: ft
                .filter(|_| ft_differs)
                .map(|i| (i, !matches!(ld.fallthrough, LdFallthrough::Variation(_)))),
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
        let (change, forced) = match decide(group, &ld, force) {
            Decision::InState => {
                return Ok(Outcome::Synced {
                    ld_version: ld.version,
                    patched: false,
                    forced: None,
                })
            }
            Decision::Conflict(why) => return Ok(Outcome::Conflict(why)),
            Decision::Patch { change, forced } => (change, forced),
        };
        if let Some((version, why)) = &rejected {
            if *version == ld.version {
                return Ok(Outcome::Skipped(why.clone()));
            }
        }
        if dry_run {
            return Ok(Outcome::WouldPatch {
                body: change.body(&group.id.environment),
                forced,
            });
        }
        match client.patch_flag(&group.id, &change).await {
            Ok(after) => {
                return Ok(Outcome::Synced {
                    ld_version: after.version,
                    patched: true,
                    forced,
                })
            }
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
                rejected = Some((change.expect_version, why));
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

fn outcome_of(e: ApiError) -> Result<Outcome, ApiError> {
    match e {
        ApiError::Auth { .. } | ApiError::Unavailable(_) => Err(e),
        other => Ok(Outcome::Failed(other.to_string())),
    }
}

/// The counts printed at the end of a sync.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub synced: usize,
    pub in_state: usize,
    pub would_patch: usize,
    pub conflicts: Vec<String>,
    pub skipped: Vec<String>,
    pub failed: Vec<String>,
    /// Time spent writing notes.
    pub noting: std::time::Duration,
}

/// Options of `relayctl sync`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub dry_run: bool,
    pub force: bool,
}

/// The note recorded on every commit of a group for `outcome`, if any.
fn note_for(outcome: &Outcome, now: i64) -> Option<String> {
    match outcome {
        Outcome::Synced {
            ld_version,
            patched,
            forced,
        } => {
            let mut n = format!("synced {} ld-version={ld_version}", format_utc(now));
            if !patched {
                n += " (LD already had this state)";
            }
            if let Some(f) = forced {
                n += &format!(" (forced over a conflict: {f})");
            }
            Some(n)
        }
        Outcome::Conflict(why) => Some(format!("conflict: {why}")),
        Outcome::Skipped(why) => Some(format!("skipped: {why}")),
        Outcome::WouldPatch { .. } | Outcome::Failed(_) | Outcome::NotTried => None,
    }
}

/// Replays the unsynced commits of `journal` onto LaunchDarkly, calling `report` as each flag
/// finishes (after its notes are written).
///
/// Idempotent: each flag's notes are written as soon as its request succeeds, oldest commit
/// first, so a sync killed at any point and run again skips what is noted `synced`, finds any
/// flag whose PATCH landed but was not noted already in its target state (noting it without a
/// second PATCH), and finishes the rest. `--dry-run` sends GETs only and writes no note.
/// Stops early, leaving the rest pending, when the token is refused (`Err`) or LaunchDarkly stays
/// unavailable (counted as failed).
pub async fn sync(
    journal: &mut Journal,
    client: &Client,
    groups: &[Group],
    options: Options,
    report: &mut dyn FnMut(&Group, &Outcome),
) -> Result<Summary> {
    let stop: Cell<Option<ApiError>> = Cell::new(None);
    let stopped = Cell::new(false);
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
        let (stop, stopped) = (&stop, &stopped);
        async move {
            let _one_at_a_time = lock.lock().await;
            if stopped.get() {
                return (g, Outcome::NotTried);
            }
            match work(client, g, options.force, options.dry_run).await {
                Ok(o) => (g, o),
                Err(e) => {
                    stopped.set(true);
                    let failed = Outcome::Failed(e.to_string());
                    // Keep the first token refusal: it ends the run with an error.
                    let previous = stop.take();
                    stop.set(match previous {
                        Some(p @ ApiError::Auth { .. }) => Some(p),
                        _ => Some(e),
                    });
                    (g, failed)
                }
            }
        }
    }))
    .buffer_unordered(CONCURRENCY);
    let mut summary = Summary::default();
    let mut noting = std::time::Duration::ZERO;
    while let Some(first) = results.next().await {
        // Flags that finished together share one notes commit; each note is still written as
        // soon as its flag's request is answered, before any further request is awaited.
        let mut done = vec![first];
        while let Some(Some(more)) = futures::FutureExt::now_or_never(results.next()) {
            done.push(more);
        }
        if !options.dry_run {
            let started = std::time::Instant::now();
            let time = now();
            let notes: Vec<(git2::Oid, String)> = done
                .iter()
                .filter_map(|(g, o)| note_for(o, time).map(|n| (g, n)))
                .flat_map(|(g, n)| g.commits.iter().map(move |c| (c.oid, n.clone())))
                .collect();
            journal.set_notes(&notes)?;
            noting += started.elapsed();
        }
        for (g, outcome) in done {
            let line = format!("{} (commit {})", g.id, g.shorts());
            match &outcome {
                Outcome::Synced { patched: true, .. } => summary.synced += 1,
                Outcome::Synced { patched: false, .. } => summary.in_state += 1,
                Outcome::WouldPatch { .. } => summary.would_patch += 1,
                Outcome::Conflict(why) => summary.conflicts.push(format!("{line}: {why}")),
                Outcome::Skipped(why) => summary.skipped.push(format!("{line}: {why}")),
                Outcome::Failed(why) => summary.failed.push(format!("{line}: {why}")),
                Outcome::NotTried => summary.failed.push(format!("{line}: not tried")),
            }
            report(g, &outcome);
        }
    }
    drop(results);
    summary.noting = noting;
    if let Some(e @ ApiError::Auth { .. }) = stop.take() {
        bail!(e);
    }
    Ok(summary)
}

/// The client for the configured LaunchDarkly, or why there is none. Makes no request.
pub fn client(settings: &Settings, base_url: Option<&str>) -> Result<Client> {
    let Some(token) = settings.env.get("LD_API_KEY") else {
        bail!(
            "LD_API_KEY is not set: relayctl needs a LaunchDarkly API access token (with writer rights) to talk \
             to LaunchDarkly. Set LD_API_KEY in the environment or in a .env file in the working directory, \
             then run this again. Nothing was sent"
        );
    };
    let base = settings
        .env
        .get("LD_BASE_URL")
        .or_else(|| base_url.map(str::to_owned))
        .unwrap_or_else(|| crate::launchdarkly::DEFAULT_BASE_URL.to_owned());
    Client::new(&base, &token)
}

fn progress(settings: &Settings, len: usize, what: &str) -> indicatif::ProgressBar {
    if settings.quiet || len <= PROGRESS_ABOVE || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(Some(len as u64), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} flags ({eta} left)")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// `  (forced over <conflict>)` when a change was replayed over a conflict with `--force`.
fn forced_over(forced: &Option<String>) -> String {
    forced
        .as_ref()
        .map(|f| format!("  (forced over {f})"))
        .unwrap_or_default()
}

/// `relayctl sync`: prints one line per flag on stdout, a summary and what to do next on stderr.
///
/// Holds the journal lock throughout. Safe to re-run at any time, including after a crash or a
/// kill: see [`sync`]. Exit 2 when conflicts, skips or failures are left.
pub fn sync_command(
    settings: &Settings,
    rt: &tokio::runtime::Runtime,
    config: &crate::desired::Config,
    options: Options,
) -> Result<Exit> {
    if !config.journal.exists() {
        settings.status(format!(
            "No journal at {} yet: nothing has been applied, so there is nothing to sync.",
            config.journal.display()
        ));
        return Ok(Exit::Success);
    }
    let started = std::time::Instant::now();
    let mut journal = Journal::open_locked(&config.journal, settings.lock_wait)?;
    let interrupted = journal.interrupted().len();
    if interrupted > 0 {
        eprintln!(
            "warning: an interrupted apply left {interrupted} flag write(s) not yet recorded in the journal, \
             so this sync cannot include them; run `relayctl apply` (it reads the stores and records them), \
             then sync again"
        );
    }
    let entries = journal.entries()?;
    let groups = group(&entries, |r| !r.is_synced());
    if settings.verbose > 0 {
        settings.status(format!(
            "Read {} journal commits in {} ms.",
            entries.len(),
            started.elapsed().as_millis()
        ));
    }
    if groups.is_empty() {
        settings.status("Nothing to sync: every journal commit is already synced to LaunchDarkly.");
        return Ok(Exit::Success);
    }
    let client = client(settings, config.base_url.as_deref())?;
    let commits: usize = groups.iter().map(|g| g.commits.len()).sum();
    settings.status(format!(
        "{} {commits} journal commit(s) over {} flag(s) {} {}...",
        if options.dry_run { "Checking" } else { "Syncing" },
        groups.len(),
        if options.dry_run { "against" } else { "to" },
        client.base_url()
    ));
    let bar = progress(
        settings,
        groups.len(),
        if options.dry_run { "checking" } else { "syncing" },
    );
    let out = settings.stdout;
    let mut report = |g: &Group, o: &Outcome| {
        let line = match o {
            Outcome::Synced {
                ld_version,
                patched: true,
                forced,
            } => format!(
                "synced     {}  ld-version={ld_version}  {}{}",
                g.id,
                g.shorts(),
                forced_over(forced)
            ),
            Outcome::Synced {
                ld_version,
                patched: false,
                ..
            } => format!("in-state   {}  ld-version={ld_version}  {}", g.id, g.shorts()),
            Outcome::WouldPatch { body, forced } => format!(
                "would-patch {}  {}{}  {body}",
                g.id,
                g.shorts(),
                forced_over(forced)
            ),
            Outcome::Conflict(why) => format!(
                "{} {}  {}  {why}",
                out.paint(crate::plan::Style::Warning, "conflict  "),
                g.id,
                g.shorts()
            ),
            Outcome::Skipped(why) => format!("skipped    {}  {}  {why}", g.id, g.shorts()),
            Outcome::Failed(why) => format!(
                "{} {}  {}  {why}",
                out.paint(crate::plan::Style::Error, "failed    "),
                g.id,
                g.shorts()
            ),
            Outcome::NotTried => format!("not-tried  {}  {}", g.id, g.shorts()),
        };
        bar.suspend(|| println!("{line}"));
        bar.inc(1);
    };
    let started = std::time::Instant::now();
    let result = rt.block_on(sync(&mut journal, &client, &groups, options, &mut report));
    bar.finish_and_clear();
    if settings.verbose > 0 {
        settings.status(format!(
            "Worked {} flags in {} ms.",
            groups.len(),
            started.elapsed().as_millis()
        ));
    }
    let summary = result?;
    if settings.verbose > 0 {
        settings.status(format!("Wrote sync notes in {} ms.", summary.noting.as_millis()));
    }
    journal.close()?;
    settings.status(format!(
        "{}: {} synced, {} already in state, {} conflict(s), {} skipped, {} failed{}.",
        if options.dry_run { "Dry run" } else { "Sync" },
        summary.synced,
        summary.in_state,
        summary.conflicts.len(),
        summary.skipped.len(),
        summary.failed.len(),
        if options.dry_run {
            format!(
                ", {} would be patched (nothing was sent, no note written)",
                summary.would_patch
            )
        } else {
            String::new()
        }
    ));
    let mut exit = Exit::Success;
    if !summary.conflicts.is_empty() {
        exit = Exit::Pending;
        eprintln!(
            "\nConflicts: these flags were changed in LaunchDarkly during the outage (or are gone), so relayctl sent \
             nothing for them{}:",
            if options.dry_run { "" } else { " and noted the conflict on their commits" }
        );
        for c in &summary.conflicts {
            eprintln!("  {c}");
        }
        eprintln!(
            "Review each flag in LaunchDarkly: keep LaunchDarkly's state and change it there by hand if needed, or \
             overwrite it with the journal's state with `relayctl sync --force`."
        );
    }
    if !summary.skipped.is_empty() {
        exit = Exit::Pending;
        eprintln!("\nSkipped: LaunchDarkly would not take these changes as a direct update:");
        for s in &summary.skipped {
            eprintln!("  {s}");
        }
        eprintln!(
            "Make these changes in LaunchDarkly through an approval request (or resolve the scheduled change), \
             then run `relayctl verify`."
        );
    }
    if !summary.failed.is_empty() {
        exit = Exit::Pending;
        eprintln!("\nNot synced (left pending, nothing noted):");
        for f in &summary.failed {
            eprintln!("  {f}");
        }
        eprintln!("Run `relayctl sync` again once LaunchDarkly answers: it resumes with these and sends nothing twice.");
    }
    Ok(exit)
}

/// `relayctl verify`: compares LaunchDarkly with the journal's latest state of every flag.
/// Read only (GETs, no note, no lock), so it can be re-run at any time; exit 2 on a mismatch.
pub fn verify_command(
    settings: &Settings,
    rt: &tokio::runtime::Runtime,
    config: &crate::desired::Config,
) -> Result<Exit> {
    let Some(journal) = Journal::open_existing(&config.journal)? else {
        settings.status(format!(
            "No journal at {} yet: nothing has been applied, so there is nothing to verify.",
            config.journal.display()
        ));
        return Ok(Exit::Success);
    };
    let groups = group(&journal.entries()?, |_| true);
    if groups.is_empty() {
        settings.status("The journal has no flag changes: nothing to verify.");
        return Ok(Exit::Success);
    }
    let client = client(settings, config.base_url.as_deref())?;
    let bar = progress(settings, groups.len(), "verifying");
    let checks = rt.block_on(
        futures::stream::iter(groups.iter().map(|g| {
            let client = &client;
            let bar = &bar;
            async move {
                let r = client.get_flag(&g.id).await;
                bar.inc(1);
                (g, r)
            }
        }))
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>(),
    );
    bar.finish_and_clear();
    let mut checks = checks;
    checks.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    let (mut matching, mut mismatches) = (0, 0);
    for (g, r) in checks {
        let latest = &g.commits.last().expect("a group has commits").short;
        let problems = match r {
            Ok(ld) => differences(&g.target(), &ld),
            Err(ApiError::NotFound) => vec!["not found in LD".to_owned()],
            Err(e @ ApiError::Auth { .. }) => bail!(e),
            Err(e) => vec![format!("could not be read: {e}")],
        };
        if problems.is_empty() {
            matching += 1;
            if settings.verbose > 0 {
                println!("match     {}  (journal {latest})", g.id);
            }
        } else {
            mismatches += 1;
            println!("mismatch  {}  {}  (journal {latest})", g.id, problems.join(", "));
        }
    }
    settings.status(format!(
        "Verify: {matching} flag(s) match the journal, {mismatches} mismatch(es){}",
        if mismatches > 0 {
            ". For each mismatch, check `relayctl log --pending` and run `relayctl sync`, or decide in LaunchDarkly which state is right."
        } else {
            "."
        }
    ));
    Ok(if mismatches == 0 {
        Exit::Success
    } else {
        Exit::Pending
    })
}

/// What differs between the journal's `target` and LaunchDarkly, in words.
fn differences(target: &Target, ld: &LdFlag) -> Vec<String> {
    let mut out = Vec::new();
    if ld.on != target.on {
        out.push(format!("on: LD {}, journal {}", ld.on, target.on));
    }
    let show = |i: Option<usize>| match i {
        Some(i) => match ld.variations.get(i) {
            Some(v) => format!("{i} ({v})"),
            None => i.to_string(),
        },
        None => "unset".to_owned(),
    };
    let want = |s: &Slot| match &s.value {
        Some(v) => format!("{} ({v})", s.index),
        None => s.index.to_string(),
    };
    let serves = |i: Option<usize>, s: &Slot| {
        i.is_some_and(|i| i == s.index && s.value.as_ref().is_none_or(|v| ld.variations.get(i) == Some(v)))
    };
    if let Some(s) = &target.off_variation {
        if !serves(ld.off_variation, s) {
            out.push(format!(
                "off_variation: LD {}, journal {}",
                show(ld.off_variation),
                want(s)
            ));
        }
    }
    if let Some(s) = &target.fallthrough {
        let current = match ld.fallthrough {
            LdFallthrough::Variation(i) => Some(i),
            _ => None,
        };
        if !serves(current, s) {
            let shown = match ld.fallthrough {
                LdFallthrough::Rollout => "rollout".to_owned(),
                _ => show(current),
            };
            out.push(format!("fallthrough: LD {shown}, journal {}", want(s)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn commit(short: &str, on: bool, base: u64, off: Option<(usize, Value)>, reason: &str) -> Recorded {
        Recorded {
            oid: git2::Oid::zero(),
            short: short.into(),
            time: 0,
            author: "Op <op@example.com>".into(),
            subject: format!("default/production/f: turn {}", if on { "on" } else { "off" }),
            reason: Some(reason.into()).filter(|r: &String| !r.is_empty()),
            id: FlagId {
                project: "default".into(),
                environment: "production".into(),
                flag: "f".into(),
            },
            on,
            previous_on: Some(!on),
            base_version: base,
            off_variation: off.as_ref().map(|o| o.0),
            fallthrough: None,
            off_variation_value: off.map(|o| o.1),
            fallthrough_value: None,
            stores: vec![],
            note: None,
        }
    }

    fn ld(version: u64, on: bool, off: Option<usize>) -> LdFlag {
        LdFlag {
            version,
            on,
            off_variation: off,
            fallthrough: LdFallthrough::Variation(0),
            variations: vec![json!("treatment"), json!("control")],
        }
    }

    fn group_of(commits: Vec<Recorded>) -> Group {
        Group {
            id: commits[0].id.clone(),
            commits,
        }
    }

    #[test]
    fn coalesces_to_the_final_state_with_every_sha_in_the_comment() {
        let g = group_of(vec![
            commit("aaaaaaa", false, 41, Some((1, json!("control"))), "INC-1"),
            commit("bbbbbbb", true, 42, None, "INC-2"),
        ]);
        assert_eq!(
            g.target(),
            Target {
                on: true,
                off_variation: Some(Slot {
                    index: 1,
                    value: Some(json!("control"))
                }),
                fallthrough: None
            }
        );
        assert_eq!(
            g.comment(),
            "relayctl aaaaaaa, bbbbbbb: INC-1; INC-2 (Op <op@example.com>)"
        );
        let Decision::Patch { change, forced: None } = decide(&g, &ld(41, false, Some(0)), false) else {
            panic!()
        };
        assert_eq!(change.expect_version, 41);
        assert_eq!(change.on, Some(true));
        assert_eq!(change.off_variation, Some(1));
        assert_eq!(change.fallthrough, None);
    }

    #[test]
    fn decides_in_state_conflict_and_force() {
        let g = group_of(vec![commit("aaaaaaa", false, 41, None, "")]);
        assert_eq!(g.comment(), "relayctl aaaaaaa: turn off (Op <op@example.com>)");
        assert_eq!(decide(&g, &ld(50, false, None), false), Decision::InState);
        assert_eq!(
            decide(&g, &ld(44, true, None), false),
            Decision::Conflict("LD version 44, base 41".into())
        );
        let Decision::Patch { change, forced } = decide(&g, &ld(44, true, None), true) else {
            panic!()
        };
        assert_eq!(change.expect_version, 44);
        assert_eq!(forced.as_deref(), Some("LD version 44, base 41"));
    }

    #[test]
    fn maps_variations_by_recorded_value() {
        let g = group_of(vec![commit(
            "aaaaaaa",
            false,
            41,
            Some((1, json!("control"))),
            "",
        )]);
        let mut moved = ld(41, true, Some(1));
        moved.variations = vec![json!("control"), json!("treatment")];
        let Decision::Patch { change, .. } = decide(&g, &moved, false) else {
            panic!()
        };
        assert_eq!(change.off_variation, Some(0));
        moved.variations = vec![json!("a"), json!("b")];
        assert!(matches!(decide(&g, &moved, false), Decision::Conflict(why) if why.contains("\"control\"")));
    }

    #[test]
    fn notes_read_as_the_spec_says() {
        let synced = Outcome::Synced {
            ld_version: 43,
            patched: true,
            forced: None,
        };
        assert_eq!(
            note_for(&synced, 1_795_316_645).unwrap(),
            "synced 2026-11-22T03:04:05Z ld-version=43"
        );
        assert_eq!(
            note_for(&Outcome::Conflict("LD version 45, base 41".into()), 0).unwrap(),
            "conflict: LD version 45, base 41"
        );
        assert_eq!(
            note_for(&Outcome::Skipped("approval required".into()), 0).unwrap(),
            "skipped: approval required"
        );
        assert_eq!(note_for(&Outcome::Failed("x".into()), 0), None);
    }

    #[test]
    fn differences_name_each_property() {
        let t = Target {
            on: false,
            off_variation: Some(Slot {
                index: 1,
                value: Some(json!("control")),
            }),
            fallthrough: None,
        };
        assert!(differences(&t, &ld(1, false, Some(1))).is_empty());
        assert_eq!(
            differences(&t, &ld(1, true, Some(0))),
            [
                "on: LD true, journal false",
                "off_variation: LD 0 (\"treatment\"), journal 1 (\"control\")"
            ]
        );
    }
}
