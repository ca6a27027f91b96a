//! The journal cannot be forged, bypassed, or miss a change that is already in a store
//! (issue 8): free text cannot imitate trailers, whatever a commit needs is checked before the
//! first store write, a commit that fails afterwards stays in the write-ahead log until it is
//! made, and relayctl writes only to its own journal, on its own branch, never over someone's
//! edits. A saved plan is re-checked against the overrides file and the stores.
//!
//! Most tests use a file store (no server); the plan-file ones use Redis, where a forged project
//! would reach another environment's hash.

use crate::support::fake_ld::FakeLd;
use crate::support::fixtures::{
    bool_flag, file_store_and_ld, flag, flag_file, overrides, redis_overrides, PREFIX,
};
use crate::support::{git, Redis, Run, Workspace};
use serde_json::{json, Value};
use std::path::Path;

const FLAGS: &str = "flags/default-production.json";

/// A workspace whose file store holds boolean flags `keys` (on, v10) and whose LaunchDarkly is
/// `ld_url`, declaring `decl` for default/production.
fn file_workspace(keys: &[&str], ld_url: &str, decl: &str) -> Workspace {
    let stored: Vec<Value> = keys.iter().map(|k| bool_flag(k, 10)).collect();
    let w = Workspace::new(&overrides(&file_store_and_ld(ld_url), decl));
    w.write(FLAGS, &flag_file(&stored));
    w
}

/// Replaces the declarations of `w`'s overrides file with `decl`.
fn declare(w: &Workspace, decl: &str) {
    let text = w.read("overrides.toml");
    let head = text.split("[overrides.default.production]\n").next().unwrap();
    w.write(
        "overrides.toml",
        &format!("{head}[overrides.default.production]\n{decl}"),
    );
}

/// `text` as a TOML basic string.
fn toml_str(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// Runs `args`; it must fail with exit 1 before writing anything: the store file byte for byte
/// as it was, the journal's history as it was.
fn refused_before_writing(w: &Workspace, run: impl FnOnce() -> Run) -> Run {
    let store = w.read(FLAGS);
    let history = journal_history(w);
    let run = run();
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(w.read(FLAGS), store, "nothing may be written: {}", run.all());
    assert_eq!(journal_history(w), history, "the journal must not move");
    run
}

/// Every commit of every ref of the journal, or nothing when there is no journal.
fn journal_history(w: &Workspace) -> String {
    if !w.path("journal/.git").exists() {
        return String::new();
    }
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(w.path("journal"))
        .args(["log", "--all", "--format=%H %s"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What `flag` is in the file store.
fn stored(w: &Workspace, key: &str) -> Value {
    let doc: Value = serde_json::from_str(&w.read(FLAGS)).unwrap();
    doc["flags"][key].clone()
}

// ---------------------------------------------------------------------------------------------
// 1. Free text never reads back as a trailer.

#[test]
fn a_reason_cannot_forge_or_hide_a_journal_entry() {
    let ld = FakeLd::start();
    let variations = [json!(true), json!(false)];
    for key in ["flag-1", "flag-2", "flag-9"] {
        ld.add_flag("default", key, &variations, "production", true, 1, 0, 10);
    }
    // flag-9 is never declared: the reasons below try to make sync change it.
    let forged = "Project: default\nEnvironment: production\nFlag: flag-9\nOn: false\nPrevious-On: true\nBase-Version: 10";
    // libgit2's trailer reader stops at a `---` line; git's own at a scissors line.
    let divider = format!("INC-1\n{forged}\n--- end");
    let scissors = format!("INC-2\n\n{forged}\n# ------------------------ >8 ------------------------\nmore");
    let decl = format!(
        "flag-1 = {{ on = false, reason = {} }}\nflag-2 = {{ on = false, reason = {} }}\n",
        toml_str(&divider),
        toml_str(&scissors)
    );
    let w = file_workspace(&["flag-1", "flag-2", "flag-9"], &ld.url, &decl);
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());

    // git sees only the real trailers (SPEC: scripts read them with %(trailers)).
    let journal = w.path("journal");
    let flags = git(
        &journal,
        &[
            "log",
            "--reverse",
            "--format=%(trailers:key=Flag,valueonly,separator=%x2C)",
        ],
    );
    let flags: Vec<&str> = flags.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(flags, ["flag-1", "flag-2"]);
    for (key, reason) in [("flag-1", &divider), ("flag-2", &scissors)] {
        let state: toml::Table =
            toml::from_str(&w.read(&format!("journal/default/production/{key}.toml"))).unwrap();
        assert_eq!(
            state["reason"].as_str(),
            Some(reason.as_str()),
            "the exact reason is kept"
        );
    }

    // log lists both commits; sync patches exactly the two declared flags; verify agrees.
    let log = w.run(["log", "--pending"]);
    assert_eq!(log.code, 0, "{}", log.all());
    for key in ["flag-1", "flag-2"] {
        assert!(
            log.stdout
                .contains(&format!("default/production/{key}: turn off")),
            "{}",
            log.stdout
        );
    }
    assert_eq!(log.stdout.lines().count(), 2, "{}", log.stdout);
    let run = w.cmd(["sync"]).token().run();
    assert_eq!(run.code, 0, "{}", run.all());
    let mut patched: Vec<String> = ld.applied().iter().map(|p| p.flag()).collect();
    patched.sort();
    assert_eq!(patched, ["flag-1", "flag-2"]);
    assert_eq!(ld.env("default", "flag-9", "production")["on"], json!(true));
    assert_eq!(ld.env("default", "flag-1", "production")["on"], json!(false));
    let run = w.cmd(["verify"]).token().run();
    assert_eq!(run.code, 0, "{}", run.all());
}

#[test]
fn free_text_that_cannot_be_journaled_is_an_error_at_its_line_and_column() {
    let w = file_workspace(
        &["flag-1"],
        "http://127.0.0.1:9",
        "flag-1 = { on = false, reason = \"INC \\u0000 x\" }\n",
    );
    let run = refused_before_writing(&w, || w.run(["apply", "--auto-approve"]));
    assert!(run.stderr.contains("overrides.toml:9:"), "{}", run.stderr);
    assert!(run.stderr.contains("NUL"), "{}", run.stderr);

    for name in ["relay\\u0000file", "relay\\nfile"] {
        let text = w
            .read("overrides.toml")
            .replace("type = \"file\"", &format!("name = \"{name}\"\ntype = \"file\""));
        w.write("overrides.toml", &text.replace("\\u0000 x", "x"));
        let run = refused_before_writing(&w, || w.run(["apply", "--auto-approve"]));
        assert!(
            run.stderr.contains("overrides.toml:2:8"),
            "{name}: {}",
            run.stderr
        );
        assert!(run.stderr.contains("store name"), "{name}: {}", run.stderr);
        w.write(
            "overrides.toml",
            &text
                .replace(&format!("name = \"{name}\"\n"), "")
                .replace("\\u0000 x", "x"),
        );
    }
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
}

// ---------------------------------------------------------------------------------------------
// 2, 6. Whatever a commit needs is checked before the first store write.

#[test]
fn an_author_git_cannot_record_is_refused_before_any_store_write() {
    let w = file_workspace(&["flag-1", "flag-2"], "http://127.0.0.1:9", "flag-1 = false\n");
    assert_eq!(w.run(["apply", "--auto-approve"]).code, 0);
    declare(&w, "flag-1 = false\nflag-2 = false\n");
    let run = refused_before_writing(&w, || {
        w.cmd(["apply", "--auto-approve"])
            .env("RELAYCTL_AUTHOR", "Bob <>")
            .run()
    });
    assert!(run.stderr.contains("RELAYCTL_AUTHOR"), "{}", run.stderr);
    assert!(run.stderr.contains("Bob <>"), "{}", run.stderr);
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(w.journal_subjects().len(), 2);
}

#[test]
fn a_flag_key_too_long_for_the_journal_is_refused_at_load() {
    let long = "f".repeat(251);
    let fits = "f".repeat(250);
    let w = file_workspace(
        &[&long, &fits],
        "http://127.0.0.1:9",
        &format!("{long} = false\n"),
    );
    let run = refused_before_writing(&w, || w.run(["apply", "--auto-approve"]));
    assert!(run.stderr.contains("overrides.toml:9:1"), "{}", run.stderr);
    assert!(run.stderr.contains("250"), "{}", run.stderr);
    assert_eq!(w.run(["plan"]).code, 1);

    declare(&w, &format!("{fits} = false\n"));
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(w
        .path(&format!("journal/default/production/{fits}.toml"))
        .exists());
    assert_eq!(stored(&w, &fits)["on"], json!(false));
}

#[test]
fn a_leftover_index_lock_is_found_before_any_store_write() {
    let w = file_workspace(&["flag-1", "flag-2"], "http://127.0.0.1:9", "flag-1 = false\n");
    assert_eq!(w.run(["apply", "--auto-approve"]).code, 0);
    w.write("journal/.git/index.lock", "");
    declare(&w, "flag-1 = false\nflag-2 = false\n");
    let run = refused_before_writing(&w, || w.run(["apply", "--auto-approve"]));
    assert!(run.stderr.contains("index.lock"), "{}", run.stderr);
    assert!(run.stderr.contains("delete it"), "{}", run.stderr);
    std::fs::remove_file(w.path("journal/.git/index.lock")).unwrap();
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(w.path("journal/default/production/flag-2.toml").exists());
}

// ---------------------------------------------------------------------------------------------
// 2, 19. A commit that fails after the store write stays in the write-ahead log until it is made.

#[test]
fn a_change_whose_commit_fails_is_kept_in_the_write_ahead_log_until_it_is_committed() {
    let w = file_workspace(&["flag-1"], "http://127.0.0.1:9", "flag-1 = false\n");
    // A journal whose object storage fails once the commits are written out (as a disk that
    // fills up mid-apply would): libgit2 reports no error at all for this one.
    let journal = w.path("journal");
    git(w.dir.path(), &["init", "-q", "journal"]);
    let pack = journal.join(".git/objects/pack");
    std::fs::remove_dir_all(&pack).unwrap();
    std::fs::write(&pack, "not a directory").unwrap();
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(
        stored(&w, "flag-1")["on"],
        json!(false),
        "written before the commit failed"
    );
    assert!(run.stderr.contains("relayctl-wal.jsonl"), "{}", run.stderr);
    assert!(!run.stderr.contains("no error"), "{}", run.stderr);

    // Nothing is forgotten: log says so, and every later apply refuses until it is committed.
    let log = w.run(["log"]);
    assert!(log.stderr.contains("not in the journal yet"), "{}", log.all());
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("relayctl-wal.jsonl"), "{}", run.stderr);
    assert!(!run.stderr.contains("No changes"), "{}", run.stderr);

    std::fs::remove_file(&pack).unwrap();
    std::fs::create_dir(&pack).unwrap();
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr.contains("Recovered 1 journal commit"),
        "{}",
        run.stderr
    );
    assert_eq!(w.journal_subjects(), ["default/production/flag-1: turn off"]);
    let log = w.run(["log", "--pending"]);
    assert_eq!(log.stdout.lines().count(), 1, "{}", log.all());
    assert!(!log.stderr.contains("not in the journal yet"), "{}", log.stderr);
}

// ---------------------------------------------------------------------------------------------
// 4, 5. Only relayctl's own journal, on its own branch, never over someone's edits.

#[test]
fn the_operators_own_repository_is_refused_and_left_untouched() {
    let w = file_workspace(&["flag-1"], "http://127.0.0.1:9", "flag-1 = false\n");
    let text = w.read("overrides.toml") + "[journal]\npath = \".\"\n";
    w.write("overrides.toml", &text);
    let root = w.dir.path();
    git(root, &["init", "-q"]);
    git(root, &["add", "."]);
    git(
        root,
        &[
            "-c",
            "user.name=Op",
            "-c",
            "user.email=op@example.com",
            "commit",
            "-qm",
            "overrides",
        ],
    );
    // Uncommitted work of the operator's.
    w.write("overrides.toml", &(text + "# draft: flag-2 next\n"));
    w.write("notes.txt", "untracked notes\n");
    let head = git(root, &["rev-parse", "HEAD"]);
    let status = git(root, &["status", "--porcelain"]);

    let store = w.read(FLAGS);
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("not a relayctl journal"), "{}", run.stderr);
    assert_eq!(w.read(FLAGS), store, "nothing may be written");
    assert_eq!(git(root, &["rev-parse", "HEAD"]), head);
    assert_eq!(git(root, &["status", "--porcelain"]), status);
    assert!(w.read("overrides.toml").ends_with("# draft: flag-2 next\n"));
}

#[test]
fn a_journal_of_an_earlier_relayctl_is_recognised_and_its_pending_commits_synced() {
    let ld = FakeLd::start();
    for key in ["flag-1", "flag-2"] {
        ld.add_flag(
            "default",
            key,
            &[json!(true), json!(false)],
            "production",
            true,
            1,
            0,
            10,
        );
    }
    let w = file_workspace(&["flag-1", "flag-2"], &ld.url, "flag-1 = false\nflag-2 = false\n");
    let mut doc: Value = serde_json::from_str(&w.read(FLAGS)).unwrap();
    doc["flags"]["flag-1"]["on"] = json!(false);
    doc["flags"]["flag-1"]["version"] = json!(11);
    w.write(FLAGS, &doc.to_string());
    // What relayctl wrote before journals were marked: a root commit, then a pending change.
    let journal = w.path("journal");
    legacy_journal(&journal);

    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        w.journal_subjects(),
        [
            "default/production/flag-1: turn off",
            "default/production/flag-2: turn off"
        ]
    );
    let run = w.cmd(["sync"]).token().run();
    assert_eq!(run.code, 0, "{}", run.all());
    let mut patched: Vec<String> = ld.applied().iter().map(|p| p.flag()).collect();
    patched.sort();
    assert_eq!(
        patched,
        ["flag-1", "flag-2"],
        "the earlier relayctl's pending commit is synced"
    );
}

/// A journal as relayctl wrote it before it marked its journals: its root commit, and one
/// pending change turning `flag-1` off at base version 10.
fn legacy_journal(journal: &Path) {
    std::fs::create_dir_all(journal.join("default/production")).unwrap();
    git(journal, &["init", "-q"]);
    std::fs::write(journal.join("README.md"), "# relayctl journal\n").unwrap();
    let commit = |msg: &str| {
        git(journal, &["add", "."]);
        git(
            journal,
            &[
                "-c",
                "user.name=Op",
                "-c",
                "user.email=op@example.com",
                "commit",
                "-q",
                "--cleanup=verbatim",
                "-m",
                msg,
            ],
        );
    };
    commit("Start the relayctl journal");
    std::fs::write(
        journal.join("default/production/flag-1.toml"),
        "# default/production/flag-1: override state written by relayctl\non = false\n",
    )
    .unwrap();
    commit(
        "default/production/flag-1: turn off\n\nProject: default\nEnvironment: production\nFlag: flag-1\n\
         On: false\nPrevious-On: true\nBase-Version: 10\nStore: file flags/default-production.json v11\n",
    );
}

#[test]
fn a_repository_whose_history_is_not_a_journal_is_refused() {
    let w = file_workspace(&["flag-1"], "http://127.0.0.1:9", "flag-1 = false\n");
    let journal = w.path("journal");
    std::fs::create_dir_all(&journal).unwrap();
    git(&journal, &["init", "-q"]);
    std::fs::write(journal.join("README.md"), "mine\n").unwrap();
    git(&journal, &["add", "."]);
    git(
        &journal,
        &[
            "-c",
            "user.name=Op",
            "-c",
            "user.email=op@example.com",
            "commit",
            "-qm",
            "Initial commit",
        ],
    );
    for args in [&["apply", "--auto-approve"][..], &["log"][..], &["sync"][..]] {
        let run = refused_before_writing(&w, || w.cmd(args).token().run());
        assert!(
            run.stderr.contains("not a relayctl journal"),
            "{args:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn a_journal_of_more_packfiles_than_open_files_allowed_is_still_read_and_written() {
    // A journal may hold more packfiles than a process may hold open (libgit2 kept every one it
    // read from open, and `log` failed as "object not found" once the limit was reached).
    // relayctl now merges its own past 32; an earlier relayctl, or git, leaves them: here one
    // pack per commit, as an earlier relayctl wrote them.
    let w = file_workspace(&["flag-1"], "http://127.0.0.1:9", "flag-1 = false\n");
    for i in 0..110 {
        declare(&w, &format!("flag-1 = {}\n", i % 2 == 1));
        assert_eq!(w.run(["apply", "--auto-approve", "--quiet"]).code, 0);
    }
    one_pack_per_commit(&w.path("journal"));
    let packs = std::fs::read_dir(w.path("journal/.git/objects/pack"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("pack".as_ref()))
        .count();
    assert!(packs > 100, "{packs} packfiles");
    let log = w.cmd(["log"]).open_files(96).run();
    assert_eq!(log.code, 0, "{}", log.all());
    assert_eq!(log.stdout.lines().count(), 110, "{}", log.stdout);
    declare(&w, "flag-1 = false\n");
    let run = w.cmd(["apply", "--auto-approve"]).open_files(96).run();
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(w.journal_subjects().len(), 111);
}

/// Rewrites the packfiles of the repository at `repo` as one per commit, each holding what that
/// commit added.
fn one_pack_per_commit(repo: &std::path::Path) {
    let script = "set -e
        for c in $(git rev-list --reverse HEAD); do
          git rev-list --objects \"$c\" --not $(git rev-parse --verify -q \"$c^\" || true) \
            | git pack-objects -q .git/objects/pack/pack >/dev/null
        done
        git prune-packed
        for p in .git/objects/pack/*.pack; do
          [ \"$(git show-index < \"${p%.pack}.idx\" | wc -l)\" -gt 20 ] && rm \"$p\" \"${p%.pack}.idx\"
        done
        true";
    let out = std::process::Command::new("sh")
        .args(["-c", script])
        .current_dir(repo)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_edit_to_a_file_the_run_does_not_change_is_kept_and_the_rest_updated() {
    let w = file_workspace(
        &["flag-1", "flag-2"],
        "http://127.0.0.1:9",
        "flag-1 = false\nflag-2 = false\n",
    );
    assert_eq!(w.run(["apply", "--auto-approve"]).code, 0);
    let state = "journal/default/production/flag-1.toml";
    let edited = w.read(state) + "# someone's note\n";
    w.write(state, &edited);
    std::fs::remove_file(w.path("journal/README.md")).unwrap();
    declare(&w, "flag-1 = false\nflag-2 = true\n");
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(!run.stderr.contains("working tree"), "{}", run.stderr);
    assert_eq!(w.read(state), edited, "the edit is kept");
    assert!(w
        .read("journal/default/production/flag-2.toml")
        .contains("on = true"));
    assert!(
        w.path("journal/README.md").exists(),
        "a tracked file deleted by hand is restored"
    );
    let status = git(&w.path("journal"), &["status", "--porcelain"]);
    assert_eq!(
        status.trim(),
        "M default/production/flag-1.toml",
        "only the edit differs"
    );
}

#[test]
fn edits_in_the_journals_working_tree_are_never_overwritten() {
    let w = file_workspace(&["flag-1", "flag-2"], "http://127.0.0.1:9", "flag-1 = false\n");
    assert_eq!(w.run(["apply", "--auto-approve"]).code, 0);
    let state = "journal/default/production/flag-1.toml";
    let edited = w.read(state) + "# someone's note\n";
    w.write(state, &edited);
    declare(&w, "flag-1 = true\nflag-2 = false\n");
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(w.read(state), edited, "the edit is kept");
    assert!(run.stderr.contains("working tree"), "{}", run.stderr);
    assert!(
        run.stderr.contains("default/production/flag-1.toml"),
        "{}",
        run.stderr
    );
    assert_eq!(w.journal_subjects().len(), 3, "the commits are made all the same");
    // Once the edit is set aside, the next run brings the working tree up to date.
    git(
        &w.path("journal"),
        &[
            "-c",
            "user.name=Op",
            "-c",
            "user.email=op@example.com",
            "stash",
            "-q",
        ],
    );
    declare(&w, "flag-1 = true\nflag-2 = true\n");
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(!run.stderr.contains("working tree"), "{}", run.stderr);
    assert!(w.read(state).contains("on = true"), "{}", w.read(state));
    assert!(w
        .read("journal/default/production/flag-2.toml")
        .contains("on = true"));
}

#[test]
fn a_detached_head_or_a_missing_branch_is_refused_with_how_to_repair_it() {
    let w = file_workspace(
        &["flag-1", "flag-2", "flag-3"],
        "http://127.0.0.1:9",
        "flag-1 = false\n",
    );
    assert_eq!(w.run(["apply", "--auto-approve"]).code, 0);
    declare(&w, "flag-1 = false\nflag-2 = false\n");
    assert_eq!(w.run(["apply", "--auto-approve"]).code, 0);
    let journal = w.path("journal");
    let tip = git(&journal, &["rev-parse", "HEAD"]).trim().to_owned();
    let branch = git(&journal, &["symbolic-ref", "--short", "HEAD"])
        .trim()
        .to_owned();

    // Someone looks at an older commit and leaves HEAD there.
    git(&journal, &["checkout", "-q", "--detach", "HEAD~1"]);
    declare(&w, "flag-1 = false\nflag-2 = false\nflag-3 = false\n");
    for args in [&["apply", "--auto-approve"][..], &["log"][..]] {
        let run = refused_before_writing(&w, || w.run(args));
        assert!(run.stderr.contains("detached HEAD"), "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!("git -C journal checkout {branch}")),
            "{}",
            run.stderr
        );
    }
    git(&journal, &["checkout", "-q", &branch]);

    // Someone deletes the branch: relayctl must not start a new history.
    git(&journal, &["update-ref", "-d", &format!("refs/heads/{branch}")]);
    for args in [&["apply", "--auto-approve"][..], &["log"][..]] {
        let run = refused_before_writing(&w, || w.run(args));
        assert!(run.stderr.contains(&format!("branch {branch}")), "{}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("git -C journal branch {branch} {}", &tip[..12])),
            "{}",
            run.stderr
        );
    }
    git(&journal, &["branch", &branch, &tip]);
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(w.journal_subjects().len(), 3);
    assert_eq!(
        git(&journal, &["rev-list", "--max-parents=0", "HEAD"])
            .lines()
            .count(),
        1
    );
}

// ---------------------------------------------------------------------------------------------
// 16. A saved plan is re-checked against the overrides file and the stores before any write.

#[test]
fn a_hand_edited_plan_file_is_refused_whole_naming_each_bad_change() {
    let r = Redis::start();
    let three = json!(["a", "b", "c"]);
    r.seed(
        PREFIX,
        &[flag("flag-1", 10, true, three.clone()), bool_flag("flag-2", 10)],
    );
    r.seed("ld:evil:production", &[bool_flag("flag-2", 10)]);
    let w = Workspace::new(&redis_overrides(
        &[&r],
        "flag-1 = { on = false, off_variation = \"b\" }\nflag-2 = false\n",
    ));
    assert_eq!(w.run(["plan", "--out", "p.json"]).code, 0);
    let plan: Value = serde_json::from_str(&w.read("p.json")).unwrap();
    let before = r.dump();
    let change = |i: usize| plan["changes"][i].clone();

    let mut cases: Vec<(&str, Value, Vec<&str>)> = Vec::new();
    let mut bad = plan.clone();
    bad["changes"][0]["to"]["off_variation"]["variation"]["index"] = json!(99);
    let mut evil = change(1);
    evil["project"] = json!("evil");
    bad["changes"].as_array_mut().unwrap().push(evil);
    cases.push((
        "index 99 and a project not declared",
        bad,
        vec!["default/production/flag-1", "99", "evil/production/flag-2"],
    ));
    let mut bad = plan.clone();
    bad["changes"][0]["to"]["off_variation"]["variation"]["index"] = json!(0);
    cases.push((
        "an index serving another value",
        bad,
        vec!["default/production/flag-1", "\"a\""],
    ));
    let mut bad = plan.clone();
    bad["changes"][1]["to"]["on"] = json!(true);
    cases.push((
        "a state the overrides file does not declare",
        bad,
        vec!["default/production/flag-2"],
    ));
    let mut bad = plan.clone();
    bad["changes"][1]["flag"] = json!("a/b");
    cases.push(("a flag key that is not one", bad, vec!["default/production/a/b"]));
    let mut bad = plan.clone();
    bad["changes"][1]["reason"] = json!("INC \u{0} x");
    cases.push((
        "a reason the overrides file does not give",
        bad,
        vec!["default/production/flag-2", "reason"],
    ));

    for (what, bad, names) in cases {
        w.write("bad.json", &bad.to_string());
        let run = w.run(["apply", "bad.json"]);
        assert_eq!(run.code, 1, "{what}: {}", run.all());
        for name in names {
            assert!(run.stderr.contains(name), "{what}: {name} in {}", run.stderr);
        }
        assert!(
            run.stderr.contains("nothing was written"),
            "{what}: {}",
            run.stderr
        );
        assert_eq!(r.dump(), before, "{what}: nothing may be written");
        assert!(!w.path("journal").exists(), "{what}: no journal");
    }
    let run = w.run(["apply", "p.json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(r.flag(PREFIX, "flag-1").unwrap()["offVariation"], json!(1));
    assert_eq!(
        r.flag("ld:evil:production", "flag-2").unwrap(),
        bool_flag("flag-2", 10)
    );
}

// ---------------------------------------------------------------------------------------------
// Issue 19, item 9: damage to the journal is found before any store write, and named.

/// The journal's packs, oldest first.
fn packs(w: &Workspace) -> Vec<std::path::PathBuf> {
    let dir = w.path("journal/.git/objects/pack");
    let mut packs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect();
    packs.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    packs
}

/// Makes `file` writable and replaces its content with what `change` makes of it.
fn rewrite(file: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(file).unwrap();
    change(&mut bytes);
    let mut perms = std::fs::metadata(file).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(file, perms).unwrap();
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn a_damaged_pack_or_index_is_found_before_any_store_write_and_named() {
    type Damage = fn(&Path);
    let cases: [(&str, Damage); 6] = [
        ("a deleted pack", |p| std::fs::remove_file(p).unwrap()),
        ("a deleted index", |p| {
            std::fs::remove_file(p.with_extension("idx")).unwrap()
        }),
        ("a pack cut short", |p| rewrite(p, |b| b.truncate(b.len() / 2))),
        ("an empty index", |p| {
            rewrite(&p.with_extension("idx"), Vec::clear)
        }),
        ("a bad header", |p| {
            rewrite(p, |b| b[..4].copy_from_slice(b"JUNK"))
        }),
        ("a byte changed", |p| {
            rewrite(p, |b| {
                let middle = b.len() / 2;
                b[middle] ^= 0x01;
            })
        }),
    ];
    for (what, damage) in cases {
        let w = file_workspace(&["flag-1", "flag-2"], "http://127.0.0.1:9", "flag-1 = false\n");
        assert_eq!(w.run(["apply", "--auto-approve"]).code, 0, "{what}");
        declare(&w, "flag-1 = false\nflag-2 = false\n");
        assert_eq!(w.run(["apply", "--auto-approve"]).code, 0, "{what}");
        let older = packs(&w)[0].clone();
        damage(&older);
        declare(&w, "flag-1 = true\nflag-2 = true\n");
        let run = refused_before_writing(&w, || w.run(["apply", "--auto-approve"]));
        assert!(run.stderr.contains("is damaged"), "{what}: {}", run.stderr);
        assert!(run.stderr.contains("fsck --full"), "{what}: {}", run.stderr);
        assert!(
            run.stderr.contains("nothing to the stores"),
            "{what}: {}",
            run.stderr
        );
        let log = w.run(["log"]);
        assert_eq!(log.code, 1, "{what}: {}", log.all());
        assert!(log.stderr.contains("is damaged"), "{what}: {}", log.stderr);
    }
}

// Issue 19, item 10: a folder of the working tree replaced by a link is never written through.

#[test]
fn a_folder_of_the_working_tree_replaced_by_a_link_is_never_written_through() {
    for folder in ["journal/default/production", "journal/default"] {
        let w = file_workspace(&["flag-1", "flag-2"], "http://127.0.0.1:9", "flag-1 = false\n");
        assert_eq!(w.run(["apply", "--auto-approve"]).code, 0);
        let outside = tempfile::tempdir().unwrap();
        std::fs::remove_dir_all(w.path(folder)).unwrap();
        std::os::unix::fs::symlink(outside.path(), w.path(folder)).unwrap();
        declare(&w, "flag-1 = false\nflag-2 = false\n");
        let run = w.run(["apply", "--auto-approve"]);
        assert_eq!(run.code, 0, "{folder}: {}", run.all());
        assert!(
            run.stderr.contains("changes relayctl did not make"),
            "{folder}: {}",
            run.stderr
        );
        let written: Vec<_> = walkdir(outside.path());
        assert!(
            written.is_empty(),
            "{folder}: written through the link: {written:?}"
        );
        assert_eq!(w.journal_subjects().len(), 2, "the commit is made all the same");
        // Once the link is gone, the next run brings the tree up to date.
        std::fs::remove_file(w.path(folder)).unwrap();
        assert_eq!(w.run(["apply", "--auto-approve"]).code, 0);
        assert!(
            w.path("journal/default/production/flag-2.toml").is_file(),
            "{folder}"
        );
    }
}

/// Every file below `dir`.
fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        match path.is_dir() {
            true => out.extend(walkdir(&path)),
            false => out.push(path),
        }
    }
    out
}
