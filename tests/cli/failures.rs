//! When things go wrong during apply: a store target down (partial failure, then convergence)
//! and two applies racing on the same journal.

use crate::support::fixtures::{all_off, bool_flag, flag, overrides, redis_overrides, redis_store, PREFIX};
use crate::support::{git, set_raw, Proxy, Redis, Workspace};
use serde_json::json;
use std::process::Stdio;

/// Seeds `r` with boolean flags `names`, on, at version 10.
fn seed(r: &Redis, names: &[impl AsRef<str>]) {
    let flags: Vec<_> = names.iter().map(|n| bool_flag(n.as_ref(), 10)).collect();
    r.seed(PREFIX, &flags);
}

/// A Redis holding `names` (as [`seed`] does) and a workspace declaring every one of them off.
fn declared_off(names: &[impl AsRef<str>]) -> (Redis, Workspace) {
    let r = Redis::start();
    seed(&r, names);
    let w = Workspace::new(&redis_overrides(&[&r], &all_off(names)));
    (r, w)
}

/// Holds the journal lock (the journal is created first) until dropped.
fn hold_lock(w: &Workspace) -> std::fs::File {
    git(w.dir.path(), &["init", "-q", "journal"]);
    let lock = std::fs::File::create(w.path("journal/.git/relayctl.lock")).unwrap();
    lock.lock().unwrap();
    lock
}

#[test]
fn a_target_down_is_reported_journaled_as_failed_and_converges_after_it_is_back() {
    let (a, mut b) = (Redis::start(), Redis::start());
    for r in [&a, &b] {
        seed(r, &["alpha", "beta", "gamma"]);
    }
    let w = Workspace::new(&redis_overrides(&[&a, &b], "alpha = false\nbeta = false\n"));
    assert_eq!(w.run(["plan", "--out", "p.json"]).code, 0);
    let b_before = b.dump();
    b.kill();

    let run = w.run(["apply", "p.json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let (pa, pb) = (a.port.to_string(), b.port.to_string());
    insta::with_settings!({filters => vec![(r"journal [0-9a-f]{7}", "journal [SHA]")]}, {
        insta::assert_snapshot!(run.render(&[(&pa, "[PORT-A]"), (&pb, "[PORT-B]"), (&w.root(), "[WS]")]));
    });
    for f in ["alpha", "beta"] {
        assert!(
            run.stderr.contains(&format!(
                "default/production/{f} NOT written to relay-redis {}",
                b.url()
            )),
            "stderr must say what was not written: {}",
            run.stderr
        );
        assert!(
            run.stdout
                .lines()
                .any(|l| l.contains(&format!("default/production/{f} "))
                    && l.contains(&format!("relay-redis {} (v11)", a.url()))),
            "stdout lists what was written: {}",
            run.stdout
        );
        assert_eq!(a.flag(PREFIX, f).unwrap()["on"], json!(false));
    }
    assert!(
        run.stderr.contains("2 of 2 flag(s) were not written everywhere"),
        "{}",
        run.stderr
    );
    // One commit per flag, recording only the target written, and the failed one.
    let journal = w.path("journal");
    let trailers = |rev: &str| {
        git(
            &journal,
            &[
                "log",
                "-1",
                "--format=%(trailers:key=Store)%(trailers:key=Store-Failed)",
                rev,
            ],
        )
    };
    assert_eq!(w.journal_commits(), 3);
    for rev in ["HEAD", "HEAD~1"] {
        assert_eq!(
            trailers(rev).trim(),
            format!(
                "Store: relay-redis {} v11\nStore-Failed: relay-redis {}",
                a.url(),
                b.url()
            )
        );
    }

    // The host comes back with what it held before (a Relay restart would reload the same).
    b.restart();
    b.restore(&b_before);
    let run = w.run(["plan", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let left: Vec<(String, String)> = doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["flag"].as_str().unwrap().into(),
                c["target"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(left, [("alpha".into(), b.url()), ("beta".into(), b.url())]);
    assert_eq!(doc["unchanged"], json!(2));

    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(w.journal_commits(), 5);
    for rev in ["HEAD", "HEAD~1"] {
        assert_eq!(
            trailers(rev).trim(),
            format!("Store: relay-redis {} v11", b.url())
        );
    }
    for r in [&a, &b] {
        for f in ["alpha", "beta"] {
            assert_eq!(r.flag(PREFIX, f).unwrap()["version"], json!(11));
        }
        assert_eq!(r.flag(PREFIX, "gamma").unwrap(), bool_flag("gamma", 10));
    }
    let run = w.run(["plan", "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "{}", run.all());
}

#[test]
fn two_applies_at_once_serialise_on_the_journal_lock() {
    let names: Vec<String> = (0..20).map(|i| format!("flag-{i:02}")).collect();
    let (r, w) = declared_off(&names);

    // Hold the journal lock ourselves, so both processes are certain to find it taken.
    let lock = hold_lock(&w);
    let spawn = |n: usize| {
        let err = std::fs::File::create(w.path(&format!("stderr-{n}"))).unwrap();
        w.cmd(["apply", "--auto-approve"]).spawn(Stdio::null(), err)
    };
    let children = [spawn(1), spawn(2)];
    for n in 1..=2 {
        let waiting = "Waiting for another relayctl to release the journal lock";
        w.wait_for_text(&format!("stderr-{n}"), waiting);
    }
    drop(lock);
    for mut c in children {
        let status = c.wait().unwrap();
        assert!(status.success(), "an apply failed");
    }
    let stderr: Vec<String> = (1..=2)
        .map(|n| std::fs::read_to_string(w.path(&format!("stderr-{n}"))).unwrap())
        .collect();
    let applied = stderr
        .iter()
        .filter(|s| s.contains("Apply complete: 20 flag(s) changed"))
        .count();
    let idle = stderr.iter().filter(|s| s.contains("No changes")).count();
    assert_eq!((applied, idle), (1, 1), "{stderr:#?}");
    // Exactly one commit per flag, in order, on a linear history; each flag written once.
    let want: Vec<String> = names
        .iter()
        .map(|n| format!("default/production/{n}: turn off"))
        .collect();
    assert_eq!(w.journal_subjects(), want);
    assert_eq!(git(&w.path("journal"), &["rev-list", "--merges", "HEAD"]), "");
    for n in &names {
        assert_eq!(r.flag(PREFIX, n).unwrap()["version"], json!(11), "{n}");
    }
}

#[test]
fn two_applies_started_together_make_one_commit_per_flag() {
    let names: Vec<String> = (0..30).map(|i| format!("flag-{i:02}")).collect();
    let (r, w) = declared_off(&names);
    let spawn = || {
        w.cmd(["apply", "--auto-approve"])
            .spawn(Stdio::null(), Stdio::piped())
    };
    let children = [spawn(), spawn()];
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for o in &outs {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let want: Vec<String> = names
        .iter()
        .map(|n| format!("default/production/{n}: turn off"))
        .collect();
    assert_eq!(
        w.journal_subjects(),
        want,
        "no lost, duplicate or interleaved commits"
    );
    for n in &names {
        assert_eq!(r.flag(PREFIX, n).unwrap()["version"], json!(11), "{n}");
    }
}

#[test]
fn apply_killed_mid_way_leaves_a_consistent_journal_and_a_rerun_converges() {
    use std::io::BufRead;
    // More than two of apply's batches of 256 flags: a batch is written before it is journaled.
    const N: usize = 600;
    let names: Vec<String> = (0..N).map(|i| format!("flag-{i:03}")).collect();
    let (r, w) = declared_off(&names);

    let mut child = w
        .cmd(["apply", "--auto-approve"])
        .spawn(Stdio::piped(), Stdio::null());
    // stdout is line-buffered: a line with "journal <sha>" means that flag's commit exists.
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines
        .find_map(|l| l.ok().filter(|l| l.contains(" journal ")))
        .expect("apply printed no journal commit");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(first.contains("flag-000"), "{first}");

    let version = |n: &str| r.flag(PREFIX, n).unwrap()["version"].as_u64().unwrap();
    assert!(names.iter().all(|n| matches!(version(n), 10 | 11)));
    let written = names.iter().filter(|n| version(n) == 11).count();
    assert!(
        (1..N).contains(&written),
        "the kill must land mid-way: {written} of {N} written"
    );
    // What the killed process wrote but did not get into git yet waits in the write-ahead log.
    let log = w.run(["log"]);
    assert_eq!(log.code, 0, "{}", log.all());
    assert!(log.stderr.contains("not in the journal yet"), "{}", log.stderr);

    // The re-run does not wait for a dead process's lock, records what the killed one wrote
    // (reading the stores for a flag it was in the middle of), and finishes the job.
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(!run.stderr.contains("Waiting"), "{}", run.stderr);
    assert!(names.iter().all(|n| version(n) == 11));
    let all = w.journal_subjects();
    let want: Vec<String> = names
        .iter()
        .map(|n| format!("default/production/{n}: turn off"))
        .collect();
    assert_eq!(
        all, want,
        "exactly one commit per flag, in order: none lost, none twice"
    );
    git(&w.path("journal"), &["fsck", "--no-progress"]);
    assert!(w.run(["log"]).stderr.is_empty());
    assert_eq!(w.run(["plan", "--detailed-exitcode"]).code, 0);
}

#[test]
fn an_apply_that_cannot_get_the_journal_lock_gives_up_clearly_and_writes_nothing() {
    let (r, w) = declared_off(&["alpha"]);
    let lock = hold_lock(&w);
    let before = r.dump();
    let run = w
        .cmd(["apply", "--auto-approve"])
        .env("RELAYCTL_LOCK_TIMEOUT", "1")
        .run();
    drop(lock);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("Waiting for another relayctl"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("is still writing to the journal journal after 1s"),
        "{}",
        run.stderr
    );
    assert_eq!(r.dump(), before);
    assert_eq!(git(&w.path("journal"), &["rev-list", "--all"]), "", "no commit");
}

#[test]
fn a_write_racing_into_the_hash_is_not_lost_and_does_not_disturb_the_write() {
    let r = Redis::start();
    seed(&r, &["alpha", "unmanaged"]);
    let theirs = flag("unmanaged", 11, false, json!([true, false]));
    let url = r.url();
    let write = theirs.to_string();
    // Relay writes another flag of the same hash between relayctl's read and its write.
    let proxy = Proxy::start(r.port).before("EVAL", 1, move || {
        set_raw(&url, PREFIX, "unmanaged", &write);
    });
    let w = Workspace::new(&overrides(&redis_store(&[proxy.url()]), "alpha = false\n"));
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        proxy.count("EVAL"),
        1,
        "the compare-and-set checks alpha alone: another flag's write needs no retry"
    );
    assert_eq!(r.flag(PREFIX, "alpha").unwrap()["on"], json!(false));
    assert_eq!(r.flag(PREFIX, "alpha").unwrap()["version"], json!(11));
    assert_eq!(r.flag(PREFIX, "unmanaged").unwrap(), theirs);
    assert_eq!(w.journal_subjects(), ["default/production/alpha: turn off"]);
}

#[test]
fn a_write_racing_into_the_same_flag_is_never_overwritten() {
    let r = Redis::start();
    seed(&r, &["alpha"]);
    let mut theirs = bool_flag("alpha", 11);
    theirs["rules"] = json!([]);
    let (url, write) = (r.url(), theirs.to_string());
    // LaunchDarkly's own update of the same flag lands between relayctl's read and its write.
    let proxy = Proxy::start(r.port).before("EVAL", 1, move || {
        set_raw(&url, PREFIX, "alpha", &write);
    });
    let w = Workspace::new(&overrides(&redis_store(&[proxy.url()]), "alpha = false\n"));
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(
        proxy.count("EVAL"),
        1,
        "the write finds the flag moved; the retry sees the new version and stops before writing"
    );
    assert!(
        run.stderr
            .contains("stale plan: the store holds v11 but the plan was made against v10"),
        "{}",
        run.stderr
    );
    assert_eq!(r.flag(PREFIX, "alpha").unwrap(), theirs, "their write survives");
    assert!(
        w.journal_subjects().is_empty(),
        "no commit for a flag not written"
    );
}

#[test]
fn a_flag_that_never_stops_changing_gives_up_after_bounded_retries() {
    let r = Redis::start();
    seed(&r, &["alpha"]);
    let url = r.url();
    let mut n = 0;
    // Another writer keeps rewriting alpha (same version, new bytes) before each of relayctl's
    // writes: each finds the bytes it read gone.
    let proxy = Proxy::start(r.port).before_each("EVAL", move || {
        n += 1;
        let mut theirs = bool_flag("alpha", 10);
        theirs["salt"] = json!(format!("salt-{n}"));
        set_raw(&url, PREFIX, "alpha", &theirs.to_string());
    });
    let w = Workspace::new(&overrides(&redis_store(&[proxy.url()]), "alpha = false\n"));
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(proxy.count("EVAL"), 10);
    assert!(
        run.stderr.contains("the flag changed during each of 10 attempts"),
        "{}",
        run.stderr
    );
    let mut last = bool_flag("alpha", 10);
    last["salt"] = json!("salt-10");
    assert_eq!(
        r.flag(PREFIX, "alpha").unwrap(),
        last,
        "their last write survives"
    );
    assert!(w.journal_subjects().is_empty());
}

#[test]
fn a_store_changed_while_waiting_for_the_lock_is_replanned_before_writing() {
    let (r, w) = declared_off(&["alpha", "beta"]);
    let lock = hold_lock(&w);
    let out = std::fs::File::create(w.path("out")).unwrap();
    let err = std::fs::File::create(w.path("err")).unwrap();
    let mut child = w.cmd(["apply", "--auto-approve"]).spawn(out, err);
    w.wait_for_text("err", "Waiting for another relayctl");
    // Meanwhile LD/Relay turned beta off itself (v11), and bumped alpha (v11, still on).
    r.seed(
        PREFIX,
        &[
            bool_flag("alpha", 11),
            flag("beta", 11, false, json!([true, false])),
        ],
    );
    drop(lock);
    assert!(child.wait().unwrap().success(), "{}", w.read("err"));
    let err = w.read("err");
    assert!(
        err.contains("The stores changed since the plan above was made"),
        "{err}"
    );
    assert_eq!(r.flag(PREFIX, "alpha").unwrap()["version"], json!(12));
    assert_eq!(
        r.flag(PREFIX, "beta").unwrap(),
        flag("beta", 11, false, json!([true, false]))
    );
    assert_eq!(w.journal_subjects(), ["default/production/alpha: turn off"]);
    let journal = git(
        &w.path("journal"),
        &["log", "-1", "--format=%(trailers:key=Base-Version)"],
    );
    assert_eq!(journal.trim(), "Base-Version: 11");
}

#[test]
fn an_approved_plan_that_changed_before_the_lock_is_not_applied() {
    let (r, w) = declared_off(&["alpha"]);
    let lock = hold_lock(&w);
    let tty = std::fs::File::create(w.path("tty")).unwrap();
    let mut child = w
        .cmd(["apply"])
        .on_terminal()
        .std()
        .stdin(Stdio::piped())
        .stdout(tty)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"yes\n").unwrap();
        // Keep the terminal open until the answer has been read and the lock is awaited.
        w.wait_for_text("tty", "Waiting for another relayctl");
        r.seed(PREFIX, &[bool_flag("alpha", 11)]);
        drop(lock);
        let status = child.wait().unwrap();
        drop(stdin);
        assert_eq!(status.code(), Some(1), "{}", w.read("tty"));
    }
    let tty = w.read("tty");
    assert!(tty.contains("the plan changed after you approved it"), "{tty}");
    assert_eq!(r.flag(PREFIX, "alpha").unwrap(), bool_flag("alpha", 11));
    assert!(w.journal_subjects().is_empty());
}
