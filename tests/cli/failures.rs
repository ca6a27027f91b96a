//! When things go wrong during apply: a store target down (partial failure, then convergence)
//! and two applies racing on the same journal.

use crate::support::{flag, git, redis_overrides, wait_for, Redis, Workspace, PREFIX};
use serde_json::json;
use std::process::Stdio;
use std::time::Duration;

fn seed(r: &Redis, flags: &[&str]) {
    let flags: Vec<_> = flags
        .iter()
        .map(|f| flag(f, 10, true, json!([true, false])))
        .collect();
    r.seed(PREFIX, &flags);
}

#[test]
fn a_target_down_is_reported_journaled_as_failed_and_converges_after_it_is_back() {
    let (a, mut b) = (Redis::start(), Redis::start());
    for r in [&a, &b] {
        seed(r, &["alpha", "beta", "gamma"]);
    }
    let w = Workspace::new(&redis_overrides(&[&a, &b], "alpha = false\nbeta = false\n"));
    assert_eq!(w.run(&["plan", "--out", "p.json"]).code, 0);
    let b_before = b.dump();
    b.kill();

    let run = w.run(&["apply", "p.json"]);
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
    let run = w.run(&["plan", "--json"]);
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

    let run = w.run(&["apply", "--auto-approve"]);
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
        assert_eq!(
            r.flag(PREFIX, "gamma").unwrap(),
            flag("gamma", 10, true, json!([true, false]))
        );
    }
    let run = w.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "{}", run.all());
}

/// The subjects of the journal's flag commits, oldest first.
fn subjects(w: &Workspace) -> Vec<String> {
    git(&w.path("journal"), &["log", "--reverse", "--format=%s"])
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

#[test]
fn two_applies_at_once_serialise_on_the_journal_lock() {
    let r = Redis::start();
    let names: Vec<String> = (0..20).map(|i| format!("flag-{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    seed(&r, &refs);
    let decl: String = names.iter().map(|n| format!("{n} = false\n")).collect();
    let w = Workspace::new(&redis_overrides(&[&r], &decl));

    // Hold the journal lock ourselves, so both processes are certain to find it taken.
    git(w.dir.path(), &["init", "-q", "journal"]);
    let lock = std::fs::File::create(w.path("journal/.git/relayctl.lock")).unwrap();
    lock.lock().unwrap();
    let spawn = |n: usize| {
        let err = std::fs::File::create(w.path(&format!("stderr-{n}"))).unwrap();
        w.command()
            .args(["apply", "--auto-approve"])
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap()
    };
    let children = [spawn(1), spawn(2)];
    wait_for(
        "both applies to wait for the lock",
        Duration::from_secs(20),
        || {
            (1..=2).all(|n| {
                std::fs::read_to_string(w.path(&format!("stderr-{n}")))
                    .unwrap()
                    .contains("Waiting for another relayctl to release the journal lock")
            })
        },
    );
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
    assert_eq!(subjects(&w), want);
    assert_eq!(git(&w.path("journal"), &["rev-list", "--merges", "HEAD"]), "");
    for n in &names {
        assert_eq!(r.flag(PREFIX, n).unwrap()["version"], json!(11), "{n}");
    }
}

#[test]
fn two_applies_started_together_make_one_commit_per_flag() {
    let r = Redis::start();
    let names: Vec<String> = (0..30).map(|i| format!("flag-{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    seed(&r, &refs);
    let decl: String = names.iter().map(|n| format!("{n} = false\n")).collect();
    let w = Workspace::new(&redis_overrides(&[&r], &decl));
    let spawn = || {
        w.command()
            .args(["apply", "--auto-approve"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
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
    assert_eq!(subjects(&w), want, "no lost, duplicate or interleaved commits");
    for n in &names {
        assert_eq!(r.flag(PREFIX, n).unwrap()["version"], json!(11), "{n}");
    }
}

#[test]
fn apply_killed_mid_way_leaves_a_consistent_journal_and_a_rerun_converges() {
    use std::io::BufRead;
    let r = Redis::start();
    const N: usize = 20;
    let names: Vec<String> = (0..N).map(|i| format!("flag-{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    seed(&r, &refs);
    let decl: String = names.iter().map(|n| format!("{n} = false\n")).collect();
    let w = Workspace::new(&redis_overrides(&[&r], &decl));

    let mut child = w
        .command()
        .args(["apply", "--auto-approve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
    let log = w.run(&["log"]);
    assert_eq!(log.code, 0, "{}", log.all());
    assert!(log.stderr.contains("not in the journal yet"), "{}", log.stderr);

    // The re-run does not wait for a dead process's lock, records what the killed one wrote
    // (reading the stores for a flag it was in the middle of), and finishes the job.
    let run = w.run(&["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(!run.stderr.contains("Waiting"), "{}", run.stderr);
    assert!(names.iter().all(|n| version(n) == 11));
    let all = subjects(&w);
    let want: Vec<String> = names
        .iter()
        .map(|n| format!("default/production/{n}: turn off"))
        .collect();
    assert_eq!(
        all, want,
        "exactly one commit per flag, in order: none lost, none twice"
    );
    git(&w.path("journal"), &["fsck", "--no-progress"]);
    assert!(w.run(&["log"]).stderr.is_empty());
    assert_eq!(w.run(&["plan", "--detailed-exitcode"]).code, 0);
}

#[test]
fn an_apply_that_cannot_get_the_journal_lock_gives_up_clearly_and_writes_nothing() {
    let r = Redis::start();
    seed(&r, &["alpha"]);
    let w = Workspace::new(&redis_overrides(&[&r], "alpha = false\n"));
    git(w.dir.path(), &["init", "-q", "journal"]);
    let lock = std::fs::File::create(w.path("journal/.git/relayctl.lock")).unwrap();
    lock.lock().unwrap();
    let before = r.dump();
    let run = crate::support::Run::of(
        w.relayctl()
            .env("RELAYCTL_LOCK_TIMEOUT", "1")
            .args(["apply", "--auto-approve"]),
    );
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

/// An overrides file for one store reaching Redis through `url`.
fn through(url: &str, flags: &str) -> String {
    format!(
        "[[store]]\nname = \"relay-redis\"\ntype = \"redis\"\nurl = \"{url}\"\nprefix = \"ld:{{project}}:{{environment}}\"\n\n\
         [overrides.default.production]\n{flags}"
    )
}

#[test]
fn a_write_racing_into_the_hash_makes_apply_retry_not_lose_it() {
    let r = Redis::start();
    seed(&r, &["alpha", "unmanaged"]);
    let theirs = flag("unmanaged", 11, false, json!([true, false]));
    let url = r.url();
    let write = theirs.to_string();
    // Relay writes another flag of the same hash between relayctl's WATCH and EXEC.
    let proxy = crate::support::ExecProxy::start(r.port, move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        redis::cmd("HSET")
            .arg(format!("{PREFIX}:features"))
            .arg("unmanaged")
            .arg(write)
            .exec(&mut c)
            .unwrap();
    });
    let w = Workspace::new(&through(&proxy.url(), "alpha = false\n"));
    let run = w.run(&["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(proxy.execs(), 2, "the first EXEC is aborted by WATCH and retried");
    assert_eq!(r.flag(PREFIX, "alpha").unwrap()["on"], json!(false));
    assert_eq!(r.flag(PREFIX, "alpha").unwrap()["version"], json!(11));
    assert_eq!(r.flag(PREFIX, "unmanaged").unwrap(), theirs);
    assert_eq!(subjects(&w), ["default/production/alpha: turn off"]);
}

#[test]
fn a_write_racing_into_the_same_flag_is_never_overwritten() {
    let r = Redis::start();
    seed(&r, &["alpha"]);
    let mut theirs = flag("alpha", 11, true, json!([true, false]));
    theirs["rules"] = json!([]);
    let (url, write) = (r.url(), theirs.to_string());
    // LaunchDarkly's own update of the same flag lands between WATCH and EXEC.
    let proxy = crate::support::ExecProxy::start(r.port, move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        redis::cmd("HSET")
            .arg(format!("{PREFIX}:features"))
            .arg("alpha")
            .arg(write)
            .exec(&mut c)
            .unwrap();
    });
    let w = Workspace::new(&through(&proxy.url(), "alpha = false\n"));
    let run = w.run(&["apply", "--auto-approve"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(
        proxy.execs(),
        1,
        "the retry sees the new version and stops before EXEC"
    );
    assert!(
        run.stderr
            .contains("stale plan: the store holds v11 but the plan was made against v10"),
        "{}",
        run.stderr
    );
    assert_eq!(r.flag(PREFIX, "alpha").unwrap(), theirs, "their write survives");
    assert!(subjects(&w).is_empty(), "no commit for a flag not written");
}

#[test]
fn a_hash_that_never_stops_changing_gives_up_after_bounded_retries() {
    let r = Redis::start();
    seed(&r, &["alpha", "busy"]);
    let url = r.url();
    let mut n = 0;
    let proxy = crate::support::ExecProxy::start_each(r.port, move || {
        n += 1;
        let mut c = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        redis::cmd("HSET")
            .arg(format!("{PREFIX}:features"))
            .arg("busy")
            .arg(flag("busy", 10 + n, true, json!([true, false])).to_string())
            .exec(&mut c)
            .unwrap();
    });
    let w = Workspace::new(&through(&proxy.url(), "alpha = false\n"));
    let run = w.run(&["apply", "--auto-approve"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(proxy.execs(), 10);
    assert!(
        run.stderr.contains("the hash changed during each of 10 attempts"),
        "{}",
        run.stderr
    );
    assert_eq!(
        r.flag(PREFIX, "alpha").unwrap(),
        flag("alpha", 10, true, json!([true, false]))
    );
    assert_eq!(r.flag(PREFIX, "busy").unwrap()["version"], json!(20));
    assert!(subjects(&w).is_empty());
}

/// Holds the journal lock (the journal is created first) until dropped.
fn hold_lock(w: &Workspace) -> std::fs::File {
    git(w.dir.path(), &["init", "-q", "journal"]);
    let lock = std::fs::File::create(w.path("journal/.git/relayctl.lock")).unwrap();
    lock.lock().unwrap();
    lock
}

fn wait_for_text(w: &Workspace, file: &str, text: &str) {
    wait_for(&format!("{text:?} in {file}"), Duration::from_secs(20), || {
        std::fs::read_to_string(w.path(file))
            .unwrap_or_default()
            .contains(text)
    });
}

#[test]
fn a_store_changed_while_waiting_for_the_lock_is_replanned_before_writing() {
    let r = Redis::start();
    seed(&r, &["alpha", "beta"]);
    let w = Workspace::new(&redis_overrides(&[&r], "alpha = false\nbeta = false\n"));
    let lock = hold_lock(&w);
    let out = std::fs::File::create(w.path("out")).unwrap();
    let err = std::fs::File::create(w.path("err")).unwrap();
    let mut child = w
        .command()
        .args(["apply", "--auto-approve"])
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap();
    wait_for_text(&w, "err", "Waiting for another relayctl");
    // Meanwhile LD/Relay turned beta off itself (v11), and bumped alpha (v11, still on).
    r.seed(
        PREFIX,
        &[
            flag("alpha", 11, true, json!([true, false])),
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
    assert_eq!(subjects(&w), ["default/production/alpha: turn off"]);
    let journal = git(
        &w.path("journal"),
        &["log", "-1", "--format=%(trailers:key=Base-Version)"],
    );
    assert_eq!(journal.trim(), "Base-Version: 11");
}

#[test]
fn an_approved_plan_that_changed_before_the_lock_is_not_applied() {
    let r = Redis::start();
    seed(&r, &["alpha"]);
    let w = Workspace::new(&redis_overrides(&[&r], "alpha = false\n"));
    let lock = hold_lock(&w);
    let tty = std::fs::File::create(w.path("tty")).unwrap();
    let mut child = w
        .on_terminal("apply")
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
        wait_for_text(&w, "tty", "Waiting for another relayctl");
        r.seed(PREFIX, &[flag("alpha", 11, true, json!([true, false]))]);
        drop(lock);
        let status = child.wait().unwrap();
        drop(stdin);
        assert_eq!(status.code(), Some(1), "{}", w.read("tty"));
    }
    let tty = w.read("tty");
    assert!(tty.contains("the plan changed after you approved it"), "{tty}");
    assert_eq!(
        r.flag(PREFIX, "alpha").unwrap(),
        flag("alpha", 11, true, json!([true, false]))
    );
    assert!(subjects(&w).is_empty());
}
