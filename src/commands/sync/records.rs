//! sync's two moments under the journal lock: reading what is pending, and recording notes.
//! Neither spans a request to LaunchDarkly, so the lock is held for milliseconds.
//!
//! Why nothing is sent twice or noted wrongly although the lock is let go in between:
//! - Two syncs never interleave: each pass holds the sync lock (journal/sending.rs), so a second
//!   sync waits for the first's pass to end (with `--wait`, it tries again later) and then reads
//!   the notes the first recorded.
//! - An apply adding commits meanwhile: they are not in this pass's groups (read before), so they
//!   get no note from it and stay pending for the next pass (`--wait` reads the journal again
//!   after each pass). Each PATCH carries a `test` of the version its GET saw, so LaunchDarkly
//!   applies it only if no one changed the flag in between: a state decided from an older view
//!   never lands on a newer one.
//! - Notes for the commits a pass read: recorded under the lock after reading each commit's note
//!   afresh; a commit noted `synced` by another relayctl meanwhile (an older relayctl, which
//!   held only the journal lock, or someone's `git notes`) keeps that note.
//! - A kill between a PATCH and its note: the PATCH is in the sent log; the next pass finds
//!   LaunchDarkly in the state, or recognises the write as relayctl's (sync/decide.rs).

use super::super::{close_journal, open_journal_with};
use super::render::Screen;
use crate::journal::{self, Journal, LockBusy, SyncLock, SyncNote};
use crate::settings::Settings;
use crate::sync::{self, Group};
use crate::ui;
use anyhow::Result;
use git2::Oid;
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// Whether `e` is another relayctl holding a lock past the wait.
pub(super) fn is_busy(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<LockBusy>())
}

/// The unsynced commits of the journal at `path`, per flag, read without its lock.
pub(super) fn read_pending(path: &Path) -> Result<Vec<Group>> {
    let Some(journal) = Journal::open_existing(path)? else {
        return Ok(Vec::new());
    };
    Ok(sync::group(&journal.entries()?, |r| !r.is_synced()))
}

/// The unsynced commits per flag, and how many commits were read: under the journal lock when it
/// is free right now (then what a killed apply left is recorded first, and a warning says what
/// it could not record), else without it (an apply is writing; it records that itself).
pub(super) fn read(settings: &Settings, path: &Path, screen: &Screen) -> Result<(Vec<Group>, usize)> {
    let options = journal::Options {
        lock_wait: Duration::ZERO,
        ..settings.journal_options()
    };
    let entries = match open_journal_with(settings, path, &options) {
        Ok(mut journal) => {
            let interrupted = journal.interrupted::<crate::flag::Flag>().len();
            if interrupted > 0 {
                screen.status(&format!(
                    "{} an interrupted apply left {interrupted} flag write(s) not yet recorded in the journal, \
                     so this sync cannot include them; run `relayctl apply` (it reads the stores and records \
                     them), then sync again",
                    ui::paint(ui::WARNING, "warning:")
                ));
            }
            let mut entries = journal.entries()?;
            let superseded = sync::superseded(&entries);
            if !superseded.is_empty() {
                let at = std::time::SystemTime::now();
                let notes: Vec<(Oid, SyncNote)> = superseded
                    .iter()
                    .map(|&(oid, ld_version)| {
                        let note = SyncNote::Synced {
                            at,
                            ld_version,
                            already: true,
                            forced: None,
                        };
                        (oid, note)
                    })
                    .collect();
                journal.record_notes(&notes)?;
                screen.status(&format!(
                    "{} journal commit(s) made elsewhere were superseded by later writes of the same flags that                      are synced already; noted as synced, nothing sent for them",
                    notes.len()
                ));
                entries = journal.entries()?;
            }
            close_journal(journal);
            entries
        }
        Err(e) if is_busy(&e) => match Journal::open_existing(path)? {
            Some(journal) => journal.entries()?,
            None => Vec::new(),
        },
        Err(e) => return Err(e),
    };
    Ok((sync::group(&entries, |r| !r.is_synced()), entries.len()))
}

/// Records a pass's notes under the journal lock, a moment at a time.
pub(super) struct Recorder<'a> {
    settings: &'a Settings,
    path: &'a Path,
    screen: &'a Screen,
    /// `Some` for `--wait` (with its deadline, if any): the last try waits for a busy lock until
    /// then rather than for the usual lock wait.
    patient: Option<Option<Instant>>,
    /// The commits whose notes were recorded.
    pub(super) noted: HashSet<Oid>,
}

impl<'a> Recorder<'a> {
    pub(super) fn new(
        settings: &'a Settings,
        path: &'a Path,
        screen: &'a Screen,
        patient: Option<Option<Instant>>,
    ) -> Recorder<'a> {
        Recorder {
            settings,
            path,
            screen,
            patient,
            noted: HashSet::new(),
        }
    }

    /// Records `notes` if the journal lock is free now (or, with `wait`, once it is, within the
    /// bounded wait); `false` when another relayctl held it throughout.
    pub(super) fn record(&mut self, notes: &[(Oid, SyncNote)], wait: bool) -> Result<bool> {
        let mut options = self.settings.journal_options();
        options.lock_wait = match (wait, self.patient) {
            (false, _) => Duration::ZERO,
            (true, None) => options.lock_wait,
            (true, Some(None)) => Duration::MAX,
            (true, Some(Some(deadline))) => deadline.saturating_duration_since(Instant::now()),
        };
        let mut journal = match open_journal_with(self.settings, self.path, &options) {
            Ok(journal) => journal,
            Err(e) if is_busy(&e) => return Ok(false),
            Err(e) => return Err(e),
        };
        let kept = journal.record_notes(notes)?;
        close_journal(journal);
        self.noted.extend(notes.iter().map(|(oid, _)| *oid));
        for (oid, note) in kept {
            let short = &oid.to_string()[..7];
            self.screen.status(&format!(
                "commit {short} was noted `{note}` by another relayctl meanwhile; that note is kept"
            ));
        }
        Ok(true)
    }
}

/// Drops from the sent log the PATCHes whose commits are all noted now (or were synced before).
pub(super) fn settle(lock: &SyncLock, groups: &[Group], noted: &HashSet<Oid>) -> Result<()> {
    let pending: HashSet<Oid> = groups.iter().flat_map(|g| &g.commits).map(|c| c.oid).collect();
    lock.settle(|s| {
        s.commits
            .iter()
            .any(|c| pending.contains(c) && !noted.contains(c))
    })
}
