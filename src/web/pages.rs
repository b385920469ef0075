//! Server-rendered pages for people (no JavaScript needed): the case report for the
//! neuro-oncology team, the decision log for compliance, and the model card. Staff tokens only.

use actix_web::{HttpRequest, HttpResponse, cookie::{Cookie, SameSite}, http::header, web};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use neurocds_analysis::decision::Recommendation;

use super::{
    refusal::signin_or_deny,
    render::page,
    staff::{COOKIE, View},
};
use crate::{
    audit::query::{DecisionFilter, decode_cursor},
    pipeline::analysis::Analysis,
    state::AppState,
};

fn pct(p: Option<f64>) -> String {
    p.map(|v| format!("{:.0} %", v * 100.0)).unwrap_or_else(|| "—".into())
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// The pipeline's stages in the order they run, then the whole hook call; stages this build
/// does not know (older rows) follow in their stored order.
fn stage_timings(stored: &Value) -> Vec<Value> {
    const ORDER: [(&str, &str); 7] = [
        ("series_metadata", "series metadata (DICOMweb)"),
        ("series_selection", "series selection"),
        ("retrieval", "retrieval (WADO-RS)"),
        ("assembly", "volume assembly"),
        ("preprocessing", "preprocessing"),
        ("inference", "inference"),
        ("hook", "whole hook call"),
    ];
    let Some(map) = stored.as_object() else { return Vec::new() };
    let known = ORDER.iter().filter_map(|(key, label)| map.get(*key).map(|ms| json!({ "stage": label, "ms": ms })));
    let other = map.iter().filter(|(k, _)| !ORDER.iter().any(|(key, _)| key == k)).map(|(k, ms)| json!({ "stage": k, "ms": ms }));
    known.chain(other).collect()
}

pub async fn report(req: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let Ok(id) = Uuid::parse_str(&path) else {
        return HttpResponse::NotFound().content_type("text/plain").body("no such case report");
    };
    // A clinician launched from the EHR's card may see this one report; staff by their role.
    let user = match super::launch::grant_for(&req, id) {
        Some(_) => None,
        None => match state.staff.authorize(&req, View::CaseReport).await {
            Ok(user) => Some(user),
            Err(e) => return signin_or_deny(&req, &state, e),
        },
    };
    let decision = match state.db.decision(id).await {
        Ok(Some(d)) => d,
        Ok(None) => return HttpResponse::NotFound().content_type("text/plain").body("no such case report"),
        Err(e) => return HttpResponse::ServiceUnavailable().content_type("text/plain").body(format!("the audit trail is unavailable: {e}")),
    };
    let r = &decision.record;
    let analysis = match (&r.study_uid, &r.model_version) {
        (Some(study), Some(model)) => {
            match state.pipeline.queue().latest_done(&r.patient_ref, study, model, &r.client_iss).await {
                Ok(Some(v)) => serde_json::from_value::<Analysis>(v).ok(),
                _ => None,
            }
        }
        _ => None,
    };
    let feedback: Vec<Value> = state
        .db
        .feedback_for(r.decision_id)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|f| json!({ "outcome_at": rfc3339(f.record.outcome_at), "outcome": f.record.outcome, "reason": f.record.override_reason.as_ref().and_then(|o| o.pointer("/reason/display").and_then(Value::as_str).map(str::to_owned)).unwrap_or_default() }))
        .collect();
    let probs: Vec<f64> = serde_json::from_value(r.member_probabilities.clone()).unwrap_or_default();
    let hashes: Vec<String> = serde_json::from_value(r.member_hashes.clone()).unwrap_or_default();
    let members: Vec<Value> = probs.iter().enumerate().map(|(i, p)| json!({ "n": i + 1, "p": format!("{:.3}", p), "sha": hashes.get(i).cloned().unwrap_or_default() })).collect();
    let verdicts = r.series.get("verdicts").cloned().unwrap_or(json!([]));
    let timings = stage_timings(&r.stage_timings_ms);
    let headline = r.recommendation.as_deref().and_then(|s| serde_json::from_value::<Recommendation>(json!(s)).ok()).map(|x| x.headline()).unwrap_or_default();
    page(
        &state,
        "report",
        user.as_ref(),
        json!({
            "decision": r,
            "headline": headline,
            "probability": pct(r.calibrated_probability),
            "mean": pct(r.ensemble_probability),
            "spread": r.member_spread.map(|s| format!("{s:.2}")).unwrap_or_else(|| "—".into()),
            "members": members,
            "verdicts": verdicts,
            "key_images": analysis.as_ref().and_then(|a| a.key_images.clone()),
            "lesion_volume": analysis.as_ref().and_then(|a| a.lesion_volume_ml).map(|v| format!("{v:.1} mL")),
            "scope": analysis.as_ref().and_then(|a| a.scope.as_ref()).map(scope_view),
            "study_started": analysis.as_ref().and_then(|a| a.study_started.clone()),
            "feedback": feedback,
            "timings": timings,
            "content_hash": decision.content_hash,
        }),
    )
}

/// The scope gate's candidates as the case report shows them.
fn scope_view(s: &neurocds_analysis::imaging::lesion::ScopeReport) -> Value {
    let pct = |x: f64| format!("{:.0} %", 100.0 * x);
    let kept = s.candidates.iter().find(|c| c.rejection.is_none()).map(|c| c.rank);
    json!({
        "version": s.version,
        "out_of_scope": s.out_of_scope.map(|r| r.as_str()),
        "explanation": s.out_of_scope.map(|r| r.explanation()),
        "kept_rank": kept,
        "specks": s.specks,
        "candidates": s.candidates.iter().map(|c| json!({
            "rank": c.rank,
            "centre": format!("{:.0}, {:.0}, {:.0}", c.centre_lps[0], c.centre_lps[1], c.centre_lps[2]),
            "enhancing_ml": format!("{:.1}", c.enhancing_ml),
            "mass_ml": format!("{:.1}", c.mass_ml),
            "thickness_mm": format!("{:.0}", c.thickness_mm),
            "brain_around": pct(c.brain_around),
            "csf_around": pct(c.csf_around),
            "oedema_around": pct(c.oedema_around),
            "surface_contact": format!("{:.2}", c.surface_contact),
            "t1c_coverage": pct(c.t1c_coverage),
            "t2_coverage": pct(c.t2_coverage),
            "verdict": match c.rejection {
                None if Some(c.rank) == kept => "kept: the lesion".to_owned(),
                None => "kept (a smaller lesion)".to_owned(),
                Some(r) => format!("rejected: {}", r.explanation()),
            },
        })).collect::<Vec<_>>(),
    })
}

#[derive(Debug, Deserialize)]
pub struct AuditPageQuery {
    #[serde(flatten)]
    pub filter: RawFilter,
    pub cursor: Option<String>,
}

/// Form fields arrive as strings (empty when not filled in).
#[derive(Debug, Deserialize, Default, serde::Serialize)]
pub struct RawFilter {
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub patient: String,
    #[serde(default)]
    pub practitioner: String,
    #[serde(default)]
    pub recommendation: String,
    #[serde(default)]
    pub outcome: String,
    #[serde(default)]
    pub model_version: String,
    #[serde(default)]
    pub feedback: String,
}

impl RawFilter {
    fn parse(&self) -> Result<DecisionFilter, String> {
        let time = |s: &str, name: &str| -> Result<Option<time::OffsetDateTime>, String> {
            if s.is_empty() {
                return Ok(None);
            }
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map(Some).map_err(|_| format!("`{name}` must be an RFC 3339 date-time"))
        };
        let some = |s: &String| (!s.is_empty()).then(|| s.clone());
        let filter = DecisionFilter {
            from: time(&self.from, "from")?,
            to: time(&self.to, "to")?,
            patient: some(&self.patient),
            practitioner: some(&self.practitioner),
            recommendation: some(&self.recommendation),
            outcome: some(&self.outcome),
            model_version: some(&self.model_version),
            feedback: some(&self.feedback),
        };
        filter.check().map(|()| filter)
    }

    fn query_string(&self) -> String {
        serde_urlencoded_pairs(self)
    }
}

fn serde_urlencoded_pairs(f: &RawFilter) -> String {
    let pairs = [("from", &f.from), ("to", &f.to), ("patient", &f.patient), ("practitioner", &f.practitioner), ("recommendation", &f.recommendation), ("outcome", &f.outcome), ("model_version", &f.model_version), ("feedback", &f.feedback)];
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

pub async fn audit(req: HttpRequest, q: web::Query<AuditPageQuery>, state: web::Data<AppState>) -> HttpResponse {
    let user = match state.staff.authorize(&req, View::DecisionLog).await {
        Ok(user) => user,
        Err(e) => return signin_or_deny(&req, &state, e),
    };
    let filter = match q.filter.parse() {
        Ok(f) => f,
        Err(msg) => return HttpResponse::BadRequest().content_type("text/plain").body(msg),
    };
    let cursor = q.cursor.as_deref().and_then(decode_cursor);
    let (page_rows, summary) = match (state.db.list_decisions(&filter, cursor, 50).await, state.db.summary(&filter).await) {
        (Ok(p), Ok(s)) => (p, s),
        (Err(e), _) | (_, Err(e)) => return HttpResponse::ServiceUnavailable().content_type("text/plain").body(format!("the audit trail is unavailable: {e}")),
    };
    let qs = q.filter.query_string();
    let sep = if qs.is_empty() { "" } else { "&" };
    let options = |values: &[&str], chosen: &str| values.iter().map(|v| json!({ "value": v, "selected": *v == chosen })).collect::<Vec<_>>();
    let rows: Vec<Value> = page_rows
        .decisions
        .iter()
        .map(|d| json!({
            "decision_id": d.record.decision_id, "recorded_at": rfc3339(d.record.recorded_at),
            "hook": d.record.hook, "patient_ref": d.record.patient_ref, "outcome": d.record.outcome,
            "recommendation": d.record.recommendation, "probability": pct(d.record.calibrated_probability)
        }))
        .collect();
    // Rates as percentages; a rate of 0 is a value, not "no feedback" (handlebars' `if` would hide it).
    let overrides: Vec<Value> = summary
        .by_recommendation
        .iter()
        .map(|s| json!({ "recommendation": s.recommendation, "decisions": s.decisions, "with_feedback": s.with_feedback, "overridden": s.overridden, "override_rate": pct(s.override_rate) }))
        .collect();
    page(
        &state,
        "audit",
        Some(&user),
        json!({
            "filter": q.filter,
            "overrides": overrides,
            "recommendations": options(&["biopsy", "resection-planning", "tumour-board"], &q.filter.recommendation),
            "outcomes": options(&["recommended", "abstained", "out-of-scope", "unavailable", "pending"], &q.filter.outcome),
            "feedbacks": options(&["accepted", "overridden"], &q.filter.feedback),
            "summary": summary,
            "rows": rows,
            "next": page_rows.next.map(|c| format!("/audit?{qs}{sep}cursor={c}")),
            "export": View::DecisionExport.allows(user.role).then(|| json!({
                "csv": format!("/audit/decisions?{qs}{sep}format=csv"),
                "fhir": format!("/audit/decisions?{qs}{sep}format=fhir"),
            })),
        }),
    )
}

pub async fn models(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let user = match state.staff.authorize(&req, View::ModelCard).await {
        Ok(user) => user,
        Err(e) => return signin_or_deny(&req, &state, e),
    };
    let device = state.engine.as_ref().map_or_else(|| crate::state::NO_DEVICE.to_owned(), |e| neurocds_analysis::inference::device::device_name(e.device()));
    page(&state, "models", Some(&user), super::model_card::view(&state.model, &device))
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /login` on a site without single sign-on: checks the pasted token and keeps it in an
/// HttpOnly, SameSite=Strict cookie.
pub async fn login(form: web::Form<LoginForm>, state: web::Data<AppState>) -> HttpResponse {
    if state.staff.sso().is_some() {
        return HttpResponse::SeeOther().insert_header((header::LOCATION, "/login")).finish();
    }
    let token = form.token.trim();
    match state.staff.verify(token).await {
        Ok(_) => {
            let secure = state.settings.server.public_base_url.scheme() == "https";
            let cookie = Cookie::build(COOKIE, token.to_owned()).path("/").http_only(true).same_site(SameSite::Strict).secure(secure).finish();
            HttpResponse::SeeOther().cookie(cookie).insert_header((header::LOCATION, "/audit")).finish()
        }
        Err(e) => {
            tracing::warn!(reason = %e, "refused a staff sign-in");
            page(&state, "login", None, json!({ "error": "That token was not accepted." }))
        }
    }
}
