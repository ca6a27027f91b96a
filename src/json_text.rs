//! JSON text kept exactly as it was written: where each member of an object lies in the original
//! bytes, and edits that replace or insert members while every other byte stays as it was.
//!
//! relayctl changes a few properties of a stored flag, and one flag of an SDK flag file. Parsing
//! into a value and printing it again would change what it does not manage (`1e0` becomes `1.0`,
//! 123456789012345678901234567890 becomes `1.2345678901234568e+29`, escapes, spacing, key order)
//! and fails on what serde_json cannot hold (`1e400`, nesting deeper than 128). This scanner reads
//! only structure: it never decodes a value, works on bytes (text that is not UTF-8 is only
//! copied), runs iteratively (no depth limit, no stack to overflow) and never panics: malformed
//! text is an [`Error`] with its byte offset.
//!
//! It checks structure, not every rule of JSON (`[1 2]` passes): callers validate the text with
//! serde_json first, whose errors carry a line and column. It has no idea what a flag is.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

/// Text that is not the JSON structure the scanner expected, at a byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub offset: usize,
    pub expected: &'static str,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed JSON at byte {}: expected {}",
            self.offset, self.expected
        )
    }
}

impl std::error::Error for Error {}

/// One member of an object: its key (decoded when it holds escapes) and where its value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<'a> {
    key: Cow<'a, [u8]>,
    /// The value's bytes in the scanned text, without surrounding whitespace.
    pub value: Range<usize>,
}

impl Member<'_> {
    /// Whether this member's key is `name` (after decoding escapes, as every JSON reader does).
    pub fn is(&self, name: &str) -> bool {
        *self.key == *name.as_bytes()
    }

    /// The key, decoded (its raw text, quotes included, when it cannot be decoded).
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

/// An object's members in the order written, duplicates included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object<'a> {
    pub members: Vec<Member<'a>>,
    /// The offset just after `{`.
    open: usize,
}

impl<'a> Object<'a> {
    /// The members named `name`: none, one, or (in hostile text) several.
    pub fn find<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Member<'a>> + 's {
        self.members.iter().filter(move |m| m.is(name))
    }

    /// The edit that adds `members` (already rendered as `"key":value` pairs joined by commas)
    /// after the last member, so the object's closing whitespace and brace stay where they are.
    pub fn append(&self, members: &str) -> (Range<usize>, Vec<u8>) {
        match self.members.last() {
            Some(last) => (last.value.end..last.value.end, format!(",{members}").into_bytes()),
            None => (self.open..self.open, members.as_bytes().to_vec()),
        }
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_space(text: &[u8], mut at: usize) -> usize {
    while text.get(at).copied().is_some_and(is_space) {
        at += 1;
    }
    at
}

fn expect(text: &[u8], at: usize, byte: u8, expected: &'static str) -> Result<usize, Error> {
    match text.get(at) {
        Some(&b) if b == byte => Ok(at + 1),
        _ => Err(Error { offset: at, expected }),
    }
}

/// The offset just after the string that starts (with its quote) at `at`.
fn skip_string(text: &[u8], at: usize) -> Result<usize, Error> {
    let mut i = expect(text, at, b'"', "a string")?;
    loop {
        match text.get(i) {
            None => {
                return Err(Error {
                    offset: text.len(),
                    expected: "the end of a string",
                })
            }
            Some(b'"') => return Ok(i + 1),
            Some(b'\\') => i += 2,
            Some(_) => i += 1,
        }
    }
}

/// The offset just after the value that starts at `at` (no leading whitespace).
pub fn skip_value(text: &[u8], at: usize) -> Result<usize, Error> {
    // The closing bracket each open array or object awaits: a heap stack, not recursion.
    let mut open: Vec<u8> = Vec::new();
    let mut i = at;
    loop {
        if !open.is_empty() {
            i = skip_space(text, i);
        }
        match text.get(i) {
            Some(b'"') => i = skip_string(text, i)?,
            Some(b'{') => {
                open.push(b'}');
                i += 1;
                continue;
            }
            Some(b'[') => {
                open.push(b']');
                i += 1;
                continue;
            }
            Some(&b @ (b'}' | b']')) if open.last() == Some(&b) => {
                open.pop();
                i += 1;
            }
            Some(b',' | b':') if !open.is_empty() => {
                i += 1;
                continue;
            }
            Some(&b) if !is_space(b) && !matches!(b, b'}' | b']' | b',' | b':') => {
                while text.get(i).is_some_and(|&b| {
                    !is_space(b) && !matches!(b, b',' | b'}' | b']' | b':' | b'"' | b'{' | b'[')
                }) {
                    i += 1;
                }
            }
            _ => {
                return Err(Error {
                    offset: i,
                    expected: "a value",
                })
            }
        }
        if open.is_empty() {
            return Ok(i);
        }
    }
}

/// A key as JSON readers see it: the bytes between the quotes, with escapes decoded.
fn decode_key(quoted: &[u8]) -> Cow<'_, [u8]> {
    let inner = &quoted[1..quoted.len() - 1];
    if !inner.contains(&b'\\') {
        return Cow::Borrowed(inner);
    }
    match serde_json::from_slice::<String>(quoted) {
        Ok(s) => Cow::Owned(s.into_bytes()),
        // Undecodable: keep the quotes so it equals no name.
        Err(_) => Cow::Borrowed(quoted),
    }
}

/// The object whose `{` is at `at` (after optional whitespace), and the offset just after its `}`.
pub fn object(text: &[u8], at: usize) -> Result<(Object<'_>, usize), Error> {
    let open = expect(text, skip_space(text, at), b'{', "an object")?;
    let mut object = Object {
        members: Vec::new(),
        open,
    };
    let mut i = skip_space(text, open);
    if text.get(i) == Some(&b'}') {
        return Ok((object, i + 1));
    }
    loop {
        let key_end = skip_string(text, i)?;
        let key = decode_key(&text[i..key_end]);
        i = expect(text, skip_space(text, key_end), b':', "':' after a key")?;
        let start = skip_space(text, i);
        let end = skip_value(text, start)?;
        object.members.push(Member {
            key,
            value: start..end,
        });
        i = skip_space(text, end);
        match text.get(i) {
            Some(b',') => i = skip_space(text, i + 1),
            Some(b'}') => return Ok((object, i + 1)),
            _ => {
                return Err(Error {
                    offset: i,
                    expected: "',' or '}' after a member",
                })
            }
        }
    }
}

/// `text` with each range replaced by its bytes: ranges in bounds and not overlapping (an empty
/// range inserts).
pub fn splice(text: &[u8], mut edits: Vec<(Range<usize>, Vec<u8>)>) -> Result<Vec<u8>, Error> {
    edits.sort_by_key(|(r, _)| (r.start, r.end));
    let mut out = Vec::with_capacity(text.len() + edits.iter().map(|(_, b)| b.len()).sum::<usize>());
    let mut at = 0;
    for (range, bytes) in edits {
        if range.start < at || range.end < range.start || range.end > text.len() {
            return Err(Error {
                offset: range.start,
                expected: "edits inside the text that do not overlap",
            });
        }
        out.extend_from_slice(&text[at..range.start]);
        out.extend_from_slice(&bytes);
        at = range.end;
    }
    out.extend_from_slice(&text[at..]);
    Ok(out)
}

/// How many characters of a stored value a message quotes.
const EXCERPT_CHARS: usize = 40;

/// A short, single-line excerpt of stored text for a message: whitespace runs become one space,
/// control and bidirectional-formatting characters are escaped, and text longer than a few
/// dozen characters is cut, saying how long it was. A 5 MB value must not become 5 MB of stderr,
/// nor a newline in it a forged log line.
pub fn excerpt(text: &str) -> String {
    let mut out = String::new();
    let mut shown = 0;
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if shown == EXCERPT_CHARS {
            out.push_str(&format!("… ({} bytes)", text.len()));
            return out;
        }
        if c.is_whitespace() {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            out.push(' ');
        } else if c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
        shown += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(text: &str) -> Vec<(String, String)> {
        let (o, end) = object(text.as_bytes(), 0).unwrap();
        assert_eq!(end, text.trim_end().len(), "{text}");
        o.members
            .iter()
            .map(|m| {
                (
                    String::from_utf8(m.key.to_vec()).unwrap(),
                    text[m.value.clone()].to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn finds_each_member_with_its_exact_text() {
        let text = r#" { "a" : 1e400 , "b":[1,{"c":"}"}] ,"d\"q":"x\\\"y", "e":{} ,"f":-0.5E+3,"g":null}  "#;
        assert_eq!(
            members(text),
            [
                ("a", "1e400"),
                ("b", r#"[1,{"c":"}"}]"#),
                ("d\"q", r#""x\\\"y""#),
                ("e", "{}"),
                ("f", "-0.5E+3"),
                ("g", "null"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(members("{}"), []);
        assert_eq!(members(" {\n} "), []);
    }

    #[test]
    fn keys_compare_decoded() {
        let (o, _) = object(br#"{"o\u006e":true,"\ud83d\ude00":1,"bad\u12":2}"#, 0).unwrap();
        assert!(o.members[0].is("on"));
        assert!(o.members[1].is("😀"));
        assert!(!o.members[2].is("bad\u{12}") && !o.members[2].is(r"bad\u12"));
    }

    #[test]
    fn deep_nesting_needs_no_recursion() {
        let deep = format!(
            "{{\"x\":{}1{},\"y\":2}}",
            "[".repeat(200_000),
            "]".repeat(200_000)
        );
        let (o, _) = object(deep.as_bytes(), 0).unwrap();
        assert!(o.members[1].is("y"));
        assert_eq!(&deep[o.members[1].value.clone()], "2");
    }

    #[test]
    fn malformed_text_is_an_error_not_a_panic() {
        for text in [
            "",
            "[]",
            "{",
            "{\"a\"",
            "{\"a\":",
            "{\"a\":1",
            "{\"a\":1,",
            "{\"a\" 1}",
            "{\"a\":}",
            "{1:2}",
            "{\"a\":\"x",
            "{\"a\":\"\\",
            "{\"a\":[1,2}",
            "{\"a\":{]}",
            "{\"a\":1 \"b\":2}",
            "{\"a\":,}",
        ] {
            assert!(object(text.as_bytes(), 0).is_err(), "{text:?}");
        }
        // Bytes that are not UTF-8 are only carried.
        let (o, _) = object(b"{\"a\":\"\xff\xfe\",\"b\":1}", 0).unwrap();
        assert!(o.members[1].is("b"));
    }

    #[test]
    fn splice_replaces_and_inserts_keeping_the_rest() {
        let text = br#"{"a": 1e0,  "b" : [1]}"#;
        let (o, _) = object(text, 0).unwrap();
        let a = o.find("a").next().unwrap().value.clone();
        let out = splice(text, vec![o.append(r#""c":true"#), (a, b"2".to_vec())]).unwrap();
        assert_eq!(out, br#"{"a": 2,  "b" : [1],"c":true}"#);
        let (empty, _) = object(b"{ }", 0).unwrap();
        assert_eq!(
            splice(b"{ }", vec![empty.append(r#""c":1"#)]).unwrap(),
            br#"{"c":1 }"#
        );
        assert!(splice(b"abc", vec![(0..2, vec![]), (1..3, vec![])]).is_err());
        assert!(splice(b"abc", vec![(2..9, vec![])]).is_err());
    }

    #[test]
    fn excerpts_are_short_and_single_line() {
        assert_eq!(excerpt("\"off\""), "\"off\"");
        assert_eq!(excerpt("{\n  \"a\":\t1\r\n}"), "{ \"a\": 1 }");
        let long = format!("\"{}\"", "x".repeat(5_000_000));
        let e = excerpt(&long);
        assert!(e.len() < 80 && e.ends_with("… (5000002 bytes)"), "{e}");
        assert_eq!(excerpt("a\u{1b}[31mb\u{202e}c"), "a\\u{1b}[31mb\\u{202e}c");
    }
}
