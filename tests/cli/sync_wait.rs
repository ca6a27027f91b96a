//! `relayctl sync --wait`: started while LaunchDarkly refuses connections (the fake is prepared on
//! a free port and comes up later), it says each attempt on stderr, picks up what `apply` adds
//! meanwhile, syncs as soon as LaunchDarkly answers, and stops on what waiting cannot fix.

use crate::support::fake_ld::FakeLd;
use crate::support::fixtures::{file_store_and_ld, overrides};
use crate::support::{free_port, output, wait_for, Proxy, Redis, Workspace};
use crate::sync::Setup;
use serde_json::json;
use std::fs::File;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A workspace whose LaunchDarkly is down, with `flags` (key, version, on) in the store and in
/// the fake, and `applied` declared and applied.
fn down(flags: &[(&str, u64, bool)], applied: &str) -> Setup {
    let s = Setup::with(FakeLd::down(free_port()), flags);
    s.apply(applied);
    s
}

/// `relayctl sync args...` with the fake's token (unless `env` sets another), in the background,
/// stdout to `stdout.txt` and stderr to `stderr.txt` in the workspace.
fn spawn(w: &Workspace, args: &[&str], env: &[(&str, &str)]) -> Child {
    let cmd = env
        .iter()
        .fold(w.cmd(["sync"]).args(args).token(), |c, (k, v)| c.env(k, v));
    let out = File::create(w.path("stdout.txt")).unwrap();
    let err = File::create(w.path("stderr.txt")).unwrap();
    cmd.spawn(out, err)
}

/// Waits (`limit` at most) for `child` to exit.
fn exit_within(child: &mut Child, limit: Duration) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("relayctl did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_journal_is_synced_within_an_interval_of_launchdarkly_coming_up() {
    let mut s = down(&[("a", 41, true), ("b", 7, true)], "a = false\nb = false\n");
    let mut child = spawn(&s.w, &["--wait", "--interval", "1s"], &[]);
    s.w.wait_for_text("stderr.txt", "attempt 4:");
    // Until LaunchDarkly answers: one status line per attempt and nothing else.
    let waiting = s.w.read("stderr.txt");
    for line in waiting.lines() {
        assert!(
            line.starts_with("attempt ")
                && line.contains("cannot connect to LaunchDarkly at http://127.0.0.1:")
                && line.contains("2 journal commit(s) over 2 flag(s) pending")
                && line.contains("next try in 1 s"),
            "{waiting}"
        );
    }
    assert_eq!(s.w.read("stdout.txt"), "");

    s.ld.come_up();
    let up = Instant::now();
    let status = exit_within(&mut child, Duration::from_secs(20));
    let took = up.elapsed();
    let stderr = s.w.read("stderr.txt");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        took < Duration::from_secs(6),
        "synced {took:?} after LaunchDarkly came up"
    );
    assert!(
        stderr.contains("Sync: 2 synced, 0 already in state, 0 conflict(s), 0 skipped, 0 failed."),
        "{stderr}"
    );
    let stdout = s.w.read("stdout.txt");
    assert!(
        stdout.contains("synced     default/production/a")
            && stdout.contains("synced     default/production/b"),
        "{stdout}"
    );
    assert!(
        s.notes().iter().all(|(_, n)| n.starts_with("synced")),
        "{:?}",
        s.notes()
    );
    assert_eq!(s.ld.applied().len(), 2);
}

#[test]
fn an_apply_while_it_waits_is_not_blocked_and_is_synced_too() {
    let mut s = down(&[("a", 41, true), ("b", 7, true)], "a = false\n");
    let mut child = spawn(&s.w, &["--wait", "--interval", "1s"], &[]);
    s.w.wait_for_text("stderr.txt", "attempt 1:");
    // apply takes the journal lock: sync --wait must not hold it while it waits.
    let text =
        s.w.read("overrides.toml")
            .replace("a = false\n", "a = false\nb = false\n");
    s.w.write("overrides.toml", &text);
    s.w.cmd(["apply", "--auto-approve"])
        .env("RELAYCTL_LOCK_TIMEOUT", "0")
        .timeout(Duration::from_secs(20))
        .assert()
        .success();
    let before = s.w.read("stderr.txt").lines().count();
    wait_for("the next attempt", Duration::from_secs(20), || {
        s.w.read("stderr.txt").lines().count() > before
    });
    assert!(
        s.w.read("stderr.txt")
            .lines()
            .last()
            .unwrap()
            .contains("2 journal commit(s) over 2 flag(s) pending"),
        "{}",
        s.w.read("stderr.txt")
    );

    s.ld.come_up();
    let status = exit_within(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", s.w.read("stderr.txt"));
    let mut patched: Vec<String> = s.ld.applied().iter().map(|p| p.flag()).collect();
    patched.sort();
    assert_eq!(patched, ["a", "b"]);
    assert!(
        s.notes().iter().all(|(_, n)| n.starts_with("synced")),
        "{:?}",
        s.notes()
    );
}

#[test]
fn a_refused_token_once_launchdarkly_is_up_stops_at_once() {
    let mut s = down(&[("a", 41, true)], "a = false\n");
    let secret = "api-wrong-secret-never-print";
    let mut child = spawn(&s.w, &["--wait", "--interval", "1s"], &[("LD_API_KEY", secret)]);
    s.w.wait_for_text("stderr.txt", "attempt 1:");
    s.ld.come_up();
    let status = exit_within(&mut child, Duration::from_secs(10));
    let stderr = s.w.read("stderr.txt");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("HTTP 401") && stderr.contains("LD_API_KEY"),
        "{stderr}"
    );
    assert!(!stderr.contains(secret));
    assert_eq!(s.ld.requests().len(), 1, "{:?}", s.ld.requests());
    assert_eq!(s.notes()[0].1, "");
}

#[test]
fn a_timeout_with_launchdarkly_never_up_exits_1_leaving_everything_pending() {
    let s = down(&[("a", 41, true), ("b", 7, true)], "a = false\nb = false\n");
    let started = Instant::now();
    let a =
        s.w.cmd(["sync", "--wait", "--interval", "1s", "--timeout", "3s"])
            .token()
            .timeout(Duration::from_secs(30))
            .assert()
            .code(1);
    let took = started.elapsed();
    let (stdout, stderr) = output(&a);
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(15),
        "{took:?}"
    );
    assert_eq!(stdout, "");
    assert!(stderr.contains("attempt 3:"), "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("error: LaunchDarkly did not answer within --timeout 3s")
            && last.contains("2 journal commit(s) over 2 flag(s) left pending")
            && last.contains("relayctl sync --wait"),
        "{stderr}"
    );
    assert!(s.notes().iter().all(|(_, n)| n.is_empty()), "{:?}", s.notes());
}

#[test]
fn sigterm_while_waiting_exits_promptly_and_cleanly() {
    let mut s = down(&[("a", 41, true)], "a = false\n");
    // The default interval: after the second attempt it waits several seconds.
    let mut child = spawn(&s.w, &["--wait"], &[]);
    s.w.wait_for_text("stderr.txt", "attempt 2:");
    let signalled = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = exit_within(&mut child, Duration::from_secs(10));
    let took = signalled.elapsed();
    let stderr = s.w.read("stderr.txt");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(2), "took {took:?} to stop");
    assert!(
        stderr.lines().last().unwrap().starts_with(
            "error: interrupted while waiting for LaunchDarkly: 1 journal commit(s) over 1 flag(s) left pending"
        ),
        "{stderr}"
    );
    assert_eq!(s.notes()[0].1, "");

    // Nothing was left behind: LaunchDarkly back, a plain sync finishes the job.
    s.ld.come_up();
    s.w.cmd(["sync"])
        .token()
        .env("RELAYCTL_LOCK_TIMEOUT", "0")
        .assert()
        .success();
    assert!(s.notes()[0].1.starts_with("synced"), "{:?}", s.notes());
}

#[test]
fn sigterm_during_a_probe_that_gets_no_answer_exits_promptly() {
    let port = free_port();
    let s = Setup::with(FakeLd::down(port), &[("a", 41, true)]);
    s.apply("a = false\n");
    // Something on the port takes the connection and never answers.
    let silent = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    silent.set_nonblocking(true).unwrap();
    let mut child = spawn(&s.w, &["--wait"], &[]);
    let mut held = None;
    wait_for("relayctl to connect", Duration::from_secs(20), || {
        held = silent.accept().ok();
        held.is_some()
    });
    let signalled = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = exit_within(&mut child, Duration::from_secs(20));
    let stderr = s.w.read("stderr.txt");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "{:?}",
        signalled.elapsed()
    );
    assert!(
        stderr.contains("error: interrupted while waiting for LaunchDarkly: 1 journal commit(s)"),
        "{stderr}"
    );
}

#[test]
fn a_terminal_gets_a_spinner_while_it_waits() {
    let s = down(&[("a", 41, true)], "a = false\n");
    let run =
        s.w.cmd(["sync", "--wait", "--interval", "1s", "--timeout", "2s"])
            .token()
            .on_terminal()
            .run();
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("waiting for LaunchDarkly"),
        "{:?}",
        run.stdout
    );
}

#[test]
fn interval_and_timeout_need_wait_and_a_duration() {
    let w = Workspace::new("");
    for (args, says) in [
        (&["sync", "--interval", "5s"][..], "--wait"),
        (&["sync", "--wait", "--timeout", "soon"][..], "30s, 5m or 1h"),
        (&["sync", "--wait", "--interval", "0s"][..], "more than zero"),
    ] {
        let run = w.run(args);
        assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
    }
}

#[test]
fn a_launchdarkly_that_never_answers_is_given_up_on_at_the_timeout() {
    let port = free_port();
    let s = Setup::with(FakeLd::down(port), &[("a", 41, true)]);
    s.apply("a = false\n");
    // Something on the port takes connections (the kernel does, unaccepted) and never answers.
    let _silent = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let started = Instant::now();
    let a =
        s.w.cmd(["sync", "--wait", "--timeout", "4s"])
            .token()
            .timeout(Duration::from_secs(60))
            .assert()
            .code(1);
    let took = started.elapsed();
    let (_, stderr) = output(&a);
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(10),
        "took {took:?}: {stderr}"
    );
    assert!(!stderr.contains("giving up in 0 ms"), "{stderr}");
    assert!(
        stderr.lines().last().unwrap().starts_with(
            "error: LaunchDarkly did not answer within --timeout 4s: 1 journal commit(s) over 1 flag(s) left pending"
        ),
        "{stderr}"
    );
    assert_eq!(s.notes()[0].1, "");
}

#[test]
fn started_before_the_first_apply_it_watches_the_journal_and_syncs_that_apply() {
    let mut s = Setup::with(FakeLd::down(free_port()), &[("a", 41, true)]);
    let text = overrides(&file_store_and_ld(&s.ld.url), "a = false\n");
    s.w.write("overrides.toml", &text);
    assert!(!s.w.path("journal").exists());
    let mut child = spawn(&s.w, &["--wait", "--interval", "1s"], &[]);
    s.w.wait_for_text("stderr.txt", "attempt 2:");
    let waiting = s.w.read("stderr.txt");
    assert!(
        waiting.contains("GET /api/v2") && waiting.contains("nothing pending yet"),
        "{waiting}"
    );
    assert!(child.try_wait().unwrap().is_none(), "{waiting}");

    s.w.cmd(["apply", "--auto-approve"])
        .env("RELAYCTL_LOCK_TIMEOUT", "0")
        .assert()
        .success();
    s.ld.come_up();
    let status = exit_within(&mut child, Duration::from_secs(20));
    let stderr = s.w.read("stderr.txt");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        s.w.read("stdout.txt").contains("synced     default/production/a"),
        "{stderr}"
    );
    assert_eq!(s.ld.env("default", "a", "production")["on"], json!(false));
    assert!(s.notes()[0].1.starts_with("synced"), "{:?}", s.notes());
}

#[test]
fn an_apply_holding_the_journal_lock_as_launchdarkly_comes_back_does_not_end_it() {
    let r = Redis::start();
    // Once armed, every write to the key store waits 4 s, with apply holding the journal lock.
    let slow = Arc::new(AtomicBool::new(false));
    let armed = slow.clone();
    let proxy = Proxy::start(r.port).before_each("EVAL", move || {
        if armed.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_secs(4));
        }
    });
    let mut s = Setup::with(FakeLd::down(free_port()), &[("a", 41, true)]);
    let stores = format!(
        "{}[[store]]\nname = \"slow\"\ntype = \"redis-keys\"\nurl = \"{}\"\n\n",
        file_store_and_ld(&s.ld.url),
        proxy.url()
    );
    let declare = |k: &str| overrides(&stores, &format!("a = false\n\n[keys.slow]\nk = \"{k}\"\n"));
    s.w.write("overrides.toml", &declare("1"));
    s.w.cmd(["apply", "--auto-approve"]).assert().success();
    let mut child = spawn(
        &s.w,
        &["--wait", "--interval", "1s"],
        &[("RELAYCTL_LOCK_TIMEOUT", "1")],
    );
    s.w.wait_for_text("stderr.txt", "attempt 1:");

    s.w.write("overrides.toml", &declare("2"));
    slow.store(true, Ordering::SeqCst);
    let lock = s.w.path("journal/.git/relayctl.lock");
    let mut apply =
        s.w.cmd(["apply", "--auto-approve"])
            .spawn(Stdio::null(), Stdio::null());
    wait_for(
        "the apply to hold the journal lock",
        Duration::from_secs(20),
        || File::open(&lock).unwrap().try_lock().is_err(),
    );
    s.ld.come_up();
    let status = exit_within(&mut child, Duration::from_secs(60));
    let stderr = s.w.read("stderr.txt");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(apply.wait().unwrap().success());
    assert!(
        stderr.contains("Waiting for another relayctl (pid ") && stderr.contains("relayctl.lock"),
        "it found the journal locked while it synced: {stderr}"
    );
    assert_eq!(s.ld.env("default", "a", "production")["on"], json!(false));
    assert_eq!(s.ld.applied().len(), 1);
    assert!(s.notes()[0].1.starts_with("synced"), "{:?}", s.notes());
}
