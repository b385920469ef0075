//! The root span of every HTTP request the service answers: the server span of its trace, and
//! what each log line written while answering it carries (`request_id`, `trace_id`).
//!
//! tracing-actix-web's default span records `http.target`, the path *with its query*: the
//! compliance API's `?patient=`, a SMART launch's `launch` and `iss`, the sign-in callback's
//! authorisation `code`. This one records the path alone (`url.path`), and takes the EHR's
//! `traceparent` as its parent. Health probes and metric scrapes get none.

use actix_web::{
    Error, HttpMessage,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::HeaderMap,
};
use opentelemetry::{global, propagation::Extractor};
use tracing::field::Empty;
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Builds the request span for `tracing_actix_web::TracingLogger`.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> tracing::Span {
        let route = request.match_pattern().unwrap_or_else(|| "default".into());
        // Probes and scrapes, every few seconds from every kubelet and Prometheus, log nothing
        // and are not the service's work: no span, no trace.
        if matches!(route.as_str(), "/healthz" | "/readyz" | "/metrics") {
            return tracing::Span::none();
        }
        let method = request.method().as_str();
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(|id| id.to_string())
            .unwrap_or_default();
        let span = tracing::info_span!(
            "HTTP request",
            http.request.method = %method,
            http.route = %route,
            url.path = %request.path(),
            http.status_code = Empty,
            otel.name = %format!("{method} {route}"),
            otel.kind = "server",
            otel.status_code = Empty,
            request_id = %request_id,
            trace_id = Empty,
            exception.message = Empty,
            exception.details = Empty,
        );
        let parent = global::get_text_map_propagator(|p| p.extract(&Headers(request.headers())));
        let _ = span.set_parent(parent);
        super::traces::record_trace_id(&span);
        span
    }

    fn on_request_end<B: MessageBody>(
        span: tracing::Span,
        outcome: &Result<ServiceResponse<B>, Error>,
    ) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// The request's headers, as the propagator reads them.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
