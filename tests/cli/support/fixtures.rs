//! Test data more than one test file needs: flags as Relay stores them, overrides files, and what
//! the real LaunchDarkly SDK (tests/conformance/evaluate.py) serves from a store.
//!
//! Builders here return plain values (JSON, TOML text); they start no server and run nothing but
//! the Python SDK in [`evaluate_redis`] and [`evaluate_dynamodb`].

use super::moto::{Moto, AWS_ENV};
use super::{require, stdout_of, Redis};
use serde_json::{json, Value};
use std::process::Command;

/// The prefix [`redis_overrides`] (and every `ld:{project}:{environment}` template) gives
/// `default/production`.
pub const PREFIX: &str = "ld:default:production";

/// A realistic flag as Relay stores it: boolean or string variations, targets, a rule.
pub fn flag(key: &str, version: u64, on: bool, variations: Value) -> Value {
    json!({
        "key": key, "on": on, "prerequisites": [],
        "targets": [{"variation": 0, "values": ["alice"]}], "contextTargets": [],
        "rules": [{"id": "rule-1", "clauses": [{"attribute": "country", "op": "in", "values": ["NZ"], "negate": false}], "variation": 0, "trackEvents": false}],
        "fallthrough": {"variation": 0}, "offVariation": 1, "variations": variations,
        "clientSide": false, "salt": format!("salt-{key}"), "trackEvents": false, "trackEventsFallthrough": false,
        "debugEventsUntilDate": null, "version": version, "deleted": false
    })
}

/// The most common [`flag`]: on, variations `[true, false]`.
pub fn bool_flag(key: &str, version: u64) -> Value {
    flag(key, version, true, json!([true, false]))
}

/// `flag` with the top-level properties in `changes` set (in place, so the property order is
/// kept): what a store should hold after relayctl changed only those.
pub fn edited(flag: &Value, changes: Value) -> Value {
    let mut flag = flag.clone();
    for (k, v) in changes.as_object().expect("changes are a JSON object") {
        flag[k] = v.clone();
    }
    flag
}

/// An SDK flag file (the file store's format) holding `flags` and no segments.
pub fn flag_file(flags: &[Value]) -> String {
    let flags: serde_json::Map<String, Value> = flags
        .iter()
        .map(|f| (f["key"].as_str().unwrap().to_owned(), f.clone()))
        .collect();
    json!({"flags": flags, "segments": {}}).to_string()
}

/// An overrides file: the `stores` text (`[[store]]` tables and the like), then `flags` declared
/// under `[overrides.default.production]`.
pub fn overrides(stores: &str, flags: &str) -> String {
    format!("{stores}[overrides.default.production]\n{flags}")
}

/// A Redis store `relay-redis` over `urls` with the prefix template `ld:{project}:{environment}`.
pub fn redis_store(urls: &[String]) -> String {
    let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "[[store]]\nname = \"relay-redis\"\ntype = \"redis\"\nurls = [{}]\nprefix = \"ld:{{project}}:{{environment}}\"\n\n",
        urls.join(", ")
    )
}

/// An overrides file with one store `relay-redis` over `redis` (their secret URLs; prefix
/// [`PREFIX`]) and `flags` declared under `[overrides.default.production]`.
pub fn redis_overrides(redis: &[&Redis], flags: &str) -> String {
    let urls: Vec<String> = redis.iter().map(|r| r.secret_url()).collect();
    overrides(&redis_store(&urls), flags)
}

/// A file store at `flags/{project}-{environment}.json` ([`flag_file`]'s format), and the fake
/// LaunchDarkly at `base_url` to sync to.
pub fn file_store_and_ld(base_url: &str) -> String {
    format!(
        "[[store]]\ntype = \"file\"\npath = \"flags/{{project}}-{{environment}}.json\"\n\n\
         [launchdarkly]\nbase_url = \"{base_url}\"\n\n"
    )
}

/// Declarations turning each of `flags` off, one line each.
pub fn all_off(flags: &[impl AsRef<str>]) -> String {
    flags
        .iter()
        .map(|f| format!("{} = false\n", f.as_ref()))
        .collect()
}

const SDK_INSTALL: &str = "pip install launchdarkly-server-sdk redis boto3";

/// What the LaunchDarkly Python SDK serves for `flags` reading `redis` under [`PREFIX`].
pub fn evaluate_redis(redis: &Redis, flags: &[&str]) -> Value {
    let url = redis.secret_url();
    let store = ["--store", "redis", "--url", &url, "--prefix", PREFIX];
    evaluate(&store, &[], flags)
}

/// What the LaunchDarkly Python SDK serves for `flags` reading `table` on `moto` under
/// [`PREFIX`].
pub fn evaluate_dynamodb(moto: &Moto, table: &str, flags: &[&str]) -> Value {
    let endpoint = moto.endpoint();
    let store = [
        "--store",
        "dynamodb",
        "--table",
        table,
        "--endpoint",
        &endpoint,
        "--prefix",
        PREFIX,
    ];
    evaluate(&store, AWS_ENV, flags)
}

/// The arguments of evaluate.py that make it read `redis` under [`PREFIX`].
pub fn redis_sdk_store(redis: &Redis) -> Vec<String> {
    let store = [
        "--store",
        "redis",
        "--url",
        &redis.secret_url(),
        "--prefix",
        PREFIX,
    ];
    store.iter().map(|s| s.to_string()).collect()
}

/// The arguments of evaluate.py that make it read `table` on `moto` under [`PREFIX`].
pub fn dynamodb_sdk_store(moto: &Moto, table: &str) -> Vec<String> {
    let endpoint = moto.endpoint();
    let store = [
        "--store",
        "dynamodb",
        "--table",
        table,
        "--endpoint",
        &endpoint,
        "--prefix",
        PREFIX,
    ];
    store.iter().map(|s| s.to_string()).collect()
}

/// What the LaunchDarkly Python SDK (daemon mode) serves for `flags` to each of `contexts`
/// (LaunchDarkly context JSON), reading the store `store_args` describe ([`redis_sdk_store`],
/// [`dynamodb_sdk_store`]): one object per context, in order, as [`evaluate_redis`] gives for
/// one. One Python process evaluates them all.
pub fn evaluate_contexts(store_args: &[String], flags: &[&str], contexts: &[Value]) -> Vec<Value> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), Value::from(contexts.to_vec()).to_string()).unwrap();
    let mut args: Vec<&str> = store_args.iter().map(String::as_str).collect();
    let path = file.path().to_str().unwrap().to_owned();
    args.extend(["--contexts", &path]);
    let env = match store_args.get(1).map(String::as_str) {
        Some("dynamodb") => AWS_ENV,
        _ => &[],
    };
    match evaluate(&args, env, flags) {
        Value::Array(results) => results,
        other => panic!("evaluate.py --contexts printed no array: {other}"),
    }
}

/// What the LaunchDarkly Python SDK (daemon mode, no cache) serves for `flags` to the context
/// `ctx-1`, reading the store that `store_args` describe (evaluate.py's `--store ...`), with
/// `env` added to this process's environment.
fn evaluate(store_args: &[&str], env: &[(&str, &str)], flags: &[&str]) -> Value {
    let python = require("python3", "apt-get install -y python3 python3-pip");
    let driver = match store_args {
        ["--store", "dynamodb", ..] => "boto3",
        _ => "redis",
    };
    let probe = Command::new(&python)
        .args(["-c", &format!("import ldclient, {driver}")])
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "the LaunchDarkly Python SDK is needed by this test and cannot be imported ({}). Install it with: {SDK_INSTALL}",
        String::from_utf8_lossy(&probe.stderr).trim()
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance/evaluate.py");
    let out = stdout_of(
        Command::new(python)
            .arg(script)
            .args(store_args)
            .args(["--flags", &flags.join(",")])
            .envs(env.iter().copied()),
        "evaluate.py",
    );
    serde_json::from_str(&out).unwrap()
}

/// Asserts what the SDK served ([`evaluate_redis`], [`evaluate_dynamodb`]): per flag, (value,
/// variation index, reason kind).
pub fn assert_served(results: &Value, expected: &[(&str, Value, u64, &str)]) {
    for (flag, value, index, kind) in expected {
        let served = (
            results[flag]["value"].clone(),
            results[flag]["variation_index"].clone(),
            results[flag]["reason"]["kind"].clone(),
        );
        assert_eq!(
            served,
            (value.clone(), json!(index), json!(kind)),
            "{flag}: {results:#}"
        );
    }
}

/// `s` as a TOML basic string, every character outside printable ASCII as a `\u` escape (so an
/// overrides file holding it is plain ASCII, whatever `s` holds).
pub fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => out.extend(['\\', c]),
            ' '..='~' => out.push(c),
            c if (c as u32) > 0xffff => out.push_str(&format!("\\U{:08X}", c as u32)),
            c => out.push_str(&format!("\\u{:04X}", c as u32)),
        }
    }
    out.push('"');
    out
}
