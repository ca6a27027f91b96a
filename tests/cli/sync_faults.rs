//! sync against a LaunchDarkly that misbehaves: rate limits asking for hours, answers that take
//! too long, successes that did not apply, redirects; and settings that must never be sent or
//! printed as they are (credentials in the base URL, a token with a line break).

use crate::support::fake_ld::{Reply, TOKEN};
use crate::support::{output, wait_for};
use crate::sync::Setup;
use serde_json::json;
use std::time::{Duration, Instant};

/// The commits of `s` not noted at all (still pending, with no conflict or skip either).
fn unnoted(s: &Setup) -> usize {
    s.notes().iter().filter(|(_, n)| n.is_empty()).count()
}

#[test]
fn a_rate_limit_asking_for_hours_stops_at_once_saying_so_and_leaves_the_rest_pending() {
    let s = Setup::new(&[("a", 41, true), ("b", 7, true)]);
    s.apply("a = false\nb = false\n");
    s.ld.inject(None, None, 100, Reply::RetryAfter(99999));
    let started = Instant::now();
    let a =
        s.w.cmd(["sync"])
            .token()
            .timeout(Duration::from_secs(30))
            .assert()
            .code(2);
    let (stdout, stderr) = output(&a);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains("HTTP 429") && stderr.contains("Retry-After") && stderr.contains("27h 46m 39s"),
        "{stderr}"
    );
    assert!(stderr.contains("Run `relayctl sync` again"), "{stderr}");
    assert!(!stdout.contains("synced "), "{stdout}");
    assert_eq!(unnoted(&s), 2, "{:?}", s.notes());
    assert!(s.ld.patches().is_empty());
}

#[test]
fn each_rate_limit_wait_is_said_with_its_length() {
    let s = Setup::new(&[("a", 41, true)]);
    s.apply("a = false\n");
    s.ld.inject(Some("GET"), None, 1, Reply::RetryAfter(1));
    let (_, stderr) = output(&s.w.cmd(["sync"]).token().assert().success());
    let waits: Vec<&str> = stderr.lines().filter(|l| l.contains("HTTP 429")).collect();
    assert_eq!(waits.len(), 1, "{stderr}");
    assert!(
        waits[0].contains("GET default/production/a") && waits[0].contains("pausing requests for 1 s"),
        "{stderr}"
    );
    assert_eq!(s.ld.env("default", "a", "production")["on"], json!(false));
}

#[test]
fn a_slow_answer_is_said_out_loud_and_given_up_on_leaving_the_rest_pending() {
    let s = Setup::new(&[("a", 41, true)]);
    s.apply("a = false\n");
    s.ld.set_delay(Duration::from_secs(4));
    let started = Instant::now();
    let a =
        s.w.cmd(["sync"])
            .token()
            .env("RELAYCTL_LD_TIMEOUT", "1")
            .timeout(Duration::from_secs(30));
    let (_, stderr) = output(&a.assert().code(2));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains("LaunchDarkly has not answered GET default/production/a after 500 ms"),
        "{stderr}"
    );
    assert!(
        stderr.contains("no answer from LaunchDarkly at http://127.0.0.1:")
            && stderr.contains(" to GET default/production/a within 1 s; retry 1 in "),
        "{stderr}"
    );
    assert!(stderr.contains("Run `relayctl sync` again"), "{stderr}");
    assert_eq!(unnoted(&s), 1);
    assert!(s.ld.patches().is_empty());
}

#[test]
fn a_patch_answered_ok_without_being_applied_is_not_noted_synced() {
    let s = Setup::new(&[("a", 41, true), ("b", 7, true)]);
    s.apply("a = false\nb = false\n");
    s.ld.inject(Some("PATCH"), Some("a"), 1, Reply::NotApplied);
    let (stdout, stderr) = output(&s.w.cmd(["sync"]).token().assert().code(2));
    assert!(
        stdout.contains("failed     default/production/a") && stdout.contains("does not show the change"),
        "{stdout}"
    );
    assert!(stdout.contains("synced     default/production/b"), "{stdout}");
    assert!(
        stderr.contains("1 synced, 0 already in state, 0 conflict(s), 0 skipped, 1 failed"),
        "{stderr}"
    );
    let notes = s.notes();
    assert_eq!(notes[0].1, "", "a must stay pending: {notes:?}");
    assert!(notes[1].1.starts_with("synced"), "{notes:?}");
    let (pending, _) = output(&s.w.cmd(["log", "--pending"]).assert().success());
    assert!(pending.contains("default/production/a"), "{pending}");

    // LaunchDarkly takes it on the next run.
    s.w.cmd(["sync"]).token().assert().success();
    assert!(s.notes()[0].1.ends_with("ld-version=42"), "{:?}", s.notes());
    assert_eq!(s.ld.env("default", "a", "production")["on"], json!(false));
}

#[test]
fn a_redirect_is_not_followed_and_nothing_is_noted() {
    let s = Setup::new(&[("a", 41, true)]);
    s.apply("a = false\n");
    s.ld.inject(Some("PATCH"), None, 1, Reply::Redirect(303));
    let (_, stderr) = output(&s.w.cmd(["sync"]).token().assert().code(1));
    assert!(
        stderr.contains("HTTP 303") && stderr.contains("does not follow redirects"),
        "{stderr}"
    );
    let methods: Vec<String> = s.ld.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["GET", "PATCH"], "the redirect must not be followed");
    assert_eq!(unnoted(&s), 1, "{:?}", s.notes());
    assert_eq!(s.ld.env("default", "a", "production")["on"], json!(true));
}

#[test]
fn credentials_in_the_base_url_are_refused_and_never_printed() {
    let s = Setup::new(&[("a", 41, true)]);
    s.apply("a = false\n");
    let host = s.ld.url.trim_start_matches("http://");
    for base in [
        format!("http://alice:{TOKEN}@{host}"),
        format!("http://{TOKEN}@{host}"),
    ] {
        let a =
            s.w.cmd(["sync"])
                .token()
                .env("LD_BASE_URL", &base)
                .assert()
                .code(1);
        let (stdout, stderr) = output(&a);
        assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN), "{stderr}");
        assert!(!stderr.contains("alice"), "{stderr}");
        assert!(
            stderr.contains("LD_BASE_URL") && stderr.contains("credentials") && stderr.contains(host),
            "{stderr}"
        );
    }
    // The same from the overrides file.
    let text =
        s.w.read("overrides.toml")
            .replace("http://", &format!("http://{TOKEN}@"));
    s.w.write("overrides.toml", &text);
    let (_, stderr) = output(&s.w.cmd(["sync"]).token().assert().code(1));
    assert!(!stderr.contains(TOKEN), "{stderr}");
    assert!(
        stderr.contains("[launchdarkly] base_url") && stderr.contains("credentials"),
        "{stderr}"
    );
    assert!(s.ld.requests().is_empty(), "{:?}", s.ld.requests());
    assert_eq!(unnoted(&s), 1);
}

#[test]
fn a_token_with_a_line_break_fails_at_once_in_one_line_without_printing_it() {
    let s = Setup::new(&[("a", 41, true)]);
    s.apply("a = false\n");
    let a =
        s.w.cmd(["sync"])
            .env("LD_API_KEY", format!("{TOKEN}\n"))
            .assert()
            .code(1);
    let (stdout, stderr) = output(&a);
    assert_eq!(stdout, "");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: LD_API_KEY")
            && stderr.contains("line break")
            && stderr.contains("Nothing was sent"),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN), "{stderr}");
    assert!(s.ld.requests().is_empty());
}

#[test]
fn ctrl_c_during_a_rate_limit_pause_stops_at_once_leaving_the_rest_pending() {
    let s = Setup::new(&[("a", 41, true), ("b", 7, true)]);
    s.apply("a = false\nb = false\n");
    s.ld.inject(None, None, 100, Reply::RetryAfter(50));
    let stderr = std::fs::File::create(s.w.path("stderr.txt")).unwrap();
    let mut child =
        s.w.cmd(["sync"])
            .token()
            .spawn(std::process::Stdio::null(), stderr);
    s.w.wait_for_text("stderr.txt", "pausing requests for 50 s");
    let signalled = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    let took = signalled.elapsed();
    let stderr = s.w.read("stderr.txt");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(5), "took {took:?} to stop");
    assert!(
        stderr.lines().last().unwrap().starts_with(
            "error: interrupted: 2 journal commit(s) over 2 flag(s) left pending, nothing half-done. Run `relayctl sync` again"
        ),
        "{stderr}"
    );
    assert_eq!(unnoted(&s), 2);
}

#[test]
fn a_retry_after_given_as_an_http_date_is_waited_out() {
    let s = Setup::new(&[("a", 41, true)]);
    s.apply("a = false\n");
    s.ld.inject(Some("GET"), None, 1, Reply::RetryAfterDate(2));
    let started = Instant::now();
    let (_, stderr) = output(&s.w.cmd(["sync"]).token().assert().success());
    // An HTTP date counts whole seconds: 2 s from now is 1 to 2 s away.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let waits: Vec<&str> = stderr.lines().filter(|l| l.contains("HTTP 429")).collect();
    assert_eq!(waits.len(), 1, "{stderr}");
    assert!(
        waits[0].contains("pausing requests for")
            && waits[0].contains("(Retry-After: ")
            && waits[0].contains(" GMT)"),
        "{stderr}"
    );
    let statuses: Vec<Option<u16>> = s.ld.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(429), Some(200), Some(200)]);
}

#[test]
fn waits_too_long_for_the_clock_are_refused_without_a_panic() {
    let s = Setup::new(&[("a", 41, true)]);
    s.apply("a = false\n");
    s.ld.inject(None, None, 1, Reply::RetryAfter(u64::MAX));
    let (_, stderr) = output(&s.w.cmd(["sync"]).token().assert().code(2));
    assert!(
        stderr.contains("HTTP 429") && stderr.contains("Retry-After: 18446744073709551615"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(unnoted(&s), 1);
    // A --timeout longer than the clock can count is no timeout.
    let a =
        s.w.cmd(["sync", "--wait", "--timeout", "18446744073709551615s"])
            .token()
            .timeout(Duration::from_secs(30))
            .assert()
            .success();
    let (stdout, stderr) = output(&a);
    assert!(
        stdout.contains("synced     default/production/a"),
        "{stdout}{stderr}"
    );
}

#[test]
fn a_slow_launchdarkly_never_holds_up_an_apply() {
    let s = Setup::new(&[("a", 41, true), ("b", 7, true)]);
    s.apply("a = false\n");
    // Each PATCH takes 2 s and fails: one try and four retries.
    s.ld.inject(Some("PATCH"), None, 5, Reply::SlowError(Duration::from_secs(2)));
    let stderr = std::fs::File::create(s.w.path("stderr.txt")).unwrap();
    let mut child =
        s.w.cmd(["sync"])
            .token()
            .spawn(std::process::Stdio::null(), stderr);
    wait_for("the first PATCH", Duration::from_secs(20), || {
        !s.ld.patches().is_empty()
    });
    // An urgent apply meanwhile goes ahead at once.
    let text =
        s.w.read("overrides.toml")
            .replace("a = false\n", "a = false\nb = false\n");
    s.w.write("overrides.toml", &text);
    s.w.cmd(["apply", "--auto-approve"])
        .env("RELAYCTL_LOCK_TIMEOUT", "1")
        .assert()
        .success();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2), "{}", s.w.read("stderr.txt"));
    assert_eq!(s.ld.patches().len(), 5);
    assert_eq!(unnoted(&s), 2, "{:?}", s.notes());
    // LaunchDarkly better: both go through, nothing twice.
    s.w.cmd(["sync"]).token().assert().success();
    let mut applied: Vec<String> = s.ld.applied().iter().map(|p| p.flag()).collect();
    applied.sort();
    assert_eq!(applied, ["a", "b"]);
    assert!(
        s.notes().iter().all(|(_, n)| n.starts_with("synced")),
        "{:?}",
        s.notes()
    );
}
