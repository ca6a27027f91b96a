//! The journal: a git repository whose history is the audit trail of every change relayctl made
//! (SPEC §2 "The journal"), and the only source `relayctl sync` replays.
//!
//! This module owns the repository: creating it, its lock, the commit author, building commits
//! and reading them back. The formats live beside it, each in one file: [`message`] (commit
//! message, trailers, state file), [`notes`] (sync status) and [`wal`] (the write-ahead log).
//!
//! One commit per changed flag. Writing is built for runs of thousands of commits without giving
//! up durability: every flag goes through the write-ahead log (an intent before its store writes,
//! a done line right after them); commits are built in memory (libgit2's mempack) and written as
//! one packfile every [`FLUSH_EVERY`] commits and at the end, after which the branch moves and
//! the log is emptied. A killed relayctl loses nothing: the next one that locks the journal
//! commits what the log says was done, and hands back the unfinished intents
//! ([`Journal::interrupted`]) for `apply` to resolve by reading the stores. The working tree is
//! brought up to date once, on close. Status messages (waiting for the lock, what was recovered)
//! go to the caller, which decides whether to print them.

mod message;
mod notes;
mod wal;

pub use message::{Entry, Recorded};
pub use notes::SyncNote;
pub use wal::Intent;

use crate::flag::{StoreTarget, Targeting};
use anyhow::{anyhow, bail, ensure, Context, Result};
use git2::{Oid, Repository, Signature, Sort};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How many commits are kept in memory before they are written out as a packfile.
pub const FLUSH_EVERY: usize = 256;

/// How a command opens the journal for writing.
pub struct Options<'a> {
    /// How long to wait for another relayctl holding the lock.
    pub lock_wait: Duration,
    /// `RELAYCTL_AUTHOR` ("Name <email>"): the author when git config names none.
    pub author: Option<&'a str>,
    /// Told once when the lock is held by another process and relayctl starts waiting.
    pub on_wait: &'a dyn Fn(&str),
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
}

/// An open journal repository, holding its lock while it exists (when opened for writing).
pub struct Journal {
    repo: Repository,
    path: PathBuf,
    _lock: Option<File>,
    dirty: bool,
    author: Option<Identity>,
    /// Flag writes an interrupted relayctl started and did not record.
    interrupted: Vec<Intent>,
    recovery: Recovery,
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
    /// Opens the journal at `path`, creating it with an initial commit if absent, takes its lock
    /// (waiting up to `options.lock_wait` for another relayctl to release it), and recovers what
    /// a killed relayctl left in the write-ahead log ([`Journal::recovery`]).
    pub fn open_locked(path: &Path, options: &Options) -> Result<Journal> {
        let repo = open_or_init(path)?;
        let author = Identity::resolve(&repo, options.author)?;
        let lock = lock(&repo, path, options)?;
        let mut journal = Journal {
            repo,
            path: path.to_path_buf(),
            _lock: Some(lock),
            dirty: false,
            author: Some(author),
            interrupted: Vec::new(),
            recovery: Recovery::default(),
        };
        if journal.repo.head().is_err() {
            journal.initial_commit()?;
        }
        journal.recover()?;
        Ok(journal)
    }

    /// Opens an existing journal for reading only; `None` if there is none yet.
    pub fn open_existing(path: &Path) -> Result<Option<Journal>> {
        if !path.exists() {
            return Ok(None);
        }
        let repo = Repository::open(path).with_context(|| {
            format!(
                "{} exists but is not a git repository; point journal.path at the journal",
                path.display()
            )
        })?;
        Ok(Some(Journal {
            repo,
            path: path.to_path_buf(),
            _lock: None,
            dirty: false,
            author: None,
            interrupted: Vec::new(),
            recovery: Recovery::default(),
        }))
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
            .commit(Some("HEAD"), &sig, &sig, "Start the relayctl journal", &tree, &[])
            .with_context(context)?;
        self.dirty = true;
        Ok(())
    }

    /// Runs `f` with a [`Writer`] that appends commits to the journal, then writes out whatever
    /// `f` committed, even if `f` failed. Needs the lock ([`Journal::open_locked`]).
    pub fn write<T>(&mut self, f: impl FnOnce(&mut Writer<'_>) -> Result<T>) -> Result<T> {
        ensure!(self._lock.is_some(), "the journal must be locked to be written");
        let context = || format!("preparing to write to the journal {}", self.path.display());
        // A handle of its own, so the in-memory object backend lives exactly as long as the writer.
        let repo = Repository::open(&self.path).with_context(context)?;
        let odb = repo.odb().with_context(context)?;
        let mempack = odb.add_new_mempack_backend(1000).with_context(context)?;
        let head = repo.find_reference("HEAD").with_context(context)?;
        // Normally the branch HEAD names; a detached HEAD (someone checked out a commit) moves itself.
        let branch = head.symbolic_target().unwrap_or("HEAD").to_owned();
        let tip = repo
            .head()
            .and_then(|h| h.peel_to_commit())
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
            mempack: &mempack,
            wal,
            author,
            branch,
            tip,
            unflushed: 0,
            path: &self.path,
            interrupted: &mut self.interrupted,
            next: 0,
        };
        let result = f(&mut writer);
        let flushed = writer.flush();
        self.dirty = true;
        let value = result?;
        flushed?;
        Ok(value)
    }

    /// Reads the write-ahead log a killed relayctl left: commits its done lines that did not land
    /// and keeps its unfinished intents for [`Journal::interrupted`].
    fn recover(&mut self) -> Result<()> {
        let path = wal::path(self.repo.path());
        let mut leftover = wal::read(&path)?;
        self.recovery.wal = path;
        self.recovery.torn = leftover.torn;
        if leftover.done.is_empty() && leftover.interrupted.is_empty() && leftover.torn == 0 {
            return Ok(());
        }
        // A crash between moving the branch and emptying the log leaves done lines that landed.
        let mut landed = std::collections::HashSet::new();
        let mut walk = self.repo.revwalk()?;
        walk.push_head()?;
        for oid in walk.take(leftover.done.len()) {
            let c = self.repo.find_commit(oid?)?;
            landed.insert((c.message().unwrap_or("").to_owned(), c.time().seconds()));
        }
        leftover
            .done
            .retain(|(entry, from, time)| !landed.contains(&(message::message(entry, from), *time)));
        self.recovery.commits = leftover.done.len();
        self.interrupted = leftover.interrupted;
        self.write(|w| {
            leftover
                .done
                .iter()
                .try_for_each(|(e, f, t)| w.commit(e, f, *t).map(drop))
        })
    }

    /// What opening the journal recovered from a killed relayctl.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Flag writes that an interrupted relayctl started and did not record: `apply` reads the
    /// stores to tell which targets took them, and records that with [`Writer::finish`].
    pub fn interrupted(&self) -> &[Intent] {
        &self.interrupted
    }

    /// How many lines of the write-ahead log wait for a locking relayctl to record them.
    pub fn unrecorded(&self) -> usize {
        wal::lines(&wal::path(self.repo.path()))
    }

    /// Every flag commit, newest first, with its sync note.
    pub fn entries(&self) -> Result<Vec<Recorded>> {
        let context = || format!("reading the journal {}", self.path.display());
        let mut walk = self.repo.revwalk().with_context(context)?;
        if walk.push_head().is_err() {
            return Ok(Vec::new());
        }
        walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME)
            .with_context(context)?;
        let mut notes = notes::read_all(&self.repo).with_context(context)?;
        let mut out = Vec::new();
        for oid in walk {
            let oid = oid.with_context(context)?;
            let commit = self
                .repo
                .find_commit(oid)
                .with_context(|| format!("reading commit {oid} of the journal {}", self.path.display()))?;
            if let Some(r) = message::read(&self.repo, &commit, notes.remove(&oid))
                .with_context(|| format!("reading commit {oid} of the journal {}", self.path.display()))?
            {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Sets (replacing) the sync notes of several commits, in one notes commit.
    pub fn set_notes(&mut self, notes: &[(Oid, SyncNote)]) -> Result<()> {
        let sig = self.signature()?;
        notes::write_all(&self.repo, &sig, notes)
            .with_context(|| format!("noting sync status in the journal {}", self.path.display()))
    }

    /// Brings the working tree up to date with HEAD, so `ls` and `cat` in the journal show
    /// what `git log` does.
    pub fn close(mut self) -> Result<()> {
        self.checkout()
    }

    fn checkout(&mut self) -> Result<()> {
        if std::mem::take(&mut self.dirty) {
            self.repo
                .checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
                .with_context(|| format!("updating the journal's working tree in {}", self.path.display()))?;
        }
        Ok(())
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.checkout();
    }
}

/// A commit author.
#[derive(Debug, Clone, PartialEq)]
struct Identity {
    name: String,
    email: String,
}

impl Identity {
    /// The operator's git config identity, else `fallback` ("Name <email>", from
    /// `RELAYCTL_AUTHOR`), else the login name at this host.
    fn resolve(repo: &Repository, fallback: Option<&str>) -> Result<Identity> {
        if let Ok(config) = repo.config() {
            if let (Ok(name), Ok(email)) = (config.get_string("user.name"), config.get_string("user.email")) {
                if !name.trim().is_empty() {
                    return Ok(Identity { name, email });
                }
            }
        }
        if let Some(raw) = fallback {
            return raw
                .trim()
                .strip_suffix('>')
                .and_then(|s| s.split_once('<'))
                .map(|(n, e)| Identity {
                    name: n.trim().to_owned(),
                    email: e.trim().to_owned(),
                })
                .filter(|i| !i.name.is_empty())
                .ok_or_else(|| anyhow!("RELAYCTL_AUTHOR must look like \"Name <email>\", not {raw:?}"));
        }
        let login = whoami::username().unwrap_or_else(|_| "relayctl".to_owned());
        let host = whoami::hostname().unwrap_or_else(|_| "localhost".to_owned());
        Ok(Identity {
            email: format!("{login}@{host}"),
            name: login,
        })
    }

    fn signature(&self, time: &git2::Time) -> Result<Signature<'static>> {
        Signature::new(&self.name, &self.email, time)
            .with_context(|| format!("invalid journal author {} <{}>", self.name, self.email))
    }
}

/// Appends commits to the journal; see [`Journal::write`].
pub struct Writer<'r> {
    repo: &'r Repository,
    odb: &'r git2::Odb<'r>,
    mempack: &'r git2::Mempack<'r>,
    wal: wal::Wal,
    author: Identity,
    branch: String,
    tip: Oid,
    unflushed: usize,
    path: &'r Path,
    /// Intents of an earlier, interrupted run not yet finished: kept in the log across flushes.
    interrupted: &'r mut Vec<Intent>,
    next: u64,
}

impl Writer<'_> {
    /// Logs that `entry` is about to be written to `targets`. Call before the store writes.
    pub fn begin(
        &mut self,
        entry: &Entry,
        from: &Targeting,
        targets: Vec<(StoreTarget, u64)>,
    ) -> Result<Intent> {
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
            .append(&wal::Record::Intent(intent.clone()))
            .with_context(|| format!("logging {} in the journal {}", entry.id, self.path.display()))?;
        Ok(intent)
    }

    /// Leaves `intent` (from [`Writer::begin`]) unfinished on purpose: its outcome is unknown (a
    /// store that stopped answering), so it stays in the write-ahead log across flushes, for the
    /// next apply to resolve by reading the stores, as after a kill ([`Journal::interrupted`]).
    pub fn leave_unfinished(&mut self, intent: Intent) {
        self.interrupted.push(intent);
    }

    /// Records how the writes of `intent` went (`entry.written` / `entry.failed`): logged at once,
    /// and committed (in memory, written out with the next flush) if any target took the change.
    /// Returns the commit's abbreviated id.
    pub fn finish(&mut self, intent: &Intent, entry: &Entry) -> Result<Option<String>> {
        self.wal
            .append(&wal::Record::Done {
                key: intent.key.clone(),
                time: intent.time,
                from: intent.from.clone(),
                entry: entry.clone(),
            })
            .with_context(|| format!("logging {} in the journal {}", entry.id, self.path.display()))?;
        self.interrupted.retain(|i| i.key != intent.key);
        if entry.written.is_empty() {
            return Ok(None);
        }
        let oid = self.commit(entry, &intent.from, intent.time)?;
        Ok(Some(abbreviate(self.odb, oid)))
    }

    fn commit(&mut self, entry: &Entry, from: &Targeting, time: i64) -> Result<Oid> {
        let context = || format!("committing {} to the journal {}", entry.id, self.path.display());
        let sig = self.author.signature(&git2::Time::new(time, 0))?;
        let parent = self.repo.find_commit(self.tip).with_context(context)?;
        let blob = self
            .repo
            .blob(message::state_file(entry).as_bytes())
            .with_context(context)?;
        let path = message::state_path(&entry.id);
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        let tree = upsert(
            self.repo,
            Some(&parent.tree().with_context(context)?),
            &path,
            blob,
        )
        .with_context(context)?;
        let tree = self.repo.find_tree(tree).with_context(context)?;
        self.tip = self
            .repo
            .commit(
                None,
                &sig,
                &sig,
                &message::message(entry, from),
                &tree,
                &[&parent],
            )
            .with_context(context)?;
        self.unflushed += 1;
        if self.unflushed >= FLUSH_EVERY {
            self.flush()?;
        }
        Ok(self.tip)
    }

    /// Writes the commits held in memory as one packfile, moves the branch to the newest, and
    /// empties the write-ahead log.
    fn flush(&mut self) -> Result<()> {
        let context = || format!("writing commits to the journal {}", self.path.display());
        if self.unflushed > 0 {
            let mut pack = git2::Buf::new();
            self.mempack.dump(self.repo, &mut pack).with_context(context)?;
            let mut writer = self.odb.packwriter().with_context(context)?;
            writer.write_all(&pack).with_context(context)?;
            writer.commit().with_context(context)?;
            self.mempack.reset().with_context(context)?;
            self.repo
                .reference(&self.branch, self.tip, true, "relayctl")
                .with_context(context)?;
            self.unflushed = 0;
        }
        self.wal.reset(self.interrupted)
    }
}

/// The abbreviated id of `oid`, as `git log --format=%h` shows it: the shortest prefix of at
/// least 7 hex digits that names no other object in `odb`. The one rule for every short id
/// relayctl prints or sends.
fn abbreviate(odb: &git2::Odb, oid: Oid) -> String {
    let hex = oid.to_string();
    for len in 7..hex.len() {
        let unique = match Oid::from_str(&hex[..len]).and_then(|p| odb.exists_prefix(p, len)) {
            Ok(found) => found == oid,
            Err(e) => e.code() == git2::ErrorCode::NotFound,
        };
        if unique {
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

/// Opens the repository at `path`, creating it if absent.
///
/// The lock lives inside the repository, so creation cannot be under it: the repository is
/// initialised in a temporary directory beside `path` and renamed into place, so two relayctl
/// processes creating the journal at once never see a half-made one. The loser of the rename
/// opens the winner's repository.
fn open_or_init(path: &Path) -> Result<Repository> {
    // Every object a journal commit references was written by relayctl a moment before, so
    // libgit2's check that it exists (a file read per tree entry and parent) is pure cost.
    git2::opts::strict_object_creation(false);
    // libgit2 caches only objects under 4 KiB by default, so the tree of an environment with many
    // flags would be read back from disk and inflated for every commit.
    // SAFETY: this only sets a global size limit; relayctl opens its one journal from one thread.
    unsafe {
        git2::opts::set_cache_object_limit(git2::ObjectType::Tree, 16 << 20)?;
        git2::opts::set_cache_object_limit(git2::ObjectType::Commit, 1 << 20)?;
    }
    match Repository::open(path) {
        Ok(repo) => Ok(repo),
        Err(e) if e.code() == git2::ErrorCode::NotFound => {
            if path.read_dir().is_ok_and(|mut d| d.next().is_some()) {
                bail!(
                    "the journal path {} is a non-empty directory that is not a git repository; \
                     point journal.path at an empty or new directory",
                    path.display()
                );
            }
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let context = || format!("creating the journal repository {}", path.display());
            std::fs::create_dir_all(parent).with_context(context)?;
            let tmp = tempfile::Builder::new()
                .prefix(".relayctl-journal-")
                .tempdir_in(parent)
                .with_context(context)?;
            let repo = Repository::init(tmp.path()).with_context(context)?;
            // The commits are the audit trail; a reflog entry per commit would only double the writes.
            repo.config()
                .and_then(|mut c| c.set_bool("core.logAllRefUpdates", false))
                .with_context(context)?;
            // Fails only when another process has just put its repository there: use that one.
            let _ = std::fs::rename(tmp.path(), path);
            Repository::open(path).with_context(|| format!("opening the journal {}", path.display()))
        }
        Err(e) => Err(anyhow!(e).context(format!("opening the journal {}", path.display()))),
    }
}

/// Takes the journal lock (an OS file lock, released automatically if the process dies).
fn lock(repo: &Repository, path: &Path, options: &Options) -> Result<File> {
    let lock_path = repo.path().join("relayctl.lock");
    let context = || format!("locking the journal {}", lock_path.display());
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .with_context(context)?;
    let start = Instant::now();
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = File::open(&lock_path).and_then(|mut f| f.read_to_string(&mut holder));
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another relayctl".to_owned()
                } else {
                    format!("another relayctl ({holder})")
                };
                if start.elapsed() >= options.lock_wait {
                    bail!(
                        "{who} is still writing to the journal {} after {}s; let it finish and run this again \
                         (the lock {} is released as soon as that process exits)",
                        path.display(),
                        options.lock_wait.as_secs(),
                        lock_path.display()
                    );
                }
                if !told {
                    (options.on_wait)(&format!(
                        "Waiting for {who} to release the journal lock {}...",
                        lock_path.display()
                    ));
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(anyhow!(e).context(context())),
        }
    }
    file.set_len(0).with_context(context)?;
    file.rewind().with_context(context)?;
    write!(file, "pid {}", std::process::id()).with_context(context)?;
    Ok(file)
}

/// Returns the tree `root` with `blob` at `path`, creating the intermediate trees.
fn upsert(repo: &Repository, root: Option<&git2::Tree>, path: &[&str], blob: Oid) -> Result<Oid> {
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
        [] => bail!("empty path"),
    }
    Ok(tb.write()?)
}

// ---------------------------------------------------------------------------------------------
// Only for the tests of this module and its users: a journal on a temp path with a fixed author.

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
