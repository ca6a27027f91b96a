//! `type = "redis-keys"` stores and their `[keys.<store>]` tables (SPEC §1 "Plain Redis keys"):
//! feature flags kept as plain Redis string keys (`RECENT = "ON"`), declared by store name.
//!
//! A value is a string, as Redis holds it: a TOML integer or boolean is refused (naming the key
//! and saying to quote it) rather than guessed at, since `1`, `1.0` and `true` are different
//! bytes to whoever reads the key. A key name is any text; it must only be one the journal can
//! record ([`crate::journal::check_key_names`]), which is checked here, before anything is read.

use super::{check_foreign_fields, redis_store, ConfigEnv, Located, RawStore, StoreType};
pub use crate::store::redis_keys::KeyStoreConfig;
use std::collections::BTreeMap;
use toml::Spanned;

/// `[keys.<store>]`: store name -> key -> declaration (checked by [`declared`]).
pub(super) type RawKeys = BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, Spanned<toml::Value>>>;

/// One declared plain key: the value it must hold (`None`: it must not exist).
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredKey {
    /// The `redis-keys` store's name.
    pub store: String,
    /// The key as declared, without the store's prefix.
    pub key: String,
    pub value: Option<String>,
    pub reason: Option<String>,
}

/// A `redis-keys` store: the `redis` store's URL rules (url, urls, REDIS_HOSTS, TLS, password),
/// and a literal `prefix` put before every key (no `{project}` template: keys have no project).
pub(super) fn store(mut s: RawStore, name: String, env: &ConfigEnv) -> Result<KeyStoreConfig, Located> {
    check_foreign_fields(&s, StoreType::RedisKeys)?;
    if let Some((k, _)) = s.prefixes.as_ref().and_then(|p| p.iter().next()) {
        return Err((
            Some(k.span()),
            "`prefixes` does not apply to a redis-keys store: its `prefix` is put before every key".into(),
        ));
    }
    let prefix = s.prefix.take().map(Spanned::into_inner).unwrap_or_default();
    let redis = redis_store(s, &name, env)?;
    Ok(KeyStoreConfig { name, redis, prefix })
}

/// The `[keys.<store>]` declarations, sorted by store and key.
pub(super) fn declared(raw: RawKeys, stores: &[KeyStoreConfig]) -> Result<Vec<DeclaredKey>, Located> {
    let mut out = Vec::new();
    for (store, keys) in raw {
        if !stores.iter().any(|s| s.name == *store.get_ref()) {
            let known: Vec<String> = stores.iter().map(|s| format!("{:?}", s.name)).collect();
            let known = match known.is_empty() {
                true => "there is none".to_owned(),
                false => format!("the redis-keys stores are {}", known.join(", ")),
            };
            return Err((
                Some(store.span()),
                format!(
                    "[keys.{}] names no redis-keys store ({known}): add a [[store]] with name = {:?} and \
                     type = \"redis-keys\", or fix the table's name",
                    store.get_ref(),
                    store.get_ref()
                ),
            ));
        }
        for (key, decl) in keys {
            crate::names::check_key(store.get_ref(), key.get_ref()).map_err(|m| (Some(key.span()), m))?;
            let span = decl.span();
            let (value, reason) =
                declaration(key.get_ref(), decl.into_inner()).map_err(|m| (Some(span.clone()), m))?;
            if reason.as_deref().is_some_and(|r| r.contains('\0')) {
                return Err((
                    Some(span),
                    format!(
                        "the reason of key {:?} contains a NUL character, which the journal cannot record: remove it",
                        key.get_ref()
                    ),
                ));
            }
            out.push(DeclaredKey {
                store: store.get_ref().clone(),
                key: key.get_ref().clone(),
                value,
                reason: reason.as_deref().map(super::keys::reason),
            });
        }
    }
    Ok(out)
}

/// `KEY = "value"`, `KEY = { value = "1", reason = "..." }` or `KEY = { absent = true }`.
fn declaration(key: &str, v: toml::Value) -> Result<(Option<String>, Option<String>), String> {
    let quote = |v: &toml::Value| {
        format!(
            "key {key:?} is declared as {} {v}: Redis keys hold strings, so quote it (\"{}\") to say \
             exactly which bytes the key must hold",
            v.type_str(),
            v.to_string().trim_matches('"')
        )
    };
    let table = match v {
        toml::Value::String(s) => return Ok((Some(s), None)),
        toml::Value::Table(t) => t,
        other @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_)) => {
            return Err(quote(&other))
        }
        other => {
            return Err(format!(
                "key {key:?} is declared as {} {other}: declare a string, {{ value = \"...\", reason = \"...\" }} \
                 or {{ absent = true }}",
                other.type_str()
            ))
        }
    };
    let mut value = None;
    let mut absent = false;
    let mut reason = None;
    for (field, v) in table {
        match (field.as_str(), v) {
            ("value", toml::Value::String(s)) => value = Some(s),
            ("value", other) => return Err(quote(&other)),
            ("absent", toml::Value::Boolean(b)) => absent = b,
            ("reason", toml::Value::String(r)) => reason = Some(r),
            ("absent" | "reason", other) => {
                return Err(format!(
                    "key {key:?}: `{field}` must be a {}, not {} {other}",
                    if field == "absent" { "boolean" } else { "string" },
                    other.type_str()
                ))
            }
            (unknown, _) => {
                return Err(format!(
                    "key {key:?}: unknown field `{unknown}`, expected `value`, `absent` or `reason`"
                ))
            }
        }
    }
    match (value, absent) {
        (Some(_), true) => Err(format!(
            "key {key:?} declares both a value and absent = true: keep one"
        )),
        (None, false) => Err(format!(
            "key {key:?} declares no value: give value = \"...\", or absent = true for a key that must not exist"
        )),
        (value, _) => Ok((value, reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Config, ConfigEnv};
    use std::path::Path;

    fn load(src: &str) -> Result<Config, String> {
        parse(Path::new("overrides.toml"), src, &ConfigEnv::default()).map_err(|e| e.to_string())
    }

    const KEYS: &str = "[[store]]\nname = \"k\"\ntype = \"redis-keys\"\nurl = \"redis://127.0.0.1:6379\"\n";

    #[test]
    fn key_stores_are_kept_apart_from_flag_stores() {
        let c = load(&format!(
            "{KEYS}prefix = \"{{meow}}:\"\n[[store]]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n\
             [keys.k]\nRECENT = \"ON\"\nold = {{ absent = true, reason = \" INC-1 \" }}\n"
        ))
        .unwrap();
        assert_eq!(c.stores.len(), 1, "a redis-keys store receives no flags");
        assert_eq!(c.key_stores[0].prefix, "{meow}:", "the prefix is taken as it is");
        assert_eq!(c.keys.len(), 2);
        assert_eq!(c.keys[0].value.as_deref(), Some("ON"));
        assert_eq!(c.keys[1].value, None);
        assert_eq!(c.keys[1].reason.as_deref(), Some("INC-1"));
        let only_keys = load(KEYS).unwrap();
        assert!(only_keys.stores.is_empty() && only_keys.keys.is_empty());
    }

    #[test]
    fn mistakes_name_the_field_or_the_store() {
        for (src, want) in [
            (format!("{KEYS}[store.prefixes]\n\"p/e\" = \"x\"\n"), "`prefixes` does not apply to a redis-keys store"),
            (format!("{KEYS}path = \"x\"\n"), "`path` does not apply to a redis-keys store"),
            (format!("{KEYS}{KEYS}"), "duplicate store name \"k\""),
            (
                format!("{KEYS}[[store]]\nname = \"j\"\ntype = \"redis-keys\"\nurl = \"redis://127.0.0.1:6379\"\n"),
                "repeats the target redis://127.0.0.1:6379 (keys prefixed \"\")",
            ),
            (format!("{KEYS}[keys.k]\nx = [\"a\"]\n"), "key \"x\" is declared as array"),
            (format!("{KEYS}[keys.k]\nx = {{ absent = \"yes\" }}\n"), "`absent` must be a boolean"),
            (format!("{KEYS}[keys.k]\nx = {{ value = \"1\", reason = \"a\\u0000b\" }}\n"), "contains a NUL"),
            ("[[store]]\ntype = \"redis-keys\"\n".to_owned(), "redis store \"redis-keys\" has no `url`/`urls`"),
        ] {
            let e = load(&src).unwrap_err();
            assert!(e.contains(want), "{src}\nwant: {want}\ngot: {e}");
        }
    }
}
