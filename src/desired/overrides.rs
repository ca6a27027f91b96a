//! `[overrides.<project>.<environment>]`: how a flag's declaration reads (`flag = true`, or a
//! table with `on`, the variations by value or index, a reason), the keys it is filed under, and
//! that no store would keep two declared environments in one place.

use super::{keys, Located, Override, RawEnvironments};
use crate::flag::{FlagId, VariationRef};
use crate::store::StoreConfig;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use toml::Spanned;

/// `flag = true` or `flag = { on = ..., ... }`.
pub(super) struct RawOverride(FullOverride);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FullOverride {
    on: bool,
    off_variation: Option<Spanned<VariationRef>>,
    fallthrough: Option<Spanned<VariationRef>>,
    reason: Option<Spanned<String>>,
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

/// A variation as the overrides file names it: a value, or `{ index = N }`.
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

/// The `[overrides.<project>.<environment>]` declarations, sorted by flag.
pub(super) fn declared(raw: BTreeMap<Spanned<String>, RawEnvironments>) -> Result<Vec<Override>, Located> {
    let mut overrides = Vec::new();
    for (project, envs) in raw {
        keys::check_key(&project, "project").map_err(|m| (Some(project.span()), m))?;
        for (environment, flags) in envs {
            keys::check_key(&environment, "environment").map_err(|m| (Some(environment.span()), m))?;
            for (flag, decl) in flags {
                keys::check_key(&flag, "flag").map_err(|m| (Some(flag.span()), m))?;
                let RawOverride(o) = decl.into_inner();
                // An empty reason (`relayctl import`'s placeholder) loads: plan warns about it
                // and apply refuses to write the flag until someone says why.
                if let Some(r) = &o.reason {
                    keys::check_reason(r, flag.get_ref())?;
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
                    reason: o.reason.map(|r| keys::reason(r.get_ref())),
                });
            }
        }
    }
    overrides.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(overrides)
}

/// Two declared environments that a store would keep in the same place (one Redis hash, one
/// DynamoDB namespace, one file) would overwrite each other's flags: each environment needs its
/// own prefix or path.
pub(super) fn check_places(store: &StoreConfig, overrides: &[Override]) -> Result<(), String> {
    let mut seen: BTreeMap<String, (&str, &str)> = BTreeMap::new();
    for o in overrides {
        let (p, e) = (o.id.project.as_str(), o.id.environment.as_str());
        let place = store.kind.place(p, e);
        match seen.get(&place) {
            Some(&(p0, e0)) if (p0, e0) != (p, e) => {
                return Err(format!(
                    "store {:?} would keep {p0}/{e0} and {p}/{e} in the same place ({place}), so their flags \
                     would overwrite each other: {}",
                    store.name,
                    store.kind.place_fix()
                ))
            }
            _ => {
                seen.insert(place, (p, e));
            }
        }
    }
    Ok(())
}
