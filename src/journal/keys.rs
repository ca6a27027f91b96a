//! Plain Redis key commits (SPEC §1 "Plain Redis keys"): the one file that knows their message,
//! trailers and state file ([`Journaled`] for [`Key`]), and how they are read back for
//! `relayctl log`.
//!
//! A key commit's state file lives under [`FOLDER`] (`_keys/<store>/<key>.toml`): a project
//! key cannot start with `_`, so it never meets a flag's `<project>/<environment>/<flag>.toml`.
//! Key commits take the flag commits' one path through the writer: the same write-ahead log,
//! packfiles and flushes, and the same layout ([`super::layout`]), so a store folder of more
//! than [`super::layout::FLAT_MAX`] keys fans out into `_keys/<store>/<xx>/<key>.toml` as an
//! environment's folder does. Store and key names are escaped into file names
//! ([`names::escape`]); a key whose escaped name is too long for a file is refused when the
//! overrides file is read ([`names::check_key`]). The trailers start with `Key-Store:`, never
//! `Project:`, so sync and verify, which read flag commits only, never see a key commit. Free
//! text (reason, names, values) is written as flag commits write theirs ([`message::compose`]),
//! so it can never be read back as a trailer.

use super::entry::{Commits, Entry};
use super::message::{self, Listed};
use super::{abbreviate, Journal};
use crate::key::{show_key, show_stored, show_to, Key, KeyRecord, FOLDER};
use crate::names;
use anyhow::Result;

impl Commits for Key {
    fn check(record: &KeyRecord) -> Result<(), String> {
        names::check_key(&record.store, &record.key)
    }

    fn place(record: &KeyRecord) -> ([String; 2], String) {
        let folders = [FOLDER.to_owned(), names::escape(&record.store)];
        (folders, names::escape(&record.key))
    }

    /// The key's declared state after the change, exactly (TOML strings).
    fn state_file(record: &KeyRecord) -> String {
        let string = message::toml_text;
        let mut out = format!(
            "# {} {}: plain Redis key written by relayctl\nstore = {}\nkey = {}\n",
            message::field(&show_key(&record.store)),
            message::field(&show_key(&record.key)),
            string(&record.store),
            string(&record.key)
        );
        match &record.value {
            Some(v) => out += &format!("value = {}\n", string(v)),
            None => out += "absent = true\n",
        }
        if let Some(r) = &record.reason {
            out += &format!("reason = {}\n", string(r));
        }
        out
    }

    /// Subject, reason, failures, then the trailers, written by the one writer of commit messages
    /// ([`message::compose`]).
    fn message(entry: &Entry<Key>) -> String {
        let r = &entry.record;
        let what = match &r.value {
            Some(v) => format!("set to {}", show_to(Some(v))),
            None => "delete".to_owned(),
        };
        let subject = format!("{} {}: {what}", r.store, show_key(&r.key));
        let mut trailers = vec![
            (KEY_STORE, r.store.clone()),
            (KEY, show_key(&r.key)),
            (VALUE, show_to(r.value.as_deref())),
            (PREVIOUS_VALUE, show_stored(r.previous.as_ref())),
        ];
        trailers.extend(message::stores(entry));
        message::compose(&subject, r.reason.as_deref(), &entry.failed, trailers)
    }
}

const KEY_STORE: &str = "Key-Store";
const KEY: &str = "Key";
const VALUE: &str = "Value";
const PREVIOUS_VALUE: &str = "Previous-Value";

/// Whether `message` is a key commit's: its trailers start with `Key-Store:`.
fn is_key_commit(message: &str) -> bool {
    message::trailers_start_with(message, KEY_STORE)
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

#[cfg(test)]
mod tests;
