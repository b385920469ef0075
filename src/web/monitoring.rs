//! Model monitoring as people and the compliance API see it: `GET /monitoring` (the page, with
//! a plot per watched quantity) and `GET /audit/monitoring` (the same figures as JSON). Both
//! compute the figures afresh from the decision log (`crate::monitoring`). Staff only
//! ([`View::Monitoring`]).

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::{refusal::signin_or_deny, render::page, roles::View};
use crate::{cds::outcome::operation_outcome, monitoring::plot, state::AppState};

fn percent(share: f64) -> String {
    format!("{:.0} %", share * 100.0)
}

/// The page's data: the snapshot, with figures formatted and a plot per quantity.
fn page_data(snapshot: &crate::monitoring::Snapshot) -> Value {
    let day = |t: time::OffsetDateTime| t.date().to_string();
    let versions: Vec<Value> = snapshot
        .versions
        .iter()
        .map(|v| {
            let quantities: Vec<Value> = v
                .quantities
                .iter()
                .map(|q| {
                    json!({
                        "name": q.name,
                        "title": q.title,
                        "against": q.against.label(),
                        "reference_n": q.reference_n,
                        "live_n": q.live_n,
                        "psi": q.psi.map(|p| format!("{p:.3}")),
                        "ks": q.ks.map(|k| format!("{k:.3}")),
                        "outside": q.outside_training_range.map(percent),
                        "status": q.status,
                        "svg": plot::bars(q),
                    })
                })
                .collect();
            let overrides: Vec<Value> = v
                .overrides
                .iter()
                .map(|o| json!({ "recommendation": o.recommendation, "decisions": o.decisions, "with_feedback": o.with_feedback, "overridden": o.overridden, "rate": o.override_rate.map(percent) }))
                .collect();
            json!({
                "model_version": v.model_version,
                "loaded": v.loaded,
                "analyses": v.analyses,
                "baseline_analyses": v.baseline_analyses,
                "recommended": percent(v.recommended),
                "abstained": percent(v.abstained),
                "out_of_scope": percent(v.out_of_scope),
                "unavailable": percent(v.unavailable),
                "quantities": quantities,
                "overrides": overrides,
            })
        })
        .collect();
    json!({
        "status": snapshot.status(),
        "alerts": snapshot.alerts,
        "computed_at": snapshot.computed_at_rfc3339(),
        "window_from": day(snapshot.window_from),
        "baseline_from": day(snapshot.baseline_from),
        "window_days": snapshot.window_days,
        "baseline_days": snapshot.baseline_days,
        "psi_alert": snapshot.judging.psi_alert,
        "min_analyses": snapshot.judging.min_analyses,
        "validation_studies": snapshot.validation_studies,
        "versions": versions,
    })
}

pub async fn page_view(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let user = match state.staff.authorize(&req, View::Monitoring).await {
        Ok(user) => user,
        Err(e) => return signin_or_deny(&req, &state, e),
    };
    match state.monitor.refresh(&state.db).await {
        Ok(snapshot) => page(&state, "monitoring", Some(&user), page_data(&snapshot)),
        Err(e) => HttpResponse::ServiceUnavailable().content_type("text/plain").body(format!("model monitoring is unavailable: {e}")),
    }
}

/// Model monitoring now: per model version, each watched quantity binned for the window and
/// its reference (the validation cohort or the baseline period), its population stability
/// index and Kolmogorov–Smirnov distance, outcome shares, override rates, and the alerts.
#[utoipa::path(get, path = "/audit/monitoring", operation_id = "monitoring", tag = "Compliance", security(("staff_jwt" = [])),
    responses(
        (status = 200, description = "The figures, computed now from the decision log", body = Object),
        (status = 401, description = "No staff token (a browser is sent to sign in instead)", body = crate::cds::outcome::OperationOutcome),
        (status = 403, description = "The staff role does not open this view", body = crate::cds::outcome::OperationOutcome),
        (status = 503, description = "The decision log is unavailable", body = crate::cds::outcome::OperationOutcome),
    ))]
pub async fn api(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Err(e) = state.staff.authorize(&req, View::Monitoring).await {
        return signin_or_deny(&req, &state, e);
    }
    match state.monitor.refresh(&state.db).await {
        Ok(snapshot) => HttpResponse::Ok().json(&*snapshot),
        Err(e) => HttpResponse::ServiceUnavailable().json(operation_outcome("transient", &format!("model monitoring is unavailable: {e}"))),
    }
}
