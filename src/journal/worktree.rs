//! Bringing the journal's working tree up to date with its branch, so `ls` and `cat` in the
//! journal show what `git log` does, without ever overwriting a change relayctl did not make.
//!
//! relayctl moves the branch without touching the working tree and updates the tree once, when
//! the journal is closed: only the files the branch changed since relayctl last updated the tree
//! (it records that commit in [`CHECKED_OUT`]), and tracked files someone deleted. So the update
//! costs what the run changed, not what the journal holds (an apply of 10 changes on a journal
//! of 20,000 flags spent a second checking every file before). A file to update counts as
//! relayctl's when it is missing, holds a version of itself that the journal's history committed
//! (left by an earlier run, or by one that was killed before it updated the tree), or holds the
//! start of the version the update was writing when a relayctl was killed (libgit2 writes files
//! in place). Any run that locks the journal finishes a tree left behind.
//! Anything else (an edit, something put where the journal keeps a file) means someone is
//! working there: the tree is left exactly as it is, and the caller is told which files and what
//! to do. Files the branch does not track are never touched, nor are files the update does not
//! concern. The commits themselves never depend on the working tree. Without the record (a
//! journal from an earlier relayctl, or one whose record is lost), every tracked file is checked
//! and updated once.

use super::repo::shell_word;
use anyhow::{Context, Result};
use git2::{build::CheckoutBuilder, Delta, DiffOptions, ObjectType, Oid, Repository, Tree};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How many of the files in the way a warning names.
const NAMED: usize = 5;

/// The file in `.git` naming the commit the working tree was last brought up to date with.
const CHECKED_OUT: &str = "relayctl-checked-out";

/// A tracked file the update concerns: the versions of it that are relayctl's (what the tree
/// held at the last update, what the branch holds now).
struct Concern {
    before: Option<Oid>,
    after: Option<Oid>,
}

/// Updates the working tree of `repo` (the journal at `path`) to its branch. Returns a warning
/// to show when it was left as it is.
pub(super) fn update(repo: &Repository, path: &Path) -> Option<String> {
    match try_update(repo) {
        Ok(foreign) if foreign.is_empty() => None,
        Ok(foreign) => Some(left_alone(path, &foreign)),
        Err(e) => Some(not_updated(path, &format!("{e:#}"))),
    }
}

/// Updates the working tree unless files it would update hold changes relayctl did not make;
/// returns those files.
fn try_update(repo: &Repository) -> Result<Vec<PathBuf>> {
    let Some(workdir) = repo.workdir() else {
        return Ok(Vec::new());
    };
    let head = repo.head()?.peel_to_commit()?;
    let tree = head.tree()?;
    let last = last_update(repo);
    let concerns = match &last {
        Some(before) => concerns(repo, workdir, before, &tree)?,
        None => everything(repo, &tree)?,
    };
    let foreign = foreign(repo, workdir, &concerns)?;
    if !foreign.is_empty() {
        return Ok(foreign);
    }
    let mut checkout = CheckoutBuilder::new();
    // No filters: the state files are written as committed (loading .gitattributes for each of
    // 20,000 new files was a tenth of the checkout).
    checkout.force().disable_filters(true);
    match last {
        // Only what changed since the last update, which left the index matching its commit.
        Some(_) if concerns.is_empty() => {}
        Some(_) => {
            checkout.disable_pathspec_match(true);
            for file in concerns.keys() {
                checkout.path(file);
            }
            repo.checkout_head(Some(&mut checkout))?;
            index_to(repo, &tree, concerns.keys())?;
        }
        // All of it: the index may hold anything (a run killed mid-update, an earlier relayctl),
        // so it is set to the branch first; every file that differs was checked above.
        None => {
            let mut index = repo.index()?;
            index.read_tree(&tree)?;
            index.write()?;
            repo.checkout_head(Some(&mut checkout))?;
        }
    }
    let record = repo.path().join(CHECKED_OUT);
    std::fs::write(&record, format!("{}\n", head.id()))
        .with_context(|| format!("writing {}", record.display()))?;
    Ok(Vec::new())
}

/// Makes the index name the branch's version (`tree`) of each of `files`. libgit2's checkout
/// leaves the entry of a file that already held that version as it was, which is stale when a
/// relayctl killed while updating the tree wrote the file but not the index.
fn index_to<'a>(repo: &Repository, tree: &Tree, files: impl Iterator<Item = &'a PathBuf>) -> Result<()> {
    let mut index = repo.index()?;
    let mut stale = false;
    for file in files {
        let want = tree.get_path(file).ok().map(|e| e.id());
        if want == index.get_path(file, 0).map(|e| e.id) {
            continue;
        }
        stale = true;
        match want {
            Some(_) => index.add_path(file)?,
            None => index.remove_path(file)?,
        }
    }
    if stale {
        index.write()?;
    }
    Ok(())
}

/// Whether the working tree was last brought up to date with a commit other than the branch's
/// newest (or that is not recorded): a run killed before it updated the tree, or one that had to
/// leave it as it was.
pub(super) fn behind(repo: &Repository) -> bool {
    if repo.workdir().is_none() {
        return false;
    }
    match repo.head().ok().and_then(|h| h.target()) {
        Some(head) => recorded(repo) != Some(head),
        None => false,
    }
}

/// The commit the working tree was last brought up to date with ([`CHECKED_OUT`]), if recorded.
fn recorded(repo: &Repository) -> Option<Oid> {
    let text = std::fs::read_to_string(repo.path().join(CHECKED_OUT)).ok()?;
    Oid::from_str(text.trim()).ok()
}

/// The tree of the commit the working tree was last brought up to date with, if recorded.
fn last_update(repo: &Repository) -> Option<Tree<'_>> {
    repo.find_commit(recorded(repo)?).ok()?.tree().ok()
}

/// The files that changed between `before` (the last update) and `after` (the branch now), and
/// the tracked files missing from the working tree.
fn concerns(
    repo: &Repository,
    workdir: &Path,
    before: &Tree,
    after: &Tree,
) -> Result<BTreeMap<PathBuf, Concern>> {
    let mut out = BTreeMap::new();
    let diff = repo.diff_tree_to_tree(Some(before), Some(after), None)?;
    for delta in diff.deltas() {
        let Some(file) = delta.new_file().path().or(delta.old_file().path()) else {
            continue;
        };
        let version = |f: git2::DiffFile| (!f.id().is_zero()).then(|| f.id());
        out.insert(
            file.to_owned(),
            Concern {
                before: version(delta.old_file()),
                after: version(delta.new_file()),
            },
        );
    }
    // Deleted by hand: restored. Only a file lookup each, no reading.
    for entry in repo.index()?.iter() {
        let file = PathBuf::from(String::from_utf8_lossy(&entry.path).into_owned());
        if !out.contains_key(&file) && missing(&workdir.join(&file)) {
            let id = after.get_path(&file).ok().map(|e| e.id());
            out.insert(
                file,
                Concern {
                    before: Some(entry.id),
                    after: id,
                },
            );
        }
    }
    Ok(out)
}

/// Every tracked file that differs from the branch (when no update was recorded).
fn everything(repo: &Repository, after: &Tree) -> Result<BTreeMap<PathBuf, Concern>> {
    let mut options = DiffOptions::new();
    options.include_untracked(false).include_typechange(true);
    let diff = repo.diff_tree_to_workdir(Some(after), Some(&mut options))?;
    let mut out = BTreeMap::new();
    for delta in diff.deltas() {
        if let Some(file) = delta.old_file().path().or(delta.new_file().path()) {
            let id = (!delta.old_file().id().is_zero()).then(|| delta.old_file().id());
            let concern = match delta.status() {
                Delta::Deleted | Delta::Modified => Concern {
                    before: None,
                    after: id,
                },
                // A type change or anything else: never relayctl's.
                _ => Concern {
                    before: None,
                    after: None,
                },
            };
            out.insert(file.to_owned(), concern);
        }
    }
    Ok(out)
}

fn missing(at: &Path) -> bool {
    matches!(std::fs::symlink_metadata(at), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// The files of `concerns` whose content in the working tree is not relayctl's: neither
/// missing, nor a version relayctl wrote there.
fn foreign(repo: &Repository, workdir: &Path, concerns: &BTreeMap<PathBuf, Concern>) -> Result<Vec<PathBuf>> {
    let mut foreign = Vec::new();
    let mut unknown: Vec<(&Path, Oid)> = Vec::new();
    let mut folders = BTreeMap::new();
    for (file, concern) in concerns {
        // A folder replaced by a link (or a file) would have the update write outside the journal.
        if !in_own_folders(workdir, file, &mut folders) {
            foreign.push(file.clone());
            continue;
        }
        let at = workdir.join(file);
        let Ok(meta) = std::fs::symlink_metadata(&at) else {
            continue;
        };
        if !meta.is_file() {
            foreign.push(file.clone());
            continue;
        }
        let bytes = std::fs::read(&at).with_context(|| format!("reading {}", at.display()))?;
        let held = Oid::hash_object(ObjectType::Blob, &bytes)?;
        if Some(held) == concern.before || Some(held) == concern.after {
            continue;
        }
        // Cut short: libgit2 writes a file in place, so a relayctl killed while updating the tree
        // leaves it empty or holding the start of the version it was writing.
        let cut_short = |version: Option<Oid>| {
            version.is_some_and(|id| repo.find_blob(id).is_ok_and(|b| b.content().starts_with(&bytes)))
        };
        if !cut_short(concern.after) && !cut_short(concern.before) {
            unknown.push((file, held));
        }
    }
    // An older version, left by a run killed before it updated the tree: rare, so the history
    // is only walked then.
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
    foreign.extend(unknown.into_iter().map(|(file, _)| file.to_owned()));
    foreign.sort();
    Ok(foreign)
}

/// Whether every folder above `file` in the working tree is a real folder (or missing, for the
/// update to create), not a symbolic link or anything else; `seen` remembers the folders looked at.
fn in_own_folders(workdir: &Path, file: &Path, seen: &mut BTreeMap<PathBuf, bool>) -> bool {
    let mut at = workdir.to_path_buf();
    for part in file.parent().into_iter().flat_map(Path::components) {
        at.push(part);
        let own = *seen
            .entry(at.clone())
            .or_insert_with(|| match std::fs::symlink_metadata(&at) {
                Ok(meta) => meta.is_dir(),
                Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            });
        if !own {
            return false;
        }
    }
    true
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
