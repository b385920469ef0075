//! `/healthz` (the process answers) and `/readyz` (it can do its job: database reachable, schema
//! current, which ensemble, and on which device when analyses run in this process; and, for
//! information, whether model monitoring sees drift).

use actix_web::{HttpResponse, web};
use serde_json::json;

use neurocds_analysis::inference::device::device_name;

use crate::state::AppState;

/// Liveness: 200 while the process serves HTTP. Touches nothing else, so a slow database never
/// gets the process killed.
#[utoipa::path(get, path = "/healthz", tag = "Operations", responses((status = 200, description = "The process serves HTTP", body = Object, example = json!({"status": "ok"}))))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Readiness: 200 `{"status":"ready", …}` or 503 with what is missing. Drift that model
/// monitoring alerts on makes the status "degraded", still with 200: the service answers as
/// validated, and people decide what the drift means.
#[utoipa::path(get, path = "/readyz", tag = "Operations", responses(
    (status = 200, description = "Ready (or \"degraded\": ready, but model monitoring alerts on drift): database reachable, migrations current; which ensemble, where analyses run", body = Object),
    (status = 503, description = "Not ready, and why", body = Object),
))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (answers, pending) = state.db.readiness().await;
    let database = if answers { json!("ok") } else { json!("unreachable") };
    let manifest = &state.model;
    let ready = database == "ok" && pending.is_empty();
    let monitoring = state.monitor.latest();
    let degraded = monitoring.as_ref().is_some_and(|m| !m.alerts.is_empty());
    let body = json!({
        "status": match (ready, degraded) { (false, _) => "not-ready", (true, true) => "degraded", (true, false) => "ready" },
        "database": database,
        "migrations": if pending.is_empty() { json!("current") } else { json!({ "pending": pending }) },
        "model": {
            "name": manifest.name,
            "version": manifest.version,
            "members": manifest.members.len(),
            "ensemble_sha256": manifest.ensemble_hash(),
        },
        "analyses": if state.engine.is_some() { "in-process" } else { "in-workers" },
        "device": state.engine.as_ref().map(|e| device_name(e.device())),
        "version": env!("CARGO_PKG_VERSION"),
        "monitoring": match &monitoring {
            Some(m) => json!({ "status": m.status(), "alerts": m.alerts, "computed_at": m.computed_at_rfc3339() }),
            None => json!({ "status": "not-computed-yet" }),
        },
    });
    if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}
