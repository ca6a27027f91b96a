use super::*;
use crate::flag::{Serve, Targeting, Variation};
use std::collections::BTreeMap;

fn id() -> FlagId {
    FlagId {
        project: "default".into(),
        environment: "production".into(),
        flag: "kill-switch".into(),
    }
}

fn declared() -> Override {
    Override {
        id: id(),
        on: false,
        off_variation: None,
        fallthrough: None,
        reason: Some("INC-1".into()),
    }
}

fn stored(on: bool, version: u64) -> Lookup {
    let raw = json!({"key": "kill-switch", "version": version, "on": on, "offVariation": 1,
        "fallthrough": {"variation": 0}, "variations": [true, false]});
    Lookup::Found(StoredFlag::parse(&raw.to_string()).unwrap())
}

fn ld(on: bool, version: u64) -> LdFlag {
    let v = |index: usize, value: bool| {
        Serve::Variation(Variation {
            index,
            value: value.into(),
        })
    };
    LdFlag {
        version,
        on,
        off_variation: v(1, false),
        fallthrough: v(0, true),
        variations: vec![true.into(), false.into()],
    }
}

/// A journal commit turning the flag off at `time`, based on version 41, with `note`.
fn commit(time: i64, synced: bool) -> Recorded {
    Recorded {
        oid: git2::Oid::zero(),
        short: "abc1234".into(),
        time,
        author: "A <a@example.com>".into(),
        subject: "default/production/kill-switch: turn off".into(),
        reason: Some("INC-1".into()),
        id: id(),
        to: Targeting {
            on: false,
            off_variation: None,
            fallthrough: None,
        },
        base_version: 41,
        note: synced.then_some(crate::journal::SyncNote::Synced {
            at: UNIX_EPOCH,
            ld_version: 42,
            already: false,
            forced: None,
        }),
    }
}

fn relay() -> RelayConfig {
    RelayConfig {
        name: "relay-eu".into(),
        url: url::Url::parse("http://relay:8030").unwrap(),
        sdk_keys: BTreeMap::new(),
        cache_ttl: Duration::from_secs(30),
    }
}

fn target() -> StoreTarget {
    StoreTarget {
        store: "relay-redis".into(),
        target: "redis://10.0.0.5:6379".into(),
    }
}

/// The chain with the store and Relay holding the declared state (off) or not, LaunchDarkly
/// `launchdarkly`, `commits`, at `now` seconds.
fn chain(
    store_holds: bool,
    relay_holds: bool,
    launchdarkly: &LdRead,
    commits: &[Recorded],
    now: u64,
) -> FlagStatus {
    let o = declared();
    let r = relay();
    let served = RelayRead::Read(Ok(BTreeMap::from([(
        "kill-switch".to_owned(),
        stored(!relay_holds, 41),
    )])));
    build(&Facts {
        declared: &o,
        stores: vec![(target(), Ok(stored(!store_holds, 42)))],
        relays: vec![(&r, &served)],
        launchdarkly,
        commits: commits.iter().collect(),
        unpushed: None,
        now: UNIX_EPOCH + Duration::from_secs(now),
    })
}

#[test]
fn a_relay_within_its_cache_ttl_says_when_it_will_serve_and_past_it_what_to_do() {
    let c = [commit(1_000, false)];
    let s = chain(false, false, &LdRead::NoToken, &c, 1_010);
    assert_eq!(s.stores[0].state, StoreState::Differs);
    assert_eq!(s.relays[0].state, RelayState::Stale);
    assert!(s.relays[0]
        .why
        .as_ref()
        .unwrap()
        .starts_with("the stores do not all hold"));
    let s = chain(true, false, &LdRead::NoToken, &c, 1_010);
    assert_eq!(
        (s.relays[0].state, s.relays[0].why.as_deref()),
        (
            RelayState::Stale,
            Some("Relay caches the store for 30s: served by 00:17:10 UTC")
        )
    );
    let s = chain(true, false, &LdRead::NoToken, &c, 1_031);
    assert!(
        s.relays[0].why.as_ref().unwrap().contains("restart Relay"),
        "{s:?}"
    );
    assert!(!s.in_place());
    let s = chain(true, true, &LdRead::NoToken, &c, 1_031);
    assert_eq!(s.relays[0].state, RelayState::Serving);
    assert!(s.relays[0]
        .why
        .as_ref()
        .unwrap()
        .ends_with("until they reconnect: restart Relay"));
    assert!(s.in_place());
}

#[test]
fn launchdarkly_is_judged_against_the_declaration_and_the_journal() {
    let pending = [commit(1_000, false)];
    let synced = [commit(1_000, true)];
    let read = |on, version| LdRead::Read(Ok(ld(on, version)));
    let state = |ld: &LdRead, c: &[Recorded]| {
        let s = chain(true, true, ld, c, 1_100);
        (s.launchdarkly.state, s.launchdarkly.why.unwrap_or_default())
    };
    assert_eq!(state(&read(false, 42), &synced).0, LdState::Synced);
    assert_eq!(
        state(&read(false, 42), &pending).0,
        LdState::Synced,
        "LD already has it"
    );
    let (st, why) = state(&read(true, 41), &pending);
    assert_eq!(st, LdState::Pending);
    assert!(
        why.starts_with("1 journal commit(s) not synced: run `relayctl sync`"),
        "{why}"
    );
    let (st, why) = state(&read(true, 45), &pending);
    assert_eq!(st, LdState::Conflict);
    assert!(why.starts_with("LD version 45, base 41"), "{why}");
    let (st, why) = state(&read(true, 45), &synced);
    assert_eq!(st, LdState::Conflict);
    assert!(why.contains("relayctl verify"), "{why}");
    let down = LdRead::Read(Err(ApiError::Unavailable("connection refused".into())));
    let (st, why) = state(&down, &pending);
    assert_eq!(st, LdState::Unreachable);
    assert_eq!(
        why,
        "LaunchDarkly unreachable (connection refused): `relayctl sync --wait` will replay 1 journal commit(s) once it answers"
    );
    assert_eq!(state(&LdRead::NoToken, &pending).0, LdState::NoToken);
    assert_eq!(
        state(&LdRead::Read(Err(ApiError::NotFound)), &pending).0,
        LdState::Conflict
    );
}

#[test]
fn a_relay_that_cannot_be_asked_says_why() {
    let o = declared();
    let r = relay();
    let row = |read: RelayRead| {
        let s = build(&Facts {
            declared: &o,
            stores: vec![(target(), Err("connection refused".into()))],
            relays: vec![(&r, &read)],
            launchdarkly: &LdRead::NoToken,
            commits: Vec::new(),
            unpushed: None,
            now: UNIX_EPOCH,
        });
        assert_eq!(s.stores[0].state, StoreState::Unreachable);
        (s.relays[0].state, s.relays[0].why.clone().unwrap_or_default())
    };
    let (st, why) = row(RelayRead::NoKey {
        variable: "LD_SDK_KEY_PRODUCTION".into(),
    });
    assert_eq!(st, RelayState::NoKey);
    assert!(why.starts_with("LD_SDK_KEY_PRODUCTION is not set"), "{why}");
    assert_eq!(
        row(RelayRead::Read(Err(RelayError::KeyRefused(401)))).0,
        RelayState::NoKey
    );
    let (st, why) = row(RelayRead::Read(Err(RelayError::Unreachable(
        "connection refused".into(),
    ))));
    assert_eq!(st, RelayState::Unreachable);
    assert_eq!(
        why,
        "no answer (connection refused): check Relay at http://relay:8030"
    );
    assert_eq!(row(RelayRead::Read(Ok(BTreeMap::new()))).0, RelayState::Stale);
}

#[test]
fn the_line_json_and_summary_show_every_row() {
    let c = [commit(1_000, false)];
    let s = chain(true, false, &LdRead::NoToken, &c, 1_010);
    insta::assert_snapshot!(render_line(&s));
    insta::assert_snapshot!(to_json(std::slice::from_ref(&s)));
    let done = chain(true, true, &LdRead::Read(Ok(ld(false, 42))), &c, 1_010);
    assert_eq!(
        render_summary(&[s, done]),
        "Status: 2 flag(s): 1 served as declared by every store and Relay, 1 not yet (marked !); LaunchDarkly: 1 synced, 1 no-token."
    );
}
