//! Appending to the decision log and the feedback log.
//!
//! Appends take a transaction-scoped advisory lock so that concurrent writers (several workers,
//! several replicas) extend one chain in order: read the last hash, compute, insert, commit.
//! Both logs join their chain the same way ([`Chain::link`]); they differ only in their table.

use std::{sync::Arc, time::Instant};

use diesel::{ExpressionMethods, OptionalExtension, QueryDsl};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use super::{
    chain::{self, GENESIS},
    content::{self, Committed, DecisionContent},
    records::{DecisionRecord, FeedbackRecord},
    schema::{decisions, feedback},
};

const DECISIONS_LOCK: i64 = 0x6e65_7572_6f01;
const FEEDBACK_LOCK: i64 = 0x6e65_7572_6f02;

/// The two hash chains.
#[derive(Debug, Clone, Copy)]
enum Chain {
    Decisions,
    Feedback,
}

impl Chain {
    /// Takes the chain's advisory lock for the rest of the transaction and returns the hash of
    /// its last row ([`GENESIS`] when it is empty). The head is read after the lock is held, in a
    /// statement of its own, so no other writer can extend the chain in between.
    async fn lock_head(self, c: &mut AsyncPgConnection) -> Result<String, diesel::result::Error> {
        let key = match self {
            Chain::Decisions => DECISIONS_LOCK,
            Chain::Feedback => FEEDBACK_LOCK,
        };
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)").bind::<diesel::sql_types::BigInt, _>(key).execute(c).await?;
        let head: Option<String> = match self {
            Chain::Decisions => decisions::table.select(decisions::content_hash).order(decisions::seq.desc()).first(c).await.optional()?,
            Chain::Feedback => feedback::table.select(feedback::content_hash).order(feedback::seq.desc()).first(c).await.optional()?,
        };
        Ok(head.unwrap_or_else(|| GENESIS.to_owned()))
    }

    /// The one way a row joins a chain: under the chain's lock, each canonical content is
    /// hashed onto the one before it, starting at the chain's head. Returns `(prev_hash,
    /// content_hash)` per row, in order; the caller inserts them in the same transaction.
    async fn link<'a>(self, c: &mut AsyncPgConnection, canonicals: impl IntoIterator<Item = &'a str>) -> Result<Vec<(String, String)>, diesel::result::Error> {
        let head = self.lock_head(c).await?;
        let mut links: Vec<(String, String)> = Vec::new();
        for canonical in canonicals {
            let prev = links.last().map_or(head.as_str(), |(_, hash)| hash.as_str()).to_owned();
            let hash = chain::chain_hash(&prev, canonical);
            links.push((prev, hash));
        }
        Ok(links)
    }
}

/// A decision on its way into the chain: the record and its canonical content
/// ([`chain::canonical_content`]), computed by the hook before it queues the row so that the
/// writer holding the chain's lock only hashes; and the shared content it names, if any.
pub(crate) struct PendingDecision {
    pub record: DecisionRecord,
    pub canonical: String,
    pub content: Option<Arc<DecisionContent>>,
    /// When the hook handed it over (the writer's lag is measured from here).
    pub queued_at: Instant,
}

impl PendingDecision {
    /// `content`, when given, is named by the record (`content_sha256` is set here).
    pub fn new(mut record: DecisionRecord, content: Option<Arc<DecisionContent>>) -> PendingDecision {
        record.content_sha256 = content.as_ref().map(|c| c.sha256.clone());
        // The report is most of the row: move it into the tree that is canonicalised, and back,
        // rather than copy it. The tree is the one `chain::canonical_content(&record)` walks.
        let report = record.report.take();
        let had_report = report.is_some();
        let mut tree = serde_json::to_value(&record).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut tree {
            m.insert("report".into(), report.unwrap_or(Value::Null));
        }
        let canonical = chain::canonical_json(&tree);
        if let Value::Object(mut m) = tree {
            record.report = m.remove("report").filter(|_| had_report);
        }
        PendingDecision { record, canonical, content, queued_at: Instant::now() }
    }
}

/// Appends `pending`, in order, to the decision chain in one transaction under the chain's lock;
/// returns their `seq`s. The contents they name go first, in the same transaction, unless
/// `committed` says an earlier batch stored them.
///
/// The rows go in one multi-row `INSERT`. PostgreSQL draws `seq` for the rows in the order they
/// are listed; that order is checked against what comes back, and a batch whose `seq`s do not
/// follow the chain is rolled back rather than stored out of order.
pub(crate) async fn append_decisions(conn: &mut AsyncPgConnection, pending: &[PendingDecision], committed: &Committed) -> Result<Vec<i64>, diesel::result::Error> {
    let mut contents: Vec<&DecisionContent> = pending.iter().filter_map(|p| p.content.as_deref()).filter(|c| !committed.contains(&c.sha256)).collect();
    contents.sort_unstable_by(|a, b| a.sha256.cmp(&b.sha256));
    contents.dedup_by(|a, b| a.sha256 == b.sha256);
    conn.transaction::<Vec<i64>, diesel::result::Error, _>(async move |c| {
        // The chain's lock first: writers of other replicas storing the same content then wait
        // for the lock, never on each other's uncommitted content rows (a deadlock).
        let links = Chain::Decisions.link(c, pending.iter().map(|p| p.canonical.as_str())).await?;
        content::store(c, &contents).await?;
        let rows: Vec<_> = pending
            .iter()
            .zip(&links)
            .map(|(p, (prev, hash))| (&p.record, decisions::content_hash.eq(hash), decisions::prev_hash.eq(prev)))
            .collect();
        let stored: Vec<(i64, Uuid)> = diesel::insert_into(decisions::table).values(rows).returning((decisions::seq, decisions::decision_id)).get_results(c).await?;
        let in_order = stored.len() == pending.len()
            && stored.iter().zip(pending).all(|((_, id), p)| *id == p.record.decision_id)
            && stored.windows(2).all(|w| w[0].0 < w[1].0);
        if !in_order {
            return Err(diesel::result::Error::QueryBuilderError("the batch came back with seq values out of the order of its rows".into()));
        }
        Ok(stored.into_iter().map(|(seq, _)| seq).collect())
    })
    .await
}

/// Appends one feedback row to its chain in a transaction under the chain's lock; returns its
/// `seq`.
pub(crate) async fn append_feedback(conn: &mut AsyncPgConnection, record: &FeedbackRecord) -> Result<i64, diesel::result::Error> {
    let canonical = chain::canonical_content(record);
    conn.transaction::<i64, diesel::result::Error, _>(async move |c| {
        let links = Chain::Feedback.link(c, [canonical.as_str()]).await?;
        let (prev, hash) = links.into_iter().next().expect("one link per row");
        diesel::insert_into(feedback::table)
            .values((record, feedback::content_hash.eq(hash), feedback::prev_hash.eq(prev)))
            .returning(feedback::seq)
            .get_result(c)
            .await
    })
    .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::OffsetDateTime;

    use super::*;

    fn record(report: Option<Value>) -> DecisionRecord {
        DecisionRecord {
            decision_id: Uuid::from_u128(7),
            recorded_at: OffsetDateTime::UNIX_EPOCH,
            hook: "order-sign".into(),
            hook_instance: "h".into(),
            service_id: "s".into(),
            client_iss: "https://ehr".into(),
            user_ref: None,
            patient_ref: "Patient/p".into(),
            order_refs: json!(["ServiceRequest/o"]),
            study_uid: Some("1.2.3".into()),
            series: json!({"t1c": {"series_uid": "1.2.3.4"}}),
            model_version: Some("m@1".into()),
            member_hashes: json!(["a", "b"]),
            preprocessing_version: Some("r1".into()),
            member_probabilities: json!([0.1, 0.30000000000000004]),
            ensemble_probability: Some(0.2),
            calibrated_probability: Some(0.25),
            member_spread: Some(0.2),
            recommendation: Some("resection-planning".into()),
            outcome: "recommended".into(),
            silent: false,
            reason: None,
            card_uuid: Some(Uuid::from_u128(9)),
            stage_timings_ms: json!({"hook": 3}),
            report,
            content_sha256: None,
            trace_id: None,
        }
    }

    #[test]
    fn a_pending_decision_is_canonicalised_as_the_chain_defines_it_and_keeps_its_record() {
        for report in [None, Some(json!({"diagnostic_report": {"z": 1, "a": [1.5, "x"]}}))] {
            let original = record(report);
            let pending = PendingDecision::new(original.clone(), None);
            assert_eq!(pending.canonical, chain::canonical_content(&original));
            assert_eq!(pending.record, original);
        }
    }

    #[test]
    fn a_decision_naming_a_content_hashes_the_name_and_a_decision_without_one_hashes_as_before() {
        let without = chain::canonical_content(&record(None));
        assert!(!without.contains("content_sha256"), "rows recorded before contents keep their hashes");
        let content = Arc::new(DecisionContent::new(json!({"series": {"t1c": 1}, "report": null})));
        let pending = PendingDecision::new(record(None), Some(content.clone()));
        assert_eq!(pending.record.content_sha256.as_deref(), Some(content.sha256.as_str()));
        assert!(pending.canonical.contains(&content.sha256), "the chain covers which content the row names");
        assert_eq!(pending.canonical, chain::canonical_content(&pending.record));
    }
}
