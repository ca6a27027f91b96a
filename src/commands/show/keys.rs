//! `relayctl show` for plain Redis keys: which arguments select keys, and reading the selected
//! keys from every target of their `redis-keys` store through the keys' own reader
//! ([`KeyEndpoint::read`]).
//!
//! Only keys are read that the overrides file declares under `[keys.<store>]` or that are named:
//! a `redis-keys` store usually shares its Redis with other data, so listing "every key" (SCAN)
//! would show unrelated keys and be unbounded.
//!
//! Selectors, checked in this order (a flag selector always has a `/` after its project, and no
//! LaunchDarkly project key starts with `_`, so none of these can be read as a flag selector):
//! - `_keys/STORE` or `_keys/STORE/KEY` (the journal's own folder): STORE is matched against the
//!   `redis-keys` stores' names, the longest that fits (a name may hold `/`), and the rest is
//!   the key, as it is;
//! - `STORE`, an argument with no `/`: a `redis-keys` store's name;
//! - anything else is `PROJECT/ENV[/FLAG]`.

use crate::desired::Config;
use crate::flag::StoreTarget;
use crate::keys::show_key;
use crate::settings::Settings;
use crate::show::keys::{view, KeyView};
use crate::store::redis_keys::{Held, KeyEndpoint, KeyStores};
use anyhow::{bail, Result};
use futures::future::join_all;
use std::collections::BTreeMap;
use std::time::Instant;
use tokio::runtime::Runtime;

/// The journal's folder for keys, and the prefix of a key selector.
const PREFIX: &str = "_keys/";

/// What to read, per store in the order first named: every declared key (`None`) or the keys
/// named.
pub(super) type KeyGroups = Vec<(String, Option<Vec<String>>)>;

/// The `redis-keys` store (and key) `raw` selects, or `None` for a flag selector.
/// `stores` are the names of the `redis-keys` stores.
pub(in crate::commands) fn parse(raw: &str, stores: &[&str]) -> Result<Option<(String, Option<String>)>> {
    let known = || match stores.len() {
        0 => "the overrides file has no redis-keys store".to_owned(),
        _ => {
            let names: Vec<String> = stores.iter().map(|s| format!("{s:?}")).collect();
            format!("the redis-keys stores are {}", names.join(", "))
        }
    };
    if let Some(rest) = raw.strip_prefix(PREFIX) {
        let found = stores
            .iter()
            .filter_map(|s| match rest.strip_prefix(s) {
                Some("") => Some(((*s).to_owned(), None)),
                Some(key) => key
                    .strip_prefix('/')
                    .map(|k| ((*s).to_owned(), Some(k.to_owned()))),
                None => None,
            })
            .max_by_key(|(name, _)| name.len());
        return match found {
            Some((store, Some(key))) if key.is_empty() => bail!(
                "{raw:?} names no key after the store {store:?}: give _keys/{store} for every declared key, or \
                 _keys/{store}/KEY for one"
            ),
            Some(found) => Ok(Some(found)),
            None => bail!(
                "{raw:?} names no redis-keys store ({}): select plain keys as _keys/STORE or _keys/STORE/KEY",
                known()
            ),
        };
    }
    if raw.contains('/') {
        return Ok(None);
    }
    match stores.iter().find(|s| **s == raw) {
        Some(s) => Ok(Some(((*s).to_owned(), None))),
        None => bail!(
            "{raw:?} is not PROJECT/ENV or PROJECT/ENV/FLAG (for example default/production), and names no \
             redis-keys store ({})",
            known()
        ),
    }
}

/// Groups key selections per store; a whole store wins over keys named in it.
pub(super) fn group(selected: Vec<(String, Option<String>)>) -> KeyGroups {
    let mut groups: KeyGroups = Vec::new();
    for (store, key) in selected {
        let i = match groups.iter().position(|(s, _)| *s == store) {
            Some(i) => i,
            None => {
                groups.push((store, Some(Vec::new())));
                groups.len() - 1
            }
        };
        match (&mut groups[i].1, key) {
            (Some(keys), Some(key)) if !keys.contains(&key) => keys.push(key),
            (only, None) => *only = None,
            _ => {}
        }
    }
    groups
}

/// With no argument: every `redis-keys` store that declares a key.
pub(super) fn declared_stores(config: &Config) -> KeyGroups {
    config
        .key_stores
        .iter()
        .filter(|s| config.keys.iter().any(|k| k.store == s.name))
        .map(|s| (s.name.clone(), None))
        .collect()
}

/// Reads one store's selected keys from each of its targets and builds their views, sorted by
/// key; what cannot be read, or is named and held nowhere, goes to `errors`.
pub(super) fn store_views(
    settings: &Settings,
    rt: &Runtime,
    (stores, config): (&KeyStores, &Config),
    (store, only): (&str, Option<&[String]>),
    errors: &mut Vec<String>,
) -> Vec<KeyView> {
    let started = Instant::now();
    let declared: BTreeMap<&str, _> = config
        .keys
        .iter()
        .filter(|d| d.store == store)
        .map(|d| (d.key.as_str(), d))
        .collect();
    let mut keys: Vec<&str> = match only {
        Some(only) => only.iter().map(String::as_str).collect(),
        None => declared.keys().copied().collect(),
    };
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        errors.push(format!(
            "store {store:?}: the overrides file declares no key under [keys.{store}], and show reads declared \
             keys only (listing a shared Redis would show unrelated keys): declare them, or name one as \
             _keys/{store}/KEY"
        ));
        return Vec::new();
    }
    let endpoints: Vec<&KeyEndpoint> = stores.endpoints().iter().filter(|e| e.store() == store).collect();
    let reads = rt.block_on(join_all(endpoints.iter().map(|e| read(e, &keys))));
    let mut readings: BTreeMap<&str, Vec<(StoreTarget, Held)>> = BTreeMap::new();
    for (e, result) in endpoints.iter().zip(reads) {
        match result {
            Ok(held) => {
                for (key, held) in keys.iter().zip(held) {
                    readings.entry(key).or_default().push((e.target(), held));
                }
            }
            Err(err) => errors.push(format!("cannot read the keys of {}: {err:#}", e.target())),
        }
    }
    let mut views = Vec::new();
    for (key, readings) in readings {
        let d = declared.get(key).copied();
        if d.is_none() && readings.iter().all(|(_, h)| *h == Held::Absent) {
            let looked: Vec<String> = readings.iter().map(|(t, _)| t.to_string()).collect();
            errors.push(format!(
                "{store} {}: no target holds this key and [keys.{store}] does not declare it (looked for the Redis \
                 key {} on {}). Check the key's name; `relayctl show _keys/{store}` shows the declared keys",
                show_key(key),
                show_key(&endpoints[0].full_key(key)),
                looked.join(", ")
            ));
            continue;
        }
        views.push(view(store, key, &readings, d));
    }
    if settings.verbose > 0 {
        settings.status(format!(
            "Read {} key(s) of store {store} from {} target(s) in {} ms.",
            keys.len(),
            endpoints.len(),
            started.elapsed().as_millis()
        ));
    }
    views
}

/// What each of `keys` holds on one target, a pipeline per batch.
async fn read(e: &KeyEndpoint, keys: &[&str]) -> Result<Vec<Held>> {
    let mut held = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(crate::keys::apply::BATCH) {
        held.extend(e.read(chunk).await?);
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn key_selectors_never_read_as_flag_selectors() {
        let s = ["meow-blue", "meow", "a/b"];
        let p = |raw: &str| parse(raw, &s).map_err(|e| e.to_string());
        let some = |store: &str, key: Option<&str>| Ok(Some((store.to_owned(), key.map(str::to_owned))));
        assert_eq!(p("meow-blue"), some("meow-blue", None));
        assert_eq!(p("_keys/meow-blue"), some("meow-blue", None));
        assert_eq!(p("_keys/meow-blue/RECENT"), some("meow-blue", Some("RECENT")));
        assert_eq!(
            p("_keys/meow/x/y"),
            some("meow", Some("x/y")),
            "the key is the rest, as it is"
        );
        assert_eq!(
            p("_keys/a/b/k"),
            some("a/b", Some("k")),
            "the longest store name wins"
        );
        assert_eq!(
            p("meow-blue/production"),
            Ok(None),
            "PROJECT/ENV stays a flag selector"
        );
        assert_eq!(p("default/production/x"), Ok(None));
        for (bad, want) in [
            ("default", "\"default\" is not PROJECT/ENV or PROJECT/ENV/FLAG"),
            (
                "_keys/nope/K",
                "names no redis-keys store (the redis-keys stores are \"meow-blue\"",
            ),
            ("_keys/meow-blue/", "names no key after the store \"meow-blue\""),
            ("_keys/x\u{1b}[2J", "\\u{1b}"),
        ] {
            let e = p(bad).unwrap_err();
            assert!(e.contains(want), "{bad:?}: {e}");
            assert!(!e.contains('\u{1b}'));
        }
    }

    #[test]
    fn a_whole_store_wins_over_its_named_keys() {
        let sel = |s: &str, k: Option<&str>| (s.to_owned(), k.map(str::to_owned));
        let groups = group(vec![
            sel("a", Some("x")),
            sel("b", Some("y")),
            sel("a", None),
            sel("b", Some("y")),
        ]);
        assert_eq!(
            groups,
            vec![("a".into(), None), ("b".into(), Some(vec!["y".into()]))]
        );
    }
}
