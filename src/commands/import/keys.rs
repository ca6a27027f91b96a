//! `relayctl import _keys/STORE/KEY...`: the `[keys.<store>]` declarations of plain Redis keys'
//! current values, printed ready to paste (`KEY = "value"`). Read through the keys' own reader,
//! every target of the store; all or nothing, like flags: a key that is absent, not a string,
//! not UTF-8 text, or held differently by the targets is an error naming it, and then nothing
//! is printed. `--write` does not add keys (yet).

use crate::desired::Config;
use crate::exit::Exit;
use crate::import::basic_string;
use crate::key::{Held, Key, KeyId, FOLDER};
use crate::select::parse_key;
use crate::settings::Settings;
use crate::store::Stores;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use tokio::runtime::Runtime;

/// Whether `args` name plain keys (`_keys/...`) rather than flags.
pub(super) fn named(args: &[String]) -> bool {
    args.iter()
        .any(|a| a.strip_prefix(FOLDER).is_some_and(|r| r.starts_with('/')))
}

/// Prints the declarations of the keys `args` name.
pub(super) fn run(
    settings: &Settings,
    rt: &Runtime,
    (config, stores): (&Config, &Stores),
    args: &[String],
    write: bool,
) -> Result<Exit> {
    let names: Vec<&str> = config.key_stores.iter().map(|s| s.name.as_str()).collect();
    let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for raw in args {
        match parse_key(raw, &names)? {
            Some((store, Some(key))) => {
                let keys = wanted.entry(store).or_default();
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            Some((store, None)) => bail!(
                "{raw:?} names no key: import takes _keys/STORE/KEY, e.g. _keys/{store}/RECENT (`relayctl show \
                 _keys/{store}` shows the declared keys)"
            ),
            None => bail!("{raw:?} is a flag, and the other arguments plain keys: import flags and keys in separate runs"),
        }
    }
    if write {
        bail!(
            "--write does not add plain keys yet: run the same import without --write and paste what it prints \
             under the [keys.<store>] table it names"
        );
    }
    let (mut out, mut problems) = (String::new(), Vec::new());
    for (store, keys) in &wanted {
        let ids: Vec<KeyId> = keys
            .iter()
            .map(|key| KeyId {
                store: store.clone(),
                key: key.clone(),
            })
            .collect();
        let (observed, failures) = rt.block_on(stores.read_each::<Key>(&ids));
        if let Some(failure) = failures.first() {
            bail!("cannot read the keys of {failure}; nothing was imported");
        }
        let _ = writeln!(out, "# under [keys.{}]", toml_key(store));
        for id in &ids {
            let held = observed.get(id).map(Vec::as_slice).unwrap_or_default();
            match value(held) {
                Ok(v) => {
                    let _ = writeln!(out, "{} = {}", toml_key(&id.key), basic_string(v));
                }
                Err(why) => problems.push(format!("{id}: {why}")),
            }
        }
    }
    super::refuse(&problems, "key(s)")?;
    crate::ui::out::print(&out)?;
    settings.status("Paste these under the [keys.<store>] table named above them; `relayctl plan` then shows no change for them.");
    Ok(Exit::Success)
}

/// The one string every target holds, or why there is none to declare.
fn value(held: &[(crate::kind::StoreTarget, Held)]) -> Result<&str, String> {
    if held.windows(2).any(|w| w[0].1 != w[1].1) {
        let each: Vec<String> = held.iter().map(|(t, h)| format!("{t} holds {h}")).collect();
        return Err(format!(
            "the targets disagree ({}): make them agree first",
            each.join(", ")
        ));
    }
    match held.first().map(|(_, h)| h) {
        Some(Held::Value(v)) => std::str::from_utf8(v)
            .map_err(|_| format!("it holds {}, bytes that are not UTF-8 text, which TOML cannot hold", held[0].1)),
        Some(Held::Absent) | None => Err(
            "no target holds this key: nothing to import (declare { absent = true } by hand if it must not exist)".into(),
        ),
        Some(other) => Err(format!("it holds {other}, not a string; relayctl manages string keys only")),
    }
}

/// A TOML key: bare when it can be, else a quoted string.
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match bare {
        true => key.to_owned(),
        false => basic_string(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_text_reads_back_as_the_same_text_and_prints_safely() {
        let hostile = "a\"b\\c\nd\u{1b}[2J\u{202e}\u{9b}é";
        let line = format!("{} = {}", toml_key(hostile), basic_string(hostile));
        assert!(!line.contains('\u{1b}') && !line.contains('\u{202e}') && !line.contains('\u{9b}'));
        let back: toml::Table = line.parse().unwrap();
        assert_eq!(back[hostile].as_str(), Some(hostile));
        assert_eq!(toml_key("RECENT"), "RECENT");
        assert_eq!(toml_key("meow:x"), "\"meow:x\"");
    }
}
