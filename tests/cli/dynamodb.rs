//! The DynamoDB store against a real DynamoDB-compatible server (moto), and DynamoDB in a
//! fan-out with Redis and a file store.

use crate::support::fixtures::{
    all_off, assert_served, bool_flag, evaluate_dynamodb, flag, flag_file, overrides, PREFIX,
};
use crate::support::moto::{flag_item, Moto};
use crate::support::{free_port, Redis, Workspace};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const TABLE: &str = "ld-relay";

/// A `[[store]]` for `table` on moto, with the prefix template relayCommander's users have.
fn store(moto: &Moto, table: &str) -> String {
    format!(
        "[[store]]\nname = \"relay-ddb\"\ntype = \"dynamodb\"\ntable = \"{table}\"\nendpoint_url = \"{}\"\nprefix = \"ld:{{project}}:{{environment}}\"\n\n",
        moto.endpoint()
    )
}

fn strings() -> Value {
    json!(["treatment", "control"])
}

#[test]
fn dynamodb_round_trip_keeps_every_property_and_item() {
    let moto = Moto::start();
    moto.create_table(TABLE);
    let mut checkout = bool_flag("new-checkout", 41);
    checkout["_unknownFutureProperty"] = json!({"kept": [1, 2]});
    let pricing = flag("pricing-page", 7, true, strings());
    // No prefix: Relay's DynamoDB default is the bare `features` namespace.
    moto.seed(TABLE, None, &[checkout.clone(), pricing, bool_flag("other", 3)]);
    // Another environment's items in the same table must not be touched either.
    moto.seed(TABLE, Some(PREFIX), &[bool_flag("new-checkout", 90)]);
    let before = moto.scan(TABLE);

    // The endpoint comes from the standard AWS environment here, not from the file.
    let w = Workspace::new(&overrides(
        &format!("[[store]]\nname = \"relay-ddb\"\ntype = \"dynamodb\"\ntable = \"{TABLE}\"\n\n"),
        "new-checkout = { on = false, reason = \"INC-4711\" }\npricing-page = { on = false, off_variation = \"control\" }\n",
    ));
    let target = format!("dynamodb://{TABLE}@127.0.0.1:{}", moto.port);
    let plan = w
        .cmd(["plan", "--json"])
        .aws()
        .env("AWS_ENDPOINT_URL_DYNAMODB", moto.endpoint())
        .run();
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{plan:#}");
    assert!(changes.iter().all(|c| c["target"] == json!(target)), "{plan:#}");
    assert_eq!(changes[0]["version"], json!(41));

    w.cmd(["apply", "--auto-approve"])
        .aws()
        .env("AWS_ENDPOINT_URL_DYNAMODB", moto.endpoint())
        .assert()
        .success();

    let (json, version) = moto.flag(TABLE, "features", "new-checkout").unwrap();
    let mut expected = checkout;
    expected["on"] = json!(false);
    expected["version"] = json!(42);
    assert_eq!(
        json, expected,
        "every other property is kept, `on` is a JSON boolean"
    );
    assert_eq!(version, 42, "the version attribute follows the JSON");
    let (json, version) = moto.flag(TABLE, "features", "pricing-page").unwrap();
    assert_eq!(
        (json["on"].clone(), json["offVariation"].clone()),
        (json!(false), json!(1))
    );
    assert_eq!((json["version"].clone(), version), (json!(8), 8));

    let after = moto.scan(TABLE);
    for (key, item) in &before {
        if key.0 == "features" && (key.1 == "new-checkout" || key.1 == "pricing-page") {
            continue;
        }
        assert_eq!(after.get(key), Some(item), "{key:?} must be untouched");
    }
    assert_eq!(after.len(), before.len(), "no item added or removed");
    assert!(after.contains_key(&("$inited".into(), "$inited".into())));

    let log = w.journal_log();
    assert_eq!(log.len(), 3, "{log:#?}");
    assert!(
        log.iter()
            .any(|c| c.contains(&format!("Store: relay-ddb {target} v42"))),
        "{log:#?}"
    );
    // A re-run finds nothing to do.
    w.cmd(["plan", "--detailed-exitcode"])
        .aws()
        .env("AWS_ENDPOINT_URL_DYNAMODB", moto.endpoint())
        .assert()
        .code(0);
}

#[test]
fn dynamodb_racing_writer_makes_the_saved_plan_stale() {
    let moto = Moto::start();
    moto.create_table(TABLE);
    moto.seed(TABLE, Some(PREFIX), &[bool_flag("new-checkout", 41)]);
    let w = Workspace::new(&overrides(&store(&moto, TABLE), "new-checkout = false\n"));
    w.cmd(["plan", "--out", "plan.json"]).aws().assert().success();

    // Relay (or a colleague) writes the flag between plan and apply.
    let racing = bool_flag("new-checkout", 42);
    moto.put(TABLE, flag_item(&format!("{PREFIX}:features"), &racing));

    let run = w.cmd(["apply", "plan.json"]).aws().run();
    assert_eq!(run.code, 1, "{}", run.stderr);
    let err = run.stderr;
    assert!(
        err.contains("stale plan") && err.contains("v42") && err.contains("v41"),
        "{err}"
    );
    assert!(err.contains("new-checkout") && err.contains("relay-ddb"), "{err}");
    assert_eq!(
        moto.flag(TABLE, &format!("{PREFIX}:features"), "new-checkout"),
        Some((racing, 42)),
        "the racing write is kept"
    );
    assert!(w.journal_commits() <= 1, "no flag commit for a refused write");
}

/// Runs `plan` and `apply --auto-approve`; both must fail with exit 1 naming the store, the
/// table and `expected`, within `limit`, and write nothing.
fn assert_fails_cleanly(w: &Workspace, table: &str, expected: &str, limit: Duration) {
    for args in [&["plan"][..], &["apply", "--auto-approve"]] {
        let started = Instant::now();
        let run = w.cmd(args).aws().run();
        let err = run.stderr;
        assert_eq!(run.code, 1, "{args:?}: {err}");
        assert!(
            started.elapsed() < limit,
            "{args:?} took {:?}: {err}",
            started.elapsed()
        );
        assert!(err.contains("relay-ddb"), "names the store: {err}");
        assert!(err.contains(table), "names the table: {err}");
        assert!(err.contains(expected), "{args:?} says {expected:?}: {err}");
        assert!(!err.contains("testing"), "no credential in messages: {err}");
        assert_eq!(w.journal_commits().saturating_sub(1), 0, "nothing journaled");
    }
}

#[test]
fn dynamodb_missing_table_wrong_schema_no_region_no_credentials_are_clear_errors() {
    let moto = Moto::start();
    moto.create_table_with_keys("wrong-keys", "pk", "sk");

    let w = Workspace::new(&overrides(
        &store(&moto, "no-such-table"),
        "new-checkout = false\n",
    ));
    assert_fails_cleanly(&w, "no-such-table", "does not exist", Duration::from_secs(20));

    let w = Workspace::new(&overrides(&store(&moto, "wrong-keys"), "new-checkout = false\n"));
    assert_fails_cleanly(
        &w,
        "wrong-keys",
        "partition key \"pk\" (S) and sort key \"sk\" (S)",
        Duration::from_secs(20),
    );
    assert!(moto.scan("wrong-keys").is_empty());

    moto.create_table(TABLE);
    let w = Workspace::new(&overrides(&store(&moto, TABLE), "new-checkout = false\n"));
    let run = w.cmd(["plan"]).aws().env_remove("AWS_REGION").run();
    let err = run.stderr;
    assert_eq!(run.code, 1, "{err}");
    assert!(
        err.contains("no AWS region") && err.contains(TABLE) && err.contains("relay-ddb"),
        "{err}"
    );

    // No credentials anywhere (HOME is the workspace, so no profile either).
    let run = w
        .cmd(["plan"])
        .aws()
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .run();
    let err = run.stderr;
    assert_eq!(run.code, 1, "{err}");
    assert!(
        err.contains("no usable AWS credentials") && err.contains(TABLE) && err.contains("AWS_PROFILE"),
        "{err}"
    );
}

#[test]
fn dynamodb_unreachable_endpoint_fails_within_seconds() {
    // A free port with nothing listening: connection refused, retried a bounded number of times.
    let port = free_port();
    let w = Workspace::new(&overrides(
        &format!(
            "[[store]]\nname = \"relay-ddb\"\ntype = \"dynamodb\"\ntable = \"{TABLE}\"\nendpoint_url = \"http://127.0.0.1:{port}\"\n\n"
        ),
        "new-checkout = false\n",
    ));
    assert_fails_cleanly(&w, TABLE, "cannot reach DynamoDB", Duration::from_secs(15));
}

#[test]
fn dynamodb_python_sdk_serves_what_was_declared() {
    let moto = Moto::start();
    moto.create_table(TABLE);
    moto.seed(
        TABLE,
        Some(PREFIX),
        &[
            bool_flag("kill-switch", 10),
            flag("pricing-page", 20, true, strings()),
            flag("recommendations", 30, true, json!(["v0", "v1", "v2"])),
            flag("untouched", 40, true, strings()),
        ],
    );
    let all = ["kill-switch", "pricing-page", "recommendations", "untouched"];
    let before = evaluate_dynamodb(&moto, TABLE, &all);
    assert_eq!(before["untouched"]["value"], json!("treatment"), "{before:#}");

    let w = Workspace::new(&overrides(
        &store(&moto, TABLE),
        "kill-switch = false\npricing-page = { on = false, off_variation = \"control\" }\nrecommendations = { on = true, fallthrough = \"v1\" }\n",
    ));
    w.cmd(["apply", "--auto-approve"]).aws().assert().success();

    let after = evaluate_dynamodb(&moto, TABLE, &all);
    assert_served(
        &after,
        &[
            ("kill-switch", json!(false), 1, "OFF"),
            ("pricing-page", json!("control"), 1, "OFF"),
            ("recommendations", json!("v1"), 1, "FALLTHROUGH"),
        ],
    );
    assert_eq!(after["untouched"], before["untouched"]);
}

#[test]
fn mixed_stores_with_dynamodb_down_journal_what_was_written_and_converge() {
    let (a, b) = (Redis::start(), Redis::start());
    let mut moto = Moto::start();
    let seed_moto = |m: &Moto| {
        m.create_table(TABLE);
        m.seed(TABLE, Some(PREFIX), &[bool_flag("new-checkout", 41)]);
    };
    seed_moto(&moto);
    for r in [&a, &b] {
        r.seed(PREFIX, &[bool_flag("new-checkout", 41)]);
    }
    let file = flag_file(&[bool_flag("new-checkout", 41)]);
    let stores = format!(
        "[[store]]\nname = \"redis-eu\"\ntype = \"redis\"\nurl = \"{}\"\nprefix = \"ld:{{project}}:{{environment}}\"\n\n\
         [[store]]\nname = \"redis-us\"\ntype = \"redis\"\nurl = \"{}\"\nprefix = \"ld:{{project}}:{{environment}}\"\n\n\
         {}\
         [[store]]\nname = \"local\"\ntype = \"file\"\npath = \"flags/{{project}}-{{environment}}.json\"\n\n",
        a.url(),
        b.url(),
        store(&moto, TABLE)
    );
    let w = Workspace::new(&overrides(
        &stores,
        "new-checkout = { on = false, reason = \"INC-1\" }\n",
    ));
    w.write("flags/default-production.json", &file);

    let run = w.cmd(["plan", "--out", "plan.json"]).aws().run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let shown = run.stdout;
    for name in ["redis-eu", "redis-us", "relay-ddb", "local"] {
        assert!(shown.contains(name), "the plan shows every target: {shown}");
    }

    moto.kill();
    let started = Instant::now();
    let run = w.cmd(["apply", "plan.json"]).aws().run();
    let err = run.stderr;
    assert_eq!(run.code, 1, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.contains("NOT written to relay-ddb") && err.contains("cannot reach DynamoDB"),
        "{err}"
    );
    let log = w.journal_log();
    let commit = log.last().unwrap();
    assert!(
        commit.contains(&format!("Store: redis-eu {} v42", a.url())),
        "{commit}"
    );
    assert!(
        commit.contains(&format!("Store: redis-us {} v42", b.url())),
        "{commit}"
    );
    assert!(
        commit.contains("Store: local ") && commit.contains("v42"),
        "{commit}"
    );
    assert!(!commit.contains("Store: relay-ddb"), "{commit}");
    assert!(commit.contains("Store-Failed: relay-ddb"), "{commit}");

    // DynamoDB comes back as it was; the next plan holds exactly what is left.
    moto.restart();
    seed_moto(&moto);
    let run = w.cmd(["plan", "--json"]).aws().run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{plan:#}");
    assert_eq!(changes[0]["store"], json!("relay-ddb"));
    w.cmd(["apply", "--auto-approve"]).aws().assert().success();
    w.cmd(["plan", "--detailed-exitcode"]).aws().assert().code(0);
    assert_eq!(
        moto.flag(TABLE, &format!("{PREFIX}:features"), "new-checkout")
            .map(|(j, v)| (j["on"].clone(), v)),
        Some((json!(false), 42))
    );
}

/// A fake DynamoDB endpoint that throttles every request, counting them.
fn throttling_endpoint() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let _ = reader.by_ref().take(length).read_to_end(&mut Vec::new());
            let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#;
            let _ = write!(
                reader.get_mut(),
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.0\r\nx-amzn-ErrorType: ThrottlingException\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, count)
}

#[test]
fn dynamodb_throttling_fails_after_bounded_retries() {
    let (port, requests) = throttling_endpoint();
    let w = Workspace::new(&overrides(
        &format!(
            "[[store]]\nname = \"relay-ddb\"\ntype = \"dynamodb\"\ntable = \"{TABLE}\"\nendpoint_url = \"http://127.0.0.1:{port}\"\n\n"
        ),
        "new-checkout = false\n",
    ));
    assert_fails_cleanly(&w, TABLE, "kept throttling", Duration::from_secs(20));
    let n = requests.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (2..=8).contains(&n),
        "two commands, a bounded number of attempts each: {n}"
    );
}

#[test]
fn dynamodb_plan_reads_more_flags_than_one_batch_holds() {
    let moto = Moto::start();
    moto.create_table(TABLE);
    let flags: Vec<Value> = (0..250)
        .map(|i| bool_flag(&format!("flag-{i:03}"), 1000 + i))
        .collect();
    moto.seed(TABLE, Some(PREFIX), &flags);
    let names: Vec<String> = (0..250).map(|i| format!("flag-{i:03}")).collect();
    let w = Workspace::new(&overrides(&store(&moto, TABLE), &all_off(&names)));
    let run = w.cmd(["plan", "--json"]).aws().run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    let versions: Vec<u64> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, (1000..1250).collect::<Vec<u64>>());
}

#[test]
fn dynamodb_item_whose_version_attribute_disagrees_with_its_json_is_refused() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let moto = Moto::start();
    moto.create_table(TABLE);
    let ns = format!("{PREFIX}:features");
    let skew = |flag: &str, attribute: &str| {
        let mut item = flag_item(&ns, &bool_flag(flag, 41));
        item.insert("version".into(), AttributeValue::N(attribute.into()));
        item
    };
    // The Go SDK reads the attribute (50), the other SDKs the JSON (41): writing 42 would take
    // the flag backwards for Go.
    moto.put(TABLE, skew("skewed", "50"));
    // What serde_json cannot hold is written back as stored, and the attribute follows.
    let exotic = r#"{"key":"exotic","on":true,"huge":1e400,"n":123456789012345678901234567890,"variations":[true,false],"offVariation":1,"version":9}"#;
    let mut item = flag_item(&ns, &bool_flag("exotic", 9));
    item.insert("item".into(), AttributeValue::S(exotic.into()));
    moto.put(TABLE, item);
    moto.seed(TABLE, Some(PREFIX), &[bool_flag("racy", 41)]);
    let before = moto.scan(TABLE);

    let w = Workspace::new(&overrides(&store(&moto, TABLE), "skewed = false\n"));
    let target = format!("relay-ddb dynamodb://{TABLE}@127.0.0.1:{}", moto.port);
    for args in [&["plan"][..], &["apply", "--auto-approve"]] {
        let run = w.cmd(args).aws().run();
        assert_eq!(run.code, 1, "{args:?}: {}", run.all());
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains(&format!("default/production/skewed in {target}")))
            .unwrap_or_else(|| panic!("names the flag, store and target: {}", run.stderr));
        assert!(
            line.contains("\"version\" attribute is 50") && line.contains("\"version\": 41"),
            "{line}"
        );
    }
    assert_eq!(moto.scan(TABLE), before, "nothing written");

    // Consistent when planned; skewed by another writer before apply: refused at write time.
    let w = Workspace::new(&overrides(&store(&moto, TABLE), "exotic = false\nracy = false\n"));
    w.cmd(["plan", "--out", "plan.json"]).aws().assert().success();
    moto.put(TABLE, skew("racy", "50"));
    let run = w.cmd(["apply", "plan.json"]).aws().run();
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("\"version\" attribute is 50") && run.stderr.contains("racy"),
        "{}",
        run.stderr
    );
    assert_eq!(
        moto.item(TABLE, &ns, "racy"),
        Some(skew("racy", "50")),
        "the skewed item is not written"
    );
    let written = moto.item(TABLE, &ns, "exotic").unwrap();
    assert_eq!(
        written["item"].as_s().unwrap(),
        &exotic
            .replace(r#""on":true"#, r#""on":false"#)
            .replace(r#""version":9"#, r#""version":10"#)
    );
    assert_eq!(written["version"].as_n().unwrap(), "10");
}

#[test]
fn a_lease_in_the_table_is_waited_for_named_unlocked_and_an_expired_one_taken() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let moto = Moto::start();
    moto.create_table(TABLE);
    moto.seed(TABLE, Some(PREFIX), &[bool_flag("f1", 41)]);
    let lease = |expires_ms: u128| {
        let holder = json!({
            "id": "0123456789ab", "holder": "Bob <bob@example.com>", "host": "bastion-1",
            "command": "relayctl apply", "started": "2026-12-08T03:00:00Z", "pid": 4242
        });
        moto.put(
            TABLE,
            std::collections::HashMap::from([
                (
                    "namespace".to_owned(),
                    AttributeValue::S("relayctl-team-lease".into()),
                ),
                ("key".to_owned(), AttributeValue::S("lease".into())),
                ("lease".to_owned(), AttributeValue::S(holder.to_string())),
                ("expires".to_owned(), AttributeValue::N(expires_ms.to_string())),
            ]),
        );
    };
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    };
    let w = Workspace::new(&overrides(&store(&moto, TABLE), "f1 = false\n"));
    lease(now_ms() + 600_000);
    let busy = w
        .cmd(["apply", "--auto-approve", "--lock-timeout", "1s"])
        .aws()
        .run();
    assert_eq!(busy.code, 1, "{}", busy.all());
    for part in [
        "Waiting up to 1s (--lock-timeout) for the team lock on dynamodb://",
        "lease 0123456789ab, held by Bob <bob@example.com> on host bastion-1 (pid 4242) running `relayctl apply` since 2026-12-08T03:00:00Z",
        "nothing was written",
        "relayctl unlock 0123456789ab",
    ] {
        assert!(busy.stderr.contains(part), "{part}: {}", busy.stderr);
    }
    assert_eq!(
        moto.flag(TABLE, &format!("{PREFIX}:features"), "f1").unwrap().1,
        41
    );
    let unlocked = w.cmd(["unlock", "0123456789ab"]).aws().run();
    assert_eq!(unlocked.code, 0, "{}", unlocked.all());
    assert!(
        unlocked
            .stderr
            .contains("warning: broke the team lock on dynamodb://"),
        "{}",
        unlocked.stderr
    );
    let applied = w
        .cmd(["apply", "--auto-approve", "--lock-timeout", "1s"])
        .aws()
        .run();
    assert_eq!(applied.code, 0, "{}", applied.all());
    assert_eq!(
        moto.flag(TABLE, &format!("{PREFIX}:features"), "f1").unwrap().1,
        42
    );
    assert!(
        moto.item(TABLE, "relayctl-team-lease", "lease").is_none(),
        "released: no item left"
    );
    // A lease whose run stopped renewing it is past its expiry: taken without waiting.
    lease(now_ms() - 1);
    w.write("overrides.toml", &overrides(&store(&moto, TABLE), "f1 = true\n"));
    let taken = w
        .cmd(["apply", "--auto-approve", "--lock-timeout", "1s"])
        .aws()
        .run();
    assert_eq!(taken.code, 0, "{}", taken.all());
    assert!(!taken.stderr.contains("Waiting"), "{}", taken.stderr);
    assert!(moto.item(TABLE, "relayctl-team-lease", "lease").is_none());
}
