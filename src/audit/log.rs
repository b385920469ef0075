//! Appending to the decision log and the feedback log, and reading them back.
//!
//! Appends take a transaction-scoped advisory lock so that concurrent writers (several workers,
//! several replicas) extend one chain in order: read the last hash, compute, insert, commit.

use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper, prelude::*};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    chain::{self, Break, GENESIS},
    db::{AuditError, Database},
    schema::{decisions, feedback},
};

const DECISIONS_LOCK: i64 = 0x6e65_7572_6f01;
const FEEDBACK_LOCK: i64 = 0x6e65_7572_6f02;

/// One decision, as recorded. Field names are the column names (and the API's).
#[derive(Debug, Clone, Serialize, Deserialize, Insertable, Queryable, Selectable, PartialEq)]
#[diesel(table_name = decisions)]
pub struct DecisionRecord {
    pub decision_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    pub hook: String,
    pub hook_instance: String,
    pub service_id: String,
    pub client_iss: String,
    pub user_ref: Option<String>,
    pub patient_ref: String,
    pub order_refs: Value,
    pub study_uid: Option<String>,
    pub series: Value,
    pub model_version: Option<String>,
    pub member_hashes: Value,
    pub preprocessing_version: Option<String>,
    pub member_probabilities: Value,
    pub ensemble_probability: Option<f64>,
    pub calibrated_probability: Option<f64>,
    pub member_spread: Option<f64>,
    pub recommendation: Option<String>,
    pub outcome: String,
    pub silent: bool,
    pub reason: Option<String>,
    pub card_uuid: Option<Uuid>,
    pub stage_timings_ms: Value,
    pub report: Option<Value>,
}

/// A stored decision: the record plus its place in the chain.
#[derive(Debug, Clone, Serialize, Queryable, Selectable)]
#[diesel(table_name = decisions)]
pub struct StoredDecision {
    pub seq: i64,
    #[diesel(embed)]
    #[serde(flatten)]
    pub record: DecisionRecord,
    pub content_hash: String,
    pub prev_hash: String,
}

/// Feedback on a card (CDS Hooks 2.0 §Feedback), linked to its decision by `card_uuid`.
#[derive(Debug, Clone, Serialize, Deserialize, Insertable, Queryable, Selectable, PartialEq)]
#[diesel(table_name = feedback)]
pub struct FeedbackRecord {
    pub feedback_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    pub card_uuid: Uuid,
    pub decision_id: Option<Uuid>,
    pub service_id: String,
    pub client_iss: String,
    pub outcome: String,
    #[serde(with = "time::serde::rfc3339")]
    pub outcome_at: OffsetDateTime,
    pub accepted_suggestions: Value,
    pub override_reason: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Queryable, Selectable)]
#[diesel(table_name = feedback)]
pub struct StoredFeedback {
    pub seq: i64,
    #[diesel(embed)]
    #[serde(flatten)]
    pub record: FeedbackRecord,
    pub content_hash: String,
    pub prev_hash: String,
}

/// Timestamps are stored with microsecond precision; truncate before hashing so that the hash
/// computed now equals the hash recomputed from the stored row.
pub fn now_micros() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1000 * 1000).unwrap_or(now)
}

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
}

/// A decision on its way into the chain: the record and its canonical content
/// ([`chain::canonical_content`]), computed by the hook before it queues the row so that the
/// writer holding the chain's lock only hashes.
pub(crate) struct PendingDecision {
    pub record: DecisionRecord,
    pub canonical: String,
}

impl PendingDecision {
    pub fn new(mut record: DecisionRecord) -> PendingDecision {
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
        PendingDecision { record, canonical }
    }
}

/// Appends `pending`, in order, to the decision chain in one transaction under the chain's lock;
/// returns their `seq`s.
///
/// The rows go in one multi-row `INSERT`. PostgreSQL draws `seq` for the rows in the order they
/// are listed; that order is checked against what comes back, and a batch whose `seq`s do not
/// follow the chain is rolled back rather than stored out of order.
pub(crate) async fn append_decisions(conn: &mut AsyncPgConnection, pending: &[PendingDecision]) -> Result<Vec<i64>, diesel::result::Error> {
    conn.transaction::<Vec<i64>, diesel::result::Error, _>(async move |c| {
        let head = Chain::Decisions.lock_head(c).await?;
        // (prev_hash, content_hash) per row, each row chained to the one before it.
        let mut links: Vec<(String, String)> = Vec::with_capacity(pending.len());
        for p in pending {
            let prev = links.last().map_or(head.as_str(), |(_, hash)| hash.as_str()).to_owned();
            let hash = chain::chain_hash(&prev, &p.canonical);
            links.push((prev, hash));
        }
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

impl Database {
    /// Appends a decision to the chain and returns its `seq` once it is committed.
    ///
    /// Appends from concurrent hooks are committed together by the decision writer
    /// ([`super::writer`]): one transaction and one hold of the chain's lock per batch.
    pub async fn append_decision(&self, record: DecisionRecord) -> Result<i64, AuditError> {
        self.decision_writer().append(record).await
    }

    /// Appends feedback to its chain; returns its `seq`.
    pub async fn append_feedback(&self, record: &FeedbackRecord) -> Result<i64, AuditError> {
        let canonical = chain::canonical_content(record);
        let mut conn = self.conn().await?;
        conn.transaction::<i64, diesel::result::Error, _>(async move |c| {
            let prev = Chain::Feedback.lock_head(c).await?;
            let hash = chain::chain_hash(&prev, &canonical);
            diesel::insert_into(feedback::table)
                .values((record, feedback::content_hash.eq(hash), feedback::prev_hash.eq(prev)))
                .returning(feedback::seq)
                .get_result(c)
                .await
        })
        .await
        .map_err(AuditError::query("appending feedback"))
    }

    /// The decision whose card carried `card_uuid`.
    pub async fn decision_by_card(&self, card_uuid: Uuid) -> Result<Option<StoredDecision>, AuditError> {
        let mut conn = self.conn().await?;
        decisions::table
            .filter(decisions::card_uuid.eq(card_uuid))
            .select(StoredDecision::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(AuditError::query("finding a decision by card"))
    }

    pub async fn decision(&self, decision_id: Uuid) -> Result<Option<StoredDecision>, AuditError> {
        let mut conn = self.conn().await?;
        decisions::table
            .filter(decisions::decision_id.eq(decision_id))
            .select(StoredDecision::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(AuditError::query("reading a decision"))
    }

    pub async fn feedback_for(&self, decision_id: Uuid) -> Result<Vec<StoredFeedback>, AuditError> {
        let mut conn = self.conn().await?;
        feedback::table
            .filter(feedback::decision_id.eq(decision_id))
            .order(feedback::seq.asc())
            .select(StoredFeedback::as_select())
            .load(&mut conn)
            .await
            .map_err(AuditError::query("reading feedback"))
    }

    /// Walks both chains from the first row; `Ok(None)` when they hold. Streams in pages so a
    /// long log does not sit in memory at once.
    pub async fn verify_chains(&self) -> Result<(u64, Option<Break>), AuditError> {
        let mut conn = self.conn().await?;
        let (decisions_checked, broken) = verify_chain("decisions", async |after| {
            decisions::table
                .filter(decisions::seq.gt(after))
                .order(decisions::seq.asc())
                .limit(VERIFY_PAGE)
                .select(StoredDecision::as_select())
                .load(&mut conn)
                .await
                .map_err(AuditError::query("verifying decisions"))
        })
        .await?;
        if broken.is_some() {
            return Ok((decisions_checked, broken));
        }
        let (feedback_checked, broken) = verify_chain("feedback", async |after| {
            feedback::table
                .filter(feedback::seq.gt(after))
                .order(feedback::seq.asc())
                .limit(VERIFY_PAGE)
                .select(StoredFeedback::as_select())
                .load(&mut conn)
                .await
                .map_err(AuditError::query("verifying feedback"))
        })
        .await?;
        Ok((decisions_checked + feedback_checked, broken))
    }
}

/// Rows read per query while verifying a chain.
const VERIFY_PAGE: i64 = 1000;

/// A stored row of one of the hash chains, as verification reads it.
trait ChainRow {
    fn seq(&self) -> i64;
    fn content_hash(&self) -> &str;
    /// `(seq, id, prev_hash, stored content_hash, content_hash recomputed from the row)`.
    fn link(&self) -> (i64, String, String, String, String);
}

impl ChainRow for StoredDecision {
    fn seq(&self) -> i64 {
        self.seq
    }
    fn content_hash(&self) -> &str {
        &self.content_hash
    }
    fn link(&self) -> (i64, String, String, String, String) {
        (self.seq, self.record.decision_id.to_string(), self.prev_hash.clone(), self.content_hash.clone(), chain::content_hash(&self.prev_hash, &self.record))
    }
}

impl ChainRow for StoredFeedback {
    fn seq(&self) -> i64 {
        self.seq
    }
    fn content_hash(&self) -> &str {
        &self.content_hash
    }
    fn link(&self) -> (i64, String, String, String, String) {
        (self.seq, self.record.feedback_id.to_string(), self.prev_hash.clone(), self.content_hash.clone(), chain::content_hash(&self.prev_hash, &self.record))
    }
}

/// Walks one chain from its genesis, a page at a time (`load_page(after)` returns the rows
/// with `seq > after` in order): the rows checked before the first break, and that break.
async fn verify_chain<R: ChainRow>(table: &'static str, mut load_page: impl AsyncFnMut(i64) -> Result<Vec<R>, AuditError>) -> Result<(u64, Option<Break>), AuditError> {
    let mut checked = 0u64;
    let mut prev = GENESIS.to_owned();
    let mut after = 0i64;
    loop {
        let page = load_page(after).await?;
        let Some(last) = page.last() else { return Ok((checked, None)) };
        if let Some(b) = chain::first_break_from(table, &prev, page.iter().map(R::link)) {
            return Ok((checked, Some(b)));
        }
        checked += page.len() as u64;
        after = last.seq();
        prev = last.content_hash().to_owned();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
        }
    }

    #[test]
    fn a_pending_decision_is_canonicalised_as_the_chain_defines_it_and_keeps_its_record() {
        for report in [None, Some(json!({"diagnostic_report": {"z": 1, "a": [1.5, "x"]}}))] {
            let original = record(report);
            let pending = PendingDecision::new(original.clone());
            assert_eq!(pending.canonical, chain::canonical_content(&original));
            assert_eq!(pending.record, original);
        }
    }
}
