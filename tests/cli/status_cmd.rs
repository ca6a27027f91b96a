//! `relayctl status` against the real Relay Proxy (support/relay.rs) reading a real Redis, a Relay
//! that is down, and the fake LaunchDarkly going down and coming back: every state a row can be
//! in, what each says to do, bounded waits, `--watch`, and no secret in any output.

use crate::support::fake_ld::{FakeLd, TOKEN};
use crate::support::fixtures::{redis_store, PREFIX};
use crate::support::relay::{Env, Options, Relay, Store};
use crate::support::{free_port, signal_pid, wait_for, Redis, Run, Workspace};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};

const KEY_VAR: &str = "TEST_SDK_KEY_PRODUCTION";

/// LaunchDarkly (with `kill-switch` on at version 41), Redis, and a Relay that has loaded
/// LaunchDarkly's data into Redis, with `CACHE_TTL` `ttl`.
struct Chain {
    ld: FakeLd,
    redis: Redis,
    relay: Relay,
    key: String,
}

fn chain(ttl: &str) -> Chain {
    let ld = FakeLd::start();
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
    let redis = Redis::start();
    let key = ld.sdk_key("default", "production");
    let env = Env {
        name: "production".into(),
        sdk_key: key.clone(),
        prefix: Some(PREFIX.into()),
    };
    let options = Options {
        cache_ttl: ttl.into(),
        ..Options::default()
    };
    let relay = Relay::start(&ld.url, &Store::Redis(redis.url()), &[env], &options);
    wait_for("Relay's put in Redis", Duration::from_secs(20), || {
        redis.flag(PREFIX, "kill-switch").is_some()
    });
    Chain {
        ld,
        redis,
        relay,
        key,
    }
}

/// An overrides file: Redis, LaunchDarkly, `relay-a` (with `ttl`), the `relays` given, and
/// `kill-switch` turned off.
fn overrides(c: &Chain, ttl: &str, relays: &[String]) -> String {
    let mut text = format!(
        "{}[launchdarkly]\nbase_url = \"{}\"\n\n[[relay]]\nname = \"relay-a\"\nurl = \"{}\"\ncache_ttl = \"{ttl}\"\n\
         [relay.sdk_keys]\n\"default/production\" = \"{KEY_VAR}\"\n\n",
        redis_store(&[c.redis.url()]),
        c.ld.url,
        c.relay.url()
    );
    for url in relays {
        text += &format!(
            "[[relay]]\nurl = \"{url}\"\n[relay.sdk_keys]\n\"default/production\" = \"{KEY_VAR}\"\n\n"
        );
    }
    text + "[overrides.default.production]\nkill-switch = { on = false, reason = \"INC-1\" }\n"
}

/// `status --json` with the token and the SDK key: the run and its one flag's document.
fn status(w: &Workspace, c: &Chain) -> (Run, Value) {
    let run = w
        .cmd(["status", "--json"])
        .token()
        .env(KEY_VAR, &c.key)
        .timeout(Duration::from_secs(60))
        .run();
    let doc: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.all()));
    assert!(
        !run.all().contains(&c.key) && !run.all().contains(TOKEN),
        "a secret in the output: {}",
        run.all()
    );
    let flag = doc["flags"][0].clone();
    (run, flag)
}

/// The states of a flag's rows: stores, relays (by name), LaunchDarkly.
fn states(flag: &Value) -> (Vec<Value>, Vec<(Value, Value)>, Value) {
    let all = |k: &str| flag[k].as_array().cloned().unwrap_or_default();
    (
        all("stores").iter().map(|s| s["state"].clone()).collect(),
        all("relays")
            .iter()
            .map(|r| (r["relay"].clone(), r["state"].clone()))
            .collect(),
        flag["launchdarkly"]["state"].clone(),
    )
}

fn why(flag: &Value, pointer: &str) -> String {
    flag.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[test]
#[ignore = "needs the LaunchDarkly Relay Proxy: scripts/test.sh runs it when scripts/ld_relay.sh can build it, and says loudly when it cannot"]
fn status_follows_an_override_from_the_store_through_relay_to_launchdarkly() {
    let mut c = chain("5s");
    c.ld.go_down();
    let down = format!("http://127.0.0.1:{}", free_port());
    let w = Workspace::new(&overrides(&c, "5s", std::slice::from_ref(&down)));
    let relay_down = json!("127.0.0.1");

    // Before apply: the store differs, so Relay is stale; the other Relay and LaunchDarkly are down.
    let (run, flag) = status(&w, &c);
    assert_eq!(run.code, 2, "{}", run.all());
    assert_eq!(
        states(&flag),
        (
            vec![json!("differs")],
            vec![
                (json!("relay-a"), json!("stale")),
                (relay_down.clone(), json!("unreachable"))
            ],
            json!("unreachable")
        ),
        "{flag:#}"
    );
    assert!(
        why(&flag, "/stores/0/why").contains("on: true -> false: run `relayctl plan`"),
        "{flag}"
    );
    assert!(
        run.stderr.contains("(7 s at most each)"),
        "the wait is announced: {}",
        run.stderr
    );

    // Right after apply the store holds it, and Relay serves its cached copy until the TTL is up.
    let cached = Instant::now();
    assert_eq!(c.relay.flag(&c.key, "kill-switch").1.unwrap()["on"], json!(true));
    assert_eq!(c.relay.flags(&c.key).1["kill-switch"]["on"], json!(true));
    let apply = w.run(["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    let (run, flag) = status(&w, &c);
    assert!(
        cached.elapsed() < Duration::from_secs(5),
        "status came after Relay's cache TTL"
    );
    assert_eq!(run.code, 2);
    assert_eq!(states(&flag).0, vec![json!("declared")]);
    assert_eq!(states(&flag).1[0], (json!("relay-a"), json!("stale")));
    assert!(
        why(&flag, "/relays/0/why").starts_with("Relay caches the store for 5s: served by "),
        "{flag}"
    );
    assert!(
        why(&flag, "/launchdarkly/why").contains("`relayctl sync --wait` will replay 1 journal commit(s)"),
        "{flag}"
    );

    // Once the TTL is up, Relay serves it; connected SDKs still need a reconnect.
    wait_for("Relay to serve the override", Duration::from_secs(15), || {
        c.relay.flags(&c.key).1["kill-switch"]["on"] == json!(false)
    });
    let (run, flag) = status(&w, &c);
    assert_eq!(run.code, 2, "the Relay that is down keeps it at 2");
    assert_eq!(states(&flag).1[0], (json!("relay-a"), json!("serving")));
    assert!(
        why(&flag, "/relays/0/why").ends_with("until they reconnect: restart Relay"),
        "{flag}"
    );
    let human = w.cmd(["status"]).token().env(KEY_VAR, &c.key).run();
    assert!(
        human
            .stdout
            .starts_with("! default/production/kill-switch  store relay-redis redis://"),
        "{}",
        human.all()
    );
    assert!(human.stderr.contains("Status: 1 flag(s): 0 served as declared by every store and Relay, 1 not yet (marked !); LaunchDarkly: 1 unreachable."), "{}", human.stderr);

    // Without the SDK key or the token: said per row, never guessed.
    let bare = w
        .cmd(["status", "--json"])
        .env_remove(KEY_VAR)
        .env_remove("LD_API_KEY")
        .run();
    let flag: Value = serde_json::from_str::<Value>(&bare.stdout).unwrap()["flags"][0].clone();
    assert_eq!(states(&flag).1[0], (json!("relay-a"), json!("no-key")));
    assert_eq!(states(&flag).2, json!("no-token"));
    assert!(
        why(&flag, "/relays/0/why").starts_with(&format!("{KEY_VAR} is not set")),
        "{flag}"
    );

    // LaunchDarkly comes back and the journal is synced: LaunchDarkly holds it.
    c.ld.come_up();
    let sync = w.cmd(["sync"]).token().run();
    assert_eq!(sync.code, 0, "{}", sync.all());
    let (_, flag) = status(&w, &c);
    assert_eq!(states(&flag).2, json!("synced"), "{flag}");
    assert_eq!(flag["relays"][0].get("why"), None, "{flag}");

    // Every store and Relay listed serves it: exit 0.
    w.write("up.toml", &overrides(&c, "5s", &[]));
    let run = w
        .cmd(["-c", "up.toml", "status"])
        .token()
        .env(KEY_VAR, &c.key)
        .run();
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.starts_with("  default/production/kill-switch"),
        "{}",
        run.stdout
    );
}

#[test]
#[ignore = "needs the LaunchDarkly Relay Proxy: scripts/test.sh runs it when scripts/ld_relay.sh can build it, and says loudly when it cannot"]
fn status_watch_refreshes_until_relay_serves_the_override_and_stops_cleanly_on_ctrl_c() {
    let mut c = chain("3s");
    c.ld.go_down();
    let down = format!("http://127.0.0.1:{}", free_port());
    let w = Workspace::new(&overrides(&c, "3s", std::slice::from_ref(&down)));
    w.write("up.toml", &overrides(&c, "3s", &[]));
    let apply = w.run(["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}", apply.all());

    // Without a token: stores and Relay only; it ends once Relay's cache has expired.
    let watch = |config: &str, out: &str| {
        let stdout = std::fs::File::create(w.path(out)).unwrap();
        let stderr = std::fs::File::create(w.path(&format!("{out}.err"))).unwrap();
        w.cmd(["-c", config, "status", "--watch", "--interval", "1s"])
            .env(KEY_VAR, &c.key)
            .env_remove("LD_API_KEY")
            .spawn(Stdio::from(stdout), Stdio::from(stderr))
    };
    let mut done = watch("up.toml", "up.out");
    let code = wait_exit(&mut done, Duration::from_secs(30));
    let out = w.read("up.out");
    assert_eq!(code, Some(0), "{out}{}", w.read("up.out.err"));
    assert!(
        out.lines()
            .last()
            .unwrap()
            .starts_with("  default/production/kill-switch"),
        "{out}"
    );
    assert!(w.read("up.out.err").contains("done watching"));

    // With a Relay that is down it would watch forever: Ctrl-C stops it between two refreshes.
    let mut forever = watch("overrides.toml", "down.out");
    w.wait_for_text("down.out.err", "Status: 1 flag(s)");
    signal_pid(forever.id(), "INT");
    let code = wait_exit(&mut forever, Duration::from_secs(10));
    assert_eq!(code, Some(2), "{}", w.read("down.out.err"));
    assert!(w.read("down.out.err").contains("Interrupted: stopped watching"));
}

/// Waits (at most `limit`) for `child` to exit; its code.
fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_relay_table_refuses_an_sdk_key_in_place_of_its_variable_without_printing_it() {
    let w = Workspace::new(
        "[[store]]\ntype = \"file\"\npath = \"flags.json\"\n\n[[relay]]\nurl = \"http://127.0.0.1:1\"\n\
         [relay.sdk_keys]\n\"default/production\" = \"sdk-12345678-abcd-efgh-secret\"\n\n\
         [overrides.default.production]\nf = true\n",
    );
    let run = w.run(["status"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("this looks like an SDK key itself (not shown)"),
        "{}",
        run.stderr
    );
    assert!(!run.all().contains("12345678-abcd"), "{}", run.all());
}

#[test]
fn a_relay_and_launchdarkly_that_never_answer_cost_bounded_announced_waits() {
    // Both accept connections (the kernel's backlog) and never answer.
    let relay_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ld_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let flag = crate::support::fixtures::bool_flag("kill-switch", 41);
    let w = Workspace::new(&format!(
        "[[store]]\ntype = \"file\"\npath = \"flags.json\"\n\n[launchdarkly]\nbase_url = \"http://{}\"\n\n\
         [[relay]]\nname = \"silent\"\nurl = \"http://{}\"\n[relay.sdk_keys]\n\"default/production\" = \"{KEY_VAR}\"\n\n\
         [overrides.default.production]\nkill-switch = true\n",
        ld_hole.local_addr().unwrap(),
        relay_hole.local_addr().unwrap()
    ));
    w.write("flags.json", &crate::support::fixtures::flag_file(&[flag]));
    let started = Instant::now();
    let run = w
        .cmd(["status", "--json"])
        .token()
        .env(KEY_VAR, "sdk-silent-0000")
        .timeout(Duration::from_secs(60))
        .run();
    let took = started.elapsed();
    assert_eq!(run.code, 2, "{}", run.all());
    let flag = serde_json::from_str::<Value>(&run.stdout).unwrap()["flags"][0].clone();
    assert_eq!(
        states(&flag),
        (
            vec![json!("declared")],
            vec![(json!("silent"), json!("unreachable"))],
            json!("unreachable")
        ),
        "{flag:#}"
    );
    assert!(
        why(&flag, "/relays/0/why").starts_with("no answer (no answer within 5 s)"),
        "{flag}"
    );
    assert!(why(&flag, "/launchdarkly/why").contains("within 10 s"), "{flag}");
    assert!(
        run.stderr.contains("(7 s at most each)") && run.stderr.contains("(10 s at most)"),
        "{}",
        run.stderr
    );
    // The two waits overlap: about 10 s, not their sum, nor LaunchDarkly's 30 s request timeout.
    assert!(took < Duration::from_secs(20), "took {took:?}: {}", run.stderr);
}
