//! Benchmark, not a test (`#[ignore]`d; run by scripts/bench_relay.sh): the blackout window of
//! the handback. During an outage an override is applied, Relay is restarted so services get it,
//! and `relayctl sync --wait` is armed; then LaunchDarkly comes back. Relay reconnects by itself
//! (its backoff has grown during the outage) and replaces the store with LaunchDarkly's data:
//! until sync's replay reaches LaunchDarkly and is streamed back, a proxy-mode SDK serves the
//! pre-override value again. This measures how long, polling the SDK every 20 ms, for
//! `--interval 1s` and the default (30 s) (`RELAYCTL_BENCH_INTERVALS=1s,default`),
//! `RELAYCTL_BENCH_TRIALS` times each (3), after outages of `RELAYCTL_BENCH_OUTAGE` seconds (20)
//! plus 0 to 30 s spread evenly over the trials: both Relay's retries and sync's probes run on
//! schedules of up to 30 s, so where LaunchDarkly's return falls in them decides the window.

use crate::support::fake_ld::FakeLd;
use crate::support::fixtures::{redis_overrides, PREFIX};
use crate::support::relay::{Env, Options, ProxySdk, Relay, Store};
use crate::support::{wait_for, Redis, Workspace};
use serde_json::json;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// What one handback looked like, in seconds after LaunchDarkly came back.
struct Trial {
    relay_reconnected: f64,
    sync_done: f64,
    /// How long the SDK served the pre-override value in all.
    blackout: f64,
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn trial(interval: Option<&str>, outage: Duration) -> Trial {
    let mut ld = FakeLd::start();
    ld.add_flag(
        "default",
        "kill-switch",
        &[json!(true), json!(false)],
        "production",
        true,
        1,
        0,
        41,
    );
    let r = Redis::start();
    let key = ld.sdk_key("default", "production");
    let env = Env {
        name: "production".into(),
        sdk_key: key.clone(),
        prefix: Some(PREFIX.into()),
    };
    let mut relay = Relay::start(&ld.url, &Store::Redis(r.url()), &[env], &Options::default());
    wait_for("Relay's put", Duration::from_secs(20), || {
        r.flag(PREFIX, "kill-switch").is_some()
    });

    let outage_started = Instant::now();
    ld.go_down();
    let stores = redis_overrides(&[&r], "kill-switch = { on = false, reason = \"bench\" }\n");
    let (head, flags) = stores.split_once("[overrides").unwrap();
    let w = Workspace::new(&format!(
        "{head}[launchdarkly]\nbase_url = \"{}\"\n\n[overrides{flags}",
        ld.url
    ));
    assert_eq!(w.run(["apply", "--auto-approve"]).code, 0);
    relay.restart();
    let mut sdk = ProxySdk::connect(&relay.url(), &key);
    assert_eq!(
        sdk.value("kill-switch"),
        json!(false),
        "the SDK got the override during the outage"
    );
    let mut args = vec!["sync", "--wait", "--timeout", "5m"];
    if let Some(i) = interval {
        args.extend(["--interval", i]);
    }
    let mut sync = w.cmd(args).token().spawn(Stdio::null(), Stdio::null());
    std::thread::sleep(outage.saturating_sub(outage_started.elapsed()));

    ld.come_up();
    let back = Instant::now();
    let (mut relay_reconnected, mut sync_done, mut blackout) = (None, None, Duration::ZERO);
    let mut last = back;
    loop {
        let now = Instant::now();
        if sdk.value("kill-switch") == json!(true) {
            blackout += now - last;
        }
        last = now;
        if relay_reconnected.is_none() && ld.streams("default", "production") > 0 {
            relay_reconnected = Some(back.elapsed());
        }
        if sync_done.is_none() && sync.try_wait().unwrap().is_some() {
            sync_done = Some(back.elapsed());
        }
        let settled =
            relay_reconnected.is_some() && sync_done.is_some() && sdk.value("kill-switch") == json!(false);
        if settled && back.elapsed() > relay_reconnected.unwrap() + Duration::from_secs(2) {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(120),
            "no handback within 120 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ld.applied().len(), 1, "one PATCH");
    Trial {
        relay_reconnected: relay_reconnected.unwrap().as_secs_f64(),
        sync_done: sync_done.unwrap().as_secs_f64(),
        blackout: blackout.as_secs_f64(),
    }
}

#[test]
#[ignore = "a benchmark: scripts/bench_relay.sh"]
fn blackout_window_after_launchdarkly_comes_back() {
    let trials = env_number("RELAYCTL_BENCH_TRIALS", 3);
    let outage = Duration::from_secs(env_number("RELAYCTL_BENCH_OUTAGE", 20));
    let intervals = std::env::var("RELAYCTL_BENCH_INTERVALS").unwrap_or_else(|_| "1s,default".into());
    println!("seconds after LaunchDarkly came back:");
    println!(
        "| sync --wait | outage (s) | Relay reconnected | sync done | SDK served the pre-override value |"
    );
    println!("|---|---|---|---|---|");
    for interval in intervals.split(',').map(|i| (i != "default").then_some(i)) {
        let name = interval.unwrap_or("30s (default)");
        let mut windows = Vec::new();
        for t in 0..trials {
            let spread = Duration::from_secs_f64(30.0 * t as f64 / trials as f64);
            let r = trial(interval, outage + spread);
            let (reconnected, done, window) = (r.relay_reconnected, r.sync_done, r.blackout);
            let outage = (outage + spread).as_secs_f64();
            println!("| --interval {name} | {outage:.0} | {reconnected:.2} | {done:.2} | {window:.2} |");
            windows.push(window);
        }
        windows.sort_by(f64::total_cmp);
        let (min, median, max) = (windows[0], windows[windows.len() / 2], windows[windows.len() - 1]);
        println!("| --interval {name} | min / median / max | | | {min:.2} / {median:.2} / {max:.2} |");
    }
}
