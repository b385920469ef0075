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
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String((*k).clone()).to_string());
                    out.push(':');
                    write(&m[*k], out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    write(value, &mut s);
    s
}

/// The chained hash of one row's content.
pub fn content_hash<T: Serialize>(prev_hash: &str, content: &T) -> String {
    let value = serde_json::to_value(content).unwrap_or(Value::Null);
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(canonical_json(&value).as_bytes());
    hex::encode(h.finalize())
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
