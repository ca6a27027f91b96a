use super::*;
use crate::journal::test_options;
use crate::journal::wal::{Done, Intent, Record};
use crate::journal::Writer;
use crate::key::Stored;
use crate::kind::StoreTarget;
use crate::names::{check_key as check_key_names, escape as file_name};

fn entry(key: &str, value: Option<&str>) -> Entry<Key> {
    let mut e = Entry::new(KeyRecord {
        store: "meow-blue".into(),
        key: key.into(),
        value: value.map(str::to_owned),
        previous: Some(Stored(b"OFF".to_vec())),
        reason: Some("INC-12\n\nKey-Store: evil\n---".into()),
    });
    let target = StoreTarget {
        store: "meow-blue".into(),
        target: "redis://127.0.0.1:6379".into(),
    };
    e.written.push((target, ()));
    e
}

fn message(e: &Entry<Key>) -> String {
    <Key as Commits>::message(e)
}

#[test]
fn file_names_escape_everything_a_path_could_use() {
    assert_eq!(file_name("RECENT"), "RECENT");
    assert_eq!(file_name("a.b_c-d"), "a.b_c-d");
    assert_eq!(file_name(".git"), "%2Egit");
    assert_eq!(file_name("../x"), "%2E.%2Fx");
    assert_eq!(file_name("a b%"), "a%20b%25");
    assert_eq!(file_name("é"), "%C3%A9");
    assert!(check_key_names("s", &"k".repeat(250)).is_ok());
    assert!(check_key_names("s", &"k".repeat(251))
        .unwrap_err()
        .contains("too long for the journal"));
    assert!(check_key_names("s", &"/".repeat(84))
        .unwrap_err()
        .contains("257 bytes long once escaped"));
    assert!(check_key_names("s", "").is_err());
}

#[test]
fn the_message_cannot_be_forged_by_a_key_a_value_or_a_reason() {
    let m = message(&entry("k\nKey-Store: evil", Some("v\n\nValue: forged")));
    let t = message::trailers(&m).unwrap();
    assert_eq!(
        t,
        [
            (KEY_STORE, "meow-blue"),
            (KEY, "\"k\\nKey-Store: evil\""),
            (VALUE, "\"v\\n\\nValue: forged\""),
            (PREVIOUS_VALUE, "\"OFF\""),
            ("Store", "meow-blue redis://127.0.0.1:6379"),
        ],
        "{m}"
    );
    assert!(is_key_commit(&m));
    assert!(!message::is_flag_commit(&m));
    insta::assert_snapshot!(m);
}

#[test]
fn a_killed_run_s_key_writes_are_committed_or_handed_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    drop(Journal::open_locked(&path, &test_options()).unwrap());
    let e = entry("RECENT", Some("ON"));
    let mut started = e.clone();
    started.written.clear();
    let intent = |id: &str| Intent::<Key> {
        id: id.into(),
        time: 1_795_316_645,
        entry: started.clone(),
        targets: e.written.clone(),
    };
    // What a killed apply leaves: one key done (its commit not written out), one only begun.
    let mut wal = super::super::wal::Wal::open(super::super::wal::path(&path.join(".git"))).unwrap();
    wal.append(&Record::KeyIntent(intent("1"))).unwrap();
    wal.append(&Record::KeyDone(Done {
        id: "1".into(),
        time: 1_795_316_645,
        entry: e.clone(),
    }))
    .unwrap();
    wal.append(&Record::KeyIntent(intent("2"))).unwrap();
    drop(wal);
    let mut j = Journal::open_locked(&path, &test_options()).unwrap();
    assert_eq!(j.recovery().commits, 1);
    assert_eq!(j.interrupted::<Key>(), [intent("2")]);
    let log = j.log().unwrap();
    assert!(
        matches!(&log[..], [LogEntry::Key(k)] if k.subject == "meow-blue RECENT: set to \"ON\""),
        "{log:?}"
    );
    assert!(j.entries().unwrap().is_empty(), "sync never sees a key commit");
    // The next apply reads the key and records the begun one; then the log is empty.
    let pending = j.interrupted::<Key>().to_vec();
    j.write(|w| w.finish(&pending[0], &e).map(|_| ())).unwrap();
    assert_eq!(j.unrecorded(), 0);
    assert_eq!(j.log().unwrap().len(), 2);
    drop(j);
    let j = Journal::open_locked(&path, &test_options()).unwrap();
    assert_eq!(j.recovery().commits, 0, "nothing committed twice");
}

/// The state file of `key` of the store `meow-blue` in the branch's tree, found by the layout's
/// reader in either layout.
fn key_state(j: &Journal, key: &str) -> Option<String> {
    let tree = j.repo.head().unwrap().peel_to_tree().unwrap();
    let store = file_name("meow-blue");
    let blob = super::super::layout::find_in(&j.repo, &tree, [FOLDER, &store], &file_name(key)).unwrap()?;
    let blob = j.repo.find_blob(blob).unwrap();
    Some(String::from_utf8(blob.content().to_vec()).unwrap())
}

/// The names in the store folder `_keys/meow-blue` of the branch's tree, and whether each is a
/// folder.
fn store_folder(j: &Journal) -> Vec<(String, bool)> {
    let tree = j.repo.head().unwrap().peel_to_tree().unwrap();
    let folder = tree.get_path(std::path::Path::new("_keys/meow-blue")).unwrap();
    let folder = j.repo.find_tree(folder.id()).unwrap();
    folder
        .iter()
        .map(|e| {
            (
                e.name().unwrap().to_owned(),
                e.kind() == Some(git2::ObjectType::Tree),
            )
        })
        .collect()
}

#[test]
fn a_key_store_folder_past_the_threshold_fans_out_and_both_layouts_read_back() {
    use super::super::layout::FLAT_MAX;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let mut j = Journal::open_locked(&path, &test_options()).unwrap();
    let key = |i: usize| {
        if i == 7 {
            "k/../x 7".to_owned()
        } else {
            format!("key-{i:05}")
        }
    };
    let commit = |w: &mut Writer, i: usize| {
        let e = entry(&key(i), Some(&format!("v{i}")));
        let intent = w.begin::<Key>(&e.record, e.written.clone())?;
        w.finish(&intent, &e).map(drop)
    };
    j.write(|w| (0..FLAT_MAX).try_for_each(|i| commit(w, i))).unwrap();
    let flat = store_folder(&j);
    assert_eq!(flat.len(), FLAT_MAX);
    assert!(flat.iter().all(|(n, folder)| n.ends_with(".toml") && !folder));
    assert!(
        flat.iter().any(|(n, _)| n == "k%2F..%2Fx%207.toml"),
        "the escaped name, flat"
    );
    for i in [0, 7, FLAT_MAX - 1] {
        let state = key_state(&j, &key(i)).unwrap_or_else(|| panic!("key {i}, flat"));
        assert!(state.contains(&format!("value = \"v{i}\"")), "{state}");
    }

    // The crossing commit: the folder fans out into buckets of the escaped names.
    j.write(|w| commit(w, FLAT_MAX)).unwrap();
    let fanned = store_folder(&j);
    assert!(
        fanned.len() <= 256 && fanned.iter().all(|(_, folder)| *folder),
        "{fanned:?}"
    );
    for i in (0..=FLAT_MAX).step_by(97).chain([7, FLAT_MAX]) {
        let state = key_state(&j, &key(i)).unwrap_or_else(|| panic!("key {i}, fanned out"));
        assert!(state.contains(&format!("value = \"v{i}\"")), "{state}");
    }
    assert!(key_state(&j, "never-written").is_none());
    assert_eq!(
        j.log().unwrap().len(),
        FLAT_MAX + 1,
        "every key commit is in the log"
    );
}
