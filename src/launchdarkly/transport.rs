//! How one request travels: its headers and time limit, which answers are retried and how long
//! relayctl waits for them, and saying every wait out loud through the client's notices.
//!
//! The bounds, all deliberate: one request attempt takes at most the client's timeout (a slow
//! answer is announced halfway); a timed-out attempt is retried once and a 5xx or a dropped
//! connection up to [`TRANSIENT_RETRIES`] times, with jittered backoff; a 429 is waited out when
//! it asks for at most [`MAX_WAIT`], and the rate-limit pauses of one run add up to at most
//! [`RUN_PATIENCE`] (wall time: concurrent requests share one pause) and never past the run's
//! deadline. The deadline (`--timeout`) bounds everything: no attempt may outlast it (its time
//! limit shrinks to what is left) and no retry starts after it. Past any bound the request fails
//! as [`ApiError::Unavailable`], and every later request of the run fails at once instead of
//! waiting again. Redirects are never followed. Durations are added with checked arithmetic: a
//! wait too long to represent (a `Retry-After` of 2^64 s) is refused like any wait too long.
//! Nothing here prints: notices go to whatever the caller gave [`Client::with_notices`].

use super::{ApiError, Client, API_VERSION};
use crate::ui::duration;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use serde_json::Value;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where the client's notices go: one line each, no trailing newline.
pub(super) type Notice = Arc<dyn Fn(&str) + Send + Sync>;

/// How many times a 5xx answer or a dropped connection is retried.
const TRANSIENT_RETRIES: u32 = 4;
/// How many times an attempt that got no answer within the timeout is retried: an API that was
/// that slow once usually is again, and each try costs a whole timeout.
const TIMEOUT_RETRIES: u32 = 1;
/// The longest single wait a 429 may ask for; asking more stops the run at once.
pub(super) const MAX_WAIT: Duration = Duration::from_secs(60);
/// The most wall time one run spends paused by rate limits.
pub(super) const RUN_PATIENCE: Duration = Duration::from_secs(180);
/// A slow answer is announced after this long (or half the timeout, if shorter).
const SLOW_AFTER: Duration = Duration::from_secs(5);

/// The shared waiting state of one run: requests pause together after a 429, the pauses add up
/// against [`RUN_PATIENCE`], and once one request gives up, the rest do not start.
#[derive(Debug, Default)]
pub(super) struct Pacing {
    /// No request is sent before this.
    paused_until: Option<Instant>,
    /// Wall time paused so far in this run.
    paused: Duration,
    /// Waits must end by then.
    deadline: Option<Instant>,
    /// Why LaunchDarkly was found unavailable in this run.
    gave_up: Option<String>,
}

/// A rate-limit pause, as [`Pacing::pause`] accounts it.
#[derive(Debug, PartialEq)]
pub(super) enum Pause {
    /// A longer pause than the current one: say it. `total` is the run's paused time with it.
    New { until: Instant, total: Duration },
    /// Within a pause already said.
    Covered { until: Instant },
}

impl Pacing {
    pub(super) fn new(deadline: Option<Instant>) -> Pacing {
        Pacing {
            deadline,
            ..Pacing::default()
        }
    }

    /// Accounts a pause of `wait` from `now`, or says why the run must not wait that long.
    pub(super) fn pause(&mut self, now: Instant, wait: Duration) -> Result<Pause, String> {
        let Some(until) = now.checked_add(wait) else {
            return Err("that wait is longer than any clock can count".to_owned());
        };
        if self.deadline.is_some_and(|d| until > d) {
            return Err(format!(
                "that wait would end after this run's deadline ({} from now)",
                duration(self.deadline.unwrap_or(now).saturating_duration_since(now))
            ));
        }
        let from = self.paused_until.filter(|u| *u > now).unwrap_or(now);
        if until <= from {
            return Ok(Pause::Covered { until: from });
        }
        let total = self.paused + (until - from);
        if total > RUN_PATIENCE {
            return Err(format!(
                "this run has already been paused {} by rate limits, and waits {} at most",
                duration(self.paused),
                duration(RUN_PATIENCE)
            ));
        }
        self.paused = total;
        self.paused_until = Some(until);
        Ok(Pause::New { until, total })
    }
}

/// A request attempt that got no HTTP answer.
pub(super) struct Failure {
    /// No answer within the timeout.
    timed_out: bool,
    /// Abandoned because of Ctrl-C or SIGTERM.
    pub(super) interrupted: bool,
    /// What happened, in words, naming the request.
    pub(super) why: String,
}

impl Client {
    fn pacing(&self) -> MutexGuard<'_, Pacing> {
        self.pacing.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notice(&self, text: &str) {
        (self.notice)(text)
    }

    /// Sends one request (`what` names it in notices: `GET p/e/f`), waiting out 429s and
    /// retrying transient failures within the module's bounds, and maps the answer.
    pub(super) async fn send(
        &self,
        method: Method,
        url: url::Url,
        body: Option<String>,
        what: &str,
    ) -> Result<Value, ApiError> {
        let (mut transient, mut timeouts) = (0, 0);
        loop {
            self.wait_for_turn().await?;
            if self.time_left().is_some_and(|left| left.is_zero()) {
                return Err(self.give_up(format!("the time allowed (--timeout) ran out before {what}")));
            }
            let why = match self.attempt(&method, &url, body.as_deref(), what).await {
                Ok((200..=299, _, text)) => {
                    return serde_json::from_str(&text).map_err(|e| {
                        ApiError::Other(format!("LaunchDarkly answered {what} with invalid JSON: {e}"))
                    })
                }
                Ok((status @ 300..=399, headers, _)) => return Err(redirect(what, status, &headers)),
                Ok((429, headers, _)) => {
                    self.rate_limited(&headers, what).await?;
                    continue;
                }
                Ok((status @ 500..=599, _, text)) => format!(
                    "LaunchDarkly answered {what} with HTTP {status}{}",
                    super::detail(&error_message(&text).1)
                ),
                Ok((status, _, text)) => return Err(error_of(status, &text)),
                Err(failure) if failure.interrupted => return Err(ApiError::Interrupted),
                Err(failure) => {
                    timeouts += u32::from(failure.timed_out);
                    failure.why
                }
            };
            transient += 1;
            if transient > TRANSIENT_RETRIES || timeouts > TIMEOUT_RETRIES {
                let retries = match transient - 1 {
                    1 => "1 retry".to_owned(),
                    n => format!("{n} retries"),
                };
                return Err(self.give_up(format!("{why} (after {retries})")));
            }
            let wait = backoff(transient);
            if self.time_left().is_some_and(|left| left <= wait) {
                return Err(self.give_up(format!("{why}; no time left for a retry (--timeout)")));
            }
            self.notice(&format!("{why}; retry {transient} in {}", duration(wait)));
            if !crate::interrupt::sleep(wait).await {
                return Err(ApiError::Interrupted);
            }
        }
    }

    /// Before each request: fails at once when the run already gave up or an interruption was
    /// requested, and waits out a rate-limit pause (said when it began).
    async fn wait_for_turn(&self) -> Result<(), ApiError> {
        let (gave_up, until) = {
            let p = self.pacing();
            (p.gave_up.clone(), p.paused_until)
        };
        if let Some(why) = gave_up {
            return Err(ApiError::Unavailable(format!("stopped, since {why}")));
        }
        let wait = until.map_or(Duration::ZERO, |u| u.saturating_duration_since(Instant::now()));
        if crate::interrupt::requested() || !crate::interrupt::sleep(wait).await {
            return Err(ApiError::Interrupted);
        }
        Ok(())
    }

    /// What is left of the run's time (its deadline), if it has one.
    pub(super) fn time_left(&self) -> Option<Duration> {
        let deadline = self.pacing().deadline?;
        Some(deadline.saturating_duration_since(Instant::now()))
    }

    /// Records that LaunchDarkly is unavailable for the rest of the run, and says why.
    fn give_up(&self, why: String) -> ApiError {
        self.pacing().gave_up.get_or_insert_with(|| why.clone());
        ApiError::Unavailable(why)
    }

    /// Waits out a 429 on `what` as its headers ask, within the bounds, saying so.
    async fn rate_limited(&self, headers: &HeaderMap, what: &str) -> Result<(), ApiError> {
        let (ask, source) = rate_limit_wait(headers);
        let limited = format!("rate limited (HTTP 429) on {what}");
        if ask > MAX_WAIT {
            let until = match SystemTime::now().checked_add(ask) {
                Some(t) => format!(", until {}", humantime::format_rfc3339_seconds(t)),
                None => String::new(),
            };
            return Err(self.give_up(format!(
                "{limited}: LaunchDarkly asks to wait {} ({source}{until}), longer than the {} relayctl waits \
                 at once",
                duration(ask),
                duration(MAX_WAIT)
            )));
        }
        // A little jitter, so requests paused together do not all return at the same instant.
        let padded = ask.saturating_add(Duration::from_millis(50).mul_f64(jitter()));
        let pause = self.pacing().pause(Instant::now(), padded);
        let until = match pause {
            Ok(Pause::New { until, total }) => {
                self.notice(&format!(
                    "LaunchDarkly is rate limiting: HTTP 429 on {what}; pausing requests for {} ({source}); {} \
                     of the {} a run may wait",
                    duration(ask),
                    duration(total),
                    duration(RUN_PATIENCE)
                ));
                until
            }
            Ok(Pause::Covered { until }) => until,
            Err(why) => return Err(self.give_up(format!("{limited} for {} more: {why}", duration(ask)))),
        };
        match crate::interrupt::sleep(until.saturating_duration_since(Instant::now())).await {
            true => Ok(()),
            false => Err(ApiError::Interrupted),
        }
    }

    /// One request attempt: (status, headers, body), or why there was no answer. Says so when
    /// the answer is slow. A GET is abandoned on Ctrl-C (it changes nothing); anything else runs
    /// to its answer or its timeout, so that an interruption never leaves its outcome unknown.
    pub(super) async fn attempt(
        &self,
        method: &Method,
        url: &url::Url,
        body: Option<&str>,
        what: &str,
    ) -> Result<(u16, HeaderMap, String), Failure> {
        let exchange = self.exchange(method, url, body, what);
        if *method != Method::GET {
            return exchange.await;
        }
        tokio::select! {
            r = exchange => r,
            () = crate::interrupt::signalled() => Err(Failure {
                timed_out: false,
                interrupted: true,
                why: format!("{what} abandoned: interrupted"),
            }),
        }
    }

    async fn exchange(
        &self,
        method: &Method,
        url: &url::Url,
        body: Option<&str>,
        what: &str,
    ) -> Result<(u16, HeaderMap, String), Failure> {
        // No attempt outlasts the run's deadline.
        let limit = self
            .time_left()
            .map_or(self.timeout, |left| left.min(self.timeout));
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .timeout(limit)
            .header(AUTHORIZATION, self.token.clone())
            .header("LD-API-Version", API_VERSION)
            .header(ACCEPT, "application/json");
        if let Some(b) = body {
            req = req.header(CONTENT_TYPE, "application/json").body(b.to_owned());
        }
        let exchange = async {
            let resp = req.send().await?;
            let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
            Ok::<_, reqwest::Error>((status, headers, resp.text().await?))
        };
        tokio::pin!(exchange);
        let slow = (limit / 2).min(SLOW_AFTER);
        let result = tokio::select! {
            r = &mut exchange => r,
            _ = tokio::time::sleep(slow) => {
                self.notice(&format!(
                    "LaunchDarkly has not answered {what} after {}; waiting up to {} in all",
                    duration(slow),
                    duration(limit)
                ));
                exchange.await
            }
        };
        result.map_err(|e| {
            let timed_out = e.is_timeout();
            let why = if timed_out {
                format!(
                    "no answer from LaunchDarkly at {} to {what} within {}",
                    self.base,
                    duration(limit)
                )
            } else {
                format!("{} for {what}", describe(e, &self.base))
            };
            Failure {
                timed_out,
                interrupted: false,
                why,
            }
        })
    }
}

/// The error for a 3xx answer to `what`.
pub(super) fn redirect(what: &str, status: u16, headers: &HeaderMap) -> ApiError {
    let raw = headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Only scheme, host and path: a query may carry a token, userinfo certainly does.
    let location = match url::Url::parse(raw) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) if raw.starts_with('/') => raw.split(['?', '#']).next().unwrap_or("").to_owned(),
        Err(_) => "an unreadable location".to_owned(),
    };
    let location: String = location.chars().filter(|c| !c.is_control()).take(200).collect();
    ApiError::Redirect {
        what: what.to_owned(),
        status,
        location,
    }
}

/// The error for a 4xx answer other than 429 (or a 5xx, for a caller that does not retry).
pub(super) fn error_of(status: u16, text: &str) -> ApiError {
    let (code, message) = error_message(text);
    match status {
        401 | 403 => ApiError::Auth { status, message },
        404 => ApiError::NotFound,
        405 => ApiError::ApprovalRequired { message },
        400 | 422 => ApiError::Invalid { code, message },
        409 => ApiError::Conflict { message },
        500..=599 => ApiError::Unavailable(format!("HTTP {status}{}", super::detail(&message))),
        _ => ApiError::Other(format!("unexpected HTTP {status}{}", super::detail(&message))),
    }
}

/// A transport error in words, without the request's URL or anything secret: `cannot connect to
/// LaunchDarkly at <base> (Connection refused)`.
fn describe(e: reqwest::Error, base: &str) -> String {
    let e = e.without_url();
    let mut causes = Vec::new();
    let mut src = std::error::Error::source(&e);
    while let Some(cause) = src {
        causes.push(cause.to_string());
        src = cause.source();
    }
    let root = causes.last().cloned().unwrap_or_default();
    if e.is_connect() {
        match root.is_empty() {
            true => format!("cannot connect to LaunchDarkly at {base}"),
            false => format!("cannot connect to LaunchDarkly at {base} ({root})"),
        }
    } else {
        std::iter::once(e.to_string())
            .chain(causes)
            .collect::<Vec<_>>()
            .join(": ")
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

/// How long a 429 asks to wait, and which header said so: `Retry-After` (seconds, or an HTTP
/// date: until then, at least nothing), else until `X-Ratelimit-Reset` (epoch ms), else one
/// backoff step.
fn rate_limit_wait(headers: &HeaderMap) -> (Duration, String) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(secs) = header("Retry-After").and_then(|v| v.parse::<u64>().ok()) {
        return (Duration::from_secs(secs), format!("Retry-After: {secs}"));
    }
    if let Some(date) = header("Retry-After").and_then(|v| httpdate::parse_http_date(v).ok()) {
        let wait = date.duration_since(SystemTime::now()).unwrap_or_default();
        let shown = httpdate::fmt_http_date(date);
        return (wait, format!("Retry-After: {shown}"));
    }
    if let Some(reset) = header("X-Ratelimit-Reset").and_then(|v| v.parse::<u64>().ok()) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let wait = Duration::from_millis(reset.saturating_sub(now));
        return (wait, "until X-Ratelimit-Reset".to_owned());
    }
    (backoff(1), "it gave no Retry-After".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_waits_follow_the_headers() {
        let mut h = HeaderMap::new();
        h.insert("Retry-After", "99999".parse().unwrap());
        assert_eq!(
            rate_limit_wait(&h),
            (Duration::from_secs(99999), "Retry-After: 99999".to_owned())
        );
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let mut h = HeaderMap::new();
        h.insert("X-Ratelimit-Reset", (now + 300).to_string().parse().unwrap());
        let (w, source) = rate_limit_wait(&h);
        assert!(
            w > Duration::from_millis(200) && w <= Duration::from_millis(300),
            "{w:?}"
        );
        assert_eq!(source, "until X-Ratelimit-Reset");
        assert!(rate_limit_wait(&HeaderMap::new()).0 <= Duration::from_millis(250));
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert!(backoff(1) <= Duration::from_millis(250));
        assert!(backoff(3) >= Duration::from_millis(500));
        assert!(backoff(20) <= MAX_WAIT);
    }

    #[test]
    fn concurrent_pauses_count_once_and_a_run_pauses_a_bounded_total() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = Pacing::new(None);
        assert_eq!(
            p.pause(t0, s(10)),
            Ok(Pause::New {
                until: t0 + s(10),
                total: s(10)
            })
        );
        // Another request limited during that pause, asking for less: covered, not counted.
        assert_eq!(p.pause(t0 + s(1), s(5)), Ok(Pause::Covered { until: t0 + s(10) }));
        // Asking a little more extends the pause by the difference only.
        assert_eq!(
            p.pause(t0 + s(2), s(10)),
            Ok(Pause::New {
                until: t0 + s(12),
                total: s(12)
            })
        );
        // Pauses add up, in wall time, to RUN_PATIENCE at most.
        let mut now = t0 + s(12);
        while p.pause(now, s(60)).is_ok() {
            now += s(60);
        }
        assert!(p.paused <= RUN_PATIENCE, "{:?}", p.paused);
        let why = p.pause(now, s(60)).unwrap_err();
        assert!(why.contains("already been paused 2m 12s"), "{why}");
    }

    #[test]
    fn no_pause_goes_past_the_deadline() {
        let t0 = Instant::now();
        let mut p = Pacing::new(Some(t0 + Duration::from_secs(5)));
        assert!(p.pause(t0, Duration::from_secs(4)).is_ok());
        let why = p.pause(t0, Duration::from_secs(6)).unwrap_err();
        assert_eq!(
            why,
            "that wait would end after this run's deadline (5 s from now)"
        );
    }
}
