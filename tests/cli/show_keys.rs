//! `relayctl show` for plain Redis keys (`redis-keys` stores), on two real redis-server
//! targets: values by value, absent keys, a key of another type, hostile values, targets that
//! disagree, the declared state, key selectors and their errors, `--json` with flags and keys in
//! one document. show never writes: the tests check the servers.

use crate::support::fixtures::{bool_flag, redis_store, PREFIX};
use crate::support::{Redis, Workspace};
use serde_json::{json, Value};

fn set(r: &Redis, key: &str, value: &str) {
    redis::cmd("SET").arg(key).arg(value).exec(&mut r.conn()).unwrap();
}

/// A `redis-keys` store `meow-blue` (prefix `meow:`) over two servers, and a LaunchDarkly flag
/// store on the first. On b, `RECENT` was left `OFF` (a write that reached one server only);
/// `canary_alert` is absent everywhere; `legacy` is a hash; `banner` holds hostile text on a;
/// `other` is held but not declared, and `unrelated` lies outside the prefix.
fn two_servers() -> (Redis, Redis, Workspace) {
    let (a, b) = (Redis::start(), Redis::start());
    a.seed(PREFIX, &[bool_flag("new-checkout", 41)]);
    for r in [&a, &b] {
        set(r, "meow:RECENT", "ON");
        set(r, "meow:other", "kept");
        set(r, "unrelated", "not ours");
        redis::cmd("HSET")
            .arg("meow:legacy")
            .arg("f")
            .arg("v")
            .exec(&mut r.conn())
            .unwrap();
    }
    set(&b, "meow:RECENT", "OFF");
    set(&a, "meow:banner", "\u{1b}[2J\u{1b}[31mforged\nline");
    let w = Workspace::new(&format!(
        "{}[[store]]\nname = \"meow-blue\"\ntype = \"redis-keys\"\nurls = [\"{}\", \"{}\"]\nprefix = \"meow:\"\n\n\
         [overrides.default.production]\nnew-checkout = true\n\n\
         [keys.meow-blue]\nRECENT = \"ON\"\ncanary_alert = {{ value = \"1\", reason = \"INC-12\" }}\n\
         old_key = {{ absent = true }}\nlegacy = \"1\"\nbanner = \"x\"\n",
        redis_store(&[a.url()]),
        a.url(),
        b.url()
    ));
    (a, b, w)
}

fn render(run: &crate::support::Run, a: &Redis, b: &Redis) -> String {
    let (pa, pb) = (a.port.to_string(), b.port.to_string());
    run.render(&[(&pa, "[PORT-A]"), (&pb, "[PORT-B]")])
}

#[test]
fn show_lists_the_declared_keys_on_every_target_and_marks_disagreement() {
    let (a, b, w) = two_servers();
    let before = (a.dump(), b.dump());
    let run = w.run(["show"]);
    assert_eq!(run.code, 0, "{}", run.all());
    insta::assert_snapshot!(render(&run, &a, &b));
    assert_eq!((a.dump(), b.dump()), before, "show must not write");
    assert!(
        !run.stdout.contains('\u{1b}'),
        "a stored value cannot reach the terminal raw"
    );
    assert!(
        !run.stdout.contains("unrelated") && !run.stdout.contains("kept"),
        "keys that are not declared are not listed: {}",
        run.stdout
    );
    // The store's name selects the same lines, `_keys/STORE/KEY` one key, and a key that is not
    // declared can be named.
    let keys: String = run
        .stdout
        .lines()
        .filter(|l| l.contains("meow-blue "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(w.run(["show", "meow-blue"]).stdout, keys);
    assert_eq!(w.run(["show", "_keys/meow-blue"]).stdout, keys);
    let one = w.run(["show", "_keys/meow-blue/RECENT"]);
    assert_eq!(one.code, 0, "{}", one.all());
    let lines: Vec<&str> = one.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", one.stdout);
    assert!(lines[0].starts_with("! meow-blue RECENT  \"ON\" ") && lines[0].ends_with("declared, in state"));
    assert!(
        lines[1].starts_with("! meow-blue RECENT  \"OFF\"")
            && lines[1].ends_with("declared, differs: \"OFF\" -> \"ON\"")
    );
    let other = w.run(["show", "_keys/meow-blue/other", "default/production/new-checkout"]);
    assert_eq!(other.code, 0, "{}", other.all());
    assert_eq!(other.stdout.lines().count(), 3, "{}", other.stdout);
    assert!(other
        .stdout
        .lines()
        .skip(1)
        .all(|l| l.starts_with("  meow-blue other  \"kept\"") && l.ends_with("not declared")));
}

#[test]
fn show_json_has_flags_and_keys_in_one_document() {
    let (a, b, w) = two_servers();
    let run = w.run(["show", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.stderr, "");
    let doc: Value = serde_json::from_str(&run.stdout).expect("stdout is one JSON document");
    assert_eq!(doc["flags"][0]["flag"], json!("new-checkout"));
    let keys = doc["keys"].as_array().unwrap();
    let names: Vec<&str> = keys.iter().map(|k| k["key"].as_str().unwrap()).collect();
    assert_eq!(names, ["RECENT", "banner", "canary_alert", "legacy", "old_key"]);
    assert_eq!(
        keys[0],
        json!({"store": "meow-blue", "key": "RECENT", "declared": true, "agree": false, "targets": [
            {"store": "meow-blue", "target": a.url(), "status": "value", "value": "ON", "declared_state": "matches"},
            {"store": "meow-blue", "target": b.url(), "status": "value", "value": "OFF", "declared_state": "differs",
             "changes": ["\"OFF\" -> \"ON\""]}]})
    );
    assert_eq!(
        keys[1]["targets"][0]["value"],
        json!("\u{1b}[2J\u{1b}[31mforged\nline")
    );
    assert_eq!(keys[1]["targets"][1]["status"], json!("absent"));
    assert_eq!(keys[2]["targets"][0]["changes"], json!(["(absent) -> \"1\""]));
    assert_eq!(
        (
            keys[3]["targets"][0]["status"].clone(),
            keys[3]["targets"][0]["type"].clone()
        ),
        (json!("other_type"), json!("hash"))
    );
    assert_eq!(keys[3]["targets"][0]["declared_state"], json!("problem"));
    assert_eq!(keys[4]["agree"], json!(true));
    assert_eq!(keys[4]["targets"][1]["declared_state"], json!("matches"));

    // Keys only: the document still has both arrays.
    let only = w.run(["show", "--json", "_keys/meow-blue/old_key"]);
    let doc: Value = serde_json::from_str(&only.stdout).expect("one JSON document");
    assert_eq!(
        (doc["flags"].clone(), doc["keys"].as_array().unwrap().len()),
        (json!([]), 1)
    );
}

#[test]
fn unknown_stores_and_keys_are_errors_naming_them() {
    let (a, b, w) = two_servers();
    let run = w.run(["show", "_keys/meow-blue/nope", "_keys/meow-blue/RECENT"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout.lines().count(),
        2,
        "what can be shown is shown: {}",
        run.stdout
    );
    insta::assert_snapshot!(render(&run, &a, &b));
    for (arg, want) in [
        ("_keys/meow-green/RECENT", "\"_keys/meow-green/RECENT\" names no redis-keys store (the redis-keys stores are \"meow-blue\")"),
        ("meow-green", "\"meow-green\" is not PROJECT/ENV or PROJECT/ENV/FLAG (for example default/production), and names no redis-keys store"),
        ("_keys/meow-blue/", "names no key after the store \"meow-blue\""),
    ] {
        let run = w.run(["show", arg]);
        assert_eq!(run.code, 1, "{arg}");
        assert_eq!(run.stdout, "", "{arg}");
        assert!(run.stderr.contains(want), "{arg}: {}", run.stderr);
    }
}

#[test]
fn a_file_with_only_keys_shows_them_with_no_argument() {
    let a = Redis::start();
    set(&a, "RECENT", "ON");
    let w = Workspace::new(&format!(
        "[[store]]\nname = \"meow-blue\"\ntype = \"redis-keys\"\nurl = \"{}\"\n\n[keys.meow-blue]\nRECENT = \"ON\"\n",
        a.url()
    ));
    let run = w.run(["show"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout
            .starts_with("  meow-blue RECENT  \"ON\"  meow-blue redis://"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("Shown: 0 flag(s) and 1 key(s); 1 declared"),
        "{}",
        run.stderr
    );
}

#[test]
fn import_declares_keys_and_plan_then_shows_no_change() {
    let (a, b, w) = two_servers();
    set(&b, "meow:banner", "\u{1b}[2J\u{1b}[31mforged\nline");
    let run = w.run(["import", "_keys/meow-blue/banner", "_keys/meow-blue/other"]);
    assert_eq!(run.code, 0, "{}", run.all());
    insta::assert_snapshot!(render(&run, &a, &b));
    assert!(!run.stdout.contains('\u{1b}'));
    // Pasted in place of the declarations, plan changes nothing for them (`legacy`, a hash,
    // would stop plan: it goes too).
    let overrides = w
        .read("overrides.toml")
        .replace("banner = \"x\"\n", "")
        .replace("legacy = \"1\"\n", "");
    let pasted = run.stdout.replace("# under [keys.meow-blue]\n", "");
    w.write("overrides.toml", &format!("{overrides}{pasted}"));
    let plan = w.run(["plan", "--json"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let keys: Vec<String> = serde_json::from_str::<Value>(&plan.stdout).unwrap()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        !keys.iter().any(|k| k == "banner" || k == "other"),
        "{keys:?}\n{}",
        plan.all()
    );

    // Disagreeing, absent, a hash: nothing is printed, each named.
    let run = w.run([
        "import",
        "_keys/meow-blue/RECENT",
        "_keys/meow-blue/nope",
        "_keys/meow-blue/legacy",
    ]);
    assert_eq!((run.code, run.stdout.as_str()), (1, ""));
    for want in [
        "meow-blue RECENT: the targets disagree",
        "meow-blue nope: no target holds this key",
        "meow-blue legacy: it holds a Redis hash, not a string",
    ] {
        assert!(run.stderr.contains(want), "{want}: {}", run.stderr);
    }
    let run = w.run(["import", "--write", "_keys/meow-blue/other"]);
    assert!(
        run.code == 1 && run.stderr.contains("--write does not add plain keys yet"),
        "{}",
        run.all()
    );
}
