//! The overrides file (SPEC §1): its TOML model, validation, and the desired state it declares.
//!
//! Everything that can be checked without touching a store is checked here, and every error names
//! the file, line and column. Variation references are kept as written (a value or an index): they
//! can only be resolved against the flag a store holds, which is the planner's job.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The Redis prefix the SDKs and Relay use when none is configured (facts §1).
pub const DEFAULT_REDIS_PREFIX: &str = "launchdarkly";

/// One flag in one environment of one project: the unit of desired state and of journal commits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, Deserialize)]
pub struct FlagId {
    pub project: String,
    pub environment: String,
    pub flag: String,
}

impl fmt::Display for FlagId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.project, self.environment, self.flag)
    }
}

/// A variation named in the overrides file: by the value it serves, or by its index.
#[derive(Debug, Clone, PartialEq)]
pub enum VariationRef {
    Value(serde_json::Value),
    Index(usize),
}

impl fmt::Display for VariationRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VariationRef::Value(v) => write!(f, "{v}"),
            VariationRef::Index(i) => write!(f, "{{ index = {i} }}"),
        }
    }
}

/// The state declared for one flag.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub id: FlagId,
    pub on: bool,
    pub off_variation: Option<VariationRef>,
    pub fallthrough: Option<VariationRef>,
    pub reason: Option<String>,
}

/// A `{project}` / `{environment}` template (store prefixes and file paths).
#[derive(Debug, Clone, PartialEq)]
pub struct Template(String);

impl Template {
    /// Validates the placeholders of `raw`.
    pub fn parse(raw: &str) -> Result<Template, String> {
        let mut rest = raw;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(format!("unbalanced '}}' in template {raw:?}"));
            }
            let Some(close) = rest[open..].find('}') else {
                return Err(format!("unbalanced '{{' in template {raw:?}"));
            };
            let name = &rest[open + 1..open + close];
            if name != "project" && name != "environment" {
                return Err(format!(
                    "unknown placeholder {{{name}}} in template {raw:?}; only {{project}} and {{environment}} are replaced"
                ));
            }
            rest = &rest[open + close + 1..];
        }
        Ok(Template(raw.to_owned()))
    }

    /// The template with its placeholders replaced.
    pub fn render(&self, project: &str, environment: &str) -> String {
        self.0
            .replace("{project}", project)
            .replace("{environment}", environment)
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a store derives the key prefix of a project/environment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prefix {
    template: Option<Template>,
    exact: BTreeMap<(String, String), String>,
}

impl Prefix {
    /// The prefix for a project/environment: an exact `[store.prefixes]` entry, else the template,
    /// else none (the store's own default applies).
    pub fn resolve(&self, project: &str, environment: &str) -> Option<String> {
        self.exact
            .get(&(project.to_owned(), environment.to_owned()))
            .cloned()
            .or_else(|| self.template.as_ref().map(|t| t.render(project, environment)))
    }
}

/// What kind of store a `[[store]]` is, with its kind-specific settings.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreKind {
    Redis {
        urls: Vec<String>,
    },
    DynamoDb {
        table: String,
        endpoint_url: Option<String>,
        region: Option<String>,
    },
    File {
        path: Template,
        base_dir: PathBuf,
    },
}

/// One `[[store]]`: every store receives every change.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub name: String,
    pub kind: StoreKind,
    pub prefix: Prefix,
}

/// The whole overrides file, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub stores: Vec<StoreConfig>,
    /// The journal repository, resolved against the file's directory.
    pub journal: PathBuf,
    /// `[launchdarkly] base_url`, if set.
    pub base_url: Option<String>,
    /// The desired state, sorted by flag.
    pub overrides: Vec<Override>,
}

/// The parts of the process environment that the file's meaning depends on.
#[derive(Debug, Clone, Default)]
pub struct ConfigEnv {
    /// relayCommander's `REDIS_HOSTS`: `host[:port],host[:port]`.
    pub redis_hosts: Option<String>,
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
}

/// `[overrides.<project>]`: environment -> flag -> declaration.
type RawEnvironments = BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, Spanned<RawOverride>>>;

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum StoreType {
    Redis,
    Dynamodb,
    File,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    name: Option<Spanned<String>>,
    #[serde(rename = "type")]
    kind: Spanned<StoreType>,
    url: Option<Spanned<String>>,
    urls: Option<Spanned<Vec<Spanned<String>>>>,
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLaunchDarkly {
    base_url: Option<Spanned<String>>,
}

/// `flag = true` or `flag = { on = ..., ... }`.
struct RawOverride(FullOverride);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FullOverride {
    on: bool,
    off_variation: Option<Spanned<VariationRef>>,
    fallthrough: Option<Spanned<VariationRef>>,
    reason: Option<String>,
}

impl<'de> Deserialize<'de> for RawOverride {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawOverride;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean or a table like { on = false, reason = \"...\" }")
            }
            fn visit_bool<E: de::Error>(self, on: bool) -> Result<RawOverride, E> {
                Ok(RawOverride(FullOverride {
                    on,
                    off_variation: None,
                    fallthrough: None,
                    reason: None,
                }))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawOverride, A::Error> {
                FullOverride::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawOverride)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for VariationRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct ByIndex {
            index: usize,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = VariationRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a variation value (string, number or boolean) or { index = N }")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<VariationRef, E> {
                Ok(VariationRef::Value(v.into()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<VariationRef, E> {
                Ok(VariationRef::Value(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<VariationRef, E> {
                Ok(VariationRef::Value(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<VariationRef, E> {
                serde_json::Number::from_f64(v)
                    .map(|n| VariationRef::Value(n.into()))
                    .ok_or_else(|| E::custom("a variation value cannot be NaN or infinite"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<VariationRef, E> {
                Ok(VariationRef::Value(v.into()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<VariationRef, A::Error> {
                ByIndex::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|b| VariationRef::Index(b.index))
            }
        }
        d.deserialize_any(V)
    }
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
    let raw: RawFile = toml::from_str(src).map_err(|e| err(e.span(), e.message().to_owned()))?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();

    if raw.store.is_empty() {
        return Err(err(
            None,
            "no store declared: add at least one [[store]] with type = \"redis\", \"dynamodb\" or \"file\""
                .into(),
        ));
    }
    let mut stores = Vec::new();
    let mut names = BTreeSet::new();
    let mut targets = BTreeSet::new();
    let mut spans = Vec::new();
    for store in raw.store {
        let span = store.span();
        spans.push(span.clone());
        let s = store.into_inner();
        let config =
            store_config(s, &base_dir, env).map_err(|(sp, m)| err(Some(sp.unwrap_or(span.clone())), m))?;
        if !names.insert(config.name.clone()) {
            return Err(err(
                Some(span),
                format!(
                    "duplicate store name {:?}: give each [[store]] a unique name",
                    config.name
                ),
            ));
        }
        for target in target_keys(&config) {
            if !targets.insert(target.clone()) {
                return Err(err(
                    Some(span),
                    format!(
                        "store {:?} repeats the target {target} of an earlier store: list each target once",
                        config.name
                    ),
                ));
            }
        }
        stores.push(config);
    }

    let journal = match raw.journal.and_then(|j| j.path) {
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
                    format!("launchdarkly.base_url {:?} is not an http(s) URL", u.get_ref()),
                ));
            }
            Some(u.into_inner())
        }
        None => None,
    };

    let mut overrides = Vec::new();
    for (project, envs) in raw.overrides {
        check_key(&project, "project").map_err(|m| err(Some(project.span()), m))?;
        for (environment, flags) in envs {
            check_key(&environment, "environment").map_err(|m| err(Some(environment.span()), m))?;
            for (flag, decl) in flags {
                check_key(&flag, "flag").map_err(|m| err(Some(flag.span()), m))?;
                let RawOverride(o) = decl.into_inner();
                if o.reason.as_deref().is_some_and(|r| r.trim().is_empty()) {
                    return Err(err(
                        Some(flag.span()),
                        format!(
                            "the reason of flag {} is empty: say why, or leave it out",
                            flag.get_ref()
                        ),
                    ));
                }
                overrides.push(Override {
                    id: FlagId {
                        project: project.get_ref().clone(),
                        environment: environment.get_ref().clone(),
                        flag: flag.get_ref().clone(),
                    },
                    on: o.on,
                    off_variation: o.off_variation.map(Spanned::into_inner),
                    fallthrough: o.fallthrough.map(Spanned::into_inner),
                    reason: o.reason.map(|r| r.trim().to_owned()),
                });
            }
        }
    }
    overrides.sort_by(|a, b| a.id.cmp(&b.id));
    for (store, span) in stores.iter().zip(spans) {
        check_places(store, &overrides).map_err(|m| err(Some(span), m))?;
    }

    Ok(Config {
        path: path.to_path_buf(),
        stores,
        journal,
        base_url,
        overrides,
    })
}

/// Two declared environments that a store would keep in the same place (one Redis hash, one
/// DynamoDB namespace, one file) would overwrite each other's flags: each environment needs its
/// own prefix or path.
fn check_places(store: &StoreConfig, overrides: &[Override]) -> Result<(), String> {
    let mut seen: BTreeMap<String, (&str, &str)> = BTreeMap::new();
    for o in overrides {
        let (p, e) = (o.id.project.as_str(), o.id.environment.as_str());
        let (place, fix) = match &store.kind {
            StoreKind::Redis { .. } => (
                format!(
                    "prefix {:?}",
                    store
                        .prefix
                        .resolve(p, e)
                        .filter(|p| !p.is_empty())
                        .unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_owned())
                ),
                "give it a prefix with {environment} (and {project}), or a [store.prefixes] entry per environment",
            ),
            StoreKind::DynamoDb { .. } => (
                format!("prefix {:?}", store.prefix.resolve(p, e).unwrap_or_default()),
                "give it a prefix with {environment} (and {project}), or a [store.prefixes] entry per environment",
            ),
            StoreKind::File { path, .. } => (
                format!("file {:?}", path.render(p, e)),
                "put {environment} (and {project}) in its path",
            ),
        };
        match seen.get(&place) {
            Some(&(p0, e0)) if (p0, e0) != (p, e) => {
                return Err(format!(
                    "store {:?} would keep {p0}/{e0} and {p}/{e} in the same place ({place}), so their flags \
                     would overwrite each other: {fix}",
                    store.name
                ))
            }
            _ => {
                seen.insert(place, (p, e));
            }
        }
    }
    Ok(())
}

/// LaunchDarkly keys are letters, digits, `.`, `_` and `-`; anything else (a `/`, `..`) could
/// escape the journal's `<project>/<environment>/<flag>.toml` layout.
fn check_key(key: &Spanned<String>, what: &str) -> Result<(), String> {
    let k = key.get_ref();
    let ok = !k.is_empty()
        && k.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} key {k:?} is not a LaunchDarkly key: use letters, digits, '.', '_' and '-', starting with a letter or digit"
        ))
    }
}

type Located = (Option<Range<usize>>, String);

fn store_config(s: RawStore, base_dir: &Path, env: &ConfigEnv) -> Result<StoreConfig, Located> {
    let kind = *s.kind.get_ref();
    let type_name = match kind {
        StoreType::Redis => "redis",
        StoreType::Dynamodb => "dynamodb",
        StoreType::File => "file",
    };
    let not_for = |field: &str, span: Range<usize>| -> Located {
        (
            Some(span),
            format!("`{field}` does not apply to a {type_name} store"),
        )
    };
    let name = match s.name {
        Some(n) if n.get_ref().trim().is_empty() => {
            return Err((Some(n.span()), "store name is empty".into()))
        }
        Some(n) => n.into_inner(),
        None => type_name.to_owned(),
    };
    // Fields that belong to other store types are mistakes, not silently ignored settings.
    let mut foreign = Vec::new();
    if kind != StoreType::Redis {
        foreign.extend(s.url.as_ref().map(|v| ("url", v.span())));
        foreign.extend(s.urls.as_ref().map(|v| ("urls", v.span())));
    }
    if kind != StoreType::Dynamodb {
        foreign.extend(s.table.as_ref().map(|v| ("table", v.span())));
        foreign.extend(s.endpoint_url.as_ref().map(|v| ("endpoint_url", v.span())));
        foreign.extend(s.region.as_ref().map(|v| ("region", v.span())));
    }
    if kind != StoreType::File {
        foreign.extend(s.path.as_ref().map(|v| ("path", v.span())));
    } else {
        foreign.extend(s.prefix.as_ref().map(|v| ("prefix", v.span())));
    }
    if let Some((field, span)) = foreign.into_iter().next() {
        return Err(not_for(field, span));
    }

    let template = match &s.prefix {
        Some(p) => Some(Template::parse(p.get_ref()).map_err(|m| (Some(p.span()), format!("prefix: {m}")))?),
        None if kind == StoreType::Redis => Some(Template(DEFAULT_REDIS_PREFIX.to_owned())),
        None => None,
    };
    let mut exact = BTreeMap::new();
    for (key, prefix) in s.prefixes.unwrap_or_default() {
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
    let prefix = Prefix { template, exact };

    let kind = match kind {
        StoreType::Redis => {
            let urls = match (s.url, s.urls) {
                (Some(_), Some(u)) => {
                    return Err((Some(u.span()), "set either `url` or `urls`, not both".into()))
                }
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
                    return Ok(StoreConfig {
                        name: name.clone(),
                        kind: StoreKind::Redis {
                            urls: redis_hosts(hosts).map_err(|m| (None, m))?,
                        },
                        prefix,
                    });
                }
            };
            let mut out = Vec::new();
            for u in urls {
                check_redis_url(u.get_ref()).map_err(|m| (Some(u.span()), m))?;
                out.push(u.into_inner());
            }
            StoreKind::Redis { urls: out }
        }
        StoreType::Dynamodb => {
            let table = s
                .table
                .ok_or((None, format!("dynamodb store {name:?} needs `table`")))?;
            if table.get_ref().trim().is_empty() {
                return Err((Some(table.span()), "`table` is empty".into()));
            }
            if let Some(e) = &s.endpoint_url {
                if url::Url::parse(e.get_ref()).is_err() {
                    return Err((
                        Some(e.span()),
                        format!("endpoint_url {:?} is not a URL", e.get_ref()),
                    ));
                }
            }
            StoreKind::DynamoDb {
                table: table.into_inner(),
                endpoint_url: s.endpoint_url.map(Spanned::into_inner),
                region: s.region.map(Spanned::into_inner),
            }
        }
        StoreType::File => {
            let path = s
                .path
                .ok_or((None, format!("file store {name:?} needs `path`")))?;
            let template =
                Template::parse(path.get_ref()).map_err(|m| (Some(path.span()), format!("path: {m}")))?;
            if template.as_str().trim().is_empty() {
                return Err((Some(path.span()), "`path` is empty".into()));
            }
            StoreKind::File {
                path: template,
                base_dir: base_dir.to_path_buf(),
            }
        }
    };
    Ok(StoreConfig { name, kind, prefix })
}

/// What two stores must not share (the same Redis server, table or file).
fn target_keys(store: &StoreConfig) -> Vec<String> {
    match &store.kind {
        StoreKind::Redis { urls } => urls.iter().map(|u| crate::redact::url(u)).collect(),
        // The same table name in two regions is two tables (one store per region is common).
        StoreKind::DynamoDb {
            table,
            endpoint_url,
            region,
        } => {
            vec![format!(
                "dynamodb table {table} {} {}",
                endpoint_url.as_deref().unwrap_or(""),
                region.as_deref().unwrap_or("")
            )]
        }
        StoreKind::File { path, .. } => vec![format!("file {}", path.as_str())],
    }
}

fn check_redis_url(raw: &str) -> Result<(), String> {
    let shown = crate::redact::url(raw);
    let url = url::Url::parse(raw).map_err(|e| format!("{shown:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err(format!("{shown:?} is not a redis:// or rediss:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{shown:?} has no host"));
    }
    let db = url.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Err(format!("{shown:?}: the path must be a database number, like /0"));
    }
    Ok(())
}

/// relayCommander's `REDIS_HOSTS`: `host[:port],host[:port]` (port 6379 by default).
fn redis_hosts(hosts: &str) -> Result<Vec<String>, String> {
    hosts
        .split(',')
        .map(str::trim)
        .map(|h| {
            let (host, port) = match h.rsplit_once(':') {
                Some((host, port)) => (
                    host,
                    port.parse::<u16>()
                        .map_err(|_| format!("REDIS_HOSTS entry {h:?}: the port must be a number"))?,
                ),
                None => (h, 6379),
            };
            if host.is_empty() || host.contains(['/', '@', ' ']) {
                return Err(format!("REDIS_HOSTS entry {h:?} is not host[:port]"));
            }
            Ok(format!("redis://{host}:{port}"))
        })
        .collect()
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
            c.stores[0].prefix.resolve("default", "production").unwrap(),
            "ld:default:production"
        );
        assert_eq!(
            c.stores[0].prefix.resolve("default", "staging").unwrap(),
            "5f3c0ffee0ddba11"
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
        assert_eq!(
            c.stores[0].prefix.resolve("p", "e").as_deref(),
            Some("launchdarkly")
        );
        assert_eq!(c.stores[1].prefix.resolve("p", "e"), None);
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
            redis_hosts: Some("10.0.0.1, 10.0.0.2:6380".into()),
        };
        let c = parse(Path::new("o.toml"), "[[store]]\ntype = \"redis\"\n", &env).unwrap();
        assert_eq!(
            c.stores[0].kind,
            StoreKind::Redis {
                urls: vec!["redis://10.0.0.1:6379".into(), "redis://10.0.0.2:6380".into()]
            }
        );
        let e = parse_err_env(
            "[[store]]\ntype = \"redis\"\n",
            &ConfigEnv {
                redis_hosts: Some("h:x".into()),
            },
        );
        assert!(e.contains("REDIS_HOSTS entry \"h:x\""), "{e}");
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
    fn error_snippet_points_at_the_value() {
        let e = parse_err("[[store]]\ntype = \"mongo\"\n");
        assert!(e.ends_with("2 | type = \"mongo\"\n  |        ^^^^^^^"), "{e}");
    }
}
