//! The journal: a git repository whose history is the audit trail of every change relayctl made
//! (SPEC §2 "The journal"). The only file that knows the commit, trailer and notes formats.
//!
//! One commit per changed flag. Its tree holds `<project>/<environment>/<flag>.toml` with the
//! flag's override state after the change, so `git log -p` reads as a list of diffs; its message
//! carries git trailers that scripts (and `relayctl sync`) read back. Sync status lives in git
//! notes under [`NOTES_REF`], so marking a commit synced never rewrites history.
//!
//! Writing is built for runs of thousands of commits without giving up durability. Every flag
//! goes through a write-ahead log (`.git/relayctl-wal.jsonl`): an *intent* line before its store
//! writes, a *done* line right after them. Commits are built in memory (libgit2's mempack) and
//! written as one packfile every [`FLUSH_EVERY`] commits and at the end, after which the branch
//! moves and the log is emptied. If the process is killed, the next command that locks the
//! journal commits the done lines that did not land, and keeps the intents without a done line
//! as [`Intent`]s: only the stores can tell whether those writes happened, so `apply` reads them
//! and records what it finds before doing anything else. The working tree is brought up to date
//! once, on close.

use crate::desired::FlagId;
use crate::flag::{Serve, Targeting};
use crate::plan::TargetRef;
use anyhow::{anyhow, bail, ensure, Context, Result};
use git2::{Oid, Repository, Signature, Sort};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where sync status notes live.
pub const NOTES_REF: &str = "refs/notes/relayctl-sync";

/// How many commits are kept in memory before they are written out as a packfile.
pub const FLUSH_EVERY: usize = 256;

/// The write-ahead log, inside the repository's `.git`.
const WAL: &str = "relayctl-wal.jsonl";

/// What one journal commit records: a flag's new state and where it was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub id: FlagId,
    pub to: Targeting,
    pub previous_on: bool,
    /// The store version before the change (the highest among the targets written).
    pub base_version: u64,
    pub reason: Option<String>,
    /// The targets written, with the version each now holds.
    pub written: Vec<(TargetRef, u64)>,
    /// The targets that failed, with why.
    pub failed: Vec<(TargetRef, String)>,
}

impl Entry {
    /// The subject's summary: what changed, in words.
    pub fn summary(&self, from: &Targeting) -> String {
        let mut parts = Vec::new();
        if from.on != self.to.on || (from.off_variation.is_none() && from.fallthrough.is_none()) {
            parts.push(if self.to.on {
                "turn on".to_owned()
            } else {
                "turn off".to_owned()
            });
        }
        if let (Some(Serve::Variation(v)), true) = (
            &self.to.off_variation,
            from.off_variation != self.to.off_variation,
        ) {
            parts.push(format!("serve {} when off", v.value));
        }
        if let (Some(Serve::Variation(v)), true) =
            (&self.to.fallthrough, from.fallthrough != self.to.fallthrough)
        {
            parts.push(format!("fall through to {}", v.value));
        }
        parts.join(", ")
    }
}

/// A journal commit read back, with its sync status.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub oid: Oid,
    pub short: String,
    /// Commit time, seconds since the epoch.
    pub time: i64,
    /// `Name <email>`.
    pub author: String,
    pub subject: String,
    pub reason: Option<String>,
    pub id: FlagId,
    pub on: bool,
    pub previous_on: Option<bool>,
    pub base_version: u64,
    pub off_variation: Option<usize>,
    pub fallthrough: Option<usize>,
    /// The value served by `off_variation`, as the state file recorded it (`off_variation = 1 # "control"`).
    pub off_variation_value: Option<serde_json::Value>,
    /// The value served by `fallthrough`, as the state file recorded it.
    pub fallthrough_value: Option<serde_json::Value>,
    /// The `Store:` trailers: targets written with their resulting versions.
    pub stores: Vec<String>,
    /// The sync note, if any.
    pub note: Option<String>,
}

impl Recorded {
    /// Whether sync has finished with this commit (`synced ...` note).
    pub fn is_synced(&self) -> bool {
        self.note.as_deref().is_some_and(|n| n.starts_with("synced"))
    }

    /// The sync status as shown by `relayctl log`.
    pub fn status(&self) -> &str {
        self.note
            .as_deref()
            .map_or("pending", |n| n.lines().next().unwrap_or("pending"))
    }
}

/// An open journal repository, holding its lock while it exists.
pub struct Journal {
    repo: Repository,
    path: PathBuf,
    _lock: Option<File>,
    dirty: bool,
    /// Flag writes an interrupted relayctl started and did not record.
    interrupted: Vec<Intent>,
    /// The commit author, resolved once (reading git config is not free).
    author: std::cell::OnceCell<(String, String)>,
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
    /// Opens the journal at `path`, creating it with an initial commit if absent, and takes its
    /// lock, waiting up to `wait` for another relayctl process to release it.
    pub fn open_locked(path: &Path, wait: Duration) -> Result<Journal> {
        let repo = open_or_init(path)?;
        let lock = lock(&repo, path, wait)?;
        let mut journal = Journal {
            repo,
            path: path.to_path_buf(),
            _lock: Some(lock),
            dirty: false,
            interrupted: Vec::new(),
            author: Default::default(),
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
            interrupted: Vec::new(),
            author: Default::default(),
        }))
    }

    /// The repository's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn author(&self) -> Result<&(String, String)> {
        if self.author.get().is_none() {
            let _ = self.author.set(author(&self.repo)?);
        }
        Ok(self.author.get().expect("set above"))
    }

    fn signature(&self) -> Result<Signature<'static>> {
        let (name, email) = self.author()?;
        Signature::now(name, email).with_context(|| format!("invalid author {name} <{email}>"))
    }

    fn initial_commit(&mut self) -> Result<()> {
        let sig = self.signature()?;
        let blob = self.repo.blob(README.as_bytes())?;
        let mut tb = self.repo.treebuilder(None)?;
        tb.insert("README.md", blob, 0o100644)?;
        let tree = self.repo.find_tree(tb.write()?)?;
        self.repo
            .commit(Some("HEAD"), &sig, &sig, "Start the relayctl journal", &tree, &[])
            .context("creating the journal's initial commit")?;
        self.dirty = true;
        Ok(())
    }

    /// Runs `f` with a [`Writer`] that appends commits to the journal, then writes out whatever
    /// `f` committed, even if `f` failed. Needs the lock ([`Journal::open_locked`]).
    pub fn write<T>(&mut self, f: impl FnOnce(&mut Writer<'_>) -> Result<T>) -> Result<T> {
        ensure!(self._lock.is_some(), "the journal must be locked to be written");
        // A handle of its own, so the in-memory object backend lives exactly as long as the writer.
        let repo = Repository::open(&self.path)?;
        let odb = repo.odb()?;
        let mempack = odb.add_new_mempack_backend(1000)?;
        let head = repo.find_reference("HEAD")?;
        // Normally the branch HEAD names; a detached HEAD (someone checked out a commit) moves itself.
        let branch = head.symbolic_target().unwrap_or("HEAD").to_owned();
        let tip = repo.head()?.peel_to_commit()?.id();
        let (name, email) = self.author()?.clone();
        let Journal {
            path, interrupted, ..
        } = self;
        let wal = File::options()
            .create(true)
            .append(true)
            .open(repo.path().join(WAL))
            .with_context(|| format!("opening the journal's write-ahead log in {}", path.display()))?;
        let mut writer = Writer {
            repo: &repo,
            odb: &odb,
            mempack: &mempack,
            wal,
            name,
            email,
            branch,
            tip,
            unflushed: 0,
            path,
            interrupted,
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
        let wal = self.repo.path().join(WAL);
        let (records, torn) = read_wal(&wal)?;
        if records.is_empty() && torn == 0 {
            return Ok(());
        }
        let done: std::collections::HashSet<&str> = records
            .iter()
            .filter_map(|r| match r {
                WalRecord::Done { key, .. } => Some(key.as_str()),
                WalRecord::Intent(_) => None,
            })
            .collect();
        let interrupted: Vec<Intent> = records
            .iter()
            .filter_map(|r| match r {
                WalRecord::Intent(i) if !done.contains(i.key.as_str()) => Some(i.clone()),
                _ => None,
            })
            .collect();
        let mut unlanded: Vec<(&Entry, &Targeting, i64)> = records
            .iter()
            .filter_map(|r| match r {
                WalRecord::Done {
                    entry, from, time, ..
                } if !entry.written.is_empty() => Some((entry, from, *time)),
                _ => None,
            })
            .collect();
        // A crash between moving the branch and emptying the log leaves done lines that landed.
        let mut landed = std::collections::HashSet::new();
        let mut walk = self.repo.revwalk()?;
        walk.push_head()?;
        for oid in walk.take(unlanded.len()) {
            let c = self.repo.find_commit(oid?)?;
            landed.insert((c.message().unwrap_or("").to_owned(), c.time().seconds()));
        }
        unlanded.retain(|(entry, from, time)| !landed.contains(&(message(entry, from), *time)));
        let recovered = unlanded.len();
        self.interrupted = interrupted;
        self.write(|w| {
            unlanded
                .iter()
                .try_for_each(|(e, f, t)| w.commit(e, f, *t).map(drop))
        })?;
        if recovered > 0 {
            eprintln!(
                "Recovered {recovered} journal commit(s) that an interrupted relayctl had written to the stores \
                 but not yet to the journal {}.",
                self.path.display()
            );
        }
        if torn > 0 {
            eprintln!(
                "warning: {torn} line(s) of the journal's write-ahead log {} were cut short by an interruption and \
                 could not be read; run `relayctl plan` and compare the stores with `relayctl log`.",
                wal.display()
            );
        }
        Ok(())
    }

    /// Flag writes that an interrupted relayctl started and did not record: `apply` reads the
    /// stores to tell which targets took them, and records that with [`Writer::finish`].
    pub fn interrupted(&self) -> &[Intent] {
        &self.interrupted
    }

    /// How many lines of the write-ahead log wait for a locking relayctl to record them.
    pub fn unrecorded(&self) -> usize {
        read_wal(&self.repo.path().join(WAL)).map_or(0, |(records, torn)| records.len() + torn)
    }

    /// Every flag commit, newest first, with its sync note.
    pub fn entries(&self) -> Result<Vec<Recorded>> {
        let mut walk = self.repo.revwalk()?;
        if walk.push_head().is_err() {
            return Ok(Vec::new());
        }
        walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME)?;
        let mut notes = self.notes()?;
        let mut out = Vec::new();
        for oid in walk {
            let commit = self.repo.find_commit(oid?)?;
            let note = notes.remove(&commit.id());
            if let Some(r) = parse_commit(&self.repo, &commit, note)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Every sync note, by the commit it annotates (one pass over the notes tree, instead of a
    /// lookup per commit: `entries` on a journal of thousands of commits stays fast).
    fn notes(&self) -> Result<std::collections::HashMap<Oid, String>> {
        let mut out = std::collections::HashMap::new();
        let Ok(iter) = self.repo.notes(Some(NOTES_REF)) else {
            return Ok(out);
        };
        for item in iter {
            let (note, annotated) = item.context("reading the journal's sync notes")?;
            let blob = self.repo.find_blob(note)?;
            out.insert(
                annotated,
                String::from_utf8_lossy(blob.content()).trim().to_owned(),
            );
        }
        Ok(out)
    }

    /// The sync note on `oid`, if any.
    pub fn note(&self, oid: Oid) -> Option<String> {
        note(&self.repo, oid)
    }

    /// Sets (replacing) the sync note on `oid`.
    pub fn set_note(&mut self, oid: Oid, text: &str) -> Result<()> {
        let sig = self.signature()?;
        self.repo
            .note(&sig, &sig, Some(NOTES_REF), oid, text, true)
            .with_context(|| format!("writing the sync note on journal commit {oid}"))?;
        Ok(())
    }

    /// Sets (replacing) the sync notes of several commits in one notes commit: the same result
    /// as [`Journal::set_note`] for each, without rewriting the notes tree once per commit.
    pub fn set_notes(&mut self, notes: &[(Oid, String)]) -> Result<()> {
        // A notes tree that git fanned out (`ab/cdef...`) needs libgit2's placement of each note.
        let fanned_out = notes_tree(&self.repo)?
            .1
            .is_some_and(|t| t.iter().any(|e| e.name().is_some_and(|n| n.len() < 40)));
        if notes.len() < 2 || fanned_out {
            for (oid, text) in notes {
                self.set_note(*oid, text)?;
            }
            return Ok(());
        }
        let (parent, tree) = notes_tree(&self.repo)?;
        let sig = self.signature()?;
        let mut tb = self.repo.treebuilder(tree.as_ref())?;
        for (oid, text) in notes {
            let blob = self.repo.blob(text.as_bytes())?;
            tb.insert(oid.to_string(), blob, 0o100644)?;
        }
        let tree = self.repo.find_tree(tb.write()?)?;
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        self.repo
            .commit(
                Some(NOTES_REF),
                &sig,
                &sig,
                "Notes added by relayctl sync",
                &tree,
                &parents,
            )
            .with_context(|| {
                format!(
                    "writing {} sync notes in the journal {}",
                    notes.len(),
                    self.path.display()
                )
            })?;
        Ok(())
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

/// A flag write that has been logged as started: the targets, each with the version the write
/// expects to replace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    key: String,
    time: i64,
    pub from: Targeting,
    /// The change, with no target written or failed yet.
    pub entry: Entry,
    pub targets: Vec<(TargetRef, u64)>,
}

/// One line of the write-ahead log.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum WalRecord {
    /// About to write a flag.
    Intent(Intent),
    /// The writes are done; `entry` says which targets took them.
    Done {
        key: String,
        time: i64,
        from: Targeting,
        entry: Entry,
    },
}

/// The readable lines of the log, and how many were cut short.
fn read_wal(path: &Path) -> Result<(Vec<WalRecord>, usize)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(anyhow!(e).context(format!("reading {}", path.display()))),
    };
    let mut records = Vec::new();
    let mut torn = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str(line) {
            Ok(r) => records.push(r),
            Err(_) => torn += 1,
        }
    }
    Ok((records, torn))
}

/// Appends commits to the journal; see [`Journal::write`].
pub struct Writer<'r> {
    repo: &'r Repository,
    odb: &'r git2::Odb<'r>,
    mempack: &'r git2::Mempack<'r>,
    wal: File,
    name: String,
    email: String,
    branch: String,
    tip: Oid,
    unflushed: usize,
    path: &'r Path,
    /// Intents of an earlier, interrupted run not yet finished: kept in the log across flushes.
    interrupted: &'r mut Vec<Intent>,
    next: u64,
}

impl Writer<'_> {
    fn log(&mut self, record: &WalRecord, id: &FlagId) -> Result<()> {
        let mut line = serde_json::to_string(record)?;
        line.push('\n');
        self.wal
            .write_all(line.as_bytes())
            .with_context(|| format!("logging {id} in the journal {}", self.path.display()))
    }

    /// Logs that `entry` is about to be written to `targets`. Call before the store writes.
    pub fn begin(
        &mut self,
        entry: &Entry,
        from: &Targeting,
        targets: Vec<(TargetRef, u64)>,
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
        self.log(&WalRecord::Intent(intent.clone()), &entry.id)?;
        Ok(intent)
    }

    /// Records how the writes of `intent` went (`entry.written` / `entry.failed`): logged at once,
    /// and committed (in memory, written out with the next flush) if any target took the change.
    pub fn finish(&mut self, intent: &Intent, entry: &Entry) -> Result<Option<Oid>> {
        self.log(
            &WalRecord::Done {
                key: intent.key.clone(),
                time: intent.time,
                from: intent.from.clone(),
                entry: entry.clone(),
            },
            &entry.id,
        )?;
        self.interrupted.retain(|i| i.key != intent.key);
        if entry.written.is_empty() {
            return Ok(None);
        }
        self.commit(entry, &intent.from, intent.time).map(Some)
    }

    fn commit(&mut self, entry: &Entry, from: &Targeting, time: i64) -> Result<Oid> {
        let sig = Signature::new(&self.name, &self.email, &git2::Time::new(time, 0))
            .with_context(|| format!("invalid author {} <{}>", self.name, self.email))?;
        let parent = self.repo.find_commit(self.tip)?;
        let blob = self.repo.blob(state_file(entry).as_bytes())?;
        let file = format!("{}.toml", entry.id.flag);
        let tree = upsert(
            self.repo,
            Some(&parent.tree()?),
            &[&entry.id.project, &entry.id.environment, &file],
            blob,
        )?;
        let tree = self.repo.find_tree(tree)?;
        self.tip = self
            .repo
            .commit(None, &sig, &sig, &message(entry, from), &tree, &[&parent])
            .with_context(|| format!("committing {} to the journal {}", entry.id, self.path.display()))?;
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
        self.wal.set_len(0).with_context(context)?;
        for intent in self.interrupted.clone() {
            let id = intent.entry.id.clone();
            self.log(&WalRecord::Intent(intent), &id)?;
        }
        Ok(())
    }
}

/// Opens the repository at `path`, creating it if absent.
///
/// The lock lives inside the repository, so creation cannot be under it: the repository is
/// initialised in a temporary directory beside `path` and renamed into place, so two relayctl
/// processes creating the journal at once never see a half-made one. The loser of the rename
/// opens the winner's repository.
fn open_or_init(path: &Path) -> Result<Repository> {
    // libgit2 caches only objects under 4 KiB by default, so the tree of an environment with many
    // flags would be read back from disk and inflated for every commit.
    // Every object a journal commit references was written by relayctl a moment before, so
    // libgit2's check that it exists (a file read per tree entry and parent) is pure cost.
    git2::opts::strict_object_creation(false);
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
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating the journal directory {}", path.display()))?;
            let tmp = tempfile::Builder::new()
                .prefix(".relayctl-journal-")
                .tempdir_in(parent)
                .with_context(|| format!("creating the journal repository {}", path.display()))?;
            let repo = Repository::init(tmp.path())
                .with_context(|| format!("creating the journal repository {}", path.display()))?;
            // The commits are the audit trail; a reflog entry per commit would only double the writes.
            repo.config()?.set_bool("core.logAllRefUpdates", false)?;
            // Fails only when another process has just put its repository there: use that one.
            let _ = std::fs::rename(tmp.path(), path);
            Repository::open(path).with_context(|| format!("opening the journal {}", path.display()))
        }
        Err(e) => Err(anyhow!(e).context(format!("opening the journal {}", path.display()))),
    }
}

/// Takes the journal lock (an OS file lock, released automatically if the process dies).
fn lock(repo: &Repository, path: &Path, wait: Duration) -> Result<File> {
    let lock_path = repo.path().join("relayctl.lock");
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .with_context(|| format!("opening the journal lock {}", lock_path.display()))?;
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
                if start.elapsed() >= wait {
                    bail!(
                        "{who} is still writing to the journal {} after {}s; let it finish and run this again \
                         (the lock {} is released as soon as that process exits)",
                        path.display(),
                        wait.as_secs(),
                        lock_path.display()
                    );
                }
                if !told {
                    eprintln!(
                        "Waiting for {who} to release the journal lock {}...",
                        lock_path.display()
                    );
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(anyhow!(e).context(format!("locking the journal {}", lock_path.display())))
            }
        }
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "pid {}", std::process::id())?;
    Ok(file)
}

/// The author: git config of the operator's environment, else `RELAYCTL_AUTHOR`, else the login.
fn author(repo: &Repository) -> Result<(String, String)> {
    if let Ok(config) = repo.config() {
        if let (Ok(name), Ok(email)) = (config.get_string("user.name"), config.get_string("user.email")) {
            if !name.trim().is_empty() {
                return Ok((name, email));
            }
        }
    }
    if let Ok(raw) = std::env::var("RELAYCTL_AUTHOR") {
        let (name, email) = raw
            .trim()
            .strip_suffix('>')
            .and_then(|s| s.split_once('<'))
            .map(|(n, e)| (n.trim().to_owned(), e.trim().to_owned()))
            .filter(|(n, _)| !n.is_empty())
            .ok_or_else(|| anyhow!("RELAYCTL_AUTHOR must look like \"Name <email>\", not {raw:?}"))?;
        return Ok((name, email));
    }
    let login = ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "relayctl".to_owned());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    Ok((login.clone(), format!("{login}@{host}")))
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

fn show_value(v: &Serve) -> String {
    match v {
        Serve::Variation(v) => format!("{} # {}", v.index, v.value),
        other => format!("\"{other}\""),
    }
}

/// `<project>/<environment>/<flag>.toml`: the override state after the change.
fn state_file(entry: &Entry) -> String {
    let mut out = format!(
        "# {}: override state written by relayctl\non = {}\n",
        entry.id, entry.to.on
    );
    if let Some(v) = &entry.to.off_variation {
        out += &format!("off_variation = {}\n", show_value(v));
    }
    if let Some(v) = &entry.to.fallthrough {
        out += &format!("fallthrough = {}\n", show_value(v));
    }
    if let Some(r) = &entry.reason {
        out += &format!("reason = {}\n", toml::Value::String(r.clone()));
    }
    out
}

/// A single-line trailer value.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn index_of(v: &Option<Serve>) -> Option<usize> {
    match v {
        Some(Serve::Variation(v)) => Some(v.index),
        _ => None,
    }
}

fn message(entry: &Entry, from: &Targeting) -> String {
    let mut m = format!("{}: {}\n\n", entry.id, entry.summary(from));
    if let Some(reason) = &entry.reason {
        m += reason.trim();
        m += "\n\n";
    }
    if !entry.failed.is_empty() {
        m += "Not written (apply failed there; run `relayctl plan` to see what is left):\n";
        for (t, why) in &entry.failed {
            m += &format!("- {t}: {}\n", one_line(why));
        }
        m += "\n";
    }
    let id = &entry.id;
    m += &format!(
        "Project: {}\nEnvironment: {}\nFlag: {}\n",
        id.project, id.environment, id.flag
    );
    m += &format!(
        "On: {}\nPrevious-On: {}\nBase-Version: {}\n",
        entry.to.on, from.on, entry.base_version
    );
    if let Some(i) = index_of(&entry.to.off_variation) {
        m += &format!("Off-Variation: {i}\n");
    }
    if let Some(i) = index_of(&entry.to.fallthrough) {
        m += &format!("Fallthrough: {i}\n");
    }
    for (t, version) in &entry.written {
        m += &format!("Store: {} v{version}\n", one_line(&t.to_string()));
    }
    for (t, _) in &entry.failed {
        m += &format!("Store-Failed: {}\n", one_line(&t.to_string()));
    }
    m
}

/// The variation values a state file recorded beside the indexes (`off_variation = 1 # "control"`).
fn recorded_values(state: &str) -> (Option<serde_json::Value>, Option<serde_json::Value>) {
    let value = |key: &str| {
        state.lines().find_map(|line| {
            let rest = line.strip_prefix(key)?.trim_start().strip_prefix('=')?;
            let (_, json) = rest.split_once(" # ")?;
            serde_json::from_str(json.trim()).ok()
        })
    };
    (value("off_variation"), value("fallthrough"))
}

/// The notes ref's commit and tree, if there are notes.
fn notes_tree(repo: &Repository) -> Result<(Option<git2::Commit<'_>>, Option<git2::Tree<'_>>)> {
    let parent = match repo.find_reference(NOTES_REF) {
        Ok(r) => Some(r.peel_to_commit()?),
        Err(_) => None,
    };
    let tree = parent.as_ref().map(git2::Commit::tree).transpose()?;
    Ok((parent, tree))
}

fn note(repo: &Repository, oid: Oid) -> Option<String> {
    repo.find_note(Some(NOTES_REF), oid)
        .ok()
        .and_then(|n| n.message().map(|m| m.trim().to_owned()))
}

fn parse_commit(repo: &Repository, commit: &git2::Commit, note: Option<String>) -> Result<Option<Recorded>> {
    let message = commit.message().unwrap_or("");
    let trailers = git2::message_trailers_strs(message)?;
    let get = |key: &str| {
        trailers
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_owned())
    };
    let (Some(project), Some(environment), Some(flag)) = (get("Project"), get("Environment"), get("Flag"))
    else {
        return Ok(None);
    };
    let short = commit.as_object().short_id()?.as_str().unwrap_or("").to_owned();
    let bad = |what: &str| anyhow!("journal commit {short} has an invalid {what} trailer");
    let parse_bool = |v: String| v.parse::<bool>().map_err(|_| bad("boolean"));
    let on = parse_bool(get("On").ok_or_else(|| bad("On"))?)?;
    let previous_on = get("Previous-On").map(parse_bool).transpose()?;
    let base_version = get("Base-Version")
        .ok_or_else(|| bad("Base-Version"))?
        .parse()
        .map_err(|_| bad("Base-Version"))?;
    let index = |k: &str| get(k).map(|v| v.parse::<usize>().map_err(|_| bad(k))).transpose();
    let body = message.split_once("\n\n").map(|(_, b)| b).unwrap_or("");
    let reason = body
        .split("\n\n")
        .next()
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.starts_with("Project:") && !p.starts_with("Not written"))
        .map(str::to_owned);
    let file = format!("{project}/{environment}/{flag}.toml");
    let recorded = commit
        .tree()
        .ok()
        .and_then(|t| t.get_path(Path::new(&file)).ok())
        .and_then(|e| repo.find_blob(e.id()).ok())
        .map(|b| recorded_values(&String::from_utf8_lossy(b.content())))
        .unwrap_or_default();
    let author = commit.author();
    Ok(Some(Recorded {
        oid: commit.id(),
        short: short.clone(),
        time: commit.time().seconds(),
        author: format!(
            "{} <{}>",
            author.name().unwrap_or(""),
            author.email().unwrap_or("")
        ),
        subject: commit.summary().unwrap_or("").to_owned(),
        reason,
        id: FlagId {
            project,
            environment,
            flag,
        },
        on,
        previous_on,
        base_version,
        off_variation: index("Off-Variation")?,
        fallthrough: index("Fallthrough")?,
        off_variation_value: recorded.0,
        fallthrough_value: recorded.1,
        stores: trailers
            .iter()
            .filter(|(k, _)| *k == "Store")
            .map(|(_, v)| v.to_owned())
            .collect(),
        note,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flag::Variation;

    fn entry() -> Entry {
        Entry {
            id: FlagId {
                project: "default".into(),
                environment: "production".into(),
                flag: "new-checkout".into(),
            },
            to: Targeting {
                on: false,
                off_variation: Some(Serve::Variation(Variation {
                    index: 1,
                    value: "control".into(),
                })),
                fallthrough: None,
            },
            previous_on: true,
            base_version: 41,
            reason: Some("INC-4711: checkout returns 500".into()),
            written: vec![(
                TargetRef {
                    store: "relay-redis".into(),
                    target: "redis://10.0.0.5:6379".into(),
                },
                42,
            )],
            failed: vec![(
                TargetRef {
                    store: "relay-redis".into(),
                    target: "redis://10.0.0.6:6379".into(),
                },
                "connection\nrefused".into(),
            )],
        }
    }

    fn from() -> Targeting {
        Targeting {
            on: true,
            off_variation: Some(Serve::Unset),
            fallthrough: None,
        }
    }

    #[test]
    fn message_has_subject_reason_and_trailers() {
        insta::assert_snapshot!(message(&entry(), &from()));
    }

    #[test]
    fn commits_read_back_with_their_trailers() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("RELAYCTL_AUTHOR", "Test Operator <op@example.com>");
        let mut j = Journal::open_locked(&dir.path().join("journal"), Duration::from_secs(1)).unwrap();
        let oid = j.write(|w| record(w, &entry())).unwrap();
        let all = j.entries().unwrap();
        assert_eq!(all.len(), 1);
        let r = &all[0];
        assert_eq!(r.oid, oid);
        assert_eq!(r.id.flag, "new-checkout");
        assert!(!r.on);
        assert_eq!(r.previous_on, Some(true));
        assert_eq!(r.base_version, 41);
        assert_eq!(r.off_variation, Some(1));
        assert_eq!(r.fallthrough, None);
        assert_eq!(r.off_variation_value, Some(serde_json::json!("control")));
        assert_eq!(r.fallthrough_value, None);
        assert_eq!(r.reason.as_deref(), Some("INC-4711: checkout returns 500"));
        assert_eq!(r.stores, ["relay-redis redis://10.0.0.5:6379 v42"]);
        assert_eq!(r.status(), "pending");
        j.set_note(oid, "synced 2026-11-22T03:04:05Z ld-version=43")
            .unwrap();
        assert!(j.entries().unwrap()[0].is_synced());
        let second = j.write(|w| record(w, &entry())).unwrap();
        j.set_notes(&[(oid, "conflict: x".into()), (second, "skipped: y".into())])
            .unwrap();
        let notes: Vec<_> = j.entries().unwrap().into_iter().map(|r| r.note).collect();
        assert_eq!(notes, [Some("skipped: y".into()), Some("conflict: x".into())]);
        assert_eq!(j.note(oid).as_deref(), Some("conflict: x"));
        j.close().unwrap();
        let state =
            std::fs::read_to_string(dir.path().join("journal/default/production/new-checkout.toml")).unwrap();
        assert!(
            state.contains("on = false\noff_variation = 1 # \"control\"\n"),
            "{state}"
        );
    }

    /// What apply does for one flag whose writes all succeed.
    fn record(w: &mut Writer<'_>, e: &Entry) -> Result<Oid> {
        let mut started = e.clone();
        started.written.clear();
        started.failed.clear();
        let targets = e.written.iter().map(|(t, v)| (t.clone(), v - 1)).collect();
        let intent = w.begin(&started, &from(), targets)?;
        Ok(w.finish(&intent, e)?.expect("written"))
    }

    fn wal_lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path.join(".git").join(WAL))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_killed_run_is_recovered_once_and_its_unfinished_writes_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("RELAYCTL_AUTHOR", "Test Operator <op@example.com>");
        let path = dir.path().join("journal");
        let mut j = Journal::open_locked(&path, Duration::from_secs(1)).unwrap();
        // Capture the log lines of three flags: one that landed, one done but not landed, one
        // only started.
        let mut lines = Vec::new();
        j.write(|w| {
            record(w, &entry())?;
            lines.extend(wal_lines(&path));
            let mut lost = entry();
            lost.id.flag = "pricing-page".into();
            record(w, &lost)?;
            let mut started = entry();
            started.id.flag = "search-v2".into();
            started.written.clear();
            w.begin(
                &started,
                &from(),
                vec![(
                    TargetRef {
                        store: "s".into(),
                        target: "t".into(),
                    },
                    7,
                )],
            )?;
            lines = wal_lines(&path);
            Ok(())
        })
        .unwrap();
        assert!(wal_lines(&path).is_empty(), "a flush empties the log");
        assert_eq!(lines.len(), 5, "{lines:#?}");
        // The kill: the branch is back before the second flag, the log as it was.
        let first = j.entries().unwrap()[1].oid;
        j.repo.reference("HEAD", first, true, "test").unwrap_or_else(|_| {
            let branch = j
                .repo
                .find_reference("HEAD")
                .unwrap()
                .symbolic_target()
                .unwrap()
                .to_owned();
            j.repo.reference(&branch, first, true, "test").unwrap()
        });
        drop(j);
        std::fs::write(
            path.join(".git").join(WAL),
            lines.join("\n") + "\n{\"kind\": \"do",
        )
        .unwrap();

        let j = Journal::open_locked(&path, Duration::from_secs(1)).unwrap();
        let flags: Vec<String> = j.entries().unwrap().iter().map(|r| r.id.flag.clone()).collect();
        assert_eq!(
            flags,
            ["pricing-page", "new-checkout"],
            "recovered once, in order"
        );
        assert_eq!(j.interrupted().len(), 1);
        assert_eq!(j.interrupted()[0].entry.id.flag, "search-v2");
        assert_eq!(wal_lines(&path).len(), 1, "the unfinished intent stays logged");
        drop(j);
        // Still there for the next run, until someone finishes it.
        let mut j = Journal::open_locked(&path, Duration::from_secs(1)).unwrap();
        let intent = j.interrupted()[0].clone();
        j.write(|w| w.finish(&intent, &intent.entry)).unwrap();
        assert!(j.interrupted().is_empty());
        assert!(wal_lines(&path).is_empty());
        assert_eq!(
            j.entries().unwrap().len(),
            2,
            "nothing written, nothing committed"
        );
    }

    #[test]
    fn many_commits_span_several_flushes() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("RELAYCTL_AUTHOR", "Test Operator <op@example.com>");
        let path = dir.path().join("journal");
        let mut j = Journal::open_locked(&path, Duration::from_secs(1)).unwrap();
        let n = FLUSH_EVERY * 2 + 3;
        j.write(|w| {
            for i in 0..n {
                let mut e = entry();
                e.id.flag = format!("flag-{i}");
                record(w, &e)?;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(j.entries().unwrap().len(), n);
        j.close().unwrap();
        assert!(path
            .join(format!("default/production/flag-{}.toml", n - 1))
            .exists());
    }

    #[test]
    fn a_second_locker_waits_then_fails_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("RELAYCTL_AUTHOR", "Test Operator <op@example.com>");
        let path = dir.path().join("journal");
        let _first = Journal::open_locked(&path, Duration::from_secs(1)).unwrap();
        let err = Journal::open_locked(&path, Duration::from_millis(200))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&format!(
                "another relayctl (pid {}) is still writing",
                std::process::id()
            )),
            "{err}"
        );
    }
}

/// Seconds since the epoch: the time of journal commits and sync notes.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn formats_utc() {
        assert_eq!(super::format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::format_utc(1_795_316_645), "2026-11-22T03:04:05Z");
        assert_eq!(super::format_utc(951_782_400), "2000-02-29T00:00:00Z");
    }
}
