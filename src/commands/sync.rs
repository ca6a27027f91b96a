//! `relayctl sync [--dry-run] [--force] [--wait [--interval D] [--timeout D]]`: replay unsynced
//! journal commits onto LaunchDarkly.
//!
//! One pass locks the journal, syncs what is pending and unlocks it. With `--wait`, passes repeat
//! until nothing new is pending: while LaunchDarkly cannot be reached, a single GET probes it
//! after each pause (2 s doubling up to `--interval`), with one status line per attempt on stderr
//! and the journal unlocked, so `apply` is never blocked and what it adds is in the next pass.
//! It stops on what waiting cannot fix: a refused token or a redirect (exit 1), `--timeout`
//! (exit 1), Ctrl-C/SIGTERM (exit 1, between two flags); conflicts are listed at the end (exit 2).

use super::{close_journal, ld_client, load_config, open_journal};
use crate::desired::Config;
use crate::exit::Exit;
use crate::flag::FlagId;
use crate::journal::Journal;
use crate::launchdarkly::{ApiError, Client};
use crate::settings::{Settings, Wait};
use crate::sync::{self, Group, Options, Outcome, Summary};
use crate::ui;
use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::runtime::Runtime;

/// The first pause of `--wait` after a failed attempt; each next one doubles, up to `--interval`.
const FIRST_PAUSE: Duration = Duration::from_secs(2);

/// Prints one line per flag on stdout, a summary and what to do next on stderr.
///
/// Holds the journal lock during a pass, never while waiting. Safe to re-run at any time,
/// including after a crash, a kill or an interruption: see [`sync::sync`]. Exit 2 when
/// conflicts, skips or failures are left.
pub fn run(settings: &Settings, rt: &Runtime, options: Options, wait: Option<Wait>) -> Result<Exit> {
    crate::interrupt::install().context("installing the Ctrl-C handler")?;
    let config = load_config(settings)?;
    if !config.journal.exists() {
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
        if pass.summary.interrupted {
            self.report(&pass.summary, options.dry_run);
            bail!(self.stopped("interrupted", "Run `relayctl sync` again to finish")?);
        }
        Ok(self.report(&pass.summary, options.dry_run))
    }

    /// One pass: locks the journal, syncs every unsynced commit, notes the outcomes, unlocks.
    /// `None` when nothing is pending. Outcome lines go to stdout as flags finish; with
    /// `print_failures` false, failures are left to the caller (they may be retried).
    fn pass(&mut self, options: Options, print_failures: bool) -> Result<Option<Pass>> {
        let started = Instant::now();
        let mut journal = open_journal(self.settings, &self.config.journal)?;
        let interrupted = journal.interrupted::<crate::flag::Flag>().len();
        if interrupted > 0 {
            self.settings.status(format!(
                "{} an interrupted apply left {interrupted} flag write(s) not yet recorded in the journal, \
                 so this sync cannot include them; run `relayctl apply` (it reads the stores and records them), \
                 then sync again",
                ui::paint(ui::WARNING, "warning:")
            ));
        }
        let entries = journal.entries()?;
        let groups = sync::group(&entries, |r| !r.is_synced());
        self.verbose(format!(
            "Read {} journal commits in {} ms.",
            entries.len(),
            started.elapsed().as_millis()
        ));
        if groups.is_empty() {
            return Ok(None);
        }
        let (settings, rt, screen) = (self.settings, self.rt, self.screen.clone());
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
        let started = Instant::now();
        let result = rt.block_on(sync::sync(&mut journal, client, &groups, options, &mut report));
        screen.clear();
        self.verbose(format!(
            "Worked {} flags in {} ms.",
            groups.len(),
            started.elapsed().as_millis()
        ));
        let summary = result?;
        self.verbose(format!("Wrote sync notes in {} ms.", summary.noting.as_millis()));
        close_journal(journal);
        Ok(Some(Pass { outcomes, summary }))
    }

    /// `relayctl sync --wait`: passes until nothing new is pending, probing and pausing while
    /// LaunchDarkly cannot be reached.
    fn wait(&mut self, options: Options, wait: Wait) -> Result<Exit> {
        let deadline = wait.timeout.map(|t| Instant::now() + t);
        let options = Options { deadline, ..options };
        // The latest outcome of each flag, and the commits whose outcome is final for this run.
        let mut finals: BTreeMap<FlagId, (Group, Outcome)> = BTreeMap::new();
        let mut handled: HashSet<git2::Oid> = HashSet::new();
        let mut failed_attempts = 0;
        loop {
            let pending = read_pending(&self.config.journal)?;
            if pending
                .iter()
                .flat_map(|g| &g.commits)
                .all(|c| handled.contains(&c.oid))
            {
                break;
            }
            if crate::interrupt::requested() {
                return self.give_up(&finals, options, "interrupted while waiting for LaunchDarkly");
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let limit = humantime::format_duration(wait.timeout.unwrap_or_default());
                let what = format!("LaunchDarkly did not answer within --timeout {limit}");
                return self.give_up(&finals, options, &what);
            }
            let probe = self.rt.block_on(self.client()?.probe(&pending[0].id));
            let why = match probe {
                Err(ApiError::Unavailable(why)) => why,
                Err(ApiError::Interrupted) => {
                    return self.give_up(&finals, options, "interrupted while waiting for LaunchDarkly")
                }
                Err(e) => return Err(e.into()),
                Ok(()) => {
                    let Some(pass) = self.pass(options, false)? else {
                        // Synced meanwhile (another sync): nothing of what was read is left.
                        handled.extend(pending.iter().flat_map(|g| &g.commits).map(|c| c.oid));
                        continue;
                    };
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
                        return self.give_up(&finals, options, "interrupted");
                    }
                    match pass.summary.unavailable {
                        None => {
                            failed_attempts = 0;
                            continue;
                        }
                        Some(why) => format!("LaunchDarkly stopped answering during the sync: {why}"),
                    }
                }
            };
            failed_attempts += 1;
            let next = pause(failed_attempts, wait.interval);
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
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

    /// Prints the summary and the advice; the exit code they call for.
    fn report(&self, summary: &Summary, dry_run: bool) -> Exit {
        self.settings.status(render_summary(summary, dry_run));
        anstream::eprint!("{}", render_advice(summary, dry_run));
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

/// The unsynced commits of the journal at `path`, per flag, read without its lock.
fn read_pending(path: &Path) -> Result<Vec<Group>> {
    let Some(journal) = Journal::open_existing(path)? else {
        return Ok(Vec::new());
    };
    Ok(sync::group(&journal.entries()?, |r| !r.is_synced()))
}

/// The summary of the latest outcome of each flag.
fn summary_of(finals: &BTreeMap<FlagId, (Group, Outcome)>) -> Summary {
    finals.values().fold(Summary::default(), |mut s, (g, o)| {
        s.add(g, o);
        s
    })
}

/// `N journal commit(s) over M flag(s)`.
fn pending_count(groups: &[Group]) -> String {
    let commits: usize = groups.iter().map(|g| g.commits.len()).sum();
    format!("{commits} journal commit(s) over {} flag(s)", groups.len())
}

/// The pause after failed attempt number `attempt` (1-based): [`FIRST_PAUSE`] doubling, at most
/// `interval`.
fn pause(attempt: u32, interval: Duration) -> Duration {
    FIRST_PAUSE
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(16)))
        .min(interval)
}

/// The status line of a failed `--wait` attempt: what failed, what is pending, when the next try
/// is (or, when `left` runs out first, that it gives up then).
fn render_attempt(
    attempt: u32,
    why: &str,
    pending: &[Group],
    next: Duration,
    left: Option<Duration>,
) -> String {
    let when = match left {
        Some(left) if left <= next => format!("giving up in {} (--timeout)", ui::duration(left)),
        _ => format!(
            "next try in {} (at {})",
            ui::duration(next),
            humantime::format_rfc3339_seconds(SystemTime::now() + next)
        ),
    };
    format!(
        "attempt {attempt}: {why}; {} pending; {when}",
        pending_count(pending)
    )
}

/// stderr while sync runs: one progress bar or spinner at a time, with status lines and stdout
/// lines printed around it so that they never garble it. Clones share the bar.
#[derive(Clone)]
struct Screen {
    bar: Arc<Mutex<ProgressBar>>,
    quiet: bool,
}

impl Screen {
    fn new(quiet: bool) -> Screen {
        Screen {
            bar: Arc::new(Mutex::new(ProgressBar::hidden())),
            quiet,
        }
    }

    fn bar(&self) -> std::sync::MutexGuard<'_, ProgressBar> {
        self.bar.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Shows `bar` instead of the current one; returns it.
    fn show(&self, bar: ProgressBar) -> ProgressBar {
        std::mem::replace(&mut *self.bar(), bar.clone()).finish_and_clear();
        bar
    }

    fn clear(&self) {
        self.show(ProgressBar::hidden());
    }

    /// A status line on stderr, unless `--quiet`.
    fn status(&self, line: &str) {
        if !self.quiet {
            self.bar().suspend(|| anstream::eprintln!("{line}"));
        }
    }

    /// A line of data on stdout.
    fn data(&self, line: &str) {
        self.bar().suspend(|| anstream::println!("{line}"));
    }

    /// Pauses for `how_long` with a spinner counting down on a terminal; `false` when
    /// interrupted.
    fn pause(&self, rt: &Runtime, how_long: Duration) -> bool {
        let spinner = self.show(ui::spinner(self.quiet));
        let end = Instant::now() + how_long;
        let finished = loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break true;
            }
            spinner.set_message(format!(
                "waiting for LaunchDarkly: next try in {} (Ctrl-C to stop)",
                ui::duration(left)
            ));
            if !rt.block_on(crate::interrupt::sleep(left.min(Duration::from_secs(1)))) {
                break false;
            }
        };
        self.clear();
        finished
    }
}

/// One flag's line on stdout: what happened, the flag, the commits, and the detail.
fn render_outcome(g: &Group, o: &Outcome) -> String {
    let forced_over = |forced: &Option<String>| {
        forced
            .as_ref()
            .map(|f| format!("  (forced over {f})"))
            .unwrap_or_default()
    };
    match o {
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
            ui::paint(ui::WARNING, "conflict  "),
            g.id,
            g.shorts()
        ),
        Outcome::Skipped(why) => format!("skipped    {}  {}  {why}", g.id, g.shorts()),
        Outcome::Failed(why) => format!(
            "{} {}  {}  {why}",
            ui::paint(ui::ERROR, "failed    "),
            g.id,
            g.shorts()
        ),
        Outcome::NotTried => format!("not-tried  {}  {}", g.id, g.shorts()),
    }
}

/// The one-line count of a finished sync.
fn render_summary(summary: &Summary, dry_run: bool) -> String {
    format!(
        "{}: {} synced, {} already in state, {} conflict(s), {} skipped, {} failed{}.",
        if dry_run { "Dry run" } else { "Sync" },
        summary.synced,
        summary.in_state,
        summary.conflicts.len(),
        summary.skipped.len(),
        summary.failed.len(),
        if dry_run {
            format!(
                ", {} would be patched (nothing was sent, no note written)",
                summary.would_patch
            )
        } else {
            String::new()
        }
    )
}

/// What is left, flag by flag, and what to do about it (errors and advice: printed even with
/// `--quiet`).
fn render_advice(summary: &Summary, dry_run: bool) -> String {
    let mut out = String::new();
    let mut section = |heading: &str, lines: &[String], advice: &str| {
        if lines.is_empty() {
            return;
        }
        let _ = writeln!(out, "\n{heading}");
        for line in lines {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(out, "{advice}");
    };
    section(
        &format!(
            "Conflicts: these flags were changed in LaunchDarkly during the outage (or are gone), so relayctl sent \
             nothing for them{}:",
            if dry_run { "" } else { " and noted the conflict on their commits" }
        ),
        &summary.conflicts,
        "Review each flag in LaunchDarkly: keep LaunchDarkly's state and change it there by hand if needed, or \
         overwrite it with the journal's state with `relayctl sync --force`.",
    );
    section(
        "Skipped: LaunchDarkly would not take these changes as a direct update:",
        &summary.skipped,
        "Make these changes in LaunchDarkly through an approval request (or resolve the scheduled change), \
         then run `relayctl verify`.",
    );
    section(
        "Not synced (left pending, nothing noted):",
        &summary.failed,
        "Run `relayctl sync` again once LaunchDarkly answers (or `relayctl sync --wait`, which keeps trying): it \
         resumes with these and sends nothing twice.",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flag::{FlagId, Targeting};
    use crate::journal::Recorded;
    use serde_json::json;

    fn group(flag: &str, shorts: &[&str]) -> Group {
        let id = FlagId {
            project: "default".into(),
            environment: "production".into(),
            flag: flag.into(),
        };
        let commits = shorts
            .iter()
            .map(|s| Recorded {
                oid: git2::Oid::zero(),
                short: (*s).into(),
                time: 0,
                author: "Op <op@example.com>".into(),
                subject: format!("{id}: turn off"),
                reason: None,
                id: id.clone(),
                to: Targeting {
                    on: false,
                    off_variation: None,
                    fallthrough: None,
                },
                base_version: 41,
                note: None,
            })
            .collect();
        Group { id, commits }
    }

    #[test]
    fn each_outcome_is_one_line() {
        let lines: Vec<String> = [
            (
                group("a", &["aaaaaaa", "bbbbbbb"]),
                Outcome::Synced {
                    ld_version: 42,
                    patched: true,
                    forced: None,
                },
            ),
            (
                group("b", &["ccccccc"]),
                Outcome::Synced {
                    ld_version: 50,
                    patched: true,
                    forced: Some("LD version 44, base 41".into()),
                },
            ),
            (
                group("c", &["ddddddd"]),
                Outcome::Synced {
                    ld_version: 7,
                    patched: false,
                    forced: None,
                },
            ),
            (
                group("d", &["eeeeeee"]),
                Outcome::WouldPatch {
                    body: json!({"comment": "relayctl eeeeeee: x (Op)", "patch": []}),
                    forced: None,
                },
            ),
            (
                group("e", &["fffffff"]),
                Outcome::Conflict("LD version 45, base 41".into()),
            ),
            (
                group("f", &["1111111"]),
                Outcome::Skipped("approval required".into()),
            ),
            (
                group("g", &["2222222"]),
                Outcome::Failed("LaunchDarkly is not answering properly: HTTP 503".into()),
            ),
            (group("h", &["3333333"]), Outcome::NotTried),
        ]
        .iter()
        .map(|(g, o)| ui::plain(&render_outcome(g, o)))
        .collect();
        insta::assert_snapshot!(lines.join("\n"));
    }

    #[test]
    fn the_summary_says_what_is_left_and_what_to_do() {
        let summary = Summary {
            synced: 3,
            in_state: 1,
            would_patch: 0,
            conflicts: vec!["default/production/e (commit fffffff): LD version 45, base 41".into()],
            skipped: vec!["default/production/f (commit 1111111): approval required".into()],
            failed: vec!["default/production/h (commit 3333333): not tried".into()],
            ..Summary::default()
        };
        let text = render_summary(&summary, false) + "\n" + &render_advice(&summary, false);
        insta::assert_snapshot!(text);
        let dry = Summary {
            would_patch: 2,
            ..Summary::default()
        };
        assert_eq!(
            render_summary(&dry, true),
            "Dry run: 0 synced, 0 already in state, 0 conflict(s), 0 skipped, 0 failed, 2 would be patched \
             (nothing was sent, no note written)."
        );
        assert_eq!(render_advice(&dry, true), "");
    }

    #[test]
    fn pauses_start_short_and_double_up_to_the_interval() {
        let s = Duration::from_secs;
        let pauses: Vec<Duration> = (1..=7).map(|n| pause(n, s(30))).collect();
        assert_eq!(pauses, [s(2), s(4), s(8), s(16), s(30), s(30), s(30)]);
        assert_eq!(pause(1, Duration::from_millis(500)), Duration::from_millis(500));
        assert_eq!(pause(u32::MAX, s(3600)), s(3600));
    }

    #[test]
    fn an_attempt_says_what_failed_what_is_pending_and_when_the_next_try_is() {
        let pending = [group("a", &["aaaaaaa", "bbbbbbb"]), group("b", &["ccccccc"])];
        let why = "cannot connect to LaunchDarkly at https://ld.example (Connection refused) for GET default/production/a";
        let line = render_attempt(3, why, &pending, Duration::from_secs(8), None);
        let (line, clock) = line.rsplit_once(" (at ").unwrap();
        assert_eq!(
            line,
            "attempt 3: cannot connect to LaunchDarkly at https://ld.example (Connection refused) for GET \
             default/production/a; 3 journal commit(s) over 2 flag(s) pending; next try in 8 s"
        );
        assert!(clock.ends_with("Z)"), "{clock}");
        let last = render_attempt(
            4,
            why,
            &pending,
            Duration::from_secs(8),
            Some(Duration::from_secs(3)),
        );
        assert!(last.ends_with("pending; giving up in 3 s (--timeout)"), "{last}");
    }
}
