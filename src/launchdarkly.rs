//! The LaunchDarkly REST API client: the only file that knows its URLs, headers and JSON shapes
//! (facts §5: getFeatureFlag, patchFeatureFlag).
//!
//! It owns the transport rules every request follows: the raw token in `Authorization`,
//! `LD-API-Version`, a `User-Agent`, connect and request timeouts, waiting out 429s
//! (`Retry-After` seconds or `X-Ratelimit-Reset` epoch milliseconds), and bounded, jittered
//! retries of 5xx answers and timeouts. It decides nothing about flags: sync.rs does. It never
//! puts the token in an error or a log line.

use crate::flag::{FlagId, Serve, Variation};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The API version relayctl is written against.
pub const API_VERSION: &str = "20240415";
/// Where LaunchDarkly's API lives unless the overrides file or `LD_BASE_URL` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://app.launchdarkly.com";

/// How many times a 5xx answer, a timeout or a dropped connection is retried.
const TRANSIENT_RETRIES: u32 = 4;
/// How many 429 answers in a row are waited out before giving up.
const RATE_LIMIT_RETRIES: u32 = 10;
/// The longest wait for one 429 or one backoff step.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// One flag's state in one environment, as the API returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct LdFlag {
    /// `environments.<env>.version`.
    pub version: u64,
    pub on: bool,
    /// What the flag serves when off (`environments.<env>.offVariation`).
    pub off_variation: Serve,
    /// What the flag's default rule serves.
    pub fallthrough: Serve,
    /// The values of `variations`, in index order.
    pub variations: Vec<Value>,
}

/// A change to one flag in one environment, sent as a JSON Patch with a comment.
///
/// The patch always starts with a `test` of `/environments/<env>/version`, so a change made in
/// LaunchDarkly after the GET makes the PATCH fail instead of being overwritten.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagPatch {
    pub comment: String,
    /// The environment version the change was decided against.
    pub expect_version: u64,
    pub on: Option<bool>,
    pub off_variation: Option<usize>,
    pub fallthrough: Option<usize>,
    /// LaunchDarkly's fallthrough is a rollout or unset, so the whole `fallthrough` object is
    /// replaced rather than its `variation` member.
    pub replace_fallthrough_rule: bool,
}

impl FlagPatch {
    /// The request body (`PatchWithComment`).
    pub fn body(&self, environment: &str) -> Value {
        let env = escape_pointer(environment);
        let mut ops = vec![
            json!({"op": "test", "path": format!("/environments/{env}/version"), "value": self.expect_version}),
        ];
        if let Some(on) = self.on {
            ops.push(json!({"op": "replace", "path": format!("/environments/{env}/on"), "value": on}));
        }
        if let Some(i) = self.off_variation {
            ops.push(
                json!({"op": "replace", "path": format!("/environments/{env}/offVariation"), "value": i}),
            );
        }
        match (self.fallthrough, self.replace_fallthrough_rule) {
            (Some(i), false) => ops.push(
                json!({"op": "replace", "path": format!("/environments/{env}/fallthrough/variation"), "value": i}),
            ),
            (Some(i), true) => ops.push(
                json!({"op": "replace", "path": format!("/environments/{env}/fallthrough"), "value": {"variation": i}}),
            ),
            (None, _) => {}
        }
        json!({"comment": self.comment, "patch": ops})
    }
}

fn escape_pointer(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Why a request did not succeed, in the terms sync decides on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// 401/403: the token is missing, wrong, or lacks rights. Stop everything.
    #[error("LaunchDarkly refused the API access token from LD_API_KEY (HTTP {status}{}): it is wrong, expired, or lacks the rights to read and update flags. Set LD_API_KEY to a token with writer rights and run this again", detail(.message))]
    Auth { status: u16, message: String },
    /// 404: no such flag (or project, or environment).
    #[error("not found in LaunchDarkly")]
    NotFound,
    /// 405: the environment requires approvals.
    #[error("the environment requires approval for changes (HTTP 405){}", detail(.message))]
    ApprovalRequired { message: String },
    /// 400: invalid request, a failed `test` op, or a conflict with a scheduled change or approval.
    #[error("LaunchDarkly rejected the request (HTTP 400{}){}", code_of(.code), detail(.message))]
    Invalid { code: String, message: String },
    /// 409: optimistic locking: someone else changed the flag at the same moment.
    #[error("LaunchDarkly reported a concurrent change (HTTP 409){}", detail(.message))]
    Conflict { message: String },
    /// 5xx, timeouts or connection failures that outlasted the retries, or 429s that never ended.
    #[error("LaunchDarkly is not answering properly: {0}")]
    Unavailable(String),
    /// Anything else: an answer relayctl does not understand.
    #[error("{0}")]
    Other(String),
}

fn detail(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

fn code_of(code: &str) -> String {
    if code.is_empty() {
        String::new()
    } else {
        format!(" {code}")
    }
}

/// A LaunchDarkly REST API client. `Debug` never shows the token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `base_url` (e.g. `https://app.launchdarkly.com`) authenticating with `token`.
    pub fn new(base_url: &str, token: &str) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("relayctl/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(16)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))?;
        Ok(Client {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn flag_url(&self, id: &FlagId) -> anyhow::Result<url::Url> {
        let mut url = url::Url::parse(&self.base)
            .map_err(|e| anyhow::anyhow!("the LaunchDarkly base URL {:?} is not a URL: {e}", self.base))?;
        url.path_segments_mut()
            .map_err(|_| anyhow::anyhow!("the LaunchDarkly base URL {:?} cannot have a path", self.base))?
            .extend(["api", "v2", "flags", &id.project, &id.flag]);
        Ok(url)
    }

    /// GET `/api/v2/flags/{project}/{flag}?env={environment}`: the flag's state in its environment.
    pub async fn get_flag(&self, id: &FlagId) -> Result<LdFlag, ApiError> {
        let mut url = self.flag_url(id).map_err(|e| ApiError::Other(e.to_string()))?;
        url.query_pairs_mut().append_pair("env", &id.environment);
        let body = self.send(reqwest::Method::GET, url, None).await?;
        parse_flag(&body, &id.environment)
    }

    /// PATCH `/api/v2/flags/{project}/{flag}` with `change`; returns the flag as LD now has it.
    pub async fn patch_flag(&self, id: &FlagId, change: &FlagPatch) -> Result<LdFlag, ApiError> {
        let url = self.flag_url(id).map_err(|e| ApiError::Other(e.to_string()))?;
        let body = change.body(&id.environment).to_string();
        let answer = self.send(reqwest::Method::PATCH, url, Some(body)).await?;
        parse_flag(&answer, &id.environment)
    }

    /// Sends one request, waiting out 429s and retrying transient failures, and maps the answer.
    async fn send(
        &self,
        method: reqwest::Method,
        url: url::Url,
        body: Option<String>,
    ) -> Result<Value, ApiError> {
        let mut transient = 0;
        let mut limited = 0;
        loop {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .header("Authorization", &self.token)
                .header("LD-API-Version", API_VERSION)
                .header("Accept", "application/json");
            if let Some(b) = &body {
                req = req.header("Content-Type", "application/json").body(b.clone());
            }
            let (status, headers, text) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    match resp.text().await {
                        Ok(t) => (status, headers, t),
                        Err(e) => (0, headers, describe(e)),
                    }
                }
                Err(e) => (0, reqwest::header::HeaderMap::new(), describe(e)),
            };
            match status {
                200..=299 => {
                    return serde_json::from_str(&text).map_err(|e| {
                        ApiError::Other(format!("LaunchDarkly answered with invalid JSON: {e}"))
                    })
                }
                429 => {
                    limited += 1;
                    if limited > RATE_LIMIT_RETRIES {
                        return Err(ApiError::Unavailable(format!(
                            "still rate limited (HTTP 429) after {RATE_LIMIT_RETRIES} waits"
                        )));
                    }
                    tokio::time::sleep(rate_limit_wait(&headers)).await;
                }
                0 | 500..=599 => {
                    transient += 1;
                    if transient > TRANSIENT_RETRIES {
                        let what = if status == 0 {
                            text
                        } else {
                            format!("HTTP {status}{}", detail(&error_message(&text).1))
                        };
                        return Err(ApiError::Unavailable(format!(
                            "{what} (after {TRANSIENT_RETRIES} retries)"
                        )));
                    }
                    tokio::time::sleep(backoff(transient)).await;
                }
                _ => {
                    let (code, message) = error_message(&text);
                    return Err(match status {
                        401 | 403 => ApiError::Auth { status, message },
                        404 => ApiError::NotFound,
                        405 => ApiError::ApprovalRequired { message },
                        400 | 422 => ApiError::Invalid { code, message },
                        409 => ApiError::Conflict { message },
                        _ => ApiError::Other(format!("unexpected HTTP {status}{}", detail(&message))),
                    });
                }
            }
        }
    }
}

/// A transport error in words, without the URL's query or anything secret.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    if e.is_timeout() {
        "the request timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(cause) = src {
            s += &format!(": {cause}");
            src = cause.source();
        }
        s
    }
}

/// `(code, message)` from an error body `{"code": ..., "message": ...}`; the body text otherwise.
fn error_message(text: &str) -> (String, String) {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => (
            v["code"].as_str().unwrap_or_default().to_owned(),
            v["message"].as_str().unwrap_or_default().to_owned(),
        ),
        Err(_) => (String::new(), text.chars().take(200).collect()),
    }
}

/// A random factor in [0.5, 1.0), so parallel retries do not return together.
fn jitter() -> f64 {
    0.5 + fastrand::f64() / 2.0
}

/// The wait before transient retry number `attempt` (1-based): 250 ms doubling, jittered.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(250) * 2u32.pow(attempt.saturating_sub(1).min(8));
    base.min(MAX_WAIT).mul_f64(jitter())
}

/// How long a 429 asks us to wait: `Retry-After` seconds, else until `X-Ratelimit-Reset` (epoch
/// ms), else one backoff step; plus a little jitter so parallel requests do not return together.
fn rate_limit_wait(headers: &reqwest::header::HeaderMap) -> Duration {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let extra = Duration::from_millis(50).mul_f64(jitter());
    if let Some(secs) = header("Retry-After").and_then(|v| v.parse::<u64>().ok()) {
        return Duration::from_secs(secs).min(MAX_WAIT) + extra;
    }
    if let Some(reset) = header("X-Ratelimit-Reset").and_then(|v| v.parse::<u64>().ok()) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        return Duration::from_millis(reset.saturating_sub(now)).min(MAX_WAIT) + extra;
    }
    backoff(1) + extra
}

/// Reads the parts of a `FeatureFlag` that sync needs, for `environment`.
fn parse_flag(body: &Value, environment: &str) -> Result<LdFlag, ApiError> {
    let bad = |what: &str| ApiError::Other(format!("LaunchDarkly's answer has no valid {what}"));
    let env = body["environments"]
        .get(environment)
        .ok_or_else(|| bad(&format!("environments.{environment}")))?;
    let variations: Vec<Value> = body["variations"]
        .as_array()
        .map(|vs| vs.iter().map(|v| v["value"].clone()).collect())
        .unwrap_or_default();
    let serve = |index: &Value, what: &str| -> Result<Serve, ApiError> {
        let Some(i) = index.as_u64() else {
            return Ok(Serve::Unset);
        };
        let value = variations.get(i as usize).ok_or_else(|| {
            bad(&format!(
                "{what} (variation {i} of {} variations)",
                variations.len()
            ))
        })?;
        Ok(Serve::Variation(Variation {
            index: i as usize,
            value: value.clone(),
        }))
    };
    let fallthrough = match &env["fallthrough"] {
        Value::Object(ft) => match (ft.get("variation").filter(|v| !v.is_null()), ft.get("rollout")) {
            (Some(i), _) => serve(i, "fallthrough variation")?,
            (None, Some(r)) if !r.is_null() => Serve::Rollout,
            _ => Serve::Unset,
        },
        _ => Serve::Unset,
    };
    Ok(LdFlag {
        version: env["version"]
            .as_u64()
            .ok_or_else(|| bad("environment version"))?,
        on: env["on"].as_bool().ok_or_else(|| bad("environment \"on\""))?,
        off_variation: serve(&env["offVariation"], "offVariation")?,
        fallthrough,
        variations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_body_tests_the_version_first() {
        let change = FlagPatch {
            comment: "relayctl abc1234: INC-1 (Op <op@example.com>)".into(),
            expect_version: 41,
            on: Some(false),
            off_variation: Some(1),
            fallthrough: Some(0),
            replace_fallthrough_rule: true,
        };
        assert_eq!(
            change.body("prod/eu"),
            json!({"comment": "relayctl abc1234: INC-1 (Op <op@example.com>)", "patch": [
                {"op": "test", "path": "/environments/prod~1eu/version", "value": 41},
                {"op": "replace", "path": "/environments/prod~1eu/on", "value": false},
                {"op": "replace", "path": "/environments/prod~1eu/offVariation", "value": 1},
                {"op": "replace", "path": "/environments/prod~1eu/fallthrough", "value": {"variation": 0}},
            ]})
        );
    }

    #[test]
    fn reads_the_environment_of_a_feature_flag() {
        let body = json!({"key": "k", "_version": 7, "variations": [{"_id": "a", "value": true}, {"_id": "b", "value": false}],
            "environments": {"production": {"on": true, "version": 43, "offVariation": 1, "fallthrough": {"rollout": {"variations": []}}}}});
        assert_eq!(
            parse_flag(&body, "production").unwrap(),
            LdFlag {
                version: 43,
                on: true,
                off_variation: Serve::Variation(Variation {
                    index: 1,
                    value: json!(false)
                }),
                fallthrough: Serve::Rollout,
                variations: vec![json!(true), json!(false)],
            }
        );
        assert!(parse_flag(&body, "staging").is_err());
    }

    #[test]
    fn rate_limit_waits_follow_the_headers() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("Retry-After", "2".parse().unwrap());
        let w = rate_limit_wait(&h);
        assert!(
            w >= Duration::from_secs(2) && w < Duration::from_millis(2100),
            "{w:?}"
        );
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("X-Ratelimit-Reset", (now + 300).to_string().parse().unwrap());
        let w = rate_limit_wait(&h);
        assert!(
            w > Duration::from_millis(200) && w < Duration::from_millis(400),
            "{w:?}"
        );
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert!(backoff(1) <= Duration::from_millis(250));
        assert!(backoff(3) >= Duration::from_millis(500));
        assert!(backoff(20) <= MAX_WAIT);
    }
}
