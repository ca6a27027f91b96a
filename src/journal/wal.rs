//! The journal's write-ahead log (`.git/relayctl-wal.jsonl`): one JSON line per event, an
//! *intent* before an item's store writes and a *done* line right after them, for flags and
//! plain keys alike. The only file that knows its format.
//!
//! Commits are built in memory and written out in batches; the log is what makes that safe. If
//! relayctl is killed, the next one that locks the journal commits the done lines that did not
//! land, and keeps the intents without a done line: only the stores can tell whether those writes
//! happened (`apply` reads them before doing anything else). Intents are saved to disk
//! ([`Wal::sync`]) before their store writes, so a power cut loses at most done lines, which
//! come back the same way.
//!
//! A record leaves the log only once what it stands for is in the journal's history: emptying
//! the log after a flush keeps every intent still open and every done line whose commit was not
//! made, and it replaces the file in one rename, so a crash mid-way leaves the old log whole.

use super::entry::{Commits, Entry};
use crate::flag::Flag;
use crate::key::Key;
use crate::kind::{Kind, StoreTarget};
use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The log's file name, inside the repository's `.git`.
const FILE: &str = "relayctl-wal.jsonl";

/// An item's write logged as started: the change, and each target with the version the write
/// expects to replace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Intent<K: Kind> {
    pub(super) id: String,
    pub(super) time: i64,
    /// The change, with no target written or failed yet.
    pub entry: Entry<K>,
    pub targets: Vec<(StoreTarget, K::Version)>,
}

/// An item's writes are done; `entry` says which targets took them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Done<K: Kind> {
    pub id: String,
    pub time: i64,
    pub entry: Entry<K>,
}

/// One line of the log.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Record {
    /// About to write a flag.
    Intent(Intent<Flag>),
    /// A flag's writes are done.
    Done(Done<Flag>),
    /// About to write a plain Redis key.
    KeyIntent(Intent<Key>),
    /// A key's writes are done.
    KeyDone(Done<Key>),
}

impl Record {
    /// The id of the write it logs, and whether it is its done line.
    fn write(&self) -> (&str, bool) {
        match self {
            Record::Intent(i) => (&i.id, false),
            Record::KeyIntent(i) => (&i.id, false),
            Record::Done(d) => (&d.id, true),
            Record::KeyDone(d) => (&d.id, true),
        }
    }
}

/// A kind of item the journal records through its write-ahead log.
pub trait Journaled: Commits {
    /// This kind's records among a writer's.
    fn log(logs: &mut Logs) -> &mut Log<Self>;
    fn log_of(logs: &Logs) -> &Log<Self>;
    /// An intent or a done line of this kind, as a line of the log.
    fn intent_line(intent: Intent<Self>) -> Record;
    fn done_line(done: Done<Self>) -> Record;
}

impl Journaled for Flag {
    fn log(logs: &mut Logs) -> &mut Log<Flag> {
        &mut logs.flags
    }

    fn log_of(logs: &Logs) -> &Log<Flag> {
        &logs.flags
    }

    fn intent_line(intent: Intent<Flag>) -> Record {
        Record::Intent(intent)
    }

    fn done_line(done: Done<Flag>) -> Record {
        Record::Done(done)
    }
}

impl Journaled for Key {
    fn log(logs: &mut Logs) -> &mut Log<Key> {
        &mut logs.keys
    }

    fn log_of(logs: &Logs) -> &Log<Key> {
        &logs.keys
    }

    fn intent_line(intent: Intent<Key>) -> Record {
        Record::KeyIntent(intent)
    }

    fn done_line(done: Done<Key>) -> Record {
        Record::KeyDone(done)
    }
}

/// The records of one kind that are not in the journal's history yet.
#[derive(Debug)]
pub struct Log<K: Kind> {
    /// Intents of an earlier, interrupted run not yet finished (resolved by reading the stores).
    pub interrupted: Vec<Intent<K>>,
    /// Intents of this run whose done line is not logged yet.
    pub open: Vec<Intent<K>>,
    /// Done lines whose commit could not be made.
    pub uncommitted: Vec<Done<K>>,
    /// Done lines of a killed relayctl still to commit, kept until each is in the history.
    pub recovering: VecDeque<Done<K>>,
}

impl<K: Kind> Default for Log<K> {
    fn default() -> Self {
        Log {
            interrupted: Vec::new(),
            open: Vec::new(),
            uncommitted: Vec::new(),
            recovering: VecDeque::new(),
        }
    }
}

impl<K: Journaled> Log<K> {
    /// The lines to keep in the log.
    fn lines(&self) -> impl Iterator<Item = Record> + '_ {
        let intents = self.interrupted.iter().chain(&self.open).cloned();
        let done = self.uncommitted.iter().chain(&self.recovering).cloned();
        intents.map(K::intent_line).chain(done.map(K::done_line))
    }
}

/// Every kind's records.
#[derive(Debug, Default)]
pub struct Logs {
    pub flags: Log<Flag>,
    pub keys: Log<Key>,
}

impl Logs {
    /// Every line to keep in the log, flags first.
    pub fn lines(&self) -> Vec<Record> {
        self.flags.lines().chain(self.keys.lines()).collect()
    }
}

/// A line written by a relayctl from before flags and keys shared one engine, in today's shape:
/// a flag line's `key` is its `id`, its `from` moved into its entry; a key line's targets had no
/// version. Lines of today's shape pass unchanged.
fn upgrade(mut line: Value) -> Value {
    let Some(o) = line.as_object_mut() else {
        return line;
    };
    if let Some(id) = o.remove("key") {
        o.insert("id".into(), id);
    }
    if let (Some(from), Some(Value::Object(entry))) = (o.remove("from"), o.get_mut("entry")) {
        entry.insert("from".into(), from);
    }
    let unversioned = |v: &mut Value| {
        for t in v.as_array_mut().into_iter().flatten().filter(|t| t.is_object()) {
            *t = Value::Array(vec![t.take(), Value::Null]);
        }
    };
    unversioned(o.get_mut("targets").unwrap_or(&mut Value::Null));
    if let Some(written) = o.get_mut("entry").and_then(|e| e.get_mut("written")) {
        unversioned(written);
    }
    line
}

/// What a log left behind by an earlier run holds: per kind, the done lines that took on some
/// target (to commit unless they already landed, in `recovering`) and the started writes with
/// no done line (in `interrupted`).
pub(super) struct Leftover {
    pub logs: Logs,
    /// Lines cut short by a kill mid-write.
    pub torn: usize,
}

impl Leftover {
    /// How many writes it holds that are not in the journal yet (a torn line counts as one).
    pub fn len(&self) -> usize {
        let (f, k) = (&self.logs.flags, &self.logs.keys);
        f.recovering.len() + f.interrupted.len() + k.recovering.len() + k.interrupted.len() + self.torn
    }
}

/// The path of the log of the repository whose `.git` is `git_dir`.
pub(super) fn path(git_dir: &Path) -> PathBuf {
    git_dir.join(FILE)
}

/// Reads the log at `path` (absent: empty).
pub(super) fn read(path: &Path) -> Result<Leftover> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(anyhow!(e).context(format!("reading {}", path.display()))),
    };
    let mut records = Vec::new();
    let mut torn = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str(line).and_then(|v| serde_json::from_value::<Record>(upgrade(v))) {
            Ok(r) => records.push(r),
            Err(_) => torn += 1,
        }
    }
    let finished: HashSet<String> = records
        .iter()
        .filter_map(|r| match r.write() {
            (id, true) => Some(id.to_owned()),
            (_, false) => None,
        })
        .collect();
    let mut leftover = Leftover {
        logs: Logs::default(),
        torn,
    };
    for record in records {
        match record {
            Record::Intent(i) => keep_intent(&mut leftover.logs, i, &finished),
            Record::KeyIntent(i) => keep_intent(&mut leftover.logs, i, &finished),
            Record::Done(d) => keep_done(&mut leftover.logs, d),
            Record::KeyDone(d) => keep_done(&mut leftover.logs, d),
        }
    }
    Ok(leftover)
}

fn keep_intent<K: Journaled>(logs: &mut Logs, intent: Intent<K>, finished: &HashSet<String>) {
    if !finished.contains(&intent.id) {
        K::log(logs).interrupted.push(intent);
    }
}

fn keep_done<K: Journaled>(logs: &mut Logs, done: Done<K>) {
    if !done.entry.written.is_empty() {
        K::log(logs).recovering.push_back(done);
    }
}

/// How many item changes the log at `path` holds that are not in the journal yet: done and
/// unfinished ones, and a torn line counts as one too.
pub(super) fn pending(path: &Path) -> usize {
    match read(path) {
        Ok(l) => l.len(),
        Err(_) => {
            std::fs::read_to_string(path).map_or(0, |t| t.lines().filter(|l| !l.trim().is_empty()).count())
        }
    }
}

/// The open log, appended to by a journal writer.
pub(super) struct Wal {
    file: File,
    path: PathBuf,
}

impl Wal {
    /// Opens (creating) the log at `path` for appending.
    pub fn open(path: PathBuf) -> Result<Wal> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening the journal's write-ahead log {}", path.display()))?;
        Ok(Wal { file, path })
    }

    /// Appends `record`.
    pub fn append(&mut self, record: &Record) -> Result<()> {
        self.file.write_all(line(record).as_bytes()).with_context(|| {
            format!(
                "appending to the journal's write-ahead log {}",
                self.path.display()
            )
        })
    }

    /// Makes what was appended so far survive a power cut, not only a killed process.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().with_context(|| {
            format!(
                "saving the journal's write-ahead log {} to disk",
                self.path.display()
            )
        })
    }

    /// Replaces the log's content with `keep` (what is not in the journal's history yet), in
    /// one rename: until it lands, the old log, which holds all of `keep` and more, stays whole.
    pub fn reset(&mut self, keep: &[Record]) -> Result<()> {
        let context = || format!("emptying the journal's write-ahead log {}", self.path.display());
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".relayctl-wal-")
            .tempfile_in(dir)
            .with_context(context)?;
        let text: String = keep.iter().map(line).collect();
        tmp.write_all(text.as_bytes()).with_context(context)?;
        // On disk before it replaces the old log: a power cut must not leave an empty log where
        // unfinished intents were.
        tmp.as_file().sync_data().with_context(context)?;
        tmp.persist(&self.path)
            .map_err(|e| e.error)
            .with_context(context)?;
        *self = Wal::open(self.path.clone())?;
        Ok(())
    }
}

/// `record` as one line of the log.
fn line(record: &Record) -> String {
    let mut line = serde_json::to_string(record).expect("a log record serializes");
    line.push('\n');
    line
}
