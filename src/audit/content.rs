//! What decisions on the same analysis share, stored once.
//!
//! Every hook on a study that has been analysed records a decision, and most of what such a
//! decision holds is the analysis's, not the hook's: the series it used and why, the scope
//! gate's lesion candidates, the FHIR report before its per-decision identifiers (≈ 14 KB of
//! JSON). Copied into every row, that copy was most of the cost of a cached hook (the writer
//! serialised it, PostgreSQL parsed and compressed it, hundreds of times a second). Instead the
//! content is stored once in `decision_contents`, under the SHA-256 of its canonical JSON
//! ([`chain::canonical_json`]), and each decision row names it by that hash.
//!
//! Tamper evidence is kept: the hash column is part of the decision row's chained content, so
//! pointing a row at another content breaks the chain, and `audit verify` recomputes every
//! content's hash, so changing a content is caught too.
//!
//! Reads put the content back into the row (`Database::attach_contents`, in `log.rs`): `series` from the
//! content, and `report` as the stored template, which the caller stamps with the row's own
//! identifiers (`fhir::report::stamp_stored`) — the one part that differs per decision.

use std::collections::HashSet;

use diesel::ExpressionMethods;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{chain, schema::decision_contents};

/// One shared content: its canonical JSON and that JSON's SHA-256 (hex).
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionContent {
    pub sha256: String,
    value: Value,
}

impl DecisionContent {
    /// Hashes `value` (`{"series": …, "report": …}`) in its canonical form.
    pub fn new(value: Value) -> DecisionContent {
        DecisionContent { sha256: sha256_of(&value), value }
    }

    pub fn value(&self) -> &Value {
        &self.value
    }
}

/// SHA-256 (hex) of `value`'s canonical JSON.
pub fn sha256_of(value: &Value) -> String {
    hex::encode(Sha256::digest(chain::canonical_json(value).as_bytes()))
}

/// Inserts the contents a batch of decisions names, in the batch's transaction; a content
/// already stored (by an earlier batch, or another replica) is left as it is.
pub(crate) async fn store(conn: &mut AsyncPgConnection, contents: &[&DecisionContent]) -> Result<(), diesel::result::Error> {
    if contents.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = contents.iter().map(|c| (decision_contents::content_sha256.eq(&c.sha256), decision_contents::content.eq(&c.value))).collect();
    diesel::insert_into(decision_contents::table).values(rows).on_conflict_do_nothing().execute(conn).await?;
    Ok(())
}

/// The contents the writer has seen committed, so each is sent to the database once per
/// process rather than once per decision. Bounded: when full it forgets everything, and the
/// next batches send their contents again (`ON CONFLICT DO NOTHING` makes that harmless).
#[derive(Default)]
pub(crate) struct Committed {
    known: HashSet<String>,
}

impl Committed {
    const MAX: usize = 4096;

    pub fn contains(&self, sha256: &str) -> bool {
        self.known.contains(sha256)
    }

    pub fn remember<'a>(&mut self, stored: impl IntoIterator<Item = &'a str>) {
        if self.known.len() > Self::MAX {
            self.known.clear();
        }
        self.known.extend(stored.into_iter().map(str::to_owned));
    }

    /// After a failed batch nothing is assumed stored.
    pub fn forget(&mut self) {
        self.known.clear();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_hash_does_not_depend_on_key_order() {
        let a = DecisionContent::new(json!({"series": {"t1c": 1, "t2": 2}, "report": null}));
        let b = DecisionContent::new(json!({"report": null, "series": {"t2": 2, "t1c": 1}}));
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(a.sha256.len(), 64);
    }

    #[test]
    fn any_change_of_content_changes_the_hash() {
        let a = DecisionContent::new(json!({"series": {"t1c": 1}}));
        let b = DecisionContent::new(json!({"series": {"t1c": 2}}));
        assert_ne!(a.sha256, b.sha256);
    }

    #[test]
    fn the_committed_set_forgets_all_when_full_and_after_a_failure() {
        let mut c = Committed::default();
        c.remember(["a"]);
        assert!(c.contains("a"));
        c.forget();
        assert!(!c.contains("a"));
        let many: Vec<String> = (0..=Committed::MAX + 1).map(|i| i.to_string()).collect();
        c.remember(many.iter().map(String::as_str));
        c.remember(["b"]);
        assert!(c.contains("b") && !c.contains("0"), "a full set starts again");
    }
}
