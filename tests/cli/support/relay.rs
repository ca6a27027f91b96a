//! The real LaunchDarkly Relay Proxy (ld-relay v8, built by scripts/ld_relay.sh into
//! target/tools/) on a free loopback port, configured the way operators configure it in
//! containers: environment variables only (`--from-env`), pointed at the fake LaunchDarkly for
//! streaming, polling and events, and at a Redis or DynamoDB (moto) store. Plus the real
//! LaunchDarkly Python SDK in proxy mode (tests/conformance/proxy_sdk.py), connected to a Relay
//! the way services are: [`ProxySdk`].
//!
//! A Relay binary that is missing fails the test with why (the reason scripts/ld_relay.sh wrote
//! when it could not build it) and how to build it: nothing here skips. Processes are killed on
//! drop.

use super::moto::AWS_ENV;
use super::{free_port, require, wait_for};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

/// The Relay version scripts/ld_relay.sh builds.
pub const VERSION: &str = "v8.10.1";

/// The Relay binary, or a failed test saying why there is none.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("RELAYCTL_LD_RELAY").map(PathBuf::from) {
        if p.is_file() {
            return p;
        }
    }
    let tools = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools");
    let built = tools.join(format!("ld-relay-{VERSION}/ld-relay"));
    if built.is_file() {
        return built;
    }
    if let Ok(why) = std::fs::read_to_string(tools.join("ld-relay-unavailable.txt")) {
        panic!(
            "the LaunchDarkly Relay Proxy {VERSION} is needed by this test and could not be built: {}",
            why.trim()
        );
    }
    panic!(
        "the LaunchDarkly Relay Proxy {VERSION} is needed by this test and is not built: run scripts/test.sh \
         (or `bash scripts/ld_relay.sh`), which builds it into target/tools/ with `go install \
         github.com/launchdarkly/ld-relay/v8@{VERSION}`"
    );
}

/// Where Relay keeps flags.
#[derive(Clone)]
pub enum Store {
    /// A Redis URL.
    Redis(String),
    /// A DynamoDB table on moto's endpoint.
    DynamoDb { table: String, endpoint: String },
}

/// One environment Relay serves: `LD_ENV_<name>` (its SDK key) and `LD_PREFIX_<name>`.
#[derive(Clone)]
pub struct Env {
    pub name: String,
    pub sdk_key: String,
    pub prefix: Option<String>,
}

/// How Relay is configured, beyond its environments and store.
#[derive(Clone)]
pub struct Options {
    /// `CACHE_TTL` (a Go duration).
    pub cache_ttl: String,
    /// `IGNORE_CONNECTION_ERRORS`.
    pub ignore_connection_errors: bool,
    /// `INIT_TIMEOUT`.
    pub init_timeout: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            cache_ttl: "30s".into(),
            ignore_connection_errors: true,
            init_timeout: "2s".into(),
        }
    }
}

/// A running Relay; killed on drop.
pub struct Relay {
    pub port: u16,
    vars: Vec<(String, String)>,
    child: Option<Child>,
    log: tempfile::NamedTempFile,
}

impl Relay {
    /// Starts Relay for `envs` on `store`, with LaunchDarkly at `ld_url` (streaming, base and
    /// events), and waits (30 s at most) until it answers `/status`.
    pub fn start(ld_url: &str, store: &Store, envs: &[Env], options: &Options) -> Relay {
        let port = free_port();
        let mut vars: Vec<(String, String)> = vec![
            ("PORT".into(), port.to_string()),
            ("STREAM_URI".into(), ld_url.into()),
            ("BASE_URI".into(), ld_url.into()),
            ("EVENTS_HOST".into(), ld_url.into()),
            ("CACHE_TTL".into(), options.cache_ttl.clone()),
            ("INIT_TIMEOUT".into(), options.init_timeout.clone()),
            (
                "IGNORE_CONNECTION_ERRORS".into(),
                options.ignore_connection_errors.to_string(),
            ),
            ("LOG_LEVEL".into(), "debug".into()),
        ];
        match store {
            Store::Redis(url) => {
                vars.push(("USE_REDIS".into(), "true".into()));
                vars.push(("REDIS_URL".into(), url.clone()));
            }
            Store::DynamoDb { table, endpoint } => {
                vars.push(("USE_DYNAMODB".into(), "true".into()));
                vars.push(("DYNAMODB_TABLE".into(), table.clone()));
                vars.push(("DYNAMODB_URL".into(), endpoint.clone()));
                vars.extend(AWS_ENV.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            }
        }
        for e in envs {
            vars.push((format!("LD_ENV_{}", e.name), e.sdk_key.clone()));
            if let Some(p) = &e.prefix {
                vars.push((format!("LD_PREFIX_{}", e.name), p.clone()));
            }
        }
        let mut relay = Relay {
            port,
            vars,
            child: None,
            log: tempfile::NamedTempFile::new().unwrap(),
        };
        relay.restart();
        relay
    }

    /// Starts Relay (again, after [`Relay::kill`]) on the same port with the same settings.
    pub fn restart(&mut self) {
        self.kill();
        let path = self.log.path().to_owned();
        let log = || std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        let child = Command::new(binary())
            .arg("--from-env")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log())
            .stderr(log())
            .spawn()
            .expect("starting the LaunchDarkly Relay Proxy");
        self.child = Some(child);
        let url = self.url();
        wait_for(
            &format!("the Relay Proxy to answer /status at {url}"),
            Duration::from_secs(30),
            || get(self.port, "/status", None).is_some_and(|(s, _)| s == 200),
        );
    }

    /// Kills Relay (SIGKILL): the port refuses connections, and connected SDKs lose their stream.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Relay's `/status` document.
    pub fn status(&self) -> Value {
        let (_, body) = get(self.port, "/status", None).expect("Relay answers /status");
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    /// `GET /sdk/flags/{flag}` with `sdk_key`: the status, and the flag when 200.
    pub fn flag(&self, sdk_key: &str, flag: &str) -> (u16, Option<Value>) {
        let (status, body) = get(self.port, &format!("/sdk/flags/{flag}"), Some(sdk_key))
            .expect("Relay answers /sdk/flags/{key}");
        (status, serde_json::from_str(&body).ok())
    }

    /// `GET /sdk/flags` with `sdk_key`: the status and the body as JSON (`{key: flag}` on 200).
    pub fn flags(&self, sdk_key: &str) -> (u16, Value) {
        let (status, body) = get(self.port, "/sdk/flags", Some(sdk_key)).expect("Relay answers /sdk/flags");
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// Waits (`timeout` at most) until Relay serves `flag` with `sdk_key` such that `check`
    /// accepts it (`None`: no flag), returning it.
    pub fn wait_flag(
        &self,
        sdk_key: &str,
        flag: &str,
        timeout: Duration,
        what: &str,
        check: impl Fn(Option<&Value>) -> bool,
    ) -> Option<Value> {
        let mut last = None;
        wait_for(&format!("Relay to serve {flag} {what}"), timeout, || {
            let (status, f) = self.flag(sdk_key, flag);
            last = f.filter(|_| status == 200);
            matches!(status, 200 | 404) && check(last.as_ref())
        });
        last
    }

    /// Everything Relay logged (stdout and stderr), for messages and log checks.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One GET on 127.0.0.1:`port` (with `Authorization: <key>`), on a connection of its own, 5 s
/// at most: the status and the body; `None` when nothing answers.
pub fn get(port: u16, path: &str, key: Option<&str>) -> Option<(u16, String)> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = key.map_or(String::new(), |k| format!("Authorization: {k}\r\n"));
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut reader = BufReader::new(conn);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).ok()?;
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let mut chunked = false;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 || h.trim_end().is_empty() {
            break;
        }
        let h = h.to_ascii_lowercase();
        chunked |= h.starts_with("transfer-encoding:") && h.contains("chunked");
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        reader.read_to_end(&mut body).ok()?;
    }
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The real LaunchDarkly Python server SDK in proxy mode: streaming from a Relay (base and
/// stream URIs at it), events off. It stays connected until dropped, so a test can tell an SDK
/// that was connected before a change from one that connects after it.
pub struct ProxySdk {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl ProxySdk {
    /// Connects to the Relay at `relay_url` with `sdk_key`, waiting (10 s at most) for its
    /// first data.
    pub fn connect(relay_url: &str, sdk_key: &str) -> ProxySdk {
        let python = require("python3", "apt-get install -y python3 python3-pip");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance/proxy_sdk.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(["--relay", relay_url])
            .env("LD_SDK_KEY", sdk_key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting tests/conformance/proxy_sdk.py");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut ready = String::new();
        stdout.read_line(&mut ready).unwrap();
        assert!(
            ready.starts_with("ready initialized=True"),
            "the proxy-mode SDK did not initialize from Relay {relay_url}: {ready:?} (a missing SDK: \
             pip install launchdarkly-server-sdk)"
        );
        ProxySdk { child, stdin, stdout }
    }

    /// Evaluates `flag` for the user `ctx-1`: `{"value", "variation_index", "reason"}`.
    pub fn eval(&mut self, flag: &str) -> Value {
        writeln!(self.stdin, "eval {flag}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("proxy_sdk.py answered {line:?}: {e}"))
    }

    /// The value `flag` evaluates to.
    pub fn value(&mut self, flag: &str) -> Value {
        self.eval(flag)["value"].clone()
    }
}

impl Drop for ProxySdk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
