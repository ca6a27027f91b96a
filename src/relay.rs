//! The LaunchDarkly Relay Proxy as `relayctl status` reads it: the only file that knows Relay's
//! server-side SDK endpoint (`GET /sdk/flags`, authorized by an environment's SDK key as the raw
//! `Authorization` header) and what its answers mean.
//!
//! `/sdk/flags` is what a newly connecting server SDK is given (Relay builds a new stream's `put`
//! from the same whole-environment read, behind the same `CACHE_TTL` cache), so it answers "does
//! Relay serve this now"; SDKs already connected are told nothing of writes Relay did not make
//! (tests/cli/relay.rs shows both). Every request is bounded ([`CONNECT_TIMEOUT`],
//! [`REQUEST_TIMEOUT`]) and sent once: status must never hang on a Relay that is down. SDK keys
//! travel only in their header; no message quotes one. Reads only, never writes.

use crate::flag::{Lookup, StoredFlag};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long connecting to a Relay may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a whole answer from a Relay may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Relay's `CACHE_TTL` unless the `[[relay]]` says otherwise.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);

/// One `[[relay]]` of the overrides file.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayConfig {
    /// Unique; default: the URL's host.
    pub name: String,
    /// Relay's base URL, without credentials, query or fragment.
    pub url: url::Url,
    /// project/environment -> the name of the environment variable holding its SDK key.
    pub sdk_keys: BTreeMap<(String, String), String>,
    /// Relay's `CACHE_TTL`: how long after a store write Relay may still serve what it read before.
    pub cache_ttl: Duration,
}

impl RelayConfig {
    /// The URL as shown: without a trailing `/`.
    pub fn shown_url(&self) -> String {
        self.url.as_str().trim_end_matches('/').to_owned()
    }
}

/// Why Relay did not give an environment's flags.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RelayError {
    /// No answer: refused, timed out, or not HTTP.
    #[error("no answer ({0})")]
    Unreachable(String),
    /// 401/403: Relay does not know the SDK key (or the environment failed for good).
    #[error("Relay does not accept the SDK key (HTTP {0})")]
    KeyRefused(u16),
    /// 503: the environment has no data yet (Relay is starting and cannot read its store or
    /// LaunchDarkly).
    #[error("Relay has no data for this environment yet (HTTP 503)")]
    NotReady,
    /// Any other answer.
    #[error("{0}")]
    Other(String),
}

/// Reads Relays; cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
}

impl Client {
    pub fn new() -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("relayctl/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Client { http })
    }

    /// Every flag Relay serves for the environment whose SDK key is `sdk_key`: `GET /sdk/flags`,
    /// each flag as a [`Lookup`] (a value the SDKs would reject is [`Lookup::Invalid`]).
    pub async fn flags(
        &self,
        relay: &RelayConfig,
        sdk_key: &str,
    ) -> Result<BTreeMap<String, Lookup>, RelayError> {
        let mut url = relay.url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["sdk", "flags"]);
        }
        let answer = self
            .http
            .get(url)
            .header(reqwest::header::AUTHORIZATION, sdk_key)
            .send()
            .await
            .map_err(|e| RelayError::Unreachable(why(&e)))?;
        match answer.status().as_u16() {
            200 => {}
            s @ (401 | 403) => return Err(RelayError::KeyRefused(s)),
            503 => return Err(RelayError::NotReady),
            s => return Err(RelayError::Other(format!("Relay answered HTTP {s}"))),
        }
        let text = answer
            .text()
            .await
            .map_err(|e| RelayError::Unreachable(why(&e)))?;
        let body: Value = serde_json::from_str(&text)
            .map_err(|e| RelayError::Other(format!("Relay's answer is not the flags' JSON: {e}")))?;
        let Value::Object(flags) = body else {
            return Err(RelayError::Other(
                "Relay's answer is not a JSON object of flags".into(),
            ));
        };
        Ok(flags
            .into_iter()
            .map(|(key, flag)| {
                let lookup = StoredFlag::parse(&flag.to_string()).map_or_else(Lookup::Invalid, Lookup::Found);
                (key, lookup)
            })
            .collect())
    }
}

/// A request error in words, without the URL (reqwest's display carries it): its innermost cause.
fn why(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("no answer within {} s", REQUEST_TIMEOUT.as_secs());
    }
    if e.is_connect() {
        return "connection refused or unreachable".into();
    }
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut last = "the request failed".to_owned();
    while let Some(c) = cause {
        last = c.to_string();
        cause = c.source();
    }
    crate::redact::text(&last)
}
