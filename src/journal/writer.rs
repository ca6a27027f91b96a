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
use super::entry::Entry;
use super::pack::{self, ToPack};
use super::wal::{self, Done, Intent, Journaled, Logs};
use super::{abbreviate, layout, now, FLUSH_BYTES, FLUSH_MOST};
use crate::kind::{Kind, StoreTarget};
use anyhow::{Context, Result};
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
    /// The write-ahead-log records of every kind not in the history yet: kept in the log across
    /// flushes (intents of an earlier run among them, resolved by reading the stores).
    pub(super) logs: &'r mut Logs,
    pub(super) next: u64,
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
    /// Checks that `record` can be committed: its names are paths git can store. Call for every
    /// item before the first store write, so nothing that would fail the commit is found after.
    pub fn check<K: Journaled>(&self, record: &K::Record) -> Result<()> {
        K::check(record).map_err(anyhow::Error::msg).with_context(|| {
            format!(
                "{} cannot be recorded in the journal {}; nothing was written",
                K::record_id(record),
                self.path.display()
            )
        })
    }

    /// Logs that `record` is about to be written to `targets` (each with the version it expects
    /// to replace). Call before the store writes.
    pub fn begin<K: Journaled>(
        &mut self,
        record: &K::Record,
        targets: Vec<(StoreTarget, K::Version)>,
    ) -> Result<Intent<K>> {
        self.check::<K>(record)?;
        let time = now();
        self.next += 1;
        let intent = Intent {
            id: format!("{time}-{}-{}", std::process::id(), self.next),
            time,
            entry: Entry::new(record.clone()),
            targets,
        };
        self.log_line::<K>(K::intent_line(intent.clone()), record)?;
        K::log(self.logs).open.push(intent.clone());
        Ok(intent)
    }

    fn log_line<K: Kind>(&mut self, line: wal::Record, record: &K::Record) -> Result<()> {
        self.wal.append(&line).with_context(|| {
            format!(
                "logging {} in the journal {}",
                K::record_id(record),
                self.path.display()
            )
        })
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
    pub fn leave_unfinished<K: Journaled>(&mut self, intent: Intent<K>) {
        let log = K::log(self.logs);
        log.open.retain(|i| i.id != intent.id);
        log.interrupted.push(intent);
    }

    /// Records how the writes of `intent` went (`entry.written` / `entry.failed`): logged at once,
    /// and committed (in memory, written out with the next flush) if any target took the change.
    /// Returns the commit's abbreviated id.
    pub fn finish<K: Journaled>(&mut self, intent: &Intent<K>, entry: &Entry<K>) -> Result<Option<String>> {
        let done = Done {
            id: intent.id.clone(),
            time: intent.time,
            entry: entry.clone(),
        };
        self.log_line::<K>(K::done_line(done.clone()), &entry.record)?;
        let log = K::log(self.logs);
        log.interrupted.retain(|i| i.id != intent.id);
        log.open.retain(|i| i.id != intent.id);
        if entry.written.is_empty() {
            return Ok(None);
        }
        let oid = self.commit_or_keep(done)?;
        Ok(Some(self.abbreviate(oid)))
    }

    /// Commits what a killed relayctl logged as done (each kind's `recovering`), in order.
    /// Whatever cannot be committed stays in the log.
    pub(super) fn commit_recovered(&mut self) -> Result<()> {
        self.commit_recovered_of::<crate::flag::Flag>()?;
        self.commit_recovered_of::<crate::key::Key>()
    }

    fn commit_recovered_of<K: Journaled>(&mut self) -> Result<()> {
        while let Some(done) = K::log(self.logs).recovering.pop_front() {
            self.commit_or_keep(done)?;
        }
        Ok(())
    }

    /// Commits `done` (in memory); if that fails, keeps it for the log. Writes the commits out
    /// once they are due ([`Writer::flush_if_due`]).
    fn commit_or_keep<K: Journaled>(&mut self, done: Done<K>) -> Result<Oid> {
        let oid = match self.commit(&done.entry, done.time) {
            Ok(oid) => oid,
            Err(e) => {
                K::log(self.logs).uncommitted.push(done);
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

    /// Commits `entry` (in memory, written out with a later flush): its state file, put at its
    /// place by [`layout::put`], with its message.
    fn commit<K: Journaled>(&mut self, entry: &Entry<K>, time: i64) -> Result<Oid> {
        let context = || {
            format!(
                "committing {} to the journal {}",
                K::record_id(&entry.record),
                self.path.display()
            )
        };
        K::check(&entry.record)
            .map_err(anyhow::Error::msg)
            .with_context(context)?;
        let ([top, folder], name) = K::place(&entry.record);
        let place = ([top.as_str(), folder.as_str()], name.as_str());
        self.commit_state(
            time,
            place,
            &K::state_file(&entry.record),
            &K::message(entry),
            context,
        )
    }

    /// Commits (in memory) the state file `state`, put at `place` (its folders, and the name it
    /// is filed under) by [`layout::put`], with `message`.
    fn commit_state(
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
            // The branch moves only to commits whose packfile checked out and reads back.
            let pack = pack::store(self.repo, &[self.memory.odb, self.odb], objects).with_context(context)?;
            super::damage::note_whole(self.repo, &pack);
            let tip = self.memory.repo.find_commit(self.tip).with_context(context)?;
            let (root, commit) = (
                tip.tree_id(),
                self.memory.odb.read(self.tip).with_context(context)?,
            );
            let (commit, held) = (commit.data().to_vec(), layout::held(self.memory.repo, root));
            drop(tip);
            self.memory.mempack.reset().with_context(context)?;
            for (_, bytes) in held {
                self.memory
                    .odb
                    .write(git2::ObjectType::Tree, &bytes)
                    .with_context(context)?;
            }
            self.memory
                .odb
                .write(git2::ObjectType::Commit, &commit)
                .with_context(context)?;
            let _ = self.odb.refresh();
            super::repo::move_ref(self.repo, &self.branch, self.tip, "relayctl").with_context(context)?;
            self.unflushed = 0;
            self.flush_at = (self.flush_at * 2).min(FLUSH_MOST);
            self.written = layout::Written::default();
        }
        let keep = self.logs.lines();
        self.wal.reset(&keep)
    }

    /// The abbreviated id of `oid`, unique among the objects on disk and in memory.
    pub(super) fn abbreviate(&self, oid: Oid) -> String {
        abbreviate(&[self.memory.odb, self.odb], oid)
    }
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
