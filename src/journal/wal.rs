//! The journal's write-ahead log (`.git/relayctl-wal.jsonl`): one JSON line per event, an
//! *intent* before a flag's store writes and a *done* line right after them. The only file that
//! knows its format.
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

use super::message::Entry;
use crate::flag::{StoreTarget, Targeting};
use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The log's file name, inside the repository's `.git`.
const FILE: &str = "relayctl-wal.jsonl";

/// A flag write that has been logged as started: the targets, each with the version the write
/// expects to replace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    pub(super) key: String,
    pub(super) time: i64,
    pub from: Targeting,
    /// The change, with no target written or failed yet.
    pub entry: Entry,
    pub targets: Vec<(StoreTarget, u64)>,
}

/// A flag's writes are done; `entry` says which targets took them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Done {
    pub key: String,
    pub time: i64,
    pub from: Targeting,
    pub entry: Entry,
}

/// One line of the log.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Record {
    /// About to write a flag.
    Intent(Intent),
    /// The writes are done.
    Done(Done),
    /// About to write a plain Redis key.
    KeyIntent(super::keys::KeyIntent),
    /// A key's writes are done.
    KeyDone(super::keys::KeyDone),
}

/// What a log left behind by an earlier run holds.
pub(super) struct Leftover {
    /// Finished flag writes that took on some target, to commit unless they already landed.
    pub done: Vec<Done>,
    /// Started flag writes with no done line.
    pub interrupted: Vec<Intent>,
    /// Lines cut short by a kill mid-write.
    pub torn: usize,
    /// Finished key writes that took on some target.
    pub key_done: Vec<super::keys::KeyDone>,
    /// Started key writes with no done line.
    pub key_interrupted: Vec<super::keys::KeyIntent>,
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
        match serde_json::from_str(line) {
            Ok(r) => records.push(r),
            Err(_) => torn += 1,
        }
    }
    let finished: HashSet<String> = records
        .iter()
        .filter_map(|r| match r {
            Record::Done(d) => Some(d.key.clone()),
            Record::KeyDone(d) => Some(d.id.clone()),
            Record::Intent(_) | Record::KeyIntent(_) => None,
        })
        .collect();
    let mut leftover = Leftover {
        done: Vec::new(),
        interrupted: Vec::new(),
        torn,
        key_done: Vec::new(),
        key_interrupted: Vec::new(),
    };
    for record in records {
        match record {
            Record::Intent(i) if !finished.contains(&i.key) => leftover.interrupted.push(i),
            Record::Done(d) if !d.entry.written.is_empty() => leftover.done.push(d),
            Record::KeyIntent(i) if !finished.contains(&i.id) => leftover.key_interrupted.push(i),
            Record::KeyDone(d) if !d.entry.written.is_empty() => leftover.key_done.push(d),
            _ => {}
        }
    }
    Ok(leftover)
}

/// How many flag changes the log at `path` holds that are not in the journal yet: done and
/// unfinished ones, and a torn line counts as one too.
pub(super) fn pending(path: &Path) -> usize {
    match read(path) {
        Ok(l) => l.done.len() + l.interrupted.len() + l.torn + l.key_done.len() + l.key_interrupted.len(),
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
