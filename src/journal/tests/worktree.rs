//! The journal's working tree: brought up to date after runs that were killed, without taking
//! what a killed update left behind for someone's edit.

use super::super::message::tests::entry;
use super::super::*;
use super::{open, record};

/// The state file every test here changes.
const STATE: &str = "default/production/new-checkout.toml";

/// A journal at `dir/journal` holding one change, its working tree up to date.
fn journal(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("journal");
    let mut j = open(&path);
    j.write(|w| record(w, &entry())).unwrap();
    assert_eq!(j.close(), None);
    path
}

/// Commits the change turning the flag `on`, as a run killed before it updated the working
/// tree leaves it; returns the state file the branch now holds.
fn killed_before_the_update(path: &Path, on: bool) -> Vec<u8> {
    let mut j = open(path);
    let mut changed = entry();
    changed.record.to.on = on;
    j.write(|w| record(w, &changed)).unwrap();
    j.dirty = false;
    drop(j);
    let repo = Repository::open(path).unwrap();
    let tree = repo.head().unwrap().peel_to_tree().unwrap();
    let blob = tree.get_path(Path::new(STATE)).unwrap().id();
    let content = repo.find_blob(blob).unwrap().content().to_vec();
    content
}

/// What the next run that locks the journal says when it closes (it updates the working tree).
fn next_run(path: &Path) -> Option<String> {
    let mut j = open(path);
    j.dirty = true;
    j.close()
}

fn git_status(path: &Path) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(path)
        .args(["status", "--porcelain"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_working_tree_catches_up_after_a_killed_run_and_a_deleted_file_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal(&dir);
    let state = path.join(STATE);
    let before = std::fs::read(&state).unwrap();
    let new = killed_before_the_update(&path, true);
    assert_eq!(std::fs::read(&state).unwrap(), before);
    std::fs::remove_file(path.join("README.md")).unwrap();
    assert_eq!(next_run(&path), None);
    assert_eq!(std::fs::read(&state).unwrap(), new);
    assert!(path.join("README.md").exists());
    assert_eq!(git_status(&path), "");
}

#[test]
fn a_working_tree_with_no_record_of_its_last_update_is_checked_whole_and_updated() {
    // As an earlier relayctl left it: no record of the commit the working tree was updated to.
    let dir = tempfile::tempdir().unwrap();
    let path = journal(&dir);
    let checked_out = path.join(".git/relayctl-checked-out");
    assert!(checked_out.exists());
    std::fs::remove_file(&checked_out).unwrap();
    let new = killed_before_the_update(&path, true);
    assert_eq!(next_run(&path), None);
    assert_eq!(std::fs::read(path.join(STATE)).unwrap(), new);
    let head = Repository::open(&path).unwrap().head().unwrap().target().unwrap();
    assert_eq!(
        std::fs::read_to_string(&checked_out).unwrap().trim(),
        head.to_string()
    );
}

#[test]
fn a_state_file_cut_short_by_a_killed_update_is_relayctls_not_someone_elses() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal(&dir);
    let state = path.join(STATE);
    for cut in [0, 20] {
        // Killed while libgit2 was writing the new version in place.
        let new = killed_before_the_update(&path, cut == 0);
        std::fs::write(&state, &new[..cut]).unwrap();
        assert_eq!(next_run(&path), None, "cut to {cut} bytes");
        assert_eq!(std::fs::read(&state).unwrap(), new);
    }
    // Anything else there is someone's: left alone, and said.
    killed_before_the_update(&path, true);
    std::fs::write(&state, "on = maybe\n").unwrap();
    assert!(next_run(&path).unwrap().contains("changes relayctl did not make"));
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "on = maybe\n");
}

#[test]
fn files_a_killed_update_wrote_without_the_index_end_up_in_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal(&dir);
    // Killed after libgit2 wrote the file, before it wrote the index.
    let new = killed_before_the_update(&path, true);
    std::fs::write(path.join(STATE), &new).unwrap();
    assert_eq!(next_run(&path), None);
    assert_eq!(git_status(&path), "", "index and working tree match the branch");

    // The same with no record of the last update and no index at all (the first update killed).
    std::fs::remove_file(path.join(".git/relayctl-checked-out")).unwrap();
    std::fs::remove_file(path.join(".git/index")).unwrap();
    assert_eq!(next_run(&path), None);
    assert_eq!(git_status(&path), "");
}
