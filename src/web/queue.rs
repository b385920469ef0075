//! The analysis queue as operators see it: `GET /queue` (the page) and `GET /audit/queue` (the
//! same as JSON, for the compliance API): how many analyses wait, run and died, and the dead
//! letters with their last error. Staff only ([`View::Queue`]).

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::{refusal::signin_or_deny, render::page, roles::View};
use crate::{cds::outcome::operation_outcome, state::AppState};

/// Dead letters shown, newest first.
const DEAD_LETTERS_SHOWN: i64 = 200;

/// The queue's depth, its rules, and its dead letters; `Err` when the database is away.
async fn snapshot(state: &AppState) -> Result<Value, crate::audit::AuditError> {
    let queue = state.pipeline.queue();
    let depth = queue.depth().await?;
    let dead = queue.dead_letters(DEAD_LETTERS_SHOWN).await?;
    let w = &state.settings.worker;
    Ok(json!({
        "depth": {
            "queued": depth.queued,
            "running": depth.running,
            "dead": depth.dead,
            "oldest_wait_s": (depth.oldest_wait_s * 10.0).round() / 10.0,
        },
        "capacity": state.settings.hooks.max_pending_analyses,
        "lease_s": w.lease_s,
        "max_attempts": w.max_attempts,
        "retry_max_s": state.settings.hooks.retry_max_s,
        "embedded_worker": state.worker.is_some(),
        "dead": dead,
    }))
}

pub async fn page_view(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let user = match state.staff.authorize(&req, View::Queue).await {
        Ok(user) => user,
        Err(e) => return signin_or_deny(&req, &state, e),
    };
    match snapshot(&state).await {
        Ok(data) => page(&state, "queue", Some(&user), data),
        Err(e) => HttpResponse::ServiceUnavailable().content_type("text/plain").body(format!("the analysis queue is unavailable: {e}")),
    }
}

/// The analysis queue: depth by state, oldest wait, and the latest dead letters with their last
/// error.
#[utoipa::path(get, path = "/audit/queue", tag = "Compliance", security(("staff_jwt" = [])),
    responses(
        (status = 200, description = "The queue now", body = Object),
        (status = 401, description = "No staff token (a browser is sent to sign in instead)", body = crate::cds::outcome::OperationOutcome),
        (status = 403, description = "The staff role does not open this view", body = crate::cds::outcome::OperationOutcome),
        (status = 503, description = "The queue is unavailable", body = crate::cds::outcome::OperationOutcome),
    ))]
pub async fn api(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Err(e) = state.staff.authorize(&req, View::Queue).await {
        return signin_or_deny(&req, &state, e);
    }
    match snapshot(&state).await {
        Ok(data) => HttpResponse::Ok().json(data),
        Err(e) => HttpResponse::ServiceUnavailable().json(operation_outcome("transient", &format!("the analysis queue is unavailable: {e}"))),
    }
}
