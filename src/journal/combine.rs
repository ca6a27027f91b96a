//! Combining what teammates pushed with this journal's history, under the journal lock: the
//! branch, and the sync notes (SPEC "Working as a team").
//!
//! Nothing is ever rewritten: a commit's id may already be in LaunchDarkly's audit comments
//! (sync cites it), so histories are joined, never rebased. The branch moves forward to the
//! remote's when this machine has nothing of its own beyond it; when both have commits the other
//! lacks, one merge commit joins them (its two parents keep every commit and its notes). Its
//! tree is the two trees combined file by file: a state file changed on one side only is taken
//! from that side; one changed on both (the same flag changed on two machines) is taken from
//! the side whose newest commit of that flag recorded the higher store version (`Base-Version`,
//! the order the stores' compare-and-set imposed), or for a plain key, whose newest commit is
//! the later one. An environment's folder is written flat or fanned out by
//! [`super::layout`]'s rule for the number of files it holds.
//!
//! Notes combine the same way: the notes ref moves forward, or one notes commit with both
//! parents holds every note of both; a commit noted on both machines keeps a `synced` note over
//! any other (both synced it: not a conflict), else this machine's. Everything written goes
//! into one packfile checked by libgit2's indexer before a ref moves, as every journal write.
//! A journal that holds nothing but its own first commit adopts the remote's history instead of
//! joining two first commits.

use super::layout::{bucket, FLAT_MAX};
use super::notes::{self, NOTES_REF};
use super::pack::{self, ToPack};
use super::remote::{tracking, TRACKING_NOTES};
use super::{message, repo, Journal};
use anyhow::{Context, Result};
use git2::{ObjectType, Oid, Repository, Tree};
use std::collections::{BTreeMap, HashMap};

/// What combining did.
#[derive(Debug, Default, PartialEq)]
#[allow(dead_code)] // what callers may report; tests read it
pub struct Combined {
    /// The branch moved forward to the remote's (fast-forward).
    pub forwarded: bool,
    /// A merge commit joined the two histories.
    pub merged: Option<Oid>,
    /// The notes were joined (moved forward, or merged).
    pub notes: bool,
}

/// Which side's version of a file wins.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Ours,
    Theirs,
}

impl Journal {
    /// Joins the remote's branch and notes (fetched into the tracking refs) with the journal's;
    /// needs the lock. A no-op when nothing was fetched or the journal is ahead.
    pub fn combine(&mut self, remote_shown: &str) -> Result<Combined> {
        self.write_notes()?;
        let mut done = Combined::default();
        let context = || {
            format!(
                "combining the journal {} with {remote_shown}",
                self.path.display()
            )
        };
        if let Ok(theirs) = self.repo.refname_to_id(&tracking(&self.branch)) {
            let ours = self.repo.refname_to_id(&self.branch).with_context(context)?;
            match self.relation(ours, theirs).with_context(context)? {
                Relation::Ahead => {}
                Relation::Behind => {
                    repo::move_ref(&self.repo, &self.branch, theirs, "relayctl: fast-forward")?;
                    done.forwarded = true;
                    self.dirty = true;
                }
                Relation::Diverged => {
                    let merged = self.merge(ours, theirs, remote_shown).with_context(context)?;
                    repo::move_ref(&self.repo, &self.branch, merged, "relayctl: combine")?;
                    done.merged = Some(merged);
                    self.dirty = true;
                }
            }
        }
        if let Ok(theirs) = self.repo.refname_to_id(TRACKING_NOTES) {
            let to = match self.repo.refname_to_id(NOTES_REF) {
                Err(_) => Some(theirs),
                Ok(ours) => match self.relation(ours, theirs).with_context(context)? {
                    Relation::Ahead => None,
                    Relation::Behind => Some(theirs),
                    Relation::Diverged => Some(self.merge_notes(ours, theirs).with_context(context)?),
                },
            };
            if let Some(to) = to {
                repo::move_ref(&self.repo, NOTES_REF, to, "relayctl: combine notes")?;
                done.notes = true;
            }
        }
        let _ = self.repo.odb().map(|o| o.refresh());
        Ok(done)
    }

    fn relation(&self, ours: Oid, theirs: Oid) -> Result<Relation> {
        if ours == theirs || self.repo.graph_descendant_of(ours, theirs)? {
            return Ok(Relation::Ahead);
        }
        if self.repo.graph_descendant_of(theirs, ours)? || self.only_root(ours)? {
            return Ok(Relation::Behind);
        }
        Ok(Relation::Diverged)
    }

    /// Whether `tip` is a journal's first commit and nothing else: a journal made on this machine
    /// before it ever reached the remote, with nothing in it to keep.
    fn only_root(&self, tip: Oid) -> Result<bool> {
        let commit = self.repo.find_commit(tip)?;
        Ok(commit.parent_count() == 0 && commit.message().is_some_and(|m| m.trim() == repo::ROOT_SUBJECT))
    }

    /// A merge commit of `ours` and `theirs`, written in a checked packfile.
    fn merge(&self, ours: Oid, theirs: Oid, remote_shown: &str) -> Result<Oid> {
        let repo = Repository::open(self.repo.path())?;
        let odb = repo.odb()?;
        let mempack = odb.add_new_mempack_backend(1000)?;
        let base = repo.merge_base(ours, theirs).ok();
        let (ours_c, theirs_c) = (repo.find_commit(ours)?, repo.find_commit(theirs)?);
        let base_tree = base
            .map(|b| repo.find_commit(b).and_then(|c| c.tree()))
            .transpose()?;
        let newer = Newer {
            ours: newest(&repo, ours, base)?,
            theirs: newest(&repo, theirs, base)?,
            ours_time: ours_c.time().seconds(),
            theirs_time: theirs_c.time().seconds(),
        };
        let mut merger = Merger {
            repo: &repo,
            newer: &newer,
            written: Vec::new(),
        };
        let tree = merger.folder(
            "",
            0,
            base_tree.as_ref().map(Tree::id),
            Some(ours_c.tree_id()),
            Some(theirs_c.tree_id()),
        )?;
        let tree = repo.find_tree(tree.context("the combined journal has no tree")?)?;
        let sig = self.signature()?;
        let here = count_since(&repo, ours, theirs)?;
        let there = count_since(&repo, theirs, ours)?;
        let message = format!(
            "Combine the journal with {remote_shown}\n\n{here} commit(s) made here and {there} pushed from \
             elsewhere, both kept as they were (relayctl never rewrites a journal commit)\n"
        );
        let merged = repo.commit(None, &sig, &sig, &message, &tree, &[&ours_c, &theirs_c])?;
        let mut objects = merger.written;
        objects.push(merged);
        let objects: Vec<ToPack> = objects.into_iter().map(|id| ToPack { id, base: None }).collect();
        let pack = pack::store(&repo, &[&odb], &objects)?;
        super::damage::note_whole(&repo, &pack);
        mempack.reset()?;
        Ok(merged)
    }

    /// A notes commit holding every note of `ours` and `theirs`, with both as parents.
    fn merge_notes(&self, ours: Oid, theirs: Oid) -> Result<Oid> {
        let mine = notes::read_ref(&self.repo, NOTES_REF)?;
        let other = notes::read_ref(&self.repo, TRACKING_NOTES)?;
        let mut take = Vec::new();
        for (commit, note) in other {
            let keep_ours = mine
                .get(&commit)
                .is_some_and(|m| m.is_synced() || !note.is_synced());
            if !keep_ours {
                take.push((commit, note));
            }
        }
        let sig = self.signature()?;
        let (merged, pack) = notes::write_merge(&self.repo, &sig, ours, theirs, &take)?;
        super::damage::note_whole(&self.repo, &pack);
        Ok(merged)
    }
}

enum Relation {
    /// This side has everything the other has (or they are the same).
    Ahead,
    /// The other side has everything this one has: move forward.
    Behind,
    Diverged,
}

/// How many commits `tip` has that `other` lacks.
fn count_since(repo: &Repository, tip: Oid, other: Oid) -> Result<usize> {
    let mut walk = repo.revwalk()?;
    walk.push(tip)?;
    walk.hide(other)?;
    Ok(walk.count())
}

/// For the flags whose state files a side changed since `base`: the store version its newest
/// commit of that flag recorded, by the state file's path in the layout-free form
/// `<project>/<environment>/<flag>.toml`.
fn newest(repo: &Repository, tip: Oid, base: Option<Oid>) -> Result<HashMap<String, u64>> {
    let mut walk = repo.revwalk()?;
    walk.push(tip)?;
    if let Some(base) = base {
        walk.hide(base)?;
    }
    let mut out: HashMap<String, u64> = HashMap::new();
    for oid in walk {
        let commit = repo.find_commit(oid?)?;
        if let Some((id, version)) = message::flag_version(commit.message().unwrap_or("")) {
            let path = format!("{}/{}/{}.toml", id.project, id.environment, id.flag);
            let v = out.entry(path).or_insert(version);
            *v = (*v).max(version);
        }
    }
    Ok(out)
}

/// What decides a file both sides changed.
struct Newer {
    ours: HashMap<String, u64>,
    theirs: HashMap<String, u64>,
    ours_time: i64,
    theirs_time: i64,
}

impl Newer {
    fn side(&self, path: &str) -> Side {
        match (self.ours.get(path), self.theirs.get(path)) {
            (Some(o), Some(t)) if t > o => Side::Theirs,
            (Some(_), Some(_)) => Side::Ours,
            _ if self.theirs_time > self.ours_time => Side::Theirs,
            _ => Side::Ours,
        }
    }
}

/// Writes the combined folders (in memory, listed in `written` for the pack).
struct Merger<'r> {
    repo: &'r Repository,
    newer: &'r Newer,
    written: Vec<Oid>,
}

/// One entry of a folder: its id and mode.
type Entry = (Oid, i32);

impl Merger<'_> {
    /// The folder at `at` (depth 0 the root, 2 an environment's or a key store's folder)
    /// combined from its three versions (`None` where absent).
    fn folder(
        &mut self,
        at: &str,
        depth: usize,
        base: Option<Oid>,
        ours: Option<Oid>,
        theirs: Option<Oid>,
    ) -> Result<Option<Oid>> {
        if ours == theirs || base == theirs {
            return Ok(ours);
        }
        if base == ours {
            return Ok(theirs);
        }
        if depth == 2 {
            return self.env(at, base, ours, theirs).map(Some);
        }
        let (b, o, t) = (self.entries(base)?, self.entries(ours)?, self.entries(theirs)?);
        let mut tb = self.repo.treebuilder(None)?;
        let names: std::collections::BTreeSet<&String> = o.keys().chain(t.keys()).collect();
        for name in names {
            let (be, oe, te) = (b.get(name), o.get(name), t.get(name));
            let folder = |e: Option<&Entry>| e.filter(|e| e.1 == 0o040000).map(|e| e.0);
            let merged = if folder(oe).is_some() || folder(te).is_some() {
                let path = format!("{at}{name}/");
                self.folder(&path, depth + 1, folder(be), folder(oe), folder(te))?
                    .map(|id| (id, 0o040000))
            } else {
                pick(be.copied(), oe.copied(), te.copied(), || {
                    self.newer.side(&format!("{at}{name}"))
                })
            };
            if let Some((id, mode)) = merged {
                tb.insert(name, id, mode)?;
            }
        }
        let id = tb.write()?;
        self.written.push(id);
        Ok(Some(id))
    }

    /// An environment's folder combined file by file, written flat or fanned out.
    fn env(&mut self, at: &str, base: Option<Oid>, ours: Option<Oid>, theirs: Option<Oid>) -> Result<Oid> {
        let (b, o, t) = (self.files(base)?, self.files(ours)?, self.files(theirs)?);
        let names: std::collections::BTreeSet<&String> = o.keys().chain(t.keys()).collect();
        let mut files = BTreeMap::new();
        for name in names {
            let merged = pick(
                b.get(name).copied(),
                o.get(name).copied(),
                t.get(name).copied(),
                || self.newer.side(&format!("{at}{name}")),
            );
            if let Some(entry) = merged {
                files.insert(name.clone(), entry);
            }
        }
        if files.len() <= FLAT_MAX {
            return self.write(files.into_iter());
        }
        let mut buckets: BTreeMap<String, Vec<(String, Entry)>> = BTreeMap::new();
        for (name, entry) in files {
            let key = name.strip_suffix(".toml").unwrap_or(&name).to_owned();
            buckets.entry(bucket(&key)).or_default().push((name, entry));
        }
        let mut top = Vec::new();
        for (folder, files) in buckets {
            top.push((folder, (self.write(files.into_iter())?, 0o040000)));
        }
        self.write(top.into_iter())
    }

    fn write(&mut self, entries: impl Iterator<Item = (String, Entry)>) -> Result<Oid> {
        let mut tb = self.repo.treebuilder(None)?;
        for (name, (id, mode)) in entries {
            tb.insert(name, id, mode)?;
        }
        let id = tb.write()?;
        self.written.push(id);
        Ok(id)
    }

    fn entries(&self, tree: Option<Oid>) -> Result<BTreeMap<String, Entry>> {
        let Some(tree) = tree else {
            return Ok(BTreeMap::new());
        };
        let tree = self.repo.find_tree(tree)?;
        Ok(tree
            .iter()
            .map(|e| (e.name().unwrap_or_default().to_owned(), (e.id(), e.filemode())))
            .collect())
    }

    /// The state files of an environment's folder, in either layout, by name.
    fn files(&self, tree: Option<Oid>) -> Result<BTreeMap<String, Entry>> {
        let mut out = BTreeMap::new();
        for (name, (id, mode)) in self.entries(tree)? {
            match self.repo.find_object(id, None)?.kind() {
                Some(ObjectType::Tree) => out.extend(self.entries(Some(id))?),
                _ => {
                    out.insert(name, (id, mode));
                }
            }
        }
        Ok(out)
    }
}

/// The three-way choice for one file: unchanged on a side takes the other's; changed on both,
/// `newer` decides.
fn pick(
    base: Option<Entry>,
    ours: Option<Entry>,
    theirs: Option<Entry>,
    newer: impl Fn() -> Side,
) -> Option<Entry> {
    if ours == theirs || base == theirs {
        return ours;
    }
    if base == ours {
        return theirs;
    }
    match (ours, theirs, newer()) {
        (Some(o), _, Side::Ours) | (Some(o), None, _) => Some(o),
        (_, Some(t), _) => Some(t),
        (None, None, _) => None,
    }
}
