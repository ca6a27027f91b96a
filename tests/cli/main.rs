//! Integration tests: the real `relayctl` binary against real servers started on free loopback
//! ports by `support`. One binary, one module per command or concern.
//!
//! - `plan_cmd`: plan output (snapshots), `--json`, `--detailed-exitcode`, stdout vs stderr.
//! - `apply_cmd`, `plan_apply`: what apply writes and leaves alone, journal commits, saved and
//!   stale plans, the confirmation prompt, fan-out.
//! - `batch_writes`: apply's batched writes: a concurrent writer, a stale flag, a kill mid-batch.
//! - `failures`: a store target down, an apply killed mid-way, concurrent applies, the lock.
//! - `store_faults`: a Redis answering late, never, or going away (a fault-injecting proxy);
//!   stored values that are not text.
//! - `bad_input`: every kind of bad input is a clear error and writes nothing; secrets stay out.
//! - `file_store`: the quickstart, with no server.
//! - `stored_bytes`: what apply writes byte for byte, and how hostile stored values are quoted.
//! - `conformance`: what the real LaunchDarkly SDK serves from what apply wrote.
//! - `dynamodb`: the DynamoDB store against moto, with the SDK, and in a mixed-store fan-out.
//! - `integrity`: the journal cannot be forged, bypassed or miss a change already in a store.
//! - `sync`, `sync_faults`, `sync_wait`: sync, verify and log against the fake LaunchDarkly; a
//!   LaunchDarkly that misbehaves (rate limits, slow or unapplied answers, redirects) and bad
//!   LaunchDarkly settings; `sync --wait` with LaunchDarkly coming up late.
//! - `show_cmd`, `import_cmd`: what the stores hold now, and declaring it (the round trip);
//!   `show_keys`: show for plain Redis keys.
//! - `eval_cmd`, `eval_conformance`: `relayctl eval`'s output and errors; its answers against the
//!   real LaunchDarkly Python SDK reading the same Redis and DynamoDB (2,000 seeded contexts), and
//!   `--planned` against what apply then writes.
//! - `generated`: shell completions and the man page.
//! - `plain_keys`: plain Redis keys (`redis-keys` stores) under plan, apply, the journal and log.
//! - `team`: a shared journal remote and the team lock: two machines, a bare remote.
//! - `topology`: Redis replicas, Sentinels failing over between plan and apply, a cluster;
//!   `sentinel_auth`: a primary's password apart from the Sentinels' (their own, or none).
//! - `relay`: the real Relay Proxy reading what relayctl wrote, with proxy-mode SDKs: an outage,
//!   its cache TTL, the handback drill with `sync --wait`, several environments on DynamoDB.
//! - `status_cmd`: `relayctl status` over the stores, real Relays (one down) and LaunchDarkly.
//! - `blackout`: not a test but a benchmark (`#[ignore]`d; scripts/bench_relay.sh): how long a
//!   proxy-mode SDK serves the pre-override value after LaunchDarkly comes back.
//! - `terminal`: a stdout closed early or full, for every command; hostile text from LaunchDarkly,
//!   store names and reasons never reaching a terminal, a note or a commit message raw.
//!
//! Snapshots (`snapshots/`) are whole CLI runs with ports, temp paths and commit ids redacted;
//! accept changes deliberately: `INSTA_UPDATE=always cargo test --test cli`, then review the diff.

// Tests print their waits and findings directly; clippy.toml's ban on print macros is for relayctl.
#![allow(clippy::disallowed_macros)]

mod support;

mod apply_cmd;
mod bad_input;
mod batch_writes;
mod blackout;
mod conformance;
mod dynamodb;
mod eval_cmd;
mod eval_conformance;
mod failures;
mod file_store;
mod generated;
mod import_cmd;
mod integrity;
mod interrupt;
mod plain_keys;
mod plan_apply;
mod plan_cmd;
mod relay;
mod secrets;
mod sentinel_auth;
mod show_cmd;
mod show_keys;
mod status_cmd;
mod store_faults;
mod stored_bytes;
mod sync;
mod sync_faults;
mod sync_wait;
mod team;
mod terminal;
mod topology;
