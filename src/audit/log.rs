//! The decision log and the feedback log as the service uses them: append (through the
//! decision writer and [`super::append`]), read back, and verify.

use std::collections::HashMap;

use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper};
use diesel_async::RunQueryDsl;
use serde_json::Value;
use uuid::Uuid;

use super::{
    append,
    chain::{self, Break, GENESIS},
    content,
    db::Database,
    error::AuditError,
    records::{DecisionRecord, FeedbackRecord, StoredDecision, StoredFeedback},
    schema::{decision_contents, decisions, feedback},
};

impl Database {
    /// Appends a decision to the chain and returns its `seq` once it is committed.
    ///
    /// Appends from concurrent hooks are committed together by the decision writer
    /// ([`super::writer`]): one transaction and one hold of the chain's lock per batch.
    pub async fn append_decision(&self, record: DecisionRecord) -> Result<i64, AuditError> {
        self.decision_writer().append(record, None).await
    }

    /// Appends a decision that names `content` (what it shares with the other decisions on its
    /// analysis, stored once; see [`super::content`]).
    pub async fn append_decision_with(&self, record: DecisionRecord, content: std::sync::Arc<super::DecisionContent>) -> Result<i64, AuditError> {
        self.decision_writer().append(record, Some(content)).await
    }

    /// Appends feedback to its chain; returns its `seq`.
    pub async fn append_feedback(&self, record: &FeedbackRecord) -> Result<i64, AuditError> {
        let mut conn = self.conn().await?;
        append::append_feedback(&mut conn, record).await.map_err(AuditError::query("appending feedback"))
    }

    /// The decision whose card carried `card_uuid` (its row only: the shared content is not read).
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

    /// The decision, with its shared content put back ([`Database::attach_contents`]).
    pub async fn decision(&self, decision_id: Uuid) -> Result<Option<StoredDecision>, AuditError> {
        let found = {
            let mut conn = self.conn().await?;
            decisions::table
                .filter(decisions::decision_id.eq(decision_id))
                .select(StoredDecision::as_select())
                .first(&mut conn)
                .await
                .optional()
                .map_err(AuditError::query("reading a decision"))?
        };
        let mut rows: Vec<StoredDecision> = found.into_iter().collect();
        self.attach_contents(&mut rows).await?;
        Ok(rows.pop())
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

    /// Walks both chains from the first row, then rehashes the decisions' shared contents;
    /// `Ok((rows of the chains, None))` when all hold. Streams in pages so a
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
        if broken.is_some() {
            return Ok((decisions_checked + feedback_checked, broken));
        }
        // The contents decisions name: each must still hash to its name.
        drop(conn);
        let (_, broken) = self.verify_contents().await?;
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

/// Reading and verifying the decisions' shared contents ([`super::content`]).
impl Database {
    /// Puts each row's shared content back into it: `series`, and `report` as the template the
    /// caller stamps (`fhir::report::stamp_stored`). Rows recorded inline are left as they are.
    pub async fn attach_contents(&self, rows: &mut [StoredDecision]) -> Result<(), AuditError> {
        let wanted: Vec<&str> = rows.iter().filter_map(|r| r.record.content_sha256.as_deref()).collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        let found: Vec<(String, Value)> = decision_contents::table
            .filter(decision_contents::content_sha256.eq_any(&wanted))
            .select((decision_contents::content_sha256, decision_contents::content))
            .load(&mut conn)
            .await
            .map_err(AuditError::query("reading decision contents"))?;
        let by_hash: HashMap<String, Value> = found.into_iter().collect();
        for row in rows.iter_mut() {
            if let Some(content) = row.record.content_sha256.as_deref().and_then(|h| by_hash.get(h)) {
                row.record.series = content.get("series").cloned().unwrap_or(Value::Null);
                row.record.report = content.get("report").filter(|r| !r.is_null()).cloned();
            }
        }
        Ok(())
    }

    /// Recomputes the hash of every stored content; the first that does not match is a break.
    /// (That every decision's content exists is the foreign key's job.)
    pub async fn verify_contents(&self) -> Result<(u64, Option<Break>), AuditError> {
        let mut conn = self.conn().await?;
        let mut checked = 0u64;
        let mut after = String::new();
        loop {
            let page: Vec<(String, Value)> = decision_contents::table
                .filter(decision_contents::content_sha256.gt(&after))
                .order(decision_contents::content_sha256.asc())
                .limit(CONTENTS_VERIFY_PAGE)
                .select((decision_contents::content_sha256, decision_contents::content))
                .load(&mut conn)
                .await
                .map_err(AuditError::query("verifying decision contents"))?;
            let Some((last, _)) = page.last() else { return Ok((checked, None)) };
            after = last.clone();
            for (stored, content) in &page {
                checked += 1;
                let recomputed = content::sha256_of(content);
                if &recomputed != stored {
                    return Ok((checked, Some(Break { table: "decision_contents", seq: 0, id: stored.clone(), reason: format!("the content's hash is {recomputed}, not the {stored} its decisions name") })));
                }
            }
        }
    }
}

/// Contents read per query while verifying.
const CONTENTS_VERIFY_PAGE: i64 = 500;
