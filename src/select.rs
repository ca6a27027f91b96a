//! What the commands' arguments select: `PROJECT/ENV[/FLAG]` for flags, and for plain Redis keys
//! `STORE` or `_keys/STORE[/KEY]` (the journal's own folder). Pure: each is parsed here, once,
//! for `show`, `import` and `status` alike, and hostile text is quoted in every error.
//!
//! Key selectors are checked first, in this order (a flag selector always has a `/` after its
//! project, and no LaunchDarkly project key starts with `_`, so none of these can be read as a
//! flag selector): `_keys/STORE` or `_keys/STORE/KEY`, where STORE is matched against the
//! `redis-keys` stores' names, the longest that fits (a name may hold `/`), and the rest is the
//! key, as it is; `STORE`, an argument with no `/`: a `redis-keys` store's name; anything else is
//! `PROJECT/ENV[/FLAG]`.

use crate::flag::is_key;
use crate::key::FOLDER;
use anyhow::{bail, Result};

/// A `PROJECT/ENV[/FLAG]` argument.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub project: String,
    pub environment: String,
    pub flag: Option<String>,
}

/// Parses a `PROJECT/ENV[/FLAG]` argument; each part must be a LaunchDarkly key.
pub fn parse_selector(raw: &str) -> Result<Selector> {
    let parts: Vec<&str> = raw.split('/').collect();
    if !(2..=3).contains(&parts.len()) {
        bail!(
            "{raw:?} is not PROJECT/ENV or PROJECT/ENV/FLAG; for example default/production or \
             default/production/new-checkout"
        );
    }
    if let Some(bad) = parts.iter().find(|p| !is_key(p)) {
        bail!(
            "{raw:?}: {bad:?} is not a LaunchDarkly key (letters, digits, '.', '_' and '-', starting with a \
             letter or digit); give PROJECT/ENV or PROJECT/ENV/FLAG"
        );
    }
    Ok(Selector {
        project: parts[0].to_owned(),
        environment: parts[1].to_owned(),
        flag: parts.get(2).map(|f| (*f).to_owned()),
    })
}

/// The `redis-keys` store (and key) `raw` selects, or `None` for a flag selector.
/// `stores` are the names of the `redis-keys` stores.
pub fn parse_key(raw: &str, stores: &[&str]) -> Result<Option<(String, Option<String>)>> {
    let known = || match stores.len() {
        0 => "the overrides file has no redis-keys store".to_owned(),
        _ => {
            let names: Vec<String> = stores.iter().map(|s| format!("{s:?}")).collect();
            format!("the redis-keys stores are {}", names.join(", "))
        }
    };
    if let Some(rest) = raw.strip_prefix(FOLDER).and_then(|r| r.strip_prefix('/')) {
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

/// Selections grouped by what they select in (an environment, a store), in the order first
/// named: every item there (`None`) or the items named. A whole group wins over items named in it.
pub fn group<G: PartialEq, I: PartialEq>(
    selected: impl IntoIterator<Item = (G, Option<I>)>,
) -> Vec<(G, Option<Vec<I>>)> {
    let mut groups: Vec<(G, Option<Vec<I>>)> = Vec::new();
    for (g, item) in selected {
        let i = match groups.iter().position(|(e, _)| *e == g) {
            Some(i) => i,
            None => {
                groups.push((g, Some(Vec::new())));
                groups.len() - 1
            }
        };
        match (&mut groups[i].1, item) {
            (Some(items), Some(item)) if !items.contains(&item) => items.push(item),
            (only, None) => *only = None,
            _ => {}
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(raw: &str) -> Selector {
        parse_selector(raw).unwrap()
    }

    #[test]
    fn selectors_parse_and_refuse_what_is_not_a_key() {
        assert_eq!(
            sel("default/production/new-checkout"),
            Selector {
                project: "default".into(),
                environment: "production".into(),
                flag: Some("new-checkout".into())
            }
        );
        assert_eq!(sel("default/production").flag, None);
        for (bad, why) in [
            ("default", "is not PROJECT/ENV"),
            ("a/b/c/d", "is not PROJECT/ENV"),
            ("default//x", "\"\" is not a LaunchDarkly key"),
            ("default/../x", "\"..\" is not a LaunchDarkly key"),
            ("default/prod/a\u{1b}[2J", "is not a LaunchDarkly key"),
        ] {
            let e = parse_selector(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(!e.contains('\u{1b}'), "escaped: {e}");
        }
    }

    #[test]
    fn key_selectors_never_read_as_flag_selectors() {
        let s = ["meow-blue", "meow", "a/b"];
        let p = |raw: &str| parse_key(raw, &s).map_err(|e| e.to_string());
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
    fn selectors_group_per_environment_and_a_whole_environment_wins() {
        let selected = [sel("p/e/a"), sel("p/f"), sel("p/e/b"), sel("p/e/a"), sel("p/f/x")];
        let groups = group(selected.into_iter().map(|s| ((s.project, s.environment), s.flag)));
        assert_eq!(
            groups,
            vec![
                (("p".into(), "e".into()), Some(vec!["a".into(), "b".into()])),
                (("p".into(), "f".into()), None),
            ]
        );
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
