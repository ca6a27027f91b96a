//! Planning plain Redis keys: a declared value (or `absent`) against the bytes a target holds.
//! A key holding another Redis type (a hash, a list) cannot be planned; everything else is a
//! byte comparison, and the compare-and-set of apply is on the bytes read here.

use super::{Part, Plan, Plannable};
use crate::desired::DeclaredKey;
use crate::key::{show_stored, show_to, Held, Key, KeyChange, KeyId, Stored};
use crate::kind::StoreTarget;

impl Plannable for Key {
    type Declared = DeclaredKey;

    fn declared(config: &crate::desired::Config) -> &[DeclaredKey] {
        &config.keys
    }

    fn declared_id(d: &DeclaredKey) -> KeyId {
        KeyId {
            store: d.store.clone(),
            key: d.key.clone(),
        }
    }

    fn declared_reason(d: &DeclaredKey) -> Option<&str> {
        d.reason.as_deref()
    }

    fn plan_target(
        d: &DeclaredKey,
        target: &StoreTarget,
        held: &Held,
    ) -> Result<Option<(KeyChange, Option<String>)>, String> {
        let from = match held {
            Held::Other(kind) => {
                return Err(format!(
                    "the key holds a Redis {kind}, not a string; relayctl manages string keys only: remove \
                     it from [keys.{}] or fix the key's name",
                    d.store
                ))
            }
            Held::Absent => None,
            Held::Value(v) => Some(Stored(v.clone())),
        };
        if from.as_ref().map(|s| s.0.as_slice()) == d.value.as_deref().map(str::as_bytes) {
            return Ok(None);
        }
        let change = KeyChange {
            target: target.clone(),
            key: d.key.clone(),
            from,
            to: d.value.clone(),
            reason: d.reason.clone(),
        };
        Ok(Some((change, None)))
    }

    fn declared_problems(d: &DeclaredKey, c: &KeyChange) -> Vec<String> {
        match d.value == c.to {
            true => Vec::new(),
            false => vec![format!(
                "the plan sets {}, but the overrides file declares {}",
                show_to(c.to.as_deref()),
                show_to(d.value.as_deref())
            )],
        }
    }

    /// Whether the key still holds what the plan read is the compare-and-set's to check.
    fn stored_problems(_: &KeyChange, _: &Held) -> Vec<String> {
        Vec::new()
    }

    /// Key names are any text: one the overrides file does not declare is refused as such.
    fn id_problem(_: &KeyId) -> Option<String> {
        None
    }

    /// `<store> <key>: "OFF" -> "ON"   <target>`.
    fn row(c: &KeyChange) -> Vec<String> {
        let id = KeyId {
            store: c.target.store.clone(),
            key: c.key.clone(),
        };
        vec![
            format!(
                "{id}: {} -> {}",
                show_stored(c.from.as_ref()),
                show_to(c.to.as_deref())
            ),
            c.target.target.clone(),
        ]
    }

    fn part(plan: &Plan) -> &Part<Key> {
        &plan.keys
    }

    fn part_mut(plan: &mut Plan) -> &mut Part<Key> {
        &mut plan.keys
    }
}

#[cfg(test)]
mod tests {
    use super::super::{check_saved, plan, TargetNow};
    use super::*;
    use crate::kind::Observed;

    fn declared(key: &str, value: Option<&str>) -> DeclaredKey {
        DeclaredKey {
            store: "meow-blue".into(),
            key: key.into(),
            value: value.map(str::to_owned),
            reason: None,
        }
    }

    fn target() -> StoreTarget {
        StoreTarget {
            store: "meow-blue".into(),
            target: "redis://127.0.0.1:6379".into(),
        }
    }

    fn run(d: DeclaredKey, held: Held) -> Plan {
        let observed = Observed::<Key>::from([(Key::declared_id(&d), vec![(target(), held)])]);
        plan::<Key>(&[d], &observed)
    }

    #[test]
    fn table() {
        let v = |s: &str| Held::Value(s.as_bytes().to_vec());
        let hash = Held::Other("hash".into());
        for (name, d, held, changes, unchanged, problem) in [
            (
                "set an absent key",
                declared("RECENT", Some("ON")),
                Held::Absent,
                1,
                0,
                None,
            ),
            (
                "change a value",
                declared("RECENT", Some("ON")),
                v("OFF"),
                1,
                0,
                None,
            ),
            ("same bytes", declared("RECENT", Some("ON")), v("ON"), 0, 1, None),
            (
                "case matters",
                declared("RECENT", Some("ON")),
                v("on"),
                1,
                0,
                None,
            ),
            ("delete", declared("old", None), v("x"), 1, 0, None),
            ("already absent", declared("old", None), Held::Absent, 0, 1, None),
            (
                "not UTF-8",
                declared("k", Some("1")),
                Held::Value(vec![0xff]),
                1,
                0,
                None,
            ),
            (
                "a hash",
                declared("k", Some("1")),
                hash,
                0,
                0,
                Some("the key holds a Redis hash, not a string"),
            ),
        ] {
            let p = run(d, held);
            assert_eq!(p.keys.changes.len(), changes, "{name}");
            assert_eq!(p.unchanged, unchanged, "{name}");
            let problems: Vec<&str> = p.keys.problems.iter().map(|p| p.message.as_str()).collect();
            match problem {
                Some(want) => assert!(
                    problems.len() == 1 && problems[0].contains(want),
                    "{name}: {problems:?}"
                ),
                None => assert!(problems.is_empty(), "{name}: {problems:?}"),
            }
        }
    }

    #[test]
    fn a_saved_plan_must_match_the_declarations() {
        let d = declared("RECENT", Some("ON"));
        let good = run(d.clone(), Held::Absent);
        let declared_here = |_: &KeyChange| TargetNow::<Held>::Unreadable;
        assert!(check_saved::<Key>(&good, std::slice::from_ref(&d), declared_here).is_empty());
        let mut edited = good.clone();
        edited.keys.changes[0].to = None;
        let p = check_saved::<Key>(&edited, std::slice::from_ref(&d), declared_here);
        assert!(
            p[0].contains("the plan sets (absent), but the overrides file declares \"ON\""),
            "{p:?}"
        );
        let p = check_saved::<Key>(&good, std::slice::from_ref(&d), |_| TargetNow::Undeclared);
        assert!(
            p[0].contains("which the overrides file does not declare for this key"),
            "{p:?}"
        );
        let p = check_saved::<Key>(&good, &[], declared_here);
        assert!(
            p[0].contains("the overrides file does not declare this key"),
            "{p:?}"
        );
        let mut twice = good.clone();
        twice.keys.changes.push(good.keys.changes[0].clone());
        assert!(
            check_saved::<Key>(&twice, std::slice::from_ref(&d), declared_here)[0].contains("more than once")
        );
    }
}
