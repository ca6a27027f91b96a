//! The journal's packfiles merged past the bound (`repack`): what they held reads the same, git
//! finds the journal whole, and a dominant pack is left alone.

use super::super::message::tests::entry;
use super::super::{repack, test_options, Journal, Options, SyncNote};
use super::{open, record};
use std::path::Path;

/// `git -C path args`, which must succeed; its output.
fn git_in(path: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn pack_count(path: &Path) -> usize {
    let dir = path.join(".git/objects/pack");
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "pack")
        })
        .count()
}

#[test]
fn packfiles_past_the_bound_are_merged_into_one_and_the_journal_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let mut j = open(&path);
    // Each write one packfile; a flag turned off and on again, so the same state file is in
    // several packs, and sync notes between them; midway git's own repack writes one pack of
    // everything so far (its deltas, its order).
    for i in 0..repack::MAX_PACKS + 18 {
        let mut e = entry();
        e.record.id.flag = format!("flag-{}", i % 5);
        e.record.to.on = i % 2 == 0;
        j.write(|w| record(w, &e)).unwrap();
        if i % 7 == 0 {
            let oid = j.entries().unwrap()[0].oid;
            j.set_notes(&[(oid, SyncNote::Conflict("LD version 3, base 2".into()))])
                .unwrap();
            j.write_notes().unwrap();
        }
        if i == 12 {
            git_in(&path, &["repack", "-a", "-d", "-q"]);
        }
    }
    let before: Vec<_> = j
        .entries()
        .unwrap()
        .into_iter()
        .map(|r| (r.oid, r.to, r.note))
        .collect();
    drop(j);
    assert!(pack_count(&path) > repack::MAX_PACKS);

    let told = std::cell::RefCell::new(Vec::new());
    let on_wait = |m: &str| told.borrow_mut().push(m.to_owned());
    let options = Options {
        on_wait: &on_wait,
        ..test_options()
    };
    let j = Journal::open_locked(&path, &options).unwrap();
    assert!(j.recovery().compacted > repack::MAX_PACKS, "{:?}", j.recovery());
    assert!(pack_count(&path) <= 2, "{} packs", pack_count(&path));
    assert!(told.borrow()[0].starts_with("Compacting "), "{told:?}");
    let after: Vec<_> = j
        .entries()
        .unwrap()
        .into_iter()
        .map(|r| (r.oid, r.to, r.note))
        .collect();
    assert_eq!(after, before);
    drop(j);
    git_in(&path, &["fsck", "--full", "--strict", "--no-progress"]);
    git_in(&path, &["gc", "-q"]);
    let j = open(&path);
    assert_eq!(j.recovery().compacted, 0, "nothing to merge after git's own gc");
    assert_eq!(j.entries().unwrap().len(), before.len());
}

#[test]
fn a_compaction_leaves_the_largest_pack_alone_while_it_holds_more_than_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let mut j = open(&path);
    let flag = |i: usize| {
        let mut e = entry();
        e.record.id.flag = format!("flag-{i}");
        e
    };
    j.write(|w| (0..300).try_for_each(|i| record(w, &flag(i)).map(drop)))
        .unwrap();
    let largest = std::fs::read_dir(path.join(".git/objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    // Small packs: flags of another environment, whose folder stays small.
    for i in 0..repack::MAX_PACKS {
        let mut e = flag(i);
        e.record.id.environment = "staging".into();
        j.write(|w| record(w, &e)).unwrap();
    }
    drop(j);
    let packs = pack_count(&path);
    let j = open(&path);
    assert_eq!(j.recovery().compacted, packs - 1, "all but the largest");
    assert!(largest.exists(), "the largest pack is left as it was");
    assert_eq!(pack_count(&path), 2);
    assert_eq!(j.entries().unwrap().len(), 300 + repack::MAX_PACKS);
    drop(j);
    git_in(&path, &["fsck", "--full", "--strict", "--no-progress"]);
}
