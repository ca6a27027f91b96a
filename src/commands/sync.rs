//! `relayctl sync [--dry-run] [--force]`: replay unsynced journal commits onto LaunchDarkly.

use super::{close_journal, ld_client, load_config, open_journal};
use crate::exit::Exit;
use crate::settings::Settings;
use crate::sync::{self, Group, Options, Outcome, Summary};
use crate::ui;
use anyhow::Result;
use std::fmt::Write as _;
use std::time::Instant;
use tokio::runtime::Runtime;

/// Prints one line per flag on stdout, a summary and what to do next on stderr.
///
/// Holds the journal lock throughout. Safe to re-run at any time, including after a crash or a
/// kill: see [`sync::sync`]. Exit 2 when conflicts, skips or failures are left.
pub fn run(settings: &Settings, rt: &Runtime, options: Options) -> Result<Exit> {
    let config = load_config(settings)?;
    if !config.journal.exists() {
        settings.status(format!(
            "No journal at {} yet: nothing has been applied, so there is nothing to sync.",
            config.journal.display()
        ));
        return Ok(Exit::Success);
    }
    let started = Instant::now();
    let mut journal = open_journal(settings, &config.journal)?;
    let interrupted = journal.interrupted().len();
    if interrupted > 0 {
        settings.status(format!(
            "{} an interrupted apply left {interrupted} flag write(s) not yet recorded in the journal, \
             so this sync cannot include them; run `relayctl apply` (it reads the stores and records them), \
             then sync again",
            ui::paint(ui::WARNING, "warning:")
        ));
    }
    let entries = journal.entries()?;
    let groups = sync::group(&entries, |r| !r.is_synced());
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
    let client = ld_client(settings, &config)?;
    let commits: usize = groups.iter().map(|g| g.commits.len()).sum();
    let (verb, preposition, doing) = match options.dry_run {
        true => ("Checking", "against", "checking"),
        false => ("Syncing", "to", "syncing"),
    };
    settings.status(format!(
        "{verb} {commits} journal commit(s) over {} flag(s) {preposition} {}...",
        groups.len(),
        client.base_url()
    ));
    let bar = ui::progress(settings.quiet, groups.len(), doing);
    let mut report = |g: &Group, o: &Outcome| {
        bar.suspend(|| anstream::println!("{}", render_outcome(g, o)));
        bar.inc(1);
    };
    let started = Instant::now();
    let result = rt.block_on(sync::sync(&mut journal, &client, &groups, options, &mut report));
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
    close_journal(journal);
    settings.status(render_summary(&summary, options.dry_run));
    anstream::eprint!("{}", render_advice(&summary, options.dry_run));
    let pending = !summary.conflicts.is_empty() || !summary.skipped.is_empty() || !summary.failed.is_empty();
    Ok(if pending { Exit::Pending } else { Exit::Success })
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
        "Run `relayctl sync` again once LaunchDarkly answers: it resumes with these and sends nothing twice.",
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
            noting: Default::default(),
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
}
