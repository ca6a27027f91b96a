//! `relayctl verify`: compare LaunchDarkly with the journal's latest state per flag.

use super::{ld_client, load_config};
use crate::exit::Exit;
use crate::flag::FlagId;
use crate::journal::Journal;
use crate::settings::Settings;
use crate::sync::{self, Check};
use anyhow::Result;
use std::fmt::Write as _;
use tokio::runtime::Runtime;

/// Prints the mismatches (every flag with `-v`). Read only (GETs, no note, no lock), so it can
/// be re-run at any time; exit 2 on a mismatch.
pub fn run(settings: &Settings, rt: &Runtime) -> Result<Exit> {
    let config = load_config(settings)?;
    let Some(journal) = Journal::open_existing(&config.journal)? else {
        settings.status(format!(
            "No journal at {} yet: nothing has been applied, so there is nothing to verify.",
            config.journal.display()
        ));
        return Ok(Exit::Success);
    };
    let groups = sync::group(&journal.entries()?, |_| true);
    if groups.is_empty() {
        settings.status("The journal has no flag changes: nothing to verify.");
        return Ok(Exit::Success);
    }
    let client = ld_client(settings, &config)?;
    let bar = crate::ui::progress(settings.quiet, groups.len(), "verifying");
    let checks = rt.block_on(sync::verify(&client, &groups, &|| bar.inc(1)));
    bar.finish_and_clear();
    let checks = checks?;
    crate::ui::out::print(&render(&checks, settings.verbose > 0))?;
    let mismatches = checks
        .iter()
        .filter(|(_, _, c)| matches!(c, Check::Mismatch(_)))
        .count();
    settings.status(format!(
        "Verify: {} flag(s) match the journal, {mismatches} mismatch(es){}",
        checks.len() - mismatches,
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

/// A line per mismatch (and per match when `all`), naming the journal's latest commit.
fn render(checks: &[(FlagId, String, Check)], all: bool) -> String {
    let mut out = String::new();
    for (id, latest, check) in checks {
        match check {
            Check::Match if all => {
                let _ = writeln!(out, "match     {id}  (journal {latest})");
            }
            Check::Match => {}
            Check::Mismatch(problems) => {
                let _ = writeln!(out, "mismatch  {id}  {}  (journal {latest})", problems.join(", "));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatches_name_each_property_and_the_latest_commit() {
        let id = |flag: &str| FlagId {
            project: "default".into(),
            environment: "production".into(),
            flag: flag.into(),
        };
        let checks = vec![
            (
                id("a"),
                "aaaaaaa".to_owned(),
                Check::Mismatch(vec![
                    "on: LD true, journal false".into(),
                    "off_variation: LD 1 (\"control\"), journal 0 (\"treatment\")".into(),
                ]),
            ),
            (id("b"), "bbbbbbb".to_owned(), Check::Match),
            (
                id("c"),
                "ccccccc".to_owned(),
                Check::Mismatch(vec!["not found in LD".into()]),
            ),
        ];
        insta::assert_snapshot!(render(&checks, true));
        assert!(!render(&checks, false).contains("match     "));
    }
}
