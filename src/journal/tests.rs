//! The journal against real repositories in temp dirs: commits read back, a killed run
//! recovered, flushes, the lock.

use super::message::tests::entry;
use super::writer::upsert;
use super::*;
use crate::flag::{Flag, Serve, Variation};
use crate::kind::StoreTarget;
use anyhow::anyhow;
use serde_json::json;
use std::time::UNIX_EPOCH;

/// What apply does for one flag whose writes all succeed.
pub(super) fn record(w: &mut Writer<'_>, e: &Entry<Flag>) -> Result<String> {
    let mut started = e.clone();
    started.written.clear();
    started.failed.clear();
    let targets = e.written.iter().map(|(t, v)| (t.clone(), v - 1)).collect();
    let intent = w.begin::<Flag>(&started.record, targets)?;
    Ok(w.finish(&intent, e)?.expect("written"))
}

fn wal_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(wal::path(&path.join(".git")))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

pub(super) fn open(path: &Path) -> Journal {
    Journal::open_locked(path, &test_options()).unwrap()
}

#[test]
fn commits_read_back_with_their_trailers_and_notes() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(&dir.path().join("journal"));
    let short = j.write(|w| record(w, &entry())).unwrap();
    let all = j.entries().unwrap();
    assert_eq!(all.len(), 1);
    let r = &all[0];
    assert_eq!(r.short, short);
    assert_eq!(r.id.flag, "new-checkout");
    assert_eq!(r.to, entry().record.to);
    assert_eq!(r.base_version, 41);
    assert_eq!(r.reason.as_deref(), Some("INC-4711: checkout returns 500"));
    assert_eq!(r.status(), "pending");
    let at = UNIX_EPOCH + std::time::Duration::from_secs(1_795_316_645);
    let synced = SyncNote::Synced {
        at,
        ld_version: 43,
        already: false,
        forced: None,
    };
    j.set_notes(&[(r.oid, synced)]).unwrap();
    assert!(j.entries().unwrap()[0].is_synced());
    assert_eq!(
        j.entries().unwrap()[0].status(),
        "synced 2026-11-22T03:04:05Z ld-version=43"
    );
    j.write(|w| record(w, &entry())).unwrap();
    let second = j.entries().unwrap()[0].oid;
    j.set_notes(&[
        (r.oid, SyncNote::Conflict("x".into())),
        (second, SyncNote::Skipped("y".into())),
    ])
    .unwrap();
    let notes: Vec<_> = j.entries().unwrap().into_iter().map(|r| r.note).collect();
    assert_eq!(
        notes,
        [
            Some(SyncNote::Skipped("y".into())),
            Some(SyncNote::Conflict("x".into()))
        ]
    );
    assert_eq!(j.close(), None, "the working tree is brought up to date");
    let state =
        std::fs::read_to_string(dir.path().join("journal/default/production/new-checkout.toml")).unwrap();
    assert!(
        state.contains("on = false\noff_variation = { index = 1, value = \"control\" }\n"),
        "{state}"
    );
}

#[test]
fn variation_values_of_any_json_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(&dir.path().join("journal"));
    let mut e = entry();
    e.record.to.fallthrough = Some(Serve::Variation(Variation {
        index: 2,
        value: json!({"theme": null, "sizes": [1, 2.5]}),
    }));
    j.write(|w| record(w, &e)).unwrap();
    assert_eq!(j.entries().unwrap()[0].to, e.record.to);
}

#[test]
fn a_killed_run_is_recovered_once_and_its_unfinished_writes_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let mut j = open(&path);
    // Capture the log lines of three flags: one that landed, one done but not landed, one
    // only started.
    let mut lines = Vec::new();
    j.write(|w| {
        record(w, &entry())?;
        lines.extend(wal_lines(&path));
        let mut lost = entry();
        lost.record.id.flag = "pricing-page".into();
        record(w, &lost)?;
        let mut started = entry();
        started.record.id.flag = "search-v2".into();
        started.written.clear();
        w.begin::<Flag>(
            &started.record,
            vec![(
                StoreTarget {
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
    assert_eq!(
        wal_lines(&path),
        lines[4..],
        "a flush empties the log but for the intent still open"
    );
    assert_eq!(lines.len(), 5, "{lines:#?}");
    // The kill: the branch is back before the second flag, the log as it was.
    let first = j.entries().unwrap()[1].oid;
    let branch = j
        .repo
        .find_reference("HEAD")
        .unwrap()
        .symbolic_target()
        .unwrap()
        .to_owned();
    j.repo.reference(&branch, first, true, "test").unwrap();
    drop(j);
    std::fs::write(
        wal::path(&path.join(".git")),
        lines.join("\n") + "\n{\"kind\": \"do",
    )
    .unwrap();

    let j = open(&path);
    let flags: Vec<String> = j.entries().unwrap().iter().map(|r| r.id.flag.clone()).collect();
    assert_eq!(
        flags,
        ["pricing-page", "new-checkout"],
        "recovered once, in order"
    );
    assert_eq!(j.recovery().commits, 1);
    assert_eq!(j.recovery().torn, 1);
    assert_eq!(j.interrupted::<Flag>().len(), 1);
    assert_eq!(j.interrupted::<Flag>()[0].entry.record.id.flag, "search-v2");
    assert_eq!(wal_lines(&path).len(), 1, "the unfinished intent stays logged");
    drop(j);
    // Still there for the next run, until someone finishes it.
    let mut j = open(&path);
    let intent = j.interrupted::<Flag>()[0].clone();
    j.write(|w| w.finish(&intent, &intent.entry)).unwrap();
    assert!(j.interrupted::<Flag>().is_empty());
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
    let path = dir.path().join("journal");
    let mut j = open(&path);
    let n = FLUSH_EVERY * 2 + 3;
    // Every flag changed twice, the second time in a later packfile than the first for some
    // and in the same one for others: trees and state files stored as deltas of both kinds.
    for round in ["first", "second"] {
        j.write(|w| {
            for i in 0..n {
                let mut e = entry();
                e.record.id.flag = format!("flag-{i}");
                e.record.reason = Some(format!("{round} change"));
                record(w, &e)?;
            }
            Ok(())
        })
        .unwrap();
    }
    assert_eq!(j.entries().unwrap().len(), 2 * n);
    assert_eq!(j.close(), None, "the working tree is brought up to date");
    // git itself reads every object back and finds each id matches what it holds.
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&path)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    git(&["fsck", "--full", "--strict", "--no-progress"]);
    let bucket = super::layout::bucket("flag-7");
    let state = git(&["show", &format!("HEAD:default/production/{bucket}/flag-7.toml")]);
    assert!(state.contains("second change"), "{state}");
    // Past FLAT_MAX flags the environment's folder has fanned out (journal/layout.rs).
    let last = format!("flag-{}", n - 1);
    assert!(path
        .join("default/production")
        .join(super::layout::bucket(&last))
        .join(format!("{last}.toml"))
        .exists());
}

#[test]
fn a_second_locker_is_told_it_waits_then_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let _first = open(&path);
    let told = std::cell::RefCell::new(Vec::new());
    let on_wait = |m: &str| told.borrow_mut().push(m.to_owned());
    let options = Options {
        lock_wait: Duration::from_millis(200),
        on_wait: &on_wait,
        ..test_options()
    };
    let err = Journal::open_locked(&path, &options).err().unwrap().to_string();
    assert!(
        err.contains(&format!(
            "another relayctl (pid {}) is still writing",
            std::process::id()
        )),
        "{err}"
    );
    let told = told.into_inner();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].starts_with("Waiting for another relayctl"), "{told:?}");
}

#[test]
fn commits_of_the_first_state_file_format_still_read() {
    // A journal written before variation values were TOML data: `off_variation = 1 # "control"`.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let j = open(&path);
    let repo = &j.repo;
    let e = entry();
    let state = "# default/production/new-checkout: override state written by relayctl\non = false\n\
                 off_variation = 1 # \"control\"\nreason = \"INC-4711: checkout returns 500\"\n";
    let blob = repo.blob(state.as_bytes()).unwrap();
    let head = repo.head().unwrap().peel_to_commit().unwrap();
    let tree = upsert(
        repo,
        Some(&head.tree().unwrap()),
        &["default", "production", "new-checkout.toml"],
        blob,
    )
    .unwrap();
    let sig = git2::Signature::now("Op", "op@example.com").unwrap();
    repo.commit(
        Some("HEAD"),
        &sig,
        &sig,
        &message::tests::message(&e),
        &repo.find_tree(tree).unwrap(),
        &[&head],
    )
    .unwrap();
    assert_eq!(j.entries().unwrap()[0].to, e.record.to);
}

#[test]
fn a_commit_that_cannot_be_made_stays_in_the_log_and_every_later_open_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let mut j = open(&path);
    let err = j
        .write(|w| {
            record(w, &entry())?;
            // The store writes are done, and only then does the commit fail.
            let mut started = entry();
            started.record.id.flag = "pricing-page".into();
            let intent = w.begin::<Flag>(&started.record, Vec::new())?;
            let mut done = started.clone();
            done.record.id.flag = "pricing/page".into();
            w.finish(&intent, &done)
        })
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("relayctl-wal.jsonl keeps the 1 change(s)"), "{err}");
    assert!(err.contains("cannot name a file in the journal"), "{err}");
    assert_eq!(j.entries().unwrap().len(), 1, "the commit before it is made");
    drop(j);
    let done = wal::read(&wal::path(&path.join(".git")))
        .unwrap()
        .logs
        .flags
        .recovering;
    assert_eq!(done.len(), 1, "kept: {done:?}");
    assert_eq!(done[0].entry.record.id.flag, "pricing/page");
    for _ in 0..2 {
        let err = format!(
            "{:#}",
            Journal::open_locked(&path, &test_options()).err().unwrap()
        );
        assert!(err.contains("relayctl-wal.jsonl keeps the 1 change(s)"), "{err}");
        assert_eq!(
            wal::read(&wal::path(&path.join(".git")))
                .unwrap()
                .logs
                .flags
                .recovering
                .len(),
            1
        );
    }
}

#[test]
fn a_full_disk_is_said_in_one_line_naming_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let j = open(&path);
    let git_dir = path.join(".git");
    assert!(!disk_full(&git_dir));
    // Writing to /dev/full fails as a full disk does (ENOSPC), without needing one.
    std::os::unix::fs::symlink("/dev/full", git_dir.join(SPACE_PROBE)).unwrap();
    assert!(disk_full(&git_dir));
    std::os::unix::fs::symlink("/dev/full", git_dir.join(SPACE_PROBE)).unwrap();
    let e = j.explain(anyhow!("no error")).to_string();
    assert_eq!(
        e,
        format!(
            "the disk holding the journal {} is full; free space there and run this again",
            path.display()
        )
    );
    assert!(!git_dir.join(SPACE_PROBE).exists(), "the probe is removed");
}

#[test]
fn journals_are_marked_and_an_earlier_relayctls_is_marked_when_first_locked() {
    let dir = tempfile::tempdir().unwrap();
    let local = |path: &Path, key: &str| {
        Repository::open(path)
            .unwrap()
            .config()
            .unwrap()
            .open_level(git2::ConfigLevel::Local)
            .unwrap()
            .get_string(key)
            .ok()
    };
    let path = dir.path().join("journal");
    open(&path).close();
    assert_eq!(local(&path, "relayctl.journal").as_deref(), Some("true"));
    let head = Repository::open(&path)
        .unwrap()
        .head()
        .unwrap()
        .name()
        .unwrap()
        .to_owned();
    assert_eq!(local(&path, "relayctl.branch"), Some(head));

    // Without the mark, it is recognised by its root commit; reading does not mark it.
    let mut config = Repository::open(&path).unwrap().config().unwrap();
    config.remove("relayctl.journal").unwrap();
    config.remove("relayctl.branch").unwrap();
    assert!(Journal::open_existing(&path).unwrap().is_some());
    assert_eq!(local(&path, "relayctl.journal"), None);
    open(&path).close();
    assert_eq!(local(&path, "relayctl.journal").as_deref(), Some("true"));

    // A fresh `git init` is adopted; one with files or other commits is not.
    let empty = dir.path().join("empty");
    Repository::init(&empty).unwrap();
    open(&empty).close();
    assert!(empty.join("README.md").exists());
    let theirs = dir.path().join("theirs");
    Repository::init(&theirs).unwrap();
    std::fs::write(theirs.join("notes.txt"), "mine").unwrap();
    for result in [
        Journal::open_locked(&theirs, &test_options()).err(),
        Journal::open_existing(&theirs).err(),
    ] {
        let e = result.unwrap().to_string();
        assert!(
            e.contains("is a git repository but not a relayctl journal"),
            "{e}"
        );
    }
    assert_eq!(std::fs::read_to_string(theirs.join("notes.txt")).unwrap(), "mine");
}

mod fan_out;
mod packs;
mod worktree;

#[test]
fn a_ref_lock_left_by_a_killed_relayctl_is_removed_and_one_left_by_git_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    drop(open(&path));
    let git_dir = path.join(".git");
    let lock = git_dir.join(format!("{}.lock", notes::NOTES_REF));
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();

    // As a relayctl killed between taking the notes ref's lock and renaming it leaves it.
    std::fs::write(&lock, "").unwrap();
    std::fs::write(
        git_dir.join("relayctl-moving-ref"),
        format!("{}.lock\n", notes::NOTES_REF),
    )
    .unwrap();
    let j = open(&path);
    assert_eq!(j.recovery().released_lock.as_deref(), Some(lock.as_path()));
    assert!(!lock.exists());
    assert!(!git_dir.join("relayctl-moving-ref").exists());
    drop(j);

    // The same lock file without relayctl's marker is git's: refused, left in place.
    std::fs::write(&lock, "").unwrap();
    let err = Journal::open_locked(&path, &test_options())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("locked by git"), "{err}");
    assert!(lock.exists());
}

#[test]
fn done_lines_being_recovered_stay_in_the_log_across_the_flushes_recovery_causes() {
    // Recovering more done lines than one packfile holds flushes midway; a kill right after must
    // find every line not yet in the history still in the log.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let mut j = open(&path);
    let pending: Vec<wal::Done<Flag>> = (0..3)
        .map(|i| {
            let mut e = entry();
            e.record.id.flag = format!("pending-{i}");
            wal::Done {
                id: format!("k{i}"),
                time: 1_795_316_645,
                entry: e,
            }
        })
        .collect();
    let log = j
        .write(|w| {
            w.logs.flags.recovering = pending.clone().into();
            w.flush()?;
            let log = wal_lines(&path).join("\n");
            w.logs.flags.recovering.clear();
            Ok(log)
        })
        .unwrap();
    for d in &pending {
        assert!(
            log.contains(&d.entry.record.id.flag),
            "{} kept: {log}",
            d.entry.record.id.flag
        );
    }
}

#[test]
fn a_write_ahead_log_written_before_flags_and_keys_shared_one_engine_still_reads() {
    // Lines as relayctl wrote them before: a flag's intent and done line with `key` and `from`
    // at the top, a key's intent and done line whose targets had no version.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.jsonl");
    let target = r#"{"store":"relay-redis","target":"redis://10.0.0.5:6379"}"#;
    let flag = r#"{"id":{"project":"default","environment":"production","flag":"f"},"to":{"on":false},"previous_on":true,"base_version":41,"reason":"INC-1""#;
    let key = r#"{"store":"meow-blue","key":"RECENT","value":"ON","previous":null,"reason":null"#;
    let lines = [
        format!(
            r#"{{"kind":"intent","key":"1","time":7,"from":{{"on":true}},"entry":{flag},"written":[],"failed":[]}},"targets":[[{target},41]]}}"#
        ),
        format!(
            r#"{{"kind":"done","key":"1","time":7,"from":{{"on":true}},"entry":{flag},"written":[[{target},42]],"failed":[]}}}}"#
        ),
        format!(
            r#"{{"kind":"key_intent","id":"k2","time":8,"entry":{key},"written":[],"failed":[]}},"targets":[{target}]}}"#
        ),
        format!(
            r#"{{"kind":"key_done","id":"k2","time":8,"entry":{key},"written":[{target}],"failed":[]}}}}"#
        ),
        format!(
            r#"{{"kind":"key_intent","id":"k3","time":9,"entry":{key},"written":[],"failed":[]}},"targets":[{target}]}}"#
        ),
    ];
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let left = wal::read(&path).unwrap();
    assert_eq!(left.torn, 0, "every line reads");
    let flags = &left.logs.flags;
    assert!(flags.interrupted.is_empty(), "the flag's intent is done");
    assert_eq!(flags.recovering.len(), 1);
    let done = &flags.recovering[0];
    assert_eq!((done.id.as_str(), done.entry.record.from.on), ("1", true));
    assert_eq!(done.entry.written[0].1, 42);
    let keys = &left.logs.keys;
    assert_eq!(keys.recovering.len(), 1);
    assert_eq!(keys.recovering[0].entry.written.len(), 1);
    assert_eq!(keys.interrupted.len(), 1);
    assert_eq!(keys.interrupted[0].targets[0].0.store, "relay-redis");
}
