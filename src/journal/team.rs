//! The journal's side of a team's shared remote (SPEC "Working as a team"): fetching, pushing,
//! a first journal made as a clone of the remote's, what is not pushed yet, and what teammates
//! pushed since this machine last looked. The transfers are [`super::remote`]'s, the joining of
//! histories [`super::combine`]'s; what to say about it is the caller's.
//!
//! Fetching only moves tracking refs, so it needs no lock and read-only commands do it too;
//! [`super::Journal::walk`] reads the remote's branch and notes beside the journal's own, so
//! `log`, `verify` and `status` see what teammates pushed before it is combined. The commit this
//! machine last saw on the remote is kept in `relayctl-remote-seen` in the git directory, with the
//! time it was seen, so each fetch can say what arrived since.

use super::notes::{self, SyncNote, NOTES_REF};
use super::remote::{tracking, Net, Pushed, TRACKING_NOTES};
use super::{abbreviate, repo, Journal};
use anyhow::{Context, Result};
use git2::{Oid, Repository};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The file in the git directory naming the remote's commit this machine last saw, and when.
const SEEN: &str = "relayctl-remote-seen";

/// What teammates pushed since this machine last looked.
#[derive(Debug, Default, PartialEq)]
pub struct Arrivals {
    /// Commits per author (`Name <email>`), most first.
    pub by_author: Vec<(String, usize)>,
    /// When this machine last looked (seconds since the epoch), if it ever did.
    pub since: Option<i64>,
}

/// What of this journal the remote does not have yet.
#[derive(Debug, Default, PartialEq)]
pub struct Unpushed {
    /// Commits, newest first, abbreviated.
    pub commits: Vec<String>,
    /// Sync notes written here and not pushed.
    pub notes: bool,
    /// The remote was never reached from this journal (nothing is known to be pushed).
    pub never_reached: bool,
}

/// Adds the remote's notes (as fetched) to `notes` where this journal has none for that commit,
/// or has one that is not `synced` while the remote's is.
pub(super) fn add_remote_notes(repo: &Repository, notes: &mut HashMap<Oid, SyncNote>) {
    let Ok(remote) = notes::read_ref(repo, TRACKING_NOTES) else {
        return;
    };
    for (commit, note) in remote {
        let keep = notes
            .get(&commit)
            .is_some_and(|n| n.is_synced() || !note.is_synced());
        if !keep {
            notes.insert(commit, note);
        }
    }
}

impl Journal {
    /// Fetches the remote's branch and notes into the tracking refs (no lock needed).
    pub fn fetch(&self, net: &Net) -> Result<()> {
        net.fetch(self.repo.path())?;
        let _ = self.repo.odb().map(|o| o.refresh());
        Ok(())
    }

    /// Pushes the branch and the notes where the remote lacks them; never forced. Once pushed,
    /// the tracking refs are moved to what was pushed.
    pub fn push(&self, net: &Net) -> Result<Pushed> {
        let mut refs = Vec::new();
        for (local, remote) in [
            (self.branch.clone(), tracking(&self.branch)),
            (NOTES_REF.to_owned(), TRACKING_NOTES.to_owned()),
        ] {
            let Ok(ours) = self.repo.refname_to_id(&local) else {
                continue;
            };
            if self.repo.refname_to_id(&remote).ok() != Some(ours) {
                refs.push((local, remote, ours));
            }
        }
        if refs.is_empty() {
            return Ok(Pushed::Done);
        }
        let names: Vec<String> = refs.iter().map(|(l, _, _)| l.clone()).collect();
        let pushed = net.push(self.repo.path(), &names)?;
        if pushed == Pushed::Done {
            for (_, remote, ours) in refs {
                self.repo
                    .reference(&remote, ours, true, "relayctl: pushed")
                    .with_context(|| format!("noting what was pushed in {remote}"))?;
            }
        }
        Ok(pushed)
    }

    /// What the remote does not have yet, as far as the last fetch or push knows.
    pub fn unpushed(&self) -> Result<Unpushed> {
        let remote = self.repo.refname_to_id(&tracking(&self.branch)).ok();
        let mut walk = self.repo.revwalk()?;
        if walk.push_ref(&self.branch).is_err() {
            return Ok(Unpushed::default());
        }
        if let Some(remote) = remote {
            walk.hide(remote)?;
        }
        let odb = self.repo.odb()?;
        let mut commits = Vec::new();
        for oid in walk {
            let commit = self.repo.find_commit(oid?)?;
            let ours =
                commit.parent_count() > 0 || commit.message().is_some_and(|m| m.trim() != repo::ROOT_SUBJECT);
            if ours {
                commits.push(abbreviate(&[&odb], commit.id()));
            }
        }
        let notes = match self.repo.refname_to_id(NOTES_REF) {
            Ok(ours) => match self.repo.refname_to_id(TRACKING_NOTES) {
                Ok(theirs) => ours != theirs && !self.repo.graph_descendant_of(theirs, ours)?,
                Err(_) => true,
            },
            Err(_) => false,
        };
        Ok(Unpushed {
            commits,
            notes,
            never_reached: remote.is_none() && self.repo.refname_to_id(TRACKING_NOTES).is_err(),
        })
    }

    /// The commits that reached the remote (as just fetched) since this machine last looked,
    /// other than this journal's own; then notes the remote's tip as seen now.
    pub fn arrivals(&self) -> Result<Arrivals> {
        let path = self.repo.path().join(SEEN);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut words = text.split_whitespace();
        let seen = words.next().and_then(|w| Oid::from_str(w).ok());
        let since = words.next().and_then(|w| w.parse().ok());
        let Ok(tip) = self.repo.refname_to_id(&tracking(&self.branch)) else {
            return Ok(Arrivals {
                since,
                ..Arrivals::default()
            });
        };
        let mut walk = self.repo.revwalk()?;
        walk.push(tip)?;
        for hide in [seen, self.repo.refname_to_id(&self.branch).ok()]
            .into_iter()
            .flatten()
        {
            let _ = walk.hide(hide);
        }
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for oid in walk {
            let commit = self.repo.find_commit(oid?)?;
            if commit.parent_count() == 1 {
                *counts.entry(super::message::author(&commit)).or_default() += 1;
            }
        }
        let mut by_author: Vec<(String, usize)> = counts.into_iter().collect();
        by_author.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let _ = std::fs::write(&path, format!("{tip} {}\n", super::now()));
        Ok(Arrivals { by_author, since })
    }

    /// Makes the journal at `path`, which does not exist yet, a copy of the remote's: its branch
    /// and notes. `false` (and nothing made) when the remote holds no journal yet: the first
    /// locked run then starts one, and its push creates the remote's.
    pub fn clone_from(path: &Path, net: &Net) -> Result<bool> {
        let context = || format!("making the journal {} from {}", path.display(), net.remote.shown);
        let (tmp, repo) = repo::init_beside(path).with_context(context)?;
        net.fetch(repo.path())?;
        let Some((name, tip)) = remote_branch(&repo)? else {
            return Ok(false);
        };
        if !repo::root_of(&repo, repo.find_commit(tip)?)? {
            anyhow::bail!(
                "the remote {} holds a branch {name} that is not a relayctl journal (its first commit is not \
                 {:?}); point journal.remote at the team's journal repository, or at a new empty one",
                net.remote.shown,
                repo::ROOT_SUBJECT
            );
        }
        let branch = format!("refs/heads/{name}");
        repo.reference(&branch, tip, true, "relayctl: from the remote")?;
        repo.set_head(&branch)?;
        if let Ok(notes) = repo.refname_to_id(TRACKING_NOTES) {
            repo.reference(NOTES_REF, notes, true, "relayctl: from the remote")?;
        }
        repo::mark(&repo, &branch).with_context(context)?;
        drop(repo);
        // Fails only when another process has just put its journal there: use that one.
        let _ = std::fs::rename(tmp.path(), path);
        Ok(true)
    }
}

/// The journal branch the remote holds: its only branch, else `main` or `master`.
fn remote_branch(repo: &Repository) -> Result<Option<(String, Oid)>> {
    let mut found = Vec::new();
    for r in repo.references_glob("refs/remotes/origin/*")? {
        let r = r?;
        if let (Some(name), Some(id)) = (r.name(), r.target()) {
            found.push((name.trim_start_matches("refs/remotes/origin/").to_owned(), id));
        }
    }
    if found.len() == 1 {
        return Ok(found.pop());
    }
    Ok(["main", "master"]
        .iter()
        .find_map(|n| found.iter().find(|(name, _)| name == n).cloned()))
}
