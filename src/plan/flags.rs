//! Planning LaunchDarkly flags: a declared override against the flag JSON a target holds. The
//! declared variations are resolved against the stored flag's own (by value or index, with
//! [`find_variation`]); a missing flag, a tombstone, a variation that matches none or several,
//! or a flag whose version cannot be incremented exactly cannot be planned.

use super::{Part, Plan, Plannable};
use crate::desired::{self, Override};
use crate::flag::{
    find_variation, Flag, FlagChange, FlagId, Lookup, Serve, StoredFlag, Targeting, VariationRef,
};
use crate::kind::StoreTarget;

impl Plannable for Flag {
    type Declared = Override;

    fn declared(config: &crate::desired::Config) -> &[Override] {
        &config.overrides
    }

    fn declared_id(o: &Override) -> FlagId {
        o.id.clone()
    }

    fn declared_reason(o: &Override) -> Option<&str> {
        o.reason.as_deref()
    }

    fn plan_target(
        o: &Override,
        target: &StoreTarget,
        lookup: &Lookup,
    ) -> Result<Option<(FlagChange, Option<String>)>, String> {
        let flag = match lookup {
            Lookup::Found(f) if f.deleted => {
                return Err(format!(
                    "the flag is deleted in the store (a tombstone at version {}); relayctl does not \
                     resurrect deleted flags: remove it from the overrides file",
                    f.version
                ))
            }
            Lookup::Found(f) => f,
            Lookup::Missing { place } => {
                return Err(format!(
                    "the flag is not in the store ({place}); check the flag key and the store's prefix"
                ))
            }
            Lookup::Invalid(e) => {
                return Err(format!(
                    "the stored value is not a flag relayctl can rewrite safely: {e}"
                ))
            }
        };
        let to = declared_state(o, flag)?;
        let from = flag.targeting_like(&to);
        if from == to {
            return Ok(None);
        }
        flag.next_version()
            .map_err(|e| format!("the stored value is not a flag relayctl can rewrite safely: {e}"))?;
        let serves_off = to.off_variation.as_ref().unwrap_or(flag.off_variation());
        let warning = (!to.on && *serves_off == Serve::Unset).then(|| {
            format!(
                "{} has no off variation in {target}: once off, SDKs serve the application's \
                 fallback value, not a flag variation. Set off_variation to choose one.",
                o.id
            )
        });
        let change = FlagChange {
            id: o.id.clone(),
            target: target.clone(),
            version: flag.version,
            from,
            to,
            reason: o.reason.clone(),
        };
        Ok(Some((change, warning)))
    }

    fn declared_problems(o: &Override, c: &FlagChange) -> Vec<String> {
        let mut problems = Vec::new();
        if c.to.on != o.on {
            problems.push(format!(
                "the plan sets on = {}, but the overrides file declares on = {}",
                c.to.on, o.on
            ));
        }
        for (slot, declared, planned) in [
            ("off_variation", &o.off_variation, &c.to.off_variation),
            ("fallthrough", &o.fallthrough, &c.to.fallthrough),
        ] {
            let same = match (declared, planned) {
                (None, None) => true,
                (Some(VariationRef::Index(i)), Some(Serve::Variation(v))) => v.index == *i,
                (Some(r @ VariationRef::Value(_)), Some(Serve::Variation(v))) => {
                    find_variation(r, std::slice::from_ref(&v.value)).is_ok()
                }
                _ => false,
            };
            if !same {
                let declared = declared.as_ref().map_or("none".to_owned(), ToString::to_string);
                problems.push(format!(
                    "the plan's {slot} is not the one the overrides file declares ({declared})"
                ));
            }
        }
        problems
    }

    /// Where the store still holds the version planned against: every variation the plan serves
    /// is there at its index, serving the value the plan recorded, and `from` is what it holds.
    fn stored_problems(c: &FlagChange, lookup: &Lookup) -> Vec<String> {
        let Lookup::Found(flag) = lookup else {
            return Vec::new();
        };
        if flag.deleted || flag.version != c.version {
            return Vec::new();
        }
        let mut problems = Vec::new();
        let variations = flag.variations();
        for (slot, planned) in [
            ("off_variation", &c.to.off_variation),
            ("fallthrough", &c.to.fallthrough),
        ] {
            let Some(Serve::Variation(v)) = planned else {
                continue;
            };
            match variations.get(v.index) {
                None => problems.push(format!(
                    "{slot} index {} does not exist: the flag has {} variation(s)",
                    v.index,
                    variations.len()
                )),
                Some(value) if !matches!(v.locate(variations), Ok(found) if found.index == v.index) => {
                    problems.push(format!(
                        "{slot} index {} serves {value}, not {} as the plan says",
                        v.index, v.value
                    ))
                }
                Some(_) => {}
            }
        }
        if flag.targeting_like(&c.to) != c.from {
            problems.push("the state the plan says it changes from is not what the store holds".to_owned());
        }
        problems
    }

    fn id_problem(id: &FlagId) -> Option<String> {
        desired::check_id(id).err()
    }

    /// `<flag>   on: true -> false   <store> <target> (v41)`.
    fn row(c: &FlagChange) -> Vec<String> {
        vec![
            c.id.to_string(),
            c.from.differences(&c.to).join(", "),
            format!("{} (v{})", c.target, c.version),
        ]
    }

    fn part(plan: &Plan) -> &Part<Flag> {
        &plan.flags
    }

    fn part_mut(plan: &mut Plan) -> &mut Part<Flag> {
        &mut plan.flags
    }
}

/// The state `o` declares, its variations resolved against the stored flag's.
fn declared_state(o: &Override, flag: &StoredFlag) -> Result<Targeting, String> {
    let resolve = |slot: &str, r: &Option<VariationRef>| -> Result<Option<Serve>, String> {
        let Some(r) = r else { return Ok(None) };
        find_variation(r, flag.variations())
            .map(|v| Some(Serve::Variation(v)))
            .map_err(|e| format!("{slot} {r}: {e}"))
    };
    Ok(Targeting {
        on: o.on,
        off_variation: resolve("off_variation", &o.off_variation)?,
        fallthrough: resolve("fallthrough", &o.fallthrough)?,
    })
}
