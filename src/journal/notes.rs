//! Sync status: git notes under [`NOTES_REF`], one per journal commit, so marking a commit
//! synced never rewrites history. The only file that knows the notes' text ([`SyncNote`]).

use super::pack::{self, ToPack};
use anyhow::{Context, Result};
use git2::{Oid, Repository, Signature};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

/// Where sync status notes live.
pub const NOTES_REF: &str = "refs/notes/relayctl-sync";

/// What sync concluded for a journal commit (SPEC §2 "The journal").
#[derive(Debug, Clone, PartialEq)]
pub enum SyncNote {
    /// LaunchDarkly has the commit's state: `synced <time> ld-version=N`.
    Synced {
        at: SystemTime,
        ld_version: u64,
        /// LaunchDarkly already had the state, so nothing was sent.
        already: bool,
        /// The conflict `--force` replayed over.
        forced: Option<String>,
    },
    /// LaunchDarkly was changed meanwhile; nothing was sent: `conflict: <why>`.
    Conflict(String),
    /// LaunchDarkly would not take the change directly: `skipped: <why>`.
    Skipped(String),
    /// A note relayctl did not write (someone's `git notes add`); it counts as pending.
    Other(String),
}

const SYNCED: &str = "synced ";
const LD_VERSION: &str = " ld-version=";
const ALREADY: &str = " (LD already had this state)";
const FORCED: &str = " (forced over a conflict: ";
const CONFLICT: &str = "conflict: ";
const SKIPPED: &str = "skipped: ";

impl SyncNote {
    /// Whether sync is done with the commit.
    pub fn is_synced(&self) -> bool {
        matches!(self, SyncNote::Synced { .. })
    }

    /// The LaunchDarkly version a `synced` note records.
    pub fn ld_version(&self) -> Option<u64> {
        match self {
            SyncNote::Synced { ld_version, .. } => Some(*ld_version),
            _ => None,
        }
    }
}

impl super::Journal {
    /// Records `notes` now (the journal must be locked), reading each commit's note afresh
    /// first: a commit that another sync noted `synced` since this one read the journal keeps
    /// that note. Returns those commits with the note they keep.
    pub fn record_notes(&mut self, notes: &[(Oid, SyncNote)]) -> Result<Vec<(Oid, SyncNote)>> {
        let mut kept = Vec::new();
        let mut fresh = Vec::new();
        for (oid, note) in notes {
            let current = match self.repo.find_note(Some(NOTES_REF), *oid) {
                Ok(n) => n
                    .message()
                    .map(|m| m.parse::<SyncNote>().unwrap_or_else(|e| match e {})),
                Err(_) => None,
            };
            match current {
                Some(c) if c.is_synced() => kept.push((*oid, c)),
                _ => fresh.push((*oid, note.clone())),
            }
        }
        self.set_notes(&fresh)?;
        self.write_notes()?;
        Ok(kept)
    }
}

impl fmt::Display for SyncNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncNote::Synced {
                at,
                ld_version,
                already,
                forced,
            } => {
                let at = humantime::format_rfc3339_seconds(*at);
                write!(f, "{SYNCED}{at}{LD_VERSION}{ld_version}")?;
                if *already {
                    f.write_str(ALREADY)?;
                }
                if let Some(why) = forced {
                    write!(f, "{FORCED}{why})")?;
                }
                Ok(())
            }
            SyncNote::Conflict(why) => write!(f, "{CONFLICT}{why}"),
            SyncNote::Skipped(why) => write!(f, "{SKIPPED}{why}"),
            SyncNote::Other(text) => f.write_str(text),
        }
    }
}

impl FromStr for SyncNote {
    type Err = std::convert::Infallible;

    /// Reads a note back; text relayctl did not write becomes [`SyncNote::Other`].
    fn from_str(text: &str) -> Result<SyncNote, Self::Err> {
        let text = text.trim();
        let synced = || -> Option<SyncNote> {
            let rest = text.strip_prefix(SYNCED)?;
            let (at, rest) = rest.split_once(LD_VERSION)?;
            let at = humantime::parse_rfc3339(at).ok()?;
            let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            let ld_version = rest[..digits].parse().ok()?;
            let mut rest = &rest[digits..];
            let already = rest.starts_with(ALREADY);
            if already {
                rest = &rest[ALREADY.len()..];
            }
            let forced = match rest {
                "" => None,
                r => Some(r.strip_prefix(FORCED)?.strip_suffix(')')?.to_owned()),
            };
            Some(SyncNote::Synced {
                at,
                ld_version,
                already,
                forced,
            })
        };
        Ok(synced()
            .or_else(|| {
                text.strip_prefix(CONFLICT)
                    .map(|w| SyncNote::Conflict(w.to_owned()))
            })
            .or_else(|| {
                text.strip_prefix(SKIPPED)
                    .map(|w| SyncNote::Skipped(w.to_owned()))
            })
            .unwrap_or_else(|| SyncNote::Other(text.to_owned())))
    }
}

/// Every sync note, by the commit it annotates: one pass over the notes tree instead of a lookup
/// per commit, so reading a journal of thousands of commits stays fast.
pub(super) fn read_all(repo: &Repository) -> Result<HashMap<Oid, SyncNote>> {
    read_ref(repo, NOTES_REF)
}

/// Every note under the notes ref `name` (this journal's, or the remote's as fetched).
pub(super) fn read_ref(repo: &Repository, name: &str) -> Result<HashMap<Oid, SyncNote>> {
    let mut out = HashMap::new();
    let Ok(iter) = repo.notes(Some(name)) else {
        return Ok(out);
    };
    for item in iter {
        let (note, annotated) = item.context("reading the journal's sync notes")?;
        let blob = repo
            .find_blob(note)
            .with_context(|| format!("reading the sync note of commit {annotated}"))?;
        let text = String::from_utf8_lossy(blob.content());
        out.insert(annotated, text.parse().unwrap_or_else(|e| match e {}));
    }
    Ok(out)
}

/// How many notes a level of the notes tree holds before it fans out into `ab/` folders, as
/// git's own notes do at scale (git reads any fan-out, so `git notes show` finds every note).
const FAN_OUT_AT: usize = 256;

/// Sets (replacing) the notes of several commits in one notes commit, written as one packfile
/// (built in memory, as the journal's commits are), rewriting only the notes tree's folders the
/// notes land in. Returns the new notes commit, for the caller to move [`NOTES_REF`] to, and the
/// packfile that holds it.
pub(super) fn write_all(
    repo: &Repository,
    sig: &Signature,
    notes: &[(Oid, SyncNote)],
) -> Result<(Oid, std::path::PathBuf)> {
    let parent = match repo.find_reference(NOTES_REF) {
        Ok(r) => Some(
            r.peel_to_commit()
                .context("reading the sync notes' history")?
                .id(),
        ),
        Err(_) => None,
    };
    write_on(
        repo,
        sig,
        parent.into_iter().collect(),
        notes,
        "Notes added by relayctl sync",
    )
}

/// One notes commit joining this journal's notes (`ours`, whose tree it starts from) and the
/// remote's (`theirs`), with `notes` (the remote's that win) set: see [`super::combine`].
pub(super) fn write_merge(
    repo: &Repository,
    sig: &Signature,
    ours: Oid,
    theirs: Oid,
    notes: &[(Oid, SyncNote)],
) -> Result<(Oid, std::path::PathBuf)> {
    let message = "Combine the sync notes with the remote's";
    write_on(repo, sig, vec![ours, theirs], notes, message)
}

/// A notes commit with `parents` (the tree of the first, with `notes` set), in one packfile.
fn write_on(
    repo: &Repository,
    sig: &Signature,
    parents: Vec<Oid>,
    notes: &[(Oid, SyncNote)],
    message: &str,
) -> Result<(Oid, std::path::PathBuf)> {
    // A handle of its own, so that everything written goes to the in-memory backend.
    let repo = Repository::open(repo.path())?;
    let odb = repo.odb()?;
    let mempack = odb.add_new_mempack_backend(1000)?;
    let parents = parents
        .into_iter()
        .map(|p| repo.find_commit(p))
        .collect::<Result<Vec<_>, _>>()
        .context("reading the sync notes' history")?;
    let tree = parents.first().map(git2::Commit::tree).transpose()?;
    let mut placed = Vec::new();
    let mut objects = Vec::new();
    for (oid, note) in notes {
        // LaunchDarkly's error text can be in a note: `git notes show` must not play it raw.
        let text: Vec<_> = note
            .to_string()
            .lines()
            .map(|l| crate::escape::printable(l).into_owned())
            .collect();
        let blob = repo.blob(text.join("\n").as_bytes())?;
        placed.push((oid.to_string(), blob));
        objects.push(blob);
    }
    let tree = put(&repo, tree.as_ref(), 0, placed, &mut objects)?;
    let parents: Vec<&git2::Commit> = parents.iter().collect();
    let commit = repo
        .commit(None, sig, sig, message, &repo.find_tree(tree)?, &parents)
        .with_context(|| format!("writing {} sync notes", notes.len()))?;
    objects.push(commit);
    let objects: Vec<_> = objects.into_iter().map(|id| ToPack { id, base: None }).collect();
    let pack = pack::store(&repo, &[&odb], &objects)?;
    mempack.reset()?;
    Ok((commit, pack))
}

/// Returns the notes (sub)tree `tree`, whose names continue ids after their first `2 * depth`
/// hex digits, with each `(id, blob)` of `notes` set: replaced where the id's note already is,
/// else in the `ab/` folder of a level that is fanned out, else at this level, which fans out
/// once it holds more than [`FAN_OUT_AT`].
/// Adds the trees it writes to `objects`.
fn put(
    repo: &Repository,
    tree: Option<&git2::Tree>,
    depth: usize,
    notes: Vec<(String, Oid)>,
    objects: &mut Vec<Oid>,
) -> Result<Oid> {
    let mut tb = repo.treebuilder(tree)?;
    let fanned_out = tree.is_some_and(|t| t.iter().any(|e| e.kind() == Some(git2::ObjectType::Tree)));
    let mut deeper: std::collections::BTreeMap<String, Vec<(String, Oid)>> = Default::default();
    for (id, blob) in notes {
        let rest = &id[2 * depth..];
        if tree.is_some_and(|t| t.get_name(rest).is_some()) || !fanned_out {
            tb.insert(rest, blob, 0o100644)?;
        } else {
            deeper.entry(rest[..2].to_owned()).or_default().push((id, blob));
        }
    }
    for (name, notes) in deeper {
        let sub = match tree.and_then(|t| t.get_name(&name)) {
            Some(e) => Some(repo.find_tree(e.id())?),
            None => None,
        };
        let sub = put(repo, sub.as_ref(), depth + 1, notes, objects)?;
        tb.insert(name, sub, 0o040000)?;
    }
    let written = tb.write()?;
    if fanned_out || tb.len() <= FAN_OUT_AT {
        objects.push(written);
        return Ok(written);
    }
    fan_out(repo, &repo.find_tree(written)?, objects)
}

/// The flat notes (sub)tree `tree` moved into `ab/` folders.
fn fan_out(repo: &Repository, tree: &git2::Tree, objects: &mut Vec<Oid>) -> Result<Oid> {
    let mut folders: std::collections::BTreeMap<String, git2::TreeBuilder> = Default::default();
    let mut top = repo.treebuilder(None)?;
    for e in tree.iter() {
        let name = e.name().unwrap_or_default();
        match name.get(..2) {
            Some(folder) if name.len() > 2 => {
                let tb = match folders.entry(folder.to_owned()) {
                    std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => v.insert(repo.treebuilder(None)?),
                };
                tb.insert(&name[2..], e.id(), e.filemode())?;
            }
            _ => {
                top.insert(name, e.id(), e.filemode())?;
            }
        }
    }
    for (name, tb) in folders {
        let folder = tb.write()?;
        objects.push(folder);
        top.insert(name, folder, 0o040000)?;
    }
    let top = top.write()?;
    objects.push(top);
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn notes_read_back_as_written() {
        let at = UNIX_EPOCH + Duration::from_secs(1_795_316_645);
        for (note, text) in [
            (
                SyncNote::Synced {
                    at,
                    ld_version: 43,
                    already: false,
                    forced: None,
                },
                "synced 2026-11-22T03:04:05Z ld-version=43",
            ),
            (
                SyncNote::Synced {
                    at,
                    ld_version: 43,
                    already: true,
                    forced: None,
                },
                "synced 2026-11-22T03:04:05Z ld-version=43 (LD already had this state)",
            ),
            (
                SyncNote::Synced {
                    at,
                    ld_version: 50,
                    already: false,
                    forced: Some("LD version 44, base 41".into()),
                },
                "synced 2026-11-22T03:04:05Z ld-version=50 (forced over a conflict: LD version 44, base 41)",
            ),
            (
                SyncNote::Conflict("LD version 45, base 41".into()),
                "conflict: LD version 45, base 41",
            ),
            (
                SyncNote::Skipped("approval required".into()),
                "skipped: approval required",
            ),
            (SyncNote::Other("hand-written".into()), "hand-written"),
        ] {
            assert_eq!(note.to_string(), text);
            assert_eq!(text.parse::<SyncNote>().unwrap(), note, "{text}");
        }
        assert!(!"synced yesterday".parse::<SyncNote>().unwrap().is_synced());
    }
}
