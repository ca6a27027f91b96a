//! Appending commits to the journal, behind its write-ahead log (see [`super::wal`]).
//!
//! Commits are built in a repository of their own whose objects live in memory only
//! ([`Memory`]), and written to the journal as one packfile ([`super::pack`]) every
//! [`super::FLUSH_EVERY`] commits (twice as many each time after, or [`FLUSH_BYTES`]) and at
//! the end; only once the objects are found on disk does the branch move. A write-ahead-log
//! record leaves the log only when what it stands for is in the branch's history: a commit that
//! cannot be made keeps its done line, a flag whose done line could not be logged keeps its
//! intent, and a flush that fails leaves the log as it was, so the next relayctl commits them
//! (or keeps refusing, saying why). What a commit needs from the entry itself (names git can
//! store as paths) is checked by [`Writer::check`] before the first store write.

use super::author::Identity;
use super::message::{self, Entry};
use super::pack::{self, ToPack};
use super::wal::{self, Done, Intent, Record};
use super::{abbreviate, layout, now, FLUSH_BYTES, FLUSH_MOST};
use crate::flag::{StoreTarget, Targeting};
use anyhow::{bail, Context, Result};
use git2::{Oid, Repository};
use std::path::Path;

/// Appends commits to the journal; see [`super::Journal::write`].
pub struct Writer<'r> {
    /// The journal on disk, and its objects.
    pub(super) repo: &'r Repository,
    pub(super) odb: &'r git2::Odb<'r>,
    /// Where commits are built before they are written to the journal.
    pub(super) memory: Memory<'r>,
    pub(super) wal: wal::Wal,
    pub(super) author: Identity,
    /// The journal's branch (`refs/heads/...`).
    pub(super) branch: String,
    pub(super) tip: Oid,
    pub(super) unflushed: usize,
    /// How many commits are written out together: [`FLUSH_EVERY`], doubled after each flush.
    pub(super) flush_at: usize,
    /// About how many bytes of objects the commits held in memory wrote.
    pub(super) written: layout::Written,
    pub(super) path: &'r Path,
    /// Intents of an earlier, interrupted run not yet finished: kept in the log across flushes.
    pub(super) interrupted: &'r mut Vec<Intent>,
    /// Intents of this run whose done line is not logged yet.
    pub(super) open: Vec<Intent>,
    /// Done lines whose commit could not be made: kept in the log across flushes.
    pub(super) uncommitted: Vec<Done>,
    /// Done lines of a killed relayctl still to commit ([`Writer::commit_recovered`]): kept in
    /// the log across the flushes their own commits cause, until each is in the history.
    pub(super) recovering: std::collections::VecDeque<Done>,
    pub(super) next: u64,
    /// The plain Redis key records kept in the log (see [`super::keys`]).
    pub(super) keys: super::keys::KeyLog<'r>,
}

/// The repository commits are built in: its object database holds libgit2's in-memory backend
/// and nothing else. libgit2 rescans the pack directory of the database it writes an object to
/// whenever that object is not there yet (every new object: about six rescans per commit, a
/// quarter of apply's time at 20,000 changes in the journal's own database); here there is
/// nothing to rescan. What a new commit builds on (the tip, the folders it changes) is copied in
/// from the journal on first use, and the memory is emptied at each flush.
pub(super) struct Memory<'r> {
    pub repo: &'r Repository,
    pub odb: &'r git2::Odb<'r>,
    pub mempack: &'r git2::Mempack<'r>,
}

impl Writer<'_> {
    /// Checks that `entry` can be committed: its names are paths git can store. Call for every
    /// flag before the first store write, so nothing that would fail the commit is found after.
    pub fn check(&self, entry: &Entry) -> Result<()> {
        message::check(entry).with_context(|| {
            format!(
                "{} cannot be recorded in the journal {}; nothing was written",
                entry.id,
                self.path.display()
            )
        })
    }

    /// Logs that `entry` is about to be written to `targets`. Call before the store writes.
    pub fn begin(
        &mut self,
        entry: &Entry,
        from: &Targeting,
        targets: Vec<(StoreTarget, u64)>,
    ) -> Result<Intent> {
        self.check(entry)?;
        let time = now();
        self.next += 1;
        let intent = Intent {
            key: format!("{time}-{}-{}", std::process::id(), self.next),
            time,
            from: from.clone(),
            entry: entry.clone(),
            targets,
        };
        self.wal
            .append(&Record::Intent(intent.clone()))
            .with_context(|| format!("logging {} in the journal {}", entry.id, self.path.display()))?;
        self.open.push(intent.clone());
        Ok(intent)
    }

    /// Makes the intents logged so far survive a power cut: call once a batch's intents are
    /// logged ([`Writer::begin`]), before its store writes. (Done lines need not be: an intent
    /// without one is resolved by reading the stores, as after a kill.)
    pub fn sync_log(&self) -> Result<()> {
        self.wal.sync()
    }

    /// Leaves `intent` (from [`Writer::begin`]) unfinished on purpose: its outcome is unknown (a
    /// store that stopped answering), so it stays in the write-ahead log across flushes, for the
    /// next apply to resolve by reading the stores, as after a kill ([`super::Journal::interrupted`]).
    pub fn leave_unfinished(&mut self, intent: Intent) {
        self.open.retain(|i| i.key != intent.key);
        self.interrupted.push(intent);
    }

    /// Records how the writes of `intent` went (`entry.written` / `entry.failed`): logged at once,
    /// and committed (in memory, written out with the next flush) if any target took the change.
    /// Returns the commit's abbreviated id.
    pub fn finish(&mut self, intent: &Intent, entry: &Entry) -> Result<Option<String>> {
        let done = Done {
            key: intent.key.clone(),
            time: intent.time,
            from: intent.from.clone(),
            entry: entry.clone(),
        };
        self.wal
            .append(&Record::Done(done.clone()))
            .with_context(|| format!("logging {} in the journal {}", entry.id, self.path.display()))?;
        self.interrupted.retain(|i| i.key != intent.key);
        self.open.retain(|i| i.key != intent.key);
        if entry.written.is_empty() {
            return Ok(None);
        }
        let oid = self.commit_or_keep(done)?;
        Ok(Some(self.abbreviate(oid)))
    }

    /// Commits what a killed relayctl logged as done ([`Writer::recovering`]), in order.
    /// Whatever cannot be committed stays in the log.
    pub(super) fn commit_recovered(&mut self) -> Result<()> {
        while let Some(d) = self.recovering.pop_front() {
            self.commit_or_keep(d)?;
        }
        Ok(())
    }

    /// Commits `done` (in memory); if that fails, keeps it for the log. Writes the commits out
    /// once they are due ([`Writer::flush_if_due`]).
    fn commit_or_keep(&mut self, done: Done) -> Result<Oid> {
        let oid = match self.commit(&done.entry, &done.from, done.time) {
            Ok(oid) => oid,
            Err(e) => {
                self.uncommitted.push(done);
                return Err(e);
            }
        };
        self.flush_if_due()?;
        Ok(oid)
    }

    /// Writes the commits held in memory out once [`Writer::flush_at`] (or [`FLUSH_BYTES`])
    /// are held: the one rule for flag and key commits alike.
    pub(super) fn flush_if_due(&mut self) -> Result<()> {
        if self.unflushed >= self.flush_at || self.written.bytes >= FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn commit(&mut self, entry: &Entry, from: &Targeting, time: i64) -> Result<Oid> {
        let context = || format!("committing {} to the journal {}", entry.id, self.path.display());
        message::check(entry).with_context(context)?;
        let id = &entry.id;
        let state = message::state_file(entry);
        let message = message::message(entry, from);
        let folders = [id.project.as_str(), id.environment.as_str()];
        self.commit_state(time, (folders, &id.flag), &state, &message, context)
    }

    /// Commits (in memory, written out with a later flush) the state file `state`, put at
    /// `place` (its folder, and the name it is filed under) by [`layout::put`], with `message`:
    /// the one commit path of flag and key commits.
    pub(super) fn commit_state(
        &mut self,
        time: i64,
        (folders, name): ([&str; 2], &str),
        state: &str,
        message: &str,
        context: impl Fn() -> String,
    ) -> Result<Oid> {
        let sig = self.author.signature(&git2::Time::new(time, 0))?;
        let memory = self.memory.repo;
        if !self.memory.odb.exists(self.tip) {
            layout::copy(self.odb, memory, self.tip).with_context(&context)?;
        }
        let parent = memory.find_commit(self.tip).with_context(&context)?;
        let blob = memory.blob(state.as_bytes()).with_context(&context)?;
        let root = layout::tree(memory, self.odb, parent.tree_id()).with_context(&context)?;
        let tree = layout::put((memory, self.odb), &root, folders, name, blob, &mut self.written)
            .with_context(&context)?;
        // The state file, the commit and its message, besides the trees counted by `put`.
        self.written.bytes += 1024;
        let tree = memory.find_tree(tree).with_context(&context)?;
        self.tip = memory
            .commit(None, &sig, &sig, message, &tree, &[&parent])
            .with_context(&context)?;
        self.written.objects.push(ToPack {
            id: self.tip,
            base: None,
        });
        self.unflushed += 1;
        Ok(self.tip)
    }

    /// Writes the commits held in memory as one packfile, checks they are on disk, moves the
    /// branch to the newest, and empties the write-ahead log of what is now in its history.
    pub(super) fn flush(&mut self) -> Result<()> {
        let context = || format!("writing commits to the journal {}", self.path.display());
        if self.unflushed > 0 {
            let objects = &self.written.objects;
            write_pack(self.repo, &[self.memory.odb, self.odb], objects).with_context(context)?;
            self.memory.mempack.reset().with_context(context)?;
            // The branch moves only to a commit that can be read back from disk.
            let _ = self.odb.refresh();
            if !self.odb.exists(self.tip) {
                bail!(
                    "writing commits to the journal {}: the packfile was not stored (is {} missing or \
                     unwritable?)",
                    self.path.display(),
                    self.repo.path().join("objects/pack").display()
                );
            }
            super::repo::move_ref(self.repo, &self.branch, self.tip, "relayctl").with_context(context)?;
            self.unflushed = 0;
            self.flush_at = (self.flush_at * 2).min(FLUSH_MOST);
            self.written = layout::Written::default();
        }
        let keep: Vec<Record> = self
            .interrupted
            .iter()
            .chain(&self.open)
            .cloned()
            .map(Record::Intent)
            .chain(
                self.uncommitted
                    .iter()
                    .chain(&self.recovering)
                    .cloned()
                    .map(Record::Done),
            )
            .chain(self.keys.records())
            .collect();
        self.wal.reset(&keep)
    }

    /// The abbreviated id of `oid`, unique among the objects on disk and in memory.
    pub(super) fn abbreviate(&self, oid: Oid) -> String {
        abbreviate(&[self.memory.odb, self.odb], oid)
    }
}

/// Writes `objects` (read from the first of `sources` that has each) to the repository as one
/// packfile. Only these: libgit2's own mempack dump packs every commit's whole tree, each flush
/// again, which makes a journal's packs grow with the square of its flags.
pub(super) fn write_pack(repo: &Repository, sources: &[&git2::Odb], objects: &[ToPack]) -> Result<()> {
    pack::write(sources, &repo.path().join("objects").join("pack"), objects)?;
    Ok(())
}

/// Returns the tree `root` with `blob` at `path`, creating the intermediate trees (tests lay
/// out journals of earlier layouts with it).
#[cfg(test)]
pub(super) fn upsert(repo: &Repository, root: Option<&git2::Tree>, path: &[&str], blob: Oid) -> Result<Oid> {
    let mut tb = repo.treebuilder(root)?;
    match path {
        [file] => {
            tb.insert(file, blob, 0o100644)?;
        }
        [dir, rest @ ..] => {
            let sub = match root.and_then(|t| t.get_name(dir)) {
                Some(entry) => Some(repo.find_tree(entry.id())?),
                None => None,
            };
            let sub = upsert(repo, sub.as_ref(), rest, blob)?;
            tb.insert(dir, sub, 0o040000)?;
        }
        [] => anyhow::bail!("empty path"),
    }
    Ok(tb.write()?)
}
