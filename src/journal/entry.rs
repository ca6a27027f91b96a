//! What a journal commit records, for any kind of item ([`Entry`]), and what each kind says about
//! its commits ([`Commits`]: where its state file lives, its text, its message).
//!
//! A flag's commit format is [`super::message`]'s, a key's [`super::keys`]'s; the writer
//! ([`super::writer`]) and the write-ahead log ([`super::wal`]) handle both through this trait,
//! so intents, done lines, recovery and flushes exist once.

use crate::kind::{Kind, StoreTarget};
use serde::{Deserialize, Serialize};

/// What one journal commit records: the item's change, the targets that took it (with the
/// version each now holds), those that failed and why, and what a target said about its write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Entry<K: Kind> {
    #[serde(flatten)]
    pub record: K::Record,
    pub written: Vec<(StoreTarget, K::Version)>,
    pub failed: Vec<(StoreTarget, String)>,
    /// What a target written adds about the write (Redis: the primary, replicas acknowledged),
    /// added to its `Store:` trailer.
    #[serde(default)]
    pub notes: Vec<(StoreTarget, String)>,
}

impl<K: Kind> Entry<K> {
    /// The entry of `record`, before any target was written.
    pub fn new(record: K::Record) -> Entry<K> {
        Entry {
            record,
            written: Vec::new(),
            failed: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The note on a target written, if any.
    pub fn note(&self, target: &StoreTarget) -> Option<&str> {
        self.notes
            .iter()
            .find(|(t, _)| t == target)
            .map(|(_, n)| n.as_str())
    }
}

/// A kind of item the journal records: how its commits read and where their state files live.
pub trait Commits: Kind {
    /// Why `record` cannot be committed (a name no git tree or file system holds), if so.
    fn check(record: &Self::Record) -> Result<(), String>;
    /// Where its state file lives: the two folders above it, and the name it is filed under
    /// (`<name>.toml`, laid out by [`super::layout`]).
    fn place(record: &Self::Record) -> ([String; 2], String);
    /// The state file: the item's declared state after the change, exactly.
    fn state_file(record: &Self::Record) -> String;
    /// The commit message: subject, reason, failures, then the trailers.
    fn message(entry: &Entry<Self>) -> String;
}
