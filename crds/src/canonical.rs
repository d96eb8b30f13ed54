//! Canonical JSON, the form every digest of a payload is taken over: object keys sorted at
//! every level, no insignificant whitespace (`podSpecDigest`, `eventId`).

use std::borrow::Cow;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Canonical JSON: object keys sorted at every level, no insignificant whitespace, so the same
/// payload hashes the same everywhere.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    fn sort(value: Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(String, Value)> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Object(entries.into_iter().map(|(k, v)| (k, sort(v))).collect())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(sort).collect()),
            other => other,
        }
    }
    serde_json::to_string(&sort(serde_json::to_value(value)?))
}

/// `sha256:<hex>` of the canonical JSON of `value`.
pub fn canonical_digest<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    Ok(sha256_digest(canonical_json(value)?.as_bytes()))
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let mut hex = [0u8; 64];
    // 64 bytes of room for the 32 of a SHA-256 sum: cannot fail; and hex digits are ASCII.
    // (`hex::encode` goes through an iterator of chars, several times slower, and this runs
    // on every admission decision.)
    let _ = hex::encode_to_slice(Sha256::digest(bytes), &mut hex);
    ["sha256:", std::str::from_utf8(&hex).unwrap_or_default()].concat()
}

/// [`canonical_digest`] of the JSON text `json`, written from the text without reading it
/// into a [`Value`] first.
///
/// The admission path digests every pod spec it decides on. Read into a `Value` (or any tree
/// through serde) and written out again, a pod spec of a few hundred bytes cost a microsecond,
/// the largest single part of a warm decision. Here the text is copied as it is wherever it is
/// already canonical (strings without escapes, plain integers, literals) and each object's
/// members are put in key order afterwards. Anything else (escaped strings, fractions,
/// exponents, large integers) is read and written by serde_json exactly as a `Value` would
/// be. A test holds the result equal to [`canonical_digest`] over generated documents.
pub fn canonical_json_digest(json: &str) -> Result<String, serde_json::Error> {
    let mut writer = CanonicalWriter {
        text: json,
        at: 0,
        out: Vec::with_capacity(json.len()),
        members: Vec::with_capacity(16),
        scratch: Vec::with_capacity(json.len()),
    };
    writer.whitespace();
    writer.value(0)?;
    writer.whitespace();
    if writer.at != json.len() {
        return Err(writer.error("trailing characters"));
    }
    Ok(sha256_digest(&writer.out))
}

/// serde_json's nesting limit: any text it reads, this reads too.
const MAX_DEPTH: usize = 128;

struct CanonicalWriter<'a> {
    text: &'a str,
    /// Byte offset of the next unread character.
    at: usize,
    out: Vec<u8>,
    /// The members of the objects being written, innermost last.
    members: Vec<Member<'a>>,
    scratch: Vec<u8>,
}

/// One `"key":value` of an object, written at `out[start..end]`.
struct Member<'a> {
    key: Cow<'a, str>,
    start: usize,
    end: usize,
}

impl<'a> CanonicalWriter<'a> {
    fn error(&self, what: &str) -> serde_json::Error {
        serde::de::Error::custom(format_args!("{what} at byte {}", self.at))
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), serde_json::Error> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected `{}`", byte as char)))
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), serde_json::Error> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => {
                let (raw, escaped) = self.string()?;
                self.write_string(raw, escaped)
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            _ => Err(self.error("expected a JSON value")),
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), serde_json::Error> {
        if !self.text[self.at..].starts_with(word) {
            return Err(self.error(&format!("expected `{word}`")));
        }
        self.at += word.len();
        self.out.extend_from_slice(word.as_bytes());
        Ok(())
    }

    /// The string token at `at`, quotes included, and whether it has an escape or a control
    /// character (either way it is not written as it stands).
    fn string(&mut self) -> Result<(&'a str, bool), serde_json::Error> {
        let bytes = self.text.as_bytes();
        let start = self.at;
        let mut i = start + 1;
        let mut escaped = false;
        loop {
            match bytes.get(i) {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    i += 2;
                }
                Some(&b) => {
                    escaped |= b < 0x20;
                    i += 1;
                }
            }
        }
        self.at = i + 1;
        Ok((&self.text[start..=i], escaped))
    }

    fn write_string(&mut self, raw: &str, escaped: bool) -> Result<(), serde_json::Error> {
        if escaped {
            // serde_json reads the escapes (and rejects a raw control character) and writes
            // the string the way it writes every string.
            let decoded: String = serde_json::from_str(raw)?;
            serde_json::to_writer(&mut self.out, &decoded)
        } else {
            self.out.extend_from_slice(raw.as_bytes());
            Ok(())
        }
    }

    fn number(&mut self) -> Result<(), serde_json::Error> {
        let bytes = self.text.as_bytes();
        let start = self.at;
        let mut end = start;
        while matches!(
            bytes.get(end),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            end += 1;
        }
        self.at = end;
        let token = &self.text[start..end];
        let digits = token.strip_prefix('-').unwrap_or(token);
        // An integer of up to 18 digits is a u64 or an i64 whose canonical form is the token
        // itself; `-0`, leading zeros, fractions, exponents and longer ones go through serde_json.
        let plain = !digits.is_empty()
            && digits.len() <= 18
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" && token.len() == 1 || !digits.starts_with('0'));
        if plain {
            self.out.extend_from_slice(token.as_bytes());
            Ok(())
        } else {
            let number: Value = serde_json::from_str(token)?;
            serde_json::to_writer(&mut self.out, &number)
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), serde_json::Error> {
        if self.open(b'[', b']')? {
            return Ok(());
        }
        loop {
            self.whitespace();
            self.value(depth + 1)?;
            if !self.comma_or(b']')? {
                return Ok(());
            }
        }
    }

    /// Reads and writes `open`; when `close` follows at once, reads and writes it too and
    /// says the array or object is empty.
    fn open(&mut self, open: u8, close: u8) -> Result<bool, serde_json::Error> {
        self.expect(open)?;
        self.out.push(open);
        self.whitespace();
        let empty = self.peek() == Some(close);
        if empty {
            self.at += 1;
            self.out.push(close);
        }
        Ok(empty)
    }

    /// After an element or member: a `,` (another follows: true) or `close` (false), written.
    fn comma_or(&mut self, close: u8) -> Result<bool, serde_json::Error> {
        self.whitespace();
        match self.peek() {
            Some(b',') => {
                self.at += 1;
                self.out.push(b',');
                Ok(true)
            }
            Some(b) if b == close => {
                self.at += 1;
                self.out.push(close);
                Ok(false)
            }
            _ => Err(self.error(&format!("expected `,` or `{}`", close as char))),
        }
    }

    fn object(&mut self, depth: usize) -> Result<(), serde_json::Error> {
        let start = self.out.len();
        let first = self.members.len();
        if self.open(b'{', b'}')? {
            return Ok(());
        }
        loop {
            self.whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a key"));
            }
            let (raw, escaped) = self.string()?;
            let key = if escaped {
                Cow::Owned(serde_json::from_str::<String>(raw)?)
            } else {
                Cow::Borrowed(&raw[1..raw.len() - 1])
            };
            let member_start = self.out.len();
            self.write_string(raw, escaped)?;
            self.out.push(b':');
            self.whitespace();
            self.expect(b':')?;
            self.whitespace();
            self.value(depth + 1)?;
            self.members.push(Member {
                key,
                start: member_start,
                end: self.out.len(),
            });
            if !self.comma_or(b'}')? {
                break;
            }
        }
        self.sort_members(start, first);
        Ok(())
    }

    /// Rewrites the object written at `out[start..]`, whose members are `members[first..]`,
    /// with its members in key order; of equal keys the last one stays, as in a map they were
    /// inserted into one by one.
    fn sort_members(&mut self, start: usize, first: usize) {
        let members = &mut self.members[first..];
        if members.windows(2).all(|w| w[0].key < w[1].key) {
            // Already canonical as written.
            self.members.truncate(first);
            return;
        }
        // Stable: equal keys stay in the order read.
        members.sort_by(|a, b| a.key.cmp(&b.key));
        self.scratch.clear();
        self.scratch.push(b'{');
        for (i, member) in members.iter().enumerate() {
            if members
                .get(i + 1)
                .is_some_and(|next| next.key == member.key)
            {
                continue;
            }
            if self.scratch.len() > 1 {
                self.scratch.push(b',');
            }
            self.scratch
                .extend_from_slice(&self.out[member.start..member.end]);
        }
        self.scratch.push(b'}');
        self.out.truncate(start);
        self.out.extend_from_slice(&self.scratch);
        self.members.truncate(first);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// JSON texts from a fixed-seed generator: nested objects and arrays, keys that repeat
    /// (also once written with an escape), strings with every kind of escape, numbers of every
    /// kind serde_json tells apart, whitespace between tokens.
    struct Documents(u64);

    impl Documents {
        fn next(&mut self, below: usize) -> usize {
            // xorshift64
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % below as u64) as usize
        }

        fn pick(&mut self, from: &[&'static str]) -> &'static str {
            from[self.next(from.len())]
        }

        fn space(&mut self) -> &'static str {
            self.pick(&["", "", "", " ", "\n\t ", "\r"])
        }

        fn string(&mut self, pieces: &[&'static str]) -> String {
            let n = self.next(4);
            let inner: String = (0..n).map(|_| self.pick(pieces)).collect();
            format!("\"{inner}\"")
        }

        fn value(&mut self, depth: usize) -> String {
            let kinds = if depth == 0 { 3 } else { 5 };
            match self.next(kinds) {
                0 => self.pick(&["null", "true", "false"]).to_string(),
                1 => self
                    .pick(&[
                        "0",
                        "-0",
                        "7",
                        "-12",
                        "1.5",
                        "-0.25",
                        "1e3",
                        "1E-2",
                        "2.50",
                        "3.0",
                        "0.1",
                        "1e308",
                        "5e-324",
                        "-1.7976931348623157e308",
                        "18446744073709551615",
                        "18446744073709551616",
                        "-9223372036854775808",
                        "-9223372036854775809",
                        "999999999999999999",
                        "1000000000000000000",
                        "1E+2",
                        "1e-7",
                        "0.0",
                        "-0.0",
                        "100",
                        "123456789012345678901234567890",
                    ])
                    .to_string(),
                2 => self.string(&[
                    "a",
                    "Z",
                    "é",
                    "😀",
                    " ",
                    "\\\"",
                    "\\\\",
                    "\\/",
                    "\\n",
                    "\\t",
                    "\\b",
                    "\\f",
                    "\\r",
                    "\\u00e9",
                    "\\u0001",
                    "\\u001f",
                    "\\ud83d\\ude00",
                    "<",
                ]),
                3 => {
                    let items: Vec<String> =
                        (0..self.next(4)).map(|_| self.value(depth - 1)).collect();
                    format!("[{}{}]", items.join(","), self.space())
                }
                _ => {
                    let members: Vec<String> = (0..self.next(6))
                        .map(|_| {
                            let key = self.pick(&[
                                "\"a\"",
                                "\"b\"",
                                "\"\\u0061\"",
                                "\"aa\"",
                                "\"A\"",
                                "\"\"",
                                "\"é\"",
                                "\"\\n\"",
                                "\"_\"",
                                "\"z\\\"q\"",
                            ]);
                            let (s1, s2) = (self.space(), self.space());
                            format!("{s1}{key}{s2}:{}", self.value(depth - 1))
                        })
                        .collect();
                    format!("{{{}{}}}", members.join(","), self.space())
                }
            }
        }
    }

    #[test]
    fn a_number_read_back_from_canonical_json_keeps_its_digest() {
        // Floats from every part of the range (a fixed sequence of bit patterns): without
        // serde_json's float_roundtrip some read back one unit in the last place off.
        let mut bits = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            bits ^= bits << 13;
            bits ^= bits >> 7;
            bits ^= bits << 17;
            let number = f64::from_bits(bits);
            if !number.is_finite() {
                continue;
            }
            let value = serde_json::json!({ "x": number });
            let text = canonical_json(&value).unwrap();
            let again: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(again, value, "{text}");
            assert_eq!(
                canonical_json_digest(&text).unwrap(),
                canonical_digest(&value).unwrap()
            );
        }
    }

    #[test]
    fn the_digest_of_json_text_is_the_canonical_digest_of_its_value() {
        let mut documents = Documents(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let text = documents.value(4);
            let value: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                canonical_json_digest(&text).unwrap(),
                canonical_digest(&value).unwrap(),
                "{text}"
            );
        }
    }

    #[test]
    fn json_text_that_is_not_a_value_has_no_digest() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        for text in [
            "",
            " ",
            "{",
            "[1,]",
            "[1 2]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{a:1}",
            "\"\\ud800\"",
            "\"\\x\"",
            "\"\u{1}\"",
            "{\"\u{1}\":1}",
            "\"open",
            "1e400",
            "01",
            "-",
            "1.",
            "--1",
            "nul",
            "truex",
            "[] []",
            &deep,
        ] {
            assert!(serde_json::from_str::<Value>(text).is_err(), "{text}");
            assert!(canonical_json_digest(text).is_err(), "{text}");
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"d": [{"z": 1, "y": 2}], "c": null}});
        assert_eq!(
            canonical_json(&a).unwrap(),
            r#"{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn digest_ignores_key_order_but_not_values() {
        let one = json!({"containers": [{"name": "a", "image": "x"}]});
        let same = json!({"containers": [{"image": "x", "name": "a"}]});
        let other = json!({"containers": [{"image": "y", "name": "a"}]});
        assert_eq!(
            canonical_digest(&one).unwrap(),
            canonical_digest(&same).unwrap()
        );
        assert_ne!(
            canonical_digest(&one).unwrap(),
            canonical_digest(&other).unwrap()
        );
        assert!(canonical_digest(&one).unwrap().starts_with("sha256:"));
    }

    #[test]
    fn sha256_digest_is_the_prefixed_lowercase_hex_of_the_sum() {
        // FIPS 180-2's example.
        assert_eq!(
            sha256_digest(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
