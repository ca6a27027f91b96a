//! A team's shared journal, as commands use it (SPEC "Working as a team"): fetch first and say
//! what teammates did ([`look`]), and, once a run has written, combine and push ([`publish`]),
//! resolving a push the remote refused because it moved (fetch, combine, push again; never
//! forced). A remote that cannot be reached never stops a command: it is said, with what is not
//! pushed yet, and the next run that reaches it pushes. Takes plain values and a way to speak;
//! the journal does the git work.

use crate::git_url::Remote;
use crate::journal::{Journal, Net, Pushed, Unpushed};
use anyhow::Result;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many times a push the remote refused is fetched, combined and tried again.
const PUSH_TRIES: usize = 4;

/// A journal's remote and how long one transfer may take.
pub struct Team<'a> {
    pub remote: &'a Remote,
    pub timeout: Duration,
    /// Status lines (stderr).
    pub say: &'a dyn Fn(&str),
}

impl Team<'_> {
    /// The remote and the bound of one transfer, as the journal takes them.
    pub fn net(&self) -> Net<'_> {
        Net {
            remote: self.remote,
            timeout: self.timeout,
        }
    }
}

/// Fetches the journal at `path` from the remote (making the journal from it when there is none
/// yet), then says what teammates pushed since this machine last looked and what is not pushed
/// yet. Returns whether the remote answered. Reads no lock; never fails the command.
pub fn look(path: &Path, team: &Team) -> bool {
    (team.say)(&format!(
        "Fetching the journal from {} (at most {}s)...",
        team.remote.shown,
        team.timeout.as_secs()
    ));
    let reached = match fetch(path, team) {
        Ok(reached) => reached,
        Err(e) => {
            (team.say)(&format!(
                "warning: the journal's remote {} cannot be reached ({e:#}); going on with this machine's journal, \
                 which may lack what teammates did since it last fetched",
                team.remote.shown
            ));
            false
        }
    };
    if let Ok(Some(journal)) = Journal::open_existing(path) {
        if reached {
            if let Ok(arrived) = journal.arrivals() {
                (team.say)(&arrivals(&arrived));
            }
        }
        if let Ok(unpushed) = journal.unpushed() {
            if let Some(line) = unpushed_line(&unpushed, team.remote) {
                (team.say)(&line);
            }
        }
    }
    reached
}

fn fetch(path: &Path, team: &Team) -> Result<bool> {
    match Journal::open_existing(path)? {
        Some(journal) => journal.fetch(&team.net()).map(|()| true),
        None => {
            if Journal::clone_from(path, &team.net())? {
                (team.say)(&format!(
                    "Made the journal {} from {}'s.",
                    path.display(),
                    team.remote.shown
                ));
            }
            Ok(true)
        }
    }
}

/// "3 commit(s) by bob@... since 03:10": what arrived since this machine last looked.
fn arrivals(a: &crate::journal::Arrivals) -> String {
    let since = match a.since {
        Some(t) => format!(" since {} (when this machine last looked)", clock(t)),
        None => String::new(),
    };
    if a.by_author.is_empty() {
        return format!("Teammates pushed nothing new{since}.");
    }
    let who: Vec<String> = a
        .by_author
        .iter()
        .map(|(author, n)| format!("{n} commit(s) by {author}"))
        .collect();
    format!("Teammates pushed {}{since}.", who.join(", "))
}

fn clock(t: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
    let text = humantime::format_rfc3339_seconds(at).to_string();
    let today = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    match text.get(..10) == today.get(..10) {
        true => format!("{} UTC", &text[11..16]),
        false => text,
    }
}

/// What is not pushed yet, in one line; `None` when everything is.
pub fn unpushed_line(u: &Unpushed, remote: &Remote) -> Option<String> {
    if u.commits.is_empty() && !u.notes {
        return None;
    }
    let mut parts = Vec::new();
    if !u.commits.is_empty() {
        let shown: Vec<&str> = u.commits.iter().take(8).map(String::as_str).collect();
        let more = match u.commits.len() > 8 {
            true => format!(" and {} more", u.commits.len() - 8),
            false => String::new(),
        };
        parts.push(format!(
            "{} commit(s) ({}{more})",
            u.commits.len(),
            shown.join(", ")
        ));
    }
    if u.notes {
        parts.push("sync notes".to_owned());
    }
    let never = match u.never_reached {
        true => " (it has never been reached from here)",
        false => "",
    };
    Some(format!(
        "Not pushed to {}{never} yet: {}. The next `relayctl apply` or `relayctl sync` that reaches it pushes them.",
        remote.shown,
        parts.join(" and ")
    ))
}

/// After a run wrote to the locked `journal`: combines what was fetched, and pushes the branch
/// and the notes, fetching and combining again each time the remote refuses because it moved.
/// Says what it did, and what is not pushed when the remote cannot be reached. `Err` only when
/// the journal itself cannot be combined.
pub fn publish(journal: &mut Journal, team: &Team) -> Result<()> {
    let net = team.net();
    for _ in 0..PUSH_TRIES {
        journal.combine(&team.remote.shown)?;
        let before = journal.unpushed()?;
        if before.commits.is_empty() && !before.notes {
            return Ok(());
        }
        match journal.push(&net) {
            Ok(Pushed::Done) => {
                let what = match (before.commits.len(), before.notes) {
                    (0, _) => "the sync notes".to_owned(),
                    (n, false) => format!("{n} commit(s)"),
                    (n, true) => format!("{n} commit(s) and the sync notes"),
                };
                (team.say)(&format!("Pushed {what} to {}.", team.remote.shown));
                return Ok(());
            }
            Ok(Pushed::Rejected(_)) => {
                (team.say)(&format!(
                    "{} moved since this run fetched (a teammate pushed): fetching, combining and pushing again...",
                    team.remote.shown
                ));
                if let Err(e) = journal.fetch(&net) {
                    return not_pushed(journal, team, &e);
                }
            }
            Err(e) => return not_pushed(journal, team, &e),
        }
    }
    (team.say)(&format!(
        "warning: {} kept moving during {PUSH_TRIES} tries to push; this journal's commits are safe here and \
         the next `relayctl apply` or `relayctl sync` pushes them",
        team.remote.shown
    ));
    Ok(())
}

fn not_pushed(journal: &Journal, team: &Team, e: &anyhow::Error) -> Result<()> {
    (team.say)(&format!(
        "warning: cannot push to the journal's remote ({e:#}); nothing is lost: the commits are in this journal"
    ));
    if let Some(line) = unpushed_line(&journal.unpushed()?, team.remote) {
        (team.say)(&line);
    }
    Ok(())
}
