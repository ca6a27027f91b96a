//! `relayctl sync [--dry-run] [--force] [--wait [--interval D] [--timeout D]]`: replay unsynced
//! journal commits onto LaunchDarkly.
//!
//! One pass takes the sync lock (one sync at a time sends from a journal; apply never takes it),
//! reads what is pending, exchanges with LaunchDarkly, and records the outcomes as notes. The
//! journal lock, which apply holds while it writes, is held only to read (and only if it is free
//! at that moment: otherwise the journal is read without it, as `log` does) and to record notes
//! (a few milliseconds each time), never across a request: so a slow LaunchDarkly never holds up
//! an apply, and an apply never holds up a PATCH. What makes that safe is in [`records`].
//!
//! With `--wait`, passes repeat until LaunchDarkly has answered and nothing new is pending: while
//! it cannot be reached, a single GET probes it (a pending flag, or the API's root when nothing is
//! pending yet) after each pause (2 s doubling up to `--interval`), with one status line per
//! attempt on stderr and no lock held, so `apply` is never blocked and what it adds is in the next
//! pass. A busy lock is waited for again rather than ending the run. It stops on what waiting
//! cannot fix: a refused token or a redirect (exit 1), `--timeout` (exit 1, every request and
//! wait bounded by it), Ctrl-C/SIGTERM (exit 1, between two flags); conflicts are listed at the
//! end (exit 2).

mod records;
mod render;

use super::{close_journal, ld_client, load_config, look, open_journal_with, team};
use crate::desired::Config;
use crate::exit::Exit;
use crate::flag::FlagId;
use crate::journal::{Sent, SyncLock};
use crate::launchdarkly::{ApiError, Client};
use crate::settings::{Settings, Wait};
use crate::sync::{self, Group, Options, Outcome, Summary};
use crate::ui;
use anyhow::{bail, Context, Result};
use records::{is_busy, read_pending};
use render::{pause, pending_count, render_advice, render_attempt, render_outcome, render_summary, Screen};
use std::collections::{BTreeMap, HashSet};
use std::time::Instant;
use tokio::runtime::Runtime;

/// Prints one line per flag on stdout, a summary and what to do next on stderr.
///
/// Safe to re-run at any time, including after a crash, a kill or an interruption: see
/// [`sync::sync`]. Exit 2 when conflicts, skips or failures are left.
pub fn run(settings: &Settings, rt: &Runtime, options: Options, wait: Option<Wait>) -> Result<Exit> {
    crate::interrupt::install().context("installing the Ctrl-C handler")?;
    let config = load_config(settings)?;
    look(settings, &config);
    // `--wait` keeps watching: the first apply may come after it started.
    if wait.is_none() && !config.journal.exists() {
        settings.status(format!(
            "No journal at {} yet: nothing has been applied, so there is nothing to sync.",
            config.journal.display()
        ));
        return Ok(Exit::Success);
    }
    let mut run = Run {
        settings,
        rt,
        config: &config,
        screen: Screen::new(settings.quiet),
        client: None,
        deadline: None,
    };
    match wait {
        None => run.once(options),
        Some(wait) => run.wait(options, wait),
    }
}

/// What one command run works with.
struct Run<'a> {
    settings: &'a Settings,
    rt: &'a Runtime,
    config: &'a Config,
    screen: Screen,
    /// Made when first needed, so "nothing to sync" needs no token.
    client: Option<Client>,
    /// `--wait --timeout`: when to give up. A run with `--wait` waits for busy locks until then.
    deadline: Option<Option<Instant>>,
}

/// What one pass did: each flag's group and outcome, in the order they finished.
struct Pass {
    outcomes: Vec<(Group, Outcome)>,
    summary: Summary,
}

impl Run<'_> {
    fn client(&mut self) -> Result<&Client> {
        if self.client.is_none() {
            let screen = self.screen.clone();
            let client = ld_client(self.settings, self.config)?.with_notices(move |line| screen.status(line));
            self.client = Some(client);
        }
        Ok(self.client.as_ref().expect("made above"))
    }

    /// `relayctl sync`: one pass.
    fn once(&mut self, options: Options) -> Result<Exit> {
        let Some(pass) = self.pass(options, true)? else {
            self.settings
                .status("Nothing to sync: every journal commit is already synced to LaunchDarkly.");
            return Ok(Exit::Success);
        };
        if !pass.summary.unrecorded.is_empty() {
            self.report(&pass.summary, options.dry_run);
            bail!(self.unrecorded(&pass.summary, "Run `relayctl sync` again"));
        }
        if pass.summary.interrupted {
            self.report(&pass.summary, options.dry_run);
            bail!(self.stopped("interrupted", "Run `relayctl sync` again to finish")?);
        }
        Ok(self.report(&pass.summary, options.dry_run))
    }

    /// The sync lock, and what earlier passes sent. A dry run sends nothing: it needs no lock at
    /// all. `--wait` waits for it no longer than it may.
    fn lock(&self, reader: crate::journal::Journal, dry_run: bool) -> Result<(Option<SyncLock>, Vec<Sent>)> {
        let mut lock_options = self.settings.journal_options();
        if let Some(Some(deadline)) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            lock_options.lock_wait = lock_options.lock_wait.min(left);
        }
        let sync_lock = match dry_run {
            true => None,
            false => Some(reader.lock_sync(&lock_options)?),
        };
        let sent = match &sync_lock {
            Some(lock) => lock.sent()?,
            None => reader.sent()?,
        };
        Ok((sync_lock, sent))
    }

    /// One pass: takes the sync lock, reads the unsynced commits, syncs them, records the
    /// outcomes. `None` when nothing is pending. Outcome lines go to stdout as flags finish; with
    /// `print_failures` false, failures are left to the caller (they may be retried).
    fn pass(&mut self, options: Options, print_failures: bool) -> Result<Option<Pass>> {
        let (settings, path) = (self.settings, &self.config.journal);
        let Some(reader) = crate::journal::Journal::open_existing(path)? else {
            return Ok(None);
        };
        let (sync_lock, sent) = self.lock(reader, options.dry_run)?;
        if !options.dry_run {
            self.exchange(false);
        }
        let started = Instant::now();
        let (mut groups, read) = records::read(settings, path, &self.screen)?;
        self.verbose(format!(
            "Read {read} journal commits in {} ms.",
            started.elapsed().as_millis()
        ));
        if groups.is_empty() {
            // What this pass combined (teammates' history, superseded commits noted) is pushed.
            if sync_lock.is_some() {
                self.exchange(true);
            }
            return Ok(None);
        }
        sync::attach_sent(&mut groups, &sent);
        let (rt, screen, deadline) = (self.rt, self.screen.clone(), self.deadline);
        let client = self.client()?;
        let (verb, preposition, doing) = match options.dry_run {
            true => ("Checking", "against", "checking"),
            false => ("Syncing", "to", "syncing"),
        };
        screen.status(&format!(
            "{verb} {} {preposition} {}...",
            pending_count(&groups),
            client.base_url()
        ));
        let bar = screen.show(ui::progress(settings.quiet, groups.len(), doing));
        let mut outcomes = Vec::new();
        let mut report = |g: &Group, o: &Outcome| {
            if print_failures || !matches!(o, Outcome::Failed(_) | Outcome::NotTried) {
                screen.data(&render_outcome(g, o));
            }
            bar.inc(1);
            outcomes.push((g.clone(), o.clone()));
        };
        let mut recorder = records::Recorder::new(settings, path, &screen, deadline);
        let mut record = |notes: &[_], wait: bool| recorder.record(notes, wait);
        let started = Instant::now();
        let lock = sync_lock.as_ref();
        let result = rt.block_on(sync::sync(
            client,
            &groups,
            options,
            lock,
            &mut record,
            &mut report,
        ));
        screen.clear();
        self.verbose(format!(
            "Worked {} flags in {} ms.",
            groups.len(),
            started.elapsed().as_millis()
        ));
        let summary = result?;
        self.verbose(format!("Wrote sync notes in {} ms.", summary.noting.as_millis()));
        if let Some(lock) = &sync_lock {
            records::settle(lock, &groups, &recorder.noted)?;
            self.exchange(true);
        }
        Ok(Some(Pass { outcomes, summary }))
    }

    /// With a remote (SPEC "Working as a team"): before a pass, fetches (quietly: the run said
    /// what arrived when it started) and combines what teammates pushed, notes included; after
    /// it, pushes the notes it wrote. Only when the journal lock is free right now: an apply
    /// holding it combines and pushes them itself. Never fails the pass.
    fn exchange(&self, push: bool) {
        let Some(team) = team(self.settings, self.config) else {
            return;
        };
        let options = crate::journal::Options {
            lock_wait: std::time::Duration::ZERO,
            ..self.settings.journal_options()
        };
        let Ok(mut journal) = open_journal_with(self.settings, &self.config.journal, &options) else {
            return;
        };
        let done = match push {
            true => crate::team::publish(&mut journal, &team),
            false => {
                let _ = journal.fetch(&team.net());
                journal.combine(&team.remote.shown).map(|_| ())
            }
        };
        if let Err(e) = done {
            self.screen
                .status(&format!("{} {e:#}", ui::paint(ui::WARNING, "warning:")));
        }
        close_journal(journal);
    }

    /// `relayctl sync --wait`: passes until LaunchDarkly has answered and nothing new is pending,
    /// probing and pausing while it cannot be reached (or a lock stays busy).
    fn wait(&mut self, options: Options, wait: Wait) -> Result<Exit> {
        // A timeout too long for the clock is no timeout.
        let deadline = wait.timeout.and_then(|t| Instant::now().checked_add(t));
        self.deadline = Some(deadline);
        let options = Options { deadline, ..options };
        // The latest outcome of each flag, and the commits whose outcome is final for this run.
        let mut finals: BTreeMap<FlagId, (Group, Outcome)> = BTreeMap::new();
        let mut handled: HashSet<git2::Oid> = HashSet::new();
        let mut answered = false;
        let mut failed_attempts = 0;
        loop {
            let pending = read_pending(&self.config.journal)?;
            let fresh = pending
                .iter()
                .flat_map(|g| &g.commits)
                .any(|c| !handled.contains(&c.oid));
            if answered && !fresh {
                break;
            }
            if crate::interrupt::requested() {
                return self.give_up(&finals, options, "interrupted while waiting for LaunchDarkly");
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return self.timed_out(&finals, options, wait);
            }
            let why = match self.attempt(&pending, fresh, options, &mut finals, &mut handled)? {
                Attempt::Answered => {
                    (answered, failed_attempts) = (true, 0);
                    continue;
                }
                Attempt::Interrupted(what) => return self.give_up(&finals, options, what),
                Attempt::Failed(why) => why,
            };
            failed_attempts += 1;
            let next = pause(failed_attempts, wait.interval);
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                return self.timed_out(&finals, options, wait);
            }
            self.screen
                .status(&render_attempt(failed_attempts, &why, &pending, next, left));
            if !self.screen.pause(self.rt, next.min(left.unwrap_or(next))) {
                return self.give_up(&finals, options, "interrupted while waiting for LaunchDarkly");
            }
        }
        if finals.is_empty() {
            self.settings
                .status("Nothing to sync: every journal commit is already synced to LaunchDarkly.");
            return Ok(Exit::Success);
        }
        Ok(self.report(&summary_of(&finals), options.dry_run))
    }

    /// One attempt of `--wait`: probes LaunchDarkly and, when it answers and something new is
    /// pending (`fresh`), runs a pass, keeping each flag's final outcome.
    fn attempt(
        &mut self,
        pending: &[Group],
        fresh: bool,
        options: Options,
        finals: &mut BTreeMap<FlagId, (Group, Outcome)>,
        handled: &mut HashSet<git2::Oid>,
    ) -> Result<Attempt> {
        let rt = self.rt;
        let client = self.client()?;
        client.begin(options.deadline);
        match rt.block_on(client.probe(pending.first().map(|g| &g.id))) {
            Err(ApiError::Unavailable(why)) => return Ok(Attempt::Failed(why)),
            Err(ApiError::Interrupted) => {
                return Ok(Attempt::Interrupted("interrupted while waiting for LaunchDarkly"))
            }
            Err(e) => return Err(e.into()),
            Ok(()) if !fresh => return Ok(Attempt::Answered),
            Ok(()) => {}
        }
        let pass = match self.pass(options, false) {
            Err(e) if is_busy(&e) => return Ok(Attempt::Failed(format!("{e:#}"))),
            other => other?,
        };
        let Some(pass) = pass else {
            // Synced meanwhile (another sync): nothing of what was read is left.
            handled.extend(pending.iter().flat_map(|g| &g.commits).map(|c| c.oid));
            return Ok(Attempt::Answered);
        };
        if !pass.summary.unrecorded.is_empty() {
            self.report(&pass.summary, options.dry_run);
            bail!(self.unrecorded(&pass.summary, "Run `relayctl sync --wait` again"));
        }
        let complete = pass.summary.unavailable.is_none() && !pass.summary.interrupted;
        for (g, o) in pass.outcomes {
            let retried = matches!(o, Outcome::Failed(_) | Outcome::NotTried);
            if complete && retried {
                self.screen.data(&render_outcome(&g, &o));
            }
            if complete || !retried {
                handled.extend(g.commits.iter().map(|c| c.oid));
                finals.insert(g.id.clone(), (g, o));
            }
        }
        if pass.summary.interrupted {
            return Ok(Attempt::Interrupted("interrupted"));
        }
        Ok(match pass.summary.unavailable {
            None => Attempt::Answered,
            Some(why) => Attempt::Failed(format!("LaunchDarkly stopped answering during the sync: {why}")),
        })
    }

    /// Ends a `--wait` run at its `--timeout`.
    fn timed_out(
        &mut self,
        finals: &BTreeMap<FlagId, (Group, Outcome)>,
        options: Options,
        wait: Wait,
    ) -> Result<Exit> {
        let limit = humantime::format_duration(wait.timeout.unwrap_or_default());
        let what = format!("LaunchDarkly did not answer within --timeout {limit}");
        self.give_up(finals, options, &what)
    }

    /// Ends a `--wait` run that could not finish: reports what it did, then the error `what`.
    fn give_up(
        &mut self,
        finals: &BTreeMap<FlagId, (Group, Outcome)>,
        options: Options,
        what: &str,
    ) -> Result<Exit> {
        self.screen.clear();
        if !finals.is_empty() {
            self.report(&summary_of(finals), options.dry_run);
        }
        let advice = "Run `relayctl sync --wait` again, or `relayctl sync` once LaunchDarkly is back";
        bail!(self.stopped(what, advice)?)
    }

    /// `<what>: N journal commit(s) over M flag(s) left pending, nothing half-done. <advice>`,
    /// with the journal read afresh.
    fn stopped(&self, what: &str, advice: &str) -> Result<String> {
        let pending = pending_count(&read_pending(&self.config.journal)?);
        Ok(format!(
            "{what}: {pending} left pending, nothing half-done. {advice}"
        ))
    }

    /// Why a pass ends with outcomes it could not note.
    fn unrecorded(&self, summary: &Summary, advice: &str) -> String {
        let why = match crate::interrupt::requested() {
            true => "interrupted while waiting for the journal lock".to_owned(),
            false => format!(
                "another relayctl held the journal lock {} past the wait",
                self.config.journal.display()
            ),
        };
        format!(
            "{why}, so the outcome of {} journal commit(s) is not noted yet: LaunchDarkly has what was sent. \
             {advice}: it finds LaunchDarkly in each flag's state (or recognises its own change) and sends \
             nothing twice",
            summary.unrecorded.len()
        )
    }

    /// Prints the summary and the advice; the exit code they call for.
    fn report(&self, summary: &Summary, dry_run: bool) -> Exit {
        self.settings.status(render_summary(summary, dry_run));
        ui::out::eprint(&render_advice(summary, dry_run));
        let pending =
            !summary.conflicts.is_empty() || !summary.skipped.is_empty() || !summary.failed.is_empty();
        if pending {
            Exit::Pending
        } else {
            Exit::Success
        }
    }

    fn verbose(&self, line: String) {
        if self.settings.verbose > 0 {
            self.screen.status(&line);
        }
    }
}

/// How one `--wait` attempt went.
enum Attempt {
    /// LaunchDarkly answered (and what was pending went through a pass).
    Answered,
    /// It did not (or a lock stayed busy): why, for the status line.
    Failed(String),
    /// Ctrl-C or SIGTERM: what to say.
    Interrupted(&'static str),
}

/// The summary of the latest outcome of each flag.
fn summary_of(finals: &BTreeMap<FlagId, (Group, Outcome)>) -> Summary {
    finals.values().fold(Summary::default(), |mut s, (g, o)| {
        s.add(g, o);
        s
    })
}
