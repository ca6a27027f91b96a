//! Reading flags and segments by key from one endpoint, for `relayctl eval`: exactly what an SDK
//! reading that target finds, so the evaluation of one target never borrows data from another
//! (a Redis and a DynamoDB that disagree must show it).
//!
//! Segments live beside flags, and each backend knows where: Redis in the hash
//! `<prefix>:segments`, DynamoDB in the namespace `<prefix>:segments` (bare `segments` without a
//! prefix), a flag file under its `"segments"` object. Unlike planning's reads, nothing here is
//! checked for being rewritable: an item is handed over as its JSON text, as the SDKs read it,
//! and judging it is the evaluation's business. Reads only, one round trip per call.

use super::{Backend, Raw, Stores};
use crate::kind::StoreTarget;
use anyhow::{anyhow, Result};

/// Which of the two kinds of data the SDKs keep in a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ItemKind {
    Flag,
    Segment,
}

impl ItemKind {
    /// The SDKs' name of the kind in a store's keys (Redis hash, DynamoDB namespace).
    pub(super) fn store_name(self) -> &'static str {
        match self {
            ItemKind::Flag => "features",
            ItemKind::Segment => "segments",
        }
    }

    /// The member of a flag file that holds the kind, and one item in words.
    pub(super) fn file_member(self) -> (&'static str, &'static str) {
        match self {
            ItemKind::Flag => ("flags", "flag"),
            ItemKind::Segment => ("segments", "segment"),
        }
    }
}

impl Stores {
    /// Every endpoint's target in `project`/`environment`, in the order of the overrides file;
    /// [`Stores::read_items`] takes an index into it.
    pub fn targets(&self, project: &str, environment: &str) -> Vec<StoreTarget> {
        self.flags
            .iter()
            .map(|e| e.target_in(project, environment))
            .collect()
    }

    /// What endpoint `index` holds for each of `keys` (flags or segments) in
    /// `project`/`environment`: the item's JSON, where it was looked for when absent, or why it
    /// cannot be read (bytes that are not text, a flag file holding it twice). One request.
    pub(crate) async fn read_items(
        &self,
        index: usize,
        (project, environment): (&str, &str),
        kind: ItemKind,
        keys: &[String],
    ) -> Result<Vec<Raw>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let endpoint = self
            .flags
            .get(index)
            .ok_or_else(|| anyhow!("no store endpoint number {index}"))?;
        match &endpoint.backend {
            Backend::Redis(r) => r.read_items(project, environment, kind, keys).await,
            Backend::DynamoDb(d) => d.read_items(project, environment, kind, keys).await,
            Backend::File(f) => f.read_items(project, environment, kind, keys).await,
        }
    }
}
