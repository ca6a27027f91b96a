//! A stateful fake of LaunchDarkly, in process, on a free loopback port: the REST API
//! (getFeatureFlag, patchFeatureFlag; `rest.rs`), the server-side streaming endpoint the Relay
//! Proxy and server SDKs connect to (`GET /all`; `stream.rs`), and the event endpoints they post
//! to (`/bulk`, `/diagnostic`: 202). `http.rs` is the minimal HTTP/1.1 server under them.
//!
//! It keeps flags with per-environment versions and variations with `_id`s, answers GET in the
//! `FeatureFlag` shape of the OpenAPI spec, applies JSON Patch from a bare array or
//! `{"comment", "patch"}` with the `json-patch` crate (RFC 6902: every operation, all or nothing),
//! bumps the versions of the environments a patch changed, records every request (method, path,
//! headers, body), and can be told to answer 429 / 5xx / 409 / 405 / 400 for a while, to answer a
//! PATCH with success without applying it (200 with the old flag, or a 303 redirect to a GET), to
//! let someone "edit in the UI", or to stop answering after N requests (a sync killed mid-way). It
//! can be prepared on a port before it listens there ([`FakeLd::down`], [`FakeLd::come_up`]): a
//! LaunchDarkly that refuses connections first, then answers; [`FakeLd::go_down`] stops it again
//! (open streams and connections are cut), so an outage and LaunchDarkly coming back can be
//! staged. Each environment has an SDK key ([`FakeLd::sdk_key`]); a stream for it gets a `put` of
//! the environment's flags in the SDK's format, then a `patch` per flag change made through the
//! REST API (or [`FakeLd::edit_in_ui`]). Also used by benches/sync.rs, which includes this support
//! code through `#[path]`.

#![allow(dead_code)]

mod http;
mod rest;
mod stream;

use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// SDK key -> (project, environment).
    sdk_keys: BTreeMap<String, (String, String)>,
    /// Open `/all` streams.
    streams: Vec<stream::Subscriber>,
    /// Every open connection (by a number of its own), cut by [`FakeLd::go_down`].
    conns: BTreeMap<u64, TcpStream>,
    accepted: u64,
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

    /// Starts answering (again) on the port given to [`FakeLd::down`].
    pub fn come_up(&mut self) {
        assert!(self.accept.is_none(), "the fake LaunchDarkly is already up");
        let listener = TcpListener::bind(self.addr)
            .unwrap_or_else(|e| panic!("starting the fake LaunchDarkly on {}: {e}", self.addr));
        self.listen(listener);
    }

    /// Stops answering: the port refuses connections, and every open connection and stream is
    /// cut, as when LaunchDarkly becomes unreachable. Flags and the request log are kept.
    pub fn go_down(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = TcpStream::connect(self.addr);
            let _ = t.join();
        }
        let mut state = self.lock();
        for (_, conn) in std::mem::take(&mut state.conns) {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
        state.streams.clear();
    }

    /// Whether it is answering now.
    pub fn is_up(&self) -> bool {
        self.accept.is_some()
    }

    fn listen(&mut self, listener: TcpListener) {
        self.stop = Arc::new(AtomicBool::new(false));
        let (state, stop) = (self.state.clone(), self.stop.clone());
        self.accept = Some(std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let id = {
                    let mut s = state.lock().unwrap();
                    s.accepted += 1;
                    if let Ok(clone) = conn.try_clone() {
                        let id = s.accepted;
                        s.conns.insert(id, clone);
                    }
                    s.accepted
                };
                let (state, stop) = (state.clone(), stop.clone());
                std::thread::spawn(move || {
                    http::serve(conn, &state, &stop);
                    state.lock().unwrap().conns.remove(&id);
                });
            }
        }));
    }

    /// The SDK key of `project`/`environment` (made up on first use): what the Relay Proxy's
    /// `LD_ENV_<name>` and an SDK's configuration hold.
    pub fn sdk_key(&self, project: &str, environment: &str) -> String {
        let key = format!("sdk-{project}-{environment}-0000-do-not-print");
        let env = (project.to_owned(), environment.to_owned());
        self.lock().sdk_keys.insert(key.clone(), env);
        key
    }

    /// How many `/all` streams of `project`/`environment` are open now.
    pub fn streams(&self, project: &str, environment: &str) -> usize {
        let s = self.lock();
        s.streams
            .iter()
            .filter(|sub| sub.is(project, environment))
            .count()
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
        let id = (project.to_owned(), key.to_owned());
        let before = state.flags.get(&id).cloned().unwrap_or(Value::Null);
        let flag = state
            .flags
            .entry(id)
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
        let flag = flag.clone();
        stream::changed(&mut state, project, &before, &flag);
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
        let before = flag.clone();
        let e = &mut flag["environments"][env];
        edit(e);
        e["version"] = json!(e["version"].as_u64().unwrap() + 1);
        flag["_version"] = json!(flag["_version"].as_u64().unwrap() + 1);
        let after = flag.clone();
        stream::changed(&mut state, project, &before, &after);
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
        self.go_down();
    }
}
