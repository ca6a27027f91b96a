//! `relayctl show` for plain Redis keys: which stores and keys the arguments select
//! ([`crate::select::parse_key`] parses them), and reading the selected keys from every target
//! of their `redis-keys` store.
//!
//! Only keys are read that the overrides file declares under `[keys.<store>]` or that are named:
//! a `redis-keys` store usually shares its Redis with other data, so listing "every key" (SCAN)
//! would show unrelated keys and be unbounded.

use crate::desired::Config;
use crate::key::{show_key, Held, Key, KeyId};
use crate::settings::Settings;
use crate::show::{view, KeyView};
use crate::store::{Endpoint, Storable, Stores};
use std::collections::BTreeMap;
use std::time::Instant;
use tokio::runtime::Runtime;

/// What to read, per store in the order first named: every declared key (`None`) or the keys
/// named.
pub(super) type KeyGroups = Vec<(String, Option<Vec<String>>)>;

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
    (stores, config): (&Stores, &Config),
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
    let ids: Vec<KeyId> = keys
        .iter()
        .map(|key| KeyId {
            store: store.to_owned(),
            key: (*key).to_owned(),
        })
        .collect();
    let (observed, failures) = rt.block_on(stores.read_each::<Key>(&ids));
    errors.extend(
        failures
            .into_iter()
            .map(|f| format!("cannot read the keys of {f}")),
    );
    let targets = Key::endpoints(stores)
        .iter()
        .filter(|e| e.store() == store)
        .count();
    let mut views = Vec::new();
    for (id, readings) in observed {
        let d = declared.get(id.key.as_str()).copied();
        if d.is_none() && readings.iter().all(|(_, h)| *h == Held::Absent) {
            errors.push(nowhere(stores, &id, &readings));
            continue;
        }
        views.push(view::<Key>(id, readings, d));
    }
    if settings.verbose > 0 {
        settings.status(format!(
            "Read {} key(s) of store {store} from {targets} target(s) in {} ms.",
            keys.len(),
            started.elapsed().as_millis()
        ));
    }
    views
}

/// The error for a key that was named, is not declared, and no target holds.
fn nowhere(stores: &Stores, id: &KeyId, readings: &[(crate::kind::StoreTarget, Held)]) -> String {
    let store = &id.store;
    let looked: Vec<String> = readings.iter().map(|(t, _)| t.to_string()).collect();
    let full = Key::endpoints(stores)
        .iter()
        .find(|e| e.store() == store)
        .map_or_else(|| id.key.clone(), |e| e.full_key(&id.key));
    format!(
        "{store} {}: no target holds this key and [keys.{store}] does not declare it (looked for the Redis \
         key {} on {}). Check the key's name; `relayctl show _keys/{store}` shows the declared keys",
        show_key(&id.key),
        show_key(&full),
        looked.join(", ")
    )
}
