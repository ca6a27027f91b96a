//! The fake's REST API: GET and PATCH of `/api/v2/flags/{project}/{flag}`, injected answers,
//! RFC 6902 JSON Patch, version bumps; each change it applies is streamed (`stream::changed`).

use super::{stream, Answer, Logged, Reply, State, TOKEN};
use json_patch::{PatchErrorKind, PatchOperation};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An answer with LaunchDarkly's error body.
pub(super) fn error(status: u16, code: &str, message: &str) -> Answer {
    (status, vec![], json!({"code": code, "message": message}))
}

/// The answer to one REST request, applying what it changes.
pub(super) fn respond(s: &mut State, req: &Logged) -> Answer {
    if req.header("Authorization") != Some(TOKEN) {
        return error(401, "unauthorized", "Invalid access token");
    }
    let flag = req.flag();
    if let Some(pos) = s.injections.iter().position(|i| {
        i.times > 0
            && i.method.as_deref().is_none_or(|m| m == req.method)
            && i.flag.as_deref().is_none_or(|f| f == flag)
    }) {
        let inj = &mut s.injections[pos];
        inj.times -= 1;
        let reply = inj.reply.clone();
        if inj.times == 0 {
            s.injections.remove(pos);
        }
        return match reply {
            Reply::Status(status, code, message) => error(status, code, message),
            Reply::RetryAfter(secs) => {
                let (st, _, b) = error(429, "rate_limited", "Rate limited");
                (st, vec![("Retry-After".into(), secs.to_string())], b)
            }
            Reply::RetryAfterDate(secs) => {
                let at = SystemTime::now() + Duration::from_secs(secs);
                let (st, _, b) = error(429, "rate_limited", "Rate limited");
                (st, vec![("Retry-After".into(), httpdate::fmt_http_date(at))], b)
            }
            Reply::SlowError(after) => {
                s.slow = after;
                error(500, "internal", "struggling")
            }
            Reply::ResetIn(ms) => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
                let (st, _, b) = error(429, "rate_limited", "Rate limited");
                (st, vec![("X-Ratelimit-Reset".into(), (now + ms).to_string())], b)
            }
            Reply::NotApplied => match s.flags.get(&(project_of(&req.path), flag.clone())) {
                Some(stored) => (200, vec![], stored.clone()),
                None => error(404, "not_found", "Unknown resource identifier"),
            },
            Reply::Redirect(status) => {
                let location = format!("{}?env=production", req.path.split('?').next().unwrap_or(""));
                (status, vec![("Location".into(), location)], json!({}))
            }
        };
    }
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ["api", "v2", "flags", project, key] = parts[..] else {
        return error(404, "not_found", "Unknown route");
    };
    let id = (project.to_owned(), key.to_owned());
    let Some(stored) = s.flags.get(&id).cloned() else {
        return error(404, "not_found", "Unknown resource identifier");
    };
    match req.method.as_str() {
        "GET" => {
            let mut flag = stored;
            if let Some(env) = query.split('&').find_map(|kv| kv.strip_prefix("env=")) {
                let only = flag["environments"].get(env).cloned();
                flag["environments"] = match only {
                    Some(e) => json!({ env: e }),
                    None => json!({}),
                };
            }
            (200, vec![], flag)
        }
        "PATCH" => {
            let stored = match s.race.iter().position(|f| *f == flag) {
                Some(pos) => {
                    s.race.remove(pos);
                    let mut raced = stored;
                    for (_, e) in raced["environments"].as_object_mut().unwrap().iter_mut() {
                        e["on"] = json!(true);
                        e["version"] = json!(e["version"].as_u64().unwrap() + 1);
                    }
                    s.flags.insert(id.clone(), raced.clone());
                    raced
                }
                None => stored,
            };
            if req
                .header("Content-Type")
                .is_some_and(|c| c.contains("semanticpatch"))
            {
                return error(
                    400,
                    "invalid_request",
                    "semantic patch is not supported by this fake",
                );
            }
            let ops = match req.json() {
                Value::Array(ops) => ops,
                Value::Object(mut o) => match o.remove("patch") {
                    Some(Value::Array(ops)) => ops,
                    _ => {
                        return error(
                            400,
                            "invalid_request",
                            "body must be a JSON patch or {comment, patch}",
                        )
                    }
                },
                _ => return error(400, "invalid_request", "body must be JSON"),
            };
            let mut flag = stored.clone();
            if let Err(answer) = apply_patch(&mut flag, &ops, s.test_failure_status) {
                return answer;
            }
            if flag != stored {
                bump_versions(&mut flag, &stored);
                s.flags.insert(id, flag.clone());
                stream::changed(s, project, &stored, &flag);
            }
            (200, vec![], flag)
        }
        _ => error(405, "method_not_allowed", "Method not allowed"),
    }
}

/// The project in a `/api/v2/flags/{project}/{flag}` path.
fn project_of(path: &str) -> String {
    let path = path.split('?').next().unwrap_or("");
    path.trim_start_matches('/')
        .split('/')
        .nth(3)
        .unwrap_or("")
        .to_owned()
}

/// Applies JSON Patch `ops` to `flag` with RFC 6902 semantics (all six operations, all or
/// nothing), or says what LaunchDarkly answers instead: a failed `test` (its path missing
/// included) gets `test_failure_status`, any other bad operation or path 400.
fn apply_patch(flag: &mut Value, ops: &[Value], test_failure_status: u16) -> Result<(), Answer> {
    let patch = ops
        .iter()
        .map(|op| {
            serde_json::from_value::<PatchOperation>(op.clone()).map_err(|e| {
                let name = op["op"].as_str().unwrap_or("");
                match name {
                    "test" | "replace" | "add" | "remove" | "move" | "copy" => {
                        error(400, "invalid_request", &format!("{name}: {e}"))
                    }
                    other => error(400, "invalid_request", &format!("unsupported op {other:?}")),
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    json_patch::patch(flag, &patch).map_err(|e| {
        let path = e.path.as_str();
        match (&patch[e.operation], e.kind) {
            (PatchOperation::Test(_), _) => {
                let code = match test_failure_status {
                    409 => "optimistic_locking_error",
                    _ => "invalid_request",
                };
                let message = format!("Test operation failed for path {path}");
                error(test_failure_status, code, &message)
            }
            (PatchOperation::Move(op), PatchErrorKind::InvalidFromPointer) => {
                error(400, "invalid_request", &format!("move: no such path {}", op.from))
            }
            (PatchOperation::Copy(op), PatchErrorKind::InvalidFromPointer) => {
                error(400, "invalid_request", &format!("copy: no such path {}", op.from))
            }
            (op, PatchErrorKind::InvalidPointer) => {
                let name = op_name(op);
                error(400, "invalid_request", &format!("{name}: no such path {path}"))
            }
            (op, kind) => {
                let name = op_name(op);
                error(400, "invalid_request", &format!("{name} {path}: {kind}"))
            }
        }
    })
}

fn op_name(op: &PatchOperation) -> &'static str {
    match op {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    }
}

/// After a patch changed `flag`: each environment that differs from `stored` gets the next
/// version (whatever the patch wrote there), and so does the flag's `_version`. An environment
/// the patch added keeps what it was given.
fn bump_versions(flag: &mut Value, stored: &Value) {
    if let Some(envs) = flag["environments"].as_object_mut() {
        for (name, env) in envs.iter_mut() {
            let before = &stored["environments"][name];
            if let Some(v) = before["version"].as_u64().filter(|_| env != before) {
                env["version"] = json!(v + 1);
            }
        }
    }
    flag["_version"] = json!(stored["_version"].as_u64().unwrap_or(0) + 1);
}

#[cfg(test)]
mod tests {
    use super::super::{FakeLd, TOKEN};
    use serde_json::{json, Value};
    use std::io::{Read, Write};

    /// One `PATCH` of flag `f` with `body`, on a connection of its own: (status, JSON body).
    fn patch(ld: &FakeLd, body: &Value) -> (u16, Value) {
        let body = body.to_string();
        let mut conn = std::net::TcpStream::connect(ld.addr).unwrap();
        write!(
            conn,
            "PATCH /api/v2/flags/default/f HTTP/1.1\r\nAuthorization: {TOKEN}\r\n\
             Content-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(body).unwrap())
    }

    fn fake() -> FakeLd {
        let ld = FakeLd::start();
        let variations = [json!("a"), json!("b")];
        ld.add_flag("default", "f", &variations, "production", true, 1, 0, 7);
        ld.add_flag("default", "f", &variations, "staging", true, 1, 0, 3);
        ld
    }

    #[test]
    fn every_rfc_6902_operation_applies_and_bumps_only_the_changed_environment() {
        let ld = fake();
        let (status, flag) = patch(
            &ld,
            &json!({"comment": "c", "patch": [
                {"op": "test", "path": "/environments/production/version", "value": 7},
                {"op": "copy", "from": "/environments/production/fallthrough", "path": "/environments/production/saved"},
                {"op": "move", "from": "/environments/production/saved", "path": "/environments/production/moved"},
                {"op": "add", "path": "/environments/production/rules/0", "value": {"id": "r"}},
                {"op": "add", "path": "/tags/-", "value": "t"},
                {"op": "remove", "path": "/environments/production/moved"},
                {"op": "replace", "path": "/environments/production/on", "value": false},
            ]}),
        );
        assert_eq!(status, 200, "{flag}");
        let prod = ld.env("default", "f", "production");
        assert_eq!(prod["on"], json!(false));
        assert_eq!(prod["rules"], json!([{"id": "r"}]));
        assert!(
            prod.get("saved").is_none() && prod.get("moved").is_none(),
            "{prod}"
        );
        assert_eq!(prod["version"], json!(8));
        assert_eq!(ld.env("default", "f", "staging")["version"], json!(3));
        assert_eq!(
            (flag["tags"].clone(), flag["_version"].clone()),
            (json!(["t"]), json!(2))
        );
    }

    #[test]
    fn a_failed_test_or_a_bad_path_changes_nothing() {
        let ld = fake();
        let before = ld.env("default", "f", "production");
        let off = json!({"op": "replace", "path": "/environments/production/on", "value": false});
        let cases = [
            (
                json!({"op": "test", "path": "/environments/production/version", "value": 6}),
                400,
                "Test operation failed for path /environments/production/version",
            ),
            (
                json!({"op": "test", "path": "/environments/nowhere/version", "value": 6}),
                400,
                "Test operation failed for path /environments/nowhere/version",
            ),
            (
                json!({"op": "replace", "path": "/environments/nowhere/on", "value": true}),
                400,
                "replace: no such path /environments/nowhere/on",
            ),
            (
                json!({"op": "remove", "path": "/environments/production/nothing"}),
                400,
                "remove: no such path /environments/production/nothing",
            ),
            (
                json!({"op": "move", "from": "/nothing", "path": "/x"}),
                400,
                "move: no such path /nothing",
            ),
            (
                json!({"op": "frobnicate", "path": "/x"}),
                400,
                "unsupported op \"frobnicate\"",
            ),
        ];
        for (bad, status, message) in cases {
            // The bad operation comes last: what came before it is undone.
            let answer = patch(&ld, &json!([off, bad]));
            assert_eq!(
                (answer.0, answer.1["message"].as_str()),
                (status, Some(message)),
                "{bad}"
            );
            assert_eq!(answer.1["code"], json!("invalid_request"), "{bad}");
            assert_eq!(ld.env("default", "f", "production"), before, "{bad}");
        }
        ld.set_test_failure_status(409);
        let test = json!({"op": "test", "path": "/environments/production/version", "value": 6});
        let (status, body) = patch(&ld, &json!([test]));
        assert_eq!(
            (status, body["code"].clone()),
            (409, json!("optimistic_locking_error"))
        );
    }
}
