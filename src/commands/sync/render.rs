//! What `relayctl sync` shows: one line per flag on stdout, the summary and what to do next on
//! stderr, the status line of each `--wait` attempt, and the progress bar or spinner on a
//! terminal (drawn so that no other line garbles it). Pure functions of the outcomes, except
//! [`Screen`], which owns the terminal's stderr while sync runs.

use crate::sync::{Group, Outcome, Summary};
use crate::ui;
use indicatif::ProgressBar;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::runtime::Runtime;

/// The first pause of `--wait` after a failed attempt; each next one doubles, up to `--interval`.
const FIRST_PAUSE: Duration = Duration::from_secs(2);

/// `N journal commit(s) over M flag(s)`.
pub(super) fn pending_count(groups: &[Group]) -> String {
    let commits: usize = groups.iter().map(|g| g.commits.len()).sum();
    format!("{commits} journal commit(s) over {} flag(s)", groups.len())
}

/// What an attempt line says is pending: the count, or that nothing is yet.
fn pending_now(groups: &[Group]) -> String {
    match groups.is_empty() {
        true => "nothing pending yet (watching the journal for applies)".to_owned(),
        false => format!("{} pending", pending_count(groups)),
    }
}

/// The pause after failed attempt number `attempt` (1-based): [`FIRST_PAUSE`] doubling, at most
/// `interval`.
pub(super) fn pause(attempt: u32, interval: Duration) -> Duration {
    FIRST_PAUSE
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(16)))
        .min(interval)
}

/// The status line of a failed `--wait` attempt: what failed, what is pending, when the next try
/// is (or, when `left` runs out first, that it gives up then).
pub(super) fn render_attempt(
    attempt: u32,
    why: &str,
    pending: &[Group],
    next: Duration,
    left: Option<Duration>,
) -> String {
    let when = match left {
        Some(left) if left <= next => format!("giving up in {} (--timeout)", ui::duration(left)),
        _ => match SystemTime::now().checked_add(next) {
            Some(at) => format!(
                "next try in {} (at {})",
                ui::duration(next),
                humantime::format_rfc3339_seconds(at)
            ),
            None => format!("next try in {}", ui::duration(next)),
        },
    };
    format!("attempt {attempt}: {why}; {}; {when}", pending_now(pending))
}

/// stderr while sync runs: one progress bar or spinner at a time, with status lines and stdout
/// lines printed around it so that they never garble it. Clones share the bar.
#[derive(Clone)]
pub(super) struct Screen {
    bar: Arc<Mutex<ProgressBar>>,
    quiet: bool,
}

impl Screen {
    pub(super) fn new(quiet: bool) -> Screen {
        Screen {
            bar: Arc::new(Mutex::new(ProgressBar::hidden())),
            quiet,
        }
    }

    fn bar(&self) -> std::sync::MutexGuard<'_, ProgressBar> {
        self.bar.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Shows `bar` instead of the current one; returns it.
    pub(super) fn show(&self, bar: ProgressBar) -> ProgressBar {
        std::mem::replace(&mut *self.bar(), bar.clone()).finish_and_clear();
        bar
    }

    pub(super) fn clear(&self) {
        self.show(ProgressBar::hidden());
    }

    /// A status line on stderr, unless `--quiet`.
    pub(super) fn status(&self, line: &str) {
        if !self.quiet {
            self.bar().suspend(|| ui::out::eprintln(line));
        }
    }

    /// A line of data on stdout, shown at once. A stdout that fails fails the run at its end
    /// (`ui::out::finish`): sync goes on, since what it sends must be noted.
    pub(super) fn data(&self, line: &str) {
        self.bar()
            .suspend(|| ui::out::println(line).and_then(|()| ui::out::flush()))
            .ok();
    }

    /// Pauses for `how_long` with a spinner counting down on a terminal; `false` when
    /// interrupted.
    pub(super) fn pause(&self, rt: &Runtime, how_long: Duration) -> bool {
        let spinner = self.show(ui::spinner(self.quiet));
        let started = Instant::now();
        let finished = loop {
            let left = how_long.saturating_sub(started.elapsed());
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
pub(super) fn render_outcome(g: &Group, o: &Outcome) -> String {
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
pub(super) fn render_summary(summary: &Summary, dry_run: bool) -> String {
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
pub(super) fn render_advice(summary: &Summary, dry_run: bool) -> String {
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
        Group {
            id,
            commits,
            known: Default::default(),
        }
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
