//! The journal: a git repository whose history is the audit trail of every change relayctl made
//! (SPEC §2 "The journal"), and the only source `relayctl sync` replays.
//!
//! This module owns the journal as a whole: opening it for reading or, under its lock, for
//! writing, recovering what a killed relayctl left, reading the commits back, and closing it.
//! Each part lives beside it in one file: [`repo`] (creating the repository marked as
//! relayctl's, refusing any other, checking its branch and git's lock files), [`author`] (the
//! commit author), [`writer`] (building commits, behind [`wal`], the write-ahead log),
//! [`worktree`] (updating the working tree without overwriting anyone's edits), and the formats:
//! [`message`] (commit message, trailers, state file) and [`notes`] (sync status).
//!
//! Everything a commit needs that can be known in advance (a journal that is relayctl's, HEAD on
//! its branch, no git lock file, an author git accepts, names git can store) is checked when the
//! journal is opened or by [`Writer::check`], before any store write. Every flag goes through
//! the write-ahead log (an intent before its store writes, a done line right after), and a record
//! leaves the log only once its commit is in the branch's history; so a killed relayctl, a full
//! disk or any other failure after a store write loses nothing: the next relayctl that locks the
//! journal commits what the log says was done (or refuses, saying why, until it can), and hands
//! back the unfinished intents ([`Journal::interrupted`]) for `apply` to resolve by reading the
//! stores. Status messages (waiting for the lock, what was recovered, a working tree left alone)
//! go to the caller, which decides whether to print them.

mod author;
mod combine;
mod damage;
mod entry;
mod keys;
mod layout;
mod message;
mod notes;
mod pack;
mod remote;
mod repack;
mod repo;
mod sending;
mod team;
mod wal;
mod worktree;
mod writer;

pub use entry::Entry;
pub use keys::LogEntry;
#[cfg(test)]
pub use message::Listed;
pub use message::Recorded;
pub use notes::SyncNote;
pub use remote::{Net, Pushed};
pub use repo::LockBusy;
pub use sending::{Sent, SyncLock};
pub use team::{Arrivals, Unpushed};
pub use wal::{Intent, Journaled};
pub use writer::Writer;

use wal::Logs;

use anyhow::{anyhow, ensure, Context, Result};
use author::Identity;
use git2::{Oid, Repository, Signature, Sort};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How many commits are kept in memory before they are first written out as a packfile; each
/// later packfile of the same run may hold twice as many as the one before, up to
/// [`FLUSH_MOST`], so a large apply writes a few packfiles, not one per 256 commits (every
/// object libgit2 writes rescans the pack directory, at a cost that grows with its packfiles).
pub const FLUSH_EVERY: usize = 256;

/// How long sync notes may be held in memory while flags keep finishing (see
/// [`Journal::set_notes`]); a sync also writes them out whenever it waits for LaunchDarkly.
pub const NOTES_EVERY: Duration = Duration::from_secs(1);

/// The most commits one packfile holds.
pub const FLUSH_MOST: usize = 8192;

/// How many bytes of objects the commits kept in memory may hold before they are written out:
/// the bound on the journal's memory however large an environment's folders grow.
pub const FLUSH_BYTES: usize = 16 << 20;

/// How a command opens the journal for writing.
pub struct Options<'a> {
    /// How long to wait for another relayctl holding the lock.
    pub lock_wait: Duration,
    /// `RELAYCTL_AUTHOR` ("Name <email>"): the author when git config names none.
    pub author: Option<&'a str>,
    /// Told when relayctl starts to wait: once when the lock is held by another process, and
    /// before it compacts the journal's packfiles.
    pub on_wait: &'a dyn Fn(&str),
}

/// Turns libgit2's check of object ids on read back on when dropped (the writer turns it off).
struct VerifyHashesAgain;

impl Drop for VerifyHashesAgain {
    fn drop(&mut self) {
        git2::opts::strict_hash_verification(true);
    }
}

/// What opening the journal recovered from a relayctl that was killed while writing.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Recovery {
    /// Commits that were done in the stores but not yet in the journal, now committed.
    pub commits: usize,
    /// Lines of the write-ahead log cut short by the kill, which could not be read.
    pub torn: usize,
    /// The write-ahead log.
    pub wal: PathBuf,
    /// A ref's lock file that a relayctl killed while moving the ref left, now removed.
    pub released_lock: Option<PathBuf>,
    /// How many packfiles were merged into one (more than [`repack::MAX_PACKS`] had piled up).
    pub compacted: usize,
}

/// An open journal repository, holding its lock while it exists (when opened for writing).
pub struct Journal {
    repo: Repository,
    path: PathBuf,
    _lock: Option<File>,
    /// The journal's branch (`refs/heads/...`).
    branch: String,
    dirty: bool,
    author: Option<Identity>,
    /// The write-ahead-log records not in the history yet, of every kind: writes an interrupted
    /// relayctl started and did not record among them.
    logs: Logs,
    recovery: Recovery,
    /// Sync notes set and not yet written out ([`Journal::set_notes`]).
    notes: Vec<(Oid, SyncNote)>,
    notes_written: std::time::Instant,
}

const README: &str = "\
# relayctl journal

Every commit in this repository is one flag change that `relayctl apply` wrote to the stores the
LaunchDarkly SDKs and Relay Proxy read. `<project>/<environment>/<flag>.toml` holds each flag's
override state after its latest change; the commit trailers say which stores were written and at
which versions. `relayctl log` lists the commits with their sync status (git notes under
refs/notes/relayctl-sync); `relayctl sync` replays pending ones onto LaunchDarkly.

Do not commit here by hand: relayctl holds a lock while it writes.
";

impl Journal {
    /// Opens the journal at `path`, creating it (marked as relayctl's) with an initial commit if
    /// absent, takes its lock (waiting up to `options.lock_wait` for another relayctl to release
    /// it), checks that it may be committed to, and recovers what a killed relayctl left in the
    /// write-ahead log ([`Journal::recovery`]). Refuses a repository that is not a journal, a
    /// detached HEAD, a lost branch and a lock file git left.
    pub fn open_locked(path: &Path, options: &Options) -> Result<Journal> {
        let (repo, found) = repo::open_or_init(path)?;
        let author = Identity::resolve(&repo, options.author)?;
        let lock = repo::lock(&repo, path, options)?;
        // Only under the lock: another relayctl may be creating the branch (its first commit
        // written, the branch not yet) until it lets go.
        let branch = repo::branch(&repo, path, &found)?;
        let released = repo::check_lock_files(&repo, path, &branch)?;
        if !found.marked {
            repo::mark(&repo, &branch.name)
                .with_context(|| format!("marking {} as relayctl's journal", path.display()))?;
        }
        let mut journal = Journal {
            repo,
            path: path.to_path_buf(),
            _lock: Some(lock),
            branch: branch.name,
            dirty: false,
            author: Some(author),
            logs: Logs::default(),
            recovery: Recovery {
                released_lock: released,
                ..Recovery::default()
            },
            notes: Vec::new(),
            notes_written: std::time::Instant::now(),
        };
        if !branch.born {
            journal.initial_commit().map_err(|e| journal.explain(e))?;
        }
        damage::check(&journal.repo, path, &journal.branch)?;
        journal.compact(options.on_wait)?;
        journal.recover()?;
        Ok(journal)
    }

    /// Opens an existing journal for reading only; `None` if there is none yet. Refuses a
    /// repository that is not a journal, a detached HEAD and a lost branch.
    pub fn open_existing(path: &Path) -> Result<Option<Journal>> {
        let Some((repo, found)) = repo::open_existing(path)? else {
            return Ok(None);
        };
        let branch = repo::branch(&repo, path, &found)?;
        damage::check(&repo, path, &branch.name)?;
        Ok(Some(Journal {
            repo,
            path: path.to_path_buf(),
            _lock: None,
            branch: branch.name,
            dirty: false,
            author: None,
            logs: Logs::default(),
            recovery: Recovery::default(),
            notes: Vec::new(),
            notes_written: std::time::Instant::now(),
        }))
    }

    /// The file naming the team lease this journal's apply holds (`crate::lease`'s record):
    /// in `.git`, beside the journal's lock, and never committed.
    pub fn lease_record(&self) -> PathBuf {
        self.repo.path().join("relayctl-lease")
    }

    /// Who this journal's commits are by, `Name <email>`: also who holds the team lease.
    pub fn author(&self) -> Option<String> {
        self.author.as_ref().map(ToString::to_string)
    }

    fn signature(&self) -> Result<Signature<'static>> {
        let author = self
            .author
            .as_ref()
            .context("the journal must be locked to be written")?;
        author.signature(&git2::Time::new(now(), 0))
    }

    fn initial_commit(&mut self) -> Result<()> {
        let sig = self.signature()?;
        let context = || {
            format!(
                "creating the initial commit of the journal {}",
                self.path.display()
            )
        };
        let blob = self.repo.blob(README.as_bytes()).with_context(context)?;
        let mut tb = self.repo.treebuilder(None).with_context(context)?;
        tb.insert("README.md", blob, 0o100644).with_context(context)?;
        let tree = self
            .repo
            .find_tree(tb.write().with_context(context)?)
            .with_context(context)?;
        self.repo
            .commit(Some(&self.branch), &sig, &sig, repo::ROOT_SUBJECT, &tree, &[])
            .with_context(context)?;
        self.dirty = true;
        Ok(())
    }

    /// Runs `f` with a [`Writer`] that appends commits to the journal, then writes out whatever
    /// `f` committed, even if `f` failed. Needs the lock ([`Journal::open_locked`]). On failure,
    /// says what the write-ahead log keeps for the next run.
    pub fn write<T>(&mut self, f: impl FnOnce(&mut Writer<'_>) -> Result<T>) -> Result<T> {
        let (result, flushed) = self.write_inner(f)?;
        self.dirty = true;
        match (result, flushed) {
            (Ok(value), Ok(())) => Ok(value),
            (Err(e), _) | (Ok(_), Err(e)) => Err(self.explain(e)),
        }
    }

    fn write_inner<T>(
        &mut self,
        f: impl FnOnce(&mut Writer<'_>) -> Result<T>,
    ) -> Result<(Result<T>, Result<()>)> {
        ensure!(self._lock.is_some(), "the journal must be locked to be written");
        let context = || format!("preparing to write to the journal {}", self.path.display());
        // libgit2's object cache keeps every tree and commit the writer parses, up to 256 MiB;
        // each is parsed about once here, so the cache only costs memory (10,000 commits: 259
        // MiB with it, 46 MiB without, in the same time).
        git2::opts::enable_caching(false);
        // Reading an object back re-hashes it to check its id by default: while writing, every
        // object read is one this writer made or packed a moment before, and SHA-1 was the largest
        // cost left (apply of 10,000 changes: about a third less time without it). Other reads
        // (log, sync, verify, recovery) keep the check.
        git2::opts::strict_hash_verification(false);
        let _verify_again = VerifyHashesAgain;
        let repo = Repository::open(&self.path).with_context(context)?;
        let odb = repo.odb().with_context(context)?;
        // Commits are built apart from the journal, in objects held in memory ([`writer::Memory`]).
        let memory = Repository::from_odb(git2::Odb::new().with_context(context)?).with_context(context)?;
        let memory_odb = memory.odb().with_context(context)?;
        let mempack = memory_odb.add_new_mempack_backend(1).with_context(context)?;
        let tip = repo
            .find_reference(&self.branch)
            .and_then(|r| r.peel_to_commit())
            .with_context(context)?
            .id();
        let author = self
            .author
            .clone()
            .context("the journal must be locked to be written")?;
        let wal = wal::Wal::open(wal::path(repo.path()))?;
        let mut writer = Writer {
            repo: &repo,
            odb: &odb,
            memory: writer::Memory {
                repo: &memory,
                odb: &memory_odb,
                mempack: &mempack,
            },
            wal,
            author,
            branch: self.branch.clone(),
            tip,
            unflushed: 0,
            flush_at: FLUSH_EVERY,
            written: layout::Written::default(),
            path: &self.path,
            logs: &mut self.logs,
            next: 0,
        };
        let result = f(&mut writer);
        let flushed = writer.flush();
        Ok((result, flushed))
    }

    /// `e`, a failure to write the journal, told in the terms the operator acts on: a full disk
    /// in one line, and what the write-ahead log keeps for the next run.
    fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        let wal = wal::path(self.repo.path());
        let kept = wal::pending(&wal);
        let keep = match kept {
            0 => String::new(),
            n => format!(
                ". Nothing is lost: the write-ahead log {} keeps the {n} change(s) written to the stores \
                 that are not in the journal yet; fix the cause and run `relayctl apply` again, which \
                 records them (do not delete the log)",
                wal.display()
            ),
        };
        if disk_full(self.repo.path()) {
            return anyhow!(
                "the disk holding the journal {} is full; free space there and run this again{keep}",
                self.path.display()
            );
        }
        match kept {
            0 => e,
            _ => e.context(format!(
                "the journal {} is not up to date{keep}",
                self.path.display()
            )),
        }
    }

    /// Reads the write-ahead log a killed relayctl left: commits its done lines that did not land
    /// and keeps its unfinished intents for [`Journal::interrupted`].
    fn recover(&mut self) -> Result<()> {
        let path = wal::path(self.repo.path());
        let mut leftover = wal::read(&path)?;
        self.recovery.wal = path;
        self.recovery.torn = leftover.torn;
        if leftover.len() == 0 {
            return Ok(());
        }
        // A crash between moving the branch and emptying the log leaves done lines that landed.
        let done = leftover.logs.flags.recovering.len() + leftover.logs.keys.recovering.len();
        let mut landed = std::collections::HashSet::new();
        let mut walk = self.repo.revwalk()?;
        walk.push_ref(&self.branch)?;
        for oid in walk.take(done) {
            let c = self.repo.find_commit(oid?)?;
            landed.insert((c.message().unwrap_or("").to_owned(), c.time().seconds()));
        }
        not_landed(&mut leftover.logs.flags, &landed);
        not_landed(&mut leftover.logs.keys, &landed);
        self.recovery.commits = leftover.logs.flags.recovering.len() + leftover.logs.keys.recovering.len();
        // Every kind registered before any is committed: the flushes that committing causes must
        // keep in the log every done line not in the history yet.
        self.logs = leftover.logs;
        self.write(|w| w.commit_recovered()).context(
            "the write-ahead log holds changes an earlier relayctl wrote to the stores, and they could \
             not be committed",
        )
    }

    /// Merges the packfiles when too many have piled up ([`repack`]). Maintenance, not a
    /// condition of writing: a compaction that fails leaves the packs as they were, says why
    /// (through `on_wait`), and the run goes on.
    fn compact(&mut self, on_wait: &dyn Fn(&str)) -> Result<()> {
        match repack::compact(&self.repo, on_wait) {
            Ok(0) => {}
            Ok(merged) => {
                self.recovery.compacted = merged;
                // A handle that has not seen the packs merged away.
                self.repo = Repository::open(&self.path)
                    .with_context(|| format!("opening {}", self.path.display()))?;
            }
            Err(e) => on_wait(&format!(
                "warning: the journal's packfiles were left as they were ({e:#}); relayctl reads and writes \
                 them as they are, and tries again on its next run"
            )),
        }
        Ok(())
    }

    /// What opening the journal recovered from a killed relayctl.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Writes of kind `K` that an interrupted relayctl started and did not record: `apply`
    /// reads the stores to tell which targets took them, and records that with
    /// [`Writer::finish`].
    pub fn interrupted<K: Journaled>(&self) -> &[Intent<K>] {
        &K::log_of(&self.logs).interrupted
    }

    /// How many flag changes in the write-ahead log wait for a locking relayctl to record them.
    pub fn unrecorded(&self) -> usize {
        wal::pending(&wal::path(self.repo.path()))
    }

    /// Every flag commit of the journal's branch, newest first, with its sync note and the state
    /// its tree records.
    pub fn entries(&self) -> Result<Vec<Recorded>> {
        self.walk(message::read)
    }

    /// `read` of every commit of the branch, newest first, given its sync note; keeps the `Some`s.
    /// An object git cannot find or read there is the journal's damage, said as such.
    pub(super) fn walk<T>(
        &self,
        read: impl Fn(&Repository, &git2::Odb, &git2::Commit, Option<SyncNote>) -> Result<Option<T>>,
    ) -> Result<Vec<T>> {
        self.walk_inner(read).map_err(|e| {
            let odb = e
                .chain()
                .filter_map(|c| c.downcast_ref::<git2::Error>())
                .any(|g| matches!(g.class(), git2::ErrorClass::Odb | git2::ErrorClass::Zlib));
            match odb {
                true => damage::damaged(&self.path, &format!("{e:#}")),
                false => e,
            }
        })
    }

    fn walk_inner<T>(
        &self,
        read: impl Fn(&Repository, &git2::Odb, &git2::Commit, Option<SyncNote>) -> Result<Option<T>>,
    ) -> Result<Vec<T>> {
        let context = || format!("reading the journal {}", self.path.display());
        let mut walk = self.repo.revwalk().with_context(context)?;
        if walk.push_ref(&self.branch).is_err() {
            return Ok(Vec::new());
        }
        // What teammates pushed and this journal has not combined yet (SPEC "Working as a team").
        let _ = walk.push_ref(&remote::tracking(&self.branch));
        walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME)
            .with_context(context)?;
        let odb = self.repo.odb().with_context(context)?;
        let mut notes = notes::read_all(&self.repo).with_context(context)?;
        team::add_remote_notes(&self.repo, &mut notes);
        notes.extend(self.notes.iter().cloned());
        let mut out = Vec::new();
        for oid in walk {
            let oid = oid.with_context(context)?;
            let at = || format!("reading commit {oid} of the journal {}", self.path.display());
            let commit = self.repo.find_commit(oid).with_context(at)?;
            if let Some(r) = read(&self.repo, &odb, &commit, notes.remove(&oid)).with_context(at)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Sets (replacing) the sync notes of several commits. They are held in memory (and read
    /// back by [`Journal::entries`] at once) and written out together, as one notes commit in
    /// one packfile, once [`NOTES_EVERY`] has passed since the last write, by
    /// [`Journal::write_notes`], or when the journal is closed.
    pub fn set_notes(&mut self, notes: &[(Oid, SyncNote)]) -> Result<()> {
        self.notes.extend_from_slice(notes);
        match self.notes_written.elapsed() >= NOTES_EVERY {
            true => self.write_notes(),
            false => Ok(()),
        }
    }

    /// Whether sync notes are held in memory, not yet written out.
    #[cfg(test)]
    pub fn notes_held(&self) -> bool {
        !self.notes.is_empty()
    }

    /// Writes out the sync notes held in memory, in one notes commit.
    pub fn write_notes(&mut self) -> Result<()> {
        self.notes_written = std::time::Instant::now();
        if self.notes.is_empty() {
            return Ok(());
        }
        let sig = self.signature()?;
        let context = || format!("noting sync status in the journal {}", self.path.display());
        let (commit, pack) = notes::write_all(&self.repo, &sig, &self.notes).with_context(context)?;
        damage::note_whole(&self.repo, &pack);
        repo::move_ref(&self.repo, notes::NOTES_REF, commit, "relayctl sync").with_context(context)?;
        self.notes.clear();
        Ok(())
    }

    /// Brings the working tree up to date with the branch, so `ls` and `cat` in the journal show
    /// what `git log` does; returns a warning to show when it was left as it is (someone's
    /// changes are there, or git could not update it). The commits never depend on it.
    pub fn close(mut self) -> Option<String> {
        let notes = self.write_notes().err().map(|e| {
            format!(
                "{e:#}; LaunchDarkly has what sync sent, and the next `relayctl sync` notes it (it finds \
                 LaunchDarkly already in each flag's state and sends nothing twice)"
            )
        });
        notes.or_else(|| self.checkout(true))
    }

    /// Whether the working tree is behind the branch (a relayctl killed before it updated the
    /// tree, say): a locked open brings it up to date when it closes, even with nothing written.
    pub fn working_tree_behind(&self) -> bool {
        worktree::behind(&self.repo)
    }

    /// Updates the working tree when this run committed, or (`behind_too`, under the lock) when
    /// it is behind the branch.
    fn checkout(&mut self, behind_too: bool) -> Option<String> {
        let written = std::mem::take(&mut self.dirty);
        let behind = behind_too && self._lock.is_some() && worktree::behind(&self.repo);
        if written || behind {
            return worktree::update(&self.repo, &self.path);
        }
        None
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.write_notes();
        let _ = self.checkout(false);
    }
}

/// Leaves in `log` only the done lines whose commit is not among `landed` (message and time of
/// the newest commits).
fn not_landed<K: Journaled>(log: &mut wal::Log<K>, landed: &std::collections::HashSet<(String, i64)>) {
    log.recovering
        .retain(|d| !landed.contains(&(K::message(&d.entry), d.time)));
}

/// The abbreviated id of `oid`, as `git log --format=%h` shows it: the shortest prefix of at
/// least 7 hex digits that names no other object in any of `odbs`. The one rule for every short id
/// relayctl prints or sends.
fn abbreviate(odbs: &[&git2::Odb], oid: Oid) -> String {
    let hex = oid.to_string();
    for len in 7..hex.len() {
        let names_only_it =
            |odb: &&git2::Odb| match Oid::from_str(&hex[..len]).and_then(|p| odb.exists_prefix(p, len)) {
                Ok(found) => found == oid,
                Err(e) => e.code() == git2::ErrorCode::NotFound,
            };
        if odbs.iter().all(names_only_it) {
            return hex[..len].to_owned();
        }
    }
    hex
}

/// Seconds since the epoch: the time of journal commits.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The name of the file [`disk_full`] writes to find out.
const SPACE_PROBE: &str = "relayctl-space-probe";

/// Whether the disk holding `git_dir` is full (or over quota): libgit2 often reports that with
/// no error message at all, so relayctl finds out by trying to write 64 KiB there.
fn disk_full(git_dir: &Path) -> bool {
    use std::io::{ErrorKind, Write};
    let probe = git_dir.join(SPACE_PROBE);
    let result =
        File::create(&probe).and_then(|mut f| f.write_all(&[0; 64 << 10]).and_then(|()| f.sync_all()));
    let _ = std::fs::remove_file(&probe);
    matches!(result, Err(e) if matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded))
}

// ---------------------------------------------------------------------------------------------
// Only for the tests of this module and its users: a journal on a temp path with a fixed author.

/// Has the packs this thread writes from now on get one byte flipped, as a bug in the pack
/// writer would (`false`: written right again).
#[cfg(test)]
pub(crate) fn corrupt_packs(on: bool) {
    pack::CORRUPT.with(|c| c.set(on));
}

#[cfg(test)]
pub(crate) fn test_options() -> Options<'static> {
    Options {
        lock_wait: Duration::from_secs(1),
        author: Some("Test Operator <op@example.com>"),
        on_wait: &|_| {},
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod bench;
