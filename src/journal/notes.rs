//! Sync status: git notes under [`NOTES_REF`], one per journal commit, so marking a commit
//! synced never rewrites history. The only file that knows the notes' text ([`SyncNote`]).

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
    let mut out = HashMap::new();
    let Ok(iter) = repo.notes(Some(NOTES_REF)) else {
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

/// Sets (replacing) the notes of several commits in one notes commit, without rewriting the
/// notes tree once per commit.
pub(super) fn write_all(repo: &Repository, sig: &Signature, notes: &[(Oid, SyncNote)]) -> Result<()> {
    if notes.is_empty() {
        return Ok(());
    }
    let parent = match repo.find_reference(NOTES_REF) {
        Ok(r) => Some(r.peel_to_commit().context("reading the sync notes' history")?),
        Err(_) => None,
    };
    let tree = parent.as_ref().map(git2::Commit::tree).transpose()?;
    // A notes tree that git fanned out (`ab/cdef...`) needs libgit2's placement of each note.
    let fanned_out = tree
        .as_ref()
        .is_some_and(|t| t.iter().any(|e| e.name().is_some_and(|n| n.len() < 40)));
    if notes.len() < 2 || fanned_out {
        for (oid, note) in notes {
            repo.note(sig, sig, Some(NOTES_REF), *oid, &note.to_string(), true)
                .with_context(|| format!("writing the sync note on journal commit {oid}"))?;
        }
        return Ok(());
    }
    let mut tb = repo.treebuilder(tree.as_ref())?;
    for (oid, note) in notes {
        let blob = repo.blob(note.to_string().as_bytes())?;
        tb.insert(oid.to_string(), blob, 0o100644)?;
    }
    let tree = repo.find_tree(tb.write()?)?;
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repo.commit(
        Some(NOTES_REF),
        sig,
        sig,
        "Notes added by relayctl sync",
        &tree,
        &parents,
    )
    .with_context(|| format!("writing {} sync notes", notes.len()))?;
    Ok(())
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
