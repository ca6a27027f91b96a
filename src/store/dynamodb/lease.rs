//! The team lease in a DynamoDB table (see `store/lease.rs`): one item per table, namespace
//! [`NAMESPACE`], key `lease`, holding the lease's JSON (`lease`) and when it expires
//! (`expires`, milliseconds since the epoch by the clock of the machine that wrote it).
//!
//! The namespace never meets LaunchDarkly's data: the SDKs' and Relay's namespaces are
//! `<prefix>:<kind>` or a bare kind (`features`, `segments`, `$inited`), and Relay's
//! re-initialisation deletes only items of its own namespaces. Taking, renewing and releasing
//! are conditional writes: taken (`PutItem`) if no item is there or it expired; renewed (`PutItem`)
//! and released (`DeleteItem`, so the table holds no trace of relayctl after its run) only while
//! it holds this run's exact text. Where the role may not delete items, the release is a put
//! that expires the lease at once (`expires` 0), which leaves the item in place. Expiry compares clocks of different machines: a
//! lease is taken over only once the taker's clock is past the holder's expiry, so machines whose
//! clocks differ by more than the lease's life (15 s by default) could overlap; keep them on NTP.

use super::super::LeaseTaken as Taken;
use super::{Config, DynamoEndpoint};
use anyhow::{anyhow, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The namespace of the lease item.
pub const NAMESPACE: &str = "relayctl-team-lease";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn client(config: &Config) -> Result<(DynamoEndpoint, aws_sdk_dynamodb::Client)> {
    let endpoint = DynamoEndpoint::new(config);
    let client = endpoint.client().await?.clone();
    Ok((endpoint, client))
}

/// Puts the lease item with `text`, expiring `ttl` from now (0: released), on `condition`.
async fn put(config: &Config, text: &str, expires: u64, condition: &str, mine: Option<&str>) -> Result<bool> {
    let (_endpoint, client) = client(config).await?;
    let mut put = client
        .put_item()
        .table_name(&config.table)
        .set_item(Some(DynamoEndpoint::key(NAMESPACE, "lease")))
        .item("lease", AttributeValue::S(text.to_owned()))
        .item("expires", AttributeValue::N(expires.to_string()))
        .condition_expression(condition);
    put = match mine {
        Some(mine) => put
            .expression_attribute_names("#lease", "lease")
            .expression_attribute_values(":mine", AttributeValue::S(mine.to_owned())),
        None => put
            .expression_attribute_names("#ns", "namespace")
            .expression_attribute_names("#exp", "expires")
            .expression_attribute_values(":now", AttributeValue::N(now_ms().to_string())),
    };
    match put.send().await {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(anyhow!(
            "the lease in table {:?}: {}",
            config.table,
            super::chain(&e)
        )),
    }
}

pub async fn take(config: &Config, text: &str, ttl: Duration) -> Result<Taken> {
    let expires = now_ms() + ttl.as_millis() as u64;
    if put(
        config,
        text,
        expires,
        "attribute_not_exists(#ns) OR #exp < :now",
        None,
    )
    .await?
    {
        return Ok(Taken::Ours);
    }
    let (held, expires) = get(config).await?;
    let left = expires.map(|e| Duration::from_millis(e.saturating_sub(now_ms())));
    Ok(Taken::Held(held, left))
}

pub async fn renew(config: &Config, text: &str, ttl: Duration) -> Result<bool> {
    let expires = now_ms() + ttl.as_millis() as u64;
    put(config, text, expires, "#lease = :mine", Some(text)).await
}

/// Ends the lease whose exact text is `text` (deletes it; expires it where the role may not
/// delete); whether it was there.
pub async fn release(config: &Config, text: &str) -> Result<bool> {
    let (_endpoint, client) = client(config).await?;
    let deleted = client
        .delete_item()
        .table_name(&config.table)
        .set_key(Some(DynamoEndpoint::key(NAMESPACE, "lease")))
        .condition_expression("#lease = :mine")
        .expression_attribute_names("#lease", "lease")
        .expression_attribute_values(":mine", AttributeValue::S(text.to_owned()))
        .send()
        .await;
    match deleted {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
        {
            Ok(false)
        }
        Err(_) => put(config, text, 0, "#lease = :mine", Some(text)).await,
    }
}

/// The live lease's text, if any.
pub async fn read(config: &Config) -> Result<Option<String>> {
    let (held, expires) = get(config).await?;
    Ok(held.filter(|_| expires.is_some_and(|e| e >= now_ms())))
}

async fn get(config: &Config) -> Result<(Option<String>, Option<u64>)> {
    let (_endpoint, client) = client(config).await?;
    let out = client
        .get_item()
        .table_name(&config.table)
        .set_key(Some(DynamoEndpoint::key(NAMESPACE, "lease")))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "reading the lease in table {:?}: {}",
                config.table,
                super::chain(&e)
            )
        })?;
    let Some(item) = out.item else {
        return Ok((None, None));
    };
    let text = item.get("lease").and_then(|v| v.as_s().ok()).cloned();
    let expires = item
        .get("expires")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok());
    Ok((text, expires))
}
