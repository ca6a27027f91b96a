//! A stateful fake of the LaunchDarkly REST API (getFeatureFlag, patchFeatureFlag), in process,
//! on a free loopback port.
//!
//! It keeps flags with per-environment versions and variations with `_id`s, answers GET in the
//! `FeatureFlag` shape of the OpenAPI spec, applies JSON Patch from a bare array or
//! `{"comment", "patch"}` with the `json-patch` crate (RFC 6902: every operation, all or nothing),
//! bumps the versions of the environments a patch changed, records every request (method, path,
//! headers, body), and can be told to answer 429 / 5xx / 409 / 405 / 400 for a while, to answer a
//! PATCH with success without applying it (200 with the old flag, or a 303 redirect to a GET), to
//! let someone "edit in the UI", or to stop answering after N requests (a sync killed mid-way). It
//! can be prepared on a port before it listens there ([`FakeLd::down`], [`FakeLd::come_up`]): a
//! LaunchDarkly that refuses connections first, then answers. Also used by benches/sync.rs, which
//! includes this support code through `#[path]`.

#![allow(dead_code)]

use json_patch::{PatchErrorKind, PatchOperation};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A status, extra headers and a JSON body.
type Answer = (u16, Vec<(String, String)>, Value);

/// The token the fake accepts in `Authorization`.
pub const TOKEN: &str = "api-0123-test-token-do-not-print";

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    /// Path and query, e.g. `/api/v2/flags/default/f?env=production`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The status answered; `None` while held unanswered.
    pub status: Option<u16>,
}

impl Logged {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The flag key in the path.
    pub fn flag(&self) -> String {
        let path = self.path.split('?').next().unwrap_or("");
        path.rsplit('/').next().unwrap_or("").to_owned()
    }
}

/// An answer to inject instead of the normal one.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This status with an LD error body `{"code", "message"}`.
    Status(u16, &'static str, &'static str),
    /// 429 with `Retry-After: <seconds>`.
    RetryAfter(u64),
    /// 429 with `Retry-After: <HTTP date this many seconds from now>`.
    RetryAfterDate(u64),
    /// 500, after this long (a LaunchDarkly struggling to answer).
    SlowError(Duration),
    /// 429 with `X-Ratelimit-Reset` = now + this many milliseconds (epoch ms).
    ResetIn(u64),
    /// 200 with the flag as it is, changing nothing: a success that was not applied.
    NotApplied,
    /// This 3xx status with `Location` pointing at a GET of the same flag.
    Redirect(u16),
}

struct Injection {
    method: Option<String>,
    flag: Option<String>,
    times: usize,
    reply: Reply,
}

#[derive(Default)]
struct State {
    /// (project, flag key) -> the flag in the API's `FeatureFlag` shape, all environments.
    flags: BTreeMap<(String, String), Value>,
    log: Vec<Logged>,
    injections: VecDeque<Injection>,
    /// Answer only this many requests; hold every later one unanswered.
    answer_only: Option<usize>,
    /// Apply this many more PATCHes, then hold their answers.
    hold_applied: usize,
    /// How long the answer being made waits before it goes out (a [`Reply::SlowError`]).
    slow: Duration,
    answered: usize,
    /// Flags someone edits in the UI just before the next PATCH for them is processed.
    race: Vec<String>,
    /// The status of a failed JSON Patch `test` op.
    test_failure_status: u16,
    /// How long each answer takes (slept outside the lock, so requests overlap).
    delay: Duration,
    /// Requests being answered now, per flag key, and the most seen at once.
    in_flight: BTreeMap<String, usize>,
    max_in_flight_per_flag: usize,
    total_in_flight: usize,
    max_in_flight: usize,
}

/// The fake server; stops when dropped.
pub struct FakeLd {
    pub url: String,
    addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl FakeLd {
    /// Starts the fake on a free port of 127.0.0.1: a minimal HTTP/1.1 server (keep-alive,
    /// Content-Length bodies), one thread per connection.
    pub fn start() -> FakeLd {
        let listener = TcpListener::bind("127.0.0.1:0").expect("starting the fake LaunchDarkly");
        let mut ld = FakeLd::down(listener.local_addr().unwrap().port());
        ld.listen(listener);
        ld
    }

    /// The fake for 127.0.0.1:`port`, not listening yet: connections are refused until
    /// [`FakeLd::come_up`]. Flags added meanwhile are there from its first answer.
    pub fn down(port: u16) -> FakeLd {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        FakeLd {
            url: format!("http://{addr}"),
            addr,
            state: Arc::new(Mutex::new(State {
                test_failure_status: 400,
                ..State::default()
            })),
            stop: Arc::new(AtomicBool::new(false)),
            accept: None,
        }
    }

    /// Starts answering on the port given to [`FakeLd::down`].
    pub fn come_up(&mut self) {
        assert!(self.accept.is_none(), "the fake LaunchDarkly is already up");
        let listener = TcpListener::bind(self.addr)
            .unwrap_or_else(|e| panic!("starting the fake LaunchDarkly on {}: {e}", self.addr));
        self.listen(listener);
    }

    fn listen(&mut self, listener: TcpListener) {
        let (state, stop) = (self.state.clone(), self.stop.clone());
        self.accept = Some(std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (state, stop) = (state.clone(), stop.clone());
                std::thread::spawn(move || serve(conn, &state, &stop));
            }
        }));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Adds flag `key` in `project` with `variations` (values) and one environment `env` at
    /// `version`, serving `off` when off and `fallthrough` by default.
    #[allow(clippy::too_many_arguments)]
    pub fn add_flag(
        &self,
        project: &str,
        key: &str,
        variations: &[Value],
        env: &str,
        on: bool,
        off: usize,
        fallthrough: usize,
        version: u64,
    ) {
        let mut state = self.lock();
        let flag = state
            .flags
            .entry((project.into(), key.into()))
            .or_insert_with(|| {
                json!({
                    "key": key, "name": key, "kind": if variations.len() == 2 && variations.iter().all(Value::is_boolean) { "boolean" } else { "multivariate" },
                    "_version": 1, "creationDate": 1_700_000_000_000u64, "temporary": false, "archived": false,
                    "tags": [], "maintainerId": "m-1",
                    "variations": variations.iter().enumerate().map(|(i, v)| json!({"_id": format!("{key}-var-{i}"), "value": v})).collect::<Vec<_>>(),
                    "environments": {},
                    "_links": {"self": {"href": format!("/api/v2/flags/{project}/{key}"), "type": "application/json"}},
                })
            });
        flag["environments"][env] = json!({
            "on": on, "archived": false, "salt": format!("salt-{key}"), "sel": "sel", "lastModified": 1_700_000_000_000u64,
            "version": version, "targets": [], "contextTargets": [], "rules": [], "prerequisites": [],
            "fallthrough": {"variation": fallthrough}, "offVariation": off,
            "trackEvents": false, "trackEventsFallthrough": false,
            "_site": {"href": format!("/default/{env}/features/{key}"), "type": "text/html"},
            "_environmentName": env, "_summary": {"variations": {}, "prerequisites": 0},
        });
    }

    /// The flag's environment `env` as the fake holds it.
    pub fn env(&self, project: &str, key: &str, env: &str) -> Value {
        self.lock().flags[&(project.to_owned(), key.to_owned())]["environments"][env].clone()
    }

    /// Changes the flag as someone in the LaunchDarkly UI would: applies `edit` to environment
    /// `env` and bumps its version.
    pub fn edit_in_ui(&self, project: &str, key: &str, env: &str, edit: impl FnOnce(&mut Value)) {
        let mut state = self.lock();
        let flag = state
            .flags
            .get_mut(&(project.to_owned(), key.to_owned()))
            .unwrap();
        let e = &mut flag["environments"][env];
        edit(e);
        e["version"] = json!(e["version"].as_u64().unwrap() + 1);
        flag["_version"] = json!(flag["_version"].as_u64().unwrap() + 1);
    }

    /// The next `times` requests (of `method`, for `flag`, when given) get `reply` instead.
    pub fn inject(&self, method: Option<&str>, flag: Option<&str>, times: usize, reply: Reply) {
        self.lock().injections.push_back(Injection {
            method: method.map(str::to_owned),
            flag: flag.map(str::to_owned),
            times,
            reply,
        });
    }

    /// Answer `n` more requests, then hold every later one unanswered (like a process that died).
    pub fn answer_only(&self, n: usize) {
        let mut state = self.lock();
        state.answer_only = Some(state.answered + n);
    }

    /// Someone edits `flag` in the UI (turns it on in every environment, bumping versions) just
    /// before the next PATCH for it lands: the PATCH's precondition must make it fail.
    pub fn race_next_patch(&self, flag: &str) {
        self.lock().race.push(flag.to_owned());
    }

    /// The next `n` PATCHes that change a flag are applied and never answered (until the fake
    /// stops): the client gets no answer, LaunchDarkly has the change.
    pub fn hold_applied_patches(&self, n: usize) {
        self.lock().hold_applied = n;
    }

    /// Answer everything again.
    pub fn answer_all(&self) {
        self.lock().answer_only = None;
    }

    /// The status a failed `test` op gets (400 by default).
    pub fn set_test_failure_status(&self, status: u16) {
        self.lock().test_failure_status = status;
    }

    /// Each answer takes `delay` from now on, so concurrent requests overlap measurably.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// The most requests answered at once for one flag key, and in total (with a delay set).
    pub fn max_in_flight(&self) -> (usize, usize) {
        let s = self.lock();
        (s.max_in_flight_per_flag, s.max_in_flight)
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Logged> {
        self.lock().log.clone()
    }

    /// The PATCH requests received, in order.
    pub fn patches(&self) -> Vec<Logged> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "PATCH")
            .collect()
    }

    /// The PATCH requests that were applied (answered 200), in order.
    pub fn applied(&self) -> Vec<Logged> {
        self.patches()
            .into_iter()
            .filter(|r| r.status == Some(200))
            .collect()
    }

    /// Forgets the request log.
    pub fn clear_log(&self) {
        self.lock().log.clear();
    }
}

impl Drop for FakeLd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = TcpStream::connect(self.addr);
            let _ = t.join();
        }
    }
}

fn error(status: u16, code: &str, message: &str) -> Answer {
    (status, vec![], json!({"code": code, "message": message}))
}

/// Serves one connection's requests in order until the client closes it.
fn serve(conn: TcpStream, state: &Mutex<State>, stop: &AtomicBool) {
    let _ = conn.set_nodelay(true);
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut writer = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let logged = Logged {
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            status: None,
        };
        let close = logged
            .header("Connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let Some((status, extra, answer)) = handle(logged, state, stop) else {
            return;
        };
        let answer = answer.to_string();
        let mut head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            reason(status),
            answer.len()
        );
        for (k, v) in extra {
            head += &format!("{k}: {v}\r\n");
        }
        head += "\r\n";
        if writer
            .write_all(head.as_bytes())
            .and_then(|_| writer.write_all(answer.as_bytes()))
            .is_err()
            || close
        {
            return;
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        303 => "See Other",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Logs and answers one request; `None` when it is held unanswered until the fake stops.
fn handle(logged: Logged, state: &Mutex<State>, stop: &AtomicBool) -> Option<Answer> {
    let mut s = state.lock().unwrap();
    if s.answer_only.is_some_and(|n| s.answered >= n) {
        s.log.push(logged);
        drop(s);
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        return None;
    }
    s.answered += 1;
    let flag = logged.flag();
    let answer = respond(&mut s, &logged);
    if logged.method == "PATCH" && answer.0 == 200 && s.hold_applied > 0 {
        s.hold_applied -= 1;
        s.log.push(logged);
        drop(s);
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        return None;
    }
    s.log.push(Logged {
        status: Some(answer.0),
        ..logged
    });
    let delay = s.delay + std::mem::take(&mut s.slow);
    if !delay.is_zero() {
        let n = s.in_flight.entry(flag.clone()).or_default();
        *n += 1;
        let n = *n;
        s.max_in_flight_per_flag = s.max_in_flight_per_flag.max(n);
        s.total_in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.total_in_flight);
        drop(s);
        std::thread::sleep(delay);
        let mut s = state.lock().unwrap();
        *s.in_flight.get_mut(&flag).unwrap() -= 1;
        s.total_in_flight -= 1;
    }
    Some(answer)
}

fn respond(s: &mut State, req: &Logged) -> Answer {
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
    use super::{FakeLd, TOKEN};
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
