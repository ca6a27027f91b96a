//! Bringing the journal's working tree up to date with its branch, so `ls` and `cat` in the
//! journal show what `git log` does, without ever overwriting a change relayctl did not make.
//!
//! relayctl moves the branch without touching the working tree and updates the tree once, when
//! the journal is closed. A file there counts as relayctl's when it is missing or holds a
//! version of itself that the journal's history committed (left by an earlier run, or by one
//! that was killed before it updated the tree). Anything else (an edit, something put where the
//! journal keeps a file) means someone is working there: the tree is left exactly as it is, and
//! the caller is told which files and what to do. Files the branch does not track are never
//! touched. The commits themselves never depend on the working tree.

use super::repo::shell_word;
use anyhow::Result;
use git2::{build::CheckoutBuilder, Delta, DiffOptions, ObjectType, Oid, Repository};
use std::path::{Path, PathBuf};

/// How many of the files in the way a warning names.
const NAMED: usize = 5;

/// Updates the working tree of `repo` (the journal at `path`) to its branch. Returns a warning
/// to show when it was left as it is.
pub(super) fn update(repo: &Repository, path: &Path) -> Option<String> {
    match foreign_changes(repo) {
        // No filters: the state files are written as committed (loading .gitattributes for each
        // of 20,000 new files was a tenth of the checkout).
        Ok(foreign) if foreign.is_empty() => repo
            .checkout_head(Some(CheckoutBuilder::new().force().disable_filters(true)))
            .err()
            .map(|e| not_updated(path, e.message())),
        Ok(foreign) => Some(left_alone(path, &foreign)),
        Err(e) => Some(not_updated(path, &format!("{e:#}"))),
    }
}

/// The tracked files of the working tree that hold something relayctl did not write.
fn foreign_changes(repo: &Repository) -> Result<Vec<PathBuf>> {
    let (Some(workdir), Ok(head)) = (repo.workdir(), repo.head().and_then(|h| h.peel_to_tree())) else {
        return Ok(Vec::new());
    };
    let mut options = DiffOptions::new();
    options.include_untracked(false).include_typechange(true);
    let diff = repo.diff_tree_to_workdir(Some(&head), Some(&mut options))?;
    let mut foreign = Vec::new();
    let mut unknown: Vec<(PathBuf, Oid)> = Vec::new();
    for delta in diff.deltas() {
        let Some(file) = delta.old_file().path().or(delta.new_file().path()) else {
            continue;
        };
        let at = workdir.join(file);
        match delta.status() {
            // Missing: restored from the history. Anything else there (a directory) is in the way.
            Delta::Deleted => {
                if !matches!(std::fs::symlink_metadata(&at), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
                {
                    foreign.push(file.to_owned());
                }
            }
            Delta::Modified if at.is_file() => {
                unknown.push((file.to_owned(), Oid::hash_file(ObjectType::Blob, &at)?))
            }
            _ => foreign.push(file.to_owned()),
        }
    }
    if !unknown.is_empty() {
        let mut walk = repo.revwalk()?;
        walk.push_head()?;
        for oid in walk {
            let tree = repo.find_commit(oid?)?.tree()?;
            unknown.retain(|(file, blob)| tree.get_path(file).map_or(true, |e| e.id() != *blob));
            if unknown.is_empty() {
                break;
            }
        }
    }
    foreign.extend(unknown.into_iter().map(|(file, _)| file));
    foreign.sort();
    Ok(foreign)
}

fn left_alone(path: &Path, foreign: &[PathBuf]) -> String {
    let mut files: Vec<String> = foreign
        .iter()
        .take(NAMED)
        .map(|f| path.join(f).display().to_string())
        .collect();
    if foreign.len() > NAMED {
        files.push(format!("and {} more", foreign.len() - NAMED));
    }
    let at = shell_word(&path.display().to_string());
    format!(
        "the journal's working tree has changes relayctl did not make ({}), so relayctl left the working \
         tree as it is; the journal's commits are made all the same (`git -C {at} log`). See the changes with \
         `git -C {at} status`; once they are set aside (`git -C {at} stash`) the next relayctl run brings the \
         working tree up to date",
        files.join(", ")
    )
}

fn not_updated(path: &Path, why: &str) -> String {
    format!(
        "the journal's working tree {} was not brought up to date ({why}); its commits are safe in the \
         history, and the next relayctl run tries again",
        path.display()
    )
}
