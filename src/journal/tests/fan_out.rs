//! Large journals: an environment folder past the threshold fans out, sync notes fan out, and
//! both layouts read back (with git reading them too).

use super::super::message::tests::entry;
use super::super::*;
use super::{open, record, upsert};

/// Every flag's reason as [`Journal::entries`] reads it back from the latest commit of the flag.
fn latest_reasons(j: &Journal) -> std::collections::BTreeMap<String, Option<String>> {
    let mut out = std::collections::BTreeMap::new();
    for r in j.entries().unwrap().into_iter().rev() {
        assert_eq!(r.to, entry().record.to, "{}", r.id);
        out.insert(r.id.flag, r.reason);
    }
    out
}

/// The names in the environment folder `default/production` of the branch's tree.
fn env_folder(j: &Journal) -> Vec<(String, Option<git2::ObjectType>)> {
    let tree = j.repo.head().unwrap().peel_to_tree().unwrap();
    let env = tree.get_path(Path::new("default/production")).unwrap();
    let env = j.repo.find_tree(env.id()).unwrap();
    env.iter()
        .map(|e| (e.name().unwrap().to_owned(), e.kind()))
        .collect()
}

/// What `git -C path args...` prints; it must succeed.
fn git(path: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(path)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn flag(i: usize) -> Entry<crate::flag::Flag> {
    let mut e = entry();
    e.record.id.flag = format!("flag-{i:05}");
    e.record.reason = Some(format!("reason {i}"));
    e
}

#[test]
fn a_folder_crossing_the_threshold_fans_out_and_every_state_reads_back() {
    assert_eq!(layout::bucket("new-checkout"), "8f", "git hash-object of the key");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let mut j = open(&path);
    j.write(|w| (0..layout::FLAT_MAX).try_for_each(|i| record(w, &flag(i)).map(drop)))
        .unwrap();
    let flat = env_folder(&j);
    assert_eq!(flat.len(), layout::FLAT_MAX);
    assert!(flat
        .iter()
        .all(|(n, k)| n.ends_with(".toml") && *k == Some(git2::ObjectType::Blob)));
    let before = latest_reasons(&j);
    assert_eq!(before.len(), layout::FLAT_MAX);

    // The crossing commit, then a change to a flag already held.
    let mut again = flag(3);
    again.record.reason = Some("changed".into());
    j.write(|w| {
        record(w, &flag(layout::FLAT_MAX))?;
        record(w, &again)
    })
    .unwrap();
    let fanned = env_folder(&j);
    assert!(fanned.len() <= 256, "{}", fanned.len());
    assert!(fanned
        .iter()
        .all(|(n, k)| n.len() == 2 && *k == Some(git2::ObjectType::Tree)));
    let after = latest_reasons(&j);
    assert_eq!(after.len(), layout::FLAT_MAX + 1);
    for (i, (flag, reason)) in after.iter().enumerate() {
        let want = match i {
            3 => "changed".to_owned(),
            _ => format!("reason {i}"),
        };
        assert_eq!(reason.as_deref(), Some(want.as_str()), "{flag}");
        if i < layout::FLAT_MAX && i != 3 {
            assert_eq!(before[flag], *reason, "{flag}");
        }
    }
    let at = format!(
        "default/production/{}/flag-00003.toml",
        layout::bucket("flag-00003")
    );
    let tree = j.repo.head().unwrap().peel_to_tree().unwrap();
    assert!(tree.get_path(Path::new(&at)).is_ok(), "{at}");
    drop(tree);

    // git shows the crossing as renames, and every change with the flag key in its path.
    assert_eq!(j.close(), None);
    let git = |args: &[&str]| git(&path, args);
    let crossing = git(&["show", "-M", "--format=", "--name-status", "HEAD~1"]);
    assert_eq!(
        crossing.lines().filter(|l| l.starts_with('R')).count(),
        layout::FLAT_MAX
    );
    let added = format!(
        "default/production/{}/flag-{:05}.toml",
        layout::bucket(&format!("flag-{:05}", layout::FLAT_MAX)),
        layout::FLAT_MAX
    );
    assert!(crossing.lines().any(|l| l == format!("A\t{added}")), "{crossing}");
    let last = git(&["log", "-p", "-1", "--format="]);
    assert!(last.contains(&format!("+++ b/{at}")), "{last}");
    assert!(path.join(&at).exists(), "the working tree follows");
}

#[test]
fn an_old_flat_folder_past_the_threshold_reads_and_fans_out_on_its_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let mut j = open(&path);
    // A journal written before the fan-out: one flat folder of more files than the threshold,
    // the latest commit flag 0's.
    let held = layout::FLAT_MAX + 5;
    let head = j.repo.head().unwrap().peel_to_commit().unwrap();
    let mut tree = head.tree().unwrap().id();
    for i in (0..held).rev() {
        let blob = j
            .repo
            .blob(<crate::flag::Flag as super::super::entry::Commits>::state_file(&flag(i).record).as_bytes())
            .unwrap();
        let file = format!("flag-{i:05}.toml");
        let root = j.repo.find_tree(tree).unwrap();
        tree = upsert(&j.repo, Some(&root), &["default", "production", &file], blob).unwrap();
    }
    let sig = git2::Signature::now("Op", "op@example.com").unwrap();
    j.repo
        .commit(
            Some("HEAD"),
            &sig,
            &sig,
            &message::tests::message(&flag(0)),
            &j.repo.find_tree(tree).unwrap(),
            &[&head],
        )
        .unwrap();
    drop(head);
    assert_eq!(env_folder(&j).len(), held);
    assert_eq!(j.entries().unwrap()[0].reason.as_deref(), Some("reason 0"));

    j.write(|w| record(w, &flag(held)).map(drop)).unwrap();
    let fanned = env_folder(&j);
    assert!(fanned.iter().all(|(_, k)| *k == Some(git2::ObjectType::Tree)));
    let all = j.entries().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].reason.as_deref(), Some(format!("reason {held}").as_str()));
    assert_eq!(
        all[1].reason.as_deref(),
        Some("reason 0"),
        "the old commit still reads"
    );
    let tree = j.repo.head().unwrap().peel_to_tree().unwrap();
    let files: usize = tree
        .get_path(Path::new("default/production"))
        .map(|e| j.repo.find_tree(e.id()).unwrap())
        .unwrap()
        .iter()
        .map(|b| j.repo.find_tree(b.id()).unwrap().len())
        .sum();
    assert_eq!(files, held + 1, "every file moved, none lost");
}

#[test]
fn sync_notes_fan_out_and_git_notes_reads_every_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let mut j = open(&path);
    j.write(|w| (0..300).try_for_each(|i| record(w, &flag(i)).map(drop)))
        .unwrap();
    let oids: Vec<Oid> = j.entries().unwrap().iter().map(|r| r.oid).collect();
    let note = |i: usize| SyncNote::Conflict(format!("LD version {i}, base 41"));
    // Two notes commits: a flat notes tree, then one past the fan-out.
    let first: Vec<_> = oids[..200]
        .iter()
        .enumerate()
        .map(|(i, o)| (*o, note(i)))
        .collect();
    j.set_notes(&first).unwrap();
    j.write_notes().unwrap();
    let rest: Vec<_> = oids
        .iter()
        .enumerate()
        .skip(199)
        .map(|(i, o)| (*o, note(i + 1000)))
        .collect();
    j.set_notes(&rest).unwrap();
    assert!(j.notes_held());
    j.write_notes().unwrap();
    assert!(!j.notes_held());
    let notes = j.repo.find_reference(notes::NOTES_REF).unwrap();
    let tree = notes.peel_to_tree().unwrap();
    assert!(tree.iter().all(|e| e.name().unwrap().len() == 2), "fanned out");
    drop((tree, notes));
    let git = |args: &[&str]| git(&path, args);
    assert_eq!(
        git(&["notes", "--ref", "relayctl-sync", "list"]).lines().count(),
        300
    );
    for (i, want) in [
        (0, note(0)),
        (198, note(198)),
        (199, note(1199)),
        (299, note(1299)),
    ] {
        let shown = git(&["notes", "--ref", "relayctl-sync", "show", &oids[i].to_string()]);
        assert_eq!(shown.trim(), want.to_string(), "{i}");
    }
    let read: Vec<_> = j
        .entries()
        .unwrap()
        .into_iter()
        .map(|r| r.note.unwrap())
        .collect();
    assert_eq!(read[0], note(0));
    assert_eq!(read[199], note(1199));
    assert_eq!(read.len(), 300);
    let loose = git(&["count-objects"]);
    assert!(
        loose.starts_with("3 objects,"),
        "no loose object but the initial commit's: {loose}"
    );
}
