//! The LaunchDarkly REST API client: the only file that knows its URLs, headers and JSON shapes
//! (facts §5: getFeatureFlag, patchFeatureFlag).
//!
//! It checks what it is given before anything is sent (a base URL without credentials, a token
//! that is a valid header value), and owns the transport rules every request follows
//! ([`transport`]): the raw token in `Authorization`, `LD-API-Version`, a `User-Agent`, time
//! limits, no redirects, waiting out 429s and retrying transient failures within stated bounds,
//! and saying every wait out loud through the client's notices. It decides nothing about flags:
//! sync.rs does. It never puts the token in an error or a notice, nor a base URL's credentials.

mod transport;

use crate::flag::{FlagId, Serve, Variation};
use reqwest::header::HeaderValue;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use transport::{Notice, Pacing};

/// The API version relayctl is written against.
pub const API_VERSION: &str = "20240415";
/// Where LaunchDarkly's API lives unless the overrides file or `LD_BASE_URL` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://app.launchdarkly.com";
/// How long one request may take (connecting, then the whole answer) unless the caller says
/// otherwise ([`Client::with_timeout`]).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// 5xx, timeouts or connection failures that outlasted the retries, or 429s asking for more
    /// waiting than relayctl allows.
    #[error("LaunchDarkly is not answering properly: {0}")]
    Unavailable(String),
    /// A 3xx: not followed, so that a PATCH is never turned into a GET that "succeeds".
    #[error("LaunchDarkly answered {what} with a redirect (HTTP {status} to {location}) instead of an answer. \
             relayctl does not follow redirects, so that a change is never silently turned into something else: \
             check that the base URL is LaunchDarkly's API itself (not a proxy or a login page), then run this again")]
    Redirect {
        what: String,
        status: u16,
        /// Where it pointed, without credentials or query.
        location: String,
    },
    /// Ctrl-C or SIGTERM arrived before the request was sent or while waiting to retry it.
    #[error("interrupted before it was sent")]
    Interrupted,
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

/// Why a client cannot be built from what it was given. Never quotes the token or credentials.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SetupError {
    /// The API access token cannot be sent as a header value.
    #[error("{0}")]
    Token(String),
    /// The base URL is not one requests may go to.
    #[error("{0}")]
    BaseUrl(String),
}

/// A LaunchDarkly REST API client. `Debug` never shows the token. Clones share the state of
/// the current run's waits ([`Client::begin`]).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The base URL as given, without a trailing `/`, for messages.
    base: String,
    /// The same, parsed: requests are built from it.
    url: url::Url,
    token: HeaderValue,
    timeout: Duration,
    notice: Notice,
    pacing: Arc<Mutex<Pacing>>,
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
    /// Refuses a token that is not a valid header value and a base URL that carries credentials,
    /// a query or a fragment, or is not http(s). Sends nothing.
    pub fn new(base_url: &str, token: &str) -> Result<Client, SetupError> {
        let url = check_base_url(base_url)?;
        let token = check_token(token)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("relayctl/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(16)
            .build()
            .map_err(|e| SetupError::BaseUrl(format!("cannot build an HTTP client for it: {e}")))?;
        Ok(Client {
            http,
            base: url.as_str().trim_end_matches('/').to_owned(),
            url,
            token,
            timeout: DEFAULT_TIMEOUT,
            notice: Arc::new(|_: &str| {}),
            pacing: Arc::default(),
        })
    }

    /// The same client with `timeout` for each request (connecting, then the whole answer).
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The same client telling `notice` about every wait, retry and slow answer, one line each.
    pub fn with_notices(mut self, notice: impl Fn(&str) + Send + Sync + 'static) -> Client {
        self.notice = Arc::new(notice);
        self
    }

    /// The base URL requests go to (it has no credentials: [`Client::new`] refuses them).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Starts a new run: forgets earlier rate-limit pauses and an earlier decision that
    /// LaunchDarkly is unavailable, and makes waits that would end after `deadline` give up.
    pub fn begin(&self, deadline: Option<Instant>) {
        *self.pacing.lock().unwrap_or_else(|p| p.into_inner()) = Pacing::new(deadline);
    }

    fn flag_url(&self, id: &FlagId) -> url::Url {
        let mut url = self.url.clone();
        // check_base_url made sure the URL can have a path.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .extend(["api", "v2", "flags", &id.project, &id.flag]);
        }
        url
    }

    /// `/api/v2`: the API's root resource, which answers without a flag (getRoot).
    fn root_url(&self) -> url::Url {
        let mut url = self.url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v2"]);
        }
        url
    }

    fn get_url(&self, id: &FlagId) -> url::Url {
        let mut url = self.flag_url(id);
        url.query_pairs_mut().append_pair("env", &id.environment);
        url
    }

    /// GET `/api/v2/flags/{project}/{flag}?env={environment}`: the flag's state in its environment.
    pub async fn get_flag(&self, id: &FlagId) -> Result<LdFlag, ApiError> {
        let what = format!("GET {id}");
        let body = self
            .send(reqwest::Method::GET, self.get_url(id), None, &what)
            .await?;
        parse_flag(&body, &id.environment)
    }

    /// PATCH `/api/v2/flags/{project}/{flag}` with `change`; returns the flag as LD's answer shows
    /// it (the caller checks that it shows the change).
    pub async fn patch_flag(&self, id: &FlagId, change: &FlagPatch) -> Result<LdFlag, ApiError> {
        let what = format!("PATCH {id}");
        let body = change.body(&id.environment).to_string();
        let answer = self
            .send(reqwest::Method::PATCH, self.flag_url(id), Some(body), &what)
            .await?;
        parse_flag(&answer, &id.environment)
    }

    /// One GET of `id` (or, with none, of the API's root `/api/v2`, getRoot), without retries
    /// or waits and within the run's deadline ([`Client::begin`]): `Ok` when LaunchDarkly answers
    /// at all (even 404 or 429), [`ApiError::Unavailable`] when it cannot be reached, does not
    /// answer in time or answers 5xx, the errors that waiting cannot fix (401/403, a redirect),
    /// and [`ApiError::Interrupted`] at once on Ctrl-C.
    pub async fn probe(&self, id: Option<&FlagId>) -> Result<(), ApiError> {
        let (what, url) = match id {
            Some(id) => (format!("GET {id}"), self.get_url(id)),
            None => ("GET /api/v2".to_owned(), self.root_url()),
        };
        if self.time_left().is_some_and(|left| left.is_zero()) {
            return Err(ApiError::Unavailable(format!(
                "the time allowed (--timeout) ran out before {what}"
            )));
        }
        let (status, headers, text) = self
            .attempt(&reqwest::Method::GET, &url, None, &what)
            .await
            .map_err(|f| match f.interrupted {
                true => ApiError::Interrupted,
                false => ApiError::Unavailable(f.why),
            })?;
        match status {
            300..=399 => Err(transport::redirect(&what, status, &headers)),
            401 | 403 | 500..=599 => Err(transport::error_of(status, &text)),
            _ => Ok(()),
        }
    }
}

/// What a character is, in words, for a message that must not show it.
fn describe_char(c: char) -> &'static str {
    match c {
        '\n' => "a line break",
        '\r' => "a carriage return",
        ' ' => "a space",
        '\t' => "a tab",
        c if c.is_ascii_control() => "a control character",
        _ => "a non-ASCII character",
    }
}

/// The token as a header value, or why it cannot be one (visible ASCII only).
fn check_token(token: &str) -> Result<HeaderValue, SetupError> {
    let count = token.chars().count();
    if let Some((i, c)) = token.chars().enumerate().find(|(_, c)| !c.is_ascii_graphic()) {
        let hint = if i == 0 || i + 1 == count {
            " (one at either end usually comes from the file or secret the token was copied from)"
        } else {
            ""
        };
        return Err(SetupError::Token(format!(
            "contains {} at character {} of {count}: an API access token is visible ASCII only{hint}; set it \
             without it",
            describe_char(c),
            i + 1
        )));
    }
    let mut value = HeaderValue::from_str(token)
        .map_err(|_| SetupError::Token("is not a valid HTTP header value".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// `raw` parsed, or why requests must not go there. Messages show the URL without credentials.
fn check_base_url(raw: &str) -> Result<url::Url, SetupError> {
    let bad = |why: String| Err(SetupError::BaseUrl(why));
    let Ok(url) = url::Url::parse(raw.trim_end_matches('/')) else {
        return bad(format!(
            "{} is not a URL: give LaunchDarkly's address, such as {DEFAULT_BASE_URL}",
            crate::redact::url(raw)
        ));
    };
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    let shown = shown.as_str().trim_end_matches('/').to_owned();
    if !url.username().is_empty() || url.password().is_some() {
        return bad(format!(
            "carries credentials before '@' (user or password, for {shown}): relayctl authenticates with the \
             LD_API_KEY token only and never sends or prints credentials from a URL; remove the \
             `user:password@` part"
        ));
    }
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() || url.host().is_none() {
        return bad(format!(
            "{shown} is not an http(s) URL, such as {DEFAULT_BASE_URL}"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return bad(format!(
            "has a query or fragment ({shown}?...): give only LaunchDarkly's address, such as {DEFAULT_BASE_URL}"
        ));
    }
    Ok(url)
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
    fn tokens_must_be_visible_ascii_and_are_never_quoted() {
        assert!(check_token("api-0123-abc").is_ok());
        for (token, says) in [
            ("api-zq9x\n", "contains a line break at character 9 of 9"),
            ("api-zq 9x", "contains a space at character 7 of 9"),
            ("\tapi-zq9x", "contains a tab at character 1 of 9"),
            ("api-zq9é", "contains a non-ASCII character at character 8 of 8"),
        ] {
            let e = check_token(token).unwrap_err().to_string();
            assert!(e.starts_with(says), "{token:?}: {e}");
            assert!(!e.contains("zq"), "{e}");
        }
    }

    #[test]
    fn base_urls_carry_no_credentials_query_or_odd_scheme() {
        assert_eq!(
            check_base_url("https://app.launchdarkly.com/").unwrap().as_str(),
            "https://app.launchdarkly.com/"
        );
        assert!(check_base_url("http://127.0.0.1:8080/ld").is_ok());
        for (raw, says) in [
            (
                "http://user:s3cr3t@h:1",
                "carries credentials before '@' (user or password, for http://h:1)",
            ),
            ("https://s3cr3t@h", "carries credentials"),
            (
                "https://h/?token=s3cr3t",
                "has a query or fragment (https://h?...)",
            ),
            ("ftp://h", "ftp://h is not an http(s) URL"),
            ("s3cr3t", "<unparseable URL> is not a URL"),
        ] {
            let e = check_base_url(raw).unwrap_err().to_string();
            assert!(e.starts_with(says), "{raw}: {e}");
            assert!(!e.contains("s3cr3t"), "{e}");
        }
    }

    #[test]
    fn flag_urls_escape_keys_and_keep_a_base_path() {
        let c = Client::new("http://h:1/ld/", "t").unwrap();
        let id = FlagId {
            project: "p".into(),
            environment: "prod/eu".into(),
            flag: "a/b c".into(),
        };
        assert_eq!(
            c.get_url(&id).as_str(),
            "http://h:1/ld/api/v2/flags/p/a%2Fb%20c?env=prod%2Feu"
        );
        assert_eq!(c.base_url(), "http://h:1/ld");
        assert_eq!(c.root_url().as_str(), "http://h:1/ld/api/v2");
    }
}
