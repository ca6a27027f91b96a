//! `relayctl log [--pending]`: the journal, newest first, with each commit's sync status.

use super::{load_config, look};
use crate::exit::Exit;
use crate::journal::{Journal, LogEntry};
use crate::settings::Settings;
use crate::ui;
use anyhow::Result;
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

/// Prints one line per flag commit. Reads only (no lock), so it works while an apply runs.
pub fn run(settings: &Settings, pending_only: bool) -> Result<Exit> {
    let config = load_config(settings)?;
    look(settings, &config);
    let Some(journal) = Journal::open_existing(&config.journal)? else {
        settings.status(format!(
            "No journal at {} yet: nothing has been applied.",
            config.journal.display()
        ));
        return Ok(Exit::Success);
    };
    let unrecorded = journal.unrecorded();
    if unrecorded > 0 {
        settings.status(format!(
            "{} {unrecorded} change(s) of an interrupted or running apply are not in the journal yet; \
             the next `relayctl apply` records them (it reads the stores to tell what was written)",
            ui::paint(ui::WARNING, "warning:")
        ));
    }
    // Plain Redis key commits have no LaunchDarkly counterpart: never pending.
    let entries: Vec<LogEntry> = journal
        .log()?
        .into_iter()
        .filter(|e| !pending_only || matches!(e, LogEntry::Flag(r) if !r.is_synced()))
        .collect();
    if entries.is_empty() {
        settings.status(if pending_only {
            "Nothing pending: every journal commit is synced."
        } else {
            "The journal has no flag changes yet."
        });
    }
    let unpushed: Option<std::collections::HashSet<String>> = match &config.remote {
        Some(_) => Some(journal.unpushed()?.commits.into_iter().collect()),
        None => None,
    };
    ui::out::print(&render(&entries, unpushed.as_ref()))?;
    Ok(Exit::Success)
}

/// `<short>  <time>  <author>  <subject>  [<status>]`, one line per commit; a plain Redis key
/// commit's status is `local only`. With a remote (`unpushed`: the commits it lacks), each line
/// ends with `[pushed]` or `[not pushed]`.
fn render(entries: &[LogEntry], unpushed: Option<&std::collections::HashSet<String>>) -> String {
    let mut out = String::new();
    for e in entries {
        let (short, time, author, subject, status) = match e {
            LogEntry::Flag(r) => (&r.short, r.time, &r.author, &r.subject, r.status()),
            LogEntry::Key(k) => (&k.short, k.time, &k.author, &k.subject, "local only".to_owned()),
        };
        let time = UNIX_EPOCH + Duration::from_secs(time.max(0) as u64);
        let pushed = match unpushed.map(|u| u.contains(short)) {
            Some(true) => "  [not pushed]",
            Some(false) => "  [pushed]",
            None => "",
        };
        let _ = writeln!(
            out,
            "{short}  {}  {author:<24}  {subject}  [{status}]{pushed}",
            humantime::format_rfc3339_seconds(time),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Listed, SyncNote};

    fn recorded(short: &str, flag: &str, note: Option<SyncNote>) -> LogEntry {
        LogEntry::Flag(Listed {
            oid: git2::Oid::zero(),
            short: short.into(),
            time: 1_795_316_645,
            author: "Test Operator <op@example.com>".into(),
            subject: format!("default/production/{flag}: turn off"),
            note,
        })
    }

    #[test]
    fn one_line_per_commit_with_its_status() {
        let at = UNIX_EPOCH + Duration::from_secs(1_795_316_700);
        insta::assert_snapshot!(render(
            &[
                recorded("c3c3c3c", "pricing-page", None),
                recorded(
                    "b2b2b2b",
                    "search-v2",
                    Some(SyncNote::Conflict("LD version 45, base 41".into()))
                ),
                recorded(
                    "a1a1a1a",
                    "new-checkout",
                    Some(SyncNote::Synced {
                        at,
                        ld_version: 42,
                        already: false,
                        forced: None
                    })
                ),
            ],
            None
        ));
    }
}
