//! `/metrics` for Prometheus, and the middleware that times every request for it.
//!
//! The exposition needs no EHR token: it carries counts and durations under labels from closed
//! sets (routes, outcomes, stages), never a patient, a study or a URL. Sites that keep even that
//! off the clinical network serve it on a management port (`metrics.listen`).

use std::time::Instant;

use actix_web::{
    Error, HttpResponse,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
    web,
};

use crate::{metrics::Gauges, state::AppState};

/// The Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "Operations", responses(
    (status = 200, description = "The Prometheus text exposition (unless `metrics.listen` moves it to a management port)", body = String, content_type = "text/plain"),
))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let running = state.worker.as_ref().map_or(0, |w| w.running());
    let gauges = Gauges::measure(state.pipeline.queue(), running, state.settings.hooks.max_pending_analyses, state.engine.as_ref()).await;
    if let Some(snapshot) = state.monitor.latest() {
        state.metrics.monitoring(&snapshot);
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(state.metrics.render(&gauges))
}

/// Records each request's duration under its method, route pattern and status (an error a
/// handler returns counts with the status it becomes). Paths no route matches count as one
/// route, `unmatched`, so a scanner cannot grow the series.
pub async fn record(req: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    // Off (`metrics.enabled = false`): nothing is recorded, so the cost of instrumentation can be
    // measured against a service without it.
    let metrics = req.app_data::<web::Data<AppState>>().filter(|s| s.settings.metrics.enabled).map(|s| s.metrics.clone());
    // Methods outside the standard set count as one (OpenTelemetry's `_OTHER`).
    let method = match req.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" | "PATCH") => m.to_owned(),
        _ => "_OTHER".to_owned(),
    };
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let result = next.call(req).await;
    if let Some(m) = metrics {
        let status = match &result {
            Ok(res) => res.status().as_u16(),
            Err(e) => e.as_response_error().status_code().as_u16(),
        };
        m.http_server_request(&method, &route, status, started.elapsed());
    }
    result
}
