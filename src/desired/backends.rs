//! The settings of the `dynamodb` and `file` store types (the `redis` ones are in the parent,
//! which `redis-keys` stores share): each checked with the span of the value at fault.

use super::{prefix, Located, RawStore};
use crate::store::{dynamodb, file, Template};
use std::path::Path;
use toml::Spanned;

/// A `dynamodb` store: a table, and optionally where it is.
pub(super) fn dynamodb_store(mut s: RawStore, name: &str) -> Result<dynamodb::Config, Located> {
    let prefix = prefix(&mut s)?;
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
                format!("endpoint_url {:?} is not a URL", crate::redact::url(e.get_ref())),
            ));
        }
    }
    Ok(dynamodb::Config {
        table: table.into_inner(),
        endpoint_url: s.endpoint_url.map(Spanned::into_inner),
        region: s.region.map(Spanned::into_inner),
        prefix,
    })
}

/// A `file` store: a path template relative to the overrides file.
pub(super) fn file_store(s: RawStore, name: &str, base_dir: &Path) -> Result<file::Config, Located> {
    if let Some((_, v)) = s.prefixes.as_ref().and_then(|p| p.iter().next()) {
        return Err((Some(v.span()), "`prefixes` does not apply to a file store".into()));
    }
    let path = s
        .path
        .ok_or((None, format!("file store {name:?} needs `path`")))?;
    let template = Template::parse(path.get_ref()).map_err(|m| (Some(path.span()), format!("path: {m}")))?;
    if template.as_str().trim().is_empty() {
        return Err((Some(path.span()), "`path` is empty".into()));
    }
    Ok(file::Config {
        path: template,
        base_dir: base_dir.to_path_buf(),
    })
}
