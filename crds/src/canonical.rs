//! Canonical JSON, the form every digest of a payload is taken over: object keys sorted at
//! every level, no insignificant whitespace (`podSpecDigest`, `eventId`).

use std::borrow::Cow;
use std::marker::PhantomData;

use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
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
    // 64 bytes of room for the 32 of a SHA-256 sum: cannot fail. (`hex::encode` goes through
    // an iterator of chars, ~5x slower, and this is on every admission decision.)
    let _ = hex::encode_to_slice(Sha256::digest(bytes), &mut hex);
    let mut digest = String::with_capacity(7 + hex.len());
    digest.push_str("sha256:");
    // Hex digits are ASCII.
    digest.extend(hex.iter().map(|&b| b as char));
    digest
}

/// A JSON value read for its canonical form: what a [`Value`] would hold (numbers as u64, i64
/// or f64; an object's members sorted by key, the last of equal keys winning), with strings
/// borrowed from the text wherever they have no escapes.
///
/// The admission path reads every pod spec it decides on into one of these, once: the
/// containers are read out of it and the spec's canonical digest is taken from it. Parsing
/// into a [`Value`] instead allocates every string and map node, and writing it out again for
/// the digest was a second pass. A test holds [`CanonicalValue::digest`] equal to
/// [`canonical_digest`] of the same text read as a `Value`, over generated documents.
pub struct CanonicalValue<'a>(Node<'a>);

enum Node<'a> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'a, str>),
    Array(Vec<CanonicalValue<'a>>),
    /// Sorted by key, one member per key.
    Object(Vec<(Cow<'a, str>, CanonicalValue<'a>)>),
}

impl<'a> CanonicalValue<'a> {
    /// `sha256:<hex>` of the canonical JSON of this value.
    pub fn digest(&self) -> String {
        let mut canonical = Vec::with_capacity(256);
        // Into a Vec, of a tree of plain data: cannot fail.
        let _ = serde_json::to_writer(&mut canonical, self);
        // Hashed whole, once: the serializer writes a few bytes at a time.
        sha256_digest(&canonical)
    }

    /// The member `key` of an object (`None` for anything else, or a `null` member).
    pub fn get(&self, key: &str) -> Option<&CanonicalValue<'a>> {
        let Node::Object(members) = &self.0 else {
            return None;
        };
        let at = members
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()?;
        Some(&members[at].1).filter(|v| !matches!(v.0, Node::Null))
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.0 {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[CanonicalValue<'a>]> {
        match &self.0 {
            Node::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self.0, Node::Object(_))
    }

    pub fn is_null(&self) -> bool {
        matches!(self.0, Node::Null)
    }

    /// What kind of JSON value this is, for error messages: "a string", "an object" ...
    pub fn kind(&self) -> &'static str {
        match self.0 {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::U64(_) | Node::I64(_) | Node::F64(_) => "a number",
            Node::Str(_) => "a string",
            Node::Array(_) => "a list",
            Node::Object(_) => "an object",
        }
    }
}

// For any `'a` the input outlives, so that structs can hold one with `#[serde(borrow)]`.
impl<'de: 'a, 'a> Deserialize<'de> for CanonicalValue<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(ValueVisitor(PhantomData))
            .map(CanonicalValue)
    }
}

struct ValueVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ValueVisitor<'a> {
    type Value = Node<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Node<'a>, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node<'a>, E> {
        Ok(Node::Bool(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node<'a>, E> {
        Ok(Node::U64(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node<'a>, E> {
        Ok(Node::I64(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node<'a>, E> {
        // As `Value` does: a number it cannot hold becomes null.
        Ok(if v.is_finite() {
            Node::F64(v)
        } else {
            Node::Null
        })
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Node<'a>, E> {
        Ok(Node::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node<'a>, E> {
        Ok(Node::Str(Cow::Owned(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Node<'a>, E> {
        Ok(Node::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'a>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'a>, A::Error> {
        let mut members: Vec<(Cow<'a, str>, CanonicalValue<'a>)> = Vec::with_capacity(8);
        while let Some(Key(key)) = map.next_key()? {
            members.push((key, map.next_value()?));
        }
        // Stable: equal keys stay in the order read. Of each run the first is kept, holding
        // the last one's value, as a map the members were inserted into one by one would.
        members.sort_by(|a, b| a.0.cmp(&b.0));
        members.dedup_by(|later, kept| {
            let repeated = later.0 == kept.0;
            if repeated {
                std::mem::swap(later, kept);
            }
            repeated
        });
        Ok(Node::Object(members))
    }
}

/// An object key, borrowed from the text unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for KeyVisitor<'a> {
            type Value = Key<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }

            fn visit_string<E>(self, v: String) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor(PhantomData))
    }
}

impl Serialize for CanonicalValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Node::Null => serializer.serialize_unit(),
            Node::Bool(v) => serializer.serialize_bool(*v),
            Node::U64(v) => serializer.serialize_u64(*v),
            Node::I64(v) => serializer.serialize_i64(*v),
            Node::F64(v) => serializer.serialize_f64(*v),
            Node::Str(v) => serializer.serialize_str(v),
            Node::Array(items) => serializer.collect_seq(items),
            Node::Object(members) => {
                serializer.collect_map(members.iter().map(|(k, v)| (k.as_ref(), v)))
            }
        }
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
            self.pick(&["", "", "", " ", "\n\t "])
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
    fn the_digest_of_json_text_is_the_canonical_digest_of_its_value() {
        let mut documents = Documents(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5000 {
            let text = documents.value(4);
            let value: Value = serde_json::from_str(&text).unwrap();
            let read: CanonicalValue = serde_json::from_str(&text).unwrap();
            assert_eq!(read.digest(), canonical_digest(&value).unwrap(), "{text}");
            // Read from the `Value` itself (as the check CLI does) it is the same.
            assert_eq!(
                CanonicalValue::deserialize(&value).unwrap().digest(),
                read.digest(),
                "{text}"
            );
        }
    }

    #[test]
    fn json_text_that_is_not_a_value_is_not_read() {
        for text in [
            "",
            "{",
            "[1,]",
            "{\"a\" 1}",
            "\"\\ud800\"",
            "1e400",
            "nul",
            "\"\u{1}\"",
        ] {
            assert!(serde_json::from_str::<Value>(text).is_err(), "{text}");
            assert!(
                serde_json::from_str::<CanonicalValue>(text).is_err(),
                "{text}"
            );
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

    #[test]
    fn members_are_found_by_key_and_null_ones_are_absent() {
        let value: CanonicalValue = serde_json::from_str(
            r#"{"spec": {"containers": [{"name": "a"}]}, "n": null, "s": "x\u0021"}"#,
        )
        .unwrap();
        let containers = value.get("spec").and_then(|s| s.get("containers")).unwrap();
        assert_eq!(
            containers.as_array().unwrap()[0]
                .get("name")
                .unwrap()
                .as_str(),
            Some("a")
        );
        assert!(value.get("n").is_none());
        assert!(value.get("missing").is_none());
        assert_eq!(value.get("s").unwrap().as_str(), Some("x!"));
        assert_eq!(value.get("s").unwrap().kind(), "a string");
        assert!(value.get("spec").unwrap().is_object());
        assert!(containers.get("name").is_none());
    }
}
