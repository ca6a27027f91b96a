//! The pure decisions of sync and verify, table by table.

use super::*;
use crate::flag::{Serve, Targeting, Variation};
use crate::journal::Recorded;
use decide::Known;
use serde_json::json;

fn variation(index: usize, value: Value) -> Serve {
    Serve::Variation(Variation { index, value })
}

fn commit(short: &str, on: bool, base: u64, off: Option<(usize, Value)>, reason: &str) -> Recorded {
    Recorded {
        oid: git2::Oid::zero(),
        short: short.into(),
        time: 0,
        author: "Op <op@example.com>".into(),
        subject: format!("default/production/f: turn {}", if on { "on" } else { "off" }),
        reason: Some(reason.into()).filter(|r: &String| !r.is_empty()),
        id: FlagId {
            project: "default".into(),
            environment: "production".into(),
            flag: "f".into(),
        },
        to: Targeting {
            on,
            off_variation: off.map(|(i, v)| variation(i, v)),
            fallthrough: None,
        },
        base_version: base,
        note: None,
    }
}

fn ld(version: u64, on: bool, off: Option<usize>) -> LdFlag {
    let variations = vec![json!("treatment"), json!("control")];
    LdFlag {
        version,
        on,
        off_variation: off.map_or(Serve::Unset, |i| variation(i, variations[i].clone())),
        fallthrough: variation(0, json!("treatment")),
        variations,
    }
}

fn group_of(commits: Vec<Recorded>) -> Group {
    Group {
        id: commits[0].id.clone(),
        commits,
        known: Known::default(),
    }
}

#[test]
fn coalesces_to_the_final_state_with_every_sha_in_the_comment() {
    let g = group_of(vec![
        commit("aaaaaaa", false, 41, Some((1, json!("control"))), "INC-1"),
        commit("bbbbbbb", true, 42, None, "INC-2"),
    ]);
    assert_eq!(
        g.target(),
        Targeting {
            on: true,
            off_variation: Some(variation(1, json!("control"))),
            fallthrough: None
        }
    );
    assert_eq!(
        g.comment(),
        "relayctl aaaaaaa, bbbbbbb: INC-1; INC-2 (Op <op@example.com>)"
    );
    let Decision::Patch { patch, forced: None } = decide(&g, &ld(41, false, Some(0)), false) else {
        panic!()
    };
    assert_eq!(patch.expect_version, 41);
    assert_eq!(patch.on, Some(true));
    assert_eq!(patch.off_variation, Some(1));
    assert_eq!(patch.fallthrough, None);
}

#[test]
fn decides_in_state_conflict_and_force() {
    let g = group_of(vec![commit("aaaaaaa", false, 41, None, "")]);
    assert_eq!(g.comment(), "relayctl aaaaaaa: turn off (Op <op@example.com>)");
    assert_eq!(decide(&g, &ld(50, false, None), false), Decision::InState);
    assert_eq!(
        decide(&g, &ld(44, true, None), false),
        Decision::Conflict("LD version 44, base 41".into())
    );
    let Decision::Patch { patch, forced } = decide(&g, &ld(44, true, None), true) else {
        panic!()
    };
    assert_eq!(patch.expect_version, 44);
    assert_eq!(forced.as_deref(), Some("LD version 44, base 41"));
}

#[test]
fn maps_variations_by_recorded_value() {
    let g = group_of(vec![commit(
        "aaaaaaa",
        false,
        41,
        Some((1, json!("control"))),
        "",
    )]);
    let mut moved = ld(41, true, Some(1));
    moved.variations = vec![json!("control"), json!("treatment")];
    moved.off_variation = variation(1, json!("treatment"));
    let Decision::Patch { patch, .. } = decide(&g, &moved, false) else {
        panic!()
    };
    assert_eq!(patch.off_variation, Some(0));
    moved.variations = vec![json!("a"), json!("b")];
    assert!(matches!(decide(&g, &moved, false), Decision::Conflict(why) if why.contains("\"control\"")));
}

#[test]
fn numbers_match_by_value_as_in_plan() {
    // The journal recorded 3.0 (as the overrides file said); LD holds the integer 3.
    let g = group_of(vec![commit("aaaaaaa", false, 41, Some((1, json!(3.0))), "")]);
    let mut flag = ld(41, false, None);
    flag.variations = vec![json!(1), json!(3)];
    flag.off_variation = variation(1, json!(3));
    assert_eq!(decide(&g, &flag, false), Decision::InState);
    assert!(differences(&g.target(), &flag).is_empty());
}

#[test]
fn notes_follow_outcomes() {
    let at = SystemTime::UNIX_EPOCH;
    let synced = Outcome::Synced {
        ld_version: 43,
        patched: true,
        forced: None,
    };
    assert_eq!(
        note_for(&synced, at),
        Some(SyncNote::Synced {
            at,
            ld_version: 43,
            already: false,
            forced: None
        })
    );
    assert_eq!(
        note_for(&Outcome::Conflict("LD version 45, base 41".into()), at),
        Some(SyncNote::Conflict("LD version 45, base 41".into()))
    );
    assert_eq!(
        note_for(&Outcome::Skipped("approval required".into()), at),
        Some(SyncNote::Skipped("approval required".into()))
    );
    assert_eq!(note_for(&Outcome::Failed("x".into()), at), None);
}

#[test]
fn differences_name_each_property() {
    let t = Targeting {
        on: false,
        off_variation: Some(variation(1, json!("control"))),
        fallthrough: None,
    };
    assert!(differences(&t, &ld(1, false, Some(1))).is_empty());
    assert_eq!(
        differences(&t, &ld(1, true, Some(0))),
        [
            "on: LD true, journal false",
            "off_variation: LD 0 (\"treatment\"), journal 1 (\"control\")"
        ]
    );
    assert_eq!(
        differences(&t, &ld(1, false, None)),
        ["off_variation: LD unset, journal 1 (\"control\")"]
    );
}

#[test]
fn relayctl_s_own_versions_count_as_unchanged_and_nothing_else_does() {
    // Three commits: off, on (base 42), off (base 43); the group's target is off.
    let commits = vec![
        commit("aaaaaaa", false, 41, None, ""),
        commit("bbbbbbb", true, 42, None, ""),
        commit("ccccccc", false, 43, None, ""),
    ];
    let with = |known: Known| Group {
        known,
        ..group_of(commits.clone())
    };
    let decided = |g: &Group, ld: &LdFlag| match decide(g, ld, false) {
        Decision::Patch { patch, .. } => Ok(patch.expect_version),
        other => Err(other),
    };
    // The earliest commit's Base-Version.
    assert_eq!(decided(&with(Known::default()), &ld(41, true, None)), Ok(41));
    // The version relayctl's last synced note recorded.
    let recorded = with(Known {
        recorded: Some(57),
        sent: vec![],
    });
    assert_eq!(decided(&recorded, &ld(57, true, None)), Ok(57));
    assert_eq!(
        decided(&recorded, &ld(58, true, None)),
        Err(Decision::Conflict(
            "LD version 58, base 41 (relayctl's last sync of this flag left LD at version 57)".into()
        ))
    );
    // A PATCH sent from 41 for the first two commits (state: on): LaunchDarkly at 42, on, is
    // that PATCH; at 42 off, or at 43 on, someone else was there.
    let sent = with(Known {
        recorded: None,
        sent: vec![(2, 41)],
    });
    assert_eq!(decided(&sent, &ld(42, true, None)), Ok(42));
    assert!(matches!(
        decided(&sent, &ld(43, true, None)),
        Err(Decision::Conflict(_))
    ));
    let mut other_state = ld(42, true, None);
    other_state.fallthrough = Serve::Rollout;
    assert_eq!(decide(&sent, &ld(42, false, None), false), Decision::InState);
    assert!(
        matches!(decided(&sent, &other_state), Ok(42)),
        "fallthrough is not managed here"
    );
    let off_moved = ld(42, true, Some(0));
    let set_off = with(Known {
        recorded: None,
        sent: vec![(1, 41)],
    });
    assert!(
        matches!(decided(&set_off, &off_moved), Err(Decision::Conflict(_))),
        "the first commit's state is off: LD on at 42 is not that PATCH"
    );
}

#[test]
fn groups_know_the_version_of_the_flag_s_last_synced_note() {
    let mut synced = commit("aaaaaaa", false, 41, None, "");
    synced.note = Some(SyncNote::Synced {
        at: SystemTime::UNIX_EPOCH,
        ld_version: 42,
        already: false,
        forced: None,
    });
    let pending = commit("bbbbbbb", true, 44, None, "");
    // Newest first, as the journal lists them.
    let groups = group(&[pending, synced], |r| !r.is_synced());
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].known.recorded, Some(42));
    assert_eq!(groups[0].commits[0].short, "bbbbbbb");
}

/// Two machines' histories combined interleave by time; a flag's commits are replayed in the
/// order the stores' versions give, so the earliest base is the one LaunchDarkly still has and
/// the final state is the newest write's.
#[test]
fn a_flag_s_commits_are_ordered_by_store_version_not_by_clock() {
    let mut older = commit("aaaaaaa", true, 41, None, "");
    older.time = 2_000; // written at version 41 on a machine whose clock runs ahead
    let mut newer = commit("bbbbbbb", false, 42, None, "");
    newer.time = 1_000;
    // Newest first by time, as the walk of a combined history gives them.
    let groups = group(&[older.clone(), newer.clone()], |r| !r.is_synced());
    assert_eq!(groups.len(), 1);
    let shorts: Vec<&str> = groups[0].commits.iter().map(|c| c.short.as_str()).collect();
    assert_eq!(shorts, ["aaaaaaa", "bbbbbbb"]);
    assert_eq!(groups[0].commits[0].base_version, 41);
    assert!(!groups[0].target().on);
}
