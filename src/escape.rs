//! What text from outside may not show raw, and how it is shown instead: the one definition used
//! wherever text reaches a terminal (`ui::out`, the only writer of stdout and stderr), a git note
//! or a commit message (`journal`), JSON output or a TOML string.
//!
//! Every string relayctl did not write itself is hostile: a flag key or value from a store, a
//! reason or a store name from the overrides file, LaunchDarkly's error text, a teammate's commit.
//! Such text must not move the cursor, clear the screen, set the window title (control
//! characters, C1 included), reorder what a line shows (bidirectional controls), or hide part of
//! it (zero-width and other invisible characters). So those characters are escaped where text
//! leaves relayctl, never at each place that formats a message: a message written tomorrow is
//! escaped too. There, `\n` and `\t` pass: they end or space relayctl's own lines. A value that
//! must stay on its line (a table cell, a comment, a trailer) is escaped whole where it is
//! formatted ([`printable`]).
//!
//! The invisible characters are Unicode's Default_Ignorable_Code_Point set plus the line and
//! paragraph separators (DerivedCoreProperties.txt, Unicode 15.1), written out here as 18
//! ranges. No crate in the dependency tree exposes that property: unicode-width, which is in it,
//! gives these characters width 0, but also the 1,963 combining marks (categories Mn and Me,
//! Unicode 14, counted with Python's unicodedata) that render on the character before them, so
//! escaping what it calls zero-width would mangle accented text in every reason. A
//! Unicode-properties crate for 18 ranges would be a dependency for a table smaller than its
//! manifest.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal raw: a control character (C0, DEL, C1), a bidirectional
/// control, or an invisible character that can make text read as something else.
pub fn unsafe_char(c: char) -> bool {
    c.is_control() || invisible(c)
}

/// Default_Ignorable_Code_Point (bidirectional controls, zero-width characters, variation
/// selectors, tags, fillers) and the line and paragraph separators.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{034f}'
            | '\u{061c}'
            | '\u{115f}'..='\u{1160}'
            | '\u{17b4}'..='\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff0}'..='\u{fffb}'
            | '\u{13430}'..='\u{1343f}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0000}'..='\u{e0fff}'
    )
}

/// Whether `text` has a character a reader can see: not only spaces, controls and invisible
/// characters. A reason without one says nothing.
pub fn visible(text: &str) -> bool {
    text.chars().any(|c| !c.is_whitespace() && !unsafe_char(c))
}

/// `text` safe to show on a terminal as one value of a line (a table cell, a comment): every
/// [`unsafe_char`], line breaks and tabs included, replaced by its `\u{..}` escape. Text that
/// needs none is returned as it is.
pub fn printable(text: &str) -> Cow<'_, str> {
    escaped(
        text,
        |_| false,
        |out, c| {
            let _ = write!(out, "{}", c.escape_unicode());
        },
    )
}

/// JSON text made safe for a terminal without changing what it means: every [`unsafe_char`]
/// but `\n` and `\t` as a JSON `\uXXXX` escape (a surrogate pair above U+FFFF). serde_json
/// already escapes C0 controls inside strings, and whitespace outside strings is only `\n` and
/// spaces, so everything escaped here is inside a string, where the escape reads back as the
/// same character.
pub fn json(text: &str) -> Cow<'_, str> {
    escaped(
        text,
        |c| matches!(c, '\n' | '\t'),
        |out, c| {
            for unit in c.encode_utf16(&mut [0; 2]) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        },
    )
}

/// `s` as a TOML basic string (`"..."`) that reads back as `s` exactly, with every
/// [`unsafe_char`] (line breaks and tabs included) escaped.
pub fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if unsafe_char(c) && (c as u32) > 0xffff => {
                let _ = write!(out, "\\U{:08X}", c as u32);
            }
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `text` with every [`unsafe_char`] that is not `kept` written by `escape`.
fn escaped(text: &str, kept: fn(char) -> bool, escape: fn(&mut String, char)) -> Cow<'_, str> {
    let bad = |c: char| unsafe_char(c) && !kept(c);
    let Some(first) = text.find(bad) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 16);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        match bad(c) {
            true => escape(&mut out, c),
            false => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Terminal control sequences, bidirectional overrides and invisible characters of the kind
    /// LaunchDarkly's error text, a store or a reason could carry.
    const HOSTILE: &str =
        "a\u{1b}]0;pwned\u{7}b\u{1b}[2J\u{9b}31m\u{202e}gnp.exe\u{200b}\u{2066}\u{feff}\u{e0041}\r\u{7f}z";

    #[test]
    fn nothing_unsafe_survives_and_text_that_needs_nothing_is_kept() {
        let shown = printable(HOSTILE);
        assert!(!shown.chars().any(unsafe_char), "{shown}");
        assert_eq!(
            shown,
            "a\\u{1b}]0;pwned\\u{7}b\\u{1b}[2J\\u{9b}31m\\u{202e}gnp.exe\\u{200b}\\u{2066}\\u{feff}\\u{e0041}\\u{d}\\u{7f}z"
        );
        assert!(matches!(printable("plain täxt ✓ é x"), Cow::Borrowed(_)));
        assert_eq!(printable("a\nb\tc"), "a\\u{a}b\\u{9}c");
    }

    #[test]
    fn json_escapes_read_back_as_the_same_text() {
        let doc = serde_json::json!({"reason": HOSTILE, "ok": "x"}).to_string();
        let shown = json(&doc);
        assert!(!shown.chars().any(unsafe_char), "{shown}");
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(back["reason"], HOSTILE);
    }

    #[test]
    fn toml_strings_read_back_as_the_same_text() {
        let quoted = toml_string(HOSTILE);
        assert!(!quoted.chars().any(unsafe_char), "{quoted}");
        let back: toml::Table = toml::from_str(&format!("r = {quoted}")).unwrap();
        assert_eq!(back["r"].as_str(), Some(HOSTILE));
    }

    #[test]
    fn a_text_of_only_invisible_characters_is_not_visible() {
        for text in [
            "",
            "  ",
            "\u{200b}",
            "\u{200b}\u{200d} \u{feff}\t",
            "\u{202e}\u{2066}",
        ] {
            assert!(!visible(text), "{text:?}");
        }
        for text in ["x", " INC-1 ", "\u{200b}é", "火"] {
            assert!(visible(text), "{text:?}");
        }
    }
}
