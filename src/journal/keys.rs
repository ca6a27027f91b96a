//! Plain Redis key commits (SPEC §1 "Plain Redis keys"): the one file that knows their message,
//! trailers, state file and write-ahead-log records, and how they are committed, recovered and
//! read back for `relayctl log`.
//!
//! A key commit's state file lives under [`FOLDER`] (`_keys/<store>/<key>.toml`): a project
//! key cannot start with `_`, so it never meets a flag's `<project>/<environment>/<flag>.toml`.
//! Key commits take the flag commits' one path ([`Writer::commit_state`]): the same packfiles
//! and flushes, and the same layout ([`super::layout`]), so a store folder of more than
//! [`super::layout::FLAT_MAX`] keys fans out into `_keys/<store>/<xx>/<key>.toml` as an
//! environment's folder does.
//! Store and key names are escaped into file names ([`file_name`]: every byte but letters,
//! digits, `_`, `-` and a `.` not first becomes `%XX`); a key whose escaped name is too long for a
//! file is refused when the overrides file is read ([`check_key_names`]). The trailers start with
//! `Key-Store:`, never `Project:`, so sync and verify, which read flag commits only, never see a
//! key commit. Free text (reason, names, values) is written as flag commits write theirs
//! ([`message::body`], [`message::field`]), so it can never be read back as a trailer.

use super::message::{self, Listed, STORE};
use super::wal::Record;
use super::writer::Writer;
use super::{abbreviate, now, Journal};
use crate::flag::StoreTarget;
use crate::keys::{show_held, show_key, show_to, Stored};
use anyhow::{Context, Result};
use git2::Oid;
use serde::{Deserialize, Serialize};

/// The tree folder of key commits.
const FOLDER: &str = "_keys";
/// The longest file name (in bytes) the common file systems hold.
const MAX_NAME: usize = 255;

/// What one key commit records: the key's new value and where it was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyEntry {
    pub store: String,
    pub key: String,
    /// The value written (`None`: deleted).
    pub value: Option<String>,
    /// What the key held before (on the first target): `None` when absent.
    pub previous: Option<Stored>,
    pub reason: Option<String>,
    pub written: Vec<StoreTarget>,
    pub failed: Vec<(StoreTarget, String)>,
    /// What a target written adds about the write (the primary, replicas acknowledged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<(StoreTarget, String)>,
}

impl KeyEntry {
    /// The note on a target written, if any.
    pub fn note(&self, target: &StoreTarget) -> Option<&str> {
        self.notes
            .iter()
            .find(|(t, _)| t == target)
            .map(|(_, n)| n.as_str())
    }
}

/// A key write logged as started, with the targets it goes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyIntent {
    pub(super) id: String,
    pub(super) time: i64,
    /// The change, with no target written or failed yet.
    pub entry: KeyEntry,
    pub targets: Vec<StoreTarget>,
}

/// A key's writes are done; `entry` says which targets took them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct KeyDone {
    pub id: String,
    pub time: i64,
    pub entry: KeyEntry,
}

/// The key records a writer keeps in the write-ahead log across flushes.
pub(super) struct KeyLog<'r> {
    /// Intents of an earlier, interrupted run not yet finished.
    pub interrupted: &'r mut Vec<KeyIntent>,
    /// Intents of this run whose done line is not logged yet.
    pub open: Vec<KeyIntent>,
    /// Done lines whose commit could not be made.
    pub uncommitted: Vec<KeyDone>,
    /// Done lines of a killed relayctl still to commit, kept until each is in the history.
    pub recovering: std::collections::VecDeque<KeyDone>,
}

impl KeyLog<'_> {
    /// The records to keep in the log.
    pub fn records(&self) -> impl Iterator<Item = Record> + '_ {
        let intents = self.interrupted.iter().chain(&self.open).cloned();
        intents.map(Record::KeyIntent).chain(
            self.uncommitted
                .iter()
                .chain(&self.recovering)
                .cloned()
                .map(Record::KeyDone),
        )
    }
}

/// `name` as one file name of the journal's tree: see the module's documentation.
fn file_name(name: &str) -> String {
    let mut out = String::new();
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Checks that a key of `store` can be recorded in the journal: a non-empty name whose
/// escaped file name fits a file system.
pub fn check_key_names(store: &str, key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err(format!("an empty key name in [keys.{store}]: name the key"));
    }
    for (what, name, file) in [
        ("store name", store, file_name(store)),
        ("key", key, file_name(key) + ".toml"),
    ] {
        if file.len() > MAX_NAME {
            return Err(format!(
                "the {what} {} is too long for the journal: it keeps it in a file named {}..., {} bytes \
                 long once escaped, and a file name holds at most {MAX_NAME}; use a shorter name",
                show_key(&name.chars().take(40).collect::<String>()),
                &file[..40.min(file.len())],
                file.len()
            ));
        }
    }
    Ok(())
}

/// Where the state file of a key lives in the journal's tree: its store's folder, and the name
/// it is filed under (`<name>.toml`, laid out by [`super::layout`]).
fn state_place(entry: &KeyEntry) -> ([String; 2], String) {
    let folders = [FOLDER.to_owned(), file_name(&entry.store)];
    (folders, file_name(&entry.key))
}

/// The state file: the key's declared state after the change, exactly (TOML strings).
fn state_file(entry: &KeyEntry) -> String {
    let string = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let mut out = format!(
        "# {} {}: plain Redis key written by relayctl\nstore = {}\nkey = {}\n",
        message::field(&show_key(&entry.store)),
        message::field(&show_key(&entry.key)),
        string(&entry.store),
        string(&entry.key)
    );
    match &entry.value {
        Some(v) => out += &format!("value = {}\n", string(v)),
        None => out += "absent = true\n",
    }
    if let Some(r) = &entry.reason {
        out += &format!("reason = {}\n", string(r));
    }
    out
}

const KEY_STORE: &str = "Key-Store";
const KEY: &str = "Key";
const VALUE: &str = "Value";
const PREVIOUS_VALUE: &str = "Previous-Value";

/// The commit message of a key change: subject, reason, failures, then the trailers, written
/// by the one writer of commit messages ([`message::compose`]).
pub(super) fn message(entry: &KeyEntry) -> String {
    let what = match &entry.value {
        Some(v) => format!("set to {}", show_to(Some(v))),
        None => "delete".to_owned(),
    };
    let subject = format!("{} {}: {what}", entry.store, show_key(&entry.key));
    let previous = entry.previous.as_ref().map(|p| p.0.as_slice());
    let mut trailers = vec![
        (KEY_STORE, entry.store.clone()),
        (KEY, show_key(&entry.key)),
        (VALUE, show_to(entry.value.as_deref())),
        (PREVIOUS_VALUE, show_held(previous)),
    ];
    for t in &entry.written {
        trailers.push((STORE, message::with_note(t.to_string(), entry.note(t))));
    }
    message::compose(&subject, entry.reason.as_deref(), &entry.failed, trailers)
}

/// Whether `message` is a key commit's: its trailers start with `Key-Store:`.
fn is_key_commit(message: &str) -> bool {
    message::trailers_start_with(message, KEY_STORE)
}

impl Writer<'_> {
    /// Checks that a key's entry can be committed. Call for every key before the first write.
    pub fn check_key(&self, entry: &KeyEntry) -> Result<()> {
        check_key_names(&entry.store, &entry.key)
            .map_err(anyhow::Error::msg)
            .with_context(|| {
                format!(
                    "{} {} cannot be recorded in the journal {}; nothing was written",
                    entry.store,
                    show_key(&entry.key),
                    self.path.display()
                )
            })
    }

    /// Logs that `entry` is about to be written to `targets`. Call before the store writes.
    pub fn begin_key(&mut self, entry: &KeyEntry, targets: Vec<StoreTarget>) -> Result<KeyIntent> {
        self.check_key(entry)?;
        let time = now();
        self.next += 1;
        let intent = KeyIntent {
            id: format!("{time}-{}-k{}", std::process::id(), self.next),
            time,
            entry: entry.clone(),
            targets,
        };
        self.wal
            .append(&Record::KeyIntent(intent.clone()))
            .with_context(|| {
                format!(
                    "logging key {} in the journal {}",
                    show_key(&entry.key),
                    self.path.display()
                )
            })?;
        self.keys.open.push(intent.clone());
        Ok(intent)
    }

    /// Leaves `intent` unfinished on purpose (its outcome is unknown): the next apply resolves it.
    pub fn leave_key_unfinished(&mut self, intent: KeyIntent) {
        self.keys.open.retain(|i| i.id != intent.id);
        self.keys.interrupted.push(intent);
    }

    /// Records how the writes of `intent` went: logged at once, and committed if any target
    /// took the change. Returns the commit's abbreviated id.
    pub fn finish_key(&mut self, intent: &KeyIntent, entry: &KeyEntry) -> Result<Option<String>> {
        let done = KeyDone {
            id: intent.id.clone(),
            time: intent.time,
            entry: entry.clone(),
        };
        self.wal.append(&Record::KeyDone(done.clone())).with_context(|| {
            format!(
                "logging key {} in the journal {}",
                show_key(&entry.key),
                self.path.display()
            )
        })?;
        self.keys.interrupted.retain(|i| i.id != intent.id);
        self.keys.open.retain(|i| i.id != intent.id);
        if entry.written.is_empty() {
            return Ok(None);
        }
        let oid = self.commit_key_or_keep(done)?;
        Ok(Some(self.abbreviate(oid)))
    }

    /// Commits the key changes a killed relayctl logged as done (`keys.recovering`), in order.
    pub(super) fn commit_recovered_keys(&mut self) -> Result<()> {
        while let Some(d) = self.keys.recovering.pop_front() {
            self.commit_key_or_keep(d)?;
        }
        Ok(())
    }

    fn commit_key_or_keep(&mut self, done: KeyDone) -> Result<Oid> {
        let oid = match self.commit_key(&done.entry, done.time) {
            Ok(oid) => oid,
            Err(e) => {
                self.keys.uncommitted.push(done);
                return Err(e);
            }
        };
        self.flush_if_due()?;
        Ok(oid)
    }

    fn commit_key(&mut self, entry: &KeyEntry, time: i64) -> Result<Oid> {
        let context = || {
            format!(
                "committing key {} {} to the journal {}",
                entry.store,
                show_key(&entry.key),
                self.path.display()
            )
        };
        self.check_key(entry)?;
        let ([top, folder], name) = state_place(entry);
        let place = ([top.as_str(), folder.as_str()], name.as_str());
        self.commit_state(time, place, &state_file(entry), &message(entry), context)
    }
}

/// A key commit read back for `relayctl log`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecorded {
    pub short: String,
    pub time: i64,
    pub author: String,
    pub subject: String,
}

/// One line of `relayctl log`: a flag commit (synced or pending) or a key commit (local only).
#[derive(Debug, Clone, PartialEq)]
pub enum LogEntry {
    Flag(Listed),
    Key(KeyRecorded),
}

impl Journal {
    /// Key writes an interrupted relayctl started and did not record: `apply` reads the stores
    /// to tell which targets took them, and records that with [`Writer::finish_key`].
    pub fn key_interrupted(&self) -> &[KeyIntent] {
        &self.key_interrupted
    }

    /// Every flag and key commit of the journal's branch, newest first, in one walk of the
    /// branch ([`Journal::walk`]); flag commits with their sync note, and all read from the
    /// commit messages alone, never their trees.
    pub fn log(&self) -> Result<Vec<LogEntry>> {
        self.walk(|_, odb, commit, note| {
            if let Some(flag) = message::list(odb, commit, note)? {
                return Ok(Some(LogEntry::Flag(flag)));
            }
            if !is_key_commit(commit.message().unwrap_or("")) {
                return Ok(None);
            }
            Ok(Some(LogEntry::Key(KeyRecorded {
                short: abbreviate(&[odb], commit.id()),
                time: commit.time().seconds(),
                author: message::author(commit),
                subject: commit.summary().unwrap_or("").to_owned(),
            })))
        })
    }
}

/// The key done lines a killed relayctl left that are not in the history yet (`landed`: the
/// message and time of the newest commits).
pub(super) fn not_landed(
    done: Vec<KeyDone>,
    landed: &std::collections::HashSet<(String, i64)>,
) -> Vec<KeyDone> {
    done.into_iter()
        .filter(|d| !landed.contains(&(message(&d.entry), d.time)))
        .collect()
}

#[cfg(test)]
mod tests;
