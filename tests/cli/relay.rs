//! The real LaunchDarkly Relay Proxy (v8, support/relay.rs) in the loop, with the real Python SDK
//! in proxy mode as the service and the fake LaunchDarkly (support/fake_ld/) as what Relay
//! streams from: what services actually see of relayctl's writes during an outage and after
//! LaunchDarkly comes back. Every wait polls, bounded; short `CACHE_TTL`s keep them short.

use crate::support::fake_ld::FakeLd;
use crate::support::fixtures::{overrides, redis_overrides, PREFIX};
use crate::support::moto::Moto;
use crate::support::relay::{Env, Options, ProxySdk, Relay, Store};
use crate::support::{wait_for, Redis, Workspace};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The flag every Redis test turns off: on, serving `true`, at version 41 in LaunchDarkly.
fn kill_switch(ld: &FakeLd) {
    let variations = [json!(true), json!(false)];
    ld.add_flag(
        "default",
        "kill-switch",
        &variations,
        "production",
        true,
        1,
        0,
        41,
    );
}

fn production(ld: &FakeLd) -> Env {
    Env {
        name: "production".into(),
        sdk_key: ld.sdk_key("default", "production"),
        prefix: Some(PREFIX.into()),
    }
}

fn ttl(ttl: &str) -> Options {
    Options {
        cache_ttl: ttl.into(),
        ..Options::default()
    }
}

/// The `on` and `version` of a flag as JSON, or `null`s.
fn on_version(flag: Option<&Value>) -> (Value, Value) {
    flag.map_or((Value::Null, Value::Null), |f| {
        (f["on"].clone(), f["version"].clone())
    })
}

/// Waits until Redis holds `kill-switch` with `on` at `version` (what Relay's put or relayctl wrote).
fn wait_store(r: &Redis, on: bool, version: u64, what: &str) {
    wait_for(what, Duration::from_secs(30), || {
        on_version(r.flag(PREFIX, "kill-switch").as_ref()) == (json!(on), json!(version))
    });
}

#[test]
#[ignore = "needs the LaunchDarkly Relay Proxy: scripts/test.sh runs it when scripts/ld_relay.sh can build it, and says loudly when it cannot"]
fn during_an_outage_relay_serves_the_store_new_sdks_see_the_override_after_its_cache_ttl_connected_ones_after_reconnecting(
) {
    const TTL: Duration = Duration::from_secs(5);
    let mut ld = FakeLd::start();
    kill_switch(&ld);
    let r = Redis::start();
    let env = production(&ld);
    let key = env.sdk_key.clone();
    let mut relay = Relay::start(&ld.url, &Store::Redis(r.url()), &[env], &ttl("5s"));
    wait_store(&r, true, 41, "Relay's first put in Redis");

    // LaunchDarkly becomes unreachable and Relay is restarted (IGNORE_CONNECTION_ERRORS=true):
    // it serves what the store holds.
    ld.go_down();
    relay.restart();
    let served = relay.wait_flag(
        &key,
        "kill-switch",
        Duration::from_secs(20),
        "from the store",
        |f| f.is_some(),
    );
    assert_eq!(
        on_version(served.as_ref()),
        (json!(true), json!(41)),
        "{}",
        relay.log()
    );
    let mut connected = ProxySdk::connect(&relay.url(), &key);
    assert_eq!(connected.value("kill-switch"), json!(true));

    let w = Workspace::new(&redis_overrides(
        &[&r],
        "kill-switch = { on = false, reason = \"INC-1\" }\n",
    ));
    // This read caches the flag in Relay (if an earlier one has not already) for TTL.
    let cached = Instant::now();
    assert_eq!(
        on_version(relay.flag(&key, "kill-switch").1.as_ref()).1,
        json!(41)
    );
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        on_version(r.flag(PREFIX, "kill-switch").as_ref()),
        (json!(false), json!(42))
    );

    // Within its cache TTL, Relay's polling endpoint still serves the pre-override flag...
    let before = relay.flag(&key, "kill-switch").1;
    assert!(
        cached.elapsed() < TTL,
        "this check came {:?} after the flag was cached, past Relay's CACHE_TTL of {TTL:?}: it cannot see the cache",
        cached.elapsed()
    );
    assert_eq!(
        on_version(before.as_ref()),
        (json!(true), json!(41)),
        "served within the TTL"
    );
    // ...and the override once it has passed.
    let after = relay.wait_flag(&key, "kill-switch", TTL + Duration::from_secs(10), "off", |f| {
        f.is_some_and(|f| f["on"] == json!(false))
    });
    assert_eq!(on_version(after.as_ref()), (json!(false), json!(42)));
    assert!(cached.elapsed() >= Duration::from_millis(100), "not at once");

    // An SDK that was connected keeps the old state: Relay pushes nothing it did not write.
    assert_eq!(connected.value("kill-switch"), json!(true));
    // One that connects once the whole-environment read (what a new stream's put is made of)
    // has expired too gets the override.
    wait_for(
        "Relay's /sdk/flags to serve the override",
        TTL + Duration::from_secs(10),
        || relay.flags(&key).1["kill-switch"]["on"] == json!(false),
    );
    let mut new = ProxySdk::connect(&relay.url(), &key);
    assert_eq!(new.eval("kill-switch")["reason"]["kind"], json!("OFF"));
    assert_eq!(new.value("kill-switch"), json!(false));
    assert_eq!(connected.value("kill-switch"), json!(true), "still the old state");

    // Restarting Relay makes every connected SDK reconnect, and get the store's state.
    relay.restart();
    wait_for(
        "the connected SDK to reconnect to the restarted Relay",
        Duration::from_secs(30),
        || connected.value("kill-switch") == json!(false),
    );
}

/// `relayctl sync --wait --interval 1s` in `w`, started now, writing to `sync.out` / `sync.err`.
fn spawn_sync_wait(w: &Workspace) -> std::process::Child {
    let out = std::fs::File::create(w.path("sync.out")).unwrap();
    let err = std::fs::File::create(w.path("sync.err")).unwrap();
    w.cmd(["sync", "--wait", "--interval", "1s", "--timeout", "2m"])
        .token()
        .spawn(Stdio::from(out), Stdio::from(err))
}

#[test]
#[ignore = "needs the LaunchDarkly Relay Proxy: scripts/test.sh runs it when scripts/ld_relay.sh can build it, and says loudly when it cannot"]
fn handback_drill_after_launchdarkly_comes_back_the_store_relay_and_sdks_serve_the_override_sent_once() {
    let mut ld = FakeLd::start();
    kill_switch(&ld);
    let r = Redis::start();
    let env = production(&ld);
    let key = env.sdk_key.clone();
    let relay = Relay::start(&ld.url, &Store::Redis(r.url()), &[env], &ttl("1s"));
    wait_store(&r, true, 41, "Relay's first put in Redis");

    // The outage: LaunchDarkly goes away (Relay keeps retrying), an override is applied, and
    // `sync --wait` is armed.
    ld.go_down();
    let stores = redis_overrides(
        &[&r],
        "kill-switch = { on = false, reason = \"INC-7: kill it\" }\n",
    );
    let (head, flags) = stores.split_once("[overrides").unwrap();
    let w = Workspace::new(&format!(
        "{head}[launchdarkly]\nbase_url = \"{}\"\n\n[overrides{flags}",
        ld.url
    ));
    let run = w.run(["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let mut sync = spawn_sync_wait(&w);
    w.wait_for_text("sync.err", "attempt 1:");
    wait_for(
        "Relay's /sdk/flags to serve the override",
        Duration::from_secs(20),
        || relay.flags(&key).1["kill-switch"]["on"] == json!(false),
    );
    let mut sdk = ProxySdk::connect(&relay.url(), &key);
    assert_eq!(
        sdk.value("kill-switch"),
        json!(false),
        "services got the override during the outage"
    );

    // LaunchDarkly comes back: sync --wait replays the journal, Relay reconnects and replaces
    // the store with LaunchDarkly's data, which by then holds the override.
    ld.come_up();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = sync.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "sync --wait still running: {}",
            w.read("sync.err")
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{}", w.read("sync.err"));
    wait_for(
        "Relay to reconnect to LaunchDarkly",
        Duration::from_secs(45),
        || ld.streams("default", "production") > 0,
    );
    wait_store(
        &r,
        false,
        42,
        "the store to hold LaunchDarkly's state, the override",
    );
    let served = relay.wait_flag(&key, "kill-switch", Duration::from_secs(10), "off", |f| {
        f.is_some_and(|f| f["on"] == json!(false))
    });
    assert_eq!(on_version(served.as_ref()), (json!(false), json!(42)));
    wait_for("the SDK to serve the override", Duration::from_secs(10), || {
        sdk.value("kill-switch") == json!(false)
    });
    assert_eq!(
        ProxySdk::connect(&relay.url(), &key).value("kill-switch"),
        json!(false)
    );

    // LaunchDarkly holds it, from exactly one PATCH.
    let patches = ld.patches();
    assert_eq!(patches.len(), 1, "{patches:#?}");
    assert_eq!(ld.applied().len(), 1);
    assert_eq!(
        (
            ld.env("default", "kill-switch", "production")["on"].clone(),
            ld.env("default", "kill-switch", "production")["version"].clone()
        ),
        (json!(false), json!(42))
    );
    assert!(patches[0].body.contains("INC-7: kill it"), "{}", patches[0].body);
    let log = w.run(["log", "--pending"]);
    assert_eq!(log.stdout.trim(), "", "nothing pending: {}", log.all());
}

#[test]
#[ignore = "needs the LaunchDarkly Relay Proxy: scripts/test.sh runs it when scripts/ld_relay.sh can build it, and says loudly when it cannot"]
fn one_relay_serves_several_environments_from_dynamodb_each_under_its_prefix_with_variations_by_value() {
    let moto = Moto::start();
    moto.create_table("ld-relay");
    let ld = FakeLd::start();
    let layouts = [json!({"cols": 2}), json!({"cols": 3, "dense": true})];
    for (env, v) in [("production", 17), ("staging", 5)] {
        let prices = [json!("control"), json!("treatment"), json!("holdout")];
        ld.add_flag("default", "pricing", &prices, env, true, 2, 0, v);
        ld.add_flag(
            "default",
            "max-items",
            &[json!(10), json!(20), json!(50)],
            env,
            true,
            0,
            0,
            v,
        );
        ld.add_flag("default", "layout", &layouts, env, true, 0, 0, v);
    }
    let envs: Vec<Env> = ["production", "staging"]
        .into_iter()
        .map(|e| Env {
            name: e.into(),
            sdk_key: ld.sdk_key("default", e),
            prefix: Some(format!("ld:default:{e}")),
        })
        .collect();
    let store = Store::DynamoDb {
        table: "ld-relay".into(),
        endpoint: moto.endpoint(),
    };
    let relay = Relay::start(&ld.url, &store, &envs, &ttl("1s"));
    for e in ["production", "staging"] {
        wait_for(
            &format!("Relay's put of {e} in DynamoDB"),
            Duration::from_secs(30),
            || {
                moto.flag("ld-relay", &format!("ld:default:{e}:features"), "layout")
                    .is_some()
            },
        );
    }

    let w = Workspace::new(&overrides(
        &format!(
            "[[store]]\nname = \"relay-ddb\"\ntype = \"dynamodb\"\ntable = \"ld-relay\"\nendpoint_url = \"{}\"\n\
             prefix = \"ld:{{project}}:{{environment}}\"\n\n",
            moto.endpoint()
        ),
        "pricing = { on = true, fallthrough = \"treatment\", reason = \"INC-9\" }\n\
         max-items = { on = true, fallthrough = 50 }\n\
         layout = { on = true, fallthrough = { index = 1 } }\n\n\
         [overrides.default.staging]\n\
         pricing = { on = false, off_variation = \"control\" }\n",
    ));
    let run = w.cmd(["apply", "--auto-approve"]).aws().run();
    assert_eq!(run.code, 0, "{}", run.all());

    let expect = [
        (
            "production",
            [
                ("pricing", json!("treatment")),
                ("max-items", json!(50)),
                ("layout", layouts[1].clone()),
            ],
        ),
        (
            "staging",
            [
                ("pricing", json!("control")),
                ("max-items", json!(10)),
                ("layout", layouts[0].clone()),
            ],
        ),
    ];
    for (env, flags) in expect {
        let key = ld.sdk_key("default", env);
        wait_for(
            &format!("Relay to serve {env}'s overrides"),
            Duration::from_secs(15),
            || {
                let (_, all) = relay.flags(&key);
                all["pricing"]["version"] != json!(if env == "production" { 17 } else { 5 })
            },
        );
        let mut sdk = ProxySdk::connect(&relay.url(), &key);
        for (flag, value) in flags {
            assert_eq!(sdk.value(flag), value, "{env}/{flag}");
        }
    }
}

#[test]
#[ignore = "needs the LaunchDarkly Relay Proxy: scripts/test.sh runs it when scripts/ld_relay.sh can build it, and says loudly when it cannot"]
fn without_ignore_connection_errors_a_relay_started_during_an_outage_still_serves_the_store() {
    let ld = FakeLd::down(crate::support::free_port());
    let r = Redis::start();
    r.seed(PREFIX, &[crate::support::fixtures::bool_flag("kill-switch", 41)]);
    let env = production(&ld);
    let key = env.sdk_key.clone();
    let options = Options {
        ignore_connection_errors: false,
        ..ttl("1s")
    };
    let relay = Relay::start(&ld.url, &Store::Redis(r.url()), &[env], &options);
    // Until INIT_TIMEOUT (2 s here) Relay answers 503; then it serves the store, and keeps running.
    let started = Instant::now();
    let first = relay.flag(&key, "kill-switch").0;
    assert!(
        first == 503 || started.elapsed() >= Duration::from_secs(2),
        "{first}"
    );
    let served = relay.wait_flag(
        &key,
        "kill-switch",
        Duration::from_secs(15),
        "from the store",
        |f| f.is_some(),
    );
    assert_eq!(on_version(served.as_ref()), (json!(true), json!(41)));
    assert!(
        relay
            .log()
            .contains("Error initializing LaunchDarkly client for \"production\""),
        "{}",
        relay.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        relay.flag(&key, "kill-switch").0,
        200,
        "still running: {}",
        relay.log()
    );
}
