//! What a sync is sending to LaunchDarkly, beside the notes: the sync lock, so that one sync at a
//! time sends from a journal, and the sent log, which names every PATCH before it is sent, so that
//! a sync killed after LaunchDarkly took a PATCH but before its note was written lets the next
//! sync recognise that write as its own (sync.rs decides how).
//!
//! Neither is the journal lock: apply never takes them, so a sync waiting on a slow LaunchDarkly
//! never holds up an apply, and the journal lock is taken only to read and to record notes. The
//! sync lock is held for one pass (reading, the exchange with LaunchDarkly, recording), so two
//! syncs never work from views of the journal that the other is changing: the second waits for
//! the first, as it did when syncs held the journal lock. The sent log, `relayctl-sync-sent` in
//! the git directory, holds one line per PATCH, `from <LD version tested> <commit id>...`,
//! appended (no fsync: it must survive a killed process, which the page cache does; after a power
//! cut a lost line only makes the flag a conflict, as before), read at the start of a pass and
//! rewritten at its end without the lines whose commits are all noted. Only the holder of the
//! sync lock writes it.

use super::repo::lock_file;
use super::{Journal, Options};
use anyhow::{Context, Result};
use git2::Oid;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A PATCH relayctl sent (or was about to send) for `commits`, oldest first, with a `test` of LD
/// version `from`, whose outcome no note records yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub from: u64,
    pub commits: Vec<Oid>,
}

impl Sent {
    fn line(&self) -> String {
        let ids: Vec<String> = self.commits.iter().map(Oid::to_string).collect();
        format!("from {} {}\n", self.from, ids.join(" "))
    }

    fn parse(line: &str) -> Option<Sent> {
        let mut words = line.strip_prefix("from ")?.split(' ');
        let from = words.next()?.parse().ok()?;
        let commits = words
            .map(|w| (w.len() == 40).then(|| Oid::from_str(w).ok()).flatten())
            .collect::<Option<Vec<Oid>>>()?;
        (!commits.is_empty()).then_some(Sent { from, commits })
    }
}

/// The sync lock, held while it exists, and the sent log it guards.
pub struct SyncLock {
    _lock: File,
    log: PathBuf,
}

impl Journal {
    /// Takes the sync lock of this journal, waiting up to `options.lock_wait` for another sync's
    /// pass to end (said once through `options.on_wait`); [`super::LockBusy`] when it does not.
    pub fn lock_sync(&self, options: &Options) -> Result<SyncLock> {
        let git_dir = self.repo.path();
        let journal = self.path.display().to_string();
        let still = move |who: &str, waited: u64, lock: &Path| {
            format!(
                "{who} is still syncing the journal {journal} to LaunchDarkly after {waited}s (it sends what is \
                 pending); run this again once it has finished (the lock {} is released as soon as that process \
                 exits)",
                lock.display()
            )
        };
        let lock = lock_file(
            &git_dir.join("relayctl-sync.lock"),
            "sync pid",
            "the sync lock",
            options,
            &still,
        )?;
        Ok(SyncLock {
            _lock: lock,
            log: sent_log(git_dir),
        })
    }

    /// The PATCHes of earlier syncs whose outcome is not noted yet, read without the sync lock
    /// (for a dry run, which sends nothing).
    pub fn sent(&self) -> Result<Vec<Sent>> {
        read(&sent_log(self.repo.path()))
    }
}

fn sent_log(git_dir: &Path) -> PathBuf {
    git_dir.join("relayctl-sync-sent")
}

/// The whole lines of the sent log at `log`: a line cut short by a kill is not read.
fn read(log: &Path) -> Result<Vec<Sent>> {
    let text = match std::fs::read_to_string(log) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", log.display())),
    };
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    Ok(whole.lines().filter_map(Sent::parse).collect())
}

impl SyncLock {
    /// The PATCHes of earlier syncs whose outcome is not noted yet.
    pub fn sent(&self) -> Result<Vec<Sent>> {
        read(&self.log)
    }

    /// Records `sent` before its PATCH goes out.
    pub fn sending(&self, sent: &Sent) -> Result<()> {
        let context = || format!("recording a PATCH about to be sent in {}", self.log.display());
        let mut file = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(context)?;
        file.write_all(sent.line().as_bytes()).with_context(context)
    }

    /// Keeps in the log only the PATCHes `open` says are still unresolved.
    pub fn settle(&self, open: impl Fn(&Sent) -> bool) -> Result<()> {
        let sent = self.sent()?;
        let kept: Vec<&Sent> = sent.iter().filter(|s| open(s)).collect();
        if kept.len() == sent.len() {
            return Ok(());
        }
        let context = || format!("rewriting {}", self.log.display());
        if kept.is_empty() {
            return std::fs::remove_file(&self.log).with_context(context);
        }
        let dir = self.log.parent().context("the sent log has a folder")?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(context)?;
        for s in kept {
            tmp.write_all(s.line().as_bytes()).with_context(context)?;
        }
        tmp.persist(&self.log).with_context(context)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sent_log_reads_back_whole_lines_only_and_settles() {
        let dir = tempfile::tempdir().unwrap();
        let lock = SyncLock {
            _lock: File::create(dir.path().join("lock")).unwrap(),
            log: dir.path().join("relayctl-sync-sent"),
        };
        assert_eq!(lock.sent().unwrap(), []);
        let (a, b) = (
            Oid::from_str(&"a".repeat(40)).unwrap(),
            Oid::from_str(&"b".repeat(40)).unwrap(),
        );
        let one = Sent {
            from: 41,
            commits: vec![a, b],
        };
        let two = Sent {
            from: 7,
            commits: vec![b],
        };
        lock.sending(&one).unwrap();
        lock.sending(&two).unwrap();
        // A kill in the middle of a line: that line is not read.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&lock.log)
            .unwrap()
            .write_all(b"from 9 cccc")
            .unwrap();
        assert_eq!(lock.sent().unwrap(), [one.clone(), two.clone()]);
        lock.settle(|s| s.from == 41).unwrap();
        assert_eq!(lock.sent().unwrap(), [one]);
        lock.settle(|_| false).unwrap();
        assert!(!lock.log.exists());
    }
}
