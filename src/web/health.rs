//! `/healthz` (the process answers) and `/readyz` (it can do its job: database reachable, schema
//! current, which ensemble, and on which device when analyses run in this process).

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

/// Readiness: 200 `{"status":"ready", …}` or 503 with what is missing.
#[utoipa::path(get, path = "/readyz", tag = "Operations", responses(
    (status = 200, description = "Ready: database reachable, migrations current; which ensemble, where analyses run", body = Object),
    (status = 503, description = "Not ready, and why", body = Object),
))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (answers, pending) = state.db.readiness().await;
    let database = if answers { json!("ok") } else { json!("unreachable") };
    let manifest = &state.model;
    let ready = database == "ok" && pending.is_empty();
    let body = json!({
        "status": if ready { "ready" } else { "not-ready" },
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
    });
    if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}
