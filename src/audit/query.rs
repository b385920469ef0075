//! Reading the decision log for compliance: filters, cursor pages, and summary figures.

use diesel::{
    ExpressionMethods, NullableExpressionMethods, QueryDsl, SelectableHelper,
    dsl::{count, count_star},
    prelude::AggregateExpressionMethods,
};
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{
    db::Database,
    error::AuditError,
    records::StoredDecision,
    schema::{decisions, feedback},
};

/// Filters of `GET /audit/decisions` (all optional, combined with AND).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct DecisionFilter {
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub from: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub to: Option<OffsetDateTime>,
    pub patient: Option<String>,
    pub practitioner: Option<String>,
    pub recommendation: Option<String>,
    pub outcome: Option<String>,
    pub model_version: Option<String>,
    /// `accepted` or `overridden`: decisions with at least one such feedback.
    pub feedback: Option<String>,
}

/// One page, newest first; `next` is the cursor of the following page.
#[derive(Debug, Serialize)]
pub struct Page {
    pub decisions: Vec<StoredDecision>,
    pub next: Option<String>,
}

/// Counts for the compliance summary.
#[derive(Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Summary {
    pub decisions: i64,
    pub recommended: i64,
    pub abstained: i64,
    /// The scope gate found nothing to advise on (no enhancing intra-axial mass).
    pub out_of_scope: i64,
    pub unavailable: i64,
    pub pending: i64,
    pub by_recommendation: Vec<RecommendationSummary>,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RecommendationSummary {
    pub recommendation: String,
    pub decisions: i64,
    pub with_feedback: i64,
    pub overridden: i64,
    /// Overridden / decisions with feedback (None when there is no feedback yet).
    pub override_rate: Option<f64>,
}

impl DecisionFilter {
    /// Refuses what no decision could match and PostgreSQL cannot even compare: text holding a
    /// NUL character. The reason names the field.
    pub fn check(&self) -> Result<(), String> {
        let fields = [
            ("patient", &self.patient),
            ("practitioner", &self.practitioner),
            ("recommendation", &self.recommendation),
            ("outcome", &self.outcome),
            ("model_version", &self.model_version),
            ("feedback", &self.feedback),
        ];
        match fields.iter().find(|(_, v)| v.as_deref().is_some_and(|v| v.contains('\0'))) {
            Some((name, _)) => Err(format!("`{name}` must not contain a NUL character")),
            None => Ok(()),
        }
    }
}

fn boxed(f: &DecisionFilter) -> decisions::BoxedQuery<'static, diesel::pg::Pg> {
    let mut q = decisions::table.into_boxed();
    if let Some(t) = f.from {
        q = q.filter(decisions::recorded_at.ge(t));
    }
    if let Some(t) = f.to {
        q = q.filter(decisions::recorded_at.lt(t));
    }
    if let Some(p) = f.patient.clone().filter(|s| !s.is_empty()) {
        let p = if p.contains('/') { p } else { format!("Patient/{p}") };
        q = q.filter(decisions::patient_ref.eq(p));
    }
    if let Some(u) = f.practitioner.clone().filter(|s| !s.is_empty()) {
        let u = if u.contains('/') { u } else { format!("Practitioner/{u}") };
        q = q.filter(decisions::user_ref.eq(u));
    }
    if let Some(r) = f.recommendation.clone().filter(|s| !s.is_empty()) {
        q = q.filter(decisions::recommendation.eq(r));
    }
    if let Some(o) = f.outcome.clone().filter(|s| !s.is_empty()) {
        q = q.filter(decisions::outcome.eq(o));
    }
    if let Some(m) = f.model_version.clone().filter(|s| !s.is_empty()) {
        q = q.filter(decisions::model_version.eq(m));
    }
    if let Some(fb) = f.feedback.clone().filter(|s| !s.is_empty()) {
        let cards = feedback::table.filter(feedback::outcome.eq(fb)).select(feedback::card_uuid.nullable());
        q = q.filter(decisions::card_uuid.eq_any(cards));
    }
    q
}

/// Opaque cursor: the `seq` of the last row of the page, base64.
fn encode_cursor(seq: i64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("seq:{seq}"))
}

pub fn decode_cursor(c: &str) -> Option<i64> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).ok()?;
    String::from_utf8(raw).ok()?.strip_prefix("seq:")?.parse().ok()
}

impl Database {
    /// One page of the filtered log, newest first, each row with its shared content put back.
    pub async fn list_decisions(&self, filter: &DecisionFilter, cursor: Option<i64>, limit: i64) -> Result<Page, AuditError> {
        let mut conn = self.conn().await?;
        let mut q = boxed(filter);
        if let Some(c) = cursor {
            q = q.filter(decisions::seq.lt(c));
        }
        let limit = limit.clamp(1, 1000);
        let mut rows: Vec<StoredDecision> = q
            .order(decisions::seq.desc())
            .limit(limit + 1)
            .select(StoredDecision::as_select())
            .load(&mut conn)
            .await
            .map_err(AuditError::query("listing decisions"))?;
        let next = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|r| encode_cursor(r.seq))
        } else {
            None
        };
        drop(conn);
        self.attach_contents(&mut rows).await?;
        Ok(Page { decisions: rows, next })
    }

    /// Summary figures over the filtered log, counted by the database (the log may be long).
    pub async fn summary(&self, filter: &DecisionFilter) -> Result<Summary, AuditError> {
        let mut conn = self.conn().await?;
        // The filtered rows, as a subquery the grouped queries below select from.
        let filtered = || decisions::table.filter(decisions::seq.eq_any(boxed(filter).select(decisions::seq)));
        let by_outcome: Vec<(String, i64)> = filtered()
            .group_by(decisions::outcome)
            .select((decisions::outcome, count_star()))
            .load(&mut conn)
            .await
            .map_err(AuditError::query("counting decisions by outcome"))?;
        // Per recommendation: decisions, those whose card got feedback, and those overridden.
        // Each decision has its own card, so counting decisions counts cards.
        let with_feedback = decisions::card_uuid.assume_not_null().eq_any(feedback::table.select(feedback::card_uuid));
        let overridden = decisions::card_uuid.assume_not_null().eq_any(feedback::table.filter(feedback::outcome.eq("overridden")).select(feedback::card_uuid));
        let by_recommendation: Vec<(Option<String>, i64, i64, i64)> = filtered()
            .filter(decisions::recommendation.is_not_null())
            .group_by(decisions::recommendation)
            .select((
                decisions::recommendation,
                count(decisions::seq),
                count(decisions::seq).aggregate_filter(with_feedback),
                count(decisions::seq).aggregate_filter(overridden),
            ))
            .load(&mut conn)
            .await
            .map_err(AuditError::query("counting decisions by recommendation"))?;
        let outcome = |o: &str| by_outcome.iter().find(|(k, _)| k == o).map_or(0, |(_, n)| *n);
        let by = ["biopsy", "resection-planning", "tumour-board"]
            .into_iter()
            .map(|rec| {
                let (decisions, with_feedback, overridden) = by_recommendation
                    .iter()
                    .find(|(k, ..)| k.as_deref() == Some(rec))
                    .map_or((0, 0, 0), |&(_, n, f, o)| (n, f, o));
                RecommendationSummary {
                    recommendation: rec.into(),
                    decisions,
                    with_feedback,
                    overridden,
                    override_rate: (with_feedback > 0).then(|| overridden as f64 / with_feedback as f64),
                }
            })
            .collect();
        Ok(Summary {
            decisions: by_outcome.iter().map(|(_, n)| n).sum(),
            recommended: outcome("recommended"),
            abstained: outcome("abstained"),
            out_of_scope: outcome("out-of-scope"),
            unavailable: outcome("unavailable"),
            pending: outcome("pending"),
            by_recommendation: by,
        })
    }
}
