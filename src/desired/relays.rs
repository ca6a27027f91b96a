//! The `[[relay]]` tables: the Relay Proxies `relayctl status` asks what they serve. Each names
//! Relay's URL and, per project/environment, the environment variable holding that
//! environment's SDK key: never the key itself, which this file must not hold (a value that looks
//! like an SDK key is refused without being quoted).

use super::{keys::check_key, Located};
use crate::relay::{RelayConfig, DEFAULT_CACHE_TTL};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRelay {
    name: Option<Spanned<String>>,
    url: Spanned<String>,
    sdk_keys: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    cache_ttl: Option<Spanned<String>>,
}

/// The `[[relay]]`s, validated; names are unique.
pub(super) fn relays(raw: Vec<Spanned<RawRelay>>) -> Result<Vec<RelayConfig>, Located> {
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for r in raw {
        let span = r.span();
        // An error without a span of its own points at the [[relay]] header: the line at fault
        // may hold a secret, and the error's snippet would show it.
        let relay = relay(r.into_inner()).map_err(|(at, m)| (at.or(Some(span.clone())), m))?;
        if !names.insert(relay.name.clone()) {
            return Err((
                Some(span),
                format!(
                    "duplicate relay name {:?}: give each [[relay]] a unique name",
                    relay.name
                ),
            ));
        }
        out.push(relay);
    }
    Ok(out)
}

fn relay(r: RawRelay) -> Result<RelayConfig, Located> {
    let at = |s: &Spanned<String>, m: String| (Some(s.span()), m);
    let url = url::Url::parse(r.url.get_ref())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            at(
                &r.url,
                format!(
                    "relay url {:?} is not an http(s) URL",
                    crate::redact::url(r.url.get_ref())
                ),
            )
        })?;
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(at(
            &r.url,
            "relay url: give only Relay's address (no user, password, query or fragment): relayctl authenticates \
             with the SDK keys named in sdk_keys"
                .into(),
        ));
    }
    let name = match &r.name {
        Some(n) if n.get_ref().trim().is_empty() || n.get_ref().chars().any(char::is_control) => {
            return Err(at(
                n,
                "relay name must be non-empty text without control characters".into(),
            ))
        }
        Some(n) => n.get_ref().clone(),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    let mut sdk_keys = BTreeMap::new();
    for (env, var) in r.sdk_keys.unwrap_or_default() {
        let Some((project, environment)) = env.get_ref().split_once('/') else {
            return Err(at(
                &env,
                format!("sdk_keys: {:?} is not \"<project>/<environment>\"", env.get_ref()),
            ));
        };
        for (key, what) in [(project, "project"), (environment, "environment")] {
            let key = Spanned::new(env.span(), key.to_owned());
            check_key(&key, what).map_err(|m| at(&env, format!("sdk_keys: {m}")))?;
        }
        check_variable(&var)?;
        sdk_keys.insert((project.to_owned(), environment.to_owned()), var.into_inner());
    }
    let cache_ttl = match &r.cache_ttl {
        Some(t) => humantime::parse_duration(t.get_ref().trim()).map_err(|e| {
            at(
                t,
                format!(
                    "cache_ttl {:?}: {e}; give Relay's CACHE_TTL, such as 30s",
                    t.get_ref()
                ),
            )
        })?,
        None => DEFAULT_CACHE_TTL,
    };
    Ok(RelayConfig {
        name,
        url,
        sdk_keys,
        cache_ttl,
    })
}

/// An environment variable's name (letters, digits, `_`, not starting with a digit). A value
/// that is an SDK key itself is refused without quoting it.
fn check_variable(var: &Spanned<String>) -> Result<(), Located> {
    let v = var.get_ref();
    if v.starts_with("sdk-") || v.contains('-') {
        return Err((
            None,
            "sdk_keys: this looks like an SDK key itself (not shown). Name the environment variable that holds it, \
             e.g. \"LD_SDK_KEY_PRODUCTION\", and remove the key from this file: it is a secret"
                .into(),
        ));
    }
    let ok = v
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err((
            Some(var.span()),
            "sdk_keys: give the name of the environment variable holding the SDK key (letters, digits and '_', \
             such as LD_SDK_KEY_PRODUCTION)"
                .into(),
        ));
    }
    Ok(())
}
