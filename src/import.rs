//! `relayctl import`'s engine: the TOML declaration of a flag's current state, and adding
//! declarations to the overrides file in place.
//!
//! A declaration has SPEC §1's shape: `on`, the off variation and the fallthrough by value, and
//! a `reason = ""` placeholder (plan warns about it, apply refuses it until someone says why). It
//! must survive the round trip: pasted under its `[overrides.<project>.<environment>]`, `plan`
//! shows no change for it. So each value is read back the way the overrides file is read and
//! matched against the flag's variations the way the planner matches them; a value TOML cannot
//! name that way (an object, an array, null, a value two variations share) becomes
//! `{ index = N }` with the value in a comment. A rollout cannot be declared: it is left out,
//! which leaves it unmanaged, and a comment says so.
//!
//! Pure: text in, text out (toml_edit keeps the file's comments and formatting). The command
//! reads the stores and writes the file.

use crate::flag::Lookup;
use crate::flag::{find_variation, FlagId, Serve, StoredFlag, Variation, VariationRef};
use crate::kind::StoreTarget;
use serde::Deserialize;
use std::fmt::Write as _;
use toml_edit::{DocumentMut, Item, Key, Table};

/// The declaration of one flag's current state.
#[derive(Debug, Clone, PartialEq)]
pub struct Declaration {
    pub id: FlagId,
    /// `# ...` lines that go above it.
    pub comments: Vec<String>,
    /// `flag = { on = ..., ..., reason = "" }`
    pub line: String,
}

impl Declaration {
    /// The comments and the line, as they go into the file.
    fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.comments {
            let _ = writeln!(out, "# {c}");
        }
        let _ = writeln!(out, "{}", self.line);
        out
    }
}

/// The declaration of the state every target holds for `id`, or why there is none: a target
/// where the flag is missing, deleted or not a flag, or targets that disagree.
pub fn declaration(id: &FlagId, lookups: &[(StoreTarget, Lookup)]) -> Result<Declaration, String> {
    let mut flags: Vec<(&StoreTarget, &StoredFlag)> = Vec::new();
    let mut problems = Vec::new();
    for (target, lookup) in lookups {
        match lookup {
            Lookup::Found(f) if f.deleted => problems.push(format!(
                "{target}: it is deleted (a tombstone at v{}); a deleted flag cannot be declared",
                f.version
            )),
            Lookup::Found(f) => flags.push((target, f)),
            Lookup::Missing { place } => problems.push(format!("{target}: not there ({place})")),
            Lookup::Invalid(e) => problems.push(format!("{target}: the stored value is not a flag ({e})")),
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let Some(&(_, flag)) = flags.first() else {
        return Err("no store target is configured".into());
    };
    let state = |f: &StoredFlag| {
        (
            f.on(),
            f.off_variation().clone(),
            f.fallthrough().clone(),
            f.rollout(),
        )
    };
    if flags.iter().any(|(_, f)| state(f) != state(flag)) {
        let each: Vec<String> = flags
            .iter()
            .map(|(t, f)| {
                format!(
                    "{t}: {}, off {}, fallthrough {}",
                    if f.on() { "on" } else { "off" },
                    f.off_variation(),
                    fallthrough(f)
                )
            })
            .collect();
        return Err(format!(
            "the targets disagree ({}); decide which state to declare (`relayctl show {id}` shows them) and write it by hand",
            each.join("; ")
        ));
    }
    Ok(declare(id, flag))
}

fn fallthrough(f: &StoredFlag) -> String {
    match f.fallthrough() {
        Serve::Rollout => crate::show::rollout_text(&f.rollout()),
        other => other.to_string(),
    }
}

/// The declaration of `flag`'s state.
fn declare(id: &FlagId, flag: &StoredFlag) -> Declaration {
    let mut comments = Vec::new();
    let mut parts = vec![format!("on = {}", flag.on())];
    match flag.off_variation() {
        Serve::Variation(v) => parts.push(slot("off_variation", v, flag.variations(), &mut comments)),
        _ => comments.push(
            "no off variation is set: once off, SDKs serve the application's fallback value; \
             add off_variation to choose one"
                .into(),
        ),
    }
    match flag.fallthrough() {
        Serve::Variation(v) => parts.push(slot("fallthrough", v, flag.variations(), &mut comments)),
        Serve::Rollout => comments.push(format!(
            "the fallthrough is a {}; an override cannot declare a rollout, so it is left as it is",
            fallthrough(flag)
        )),
        Serve::Unset => {}
    }
    parts.push("reason = \"\"".into());
    Declaration {
        id: id.clone(),
        comments: comments
            .into_iter()
            .map(|c| comment(&format!("{}: {c}", id.flag)))
            .collect(),
        line: format!("{} = {{ {} }}", Key::new(id.flag.as_str()), parts.join(", ")),
    }
}

/// `name = <value>` when a TOML value names exactly this variation the way the overrides file
/// is read, else `name = { index = N }` and a comment showing the value.
fn slot(name: &str, v: &Variation, variations: &[serde_json::Value], comments: &mut Vec<String>) -> String {
    #[derive(Deserialize)]
    struct One {
        v: VariationRef,
    }
    if let Some(text) = toml_value(&v.value) {
        let back = toml::from_str::<One>(&format!("v = {text}"));
        if back.is_ok_and(|one| find_variation(&one.v, variations).is_ok_and(|found| found.index == v.index))
        {
            return format!("{name} = {text}");
        }
    }
    comments.push(format!("{name} {{ index = {} }} serves {}", v.index, v.value));
    format!("{name} = {{ index = {} }}", v.index)
}

/// `value` as a TOML value, for the JSON values TOML has (strings, booleans, numbers).
fn toml_value(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) if n.is_i64() => Some(n.to_string()),
        Value::Number(n) if n.is_f64() => {
            let text = n.to_string();
            text.contains(['.', 'e', 'E']).then_some(text)
        }
        Value::String(s) => Some(basic_string(s)),
        _ => None,
    }
}

/// `s` as a one-line TOML basic string that is safe to print ([`crate::escape::toml_string`]).
pub(crate) fn basic_string(s: &str) -> String {
    crate::escape::toml_string(s)
}

/// One comment line: no control character (TOML forbids them, and they could forge a line or
/// hide what it says), and at most about 160 characters.
fn comment(text: &str) -> String {
    const MAX: usize = 160;
    let mut out: String = text.chars().take(MAX).collect();
    if text.chars().nth(MAX).is_some() {
        out.push('…');
    }
    crate::escape::printable(&out).into_owned()
}

/// `overrides.<project>.<environment>`, quoted where TOML needs it.
fn table_path(id: &FlagId) -> String {
    format!(
        "overrides.{}.{}",
        Key::new(id.project.as_str()),
        Key::new(id.environment.as_str())
    )
}

/// The declarations as `relayctl import` prints them: grouped by environment, each group opened
/// by a comment naming the table to paste it under.
pub fn render(declarations: &[Declaration]) -> String {
    let mut out = String::new();
    let mut table = None;
    for d in declarations {
        let path = table_path(&d.id);
        if table.as_ref() != Some(&path) {
            if table.is_some() {
                out.push('\n');
            }
            let _ = writeln!(out, "# under [{path}]");
            table = Some(path);
        }
        out.push_str(&d.text());
    }
    out
}

/// `src` (an overrides file) with `declarations` added under their
/// `[overrides.<project>.<environment>]` tables (created at the end when absent), everything
/// else kept as it was. Refuses, changing nothing, a flag that is already declared.
pub fn insert(src: &str, declarations: &[Declaration]) -> Result<String, String> {
    let mut doc: DocumentMut = src.parse().map_err(|e: toml_edit::TomlError| {
        // Its message quotes the line: a URL with its password.
        format!(
            "cannot read the overrides file as TOML: {}",
            crate::redact::text(&e.to_string())
        )
    })?;
    let mut declared = Vec::new();
    for d in declarations {
        let table = environment_table(&mut doc, &d.id)?;
        if table.contains_key(&d.id.flag) {
            declared.push(d.id.to_string());
            continue;
        }
        let snippet: DocumentMut = d.text().parse().map_err(|e| {
            format!(
                "the declaration of {} is not valid TOML ({e}); this is a bug",
                d.id
            )
        })?;
        let (key, item) = snippet.as_table().get_key_value(&d.id.flag).ok_or_else(|| {
            format!(
                "the declaration of {} declares no {:?}; this is a bug",
                d.id, d.id.flag
            )
        })?;
        table.insert_formatted(key, item.clone());
    }
    if !declared.is_empty() {
        return Err(format!(
            "already declared in the overrides file: {}; relayctl does not replace a declaration, edit it by hand \
             (or import only the others)",
            declared.join(", ")
        ));
    }
    Ok(doc.to_string())
}

/// The `[overrides.<project>.<environment>]` table of `doc`, created when absent.
fn environment_table<'d>(doc: &'d mut DocumentMut, id: &FlagId) -> Result<&'d mut Table, String> {
    let mut table = doc.as_table_mut();
    let keys = ["overrides", id.project.as_str(), id.environment.as_str()];
    for (depth, key) in keys.into_iter().enumerate() {
        let item = table.entry(key).or_insert_with(|| {
            let mut t = Table::new();
            // Only the environment's own header is written: [overrides.<project>.<environment>].
            t.set_implicit(depth < 2);
            Item::Table(t)
        });
        table = item.as_table_mut().ok_or_else(|| {
            format!(
                "the overrides file writes {} as an inline table or a value, not as [{}] tables; \
                 relayctl adds declarations only to tables: run `relayctl import` without --write and paste them",
                keys[..=depth].join("."),
                table_path(id)
            )
        })?;
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{self, ConfigEnv};
    use serde_json::{json, Value};
    use std::path::Path;

    fn id(flag: &str) -> FlagId {
        FlagId {
            project: "default".into(),
            environment: "production".into(),
            flag: flag.into(),
        }
    }

    fn target(n: u8) -> StoreTarget {
        StoreTarget {
            store: "relay-redis".into(),
            target: format!("redis://10.0.0.{n}:6379"),
        }
    }

    fn found(v: &Value) -> Lookup {
        Lookup::Found(StoredFlag::parse(&v.to_string()).unwrap())
    }

    fn flag(key: &str, variations: Value, off: Value, fallthrough: Value) -> Value {
        json!({"key": key, "on": true, "offVariation": off, "fallthrough": fallthrough, "variations": variations, "version": 5})
    }

    fn declare(v: &Value) -> Declaration {
        let key = v["key"].as_str().unwrap();
        declaration(&id(key), &[(target(5), found(v)), (target(6), found(v))]).unwrap()
    }

    const STORE: &str = "[[store]]\ntype = \"file\"\npath = \"f.json\"\n\n";

    /// The round trip: the declarations, pasted under their table and read as the overrides file,
    /// make the planner find nothing to change.
    fn assert_round_trip(flags: &[Value]) {
        let decls: Vec<Declaration> = flags.iter().map(declare).collect();
        let src = format!("{STORE}[overrides.default.production]\n{}", render(&decls));
        let config = desired::parse(Path::new("o.toml"), &src, &ConfigEnv::default())
            .unwrap_or_else(|e| panic!("{e}\n{src}"));
        let observed = flags
            .iter()
            .map(|f| (id(f["key"].as_str().unwrap()), vec![(target(5), found(f))]))
            .collect();
        let plan = crate::plan::plan::<crate::flag::Flag>(&config.overrides, &observed);
        assert!(
            plan.flags.changes.is_empty() && plan.problems() == 0,
            "{src}\n{plan:?}"
        );
        assert_eq!(plan.unchanged, flags.len(), "{src}");
    }

    #[test]
    fn strings_print_safely_and_read_back_as_the_same_text() {
        let hostile = "a\"b\\c\nd\re\u{1b}[2J\u{202e}\u{2066}\u{9b}\u{200f}é";
        let quoted = basic_string(hostile);
        assert!(!quoted.chars().any(crate::escape::unsafe_char), "{quoted}");
        assert!(quoted.contains("\\r") && quoted.contains("\\u202E"), "{quoted}");
        let back: toml::Table = format!("v = {quoted}").parse().unwrap();
        assert_eq!(back["v"].as_str(), Some(hostile));
    }

    #[test]
    fn declarations_name_variations_by_value_and_survive_the_round_trip() {
        let flags = [
            flag("bools", json!([true, false]), json!(1), json!({"variation": 0})),
            flag(
                "strings",
                json!(["a \"quoted\"\\ value\n\u{1b}", "b"]),
                json!(0),
                json!({"variation": 1}),
            ),
            flag(
                "numbers",
                json!([1, 2.5, -3, 1e300]),
                json!(3),
                json!({"variation": 1}),
            ),
            flag("my.dotted", json!(["x", "y"]), json!(1), json!({"variation": 0})),
        ];
        let decls: Vec<Declaration> = flags.iter().map(declare).collect();
        insta::assert_snapshot!(render(&decls), @r#"
        # under [overrides.default.production]
        bools = { on = true, off_variation = false, fallthrough = true, reason = "" }
        strings = { on = true, off_variation = "a \"quoted\"\\ value\n\u001B", fallthrough = "b", reason = "" }
        numbers = { on = true, off_variation = 1e+300, fallthrough = 2.5, reason = "" }
        "my.dotted" = { on = true, off_variation = "y", fallthrough = "x", reason = "" }
        "#);
        assert_round_trip(&flags);
    }

    #[test]
    fn what_toml_cannot_name_by_value_is_an_index_with_the_value_in_a_comment() {
        let flags = [
            flag(
                "objects",
                json!([{"a": 1}, [1, 2], null]),
                json!(2),
                json!({"variation": 0}),
            ),
            flag(
                "twins",
                json!(["same", "same", "other"]),
                json!(1),
                json!({"variation": 2}),
            ),
            flag(
                "huge",
                json!([18446744073709551615u64, 0]),
                json!(0),
                json!({"variation": 1}),
            ),
            flag(
                "rollout",
                json!(["a", "b"]),
                Value::Null,
                json!({"rollout": {"variations": [{"variation": 0, "weight": 60000}, {"variation": 1, "weight": 40000}]}}),
            ),
        ];
        let decls: Vec<Declaration> = flags.iter().map(declare).collect();
        insta::assert_snapshot!(render(&decls), @r#"
        # under [overrides.default.production]
        # objects: off_variation { index = 2 } serves null
        # objects: fallthrough { index = 0 } serves {"a":1}
        objects = { on = true, off_variation = { index = 2 }, fallthrough = { index = 0 }, reason = "" }
        # twins: off_variation { index = 1 } serves "same"
        twins = { on = true, off_variation = { index = 1 }, fallthrough = "other", reason = "" }
        # huge: off_variation { index = 0 } serves 18446744073709551615
        huge = { on = true, off_variation = { index = 0 }, fallthrough = 0, reason = "" }
        # rollout: no off variation is set: once off, SDKs serve the application's fallback value; add off_variation to choose one
        # rollout: the fallthrough is a rollout 60% "a" / 40% "b"; an override cannot declare a rollout, so it is left as it is
        rollout = { on = true, reason = "" }
        "#);
        assert_round_trip(&flags);
    }

    #[test]
    fn a_flag_that_cannot_be_declared_says_why() {
        let a = flag("f", json!([true, false]), json!(1), json!({"variation": 0}));
        let mut b = a.clone();
        b["on"] = json!(false);
        let e = declaration(&id("f"), &[(target(5), found(&a)), (target(6), found(&b))]).unwrap_err();
        assert!(
            e.contains("the targets disagree (relay-redis redis://10.0.0.5:6379: on,"),
            "{e}"
        );
        assert!(e.contains("redis://10.0.0.6:6379: off"), "{e}");
        let tomb = json!({"key": "$deleted", "version": 9, "deleted": true});
        let e = declaration(&id("f"), &[(target(5), found(&tomb))]).unwrap_err();
        assert!(e.contains("deleted (a tombstone at v9)"), "{e}");
        let e = declaration(
            &id("f"),
            &[(
                target(5),
                Lookup::Missing {
                    place: "no field \"f\" in hash h".into(),
                },
            )],
        )
        .unwrap_err();
        assert!(e.contains("not there (no field \"f\" in hash h)"), "{e}");
    }

    #[test]
    fn insert_keeps_comments_and_formatting_and_refuses_a_declared_flag() {
        let src = "# Reviewed by the on-call lead.\n[[store]]\ntype = \"file\"   # the SDK file\npath = \"f.json\"\n\n\
                   [overrides.default.production]\n# kept\nold = { on = false, reason = \"INC-1\" }\n\n[journal]\npath = \"j\"\n";
        let twins = flag(
            "twins",
            json!(["same", "same"]),
            json!(1),
            json!({"variation": 0}),
        );
        let mut staging = declare(&flag(
            "new",
            json!([true, false]),
            json!(1),
            json!({"variation": 0}),
        ));
        staging.id.environment = "staging".into();
        let decls = [declare(&twins), staging];
        let out = insert(src, &decls).unwrap();
        insta::assert_snapshot!(out, @r#"
        # Reviewed by the on-call lead.
        [[store]]
        type = "file"   # the SDK file
        path = "f.json"

        [overrides.default.production]
        # kept
        old = { on = false, reason = "INC-1" }
        # twins: off_variation { index = 1 } serves "same"
        # twins: fallthrough { index = 0 } serves "same"
        twins = { on = true, off_variation = { index = 1 }, fallthrough = { index = 0 }, reason = "" }

        [overrides.default.staging]
        new = { on = true, off_variation = false, fallthrough = true, reason = "" }

        [journal]
        path = "j"
        "#);
        let again = insert(&out, &decls[..1]).unwrap_err();
        assert!(
            again.contains("already declared in the overrides file: default/production/twins"),
            "{again}"
        );
        let inline = "[overrides.default]\nproduction = { old = true }\n";
        let e = insert(inline, &decls[..1]).unwrap_err();
        assert!(
            e.contains("overrides.default.production as an inline table"),
            "{e}"
        );
    }
}
