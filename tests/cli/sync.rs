//! sync, verify and the sync status in log, against the fake LaunchDarkly in support/fake_ld.rs.
//! Journal commits come from real `relayctl apply` runs on a file store.

use crate::support::fake_ld::{FakeLd, Reply, TOKEN};
use crate::support::fixtures::{all_off, file_store_and_ld, flag, flag_file, overrides};
use crate::support::{git, output, wait_for, Workspace};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};

pub(crate) const VARIATIONS: [&str; 2] = ["treatment", "control"];

/// The variations of every flag here, as the fake LaunchDarkly takes them.
pub(crate) fn variations() -> Vec<Value> {
    VARIATIONS.iter().map(|v| json!(v)).collect()
}

/// A workspace with a file store holding `flags` (key, version, on; variations "treatment",
/// "control"; off serves "control") and a fake LaunchDarkly holding the same flags.
pub(crate) struct Setup {
    pub(crate) ld: FakeLd,
    pub(crate) w: Workspace,
}

impl Setup {
    pub(crate) fn new(flags: &[(&str, u64, bool)]) -> Setup {
        Setup::with(FakeLd::start(), flags)
    }

    /// [`Setup::new`] with `ld`, which may not be up yet ([`FakeLd::down`]).
    pub(crate) fn with(ld: FakeLd, flags: &[(&str, u64, bool)]) -> Setup {
        let w = Workspace::new("");
        let mut stored = Vec::new();
        for (key, version, on) in flags {
            stored.push(flag(key, *version, *on, json!(VARIATIONS)));
            ld.add_flag("default", key, &variations(), "production", *on, 1, 0, *version);
        }
        w.write("flags/default-production.json", &flag_file(&stored));
        Setup { ld, w }
    }

    /// `keys` on at version 5 in the store and in LaunchDarkly, then applied off: one pending
    /// journal commit each.
    pub(crate) fn turned_off(keys: &[String]) -> Setup {
        let flags: Vec<(&str, u64, bool)> = keys.iter().map(|k| (k.as_str(), 5, true)).collect();
        let s = Setup::new(&flags);
        s.apply(&all_off(keys));
        s
    }

    /// Declares `flags` for default/production and applies them (one commit per changed flag).
    pub(crate) fn apply(&self, flags: &str) {
        let text = overrides(&file_store_and_ld(&self.ld.url), flags);
        self.w.write("overrides.toml", &text);
        self.w.cmd(["apply", "--auto-approve"]).assert().success();
    }

    /// The journal's flag commits, oldest first, as (short sha, sync note).
    pub(crate) fn notes(&self) -> Vec<(String, String)> {
        let journal = self.w.path("journal");
        git(&journal, &["log", "--reverse", "--format=%h %s", "HEAD"])
            .lines()
            .filter(|l| l.contains("default/production/"))
            .map(|l| {
                let short = l.split(' ').next().unwrap().to_owned();
                let out = std::process::Command::new("git")
                    .arg("-C")
                    .arg(&journal)
                    .args(["notes", "--ref=relayctl-sync", "show", &short])
                    .output()
                    .unwrap();
                (short, String::from_utf8_lossy(&out.stdout).trim().to_owned())
            })
            .collect()
    }
}

#[test]
fn several_commits_on_one_flag_become_one_patch_naming_both() {
    let s = Setup::new(&[("new-checkout", 41, true)]);
    s.apply("new-checkout = { on = false, reason = \"INC-4711: checkout returns 500\" }\n");
    s.apply("new-checkout = { on = false, off_variation = \"treatment\", reason = \"INC-4712: serve treatment\" }\n");
    let notes = s.notes();
    assert_eq!(notes.len(), 2);
    let a = s.w.cmd(["sync"]).token().assert().success();
    let (stdout, stderr) = output(&a);
    assert!(
        stdout.contains("synced     default/production/new-checkout  ld-version=42"),
        "{stdout}"
    );
    assert!(
        stderr.contains("Sync: 1 synced, 0 already in state, 0 conflict(s), 0 skipped, 0 failed."),
        "{stderr}"
    );

    let patches = s.ld.patches();
    assert_eq!(patches.len(), 1, "{patches:?}");
    let p = &patches[0];
    assert_eq!(p.path, "/api/v2/flags/default/new-checkout");
    assert_eq!(
        p.json(),
        json!({
            "comment": format!("relayctl {}, {}: INC-4711: checkout returns 500; INC-4712: serve treatment (Test Operator <operator@example.com>)", notes[0].0, notes[1].0),
            "patch": [
                {"op": "test", "path": "/environments/production/version", "value": 41},
                {"op": "replace", "path": "/environments/production/on", "value": false},
                {"op": "replace", "path": "/environments/production/offVariation", "value": 0},
            ]
        })
    );
    let env = s.ld.env("default", "new-checkout", "production");
    assert_eq!(
        (
            env["on"].clone(),
            env["offVariation"].clone(),
            env["version"].clone()
        ),
        (json!(false), json!(0), json!(42))
    );
    for r in s.ld.requests() {
        assert_eq!(r.header("Authorization"), Some(TOKEN));
        assert_eq!(r.header("LD-API-Version"), Some("20240415"));
        assert!(r.header("User-Agent").unwrap().starts_with("relayctl/"), "{r:?}");
    }
    assert_eq!(
        s.ld.requests()[0].path,
        "/api/v2/flags/default/new-checkout?env=production"
    );
    for (_, note) in s.notes() {
        assert!(
            note.starts_with("synced 20") && note.ends_with(" ld-version=42"),
            "{note}"
        );
    }
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN));

    // log shows the status; --pending shows nothing left.
    let (log, _) = output(&s.w.cmd(["log"]).token().assert().success());
    assert_eq!(log.matches("ld-version=42]").count(), 2, "{log}");
    let (pending, stderr) = output(&s.w.cmd(["log", "--pending"]).token().assert().success());
    assert_eq!(pending, "");
    assert!(stderr.contains("Nothing pending"), "{stderr}");
}

#[test]
fn a_rerun_sends_nothing_twice_and_flags_already_in_state_get_no_patch() {
    let s = Setup::new(&[("a", 41, true), ("b", 7, true)]);
    // Someone already turned b off in LaunchDarkly (its version moved): nothing to send.
    s.ld.edit_in_ui("default", "b", "production", |e| e["on"] = json!(false));
    s.apply("a = false\nb = false\n");
    let (stdout, stderr) = output(&s.w.cmd(["sync"]).token().assert().success());
    assert!(
        stdout.contains("in-state   default/production/b  ld-version=8"),
        "{stdout}"
    );
    assert!(stderr.contains("1 synced, 1 already in state"), "{stderr}");
    assert_eq!(s.ld.patches().len(), 1);
    let notes = s.notes();
    assert!(
        notes
            .iter()
            .any(|(_, n)| n.contains("ld-version=8 (LD already had this state)")),
        "{notes:?}"
    );

    s.ld.clear_log();
    let (_, stderr) = output(&s.w.cmd(["sync"]).token().assert().success());
    assert!(stderr.contains("Nothing to sync"), "{stderr}");
    assert!(s.ld.requests().is_empty(), "{:?}", s.ld.requests());
}

#[test]
fn a_conflict_is_left_alone_noted_and_exits_2_until_forced() {
    let s = Setup::new(&[("a", 41, true), ("b", 3, true)]);
    s.apply("a = { on = false, reason = \"INC-1\" }\nb = false\n");
    s.ld.edit_in_ui("default", "a", "production", |e| e["offVariation"] = json!(0));
    let a = s.w.cmd(["sync"]).token().assert().code(2);
    let (stdout, stderr) = output(&a);
    assert!(
        stdout.contains("default/production/a") && stdout.contains("LD version 42, base 41"),
        "{stdout}"
    );
    assert!(stderr.contains("0 skipped"), "{stderr}");
    assert!(
        stderr.contains("Conflicts:") && stderr.contains("relayctl sync --force"),
        "{stderr}"
    );
    let notes = s.notes();
    assert!(
        stderr.contains(&format!(
            "default/production/a (commit {}): LD version 42, base 41",
            notes[0].0
        )),
        "{stderr}"
    );
    assert_eq!(notes[0].1, "conflict: LD version 42, base 41");
    assert!(notes[1].1.starts_with("synced"), "{notes:?}");
    let patched: Vec<String> = s.ld.patches().iter().map(|p| p.flag()).collect();
    assert_eq!(patched, ["b"]);
    assert_eq!(s.ld.env("default", "a", "production")["on"], json!(true));
    let (log, _) = output(&s.w.cmd(["log", "--pending"]).token().assert().success());
    assert!(log.contains("[conflict: LD version 42, base 41]"), "{log}");

    // --force overwrites, still guarded by the version LD has now.
    let (stdout, _) = output(&s.w.cmd(["sync", "--force"]).token().assert().success());
    assert!(stdout.contains("forced over LD version 42, base 41"), "{stdout}");
    let last = s.ld.patches().pop().unwrap().json();
    assert_eq!(
        last["patch"][0],
        json!({"op": "test", "path": "/environments/production/version", "value": 42})
    );
    assert_eq!(s.ld.env("default", "a", "production")["on"], json!(false));
    assert!(
        s.notes()[0]
            .1
            .contains("ld-version=43 (forced over a conflict: LD version 42, base 41)"),
        "{:?}",
        s.notes()
    );
}

#[test]
fn a_change_racing_the_patch_fails_its_test_and_becomes_a_conflict() {
    let s = Setup::new(&[("a", 41, true)]);
    s.apply("a = false\n");
    s.ld.race_next_patch("a");
    let (stdout, _) = output(&s.w.cmd(["sync"]).token().assert().code(2));
    assert!(stdout.contains("LD version 42, base 41"), "{stdout}");
    let patches = s.ld.patches();
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].status, Some(400));
    assert_eq!(
        s.ld.env("default", "a", "production")["on"],
        json!(true),
        "the racing change must survive"
    );
}

#[test]
fn a_sync_killed_midway_resumes_without_sending_anything_twice() {
    let keys: Vec<String> = (0..20).map(|i| format!("flag-{i:02}")).collect();
    let s = Setup::turned_off(&keys);
    s.ld.answer_only(15);
    let mut child = s.w.cmd(["sync"]).token().spawn(Stdio::null(), Stdio::null());
    wait_for(
        "the sync to be stuck on an unanswered request",
        Duration::from_secs(20),
        || s.ld.requests().iter().any(|r| r.status.is_none()),
    );
    std::thread::sleep(Duration::from_millis(100));
    child.kill().unwrap();
    child.wait().unwrap();
    let first_run = s.ld.applied().len();
    assert!(
        first_run > 0 && first_run < 20,
        "{first_run} flags patched before the kill"
    );

    s.ld.answer_all();
    let (_, stderr) = output(&s.w.cmd(["sync"]).token().assert().success());
    assert!(stderr.contains("0 conflict(s), 0 skipped, 0 failed"), "{stderr}");
    let mut applied: Vec<String> = s.ld.applied().iter().map(|p| p.flag()).collect();
    applied.sort();
    assert_eq!(applied, keys, "every flag patched exactly once over both runs");
    assert!(
        s.notes().iter().all(|(_, n)| n.starts_with("synced")),
        "{:?}",
        s.notes()
    );
}

#[test]
fn a_notes_ref_lock_left_by_a_killed_sync_is_removed_by_the_next_one() {
    // A sync killed while moving its notes ref leaves git's lock file and relayctl's marker.
    let keys: Vec<String> = (0..3).map(|i| format!("flag-{i}")).collect();
    let s = Setup::turned_off(&keys);
    let git_dir = s.w.path("journal/.git");
    let lock = git_dir.join("refs/notes/relayctl-sync.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(&lock, "").unwrap();
    std::fs::write(
        git_dir.join("relayctl-moving-ref"),
        "refs/notes/relayctl-sync.lock\n",
    )
    .unwrap();
    let (_, stderr) = output(&s.w.cmd(["sync"]).token().assert().success());
    assert!(
        stderr.contains("Removed") && stderr.contains("relayctl-sync.lock"),
        "{stderr}"
    );
    assert!(!lock.exists());
    assert!(
        s.notes().iter().all(|(_, n)| n.starts_with("synced")),
        "{:?}",
        s.notes()
    );
    assert_eq!(s.notes().len(), 3);
}

#[test]
fn rate_limits_are_waited_out_with_either_header() {
    let s = Setup::new(&[("a", 41, true)]);
    s.apply("a = false\n");
    s.ld.inject(Some("GET"), None, 1, Reply::RetryAfter(1));
    s.ld.inject(Some("PATCH"), None, 1, Reply::ResetIn(200));
    let started = Instant::now();
    s.w.cmd(["sync"]).token().assert().success();
    assert!(
        started.elapsed() >= Duration::from_millis(1150),
        "{:?}",
        started.elapsed()
    );
    let statuses: Vec<(String, Option<u16>)> =
        s.ld.requests()
            .into_iter()
            .map(|r| (r.method, r.status))
            .collect();
    assert_eq!(
        statuses,
        [
            ("GET".into(), Some(429)),
            ("GET".into(), Some(200)),
            ("PATCH".into(), Some(429)),
            ("PATCH".into(), Some(200))
        ]
    );
}

#[test]
fn server_errors_are_retried_then_sync_stops_leaving_the_rest_pending() {
    let s = Setup::new(&[("a", 41, true)]);
    s.apply("a = false\n");
    s.ld.inject(
        Some("PATCH"),
        None,
        2,
        Reply::Status(503, "service_unavailable", "try later"),
    );
    s.w.cmd(["sync"]).token().assert().success();
    assert_eq!(s.ld.applied().len(), 1);
    assert_eq!(s.ld.patches().len(), 3);

    let s = Setup::new(&[("a", 41, true)]);
    s.apply("a = false\n");
    s.ld.inject(None, None, 100, Reply::Status(500, "internal", "boom"));
    let (_, stderr) = output(&s.w.cmd(["sync"]).token().assert().code(2));
    assert!(stderr.contains("default/production/a"), "{stderr}");
    assert!(
        stderr.contains("HTTP 500") && stderr.contains("Run `relayctl sync` again"),
        "{stderr}"
    );
    assert_eq!(s.ld.requests().len(), 5, "one try and four retries");
    assert_eq!(s.notes()[0].1, "", "no note: the commit stays pending");
}

#[test]
fn a_bad_or_missing_token_stops_at_once_and_is_never_printed() {
    let s = Setup::new(&[("a", 41, true)]);
    s.apply("a = false\n");
    let secret = "api-wrong-secret-never-print";
    let a = s.w.cmd(["sync"]).env("LD_API_KEY", secret).assert().code(1);
    let (stdout, stderr) = output(&a);
    assert!(
        stderr.contains("LD_API_KEY") && stderr.contains("HTTP 401"),
        "{stderr}"
    );
    assert!(!stdout.contains(secret) && !stderr.contains(secret));
    assert_eq!(s.ld.requests().len(), 1);
    assert_eq!(s.notes()[0].1, "");
    let (_, stderr) = output(&s.w.cmd(["verify"]).assert().code(1));
    assert!(stderr.contains("LD_API_KEY is not set"), "{stderr}");

    s.ld.clear_log();
    let (_, stderr) = output(&s.w.cmd(["sync"]).assert().code(1));
    assert!(
        stderr.contains("LD_API_KEY is not set") && stderr.contains("Nothing was sent"),
        "{stderr}"
    );
    assert!(s.ld.requests().is_empty());
}

#[test]
fn verify_exits_0_when_ld_matches_and_2_on_a_mismatch() {
    let s = Setup::new(&[("a", 41, true), ("b", 2, true)]);
    s.apply("a = { on = false, off_variation = \"treatment\" }\nb = false\n");
    s.w.cmd(["sync"]).token().assert().success();
    let (stdout, stderr) = output(&s.w.cmd(["verify"]).token().assert().success());
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("Verify: 2 flag(s) match the journal, 0 mismatch(es)."),
        "{stderr}"
    );
    s.ld.edit_in_ui("default", "a", "production", |e| {
        e["on"] = json!(true);
        e["offVariation"] = json!(1);
    });
    let (stdout, _) = output(&s.w.cmd(["verify"]).token().assert().code(2));
    assert!(
        stdout.contains("mismatch  default/production/a  on: LD true, journal false, off_variation: LD 1 (\"control\"), journal 0 (\"treatment\")"),
        "{stdout}"
    );
    assert!(!stdout.contains("/b "), "{stdout}");
    assert!(s.ld.patches().len() == 2);
}

#[test]
fn dry_run_only_reads_and_writes_no_note() {
    let s = Setup::new(&[("a", 41, true), ("b", 3, true)]);
    s.apply("a = false\nb = false\n");
    s.ld.edit_in_ui("default", "b", "production", |e| e["offVariation"] = json!(0));
    let a = s.w.cmd(["sync", "--dry-run"]).token().assert().code(2);
    let (stdout, stderr) = output(&a);
    assert!(stdout.contains("would-patch default/production/a"), "{stdout}");
    assert!(
        stdout.contains(r#"{"op":"test","path":"/environments/production/version","value":41}"#),
        "{stdout}"
    );
    assert!(
        stdout.contains("default/production/b") && stdout.contains("LD version 4, base 3"),
        "{stdout}"
    );
    assert!(
        stderr.contains("1 would be patched (nothing was sent, no note written)"),
        "{stderr}"
    );
    assert!(s.ld.requests().iter().all(|r| r.method == "GET"));
    assert!(s.notes().iter().all(|(_, n)| n.is_empty()), "{:?}", s.notes());
}

#[test]
fn approvals_missing_flags_locks_and_scheduled_changes_are_noted() {
    let s = Setup::new(&[
        ("needs-approval", 1, true),
        ("gone", 1, true),
        ("locked", 1, true),
        ("scheduled", 1, true),
    ]);
    s.apply("needs-approval = false\ngone = false\nlocked = false\nscheduled = false\n");
    s.ld.inject(
        Some("PATCH"),
        Some("needs-approval"),
        1,
        Reply::Status(405, "method_not_allowed", "approval required"),
    );
    s.ld.inject(
        Some("GET"),
        Some("gone"),
        1,
        Reply::Status(404, "not_found", "Unknown resource identifier"),
    );
    s.ld.inject(
        Some("PATCH"),
        Some("locked"),
        1,
        Reply::Status(409, "optimistic_locking_error", "try again later"),
    );
    s.ld.inject(
        Some("PATCH"),
        Some("scheduled"),
        1,
        Reply::Status(
            400,
            "invalid_request",
            "Your change conflicts with a scheduled change",
        ),
    );
    let (_, stderr) = output(&s.w.cmd(["sync"]).token().assert().code(2));
    assert!(
        stderr.contains("1 synced, 0 already in state, 1 conflict(s), 2 skipped, 0 failed"),
        "{stderr}"
    );
    let notes: Vec<String> = s.notes().into_iter().map(|(_, n)| n).collect();
    // Commits are in flag order: gone, locked, needs-approval, scheduled.
    assert_eq!(notes[0], "conflict: not found in LD");
    assert!(notes[1].starts_with("synced"), "{notes:?}");
    assert_eq!(notes[2], "skipped: approval required");
    assert!(
        notes[3].starts_with(
            "skipped: conflicts with a pending scheduled change or approval in LD (400 invalid_request)"
        ),
        "{notes:?}"
    );
    assert_eq!(s.ld.applied().len(), 1);
    for p in s.ld.patches() {
        assert_eq!(
            p.json()["patch"][0]["op"],
            json!("test"),
            "every PATCH carries the precondition"
        );
    }
}

#[test]
fn requests_for_one_flag_never_overlap_while_different_flags_run_in_parallel() {
    let s = Setup::new(&[("shared", 5, true), ("x", 5, true), ("y", 5, true)]);
    s.ld.add_flag("default", "shared", &variations(), "staging", true, 1, 0, 9);
    s.w.write(
        "flags/default-staging.json",
        &flag_file(&[flag("shared", 9, true, json!(VARIATIONS))]),
    );
    s.apply("shared = false\nx = false\ny = false\n\n[overrides.default.staging]\nshared = false\n");
    s.ld.set_delay(Duration::from_millis(150));
    s.w.cmd(["sync"]).token().assert().success();
    let (per_flag, total) = s.ld.max_in_flight();
    assert_eq!(per_flag, 1, "two requests for one flag at once");
    assert!(total > 1, "different flags should be worked on concurrently");
    assert_eq!(s.ld.applied().len(), 4);
    assert_eq!(s.ld.env("default", "shared", "staging")["version"], json!(10));
}

#[test]
fn a_terminal_gets_a_progress_bar_on_stderr_while_stdout_stays_data() {
    let keys: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
    let s = Setup::turned_off(&keys);
    s.ld.set_delay(Duration::from_millis(50));
    // `script` gives relayctl a terminal on stderr; stdout goes to a file.
    let run =
        s.w.cmd(["sync"])
            .token()
            .on_terminal()
            .stdout_to("stdout.txt")
            .run();
    assert_eq!(run.code, 0, "{}", run.stdout);
    let terminal = run.stdout;
    assert!(
        terminal.contains("syncing [") && terminal.contains("10/10 flags"),
        "{terminal}"
    );
    let stdout = s.w.read("stdout.txt");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("synced     default/production/f"))
            .count(),
        10,
        "{stdout}"
    );
    assert!(!stdout.contains('\x1b'), "{stdout:?}");
}

#[test]
fn ld_base_url_overrides_the_file_and_the_token_may_come_from_dot_env() {
    let s = Setup::new(&[("a", 41, true)]);
    s.apply("a = false\n");
    let text =
        s.w.read("overrides.toml")
            .replace(&s.ld.url, "http://127.0.0.1:9");
    s.w.write("overrides.toml", &text);
    s.w.write(".env", &format!("LD_API_KEY={TOKEN}\n"));
    let a = s.w.cmd(["sync"]).env("LD_BASE_URL", &s.ld.url).assert().success();
    let (stdout, stderr) = output(&a);
    assert!(stderr.contains(&format!("to {}...", s.ld.url)), "{stderr}");
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN));
    assert_eq!(s.ld.applied().len(), 1);
}

/// `a` at version 41 and on, applied off, on, off (store version 44) and synced: one PATCH,
/// LaunchDarkly at version 42 (noted `ld-version=42` on all three commits).
fn flapped_and_synced() -> Setup {
    let s = Setup::new(&[("a", 41, true)]);
    for state in ["false", "true", "false"] {
        s.apply(&format!("a = {state}\n"));
    }
    s.w.cmd(["sync"]).token().assert().success();
    assert_eq!(s.ld.applied().len(), 1);
    assert_eq!(s.ld.env("default", "a", "production")["version"], json!(42));
    assert!(
        s.notes().iter().all(|(_, n)| n.ends_with("ld-version=42")),
        "{:?}",
        s.notes()
    );
    s
}

#[test]
fn the_version_relayctl_left_launchdarkly_at_is_the_base_of_the_flag_s_next_commits() {
    let s = flapped_and_synced();
    // Based on the store's version 44; LaunchDarkly is at 42, relayctl's own write.
    s.apply("a = true\n");
    let (stdout, stderr) = output(&s.w.cmd(["sync"]).token().assert().success());
    assert!(
        stdout.contains("synced     default/production/a  ld-version=43"),
        "{stdout}{stderr}"
    );
    let last = s.ld.patches().pop().unwrap().json();
    assert_eq!(
        last["patch"][0],
        json!({"op": "test", "path": "/environments/production/version", "value": 42})
    );
    assert_eq!(s.ld.env("default", "a", "production")["on"], json!(true));
    assert!(s.notes()[3].1.ends_with("ld-version=43"), "{:?}", s.notes());
}

#[test]
fn a_change_in_launchdarkly_after_relayctl_s_sync_is_still_a_conflict() {
    let s = flapped_and_synced();
    s.ld.edit_in_ui("default", "a", "production", |e| e["offVariation"] = json!(0));
    s.apply("a = true\n");
    let (stdout, _) = output(&s.w.cmd(["sync"]).token().assert().code(2));
    let why = "LD version 43, base 44 (relayctl's last sync of this flag left LD at version 42)";
    assert!(stdout.contains(why), "{stdout}");
    assert_eq!(s.ld.applied().len(), 1, "nothing sent over the change");
    let env = s.ld.env("default", "a", "production");
    assert_eq!(
        (env["on"].clone(), env["offVariation"].clone()),
        (json!(false), json!(0))
    );
    assert_eq!(s.notes()[3].1, format!("conflict: {why}"));
}

#[test]
fn a_sync_killed_after_launchdarkly_took_its_patch_is_recognised_by_the_next_one() {
    let s = Setup::new(&[("a", 41, true)]);
    for state in ["false", "true", "false"] {
        s.apply(&format!("a = {state}\n"));
    }
    // LaunchDarkly takes the PATCH; its answer never comes; the sync is killed.
    s.ld.hold_applied_patches(1);
    let mut child = s.w.cmd(["sync"]).token().spawn(Stdio::null(), Stdio::null());
    wait_for("LaunchDarkly to take the PATCH", Duration::from_secs(20), || {
        s.ld.env("default", "a", "production")["on"] == json!(false)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(s.notes().iter().all(|(_, n)| n.is_empty()), "{:?}", s.notes());

    s.apply("a = true\n");
    let (stdout, stderr) = output(&s.w.cmd(["sync"]).token().assert().success());
    assert!(
        stdout.contains("synced     default/production/a  ld-version=43"),
        "{stdout}{stderr}"
    );
    let patches = s.ld.patches();
    assert_eq!(patches.len(), 2, "{patches:?}");
    assert_eq!(patches[1].json()["patch"][0]["value"], json!(42));
    assert_eq!(s.ld.env("default", "a", "production")["on"], json!(true));
    assert!(
        s.notes().iter().all(|(_, n)| n.ends_with("ld-version=43")),
        "{:?}",
        s.notes()
    );
    let sent = s.w.path("journal/.git/relayctl-sync-sent");
    assert!(
        !sent.exists(),
        "{}",
        std::fs::read_to_string(&sent).unwrap_or_default()
    );
}

#[test]
fn someone_setting_a_state_the_journal_went_through_is_still_a_conflict() {
    let s = Setup::new(&[("a", 41, true)]);
    s.apply("a = false\n");
    // Someone turns it off in LaunchDarkly too (version 42, as relayctl's own PATCH would
    // have made); then the journal turns it on again. relayctl sent nothing: a conflict.
    s.ld.edit_in_ui("default", "a", "production", |e| e["on"] = json!(false));
    s.apply("a = true\n");
    let (stdout, _) = output(&s.w.cmd(["sync"]).token().assert().code(2));
    assert!(stdout.contains("LD version 42, base 41"), "{stdout}");
    assert!(s.ld.patches().is_empty());
    assert_eq!(s.ld.env("default", "a", "production")["on"], json!(false));
}

#[test]
fn two_syncs_at_once_send_nothing_twice_and_note_each_commit_once() {
    let keys: Vec<String> = (0..6).map(|i| format!("f{i}")).collect();
    let s = Setup::turned_off(&keys);
    s.ld.set_delay(Duration::from_millis(300));
    let spawn = |name: &str| {
        let err = std::fs::File::create(s.w.path(name)).unwrap();
        s.w.cmd(["sync"]).token().spawn(Stdio::null(), err)
    };
    // The second starts once the first holds the sync lock and talks to LaunchDarkly: whatever
    // the machine's load, they overlap.
    let mut first = spawn("first.txt");
    crate::support::wait_for(
        "the first sync to ask LaunchDarkly",
        Duration::from_secs(20),
        || !s.ld.requests().is_empty(),
    );
    let mut second = spawn("second.txt");
    assert!(first.wait().unwrap().success(), "{}", s.w.read("first.txt"));
    assert!(second.wait().unwrap().success(), "{}", s.w.read("second.txt"));
    let both = s.w.read("first.txt") + &s.w.read("second.txt");
    // One pass at a time: the second waited for the first, then found nothing left.
    assert!(
        both.contains("Waiting for another relayctl (sync pid ") && both.contains("to release the sync lock"),
        "{both}"
    );
    assert!(both.contains("Nothing to sync"), "{both}");
    let mut applied: Vec<String> = s.ld.applied().iter().map(|p| p.flag()).collect();
    applied.sort();
    assert_eq!(applied, keys, "each flag patched exactly once");
    assert!(
        s.notes()
            .iter()
            .all(|(_, n)| n.starts_with("synced") && n.ends_with("ld-version=6")),
        "{:?}",
        s.notes()
    );
}

#[test]
fn a_synced_note_written_by_someone_else_meanwhile_is_kept() {
    let s = Setup::new(&[("a", 41, true)]);
    s.apply("a = false\n");
    s.ld.set_delay(Duration::from_secs(1));
    let err = std::fs::File::create(s.w.path("stderr.txt")).unwrap();
    let mut child = s.w.cmd(["sync"]).token().spawn(Stdio::null(), err);
    wait_for("the GET", Duration::from_secs(20), || !s.ld.requests().is_empty());
    // An older relayctl (holding only the journal lock) notes it while this one is at work.
    let theirs = "synced 2026-11-22T03:04:05Z ld-version=99";
    let short = s.notes()[0].0.clone();
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(s.w.path("journal"))
        .args(["notes", "--ref=relayctl-sync", "add", "-m", theirs, &short])
        .env("GIT_COMMITTER_NAME", "Other")
        .env("GIT_COMMITTER_EMAIL", "other@example.com")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(child.wait().unwrap().success(), "{}", s.w.read("stderr.txt"));
    assert_eq!(s.notes()[0].1, theirs);
    let stderr = s.w.read("stderr.txt");
    assert!(
        stderr.contains(&format!(
            "commit {short} was noted `{theirs}` by another relayctl meanwhile; that note is kept"
        )),
        "{stderr}"
    );
}
