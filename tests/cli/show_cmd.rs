//! `relayctl show`: what the stores hold now, by value, on real Redis, DynamoDB (moto) and the
//! file store; targets that agree and disagree; the declared state; unknown environments and
//! flags; `--json`; a reader that stops early. show never writes: the tests check the stores.

use crate::support::fixtures::{bool_flag, flag, overrides, redis_overrides, redis_store, PREFIX};
use crate::support::moto::Moto;
use crate::support::{Redis, Workspace};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::Stdio;

/// Two Redis hosts that agree on most flags; on host b `new-checkout` was turned off (a write
/// that reached one host only) and `only-on-a` is absent. The overrides file declares two flags.
fn two_hosts() -> (Redis, Redis, Workspace) {
    let (a, b) = (Redis::start(), Redis::start());
    let mut pricing = flag("pricing-page", 17, true, json!(["control", "treatment"]));
    pricing["fallthrough"] = json!({"rollout": {"variations": [{"variation": 0, "weight": 60000}, {"variation": 1, "weight": 40000}]}});
    let common = [bool_flag("new-checkout", 41), pricing, bool_flag("search-v2", 3)];
    a.seed(PREFIX, &common);
    a.seed(PREFIX, &[bool_flag("only-on-a", 2)]);
    b.seed(PREFIX, &common);
    let mut off = bool_flag("new-checkout", 42);
    off["on"] = json!(false);
    b.seed(PREFIX, &[off]);
    // The tombstone sits under its flag's key, as Relay leaves it.
    for r in [&a, &b] {
        r.set_raw(
            PREFIX,
            "retired",
            r#"{"key":"$deleted","version":12,"deleted":true}"#,
        );
    }
    let w = Workspace::new(&redis_overrides(
        &[&a, &b],
        "new-checkout = { on = false, reason = \"INC-4711\" }\nsearch-v2 = true\n",
    ));
    (a, b, w)
}

fn ports(a: &Redis, b: &Redis) -> [(String, &'static str); 2] {
    [(a.port.to_string(), "[PORT-A]"), (b.port.to_string(), "[PORT-B]")]
}

fn render(run: &crate::support::Run, a: &Redis, b: &Redis) -> String {
    let p = ports(a, b);
    run.render(&[(&p[0].0, p[0].1), (&p[1].0, p[1].1)])
}

#[test]
fn show_lists_every_flag_of_the_named_environments_and_marks_disagreeing_targets() {
    let (a, b, w) = two_hosts();
    let before = (a.dump(), b.dump());
    let run = w.run(["show"]);
    assert_eq!(run.code, 0, "{}", run.all());
    insta::assert_snapshot!(render(&run, &a, &b));
    assert_eq!((a.dump(), b.dump()), before, "show must not write");
    assert!(!w.path("journal").exists());

    // One flag, on both targets; an environment selector gives the same lines as no selector.
    let one = w.run(["show", "default/production/new-checkout"]);
    assert_eq!(one.code, 0, "{}", one.all());
    let lines: Vec<&str> = one.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", one.stdout);
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("! default/production/new-checkout")),
        "{}",
        one.stdout
    );
    assert_eq!(w.run(["show", "default/production"]).stdout, run.stdout);
}

#[test]
fn show_json_is_one_document() {
    let (a, b, w) = two_hosts();
    let run = w.run(["show", "--json", "default/production"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.stderr, "", "--json keeps stderr quiet when all is well");
    let doc: Value = serde_json::from_str(&run.stdout).expect("stdout is one JSON document");
    assert_eq!(doc["format_version"], json!(1));
    let flags = doc["flags"].as_array().unwrap();
    let keys: Vec<&str> = flags.iter().map(|f| f["flag"].as_str().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "new-checkout",
            "only-on-a",
            "pricing-page",
            "retired",
            "search-v2"
        ]
    );
    let checkout = &flags[0];
    assert_eq!(checkout["agree"], json!(false));
    assert_eq!(checkout["declared"], json!(true));
    let t = &checkout["targets"];
    assert_eq!(
        (
            t[0]["target"].clone(),
            t[0]["on"].clone(),
            t[0]["version"].clone(),
            t[0]["declared_state"].clone()
        ),
        (json!(a.url()), json!(true), json!(41), json!("differs"))
    );
    assert_eq!(t[0]["changes"], json!(["on: true -> false"]));
    assert_eq!(
        (
            t[1]["target"].clone(),
            t[1]["on"].clone(),
            t[1]["version"].clone(),
            t[1]["declared_state"].clone()
        ),
        (json!(b.url()), json!(false), json!(42), json!("matches"))
    );
    assert_eq!(
        flags[2]["targets"][0]["fallthrough"],
        json!({"rollout": [{"index": 0, "value": "control", "weight": 60000}, {"index": 1, "value": "treatment", "weight": 40000}]})
    );
    assert_eq!(flags[3]["targets"][1]["status"], json!("deleted"));
    assert_eq!(flags[1]["targets"][1]["status"], json!("missing"));
}

#[test]
fn an_unknown_environment_or_flag_is_an_error_naming_it_and_where_it_was_looked_for() {
    let (a, b, w) = two_hosts();
    let run = w.run(["show", "default/prod"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, "");
    insta::assert_snapshot!(render(&run, &a, &b));

    let run = w.run(["show", "default/production/new-chekout"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(&format!(
            "error: default/production/new-chekout: no store target holds this flag: relay-redis {} (no field \"new-chekout\" in hash {PREFIX}:features)",
            a.url()
        )),
        "{}",
        run.stderr
    );
    // What can be shown is shown; the errors follow and the exit code says something failed.
    let run = w.run([
        "show",
        "default/production/search-v2",
        "default/production/nope",
        "default/prod",
    ]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout.lines().count(), 2, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("error: 2 parts of what was asked could not be shown"),
        "{}",
        run.stderr
    );
    // Not a selector at all.
    let run = w.run(["show", "default"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("\"default\" is not PROJECT/ENV or PROJECT/ENV/FLAG"),
        "{}",
        run.stderr
    );
}

#[test]
fn show_with_nothing_named_says_to_name_an_environment() {
    let a = Redis::start();
    let w = Workspace::new(&redis_store(&[a.url()]));
    let run = w.run(["show"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("names no project/environment")
            && run.stderr.contains("`relayctl show default/production`"),
        "{}",
        run.stderr
    );
    // [store.prefixes] entries name environments too (Relay auto-config).
    a.seed("5f3c0ffee0ddba11", &[bool_flag("beta", 1)]);
    let w = Workspace::new(&format!(
        "{}\n[store.prefixes]\n\"default/staging\" = \"5f3c0ffee0ddba11\"\n",
        redis_store(&[a.url()]).trim_end()
    ));
    let run = w.run(["show"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.starts_with("  default/staging/beta "),
        "{}",
        run.stdout
    );
}

#[test]
fn show_reads_a_dynamodb_namespace_with_a_query() {
    let moto = Moto::start();
    moto.create_table("ld-relay");
    moto.seed(
        "ld-relay",
        Some(PREFIX),
        &[
            bool_flag("new-checkout", 41),
            flag("pricing-page", 17, false, json!(["control", "treatment"])),
        ],
    );
    moto.seed(
        "ld-relay",
        Some("ld:default:staging"),
        &[bool_flag("staging-only", 1)],
    );
    let store = format!(
        "[[store]]\nname = \"relay-ddb\"\ntype = \"dynamodb\"\ntable = \"ld-relay\"\nendpoint_url = \"{}\"\nprefix = \"ld:{{project}}:{{environment}}\"\n\n",
        moto.endpoint()
    );
    let w = Workspace::new(&overrides(
        &store,
        "pricing-page = { on = false, reason = \"INC-1\" }\n",
    ));
    let before = moto.scan("ld-relay");
    let run = w.cmd(["show"]).aws().run();
    assert_eq!(run.code, 0, "{}", run.all());
    let port = moto.port.to_string();
    insta::assert_snapshot!(run.render(&[(&port, "[PORT]")]));
    assert_eq!(moto.scan("ld-relay"), before, "show must not write");

    let run = w.cmd(["show", "default/nope"]).aws().run();
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(&format!(
            "relay-ddb dynamodb://ld-relay@127.0.0.1:{port} holds no flag in namespace \"ld:default:nope:features\" of table \"ld-relay\""
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn show_reads_the_file_store() {
    let w = Workspace::new(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/quickstart/overrides.toml"
        ))
        .unwrap(),
    );
    let flags = "flags/default-production.json";
    let content = std::fs::read_to_string(format!(
        "{}/examples/quickstart/{flags}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    w.write(flags, &content);
    let run = w.run(["show"]);
    assert_eq!(run.code, 0, "{}", run.all());
    insta::assert_snapshot!(run.stdout);
    assert_eq!(w.read(flags), content, "show must not write");
    let run = w.run(["show", "default/staging"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("local flags/default-staging.json holds no flag in file flags/default-staging.json (it does not exist)"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_reader_that_stops_early_ends_show_quietly() {
    let a = Redis::start();
    let many: Vec<Value> = (0..3000).map(|i| bool_flag(&format!("flag-{i:05}"), 1)).collect();
    a.seed(PREFIX, &many);
    let w = Workspace::new(&redis_overrides(&[&a], ""));
    // More output than a pipe holds: once the reader is gone, writes fail with EPIPE.
    let mut child = w
        .cmd(["show", "default/production"])
        .spawn(Stdio::piped(), Stdio::piped());
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("  default/production/flag-00000 "), "{first}");
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
