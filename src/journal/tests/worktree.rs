//! The journal's working tree: brought up to date after runs that were killed, without taking
//! what a killed update left behind for someone's edit.

use super::super::message::tests::entry;
use super::super::*;
use super::{open, record};

#[test]
fn the_working_tree_catches_up_after_a_killed_run_and_a_deleted_file_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let mut j = open(&path);
    j.write(|w| record(w, &entry())).unwrap();
    assert_eq!(j.close(), None);
    let state = path.join("default/production/new-checkout.toml");
    let before = std::fs::read_to_string(&state).unwrap();
    // A run killed after its commits landed, before it updated the working tree.
    let mut j = open(&path);
    let mut on = entry();
    on.to.on = true;
    j.write(|w| record(w, &on)).unwrap();
    j.dirty = false;
    drop(j);
    assert_eq!(std::fs::read_to_string(&state).unwrap(), before);
    std::fs::remove_file(path.join("README.md")).unwrap();
    let mut j = open(&path);
    j.dirty = true;
    assert_eq!(j.close(), None);
    assert!(std::fs::read_to_string(&state).unwrap().contains("on = true"));
    assert!(path.join("README.md").exists());
}

#[test]
fn a_working_tree_with_no_record_of_its_last_update_is_checked_whole_and_updated() {
    // As an earlier relayctl left it: no record of the commit the working tree was updated to.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let mut j = open(&path);
    j.write(|w| record(w, &entry())).unwrap();
    assert_eq!(j.close(), None);
    let checked_out = path.join(".git/relayctl-checked-out");
    assert!(checked_out.exists());
    std::fs::remove_file(&checked_out).unwrap();
    let mut j = open(&path);
    let mut on = entry();
    on.to.on = true;
    j.write(|w| record(w, &on)).unwrap();
    assert_eq!(j.close(), None);
    let state = std::fs::read_to_string(path.join("default/production/new-checkout.toml")).unwrap();
    assert!(state.contains("on = true"), "{state}");
    let head = Repository::open(&path).unwrap().head().unwrap().target().unwrap();
    assert_eq!(
        std::fs::read_to_string(&checked_out).unwrap().trim(),
        head.to_string()
    );
}

#[test]
fn a_state_file_cut_short_by_a_killed_update_is_relayctls_not_someone_elses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let mut j = open(&path);
    j.write(|w| record(w, &entry())).unwrap();
    assert_eq!(j.close(), None);
    let state = path.join("default/production/new-checkout.toml");
    for cut in [0, 20] {
        // Committed, then killed while libgit2 was writing the new version in place.
        let mut j = open(&path);
        let mut changed = entry();
        changed.to.on = cut == 0;
        j.write(|w| record(w, &changed)).unwrap();
        j.dirty = false;
        let repo = Repository::open(&path).unwrap();
        let head = repo.head().unwrap().peel_to_tree().unwrap();
        let new = repo
            .find_blob(
                head.get_path(Path::new("default/production/new-checkout.toml"))
                    .unwrap()
                    .id(),
            )
            .unwrap();
        std::fs::write(&state, &new.content()[..cut]).unwrap();
        drop(j);
        let mut j = open(&path);
        j.dirty = true;
        assert_eq!(j.close(), None, "cut to {cut} bytes");
        assert_eq!(std::fs::read(&state).unwrap(), new.content());
    }
    // Anything else there is someone's: left alone, and said.
    let mut j = open(&path);
    let mut on = entry();
    on.to.on = true;
    j.write(|w| record(w, &on)).unwrap();
    j.dirty = false;
    std::fs::write(&state, "on = maybe\n").unwrap();
    drop(j);
    let mut j = open(&path);
    j.dirty = true;
    assert!(j.close().unwrap().contains("changes relayctl did not make"));
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "on = maybe\n");
}

#[test]
fn files_a_killed_update_wrote_without_the_index_end_up_in_the_index() {
    let git_status = |path: &Path| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(path)
            .args(["status", "--porcelain"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let mut j = open(&path);
    j.write(|w| record(w, &entry())).unwrap();
    assert_eq!(j.close(), None);
    let state = path.join("default/production/new-checkout.toml");
    // A later update killed after libgit2 wrote the file, before it wrote the index.
    let mut j = open(&path);
    let mut on = entry();
    on.to.on = true;
    j.write(|w| record(w, &on)).unwrap();
    j.dirty = false;
    drop(j);
    let repo = Repository::open(&path).unwrap();
    let tree = repo.head().unwrap().peel_to_tree().unwrap();
    let blob = tree
        .get_path(Path::new("default/production/new-checkout.toml"))
        .unwrap()
        .id();
    std::fs::write(&state, repo.find_blob(blob).unwrap().content()).unwrap();
    let mut j = open(&path);
    j.dirty = true;
    assert_eq!(j.close(), None);
    assert_eq!(git_status(&path), "", "index and working tree match the branch");

    // The same with no record of the last update and no index at all (the first update killed).
    std::fs::remove_file(path.join(".git/relayctl-checked-out")).unwrap();
    std::fs::remove_file(path.join(".git/index")).unwrap();
    let mut j = open(&path);
    j.dirty = true;
    assert_eq!(j.close(), None);
    assert_eq!(git_status(&path), "");
}
