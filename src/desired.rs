//! The overrides file (SPEC §1): its TOML model, validation, and the desired state it declares.
//!
//! Everything that can be checked without touching a store is checked here, and every error names
//! the file, line and column. What a store's settings mean (URL rules, defaults, where each
//! environment's flags live) is its backend's business: this module asks `store::*`. Variation
//! references are kept as written (a value or an index): they can only be resolved against the
//! flag a store holds, which is the planner's job. What keys, store names and reasons may be is
//! in [`keys`].

mod backends;
mod keys;
mod overrides;
mod redis_keys;
mod relays;
mod topology;

pub use keys::check_id;
pub use redis_keys::DeclaredKey;

use crate::flag::{FlagId, VariationRef};
use crate::store::{redis, Prefix, StoreConfig, StoreKind, Template};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The state declared for one flag.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub id: FlagId,
    pub on: bool,
    pub off_variation: Option<VariationRef>,
    pub fallthrough: Option<VariationRef>,
    pub reason: Option<String>,
}

/// The whole overrides file, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub stores: Vec<StoreConfig>,
    /// The journal repository, resolved against the file's directory.
    pub journal: PathBuf,
    /// `[journal] remote`: the shared git remote of a team's journal, if any.
    pub remote: Option<crate::git_url::Remote>,
    /// `[launchdarkly] base_url`, if set.
    pub base_url: Option<String>,
    /// The desired state, sorted by flag.
    pub overrides: Vec<Override>,
    /// The `type = "redis-keys"` stores: plain keys, never LaunchDarkly flags.
    pub key_stores: Vec<crate::store::redis_keys::KeyStoreConfig>,
    /// The `[keys.<store>]` declarations, sorted by store and key.
    pub keys: Vec<DeclaredKey>,
    /// The `[[relay]]`s `relayctl status` asks.
    pub relays: Vec<crate::relay::RelayConfig>,
}

/// The parts of the process environment that the file's meaning depends on.
#[derive(Clone, Default)]
pub struct ConfigEnv {
    /// relayCommander's `REDIS_HOSTS`: `host[:port],host[:port]`.
    pub redis_hosts: Option<String>,
    /// Reads a variable the file names (`password_env`): its value, when set and not empty.
    /// Secrets come from the environment, never from the file. `None`: no variable is set.
    pub var: Option<Var>,
}

/// How the environment is read for a variable the file names.
pub type Var = std::sync::Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl std::fmt::Debug for ConfigEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigEnv")
            .field("redis_hosts", &self.redis_hosts)
            .finish_non_exhaustive()
    }
}

impl ConfigEnv {
    /// The variable `name`, when set and not empty.
    fn var(&self, name: &str) -> Option<String> {
        self.var.as_ref().and_then(|var| var(name))
    }
}

/// An error in the overrides file, located at a line and column.
#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}:{column}: {message}\n{snippet}")]
pub struct ConfigError {
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    snippet: String,
}

impl ConfigError {
    fn at(path: &Path, src: &str, span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        let span = span.unwrap_or(0..0);
        let start = span.start.min(src.len());
        let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = src[start..].find('\n').map_or(src.len(), |i| start + i);
        let line = src[..start].matches('\n').count() + 1;
        let column = src[line_start..start].chars().count() + 1;
        let text = crate::redact::text(&src[line_start..line_end]);
        let width = src[start..span.end.clamp(start, line_end)].chars().count().max(1);
        let gutter = " ".repeat(line.to_string().len());
        let snippet = format!(
            "{gutter} |\n{line} | {text}\n{gutter} | {}{}",
            " ".repeat(column - 1),
            "^".repeat(width)
        );
        ConfigError {
            path: path.display().to_string(),
            line,
            column,
            message: message.into(),
            snippet,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The raw TOML model. Spans are kept where a later check needs to point at a value.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    store: Vec<Spanned<RawStore>>,
    journal: Option<RawJournal>,
    launchdarkly: Option<RawLaunchDarkly>,
    #[serde(default)]
    overrides: BTreeMap<Spanned<String>, RawEnvironments>,
    #[serde(default)]
    keys: redis_keys::RawKeys,
    #[serde(default)]
    relay: Vec<Spanned<relays::RawRelay>>,
}

/// `[overrides.<project>]`: environment -> flag -> declaration.
type RawEnvironments = BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, Spanned<overrides::RawOverride>>>;

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum StoreType {
    Redis,
    Dynamodb,
    File,
    #[serde(rename = "redis-keys")]
    RedisKeys,
}

impl StoreType {
    fn name(self) -> &'static str {
        match self {
            StoreType::Redis => "redis",
            StoreType::Dynamodb => "dynamodb",
            StoreType::File => "file",
            StoreType::RedisKeys => "redis-keys",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    name: Option<Spanned<String>>,
    #[serde(rename = "type")]
    kind: Spanned<StoreType>,
    url: Option<Spanned<String>>,
    urls: Option<Spanned<Vec<Spanned<String>>>>,
    sentinels: Option<Spanned<Vec<Spanned<String>>>>,
    master: Option<Spanned<String>>,
    cluster: Option<Spanned<bool>>,
    password_env: Option<Spanned<String>>,
    sentinel_password_env: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
    prefixes: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    table: Option<Spanned<String>>,
    endpoint_url: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJournal {
    path: Option<Spanned<String>>,
    remote: Option<Spanned<String>>,
    git_fetch_with_cli: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLaunchDarkly {
    base_url: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------------------------

/// Reads and validates the overrides file at `path`.
pub fn load(path: &Path, env: &ConfigEnv) -> anyhow::Result<Config> {
    use anyhow::Context;
    let src = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the overrides file {}; pass another one with -c/--config or RELAYCTL_CONFIG, \
             or start from overrides.toml.example",
            path.display()
        )
    })?;
    Ok(parse(path, &src, env)?)
}

/// Validates the overrides file `src`, read from `path`.
pub fn parse(path: &Path, src: &str, env: &ConfigEnv) -> Result<Config, ConfigError> {
    let err = |span: Option<Range<usize>>, msg: String| ConfigError::at(path, src, span, msg);
    if src.trim().is_empty() {
        return Err(err(
            None,
            "the overrides file is empty: declare at least one [[store]] and the flags under \
             [overrides.<project>.<environment>] (see overrides.toml.example)"
                .into(),
        ));
    }
    // The parser's message may quote a value: a URL with its password.
    let raw: RawFile = toml::from_str(src).map_err(|e| err(e.span(), crate::redact::text(e.message())))?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let (stores, spans, key_stores) = stores(raw.store, &base_dir, env).map_err(|(span, m)| err(span, m))?;
    let keys = redis_keys::declared(raw.keys, &key_stores).map_err(|(span, m)| err(span, m))?;
    let (journal, remote) = raw.journal.map_or((None, None), |j| {
        (j.path, j.remote.map(|r| (r, j.git_fetch_with_cli)))
    });
    let remote = match remote {
        Some((r, cli)) => Some(
            crate::git_url::Remote::parse(r.get_ref(), &base_dir, cli.unwrap_or(false))
                .map_err(|m| err(Some(r.span()), m))?,
        ),
        None => None,
    };
    let journal = match journal {
        Some(p) if p.get_ref().trim().is_empty() => {
            return Err(err(Some(p.span()), "journal.path is empty".into()))
        }
        Some(p) => base_dir.join(p.get_ref()),
        None => base_dir.join("journal"),
    };
    let base_url = match raw.launchdarkly.and_then(|l| l.base_url) {
        Some(u) => {
            let parsed = url::Url::parse(u.get_ref())
                .ok()
                .filter(|p| matches!(p.scheme(), "http" | "https"));
            if parsed.is_none() {
                return Err(err(
                    Some(u.span()),
                    format!(
                        "launchdarkly.base_url {:?} is not an http(s) URL",
                        crate::redact::url(u.get_ref())
                    ),
                ));
            }
            Some(u.into_inner())
        }
        None => None,
    };
    let overrides = overrides::declared(raw.overrides).map_err(|(span, m)| err(span, m))?;
    let relays = relays::relays(raw.relay).map_err(|(span, m)| err(span, m))?;
    for (store, span) in stores.iter().zip(spans) {
        overrides::check_places(store, &overrides).map_err(|m| err(Some(span), m))?;
    }
    Ok(Config {
        stores,
        journal,
        remote,
        base_url,
        overrides,
        key_stores,
        keys,
        relays,
    })
}

type Located = (Option<Range<usize>>, String);

/// The `[[store]]`s that keep LaunchDarkly flags, the span of each, and the `redis-keys` stores.
type Stores = (
    Vec<StoreConfig>,
    Vec<Range<usize>>,
    Vec<redis_keys::KeyStoreConfig>,
);

/// The `[[store]]`s, validated, with the span of each, and the `redis-keys` stores apart.
fn stores(raw: Vec<Spanned<RawStore>>, base_dir: &Path, env: &ConfigEnv) -> Result<Stores, Located> {
    if raw.is_empty() {
        return Err((
            None,
            "no store declared: add at least one [[store]] with type = \"redis\", \"dynamodb\" or \"file\""
                .into(),
        ));
    }
    let mut stores = Vec::new();
    let mut names = BTreeSet::new();
    let mut targets = BTreeSet::new();
    let mut spans = Vec::new();
    let mut key_stores = Vec::new();
    for store in raw {
        let span = store.span();
        let config = store_config(store.into_inner(), base_dir, env)
            .map_err(|(sp, m)| (Some(sp.unwrap_or(span.clone())), m))?;
        let (name, identities) = match &config {
            Parsed::Flags(c) => (&c.name, c.kind.identities()),
            Parsed::Keys(k) => (&k.name, k.identities()),
        };
        if !names.insert(name.clone()) {
            let why = format!("duplicate store name {name:?}: give each [[store]] a unique name");
            return Err((Some(span), why));
        }
        // Two stores must not manage the same flags (keys) of the same server, table or file.
        if let Some(target) = identities.into_iter().find(|t| !targets.insert(t.clone())) {
            let why = format!(
                "store {name:?} repeats the target {target} of an earlier store: list each target once"
            );
            return Err((Some(span), why));
        }
        match config {
            Parsed::Flags(config) => {
                spans.push(span);
                stores.push(config);
            }
            Parsed::Keys(keys) => key_stores.push(keys),
        }
    }
    Ok((stores, spans, key_stores))
}

/// A `[[store]]`: one that keeps LaunchDarkly flags, or a `redis-keys` one.
enum Parsed {
    Flags(StoreConfig),
    Keys(redis_keys::KeyStoreConfig),
}

/// One `[[store]]`: the settings every store type shares, then its type's own.
fn store_config(s: RawStore, base_dir: &Path, env: &ConfigEnv) -> Result<Parsed, Located> {
    let kind = *s.kind.get_ref();
    let name = match &s.name {
        Some(n) if n.get_ref().trim().is_empty() => {
            return Err((Some(n.span()), "store name is empty".into()))
        }
        Some(n) => {
            keys::check_store_name(n)?;
            n.get_ref().clone()
        }
        None => kind.name().to_owned(),
    };
    check_foreign_fields(&s, kind)?;
    let kind = match kind {
        StoreType::Redis => StoreKind::Redis(redis_store(s, &name, env)?),
        StoreType::Dynamodb => StoreKind::DynamoDb(backends::dynamodb_store(s, &name)?),
        StoreType::File => StoreKind::File(backends::file_store(s, &name, base_dir)?),
        StoreType::RedisKeys => return Ok(Parsed::Keys(redis_keys::store(s, name, env)?)),
    };
    Ok(Parsed::Flags(StoreConfig { name, kind }))
}

/// Fields that belong to other store types are mistakes, not silently ignored settings.
fn check_foreign_fields(s: &RawStore, kind: StoreType) -> Result<(), Located> {
    let span = |field: &Option<Spanned<_>>| field.as_ref().map(|v: &Spanned<_>| v.span());
    let mut foreign = Vec::new();
    if !matches!(kind, StoreType::Redis | StoreType::RedisKeys) {
        foreign.extend(s.url.as_ref().map(|v| ("url", v.span())));
        foreign.extend(s.urls.as_ref().map(|v| ("urls", v.span())));
        foreign.extend(s.sentinels.as_ref().map(|v| ("sentinels", v.span())));
        foreign.extend(span(&s.master).map(|sp| ("master", sp)));
        foreign.extend(s.cluster.as_ref().map(|v| ("cluster", v.span())));
        foreign.extend(span(&s.password_env).map(|sp| ("password_env", sp)));
        foreign.extend(span(&s.sentinel_password_env).map(|sp| ("sentinel_password_env", sp)));
    }
    if kind != StoreType::Dynamodb {
        foreign.extend(span(&s.table).map(|sp| ("table", sp)));
        foreign.extend(span(&s.endpoint_url).map(|sp| ("endpoint_url", sp)));
        foreign.extend(span(&s.region).map(|sp| ("region", sp)));
    }
    if kind != StoreType::File {
        foreign.extend(span(&s.path).map(|sp| ("path", sp)));
    } else {
        foreign.extend(span(&s.prefix).map(|sp| ("prefix", sp)));
    }
    match foreign.into_iter().next() {
        Some((field, span)) => Err((
            Some(span),
            format!("`{field}` does not apply to a {} store", kind.name()),
        )),
        None => Ok(()),
    }
}

/// `prefix` and `[store.prefixes]`.
fn prefix(s: &mut RawStore) -> Result<Prefix, Located> {
    let template = match &s.prefix {
        Some(p) => Some(Template::parse(p.get_ref()).map_err(|m| (Some(p.span()), format!("prefix: {m}")))?),
        None => None,
    };
    let mut exact = BTreeMap::new();
    for (key, prefix) in s.prefixes.take().unwrap_or_default() {
        let Some((project, environment)) = key
            .get_ref()
            .split_once('/')
            .filter(|(p, e)| !p.is_empty() && !e.is_empty() && !e.contains('/'))
        else {
            return Err((
                Some(key.span()),
                format!(
                    "[store.prefixes] key {:?} must be \"<project>/<environment>\"",
                    key.get_ref()
                ),
            ));
        };
        if prefix.get_ref().is_empty() {
            return Err((
                Some(prefix.span()),
                format!("the prefix for {:?} is empty", key.get_ref()),
            ));
        }
        exact.insert((project.to_owned(), environment.to_owned()), prefix.into_inner());
    }
    Ok(Prefix { template, exact })
}

/// A `redis` store: `url` or `urls`, else relayCommander's `REDIS_HOSTS`.
fn redis_store(mut s: RawStore, name: &str, env: &ConfigEnv) -> Result<redis::Config, Located> {
    let prefix = prefix(&mut s)?;
    let topology = topology::parse(&s)?;
    let auth = topology::auth(&s, env)?;
    if let Some(urls) = topology::sentinel_urls(&mut s)? {
        return Ok(redis::Config {
            urls,
            prefix,
            topology,
            auth,
        });
    }
    let urls = match (s.url, s.urls) {
        (Some(_), Some(u)) => return Err((Some(u.span()), "set either `url` or `urls`, not both".into())),
        (Some(u), None) => vec![u],
        (None, Some(u)) if u.get_ref().is_empty() => {
            return Err((
                Some(u.span()),
                "`urls` is empty: list at least one redis:// URL".into(),
            ))
        }
        (None, Some(u)) => u.into_inner(),
        (None, None) => {
            let hosts = env
                .redis_hosts
                .as_deref()
                .filter(|h| !h.trim().is_empty())
                .ok_or((
                    None,
                    format!(
                        "redis store {name:?} has no `url`/`urls` and REDIS_HOSTS is not set: \
                         add url = \"redis://host:6379\" or export REDIS_HOSTS=host[:port],host[:port]"
                    ),
                ))?;
            let urls = redis::urls_from_hosts(hosts).map_err(|m| (None, m))?;
            return Ok(redis::Config {
                urls,
                prefix,
                topology,
                auth,
            });
        }
    };
    let mut out = Vec::new();
    for u in urls {
        redis::check_url(u.get_ref()).map_err(|m| (Some(u.span()), m))?;
        out.push(u.into_inner());
    }
    Ok(redis::Config {
        urls: out,
        prefix,
        topology,
        auth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(src: &str) -> Config {
        parse(Path::new("dir/overrides.toml"), src, &ConfigEnv::default()).unwrap()
    }

    fn parse_err(src: &str) -> String {
        parse_err_env(src, &ConfigEnv::default())
    }

    fn parse_err_env(src: &str, env: &ConfigEnv) -> String {
        parse(Path::new("overrides.toml"), src, env)
            .unwrap_err()
            .to_string()
    }

    const STORE: &str = "[[store]]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n";

    #[test]
    fn reads_the_spec_example() {
        let c = parse_ok(
            r#"
[[store]]
name = "relay-redis"
type = "redis"
urls = ["redis://10.0.0.5:6379", "rediss://:secret@10.0.0.6:6380/0"]
prefix = "ld:{project}:{environment}"
[store.prefixes]
"default/staging" = "5f3c0ffee0ddba11"

[[store]]
type = "dynamodb"
table = "ld-relay"
prefix = "ld:{project}:{environment}"

[[store]]
type = "file"
path = "flags/{project}-{environment}.json"

[journal]
path = "journal"

[launchdarkly]
base_url = "https://app.launchdarkly.com"

[overrides.default.production]
new-checkout = { on = false, reason = "INC-4711: checkout returns 500" }
search-v2 = true
pricing-page = { on = false, off_variation = "control" }
recommendations = { on = true, fallthrough = { index = 1 } }
"#,
        );
        assert_eq!(c.stores.len(), 3);
        assert_eq!(c.stores[0].name, "relay-redis");
        assert_eq!(
            c.stores[0].kind.place("default", "production"),
            "prefix \"ld:default:production\""
        );
        assert_eq!(
            c.stores[0].kind.place("default", "staging"),
            "prefix \"5f3c0ffee0ddba11\""
        );
        assert_eq!(c.stores[1].name, "dynamodb");
        assert_eq!(c.stores[2].name, "file");
        assert_eq!(c.journal, Path::new("dir/journal"));
        let flags: Vec<_> = c.overrides.iter().map(|o| o.id.flag.as_str()).collect();
        assert_eq!(
            flags,
            ["new-checkout", "pricing-page", "recommendations", "search-v2"]
        );
        assert_eq!(
            c.overrides[0].reason.as_deref(),
            Some("INC-4711: checkout returns 500")
        );
        assert_eq!(
            c.overrides[1].off_variation,
            Some(VariationRef::Value("control".into()))
        );
        assert_eq!(c.overrides[2].fallthrough, Some(VariationRef::Index(1)));
        assert!(c.overrides[3].on);
    }

    #[test]
    fn the_example_file_is_valid() {
        let c = parse_ok(include_str!("../overrides.toml.example"));
        assert_eq!(c.stores.len(), 3);
        assert_eq!(c.overrides.len(), 5);
    }

    #[test]
    fn default_prefixes_follow_the_sdks() {
        let c = parse_ok(&format!("{STORE}[[store]]\ntype = \"dynamodb\"\ntable = \"t\"\n"));
        assert_eq!(c.stores[0].kind.place("p", "e"), "prefix \"launchdarkly\"");
        assert_eq!(c.stores[1].kind.place("p", "e"), "prefix \"\"");
    }

    #[test]
    fn one_dynamodb_table_per_region() {
        let ddb = |name: &str, region: &str| {
            format!(
                "[[store]]\nname = \"{name}\"\ntype = \"dynamodb\"\ntable = \"t\"\nregion = \"{region}\"\n"
            )
        };
        let c = parse_ok(&(ddb("east", "us-east-1") + &ddb("west", "eu-west-1")));
        assert_eq!(c.stores.len(), 2);
        let e = parse(
            Path::new("o.toml"),
            &(ddb("east", "us-east-1") + &ddb("again", "us-east-1")),
            &ConfigEnv::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("repeats the target"), "{e}");
    }

    #[test]
    fn redis_hosts_fallback() {
        let env = ConfigEnv {
            var: None,
            redis_hosts: Some("10.0.0.1, 10.0.0.2:6380".into()),
        };
        let c = parse(Path::new("o.toml"), "[[store]]\ntype = \"redis\"\n", &env).unwrap();
        let StoreKind::Redis(redis) = &c.stores[0].kind else {
            panic!("{:?}", c.stores[0].kind)
        };
        assert_eq!(redis.urls, ["redis://10.0.0.1:6379", "redis://10.0.0.2:6380"]);
        let e = parse_err_env(
            "[[store]]\ntype = \"redis\"\n",
            &ConfigEnv {
                redis_hosts: Some("h:x".into()),
                var: None,
            },
        );
        // Named by its position, not shown: what follows `:` may be a password.
        assert!(
            e.contains("REDIS_HOSTS entry 1 of 1 is not host[:port]") && !e.contains("h:x"),
            "{e}"
        );
    }

    #[test]
    fn errors_have_file_line_column_and_say_what_is_wrong() {
        for (src, want) in [
            ("", "overrides.toml:1:1: the overrides file is empty"),
            ("   \n", "the overrides file is empty"),
            ("[journal]\npath = \"j\"\n", "no store declared"),
            (
                "[[store]]\ntype = \"mongo\"\n",
                "overrides.toml:2:8: unknown variant `mongo`",
            ),
            (
                "[[store]]\ntype = \"redis\"\n",
                "has no `url`/`urls` and REDIS_HOSTS is not set",
            ),
            (
                "[[store]]\ntype = \"redis\"\nurl = \"http://x\"\n",
                "overrides.toml:3:7: \"http://x/\" is not a redis:// or rediss:// URL",
            ),
            (
                "[[store]]\ntype = \"redis\"\nurl = \"redis://x\"\ncolour = 1\n",
                "overrides.toml:4:1: unknown field `colour`",
            ),
            (
                "[[store]]\ntype = \"redis\"\nurl = \"redis://x\"\ntable = \"t\"\n",
                "overrides.toml:4:9: `table` does not apply to a redis store",
            ),
            (
                "[[store]]\ntype = \"redis\"\nurl = \"redis://x\"\nprefix = \"ld:{proj}\"\n",
                "overrides.toml:4:10: prefix: unknown placeholder {proj}",
            ),
            (
                "[[store]]\ntype = \"redis\"\nurl = \"redis://x\"\nprefix = \"ld:{project\"\n",
                "unbalanced '{'",
            ),
            (
                &format!("{STORE}{STORE}"),
                "overrides.toml:4:1: duplicate store name \"redis\"",
            ),
            (
                &format!(
                    "{STORE}[[store]]\nname = \"b\"\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n"
                ),
                "repeats the target redis://127.0.0.1:6379",
            ),
            ("[[store]]\ntype = \"file\"\n", "file store \"file\" needs `path`"),
            (
                "[[store]]\ntype = \"dynamodb\"\n",
                "dynamodb store \"dynamodb\" needs `table`",
            ),
            (
                &format!("{STORE}[overrides.p.e]\nf = \"yes\"\n"),
                "overrides.toml:5:5: invalid type: string \"yes\", expected a boolean or a table",
            ),
            (
                &format!("{STORE}[overrides.p.e]\nf = {{ on = \"off\" }}\n"),
                "invalid type: string \"off\", expected a boolean",
            ),
            (
                &format!("{STORE}[overrides.p.e]\nf = {{ reason = \"x\" }}\n"),
                "missing field `on`",
            ),
            (
                &format!("{STORE}[overrides.p.e]\nf = {{ on = true, colour = 1 }}\n"),
                "unknown field `colour`",
            ),
            (
                &format!("{STORE}[overrides.p.e]\nf = {{ on = true, fallthrough = {{ idx = 1 }} }}\n"),
                "unknown field `idx`",
            ),
            (
                &format!("{STORE}[overrides.p.e]\nf = {{ on = true, fallthrough = {{ index = -1 }} }}\n"),
                "invalid value",
            ),
            (
                &format!("{STORE}[overrides.p.e]\n\"../x\" = true\n"),
                "overrides.toml:5:1: flag key \"../x\" is not a LaunchDarkly key",
            ),
            (
                &format!("{STORE}[overrides.p.e]\nf = true\nf = false\n"),
                "duplicate key",
            ),
            (
                &format!("{STORE}[overrides.p.e]\n{} = true\n", "f".repeat(251)),
                "overrides.toml:5:1: flag key ffffffffffffffffffff... is 251 characters long: the journal keeps \
                 it in a file <flag>.toml, so it may have at most 250",
            ),
            (
                &format!("{STORE}[overrides.{}.e]\nf = true\n", "p".repeat(256)),
                "project key pppppppppppppppppppp... is 256 characters long",
            ),
            (
                &format!("{STORE}[overrides.p.e]\nf = {{ on = true, reason = \"INC \\u0000 x\" }}\n"),
                "overrides.toml:5:27: the reason of flag f contains a NUL character",
            ),
            (
                "[[store]]\nname = \"a\\nb\"\ntype = \"redis\"\nurl = \"redis://x\"\n",
                "overrides.toml:2:8: store name \"a\\nb\" contains a line break",
            ),
            (
                "[[store]]\nname = \"a\\u0000b\"\ntype = \"redis\"\nurl = \"redis://x\"\n",
                "overrides.toml:2:8: store name \"a\\0b\" contains a line break, a NUL",
            ),
            (
                "[[store]]\ntype = \"redis\"\nurl = \"redis://:hunter2@x/abc\"\n",
                "the path must be a database number",
            ),
        ] {
            let e = parse_err(src);
            assert!(e.contains(want), "for {src:?}\nwant: {want}\ngot:  {e}");
            assert!(!e.contains("hunter2"), "password leaked: {e}");
        }
    }

    #[test]
    fn the_longest_keys_the_journal_holds_are_accepted() {
        let src = format!(
            "{STORE}[overrides.{}.{}]\n{} = true\n",
            "p".repeat(255),
            "e".repeat(255),
            "f".repeat(250)
        );
        assert_eq!(parse_ok(&src).overrides.len(), 1);
        let id = |flag: &str| FlagId {
            project: "p".into(),
            environment: "e".into(),
            flag: flag.into(),
        };
        assert!(check_id(&id("ok")).is_ok());
        for bad in ["a/b", "", "..", &"f".repeat(251)] {
            assert!(check_id(&id(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_empty_reason_loads_as_the_placeholder_import_leaves() {
        let c = parse_ok(&format!(
            "{STORE}[overrides.p.e]\nf = {{ on = true, reason = \"\" }}\ng = {{ on = true, reason = \"  \" }}\nh = true\n\
             i = {{ on = true, reason = \"\\u200B\\u2060 \\u200D\" }}\nj = {{ on = true, reason = \" \\u200B INC-1\" }}\n"
        ));
        let reasons: Vec<_> = c.overrides.iter().map(|o| o.reason.as_deref()).collect();
        // Nothing visible is nothing said.
        assert_eq!(
            reasons,
            [Some(""), Some(""), None, Some(""), Some("\u{200b} INC-1")]
        );
    }

    #[test]
    fn error_snippet_points_at_the_value() {
        let e = parse_err("[[store]]\ntype = \"mongo\"\n");
        assert!(e.ends_with("2 | type = \"mongo\"\n  |        ^^^^^^^"), "{e}");
    }
}
