//! The fake's server-side streaming endpoint, `GET /all`, as the Relay Proxy and server SDKs use
//! it: authorized by an environment's SDK key, it answers `text/event-stream` with one `put` of
//! that environment's flags (in the SDK's flag format, not the REST API's) and no segments, then
//! a `patch` for every later change to one of its flags, and a comment line every few seconds so
//! the reader's idle timeout never fires. Events are the SSE framing of the Go SDK's decoder:
//! `event:` and `data:` lines, then a blank line.

use super::{http, Logged, State};
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often an idle stream gets a comment line.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// One open stream: which environment it follows, and where its events go.
pub(super) struct Subscriber {
    project: String,
    environment: String,
    events: mpsc::Sender<String>,
}

impl Subscriber {
    pub(super) fn is(&self, project: &str, environment: &str) -> bool {
        self.project == project && self.environment == environment
    }
}

/// `flag` (the REST API's shape) in `environment` as the SDKs and Relay store it.
fn sdk_flag(flag: &Value, environment: &str) -> Option<Value> {
    let env = flag["environments"].get(environment)?;
    let variations: Vec<Value> = flag["variations"]
        .as_array()?
        .iter()
        .map(|v| v["value"].clone())
        .collect();
    Some(json!({
        "key": flag["key"], "version": env["version"], "on": env["on"],
        "prerequisites": env["prerequisites"], "targets": env["targets"],
        "contextTargets": env["contextTargets"], "rules": env["rules"],
        "fallthrough": env["fallthrough"], "offVariation": env["offVariation"],
        "variations": variations, "salt": env["salt"], "clientSide": false,
        "trackEvents": env["trackEvents"], "trackEventsFallthrough": env["trackEventsFallthrough"],
        "debugEventsUntilDate": null, "deleted": false,
    }))
}

fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The `put` event of `project`/`environment`: every flag it has, no segments.
fn put(s: &State, project: &str, environment: &str) -> String {
    let flags: serde_json::Map<String, Value> = s
        .flags
        .iter()
        .filter(|((p, _), _)| p == project)
        .filter_map(|((_, key), flag)| Some((key.clone(), sdk_flag(flag, environment)?)))
        .collect();
    let data = json!({"path": "/", "data": {"flags": flags, "segments": {}}});
    event("put", &data)
}

/// Streams a `patch` of every environment of `project`'s flag whose state differs between
/// `before` and `after` (the REST API's shape; `Null` when the flag is new) to its subscribers.
pub(super) fn changed(s: &mut State, project: &str, before: &Value, after: &Value) {
    let Some(envs) = after["environments"].as_object() else {
        return;
    };
    for (environment, now) in envs {
        if before["environments"].get(environment) == Some(now) && before["variations"] == after["variations"]
        {
            continue;
        }
        let Some(flag) = sdk_flag(after, environment) else {
            continue;
        };
        let path = format!("/flags/{}", flag["key"].as_str().unwrap_or(""));
        let text = event("patch", &json!({"path": path, "data": flag}));
        s.streams
            .retain(|sub| !sub.is(project, environment) || sub.events.send(text.clone()).is_ok());
    }
}

/// Answers `GET /all` on `conn`: 401 for an unknown SDK key, else the stream until the client
/// goes away or the fake goes down.
pub(super) fn serve(mut conn: TcpStream, req: Logged, state: &Mutex<State>, stop: &AtomicBool) {
    let (rx, first) = {
        let mut s = state.lock().unwrap();
        let env = req
            .header("Authorization")
            .and_then(|k| s.sdk_keys.get(k))
            .cloned();
        let status = if env.is_some() { 200 } else { 401 };
        s.log.push(Logged {
            status: Some(status),
            ..req
        });
        let Some((project, environment)) = env else {
            drop(s);
            let body = r#"{"code":"unauthorized","message":"unknown SDK key"}"#;
            let _ = http::write_answer(&mut conn, 401, &[], body);
            return;
        };
        // The put and the registration happen under one lock: no change falls between them.
        let (tx, rx) = mpsc::channel();
        let first = put(&s, &project, &environment);
        s.streams.push(Subscriber {
            project,
            environment,
            events: tx,
        });
        (rx, first)
    };
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n";
    if conn
        .write_all(head.as_bytes())
        .and_then(|_| conn.write_all(first.as_bytes()))
        .is_err()
    {
        return;
    }
    let mut idle = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let text = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(text) => text,
            Err(mpsc::RecvTimeoutError::Timeout) if idle.elapsed() >= HEARTBEAT => ":\n".to_owned(),
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        idle = Instant::now();
        if conn.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
    let _ = conn.shutdown(std::net::Shutdown::Both);
}
