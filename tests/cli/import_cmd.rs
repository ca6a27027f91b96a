//! `relayctl import`: declarations of the current state, on real Redis, DynamoDB (moto) and the
//! file store. The round trip (import → paste → plan shows no changes), `--write` keeping the
//! file's comments, and the empty-reason placeholder: plan warns, apply refuses.

use crate::support::fixtures::{bool_flag, flag, overrides, redis_overrides, PREFIX};
use crate::support::moto::Moto;
use crate::support::{Redis, Workspace};
use serde_json::{json, Value};

/// Flags of every shape import must handle: booleans, strings, numbers, a rollout, object
/// variations, two variations with the same value, no off variation.
fn shapes() -> Vec<Value> {
    let mut rollout = flag("pricing-page", 17, true, json!(["control", "treatment"]));
    rollout["fallthrough"] = json!({"rollout": {"variations": [{"variation": 0, "weight": 60000}, {"variation": 1, "weight": 40000}]}});
    let mut no_off = bool_flag("no-off", 3);
    no_off["offVariation"] = Value::Null;
    vec![
        bool_flag("new-checkout", 41),
        rollout,
        flag("limits", 4, false, json!([10, 2.5, -1])),
        flag("layout", 9, true, json!([{"columns": 2}, ["a", "b"], null])),
        flag("twins", 2, true, json!(["same", "same", "other"])),
        no_off,
    ]
}

fn names() -> Vec<String> {
    shapes()
        .iter()
        .map(|f| format!("default/production/{}", f["key"].as_str().unwrap()))
        .collect()
}

#[test]
fn import_then_paste_then_plan_shows_no_changes() {
    let (a, b) = (Redis::start(), Redis::start());
    for r in [&a, &b] {
        r.seed(PREFIX, &shapes());
    }
    let w = Workspace::new(&redis_overrides(&[&a, &b], ""));
    let run = w.cmd(["import"]).args(names()).run();
    assert_eq!(run.code, 0, "{}", run.all());
    insta::assert_snapshot!(run.stdout);

    // Pasted under [overrides.default.production]: plan changes nothing, and warns per reason.
    let before = (a.dump(), b.dump());
    w.write("overrides.toml", &redis_overrides(&[&a, &b], &run.stdout));
    let plan = w.run(["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert_eq!(plan.stdout, "Plan: 0 to change, 12 unchanged.\n");
    assert!(
        plan.stderr.contains(
            "warning: default/production/twins has an empty reason: say why before you apply (apply refuses to write it until then)."
        ),
        "{}",
        plan.stderr
    );
    let apply = w.run(["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "nothing to change is not refused: {}", apply.all());

    // Changing a flag without saying why: apply refuses it and writes nothing.
    let edited = w
        .read("overrides.toml")
        .replace("new-checkout = { on = true,", "new-checkout = { on = false,");
    w.write("overrides.toml", &edited);
    let apply = w.run(["apply", "--auto-approve"]);
    assert_eq!(apply.code, 1, "{}", apply.all());
    assert!(
        apply
            .stderr
            .contains("the reason of default/production/new-checkout is empty (reason = \"\")")
            && apply.stderr.contains("Nothing was written"),
        "{}",
        apply.stderr
    );
    let saved = w.run(["plan", "--out", "plan.json"]);
    assert_eq!(saved.code, 0, "{}", saved.all());
    let apply = w.run(["apply", "plan.json"]);
    assert_eq!(apply.code, 1, "{}", apply.all());
    assert!(
        apply.stderr.contains("is empty (reason = \"\")"),
        "{}",
        apply.stderr
    );
    assert_eq!((a.dump(), b.dump()), before, "nothing was written");
    assert!(!w.path("journal").exists(), "not even the journal");
}

#[test]
fn import_refuses_a_flag_it_cannot_declare_and_prints_nothing() {
    let (a, b) = (Redis::start(), Redis::start());
    a.seed(
        PREFIX,
        &[bool_flag("new-checkout", 41), bool_flag("search-v2", 3)],
    );
    let mut off = bool_flag("new-checkout", 41);
    off["on"] = json!(false);
    b.seed(PREFIX, &[off, bool_flag("search-v2", 3)]);
    b.set_raw(
        PREFIX,
        "retired",
        r#"{"key":"$deleted","version":12,"deleted":true}"#,
    );
    let w = Workspace::new(&redis_overrides(&[&a, &b], ""));
    let run = w
        .cmd([
            "import",
            "default/production/search-v2",
            "default/production/new-checkout",
        ])
        .args(["default/production/retired", "default/production/nope"])
        .run();
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, "", "all or nothing");
    let (pa, pb) = (a.port.to_string(), b.port.to_string());
    insta::assert_snapshot!(run.render(&[(&pa, "[PORT-A]"), (&pb, "[PORT-B]")]));
    let run = w.run(["import", "default/production"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("\"default/production\" names no flag"),
        "{}",
        run.stderr
    );
}

/// An overrides file as people keep them: comments everywhere, aligned values.
const COMMENTED: &str = r#"# Reviewed by the on-call lead before every apply.
[[store]]
name = "relay-ddb"        # Relay's table in us-east-1
type = "dynamodb"
table = "ld-relay"
endpoint_url = "ENDPOINT"
prefix = "ld:{project}:{environment}"

[overrides.default.production]
# INC-4711: keep checkout off until payments recover.
new-checkout = { on = false, reason = "INC-4711" }   # owner: payments

[journal]
path = "journal"   # beside this file
"#;

#[test]
fn import_write_adds_declarations_in_place_keeping_comments() {
    let moto = Moto::start();
    moto.create_table("ld-relay");
    moto.seed("ld-relay", Some(PREFIX), &shapes());
    moto.seed("ld-relay", Some("ld:default:staging"), &[bool_flag("beta", 1)]);
    let original = COMMENTED.replace("ENDPOINT", &moto.endpoint());
    let w = Workspace::new(&original);
    let run = w
        .cmd([
            "import",
            "--write",
            "default/production/twins",
            "default/production/pricing-page",
        ])
        .arg("default/staging/beta")
        .aws()
        .run();
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains("Added 3 declaration(s) to overrides.toml"),
        "{}",
        run.stderr
    );
    let port = moto.port.to_string();
    insta::assert_snapshot!(super::support::redact(
        &w.read("overrides.toml"),
        &[(&port, "[PORT]")]
    ));
    assert!(w
        .read("overrides.toml")
        .starts_with(&original[..original.find("\n\n[journal]").unwrap()]));

    // The round trip: what was imported is the state the table holds.
    let plan = w.cmd(["plan", "--json", "--detailed-exitcode"]).aws().run();
    assert_eq!(plan.code, 2, "new-checkout still differs: {}", plan.all());
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    let changed: Vec<&str> = doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["flag"].as_str().unwrap())
        .collect();
    assert_eq!(changed, ["new-checkout"]);
    assert_eq!(doc["unchanged"], json!(3));

    // A flag already declared is refused, and the file is left as it was.
    let before = w.read("overrides.toml");
    let run = w
        .cmd([
            "import",
            "--write",
            "default/production/limits",
            "default/production/new-checkout",
        ])
        .aws()
        .run();
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("already declared in the overrides file: default/production/new-checkout")
            && run.stderr.contains("Nothing was written"),
        "{}",
        run.stderr
    );
    assert_eq!(w.read("overrides.toml"), before);
}

#[test]
fn import_from_the_file_store_round_trips() {
    let root = env!("CARGO_MANIFEST_DIR");
    let w = Workspace::new(&overrides(
        "[[store]]\nname = \"local\"\ntype = \"file\"\npath = \"flags/{project}-{environment}.json\"\n\n",
        "",
    ));
    let flags = "flags/default-production.json";
    w.write(
        flags,
        &std::fs::read_to_string(format!("{root}/examples/quickstart/{flags}")).unwrap(),
    );
    let all = [
        "dark-mode",
        "new-checkout",
        "pricing-page",
        "recommendations",
        "search-v2",
    ];
    let run = w
        .cmd(["import", "--write"])
        .args(all.iter().map(|f| format!("default/production/{f}")))
        .run();
    assert_eq!(run.code, 0, "{}", run.all());
    let plan = w.run(["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert_eq!(plan.stdout, "Plan: 0 to change, 5 unchanged.\n");

    let run = w.run(["import", "default/production/nope"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(
            "default/production/nope: local flags/default-production.json: not there (no flag \"nope\" under \"flags\" in"
        ),
        "{}",
        run.stderr
    );
}

/// A workspace whose file store holds `n` boolean flags `f0..`, none declared.
fn file_store_workspace(n: usize) -> Workspace {
    let w = Workspace::new(&overrides(
        "[[store]]\nname = \"local\"\ntype = \"file\"\npath = \"flags.json\"\n\n",
        "",
    ));
    let flags: Vec<Value> = (0..n).map(|i| bool_flag(&format!("f{i}"), 1)).collect();
    w.write("flags.json", &crate::support::fixtures::flag_file(&flags));
    w
}

// Issue 19, item 2: imports at once take turns; none of their declarations is lost.
#[test]
fn imports_writing_at_once_lose_no_declaration() {
    for trial in 0..5 {
        let w = file_store_workspace(4);
        let runs: Vec<_> = (0..4)
            .map(|i| {
                w.cmd(["import", "--write", &format!("default/production/f{i}")])
                    .spawn(std::process::Stdio::null(), std::process::Stdio::piped())
            })
            .collect();
        for run in runs {
            let out = run.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "trial {trial}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = w.read("overrides.toml");
        for i in 0..4 {
            assert!(
                text.contains(&format!("f{i} = ")),
                "trial {trial}: f{i} lost:\n{text}"
            );
        }
    }
}

// Issue 19, item 11: the operator's file keeps its line endings, BOM, owner, mode and links.
#[test]
fn import_write_keeps_line_endings_bom_owner_mode_and_links() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let w = file_store_workspace(2);
    let path = w.path("overrides.toml");
    let original = format!("\u{feff}{}", w.read("overrides.toml").replace('\n', "\r\n"));
    w.write("overrides.toml", &original);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    let link = w.path("linked.toml");
    std::fs::hard_link(&path, &link).unwrap();

    let run = w.run(["import", "--write", "default/production/f0"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let text = w.read("overrides.toml");
    assert!(text.starts_with('\u{feff}'), "the BOM is kept");
    assert!(text.contains("f0 = "), "{text}");
    assert!(
        !text.replace("\r\n", "").contains('\n'),
        "CRLF everywhere: {text:?}"
    );
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    assert_eq!(
        std::fs::read_to_string(&link).unwrap(),
        text,
        "the hard link sees the change"
    );

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let run = w.run(["import", "--write", "default/production/f1"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("is read-only (mode 444)"), "{}", run.stderr);
    assert_eq!(w.read("overrides.toml"), text, "left as it was");
}
