//! Hash chaining: how a row's `content_hash` is computed, and `audit verify`.
//!
//! `content_hash = SHA-256(prev_hash ‖ "\n" ‖ canonical JSON of the row's content)`, where the
//! content is every column but `seq`, `content_hash` and `prev_hash`, and canonical JSON sorts
//! object keys at every depth (PostgreSQL's JSONB does not keep key order, so the hash must not
//! depend on it). Numbers are written as serde_json writes them, which is exact only because
//! serde_json's `float_roundtrip` feature is on: a value read back from JSONB then parses to the
//! very same `f64` (without it, an occasional value comes back one ULP off and the chain
//! "breaks"). The first row's `prev_hash` is [`GENESIS`]. Changing any stored value, or
//! removing or reordering rows, breaks the chain at that row.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Serialises `value` with object keys sorted at every depth.
pub fn canonical_json(value: &Value) -> String {
    fn write(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Object(m) => {
                let mut entries: Vec<(&String, &Value)> = m.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                out.push(b'{');
                for (i, (k, x)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    scalar(k, out);
                    out.push(b':');
                    write(x, out);
                }
                out.push(b'}');
            }
            Value::Array(a) => {
                out.push(b'[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write(x, out);
                }
                out.push(b']');
            }
            other => scalar(other, out),
        }
    }
    // Strings, numbers, booleans and null, exactly as `serde_json` writes them.
    fn scalar<T: Serialize + ?Sized>(x: &T, out: &mut Vec<u8>) {
        // Writing a string or a scalar into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, x);
    }
    let mut out = Vec::with_capacity(1024);
    write(value, &mut out);
    // serde_json writes UTF-8 only.
    String::from_utf8(out).unwrap_or_default()
}

/// The canonical form of one row's content: what its hash covers besides the previous hash.
///
/// Computing it is the costly part of hashing (the content is walked and its keys sorted), and
/// it does not depend on the chain, so hooks compute it before they queue their row and the
/// writer that holds the chain's lock only runs SHA-256 ([`chain_hash`]).
pub fn canonical_content<T: Serialize>(content: &T) -> String {
    canonical_json(&serde_json::to_value(content).unwrap_or(Value::Null))
}

/// `SHA-256(prev_hash ‖ "\n" ‖ canonical)`, hex.
pub fn chain_hash(prev_hash: &str, canonical: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(canonical.as_bytes());
    hex::encode(h.finalize())
}

/// The chained hash of one row's content.
pub fn content_hash<T: Serialize>(prev_hash: &str, content: &T) -> String {
    chain_hash(prev_hash, &canonical_content(content))
}

/// The first place a chain does not hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Break {
    pub table: &'static str,
    pub seq: i64,
    pub id: String,
    pub reason: String,
}

/// Walks rows in `seq` order: `(seq, id, stored prev_hash, stored content_hash, recomputed
/// content_hash from the stored prev_hash)`.
pub fn first_break(table: &'static str, rows: impl IntoIterator<Item = (i64, String, String, String, String)>) -> Option<Break> {
    first_break_from(table, GENESIS, rows)
}

/// As [`first_break`], for a page of rows that follows a row whose hash was `prev_hash`.
pub fn first_break_from(table: &'static str, prev_hash: &str, rows: impl IntoIterator<Item = (i64, String, String, String, String)>) -> Option<Break> {
    let mut expected_prev = prev_hash.to_owned();
    for (seq, id, prev, stored, recomputed) in rows {
        if prev != expected_prev {
            return Some(Break { table, seq, id, reason: "its prev_hash does not match the row before it (a row was removed, inserted or reordered)".into() });
        }
        if stored != recomputed {
            return Some(Break { table, seq, id, reason: "its content does not match its content_hash (the row was altered)".into() });
        }
        expected_prev = stored;
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn canonical_json_does_not_depend_on_key_order() {
        let a = json!({"b": 1, "a": {"y": [1, {"q": 2, "p": 1}], "x": null}});
        let b: Value = serde_json::from_str(r#"{"a":{"x":null,"y":[1,{"p":1,"q":2}]},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&a), r#"{"a":{"x":null,"y":[1,{"p":1,"q":2}]},"b":1}"#);
    }

    #[test]
    fn canonical_json_writes_strings_and_numbers_as_serde_json_does() {
        let v = json!({"é\"k": "line\nbreak \u{1F9E0} \\ \u{7}", "n": [0.1, -2.5e-300, 1e300, 42, -7, true, null]});
        let expected = r#"{"n":[0.1,-2.5e-300,1e+300,42,-7,true,null],"é\"k":"line\nbreak 🧠 \\ \u0007"}"#;
        assert_eq!(canonical_json(&v), expected);
    }

    #[test]
    fn the_hash_covers_the_previous_hash_and_the_content() {
        let c = json!({"outcome": "recommended"});
        let h = content_hash(GENESIS, &c);
        assert_ne!(h, content_hash("1", &c));
        assert_ne!(h, content_hash(GENESIS, &json!({"outcome": "abstained"})));
        assert_eq!(h, content_hash(GENESIS, &c));
    }

    #[test]
    fn an_altered_row_and_a_removed_row_are_named() {
        let c1 = json!({"n": 1});
        let c2 = json!({"n": 2});
        let h1 = content_hash(GENESIS, &c1);
        let h2 = content_hash(&h1, &c2);
        let good = vec![(1, "a".to_string(), GENESIS.to_string(), h1.clone(), h1.clone()), (2, "b".into(), h1.clone(), h2.clone(), h2.clone())];
        assert_eq!(first_break("decisions", good.clone()), None);
        let mut altered = good.clone();
        altered[1].4 = "f".repeat(64);
        assert_eq!(first_break("decisions", altered).map(|b| b.seq), Some(2));
        let removed = vec![good[1].clone()];
        let b = first_break("decisions", removed).unwrap();
        assert_eq!((b.seq, b.reason.contains("prev_hash")), (2, true));
    }
}
